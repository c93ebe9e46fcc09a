//! Pose-level non-maximum suppression and rescoring as the official HRNet / SimpleBaseline
//! test code does it after top-down inference.
//!
//! Top-down models see one crop per detected box, and overlapping boxes yield near-duplicate
//! poses; COCO counts every duplicate as a false positive. HRNet therefore (1) rescores each
//! pose as box score x mean of its confident keypoint scores and (2) suppresses poses whose OKS
//! with a better one exceeds 0.9. Reproducing both exactly is what lets published HRNet AP be
//! reached with the same detections.
//!
//! The OKS used here is the NMS variant, not the evaluation one: both poses' keypoints are
//! predictions, the scale is the mean of the two areas (HRNet passes the crop area,
//! `scale_w * scale_h * 200²`), and no keypoint is skipped unless `in_vis_thre` is given.

use crate::error::{Error, Result};
use crate::oks::pairwise_sum;
use crate::pose::{Keypoint, Pose};

/// HRNet's `OKS_THRE` for `oks_nms` (`TEST.OKS_THRE = 0.9`).
pub const HRNET_OKS_THRESHOLD: f64 = 0.9;
/// HRNet's `IN_VIS_THRE`: keypoint scores at or below it do not count in the rescoring.
pub const HRNET_IN_VIS_THRESHOLD: f32 = 0.2;
/// `soft_oks_nms` keeps at most this many poses per image (hard-coded in the official code, the
/// same as COCO's maxDets).
pub const SOFT_NMS_MAX_POSES: usize = 20;

/// The official rescoring: `box_score * mean(s for s in keypoint scores if s > in_vis_thre)`,
/// and 0 when no keypoint is above the threshold.
///
/// A box the detector is sure of but whose pose is a guess ends up low, which orders
/// detections for AP by pose quality rather than box quality. The arithmetic is `f32`, as in
/// the official code (numpy float32 scores; the Python threshold is compared as float32), so a
/// score of exactly `0.2f32` is not above a threshold of 0.2.
pub fn hrnet_rescore(box_score: f32, keypoints: &[Keypoint], in_vis_thre: f32) -> f32 {
    let mut sum = 0.0f32;
    let mut count = 0usize;
    for k in keypoints {
        if k.score > in_vis_thre {
            sum += k.score;
            count += 1;
        }
    }
    let mean = if count == 0 { 0.0 } else { sum / count as f32 };
    mean * box_score
}

/// The NMS OKS between pose `a` and pose `b` (HRNet's `oks_iou` for one pair).
///
/// With `in_vis_thre`, only keypoints whose score in `b` is above it count: the official code
/// writes `list(vg > t) and list(vd > t)`, and Python's `and` of two non-empty lists is the
/// second list, so `a`'s scores are never looked at. That is reproduced because it is what
/// the published numbers were computed with. No counted keypoint gives 0.
///
/// As in the official code the squared distances are taken in `f32` (the poses are float32
/// arrays there) and the rest in `f64`.
pub fn nms_oks(
    a: &Pose,
    area_a: f64,
    b: &Pose,
    area_b: f64,
    sigmas: &[f64],
    in_vis_thre: Option<f32>,
) -> f64 {
    let scale = (area_a + area_b) / 2.0 + f64::EPSILON;
    let mut terms = Vec::with_capacity(sigmas.len());
    for ((g, d), s) in a.keypoints.iter().zip(&b.keypoints).zip(sigmas) {
        if let Some(t) = in_vis_thre {
            if d.score <= t {
                continue;
            }
        }
        let var = (s * 2.0) * (s * 2.0);
        let dx = d.x - g.x;
        let dy = d.y - g.y;
        let e = f64::from(dx * dx + dy * dy) / var / scale / 2.0;
        terms.push((-e).exp());
    }
    if terms.is_empty() {
        0.0
    } else {
        pairwise_sum(&terms) / terms.len() as f64
    }
}

