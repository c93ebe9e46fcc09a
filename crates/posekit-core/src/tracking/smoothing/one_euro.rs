//! The OneEuro filter (Casiez, Roussel and Vogel, "1€ Filter: A Simple Speed-based Low-pass
//! Filter for Noisy Input in Interactive Systems", CHI 2012), per track and keypoint
//! coordinate, as MMPose's `OneEuroFilter` (`mmpose/core/post_processing/temporal_filters`)
//! applies it: time counted in frames (`t_e` = frames since the joint was last seen), the
//! derivative low-passed at `d_cutoff`, and the cutoff raised with speed:
//! `cutoff = min_cutoff + beta * |dx̂|`, `x̂ = α x + (1 − α) x̂_prev`,
//! `α = r / (r + 1)` with `r = 2π · cutoff · t_e`.
//!
//! Slow motion (jitter) is smoothed hard, fast motion passes with little lag: the trade-off is
//! `min_cutoff` (lower: less jitter, more lag when still) and `beta` (higher: less lag when
//! moving). MMPose's setting (`configs/_base_/filters/one_euro.py` and its filter tests:
//! `min_cutoff=0.004`, `beta=0.7`, `d_cutoff=1.0`, pixels and frames) is
//! [`OneEuroParams::mmpose`]; measured on a joint with 3 px of noise (the test below) its
//! `beta` lets almost all of the jitter through (9 % less), because noise of a few pixels per
//! frame already reads as speed. posekit's default keeps MMPose's `min_cutoff` and lowers
//! `beta` to 0.02: 73 % less jitter when still, 4.6 px (about one frame) of lag at 4 px/frame.

use std::collections::HashMap;

use crate::Pose;

/// Parameters of the OneEuro filter (pixels and frames); see the module documentation for the
/// default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneEuroParams {
    pub min_cutoff: f32,
    pub beta: f32,
    pub d_cutoff: f32,
}

impl Default for OneEuroParams {
    fn default() -> Self {
        OneEuroParams {
            min_cutoff: 0.004,
            beta: 0.02,
            d_cutoff: 1.0,
        }
    }
}

impl OneEuroParams {
    /// MMPose's setting (`min_cutoff=0.004`, `beta=0.7`).
    pub fn mmpose() -> Self {
        OneEuroParams {
            beta: 0.7,
            ..OneEuroParams::default()
        }
    }
}

fn alpha(cutoff: f32, t_e: f32) -> f32 {
    let r = 2.0 * std::f32::consts::PI * cutoff * t_e;
    r / (r + 1.0)
}

/// One coordinate's filter state.
#[derive(Debug, Clone, Copy)]
struct Coord {
    x: f32,
    dx: f32,
}

impl Coord {
    fn step(&mut self, x: f32, t_e: f32, p: &OneEuroParams) -> f32 {
        let a_d = alpha(p.d_cutoff, t_e);
        let dx = a_d * (x - self.x) / t_e + (1.0 - a_d) * self.dx;
        let a = alpha(p.min_cutoff + p.beta * dx.abs(), t_e);
        self.x = a * x + (1.0 - a) * self.x;
        self.dx = dx;
        self.x
    }
}

#[derive(Debug, Clone, Default)]
struct TrackState {
    /// Per joint: the x and y filters and the frame the joint was last seen.
    joints: Vec<Option<([Coord; 2], u64)>>,
    last_frame: u64,
}

/// OneEuro filters for every track of a video; feed it the frames in order.
#[derive(Debug, Clone)]
pub struct OneEuroSmoother {
    params: OneEuroParams,
    min_score: f32,
    tracks: HashMap<u64, TrackState>,
}

/// A track not seen for this many frames is forgotten (its id is not reused by the trackers,
/// so this only bounds memory on long videos).
const FORGET_AFTER: u64 = 1000;

impl OneEuroSmoother {
    /// Keypoints count as found when their score is above `min_score`.
    pub fn new(params: OneEuroParams, min_score: f32) -> Self {
        OneEuroSmoother {
            params,
            min_score,
            tracks: HashMap::new(),
        }
    }

