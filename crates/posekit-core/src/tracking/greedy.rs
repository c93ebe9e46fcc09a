//! MMPose's greedy tracker (`get_track_id` with `_track_by_iou` / `_track_by_oks` in
//! `mmpose/apis/inference_tracking.py`, the tracker of its 2D tracking demo).
//!
//! For each person of the frame, in the order given, the still-unused person of the previous
//! frame with the highest box IoU (or OKS) is taken when that value is above the threshold, and
//! its id is inherited; otherwise the person gets a new id when it has at least
//! `min_keypoints` keypoints, and none otherwise. Only the previous frame is remembered: a
//! person missing for one frame comes back with a new id (that is what the Kalman tracker
//! adds).

use super::{box_iou, cropped_matches, pose_box, pose_oks, visible_count, Tracker};
use crate::Pose;

/// What the greedy tracker compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GreedyMetric {
    /// Box IoU of the keypoints' boxes (MMPose's default, `use_oks=False`).
    #[default]
    Iou,
    /// OKS of the keypoints (`use_oks=True`).
    Oks,
}

/// Parameters of [`GreedyTracker`]; the defaults are MMPose's (`tracking_thr=0.3`,
/// `min_keypoints=3`, IoU).
#[derive(Debug, Clone, PartialEq)]
pub struct GreedyParams {
    pub metric: GreedyMetric,
    /// IoU or OKS above which a person inherits a previous person's id.
    pub threshold: f32,
    /// Keypoints a pose needs to start a new track.
    pub min_keypoints: usize,
    /// A keypoint counts (for boxes, OKS and `min_keypoints`) when its score is above this.
    pub min_keypoint_score: f32,
    /// OKS sigmas per keypoint (the layout's); missing ones use [`super::DEFAULT_SIGMA`].
    pub sigmas: Vec<f64>,
}

impl Default for GreedyParams {
    fn default() -> Self {
        GreedyParams {
            metric: GreedyMetric::Iou,
            threshold: 0.3,
            min_keypoints: 3,
            min_keypoint_score: 0.05,
            sigmas: crate::oks::coco17_sigmas().to_vec(),
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct GreedyTracker {
    params: GreedyParams,
    last: Vec<(u64, Pose)>,
    next_id: u64,
}

impl GreedyTracker {
    pub fn new(params: GreedyParams) -> Self {
        GreedyTracker {
            params,
            last: Vec::new(),
            next_id: 0,
        }
    }

    fn similarity(&self, a: &Pose, b: &Pose) -> f32 {
        let min = self.params.min_keypoint_score;
        match self.params.metric {
            GreedyMetric::Iou => match (pose_box(a, min), pose_box(b, min)) {
                (Some(x), Some(y)) => box_iou(x, y),
                _ => 0.0,
            },
            GreedyMetric::Oks => pose_oks(a, b, &self.params.sigmas, min),
        }
    }
}

impl Tracker for GreedyTracker {
    fn update_with_crops(&mut self, poses: &[Pose], crops: &[Option<u64>]) -> Vec<Option<u64>> {
        let mut unused: Vec<(u64, Pose)> = std::mem::take(&mut self.last);
        let last_ids: Vec<u64> = unused.iter().map(|(id, _)| *id).collect();
        let cropped = cropped_matches(
            &last_ids,
            poses,
            crops,
            self.params.min_keypoints,
            self.params.min_keypoint_score,
        );
        let mut ids: Vec<Option<u64>> = vec![None; poses.len()];
        for &(t, d) in &cropped {
            ids[d] = Some(last_ids[t]);
        }
        unused.retain(|(id, _)| !ids.contains(&Some(*id)));
        for (d, pose) in poses.iter().enumerate() {
            if crops.get(d).is_some_and(Option::is_some) {
                continue;
            }
            // The first best wins ties, as numpy's argmax and MMPose's strict `>` scan.
            let mut best: Option<(usize, f32)> = None;
            for (i, (_, last)) in unused.iter().enumerate() {
                let s = self.similarity(pose, last);
                if best.is_none_or(|(_, b)| s > b) {
                    best = Some((i, s));
                }
            }
            let id = match best {
                Some((i, s)) if s > self.params.threshold => Some(unused.remove(i).0),
                _ if visible_count(pose, self.params.min_keypoint_score)
                    >= self.params.min_keypoints =>
                {
                    self.next_id += 1;
                    Some(self.next_id - 1)
                }
                _ => None,
            };
            ids[d] = id;
        }
        self.last = poses
            .iter()
            .zip(&ids)
            .filter_map(|(p, id)| id.map(|id| (id, p.clone())))
            .collect();
        ids
    }

    fn predicted_boxes(&self) -> Vec<(u64, [f32; 4])> {
        self.last
            .iter()
            .filter_map(|(id, p)| Some((*id, pose_box(p, self.params.min_keypoint_score)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::figure;
    use super::*;
    use crate::Keypoint;

    /// As the Kalman tracker: a pose from a track's crop keeps its id; the rest are matched
    /// greedily against the tracks no crop took.
    #[test]
    fn a_pose_from_a_tracks_crop_keeps_that_tracks_id() {
        let mut t = GreedyTracker::new(GreedyParams::default());
        let a = figure(100.0, 100.0, 150.0);
        let b = figure(115.0, 100.0, 150.0);
        assert_eq!(t.update(&[a.clone(), b.clone()]), vec![Some(0), Some(1)]);
        // Cropped from track 1's box, a pose where track 0 was keeps id 1; the other pose,
        // of no crop, takes track 0 (the only one left).
        let ids = t.update_with_crops(&[b.clone(), a.clone()], &[None, Some(1)]);
        assert_eq!(ids, vec![Some(0), Some(1)]);
    }

    #[test]
    fn a_moving_person_keeps_the_id_and_a_newcomer_gets_a_new_one() {
        for metric in [GreedyMetric::Iou, GreedyMetric::Oks] {
            let mut t = GreedyTracker::new(GreedyParams {
                metric,
                ..GreedyParams::default()
            });
            let a0 = t.update(&[figure(100.0, 100.0, 150.0)]);
            assert_eq!(a0, vec![Some(0)]);
            let a1 = t.update(&[figure(400.0, 80.0, 150.0), figure(104.0, 102.0, 152.0)]);
            assert_eq!(a1, vec![Some(1), Some(0)], "{metric:?}");
        }
    }

    #[test]
    fn a_pose_with_too_few_keypoints_gets_no_id_and_two_people_never_share_one() {
        let mut t = GreedyTracker::new(GreedyParams::default());
        let mut sparse = figure(300.0, 100.0, 150.0);
        for k in sparse.keypoints.iter_mut().skip(2) {
            *k = Keypoint::default();
        }
        assert_eq!(
            t.update(&[figure(100.0, 100.0, 150.0), sparse]),
            vec![Some(0), None]
        );
        // Two people both overlapping the one previous person: only the first inherits.
        let ids = t.update(&[figure(101.0, 100.0, 150.0), figure(99.0, 100.0, 150.0)]);
        assert_eq!(ids, vec![Some(0), Some(1)]);
    }

    #[test]
    fn a_person_missing_for_one_frame_comes_back_with_a_new_id() {
        // The documented limit of the greedy tracker, which the Kalman tracker lifts.
        let mut t = GreedyTracker::new(GreedyParams::default());
        assert_eq!(t.update(&[figure(100.0, 100.0, 150.0)]), vec![Some(0)]);
        assert_eq!(t.update(&[]), vec![]);
        assert_eq!(t.update(&[figure(100.0, 100.0, 150.0)]), vec![Some(1)]);
    }
}