/// HRNet's `oks_nms`: repeatedly keep the best remaining pose and drop every pose whose OKS with
/// it is above `thresh`. Returns kept indices, best first.
///
/// `areas[i]` is pose `i`'s scale term; `sigmas` has one entry per keypoint. Ties in score are
/// taken in decreasing index order, as numpy's `argsort()[::-1]` does for short arrays.
pub fn oks_nms(
    poses: &[Pose],
    areas: &[f64],
    thresh: f64,
    sigmas: &[f64],
    in_vis_thre: Option<f32>,
) -> Result<Vec<usize>> {
    check_inputs(poses, areas, sigmas)?;
    let mut order = descending_order(poses.iter().map(|p| f64::from(p.score)));
    let mut keep = Vec::new();
    while let Some((&best, rest)) = order.split_first() {
        keep.push(best);
        order = rest
            .iter()
            .copied()
            .filter(|&j| {
                nms_oks(
                    &poses[best],
                    areas[best],
                    &poses[j],
                    areas[j],
                    sigmas,
                    in_vis_thre,
                ) <= thresh
            })
            .collect();
    }
    Ok(keep)
}

/// HRNet's `soft_oks_nms`: instead of dropping overlapping poses, decay their scores by
/// `exp(-oks² / thresh)` (the Gaussian variant) and re-sort, keeping at most `max_poses`.
/// Returns kept indices in the order they were kept.
///
/// As in the official code only the choice and order of poses changes: the decayed scores are
/// not written back, so the caller's pose scores are what the evaluation sees.
pub fn soft_oks_nms(
    poses: &[Pose],
    areas: &[f64],
    thresh: f64,
    sigmas: &[f64],
    in_vis_thre: Option<f32>,
    max_poses: usize,
) -> Result<Vec<usize>> {
    check_inputs(poses, areas, sigmas)?;
    let mut order = descending_order(poses.iter().map(|p| f64::from(p.score)));
    let mut scores: Vec<f64> = order.iter().map(|&i| f64::from(poses[i].score)).collect();
    let mut keep = Vec::new();
    while !order.is_empty() && keep.len() < max_poses {
        let best = order[0];
        keep.push(best);
        let rest = &order[1..];
        let decayed: Vec<f64> = rest
            .iter()
            .zip(&scores[1..])
            .map(|(&j, &s)| {
                let o = nms_oks(
                    &poses[best],
                    areas[best],
                    &poses[j],
                    areas[j],
                    sigmas,
                    in_vis_thre,
                );
                s * (-(o * o) / thresh).exp()
            })
            .collect();
        let resort = descending_order(decayed.iter().copied());
        order = resort.iter().map(|&r| rest[r]).collect();
        scores = resort.iter().map(|&r| decayed[r]).collect();
    }
    Ok(keep)
}

