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
    ///
    /// The official code loops over images and people in Python; here the whole batch is a
    /// handful of tensor ops (one gather, masked sums over joints and over pairs of people), so
    /// that a GPU step does not launch a kernel per person. The visible indices are checked on
    /// the CPU first: an out-of-range index would otherwise be a libtorch panic (or, on CUDA, a
    /// device-side assert).
    pub fn forward(&self, tags: &Tensor, joints: &Tensor) -> Result<(Tensor, Tensor)> {
        let ts = tags.size();
        let js = joints.size();
        if ts.is_empty() || js.len() != 4 || js[3] != 2 || js[0] != ts[0] {
            return Err(shape_err(format!(
                "AELoss: tags {ts:?} must be [N, ...] and joints {js:?} [N, max_people, K, 2] \
                 with the same N"
            )));
        }
        let (n, people, num_joints) = (ts[0], js[1], js[2]);
        let flat = tags.reshape([n, -1]);
        let len = flat.size()[1];
        let joints_cpu = joints.to_kind(Kind::Int64).to_device(tch::Device::Cpu);
        let values: Vec<i64> = Vec::try_from(joints_cpu.reshape([-1]))
            .map_err(|e| shape_err(format!("AELoss: cannot read joints: {e}")))?;
        for (i, joint) in values.chunks_exact(2).enumerate() {
            if joint[1] > 0 && (joint[0] < 0 || joint[0] >= len) {
                let per_image = (people * num_joints) as usize;
                let (b, rest) = (i / per_image, i % per_image);
                return Err(shape_err(format!(
                    "AELoss: image {b} person {} joint {} has flat index {} outside the tag \
                     map of {len} values",
                    rest / num_joints as usize,
                    rest % num_joints as usize,
                    joint[0]
                )));
            }
        }
        if people == 0 || num_joints == 0 {
            let zeros = Tensor::zeros([n], (flat.kind(), flat.device()));
            return Ok((zeros.shallow_clone(), zeros));
        }

        let device = flat.device();
        let joints = joints_cpu.to_device(device);
        let visible = joints.select(3, 1).gt(0); // [N, P, K]
                                                 // Invisible entries may hold any index (padding): point them at 0, they are masked.
        let index = joints
            .select(3, 0)
            .where_self(&visible, &Tensor::zeros([], (Kind::Int64, device)));
        let weight = visible.to_kind(flat.kind());
        let picked = flat
            .gather(1, &index.reshape([n, people * num_joints]), false)
            .reshape([n, people, num_joints]);
        let count = weight.sum_dim_intlist(&[2i64][..], false, flat.kind()); // [N, P]
        let present = count.gt(0).to_kind(flat.kind()); // people with a visible joint
        let denom = count.clamp_min(1.0);
        let mean = (&picked * &weight).sum_dim_intlist(&[2i64][..], false, flat.kind()) / &denom;
        let spread = ((&picked - mean.unsqueeze(2)).square() * &weight).sum_dim_intlist(
            &[2i64][..],
            false,
            flat.kind(),
        ) / &denom;
        let num_people = present.sum_dim_intlist(&[1i64][..], false, flat.kind()); // [N]
        let pull = (spread * &present).sum_dim_intlist(&[1i64][..], false, flat.kind())
            / num_people.clamp_min(1.0);

        let diff = mean.unsqueeze(2) - mean.unsqueeze(1); // [N, P, P]
        let kernel = match self.kind {
            AeLossKind::Exp => (-diff.square()).exp(),
            AeLossKind::Max => (-diff.abs() + 1.0).clamp_min(0.0),
        };
        let pairs = present.unsqueeze(2) * present.unsqueeze(1);
        // The diagonal contributes exactly 1 per person in both kernels; the official code
        // subtracts it after summing.
        let off_diagonal =
            (kernel * pairs).sum_dim_intlist(&[1i64, 2][..], false, flat.kind()) - &num_people;
        let push_pairs = (&num_people - 1.0) * &num_people;
        let push = (off_diagonal / push_pairs.clamp_min(1.0) * 0.5)
            * num_people.ge(2.0).to_kind(flat.kind());
        Ok((push, pull))
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
        let joints = Tensor::from_slice(joints).reshape([1, people as i64, num_joints as i64, 2]);
        let (push, pull) = self.forward(&tags.reshape([1, -1]), &joints)?;
        Ok((push.squeeze_dim(0), pull.squeeze_dim(0)))
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
                // A new tensor, not `+=`: an in-place add would change a value autograd saved.
                #[allow(clippy::assign_op_pattern)]
                {
                    terms.total = terms.total + l.mean(Kind::Float);
                }
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

    /// The official per-person loop, written plainly, against the batched implementation.
    fn loop_reference(
        tags: &Tensor,
        joints: &[i64],
        people: usize,
        k: usize,
        max: bool,
    ) -> (f64, f64) {
        let tags = tags.reshape([-1]);
        let mut means = Vec::new();
        let mut pull = 0.0;
        for person in joints.chunks_exact(2 * k).take(people) {
            let vals: Vec<f64> = person
                .chunks_exact(2)
                .filter(|j| j[1] > 0)
                .map(|j| tags.double_value(&[j[0]]))
                .collect();
            if vals.is_empty() {
                continue;
            }
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            pull += vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / vals.len() as f64;
            means.push(m);
        }
        let n = means.len() as f64;
        if means.len() < 2 {
            return (0.0, if n > 0.0 { pull / n } else { 0.0 });
        }
        let mut push = 0.0;
        for a in &means {
            for b in &means {
                push += if max {
                    (1.0 - (a - b).abs()).max(0.0)
                } else {
                    (-(a - b).powi(2)).exp()
                };
            }
        }
        ((push - n) / ((n - 1.0) * n) * 0.5, pull / n)
    }

    #[test]
    fn batched_ae_loss_equals_the_per_person_loop() {
        tch::manual_seed(7);
        let (b, p, k, hw) = (3i64, 5i64, 4i64, 6i64);
        let tags = Tensor::randn([b, k, hw], (Kind::Double, Device::Cpu));
        let idx = Tensor::randint(k * hw, [b, p, k], (Kind::Int64, Device::Cpu));
        let vis = Tensor::rand([b, p, k], (Kind::Float, Device::Cpu))
            .gt(0.4)
            .to_kind(Kind::Int64);
        let joints = Tensor::stack(&[idx, vis], 3);
        let flat: Vec<i64> = Vec::try_from(joints.reshape([-1])).unwrap();
        for kind in [AeLossKind::Exp, AeLossKind::Max] {
            let (push, pull) = AeLoss::new(kind).forward(&tags, &joints).unwrap();
            for i in 0..b {
                let per = (p * k * 2) as usize;
                let js = &flat[i as usize * per..(i as usize + 1) * per];
                let (ep, eq) = loop_reference(
                    &tags.get(i),
                    js,
                    p as usize,
                    k as usize,
                    kind == AeLossKind::Max,
                );
                assert!(close(push.double_value(&[i]), ep), "{kind:?} push {i}");
                assert!(close(pull.double_value(&[i]), eq), "{kind:?} pull {i}");
                let (sp, sq) = AeLoss::new(kind)
                    .image_loss(&tags.get(i), js, p as usize, k as usize)
                    .unwrap();
                assert!(close(sp.double_value(&[]), ep) && close(sq.double_value(&[]), eq));
            }
        }
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
