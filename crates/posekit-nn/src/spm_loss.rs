//! The training loss of SPM (Nie et al., "Single-Stage Multi-Person Pose Machines", ICCV 2019,
//! section 3.4): an L2 loss on the root-joint confidence map plus `beta` times a smooth-L1 loss
//! on the dense displacement maps, summed over the outputs of every hourglass stack
//! (intermediate supervision): `L = sum_t (L_C(C_t, C) + beta * L_D(D_t, D))`.
//!
//! The paper gives the two loss types, the sum over stacks and the weight `beta`; it does not
//! say how each term is reduced. The choices here (module-level so that the PyTorch fixture
//! `tools/fixtures/make_spm_train_fixtures.py` can state the same):
//!
//! * `L_C` is HigherHRNet's masked `HeatmapLoss` on the one root channel: the squared error
//!   times the ignore mask (crowds and unlabelled people count for nothing), averaged over the
//!   pixels of each image, then over the batch. Masking is posekit's choice, the same as its
//!   HigherHRNet training: a person nobody labelled must not be learned as background;
//! * `L_D` counts only where a displacement is defined (the codec's weight 1: inside the disk
//!   around the joint's anchor, for labelled joints whose anchor is labelled) and is averaged
//!   over those entries (x and y each count once) of the whole batch, so that its size does not
//!   depend on how many people a batch holds; a batch without any defined displacement
//!   contributes 0. Displacements are in the codec's normalised units (heatmap pixels / `Z`,
//!   `Z` the heatmap diagonal, as the paper's `Z = sqrt(H^2 + W^2)`);
//! * smooth-L1 is PyTorch's `smooth_l1_loss` with transition `smooth_l1_beta` (1 by default,
//!   Fast R-CNN's; normalised displacements lie in [-1, 1], so errors sit in its quadratic
//!   part unless a smaller transition is chosen).

use posekit_core::{Error, Result};
use tch::{Kind, Reduction, Tensor};

use crate::loss::heatmap_loss;

/// SPM's loss weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpmLossConfig {
    /// The paper's `beta`, the weight of the displacement term (0.01 in the paper).
    pub displacement_factor: f64,
    /// Transition point of the smooth-L1 loss, in normalised displacement units.
    pub smooth_l1_beta: f64,
}

impl Default for SpmLossConfig {
    fn default() -> Self {
        Self {
            displacement_factor: 0.01,
            smooth_l1_beta: 1.0,
        }
    }
}

/// The loss of one batch, term by term (one entry per supervised output).
#[derive(Debug)]
pub struct SpmLossTerms {
    /// `L_C` per output, scalars.
    pub root: Vec<Tensor>,
    /// `L_D` per output (before `beta`), scalars.
    pub displacement: Vec<Tensor>,
    /// `sum_t (L_C + beta * L_D)`.
    pub total: Tensor,
}

/// The SPM loss.
#[derive(Debug, Clone, Copy)]
pub struct SpmLoss {
    config: SpmLossConfig,
}