/// Indices by descending value; equal values in decreasing index order (the reverse of a
/// stable ascending sort, which is what `argsort()[::-1]` gives).
fn descending_order(values: impl Iterator<Item = f64>) -> Vec<usize> {
    let values: Vec<f64> = values.collect();
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| {
        values[a]
            .partial_cmp(&values[b])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    order.reverse();
    order
}

fn check_inputs(poses: &[Pose], areas: &[f64], sigmas: &[f64]) -> Result<()> {
    if poses.len() != areas.len() {
        return Err(Error::Shape(format!(
            "OKS-NMS: {} poses but {} areas",
            poses.len(),
            areas.len()
        )));
    }
    if let Some((i, p)) = poses
        .iter()
        .enumerate()
        .find(|(_, p)| p.keypoints.len() != sigmas.len())
    {
        return Err(Error::Shape(format!(
            "OKS-NMS: pose {i} has {} keypoints but there are {} sigmas",
            p.keypoints.len(),
            sigmas.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oks::coco17_sigmas;

    fn pose(x: f32, score: f32) -> Pose {
        let keypoints = (0..17)
            .map(|j| Keypoint::new(x + (j % 3) as f32 * 10.0, 50.0 + j as f32 * 8.0, 0.8))
            .collect();
        Pose::new(keypoints, score)
    }

    #[test]
    fn rescore_uses_confident_keypoints_only() {
        let mut kps = vec![Keypoint::new(0.0, 0.0, 0.1); 17];
        kps[0].score = 0.9;
        kps[1].score = 0.5;
        let s = hrnet_rescore(0.8, &kps, HRNET_IN_VIS_THRESHOLD);
        assert_eq!(s, (0.9f32 + 0.5) / 2.0 * 0.8);
        assert_eq!(
            hrnet_rescore(0.8, &[Keypoint::new(0.0, 0.0, 0.2); 17], 0.2),
            0.0
        );
    }

    #[test]
    fn oks_of_identical_poses_is_one() {
        let p = pose(100.0, 0.9);
        assert_eq!(nms_oks(&p, 1e4, &p, 1e4, &coco17_sigmas(), None), 1.0);
    }

    #[test]
    fn in_vis_thre_looks_at_the_second_pose_only() {
        let a = pose(100.0, 0.9);
        let mut b = pose(100.0, 0.9);
        for k in b.keypoints.iter_mut().skip(1) {
            k.x += 30.0; // far, but dropped below
            k.score = 0.1;
        }
        let sigmas = coco17_sigmas();
        assert_eq!(nms_oks(&a, 1e4, &b, 1e4, &sigmas, Some(0.2)), 1.0);
        // a's own scores do not matter.
        let mut a_low = a.clone();
        a_low.keypoints.iter_mut().for_each(|k| k.score = 0.0);
        assert_eq!(nms_oks(&a_low, 1e4, &b, 1e4, &sigmas, Some(0.2)), 1.0);
        assert!(nms_oks(&a, 1e4, &b, 1e4, &sigmas, None) < 0.5);
        b.keypoints[0].score = 0.0;
        assert_eq!(nms_oks(&a, 1e4, &b, 1e4, &sigmas, Some(0.2)), 0.0);
    }

    #[test]
    fn oks_nms_drops_duplicates_and_keeps_distinct_people() {
        let poses = vec![pose(100.0, 0.7), pose(100.5, 0.9), pose(400.0, 0.8)];
        let areas = vec![2e4; 3];
        let keep = oks_nms(&poses, &areas, HRNET_OKS_THRESHOLD, &coco17_sigmas(), None).unwrap();
        assert_eq!(keep, vec![1, 2]);
    }

    #[test]
    fn equal_scores_prefer_the_later_pose() {
        let poses = vec![pose(100.0, 0.9), pose(100.5, 0.9)];
        let keep = oks_nms(&poses, &[2e4; 2], 0.9, &coco17_sigmas(), None).unwrap();
        assert_eq!(keep, vec![1]);
    }

    #[test]
    fn soft_nms_reorders_by_decayed_score() {
        // The duplicate of the best pose starts second but falls behind the distinct one.
        let poses = vec![pose(100.0, 0.9), pose(100.5, 0.85), pose(400.0, 0.5)];
        let areas = vec![2e4; 3];
        let keep = soft_oks_nms(&poses, &areas, 0.9, &coco17_sigmas(), None, 20).unwrap();
        assert_eq!(keep, vec![0, 2, 1]);
        let o = nms_oks(&poses[0], 2e4, &poses[1], 2e4, &coco17_sigmas(), None);
        assert!(0.85 * (-(o * o) / 0.9).exp() < 0.5);
        let keep = soft_oks_nms(&poses, &areas, 0.9, &coco17_sigmas(), None, 2).unwrap();
        assert_eq!(keep, vec![0, 2]);
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let poses = vec![pose(0.0, 0.5)];
        assert!(oks_nms(&poses, &[], 0.9, &coco17_sigmas(), None).is_err());
        assert!(soft_oks_nms(&poses, &[1.0], 0.9, &[0.1; 3], None, 20).is_err());
        assert_eq!(
            oks_nms(&[], &[], 0.9, &coco17_sigmas(), None).unwrap(),
            Vec::<usize>::new()
        );
    }
}
