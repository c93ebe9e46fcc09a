//! Training losses of the official HRNet and HigherHRNet code, written with tensor ops so that
//! libtorch's autograd gives the same gradients as PyTorch.
//!
//! * [`joints_mse_loss`]: top-down heatmap regression (`JointsMSELoss(use_target_weight)`).
//! * [`heatmap_loss`]: bottom-up heatmap regression with an ignore mask (`HeatmapLoss`).
//! * [`AeLoss`]: associative-embedding grouping loss (`AELoss`, Newell et al. 2017).
//! * [`MultiResolutionLoss`]: HigherHRNet's `MultiLossFactory` plus the sum its trainer forms.
//!
//! The joints of the AE loss use the layout of HigherHRNet's data pipeline, which posekit-core's
//! AE target encoder produces: per image `[max_people, K, 2]` integers, `(flat index, visible)`
//! where the flat index points into the image's tag maps flattened in `[K, H, W]` order
//! (`k * H * W + y * W + x`), and a person slot with no visible joint is padding.

use posekit_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

fn shape_err(msg: String) -> Error {
    Error::Shape(msg)
}

/// `JointsMSELoss` of the official top-down code: for each joint, half the mean squared error
/// between `pred * w` and `target * w` (over batch and pixels), averaged over joints. As every
/// joint has the same number of pixels this is `0.5 * mean(((pred*w) - (target*w))^2)`.
///
/// `pred`, `target`: `[N, K, H, W]`; `target_weight`: `[N, K]` or `[N, K, 1]` (0 for joints
/// that are not labelled, so they contribute nothing), or `None` for `use_target_weight=False`.
pub fn joints_mse_loss(
    pred: &Tensor,
    target: &Tensor,
    target_weight: Option<&Tensor>,
) -> Result<Tensor> {
    let ps = pred.size();
    if ps.len() != 4 || target.size() != ps {
        return Err(shape_err(format!(
            "JointsMSELoss: prediction {ps:?} and target {:?} must both be [N, K, H, W]",
            target.size()
        )));
    }
    let (p, t) = match target_weight {
        Some(w) => {
            let ws = w.size();
            let ok = ws.len() >= 2
                && ws[0] == ps[0]
                && ws[1] == ps[1]
                && ws[2..].iter().all(|&d| d == 1);
            if !ok {
                return Err(shape_err(format!(
                    "JointsMSELoss: target weight {ws:?} must be [N, K] or [N, K, 1] with N={} K={}",
                    ps[0], ps[1]
                )));
            }
            let w = w.reshape([ps[0], ps[1], 1, 1]);
            (pred * &w, target * &w)
        }
        None => (pred.shallow_clone(), target.shallow_clone()),
    };
    Ok((p - t).square().mean(Kind::Float) * 0.5)
}

/// HigherHRNet's `HeatmapLoss`: squared error times the ignore mask (`[N, H, W]`, 0 where crowd
/// or unlabelled people are), averaged over joints and pixels. Returns one value per image
/// (`[N]`); the trainer averages over the batch.
pub fn heatmap_loss(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let ps = pred.size();
    if ps.len() != 4 || target.size() != ps {
        return Err(shape_err(format!(
            "HeatmapLoss: prediction {ps:?} and target {:?} must both be [N, K, H, W]",
            target.size()
        )));
    }
    let ms = mask.size();
    if ms != [ps[0], ps[2], ps[3]] {
        return Err(shape_err(format!(
            "HeatmapLoss: mask {ms:?} must be [N, H, W] = [{}, {}, {}]",
            ps[0], ps[2], ps[3]
        )));
    }
    let loss = (pred - target).square() * mask.unsqueeze(1);
    Ok(loss.mean_dim(&[1i64, 2, 3][..], false, Kind::Float))
}

/// How the AE push term penalises two people whose mean tags are close.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AeLossKind {
    /// `exp(-(t_a - t_b)^2)`: the official default (`AE_LOSS_TYPE: exp`).
    #[default]
    Exp,
    /// `max(0, 1 - |t_a - t_b|)`: a hinge that stops pushing at distance 1.
    Max,
}