impl SpmLoss {
    pub fn new(config: SpmLossConfig) -> Result<Self> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        let beta_ok = config.smooth_l1_beta > 0.0 && ok(config.smooth_l1_beta);
        if !(ok(config.displacement_factor) && beta_ok) {
            return Err(Error::Shape(format!(
                "SPM loss: displacement_factor must be >= 0 and smooth_l1_beta > 0, got {} and {}",
                config.displacement_factor, config.smooth_l1_beta
            )));
        }
        Ok(Self { config })
    }

    pub fn config(&self) -> &SpmLossConfig {
        &self.config
    }

    /// `outputs`: `(root [N, 1, H, W], displacements [N, 2K, H, W])` per supervised output
    /// (every hourglass stack); targets: `root [N, 1, H, W]`, `mask [N, H, W]`,
    /// `displacements [N, 2K, H, W]` and their `weights [N, K, H, W]` (0 or 1).
    pub fn forward(
        &self,
        outputs: &[(Tensor, Tensor)],
        root: &Tensor,
        mask: &Tensor,
        displacements: &Tensor,
        weights: &Tensor,
    ) -> Result<SpmLossTerms> {
        if outputs.is_empty() {
            return Err(Error::Shape("SPM loss: the network gave no output".into()));
        }
        let ds = displacements.size();
        let ws = weights.size();
        if ds.len() != 4 || ds[1] % 2 != 0 || ws != [ds[0], ds[1] / 2, ds[2], ds[3]] {
            return Err(Error::Shape(format!(
                "SPM loss: displacement targets {ds:?} must be [N, 2K, H, W] and their weights \
                 {ws:?} [N, K, H, W]"
            )));
        }
        if root.size() != [ds[0], 1, ds[2], ds[3]] {
            return Err(Error::Shape(format!(
                "SPM loss: root target {:?} must be [N, 1, H, W] = [{}, 1, {}, {}]",
                root.size(),
                ds[0],
                ds[2],
                ds[3]
            )));
        }
        // x and y of joint k share its weight.
        let w2 = weights.repeat_interleave_self_int(2, 1, None);
        let defined = w2.sum(Kind::Float).clamp_min(1.0);
        let mut terms = SpmLossTerms {
            root: Vec::with_capacity(outputs.len()),
            displacement: Vec::with_capacity(outputs.len()),
            total: Tensor::zeros([], (Kind::Float, root.device())),
        };
        for (i, (r, d)) in outputs.iter().enumerate() {
            if r.size() != root.size() || d.size() != ds {
                return Err(Error::Shape(format!(
                    "SPM loss: output {i} is root {:?} and displacements {:?}, the targets are \
                     {:?} and {ds:?}",
                    r.size(),
                    d.size(),
                    root.size()
                )));
            }
            let lc = heatmap_loss(r, root, mask)?.mean(Kind::Float);
            let ld = (d.smooth_l1_loss(displacements, Reduction::None, self.config.smooth_l1_beta)
                * &w2)
                .sum(Kind::Float)
                / &defined;
            terms.total = &terms.total + &lc + &ld * self.config.displacement_factor;
            terms.root.push(lc);
            terms.displacement.push(ld);
        }
        Ok(terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(shape: &[i64], seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::rand(shape, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn displacements_count_only_where_defined_and_stacks_add_up() {
        let (n, k, h, w) = (2, 3, 4, 5);
        let root_t = t(&[n, 1, h, w], 1);
        let mask = Tensor::ones([n, h, w], (Kind::Float, Device::Cpu));
        let disp_t = t(&[n, 2 * k, h, w], 2);
        let weights = Tensor::zeros([n, k, h, w], (Kind::Float, Device::Cpu));
        let _ = weights.get(0).get(1).get(2).get(3).fill_(1.0);
        let out = (t(&[n, 1, h, w], 3), t(&[n, 2 * k, h, w], 4));
        let loss = SpmLoss::new(SpmLossConfig {
            displacement_factor: 0.5,
            smooth_l1_beta: 1.0,
        })
        .unwrap();
        let terms = loss
            .forward(
                &[(out.0.shallow_clone(), out.1.shallow_clone())],
                &root_t,
                &mask,
                &disp_t,
                &weights,
            )
            .unwrap();
        // Only joint 1 of image 0 at (2, 3): channels 2 and 3, averaged over those 2 entries.
        let e = |c: i64| {
            let d = (out.1.double_value(&[0, c, 2, 3]) - disp_t.double_value(&[0, c, 2, 3])).abs();
            0.5 * d * d
        };
        let want = (e(2) + e(3)) / 2.0;
        assert!((terms.displacement[0].double_value(&[]) - want).abs() < 1e-6);
        let want_root = (&out.0 - &root_t)
            .square()
            .mean(Kind::Float)
            .double_value(&[]);
        assert!((terms.root[0].double_value(&[]) - want_root).abs() < 1e-6);
        // Two identical stacks: twice one stack's total.
        let two = loss
            .forward(
                &[
                    (out.0.shallow_clone(), out.1.shallow_clone()),
                    (out.0.shallow_clone(), out.1.shallow_clone()),
                ],
                &root_t,
                &mask,
                &disp_t,
                &weights,
            )
            .unwrap();
        let one = terms.total.double_value(&[]);
        assert!((one - (want_root + 0.5 * want)).abs() < 1e-6);
        assert!((two.total.double_value(&[]) - 2.0 * one).abs() < 1e-6);
        // No defined displacement at all: the term is 0, not NaN.
        let none = loss
            .forward(
                &[(out.0.shallow_clone(), out.1.shallow_clone())],
                &root_t,
                &mask,
                &disp_t,
                &weights.zeros_like(),
            )
            .unwrap();
        assert_eq!(none.displacement[0].double_value(&[]), 0.0);
    }

    #[test]
    fn shapes_and_factors_are_checked() {
        let z = |s: &[i64]| Tensor::zeros(s, (Kind::Float, Device::Cpu));
        let loss = SpmLoss::new(SpmLossConfig::default()).unwrap();
        let out = [(z(&[1, 1, 4, 4]), z(&[1, 6, 4, 4]))];
        assert!(loss
            .forward(
                &out,
                &z(&[1, 1, 4, 4]),
                &z(&[1, 4, 4]),
                &z(&[1, 6, 4, 4]),
                &z(&[1, 2, 4, 4])
            )
            .is_err());
        assert!(loss
            .forward(
                &out,
                &z(&[1, 1, 4, 4]),
                &z(&[1, 4, 4]),
                &z(&[1, 4, 4, 4]),
                &z(&[1, 2, 4, 4])
            )
            .is_err());
        assert!(loss
            .forward(
                &[],
                &z(&[1, 1, 4, 4]),
                &z(&[1, 4, 4]),
                &z(&[1, 6, 4, 4]),
                &z(&[1, 3, 4, 4])
            )
            .is_err());
        assert!(SpmLoss::new(SpmLossConfig {
            displacement_factor: -1.0,
            smooth_l1_beta: 1.0
        })
        .is_err());
    }
}
