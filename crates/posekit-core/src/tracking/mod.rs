//! Tracking people across video frames and smoothing their keypoints.
//!
//! A tracker gives each person of a frame a `track_id` that stays the same while the same
//! person is seen, so that results can be followed through a video and drawn in one colour per
//! person. Two trackers are offered, after the two designs of the OpenMMLab projects:
//!
//! * [`greedy::GreedyTracker`]: MMPose's demo tracker (`_track_by_iou` / `_track_by_oks` of
//!   `mmpose/apis/inference_tracking.py`): each person, in the order given, takes the best
//!   still-unused person of the previous frame when their box IoU (or OKS) is above a
//!   threshold; otherwise a new id, but only for a pose with enough keypoints.
//! * [`kalman::KalmanTracker`]: after MMDeploy's `PoseTracker`: each track's keypoints are
//!   predicted by a constant-velocity Kalman filter, people are associated to tracks by keypoint
//!   distance with optimal (Hungarian) matching and a gate, people left over are matched to the
//!   tracks left over by box IoU (a second pass that recovers tracks whose keypoints moved too
//!   far), and a track is dropped after a number of missed frames, so a person who leaves for
//!   fewer frames gets the same id back.
//!
//! Smoothing works per track ([`smoothing`]): OneEuro online (frame by frame) and
//! Savitzky-Golay over a whole track offline.

pub mod greedy;
pub mod kalman;
pub mod smoothing;

use crate::Pose;

pub use greedy::{GreedyMetric, GreedyParams, GreedyTracker};
pub use kalman::{KalmanParams, KalmanTracker};

/// A tracker: called once per frame, in frame order.
pub trait Tracker: Send {
    /// Gives each of this frame's poses (in their order) a track id, or `None` for a pose that
    /// matches no track and has too few keypoints to start one.
    fn update(&mut self, poses: &[Pose]) -> Vec<Option<u64>> {
        self.update_with_crops(poses, &[])
    }

    /// [`Self::update`] for poses some of which were found in the crop of a track's predicted
    /// box (`crops[i] = Some(track_id)`: a top-down model between person proposals). As
    /// MMDeploy's `PoseTracker` does, such a pose continues the track it was cropped for
    /// (when that track is alive and the pose has `min_keypoints` keypoints; otherwise it
    /// gets no id, its track a missed frame) instead of being associated again: the crop
    /// already says who it is, and a re-association could hand the track's id to another
    /// pose or give this one a new id. The other poses (`None`, or past the end of `crops`)
    /// are associated as [`Self::update`] does, with the tracks no crop took.
    fn update_with_crops(&mut self, poses: &[Pose], crops: &[Option<u64>]) -> Vec<Option<u64>>;

    /// Where the live tracks are expected in the next frame: `(track_id, [x0, y0, x1, y1])`.
    /// A top-down model crops these boxes on the frames without person proposals.
    fn predicted_boxes(&self) -> Vec<(u64, [f32; 4])>;
}

/// Which tracker a run uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TrackerKind {
    /// No tracking: people have no `track_id`.
    None,
    Greedy(GreedyParams),
    #[default]
    Kalman,
}

/// A tracker of `kind` for poses whose keypoints count when their score is above
/// `min_keypoint_score`; `None` for [`TrackerKind::None`].
pub fn make_tracker(
    kind: &TrackerKind,
    kalman: &KalmanParams,
    min_keypoint_score: f32,
) -> Option<Box<dyn Tracker>> {
    match kind {
        TrackerKind::None => None,
        TrackerKind::Greedy(params) => {
            let mut params = params.clone();
            params.min_keypoint_score = min_keypoint_score;
            Some(Box::new(GreedyTracker::new(params)))
        }
        TrackerKind::Kalman => {
            let mut params = kalman.clone();
            params.min_keypoint_score = min_keypoint_score;
            Some(Box::new(KalmanTracker::new(params)))
        }
    }
}

/// The tracks (`ids`, indices into the tracker's list) that the poses cropped from their boxes
/// continue: `(track index, pose index)`, one pose per track (the first, should two claim
/// one), only for poses with at least `min_keypoints` keypoints above `min_score`.
pub(crate) fn cropped_matches(
    ids: &[u64],
    poses: &[Pose],
    crops: &[Option<u64>],
    min_keypoints: usize,
    min_score: f32,
) -> Vec<(usize, usize)> {
    let mut taken = vec![false; ids.len()];
    let mut pairs = Vec::new();
    for (d, crop) in crops.iter().enumerate().take(poses.len()) {
        let Some(id) = crop else { continue };
        let Some(t) = ids.iter().position(|i| i == id) else {
            continue;
        };
        if taken[t] || visible_count(&poses[d], min_score) < min_keypoints {
            continue;
        }
        taken[t] = true;
        pairs.push((t, d));
    }
    pairs
}

