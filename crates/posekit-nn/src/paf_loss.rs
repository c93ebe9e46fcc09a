//! OpenPose's training loss (CMU's `pose_train_test.prototxt`): at every stage, the PAF branch
//! (`L1`) and the heatmap branch (`L2`) each get a Caffe `EuclideanLoss` between the prediction
//! and the target, both multiplied by the ignore mask (`weight_stage{t}_L{1,2}` = prediction x
//! `vec_weight` / `heat_weight`, the label likewise), and the twelve terms of the six stages
//! are summed with weight 1 (intermediate supervision). `EuclideanLoss` is
//! `sum((a - b)^2) / (2 N)` with `N` the batch size, so the loss is a per-image sum over
//! pixels and channels, not a mean.
//!
//! The PyTorch port (`train_VGG19.py`) replaced it by an unmasked `MSELoss(reduction='mean')`,
//! and tf-pose by an unmasked `tf.nn.l2_loss / batch`; this follows CMU.

use posekit_core::{Error, Result};
use tch::Tensor;

/// One branch's masked Euclidean loss: `sum(((pred - target) * mask)^2) / (2 N)` for `pred`
/// and `target` `[N, C, H, W]` and `mask` `[N, H, W]` (broadcast over the channels).
pub fn masked_euclidean_loss(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (ps, ts, ms) = (pred.size(), target.size(), mask.size());
    if ps.len() != 4 || ps != ts || ms.len() != 3 || ms[..] != [ps[0], ps[2], ps[3]] {
        return Err(Error::Shape(format!(
            "masked Euclidean loss: prediction {ps:?}, target {ts:?} and mask {ms:?} do not \
             match ([N, C, H, W], the same, [N, H, W])"
        )));
    }
    let m = mask.unsqueeze(1);
    let diff = (pred - target) * m;
    Ok(diff.square().sum(pred.kind()) / (2.0 * ps[0] as f64))
}

/// The terms of [`paf_loss`].
pub struct PafLossTerms {
    pub total: Tensor,
    /// Per stage, in the network's order: (PAF loss, heatmap loss) as plain numbers.
    pub stages: Vec<(f64, f64)>,
}

/// The sum over stages of the masked Euclidean losses of PAFs and heatmaps. `stages` holds
/// each stage's `(pafs, heatmaps)` predictions.
pub fn paf_loss(
    stages: &[(&Tensor, &Tensor)],
    paf_target: &Tensor,
    heatmap_target: &Tensor,
    mask: &Tensor,
) -> Result<PafLossTerms> {
    let mut total: Option<Tensor> = None;
    let mut terms = Vec::with_capacity(stages.len());
    for (pafs, heatmaps) in stages {
        let l1 = masked_euclidean_loss(pafs, paf_target, mask)?;
        let l2 = masked_euclidean_loss(heatmaps, heatmap_target, mask)?;
        terms.push((l1.double_value(&[]), l2.double_value(&[])));
        let stage = l1 + l2;
        total = Some(match total {
            Some(t) => t + stage,
            None => stage,
        });
    }
    let total = total.ok_or_else(|| Error::Shape("PAF loss: the network has no stage".into()))?;
    Ok(PafLossTerms {
        total,
        stages: terms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn euclidean_loss_is_half_the_masked_squared_sum_per_image() {
        let pred =
            Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]).view([2, 1, 2, 2]);
        let target = Tensor::zeros([2, 1, 2, 2], (Kind::Float, tch::Device::Cpu));
        let mask = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]).view([2, 2, 2]);
        let l = masked_euclidean_loss(&pred, &target, &mask).unwrap();
        // (1 + 4 + 16) / (2 * 2)
        assert!((l.double_value(&[]) - 21.0 / 4.0).abs() < 1e-6);
        let bad = Tensor::zeros([2, 3, 3], (Kind::Float, tch::Device::Cpu));
        assert!(masked_euclidean_loss(&pred, &target, &bad).is_err());
        let terms = paf_loss(&[(&pred, &pred), (&pred, &target)], &target, &target, &mask).unwrap();
        assert!((terms.total.double_value(&[]) - 3.0 * 21.0 / 4.0).abs() < 1e-5);
        assert_eq!(terms.stages.len(), 2);
        assert!(paf_loss(&[], &target, &target, &mask).is_err());
    }
}