/// Associative-embedding loss of HigherHRNet (`AELoss`).
///
/// Per image, for each person with at least one visible joint: their reference tag is the mean
/// of their joints' tags, and *pull* is the mean squared deviation from it; pull is averaged
/// over people. *Push* sums the kernel over all ordered pairs of different people, divided by
/// `n (n - 1)` and halved, exactly as the official code (so each unordered pair counts once on
/// average). With fewer than two people push is 0; with none pull is 0 too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AeLoss {
    pub kind: AeLossKind,
}

impl AeLoss {
    pub fn new(kind: AeLossKind) -> Self {
        AeLoss { kind }
    }

    /// `tags`: `[N, ...]` (typically `[N, K, H, W]`), flattened per image; `joints`:
    /// `[N, max_people, K, 2]` of integers (any integer or float kind, as the official code
    /// casts to long). Returns `(push, pull)`, each `[N]`.
    pub fn forward(&self, tags: &Tensor, joints: &Tensor) -> Result<(Tensor, Tensor)> {
        let ts = tags.size();
        let js = joints.size();
        if ts.is_empty() || js.len() != 4 || js[3] != 2 || js[0] != ts[0] {
            return Err(shape_err(format!(
                "AELoss: tags {ts:?} must be [N, ...] and joints {js:?} [N, max_people, K, 2] \
                 with the same N"
            )));
        }
        let n = ts[0];
        let flat = tags.reshape([n, -1]);
        let per_image = (js[1] * js[2] * 2) as usize;
        let all: Vec<i64> = Vec::try_from(
            joints
                .to_kind(Kind::Int64)
                .to_device(tch::Device::Cpu)
                .reshape([-1]),
        )
        .map_err(|e| shape_err(format!("AELoss: cannot read joints: {e}")))?;
        let mut pushes = Vec::with_capacity(n as usize);
        let mut pulls = Vec::with_capacity(n as usize);
        for b in 0..n {
            let start = b as usize * per_image;
            let joints_b = &all[start..start + per_image];
            let (push, pull) =
                self.image_loss(&flat.get(b), joints_b, js[1] as usize, js[2] as usize)?;
            pushes.push(push);
            pulls.push(pull);
        }
        Ok((Tensor::stack(&pushes, 0), Tensor::stack(&pulls, 0)))
    }

    /// The loss of one image: `tags` flattened to `[L]`, `joints` the image's
    /// `[people, num_joints, 2]` entries in row-major order. Returns scalar `(push, pull)`.
    pub fn image_loss(
        &self,
        tags: &Tensor,
        joints: &[i64],
        people: usize,
        num_joints: usize,
    ) -> Result<(Tensor, Tensor)> {
        if joints.len() != people * num_joints * 2 {
            return Err(shape_err(format!(
                "AELoss: {} joint values for {people} people x {num_joints} joints x 2",
                joints.len()
            )));
        }
        let tags = tags.reshape([-1]);
        let len = tags.size()[0];
        let opts = (tags.kind(), tags.device());
        let mut means = Vec::new();
        let mut pull = Tensor::zeros([0i64; 0], opts);
        for (p, person) in joints.chunks_exact(num_joints * 2).enumerate() {
            let mut idx = Vec::new();
            for (k, joint) in person.chunks_exact(2).enumerate() {
                if joint[1] > 0 {
                    if joint[0] < 0 || joint[0] >= len {
                        return Err(shape_err(format!(
                            "AELoss: person {p} joint {k} has flat index {} outside the tag \
                             map of {len} values",
                            joint[0]
                        )));
                    }
                    idx.push(joint[0]);
                }
            }
            if idx.is_empty() {
                continue;
            }
            let idx = Tensor::from_slice(&idx).to_device(tags.device());
            let person_tags = tags.index_select(0, &idx);
            let mean = person_tags.mean(Kind::Float);
            pull = pull + (&person_tags - &mean).square().mean(Kind::Float);
            means.push(mean);
        }
        let count = means.len();
        let zero = Tensor::zeros([0i64; 0], opts);
        match count {
            0 => Ok((zero, Tensor::zeros([0i64; 0], opts))),
            1 => Ok((zero, pull)),
            _ => {
                let m = Tensor::stack(&means, 0);
                let diff = m.unsqueeze(1) - m.unsqueeze(0);
                let kernel = match self.kind {
                    AeLossKind::Exp => (-diff.square()).exp(),
                    AeLossKind::Max => (-diff.abs() + 1.0).clamp_min(0.0),
                };
                let c = count as f64;
                // The diagonal contributes exactly 1 per person in both kernels.
                let push = (kernel.sum(Kind::Float) - c) / ((c - 1.0) * c) * 0.5;
                Ok((push, pull / c))
            }
        }
    }
}