    /// Smooths, in place, the poses of frame `frame` that have a track id (`ids[i]` for
    /// `poses[i]`); untracked poses are left as they are.
    pub fn smooth(&mut self, frame: u64, ids: &[Option<u64>], poses: &mut [Pose]) {
        for (id, pose) in ids.iter().zip(poses.iter_mut()) {
            let Some(id) = id else { continue };
            let state = self.tracks.entry(*id).or_default();
            state.last_frame = frame;
            if state.joints.len() < pose.keypoints.len() {
                state.joints.resize(pose.keypoints.len(), None);
            }
            for (slot, k) in state.joints.iter_mut().zip(pose.keypoints.iter_mut()) {
                if !(k.score > self.min_score && k.x.is_finite() && k.y.is_finite()) {
                    continue;
                }
                match slot {
                    Some(([cx, cy], seen)) if frame > *seen => {
                        let t_e = (frame - *seen) as f32;
                        k.x = cx.step(k.x, t_e, &self.params);
                        k.y = cy.step(k.y, t_e, &self.params);
                        *seen = frame;
                    }
                    _ => {
                        *slot = Some((
                            [Coord { x: k.x, dx: 0.0 }, Coord { x: k.y, dx: 0.0 }],
                            frame,
                        ))
                    }
                }
            }
        }
        self.tracks
            .retain(|_, s| frame.saturating_sub(s.last_frame) <= FORGET_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypoint;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Gaussian noise by Box-Muller (rand's distributions are not a dependency).
    fn gauss(rng: &mut ChaCha8Rng, std: f32) -> f32 {
        let u1: f32 = rng.random_range(1e-7..1.0);
        let u2: f32 = rng.random_range(0.0..1.0);
        std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }

    /// A joint that stands still for 60 frames, then walks right at 4 px/frame for 60 frames,
    /// observed with 3 px of Gaussian noise: returns (mean frame-to-frame jitter of the raw and
    /// the smoothed track over the still part, lag in pixels of the smoothed one during the
    /// walk).
    fn jitter_and_lag(params: OneEuroParams) -> (f32, f32, f32) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut smoother = OneEuroSmoother::new(params, 0.1);
        let truth = |f: usize| {
            if f < 60 {
                200.0
            } else {
                200.0 + 4.0 * (f - 60) as f32
            }
        };
        let (mut raw, mut smooth) = (Vec::new(), Vec::new());
        for f in 0..120 {
            let x = truth(f) + gauss(&mut rng, 3.0);
            let mut poses = vec![Pose::new(vec![Keypoint::new(x, 100.0, 0.9)], 0.9)];
            smoother.smooth(f as u64, &[Some(0)], &mut poses);
            raw.push(x);
            smooth.push(poses[0].keypoints[0].x);
        }
        let jitter = |v: &[f32]| {
            v[10..60]
                .windows(2)
                .map(|w| (w[1] - w[0]).abs())
                .sum::<f32>()
                / 49.0
        };
        let lag = (90..120).map(|f| truth(f) - smooth[f]).sum::<f32>() / 30.0;
        (jitter(&raw), jitter(&smooth), lag)
    }

    #[test]
    fn the_default_cuts_still_jitter_by_two_thirds_with_about_a_frame_of_lag() {
        let (raw, smooth, lag) = jitter_and_lag(OneEuroParams::default());
        eprintln!(
            "OneEuro default, 3 px noise: still jitter {raw:.2} -> {smooth:.2} px/frame \
             ({:.0}% less), lag at 4 px/frame {lag:.2} px",
            100.0 * (1.0 - smooth / raw)
        );
        assert!(smooth < 0.35 * raw, "{raw} {smooth}");
        assert!(lag > 0.0 && lag < 6.0, "lag {lag}");
        // MMPose's beta trades nearly all of the smoothing for lag: what the module says.
        let (raw_m, smooth_m, lag_m) = jitter_and_lag(OneEuroParams::mmpose());
        eprintln!(
            "OneEuro MMPose setting: {raw_m:.2} -> {smooth_m:.2} px/frame, lag {lag_m:.2} px"
        );
        assert!(smooth_m > 0.8 * raw_m && lag_m < lag);
    }

    #[test]
    fn no_smoothing_at_high_cutoff_and_untracked_or_missing_joints_are_untouched() {
        let p = OneEuroParams {
            min_cutoff: 1e6,
            beta: 0.0,
            d_cutoff: 1.0,
        };
        let mut s = OneEuroSmoother::new(p, 0.1);
        let mut poses = vec![Pose::new(vec![Keypoint::new(10.0, 10.0, 0.9)], 1.0)];
        s.smooth(0, &[Some(3)], &mut poses);
        poses[0].keypoints[0].x = 50.0;
        s.smooth(1, &[Some(3)], &mut poses);
        assert!((poses[0].keypoints[0].x - 50.0).abs() < 1e-3);
        let mut other = vec![Pose::new(
            vec![Keypoint::new(0.0, 0.0, 0.0), Keypoint::new(7.0, 8.0, 0.9)],
            1.0,
        )];
        let before = other.clone();
        s.smooth(2, &[None], &mut other);
        assert_eq!(other, before);
    }
}
