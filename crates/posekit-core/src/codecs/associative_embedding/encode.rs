//! Training targets of HigherHRNet's `HeatmapGenerator` (a Gaussian per visible joint, the
//! maximum over people) and `JointsGenerator` (the pixel index of each visible joint, for the
//! tag loss), with HigherHRNet's precomputed Gaussian patch.

use ndarray::{Array3, ArrayView3};
use serde::{Deserialize, Serialize};

use super::{default_max_people, default_true};
use crate::error::{Error, Result};

/// Training-target parameters; the defaults are HigherHRNet's (sigma 2, 30 people, one tag
/// map per joint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AeEncodeParams {
    /// Heatmap size `[W, H]`.
    pub heatmap_size: [usize; 2],
    /// Gaussian standard deviation in heatmap pixels (HigherHRNet: `output_res / 64`, i.e. 2
    /// at 128 px).
    #[serde(default = "default_sigma")]
    pub sigma: f64,
    /// Rows of the `joints` target (`MAX_NUM_PEOPLE`).
    #[serde(default = "default_max_people")]
    pub max_people: usize,
    /// One tag map per joint (indices address the flattened `[K, H, W]` tags) or one shared
    /// map (indices address `[H, W]`), as `MODEL.TAG_PER_JOINT`.
    #[serde(default = "default_true")]
    pub tag_per_joint: bool,
}

fn default_sigma() -> f64 {
    2.0
}

/// Targets for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct AeTargets {
    /// `[K, H, W]`: a Gaussian (peak 1) at every visible joint, the maximum where people
    /// overlap (a sum would merge close people into one blob).
    pub heatmaps: Array3<f32>,
    /// `[max_people, K, 2]` rows of `(index, flag)` for the tag loss, HigherHRNet's
    /// `JointsGenerator` layout: row `i` is person `i`; its visible in-map joints are packed
    /// into the first slots in joint order (slot `t` is the `t`-th visible joint, not joint
    /// `t`), with `index = joint * H * W + y * W + x` (or `y * W + x` without per-joint tags)
    /// and `flag = 1`; unused slots are `(0, 0)`. The loss only needs, per person, the set of
    /// tag values to pull together, which is why the slots are packed.
    pub joints: Array3<i64>,
    /// People beyond `max_people` that are in the heatmaps but have no `joints` row
    /// (HigherHRNet would fail on them; here the caller can see how many were left out).
    pub dropped_people: usize,
}

impl AeEncodeParams {
    /// HigherHRNet's defaults for a `[W, H]` heatmap.
    pub fn new(heatmap_size: [usize; 2]) -> Self {
        AeEncodeParams {
            heatmap_size,
            sigma: default_sigma(),
            max_people: default_max_people(),
            tag_per_joint: true,
        }
    }
}

/// [`AeCodec::encode`](super::AeCodec::encode): targets from `people`, `[N, K, 3]`: x, y in
/// heatmap pixels and a visibility (a joint is used when visibility > 0). As in HigherHRNet, a
/// joint is placed at the pixel `(trunc(x), trunc(y))` and skipped when that pixel is outside
/// the map.
pub(super) fn encode(params: &AeEncodeParams, people: ArrayView3<f32>) -> Result<AeTargets> {
    let [w, h] = params.heatmap_size;
    if w == 0 || h == 0 {
        return Err(Error::Shape(format!(
            "AE encode: empty heatmap size {:?}",
            params.heatmap_size
        )));
    }
    if !(params.sigma > 0.0 && params.sigma.is_finite()) {
        return Err(Error::Shape(format!(
            "AE encode: sigma must be positive, got {}",
            params.sigma
        )));
    }
    let (n, k, c) = people.dim();
    if c != 3 {
        return Err(Error::Shape(format!(
            "AE encode: people must be [N, K, 3] (x, y, visibility), got {:?}",
            people.shape()
        )));
    }
    let mut heatmaps = Array3::<f32>::zeros((k, h, w));
    let mut joints = Array3::<i64>::zeros((params.max_people, k, 2));
    let gaussian = GaussianPatch::new(params.sigma);
    for p in 0..n {
        let mut slot = 0;
        for j in 0..k {
            let (x, y, v) = (people[[p, j, 0]], people[[p, j, 1]], people[[p, j, 2]]);
            // NaN visibility counts as unlabelled, as `pt[2] > 0` is false for it.
            if v.is_nan() || v <= 0.0 {
                continue;
            }
            if !x.is_finite() || !y.is_finite() {
                return Err(Error::Shape(format!(
                    "AE encode: person {p} joint {j} is visible but at ({x}, {y})"
                )));
            }
            // Python's int(): truncation towards zero, so -0.5 lands on pixel 0.
            let (xt, yt) = (x.trunc() as f64, y.trunc() as f64);
            if xt < 0.0 || yt < 0.0 || xt >= w as f64 || yt >= h as f64 {
                continue;
            }
            let (xi, yi) = (xt as usize, yt as usize);
            gaussian.draw_max(heatmaps.index_axis_mut(ndarray::Axis(0), j), xi, yi);
            if p < params.max_people {
                let index = if params.tag_per_joint {
                    (j * h * w + yi * w + xi) as i64
                } else {
                    (yi * w + xi) as i64
                };
                joints[[p, slot, 0]] = index;
                joints[[p, slot, 1]] = 1;
                slot += 1;
            }
        }
    }
    Ok(AeTargets {
        heatmaps,
        joints,
        dropped_people: n.saturating_sub(params.max_people),
    })
}

