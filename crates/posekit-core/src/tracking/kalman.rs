//! A keypoint tracker after MMDeploy's `PoseTracker` (`csrc/mmdeploy/codebase/mmpose/
//! pose_tracker`): constant-velocity Kalman prediction of each track's keypoints, two-pass
//! association, and tracks kept through short absences.
//!
//! Per frame:
//! 1. every track's keypoints are predicted one frame ahead (each coordinate its own
//!    position/velocity Kalman filter with white-noise acceleration);
//! 2. cost of person `d` for track `t` = mean distance, over the joints `d` found and `t` has
//!    seen, between `d`'s keypoints and `t`'s predicted ones, divided by `t`'s size (the longer
//!    side of its box), so the gate means the same for near and far people; pairs above the
//!    gate are forbidden and the rest are matched by minimum total cost (Hungarian);
//! 3. people and tracks left over are matched by box IoU (predicted box of the track, keypoint
//!    box of the person) above a threshold, again optimally: this recovers a track whose
//!    keypoints jumped (a turn, a mis-detected limb) while its box still overlaps;
//! 4. matched tracks are updated with the person's keypoints; the others count a missed frame
//!    and are dropped after `max_missed` missed frames in a row (until then they keep being
//!    predicted and can be matched again, so a short absence keeps the id);
//! 5. people still left start new tracks when they have at least `min_keypoints` keypoints.
//!
//! Predicting with velocity is what keeps two people who cross apart: at the crossing their
//! keypoints are close, but each track's prediction is ahead of it on its own path.

use ndarray::Array2;

use super::{box_iou, cropped_matches, pose_box, visible_count, Tracker};
use crate::codecs::hungarian::min_cost_assignment;
use crate::Pose;

/// Parameters of [`KalmanTracker`].
#[derive(Debug, Clone, PartialEq)]
pub struct KalmanParams {
    /// Largest mean keypoint distance (in units of the track's size) for a keypoint match.
    pub gate: f32,
    /// Box IoU above which the second pass matches a person to a track.
    pub iou_threshold: f32,
    /// A track missed this many frames in a row is dropped.
    pub max_missed: u32,
    /// Keypoints a pose needs to start a track.
    pub min_keypoints: usize,
    /// A keypoint counts when its score is above this.
    pub min_keypoint_score: f32,
    /// Standard deviation of the acceleration per frame, in units of the track's size.
    pub process_noise: f32,
    /// Standard deviation of a detected keypoint's position, in units of the track's size.
    pub measurement_noise: f32,
}

impl Default for KalmanParams {
    fn default() -> Self {
        KalmanParams {
            gate: 0.5,
            iou_threshold: 0.3,
            max_missed: 10,
            min_keypoints: 3,
            min_keypoint_score: 0.05,
            process_noise: 0.01,
            measurement_noise: 0.02,
        }
    }
}

/// One coordinate's constant-velocity Kalman filter: state (position, velocity), covariance
/// `p = [[p00, p01], [p01, p11]]`.
#[derive(Debug, Clone, Copy)]
struct Axis {
    pos: f32,
    vel: f32,
    p00: f32,
    p01: f32,
    p11: f32,
}

impl Axis {
    fn new(z: f32, r: f32, v_std: f32) -> Self {
        Axis {
            pos: z,
            vel: 0.0,
            p00: r * r,
            p01: 0.0,
            p11: v_std * v_std,
        }
    }

    /// `x = F x`, `P = F P Fᵀ + Q` with `F = [[1, 1], [0, 1]]` and the white-noise
    /// acceleration `Q = q² [[1/4, 1/2], [1/2, 1]]`.
    fn predict(&mut self, q: f32) {
        self.pos += self.vel;
        let q2 = q * q;
        let p00 = self.p00 + 2.0 * self.p01 + self.p11 + 0.25 * q2;
        let p01 = self.p01 + self.p11 + 0.5 * q2;
        let p11 = self.p11 + q2;
        (self.p00, self.p01, self.p11) = (p00, p01, p11);
    }