/// The keypoints of `pose` scoring above `min_score`.
pub(crate) fn visible_count(pose: &Pose, min_score: f32) -> usize {
    pose.keypoints
        .iter()
        .filter(|k| k.score > min_score && k.x.is_finite() && k.y.is_finite())
        .count()
}

/// Tight box `[x0, y0, x1, y1]` of the keypoints above `min_score`.
pub(crate) fn pose_box(pose: &Pose, min_score: f32) -> Option<[f32; 4]> {
    pose.bounds(min_score)
}

/// Intersection over union of two `[x0, y0, x1, y1]` boxes, as MMPose's `_compute_iou`
/// (an empty union counts as `1e-5`, so two degenerate boxes give 0, not NaN).
pub fn box_iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let mut union = area(a) + area(b) - inter;
    if union == 0.0 {
        union = 1e-5;
    }
    inter / union
}

/// OKS between two detected poses, as MMPose's `oks_iou` used by its OKS tracker: each
/// keypoint term is `exp(-d² / var / ((area_a + area_b) / 2 + eps) / 2)` with
/// `var = (2 sigma)²`, averaged over the keypoints visible in both (MMPose averages over all;
/// a joint one of the two did not find has no position to compare, so it is left out here).
pub fn pose_oks(a: &Pose, b: &Pose, sigmas: &[f64], min_score: f32) -> f32 {
    let area = |p: &Pose| {
        pose_box(p, min_score)
            .map(|r| ((r[2] - r[0]) * (r[3] - r[1])) as f64)
            .unwrap_or(0.0)
    };
    let scale = (area(a) + area(b)) / 2.0 + f64::EPSILON;
    let mut sum = 0.0;
    let mut n = 0usize;
    for (j, (ka, kb)) in a.keypoints.iter().zip(&b.keypoints).enumerate() {
        if ka.score <= min_score || kb.score <= min_score {
            continue;
        }
        let sigma = sigmas.get(j).copied().unwrap_or(DEFAULT_SIGMA);
        let var = (2.0 * sigma) * (2.0 * sigma);
        let dx = (ka.x - kb.x) as f64;
        let dy = (ka.y - kb.y) as f64;
        sum += (-(dx * dx + dy * dy) / var / scale / 2.0).exp();
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        (sum / n as f64) as f32
    }
}

/// Sigma for a keypoint the layout gives none (COCO's mean sigma, about that of a wrist).
pub const DEFAULT_SIGMA: f64 = 0.06;

#[cfg(test)]
pub(crate) mod test_support {
    use crate::{Keypoint, Pose};

    /// A 17-joint stick figure of `height` pixels whose top-left joint region is at `(x, y)`:
    /// joints spread over a `height / 3 × height` box so that box IoU and OKS behave as for a
    /// person.
    pub fn figure(x: f32, y: f32, height: f32) -> Pose {
        let w = height / 3.0;
        let rel: [(f32, f32); 17] = [
            (0.5, 0.05),
            (0.45, 0.03),
            (0.55, 0.03),
            (0.4, 0.05),
            (0.6, 0.05),
            (0.2, 0.2),
            (0.8, 0.2),
            (0.1, 0.4),
            (0.9, 0.4),
            (0.05, 0.55),
            (0.95, 0.55),
            (0.3, 0.55),
            (0.7, 0.55),
            (0.3, 0.78),
            (0.7, 0.78),
            (0.3, 1.0),
            (0.7, 1.0),
        ];
        Pose::new(
            rel.iter()
                .map(|&(u, v)| Keypoint::new(x + u * w, y + v * height, 0.9))
                .collect(),
            0.9,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::figure;
    use super::*;

    #[test]
    fn iou_of_same_disjoint_and_half_overlapping_boxes() {
        assert_eq!(box_iou([0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(
            box_iou([0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]),
            0.0
        );
        let half = box_iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]);
        assert!((half - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(box_iou([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]), 0.0);
    }

    #[test]
    fn oks_is_one_for_the_same_pose_and_falls_with_distance() {
        let sigmas = crate::oks::coco17_sigmas();
        let a = figure(100.0, 100.0, 150.0);
        assert!((pose_oks(&a, &a, &sigmas, 0.1) - 1.0).abs() < 1e-6);
        let near = pose_oks(&a, &figure(105.0, 100.0, 150.0), &sigmas, 0.1);
        let far = pose_oks(&a, &figure(160.0, 100.0, 150.0), &sigmas, 0.1);
        assert!(near > 0.5 && far < near && far < 0.1, "{near} {far}");
    }
}