/// HigherHRNet's `LOSS` section: one entry per output resolution (1/4 first, then 1/2, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub struct MultiResolutionLossConfig {
    pub with_heatmaps_loss: Vec<bool>,
    pub heatmaps_loss_factor: Vec<f64>,
    pub with_ae_loss: Vec<bool>,
    pub push_loss_factor: Vec<f64>,
    pub pull_loss_factor: Vec<f64>,
    pub ae_loss_type: AeLossKind,
}

impl Default for MultiResolutionLossConfig {
    /// The official COCO HigherHRNet settings (W32 and W48 alike).
    fn default() -> Self {
        MultiResolutionLossConfig {
            with_heatmaps_loss: vec![true, true],
            heatmaps_loss_factor: vec![1.0, 1.0],
            with_ae_loss: vec![true, false],
            push_loss_factor: vec![0.001, 0.001],
            pull_loss_factor: vec![0.001, 0.001],
            ae_loss_type: AeLossKind::Exp,
        }
    }
}

/// The terms of one step: per resolution and per image (`[N]`, factors applied), and `total`,
/// the scalar to back-propagate (each term averaged over the batch, then summed).
#[derive(Debug)]
pub struct MultiResolutionLossTerms {
    pub heatmaps: Vec<Option<Tensor>>,
    pub push: Vec<Option<Tensor>>,
    pub pull: Vec<Option<Tensor>>,
    pub total: Tensor,
}

/// `MultiLossFactory` of HigherHRNet: heatmap loss on the first `num_joints` channels of each
/// output, AE loss on the remaining (tag) channels where enabled.
#[derive(Debug, Clone)]
pub struct MultiResolutionLoss {
    num_joints: i64,
    config: MultiResolutionLossConfig,
    ae: AeLoss,
}

impl MultiResolutionLoss {
    pub fn new(num_joints: i64, config: MultiResolutionLossConfig) -> Result<Self> {
        let n = config.with_heatmaps_loss.len();
        let lens = [
            ("HEATMAPS_LOSS_FACTOR", config.heatmaps_loss_factor.len()),
            ("WITH_AE_LOSS", config.with_ae_loss.len()),
            ("PUSH_LOSS_FACTOR", config.push_loss_factor.len()),
            ("PULL_LOSS_FACTOR", config.pull_loss_factor.len()),
        ];
        for (name, len) in lens {
            if len != n {
                return Err(shape_err(format!(
                    "LOSS.{name} has {len} entries but LOSS.WITH_HEATMAPS_LOSS has {n}"
                )));
            }
        }
        if n == 0 {
            return Err(shape_err(
                "LOSS.WITH_HEATMAPS_LOSS is empty: no output to train".into(),
            ));
        }
        if num_joints <= 0 {
            return Err(shape_err(format!(
                "num_joints must be positive, got {num_joints}"
            )));
        }
        let ae = AeLoss::new(config.ae_loss_type);
        Ok(MultiResolutionLoss {
            num_joints,
            config,
            ae,
        })
    }

    pub fn config(&self) -> &MultiResolutionLossConfig {
        &self.config
    }