    /// Update with a position measurement `z` of standard deviation `r` (`H = [1, 0]`).
    fn update(&mut self, z: f32, r: f32) {
        let s = self.p00 + r * r;
        let (k0, k1) = (self.p00 / s, self.p01 / s);
        let y = z - self.pos;
        self.pos += k0 * y;
        self.vel += k1 * y;
        let (p00, p01, p11) = (
            (1.0 - k0) * self.p00,
            (1.0 - k0) * self.p01,
            self.p11 - k1 * self.p01,
        );
        (self.p00, self.p01, self.p11) = (p00, p01, p11);
    }
}

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    /// Per joint, the x and y filters once the joint has been seen.
    joints: Vec<Option<[Axis; 2]>>,
    /// Longer side of the last matched pose's box (at least 1 pixel).
    size: f32,
    missed: u32,
}

impl Track {
    fn predicted(&self) -> impl Iterator<Item = (usize, f32, f32)> + '_ {
        self.joints
            .iter()
            .enumerate()
            .filter_map(|(j, a)| a.map(|[x, y]| (j, x.pos, y.pos)))
    }

    fn predicted_box(&self) -> Option<[f32; 4]> {
        let mut it = self.predicted();
        let (_, x, y) = it.next()?;
        let mut b = [x, y, x, y];
        for (_, x, y) in it {
            b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
        }
        Some(b)
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct KalmanTracker {
    params: KalmanParams,
    tracks: Vec<Track>,
    next_id: u64,
}

/// Cost of a forbidden pair: finite (the solver rejects infinities) and larger than any sum of
/// allowed costs.
const FORBIDDEN: f64 = 1e9;

impl KalmanTracker {
    pub fn new(params: KalmanParams) -> Self {
        KalmanTracker {
            params,
            tracks: Vec::new(),
            next_id: 0,
        }
    }

    /// Ids of the tracks alive now (seen within `max_missed` frames).
    pub fn live_ids(&self) -> Vec<u64> {
        self.tracks.iter().map(|t| t.id).collect()
    }

    fn cost(&self, track: &Track, pose: &Pose) -> Option<f32> {
        let mut sum = 0.0;
        let mut n = 0usize;
        for (j, px, py) in track.predicted() {
            let Some(k) = pose.keypoints.get(j) else {
                continue;
            };
            if k.score > self.params.min_keypoint_score && k.x.is_finite() && k.y.is_finite() {
                sum += ((k.x - px).powi(2) + (k.y - py).powi(2)).sqrt();
                n += 1;
            }
        }
        (n > 0).then(|| sum / n as f32 / track.size)
    }

    fn size_of(&self, pose: &Pose) -> f32 {
        pose_box(pose, self.params.min_keypoint_score)
            .map_or(1.0, |b| (b[2] - b[0]).max(b[3] - b[1]).max(1.0))
    }

    fn absorb(&mut self, t: usize, pose: &Pose) {
        let size = self.size_of(pose);
        let (min_score, p) = (self.params.min_keypoint_score, &self.params);
        let r = p.measurement_noise * size;
        let v_std = 0.1 * size;
        let track = &mut self.tracks[t];
        track.size = size;
        track.missed = 0;
        if track.joints.len() < pose.keypoints.len() {
            track.joints.resize(pose.keypoints.len(), None);
        }
        for (slot, k) in track.joints.iter_mut().zip(&pose.keypoints) {
            if !(k.score > min_score && k.x.is_finite() && k.y.is_finite()) {
                continue;
            }
            match slot {
                Some([x, y]) => {
                    x.update(k.x, r);
                    y.update(k.y, r);
                }
                None => *slot = Some([Axis::new(k.x, r, v_std), Axis::new(k.y, r, v_std)]),
            }
        }
    }

    /// Optimal matching of `rows` (track indices) to `cols` (pose indices) for a cost that is
    /// `None` where the pair is not allowed; returns the allowed matched pairs.
    fn assign(
        rows: &[usize],
        cols: &[usize],
        cost: impl Fn(usize, usize) -> Option<f64>,
    ) -> Vec<(usize, usize)> {
        if rows.is_empty() || cols.is_empty() {
            return Vec::new();
        }
        let m = Array2::from_shape_fn((rows.len(), cols.len()), |(r, c)| {
            cost(rows[r], cols[c]).unwrap_or(FORBIDDEN)
        });
        let Ok(assignment) = min_cost_assignment(m.view()) else {
            return Vec::new();
        };
        assignment
            .pairs()
            .into_iter()
            .filter(|&(r, c)| m[[r, c]] < FORBIDDEN)
            .map(|(r, c)| (rows[r], cols[c]))
            .collect()
    }
}

impl Tracker for KalmanTracker {
    fn update_with_crops(&mut self, poses: &[Pose], crops: &[Option<u64>]) -> Vec<Option<u64>> {
        let p = self.params.clone();
        for track in &mut self.tracks {
            let q = p.process_noise * track.size;
            for [x, y] in track.joints.iter_mut().flatten() {
                x.predict(q);
                y.predict(q);
            }
        }
        let mut ids = vec![None; poses.len()];
        let mut matched_tracks = vec![false; self.tracks.len()];
        // Poses from a track's crop continue that track; the others are associated.
        let cropped = cropped_matches(
            &self.live_ids(),
            poses,
            crops,
            p.min_keypoints,
            p.min_keypoint_score,
        );
        for &(t, d) in &cropped {
            matched_tracks[t] = true;
            ids[d] = Some(self.tracks[t].id);
        }
        let from_crop = |d: usize| crops.get(d).is_some_and(Option::is_some);
        let all_tracks: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| !matched_tracks[t])
            .collect();
        let all_poses: Vec<usize> = (0..poses.len()).filter(|&d| !from_crop(d)).collect();
        // First pass: keypoint distance under the gate.
        let first = Self::assign(&all_tracks, &all_poses, |t, d| {
            self.cost(&self.tracks[t], &poses[d])
                .filter(|&c| c <= p.gate)
                .map(f64::from)
        });
        for &(t, d) in &first {
            matched_tracks[t] = true;
            ids[d] = Some(self.tracks[t].id);
        }
        // Second pass: box IoU for what is left.
        let rest_tracks: Vec<usize> = all_tracks
            .iter()
            .copied()
            .filter(|&t| !matched_tracks[t])
            .collect();
        let rest_poses: Vec<usize> = all_poses
            .iter()
            .copied()
            .filter(|&d| ids[d].is_none())
            .collect();
        let second = Self::assign(&rest_tracks, &rest_poses, |t, d| {
            let a = self.tracks[t].predicted_box()?;
            let b = pose_box(&poses[d], p.min_keypoint_score)?;
            let iou = box_iou(a, b);
            (iou > p.iou_threshold).then_some(1.0 - f64::from(iou))
        });
        for &(t, d) in &second {
            matched_tracks[t] = true;
            ids[d] = Some(self.tracks[t].id);
        }
        for (t, d) in cropped.into_iter().chain(first).chain(second) {
            self.absorb(t, &poses[d]);
        }
        for (t, matched) in matched_tracks.iter().enumerate() {
            if !matched {
                self.tracks[t].missed += 1;
            }
        }
        self.tracks.retain(|t| t.missed <= p.max_missed);
        // New tracks.
        for (d, pose) in poses.iter().enumerate() {
            if ids[d].is_some()
                || from_crop(d)
                || visible_count(pose, p.min_keypoint_score) < p.min_keypoints
            {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            self.tracks.push(Track {
                id,
                joints: Vec::new(),
                size: 1.0,
                missed: 0,
            });
            let t = self.tracks.len() - 1;
            self.absorb(t, pose);
            ids[d] = Some(id);
        }
        ids
    }

    /// The tracks' keypoint boxes one frame ahead (velocity applied), for tracks seen in the
    /// last frame: a track already missing has no evidence that its person is still there.
    fn predicted_boxes(&self) -> Vec<(u64, [f32; 4])> {
        self.tracks
            .iter()
            .filter(|t| t.missed == 0)
            .filter_map(|t| {
                let mut ahead = t.clone();
                for [x, y] in ahead.joints.iter_mut().flatten() {
                    x.pos += x.vel;
                    y.pos += y.vel;
                }
                Some((t.id, ahead.predicted_box()?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::figure;
    use super::*;
    use crate::Keypoint;

    fn shifted(p: &Pose, dx: f32, dy: f32) -> Pose {
        let mut p = p.clone();
        for k in &mut p.keypoints {
            k.x += dx;
            k.y += dy;
        }
        p
    }

    /// Between proposals a top-down model crops each track's predicted box: the pose found
    /// there keeps that track's id even where association alone would not give it (a jump
    /// past the gate and off its box), a pose with too few keypoints there gets none and
    /// starts nothing, and a pose from no crop is associated as usual.
    #[test]
    fn a_pose_from_a_tracks_crop_keeps_that_tracks_id() {
        let mut t = KalmanTracker::new(KalmanParams::default());
        let a = figure(100.0, 100.0, 150.0);
        let b = figure(600.0, 100.0, 150.0);
        assert_eq!(t.update(&[a.clone(), b.clone()]), vec![Some(0), Some(1)]);
        let jumped = shifted(&a, 200.0, 0.0);
        // Associated from scratch, the jump is a newcomer...
        let mut plain = t.clone();
        assert_eq!(plain.update(std::slice::from_ref(&jumped)), vec![Some(2)]);
        // ... from track 0's crop it is track 0, listed after a pose of no crop.
        let ids = t.update_with_crops(&[b.clone(), jumped.clone()], &[None, Some(0)]);
        assert_eq!(ids, vec![Some(1), Some(0)]);
        // A crop with too few joints: no id, no new track, its track missed.
        let mut faint = shifted(&jumped, 4.0, 0.0);
        for k in faint.keypoints.iter_mut().skip(2) {
            k.score = 0.0;
        }
        let ids = t.update_with_crops(&[faint, b.clone()], &[Some(0), Some(1)]);
        assert_eq!(ids, vec![None, Some(1)]);
        assert_eq!(t.live_ids(), vec![0, 1]);
        // A crop of a track that is not alive gives no id either.
        assert_eq!(t.update_with_crops(&[a], &[Some(7)]), vec![None]);
    }

    #[test]
    fn a_moving_and_growing_person_keeps_one_id() {
        let mut t = KalmanTracker::new(KalmanParams::default());
        for f in 0..60 {
            let h = 120.0 + f as f32 * 2.0;
            let ids = t.update(&[figure(50.0 + f as f32 * 6.0, 80.0 - f as f32, h)]);
            assert_eq!(ids, vec![Some(0)], "frame {f}");
        }
    }

    #[test]
    fn a_person_absent_for_fewer_than_max_missed_frames_gets_the_same_id_back() {
        let params = KalmanParams {
            max_missed: 5,
            ..KalmanParams::default()
        };
        let mut t = KalmanTracker::new(params);
        let other = |f: usize| figure(600.0, 100.0 + f as f32, 150.0);
        for f in 0..10 {
            let ids = t.update(&[figure(100.0 + 4.0 * f as f32, 100.0, 150.0), other(f)]);
            assert_eq!(ids, vec![Some(0), Some(1)]);
        }
        // Hidden for 4 frames while walking on: predicted through the gap.
        for f in 10..14 {
            assert_eq!(t.update(&[other(f)]), vec![Some(1)]);
        }
        let back = t.update(&[figure(100.0 + 4.0 * 14.0, 100.0, 150.0), other(14)]);
        assert_eq!(back, vec![Some(0), Some(1)]);
        // Gone for longer than max_missed: a new id.
        for f in 15..22 {
            assert_eq!(t.update(&[other(f)]), vec![Some(1)]);
        }
        let new = t.update(&[figure(100.0 + 4.0 * 22.0, 100.0, 150.0), other(22)]);
        assert_eq!(new, vec![Some(2), Some(1)]);
    }

    /// Frame `f` of two people of the same size (50 px wide) walking towards each other at
    /// 20 px/frame along nearly the same line (4 px apart vertically), passing between frames
    /// 10 and 11; the detector lists them in an order that changes from frame to frame.
    /// Returns the poses and where the person walking right is among them.
    fn crossing(f: usize) -> (Vec<Pose>, usize) {
        let a = figure(100.0 + 20.0 * f as f32, 100.0, 150.0);
        let b = figure(510.0 - 20.0 * f as f32, 104.0, 150.0);
        if f.is_multiple_of(3) {
            (vec![b, a], 1)
        } else {
            (vec![a, b], 0)
        }
    }

    /// How often the person walking right changes id over the crossing clip.
    fn id_changes(tracker: &mut dyn Tracker) -> usize {
        let mut first = None;
        let mut changes = 0;
        for f in 0..25 {
            let (poses, a) = crossing(f);
            let ids = tracker.update(&poses);
            assert!(ids.iter().all(Option::is_some), "frame {f}: {ids:?}");
            assert_ne!(ids[0], ids[1], "frame {f}");
            changes += usize::from(ids[a] != *first.get_or_insert(ids[a]));
        }
        changes
    }

    #[test]
    fn two_people_who_cross_do_not_swap() {
        let mut kalman = KalmanTracker::new(KalmanParams::default());
        assert_eq!(id_changes(&mut kalman), 0);
        // The clip is a real test: with only the last frame's boxes to go by, the greedy
        // tracker swaps the two at the crossing (after it, each person's box overlaps the
        // other's previous box more than its own).
        let mut greedy = super::super::GreedyTracker::new(Default::default());
        assert!(id_changes(&mut greedy) > 0);
    }

    #[test]
    fn a_jump_beyond_the_gate_is_recovered_by_box_iou() {
        let mut t = KalmanTracker::new(KalmanParams::default());
        let a = figure(100.0, 100.0, 150.0);
        assert_eq!(t.update(std::slice::from_ref(&a)), vec![Some(0)]);
        // Left and right swapped by the detector: keypoints far off, same box.
        let mut flipped = a.clone();
        flipped.keypoints.reverse();
        assert_eq!(t.update(&[flipped]), vec![Some(0)]);
        assert_eq!(t.update(&[shifted(&a, 300.0, 0.0)]), vec![Some(1)]);
    }

    #[test]
    fn too_few_keypoints_start_no_track_and_predicted_boxes_lead_the_motion() {
        let mut t = KalmanTracker::new(KalmanParams::default());
        let mut sparse = figure(100.0, 100.0, 150.0);
        for k in sparse.keypoints.iter_mut().skip(2) {
            *k = Keypoint::default();
        }
        assert_eq!(t.update(&[sparse]), vec![None]);
        assert!(t.predicted_boxes().is_empty());
        for f in 0..10 {
            t.update(&[figure(100.0 + 10.0 * f as f32, 100.0, 150.0)]);
        }
        let boxes = t.predicted_boxes();
        assert_eq!(boxes.len(), 1);
        // The last pose's box starts at x = 190 (+ the first joint's offset); the prediction is
        // about one step (10 px) further.
        let last_x0 = figure(190.0, 100.0, 150.0).bounds(0.0).unwrap()[0];
        assert!((boxes[0].1[0] - (last_x0 + 10.0)).abs() < 2.0, "{boxes:?}");
    }
}