/// HigherHRNet's precomputed Gaussian patch: `ceil(6σ + 3)` pixels wide, centred at `3σ + 1`,
/// placed with its corner at `round(x - 3σ - 1)`.
struct GaussianPatch {
    sigma: f64,
    size: usize,
    patch: Vec<f32>,
}

impl GaussianPatch {
    fn new(sigma: f64) -> Self {
        let size = (6.0 * sigma + 3.0).ceil() as usize;
        let centre = 3.0 * sigma + 1.0;
        let mut patch = vec![0.0f32; size * size];
        for r in 0..size {
            for c in 0..size {
                let (dx, dy) = (c as f64 - centre, r as f64 - centre);
                patch[r * size + c] = (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp() as f32;
            }
        }
        GaussianPatch { sigma, size, patch }
    }

    fn draw_max(&self, mut map: ndarray::ArrayViewMut2<f32>, x: usize, y: usize) {
        let (h, w) = map.dim();
        let s = self.sigma;
        let ul_x = (x as f64 - 3.0 * s - 1.0).round_ties_even() as i64;
        let ul_y = (y as f64 - 3.0 * s - 1.0).round_ties_even() as i64;
        let br_x = (x as f64 + 3.0 * s + 2.0).round_ties_even() as i64;
        let br_y = (y as f64 + 3.0 * s + 2.0).round_ties_even() as i64;
        for py in ul_y.max(0)..br_y.min(h as i64) {
            let r = (py - ul_y) as usize;
            if r >= self.size {
                break;
            }
            for px in ul_x.max(0)..br_x.min(w as i64) {
                let c = (px - ul_x) as usize;
                if c >= self.size {
                    break;
                }
                let cell = &mut map[[py as usize, px as usize]];
                *cell = cell.max(self.patch[r * self.size + c]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_matches_higher_hrnet_generators() {
        let mut people = Array3::<f32>::zeros((2, 3, 3));
        // person 0: joint 0 at (10.7, 5.2), joint 1 invisible, joint 2 at (-0.5, 3) -> pixel 0.
        people
            .slice_mut(ndarray::s![0, 0, ..])
            .assign(&ndarray::arr1(&[10.7, 5.2, 2.0]));
        people
            .slice_mut(ndarray::s![0, 1, ..])
            .assign(&ndarray::arr1(&[3.0, 3.0, 0.0]));
        people
            .slice_mut(ndarray::s![0, 2, ..])
            .assign(&ndarray::arr1(&[-0.5, 3.0, 1.0]));
        // person 1: joint 1 out of the map, joint 2 at (2, 2).
        people
            .slice_mut(ndarray::s![1, 1, ..])
            .assign(&ndarray::arr1(&[20.0, 3.0, 1.0]));
        people
            .slice_mut(ndarray::s![1, 2, ..])
            .assign(&ndarray::arr1(&[2.0, 2.0, 1.0]));
        let mut cfg = AeEncodeParams::new([16, 12]);
        cfg.max_people = 4;
        let t = encode(&cfg, people.view()).unwrap();
        assert_eq!(t.heatmaps.shape(), &[3, 12, 16]);
        assert_eq!(t.joints.shape(), &[4, 3, 2]);
        assert_eq!(t.heatmaps[[0, 5, 10]], 1.0);
        assert!((t.heatmaps[[0, 5, 12]] - (-0.5f64).exp() as f32).abs() < 1e-7);
        assert_eq!(t.heatmaps[[1, 3, 3]], 0.0, "invisible joint");
        // Joint 2 of both people: maximum, not sum.
        assert_eq!(t.heatmaps[[2, 3, 0]], 1.0);
        assert_eq!(t.heatmaps[[2, 2, 2]], 1.0);
        assert_eq!(t.joints[[0, 0, 0]], (5 * 16 + 10) as i64);
        assert_eq!(t.joints[[0, 1, 0]], (2 * 12 * 16 + 3 * 16) as i64);
        assert_eq!(t.joints[[0, 1, 1]], 1);
        assert_eq!(t.joints[[0, 2, 1]], 0);
        assert_eq!(t.joints[[1, 0, 0]], (2 * 12 * 16 + 2 * 16 + 2) as i64);
        assert_eq!(t.joints[[1, 1, 1]], 0);
        assert_eq!(t.dropped_people, 0);

        cfg.tag_per_joint = false;
        cfg.max_people = 1;
        let t = encode(&cfg, people.view()).unwrap();
        assert_eq!(t.joints[[0, 1, 0]], (3 * 16) as i64);
        assert_eq!(t.dropped_people, 1);
        assert_eq!(
            t.heatmaps[[2, 2, 2]],
            1.0,
            "dropped people still have heatmaps"
        );
    }

    #[test]
    fn encode_rejects_bad_input() {
        let cfg = AeEncodeParams::new([8, 8]);
        assert!(encode(&cfg, Array3::<f32>::zeros((1, 2, 2)).view()).is_err());
        let mut p = Array3::<f32>::zeros((1, 1, 3));
        p[[0, 0, 0]] = f32::NAN;
        p[[0, 0, 2]] = 1.0;
        assert!(encode(&cfg, p.view()).is_err());
        p[[0, 0, 2]] = 0.0;
        assert!(
            encode(&cfg, p.view()).is_ok(),
            "invisible joints may hold anything"
        );
    }
}