    /// `outputs[i]`: the network output at resolution `i` (`[N, K (+ tags), H, W]`);
    /// `heatmaps[i]`, `masks[i]`: targets `[N, K, H, W]` and `[N, H, W]`; `joints[i]`:
    /// `[N, max_people, K, 2]`, needed only where the AE loss is on.
    ///
    /// The official trainer adds the AE terms of a resolution only inside the branch where
    /// its heatmap loss is on; we add every enabled term (identical for every official config).
    pub fn forward(
        &self,
        outputs: &[Tensor],
        heatmaps: &[Tensor],
        masks: &[Tensor],
        joints: &[Option<Tensor>],
    ) -> Result<MultiResolutionLossTerms> {
        let n = self.config.with_heatmaps_loss.len();
        if outputs.len() != n || heatmaps.len() != n || masks.len() != n || joints.len() != n {
            return Err(shape_err(format!(
                "MultiResolutionLoss: {n} resolutions configured but got {} outputs, {} heatmaps, \
                 {} masks, {} joints",
                outputs.len(),
                heatmaps.len(),
                masks.len(),
                joints.len()
            )));
        }
        let k = self.num_joints;
        let mut terms = MultiResolutionLossTerms {
            heatmaps: Vec::with_capacity(n),
            push: Vec::with_capacity(n),
            pull: Vec::with_capacity(n),
            total: Tensor::zeros([0i64; 0], (Kind::Float, outputs[0].device())),
        };
        for i in 0..n {
            let out = &outputs[i];
            let channels = out.size().get(1).copied().unwrap_or(0);
            let mut offset = 0;
            if self.config.with_heatmaps_loss[i] {
                if channels < k {
                    return Err(shape_err(format!(
                        "MultiResolutionLoss: output {i} has {channels} channels, fewer than \
                         {k} joints"
                    )));
                }
                let l = heatmap_loss(&out.narrow(1, 0, k), &heatmaps[i], &masks[i])?
                    * self.config.heatmaps_loss_factor[i];
                terms.total = terms.total + l.mean(Kind::Float);
                terms.heatmaps.push(Some(l));
                offset = k;
            } else {
                terms.heatmaps.push(None);
            }
            if self.config.with_ae_loss[i] {
                let joints_i = joints[i].as_ref().ok_or_else(|| {
                    shape_err(format!(
                        "MultiResolutionLoss: output {i} has an AE loss but no joints"
                    ))
                })?;
                if channels <= offset {
                    return Err(shape_err(format!(
                        "MultiResolutionLoss: output {i} has no tag channels after {offset}"
                    )));
                }
                let tags = out.narrow(1, offset, channels - offset);
                let (push, pull) = self.ae.forward(&tags, joints_i)?;
                let push = push * self.config.push_loss_factor[i];
                let pull = pull * self.config.pull_loss_factor[i];
                terms.total = terms.total + push.mean(Kind::Float) + pull.mean(Kind::Float);
                terms.push.push(Some(push));
                terms.pull.push(Some(pull));
            } else {
                terms.push.push(None);
                terms.pull.push(None);
            }
        }
        Ok(terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * (1.0 + b.abs())
    }

    #[test]
    fn joints_mse_matches_per_joint_definition() {
        let pred = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let target = Tensor::rand([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let w = Tensor::from_slice(&[1f32, 0., 1., 1., 1., 0.]).reshape([2, 3, 1]);
        let got = joints_mse_loss(&pred, &target, Some(&w))
            .unwrap()
            .double_value(&[]);
        // Per joint: 0.5 * mean over (batch, pixels), then mean over joints.
        let mut expect = 0.0;
        for j in 0..3 {
            let wj = w.select(1, j).reshape([2, 1, 1]);
            let d = (pred.select(1, j) * &wj - target.select(1, j) * &wj).square();
            expect += 0.5 * d.mean(Kind::Float).double_value(&[]);
        }
        assert!(close(got, expect / 3.0), "{got} vs {}", expect / 3.0);
        assert!(joints_mse_loss(&pred, &target, Some(&w.reshape([6]))).is_err());
        assert!(joints_mse_loss(&pred, &target.narrow(1, 0, 2), None).is_err());
    }

    #[test]
    fn heatmap_loss_respects_mask() {
        let pred = Tensor::ones([1, 2, 2, 2], (Kind::Float, Device::Cpu));
        let target = Tensor::zeros([1, 2, 2, 2], (Kind::Float, Device::Cpu));
        let mask = Tensor::from_slice(&[1f32, 0., 0., 0.]).reshape([1, 2, 2]);
        let l = heatmap_loss(&pred, &target, &mask).unwrap();
        assert_eq!(l.size(), vec![1]);
        assert!(close(l.double_value(&[0]), 0.25));
        assert!(heatmap_loss(&pred, &target, &mask.reshape([1, 4])).is_err());
    }

    /// The worked example of the official `test_ae_loss`: tags 0.0..3.1 in a [1,2,4,4] map,
    /// two people with joints at flat indices (3, 22) and (10, 30).
    #[test]
    fn ae_loss_official_example() {
        let tags = (Tensor::arange(32, (Kind::Float, Device::Cpu)) * 0.1).reshape([1, 2, 4, 4]);
        let joints = Tensor::from_slice(&[3i64, 1, 22, 1, 10, 1, 30, 1]).reshape([1, 2, 2, 2]);
        let (push, pull) = AeLoss::new(AeLossKind::Exp)
            .forward(&tags, &joints)
            .unwrap();
        // person means: (0.3+2.2)/2 = 1.25, (1.0+3.0)/2 = 2.0
        // pull: ((0.95^2*2)/2 + (1.0^2*2)/2)/2 = (0.9025 + 1.0)/2
        let pull_expect = (0.9025 + 1.0) / 2.0;
        // push: 2*exp(-0.75^2) / (2*1) * 0.5
        let push_expect = (2.0 * (-0.5625f64).exp()) / 2.0 * 0.5;
        assert!(close(pull.double_value(&[0]), pull_expect));
        assert!(close(push.double_value(&[0]), push_expect));
        let (push_max, _) = AeLoss::new(AeLossKind::Max)
            .forward(&tags, &joints)
            .unwrap();
        assert!(close(push_max.double_value(&[0]), 2.0 * 0.25 / 2.0 * 0.5));
    }

    #[test]
    fn ae_loss_padding_and_single_person() {
        let tags = Tensor::randn([2, 1, 2, 2], (Kind::Float, Device::Cpu));
        // image 0: nobody visible; image 1: one person with two joints
        let joints = Tensor::from_slice(&[0i64, 0, 1, 0, 0, 1, 3, 1]).reshape([2, 1, 2, 2]);
        let (push, pull) = AeLoss::default().forward(&tags, &joints).unwrap();
        assert_eq!(push.double_value(&[0]), 0.0);
        assert_eq!(pull.double_value(&[0]), 0.0);
        assert_eq!(push.double_value(&[1]), 0.0);
        let a = tags.double_value(&[1, 0, 0, 0]);
        let b = tags.double_value(&[1, 0, 1, 1]);
        assert!(close(pull.double_value(&[1]), ((a - b) / 2.0).powi(2)));
    }

    #[test]
    fn ae_loss_rejects_bad_indices() {
        let tags = Tensor::zeros([1, 1, 2, 2], (Kind::Float, Device::Cpu));
        let joints = Tensor::from_slice(&[4i64, 1]).reshape([1, 1, 1, 2]);
        let err = AeLoss::default()
            .forward(&tags, &joints)
            .unwrap_err()
            .to_string();
        assert!(err.contains("flat index 4"), "{err}");
        let joints = Tensor::from_slice(&[0i64, 1]).reshape([1, 1, 2]);
        assert!(AeLoss::default().forward(&tags, &joints).is_err());
    }

    #[test]
    fn multi_resolution_loss_checks_lengths() {
        let mut cfg = MultiResolutionLossConfig::default();
        cfg.push_loss_factor.pop();
        assert!(MultiResolutionLoss::new(17, cfg).is_err());
        let loss = MultiResolutionLoss::new(2, MultiResolutionLossConfig::default()).unwrap();
        let out = Tensor::zeros([1, 4, 2, 2], (Kind::Float, Device::Cpu));
        let hm = Tensor::zeros([1, 2, 2, 2], (Kind::Float, Device::Cpu));
        let mask = Tensor::ones([1, 2, 2], (Kind::Float, Device::Cpu));
        // missing joints for the AE loss of resolution 0
        assert!(loss
            .forward(
                &[out.shallow_clone(), hm.shallow_clone()],
                &[hm.shallow_clone(), hm.shallow_clone()],
                &[mask.shallow_clone(), mask.shallow_clone()],
                &[None, None]
            )
            .is_err());
    }
}
