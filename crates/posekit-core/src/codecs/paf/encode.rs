//! Training targets of a PAF model, as OpenPose builds them: per limb, a field holding the unit
//! vector from joint A to joint B on every pixel near the limb, and per joint a Gaussian heatmap
//! plus a background channel `max(0, 1 - max_k heatmap_k)`.
//!
//! Coordinates: keypoints are in input-image pixels; heatmap pixel `g` covers input pixels
//! `[g * stride, (g + 1) * stride)`, so its centre is at `g * stride + stride / 2 - 0.5` (the
//! convention of OpenPose's Gaussian targets and of tf-pose's area-downsampled ones). Sigma and
//! limb width are in heatmap pixels.
//!
//! Two rule sets ([`PafTargetRules`]) differ where people overlap and at a limb's ends:
//! * [`PafTargetRules::Posekit`] (the default): overlapping Gaussians of one joint keep their
//!   maximum; a pixel belongs to a limb when its distance to the limb *segment* (joints on the
//!   Gaussians' grid) is at most `limb_width`; overlapping limbs average their unit vectors.
//! * [`PafTargetRules::Cmu`]: CMU's C++ generator exactly (`putGaussianMaps`, `putVecMaps` and
//!   the background of `generateLabelMap` in `src/caffe/cpm_data_transformer.cpp` of
//!   CMU-Perceptual-Computing-Lab/caffe_train, the data layer of
//!   ZheC/Realtime_Multi-Person_Pose_Estimation's training): see `put_gaussian_cmu` and `put_vec_cmu`.
//!   The caller passes people in CMU's drawing order (its main person first), since where two
//!   limbs overlap the later one's vector stays.

use ndarray::{Array2, Array3, ArrayView2, ArrayView3};
use serde::{Deserialize, Serialize};

use super::limbs::PafLimbs;
use crate::error::{Error, Result};

/// Parameters of [`PafCodec::encode`](super::PafCodec::encode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PafEncodeParams {
    /// Output map size `[width, height]`.
    pub heatmap_size: [usize; 2],
    /// Input pixels per heatmap pixel (8 for OpenPose).
    pub stride: f32,
    /// Gaussian sigma in heatmap pixels (OpenPose: 7 input px at stride 8 = 0.875).
    pub sigma: f32,
    /// A pixel gets a limb's vector when its distance to the limb segment is at most this many
    /// heatmap pixels (OpenPose's `thre`, 1).
    pub limb_width: f32,
    /// Append the background channel `max(0, 1 - max_k heatmap_k)` that OpenPose trains on.
    #[serde(default = "default_true")]
    pub background: bool,
    /// Which generator's rules draw the targets; saved parameters without the key keep
    /// posekit's own ([`PafTargetRules::Posekit`]).
    #[serde(default)]
    pub rules: PafTargetRules,
}

/// How overlapping people and limb ends are drawn (module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PafTargetRules {
    /// Maximum of overlapping Gaussians; limb pixels within `limb_width` of the segment,
    /// averaged over people.
    #[default]
    Posekit,
    /// CMU's `putGaussianMaps` / `putVecMaps` exactly: Gaussians summed and clipped at 1;
    /// limb pixels within `limb_width` of the limb's *line* inside its rounded, grown bounding
    /// box, joints at `x / stride`, a later person's vector replacing an earlier one's.
    Cmu,
}

fn default_true() -> bool {
    true
}

impl PafEncodeParams {
    /// OpenPose's training settings at stride 8 for a given output size.
    pub fn openpose(heatmap_size: [usize; 2]) -> Self {
        PafEncodeParams {
            heatmap_size,
            stride: 8.0,
            sigma: 0.875,
            limb_width: 1.0,
            background: true,
            rules: PafTargetRules::Posekit,
        }
    }

    fn validate(&self) -> Result<()> {
        let [w, h] = self.heatmap_size;
        if w == 0 || h == 0 {
            return Err(Error::Shape(format!(
                "PAF heatmap size must be positive, got {w}x{h}"
            )));
        }
        for (name, v) in [
            ("stride", self.stride),
            ("sigma", self.sigma),
            ("limb_width", self.limb_width),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::Shape(format!(
                    "PAF encode: {name} must be a positive number, got {v}"
                )));
            }
        }
        Ok(())
    }
}

/// What [`PafCodec::encode`](super::PafCodec::encode) produces.
#[derive(Debug, Clone, PartialEq)]
pub struct PafTargets {
    /// `[K (+1 background), H, W]`.
    pub heatmaps: Array3<f32>,
    /// `[limbs.num_paf_channels(), H, W]`: x and y components on each limb's channels.
    pub pafs: Array3<f32>,
    /// `[N, K]`: 1 for a labelled joint whose centre falls on the map, else 0.
    pub keypoint_weights: Array2<f32>,
    /// `[N, L]`: 1 where the person's limb was drawn (both joints labelled and distinct), else
    /// 0. A loss can use it to tell "no limb here" from "limb not annotated".
    pub limb_weights: Array2<f32>,
}

/// Below `exp(-4.6052) = 0.01` OpenPose leaves the Gaussian out, so far-away people do not leave
/// a faint floor under everyone's heatmap.
const GAUSSIAN_CUTOFF: f32 = 4.6052;

/// [`PafCodec::encode`](super::PafCodec::encode): heatmap and PAF targets for `keypoints`
/// `[N, K, 2]` (input pixels) with `visible` `[N, K]` (> 0 means labelled, COCO's v = 1 or 2).
pub(super) fn encode(
    params: &PafEncodeParams,
    limbs: &PafLimbs,
    keypoints: ArrayView3<f32>,
    visible: ArrayView2<f32>,
) -> Result<PafTargets> {
    params.validate()?;
    let (n, k, d) = keypoints.dim();
    if k != limbs.num_joints() || d < 2 {
        return Err(Error::Shape(format!(
            "PAF encode: keypoints have shape [{n}, {k}, {d}], expected [N, {}, 2]",
            limbs.num_joints()
        )));
    }
    if visible.dim() != (n, k) {
        return Err(Error::Shape(format!(
            "PAF encode: visibility has shape {:?}, expected [{n}, {k}]",
            visible.shape()
        )));
    }
    // Keypoints in input pixels; None for unlabelled ones.
    let mut raw: Vec<Option<(f32, f32)>> = Vec::with_capacity(n * k);
    for p in 0..n {
        for j in 0..k {
            let labelled = visible[[p, j]] > 0.0; // false for NaN
            if !labelled {
                raw.push(None);
                continue;
            }
            let (x, y) = (keypoints[[p, j, 0]], keypoints[[p, j, 1]]);
            if !(x.is_finite() && y.is_finite()) {
                return Err(Error::Shape(format!(
                    "PAF encode: labelled keypoint [{p}][{j}] has a non-finite coordinate ({x}, {y})"
                )));
            }
            raw.push(Some((x, y)));
        }
    }
    // The same points on the Gaussians' grid (heatmap pixels).
    let to_map = |v: f32| (v + 0.5) / params.stride - 0.5;
    let pts: Vec<Option<(f32, f32)>> = raw
        .iter()
        .map(|q| q.map(|(x, y)| (to_map(x), to_map(y))))
        .collect();
    let [w, h] = params.heatmap_size;
    let channels = k + usize::from(params.background);
    let mut heatmaps = Array3::<f32>::zeros((channels, h, w));
    let mut keypoint_weights = Array2::<f32>::zeros((n, k));
    for p in 0..n {
        for j in 0..k {
            let Some((x, y)) = raw[p * k + j] else {
                continue;
            };
            let (mx, my) = (to_map(x), to_map(y));
            let on_map = mx >= -0.5 && mx < w as f32 - 0.5 && my >= -0.5 && my < h as f32 - 0.5;
            keypoint_weights[[p, j]] = if on_map { 1.0 } else { 0.0 };
            match params.rules {
                PafTargetRules::Posekit => draw_gaussian(&mut heatmaps, j, mx, my, params.sigma),
                PafTargetRules::Cmu => {
                    put_gaussian_cmu(&mut heatmaps, j, x, y, params.stride, params.sigma)
                }
            }
        }
    }
    if params.background {
        for y in 0..h {
            for x in 0..w {
                let m = (0..k).map(|j| heatmaps[[j, y, x]]).fold(0f32, f32::max);
                heatmaps[[k, y, x]] = (1.0 - m).max(0.0);
            }
        }
    }

    let mut pafs = Array3::<f32>::zeros((limbs.num_paf_channels(), h, w));
    let mut limb_weights = Array2::<f32>::zeros((n, limbs.len()));
    let mut count = vec![0u32; w * h];
    let mut sum = vec![(0f32, 0f32); w * h];
    for (l, limb) in limbs.limbs().iter().enumerate() {
        count.iter_mut().for_each(|c| *c = 0);
        sum.iter_mut().for_each(|s| *s = (0.0, 0.0));
        for p in 0..n {
            let drawn = match params.rules {
                PafTargetRules::Posekit => {
                    let (Some(a), Some(b)) = (pts[p * k + limb.joint_a], pts[p * k + limb.joint_b])
                    else {
                        continue;
                    };
                    draw_limb(&mut count, &mut sum, w, h, a, b, params.limb_width)
                }
                PafTargetRules::Cmu => {
                    let (Some(a), Some(b)) = (raw[p * k + limb.joint_a], raw[p * k + limb.joint_b])
                    else {
                        continue;
                    };
                    put_vec_cmu(&mut count, &mut sum, w, h, a, b, params)
                }
            };
            if drawn {
                limb_weights[[p, l]] = 1.0;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let c = count[y * w + x];
                if c > 0 {
                    let (sx, sy) = sum[y * w + x];
                    pafs[[limb.paf_x, y, x]] = sx / c as f32;
                    pafs[[limb.paf_y, y, x]] = sy / c as f32;
                }
            }
        }
    }
    Ok(PafTargets {
        heatmaps,
        pafs,
        keypoint_weights,
        limb_weights,
    })
}

/// CMU's `putGaussianMaps`: adds the Gaussian of the joint at input pixel `(cx, cy)` to the
/// channel and clips at 1, so two people's joints side by side make a plateau rather than
/// keeping the larger of the two. As the C++: the grid centre `stride / 2 - 0.5 + g * stride`
/// and the squared distance in f32 input pixels, the exponent `d2 / 2 / sigma / sigma` with
/// sigma in input pixels, left out above `4.6052` (compared in double, as C++ compares a float
/// with a double literal). The C++ visits the whole grid; the box visited here holds every
/// pixel under the cut-off, so the result is the same.
fn put_gaussian_cmu(
    maps: &mut Array3<f32>,
    channel: usize,
    cx: f32,
    cy: f32,
    stride: f32,
    sigma: f32,
) {
    let (_, h, w) = maps.dim();
    let start = stride / 2.0 - 0.5;
    let sigma_px = f64::from(sigma * stride);
    let reach = (2.0 * GAUSSIAN_CUTOFF).sqrt() * sigma + 1.0;
    let (mx, my) = ((cx - start) / stride, (cy - start) / stride);
    let x0 = (mx - reach).floor().max(0.0) as usize;
    let y0 = (my - reach).floor().max(0.0) as usize;
    let x1 = ((mx + reach).ceil() + 1.0).clamp(0.0, w as f32) as usize;
    let y1 = ((my + reach).ceil() + 1.0).clamp(0.0, h as f32) as usize;
    for gy in y0..y1 {
        let y = start + gy as f32 * stride;
        for gx in x0..x1 {
            let x = start + gx as f32 * stride;
            let d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
            let exponent = (f64::from(d2) / 2.0 / sigma_px / sigma_px) as f32;
            if f64::from(exponent) > CMU_GAUSSIAN_CUTOFF {
                continue;
            }
            let v = &mut maps[[channel, gy, gx]];
            *v += (-exponent).exp();
            if *v > 1.0 {
                *v = 1.0;
            }
        }
    }
}

/// CMU's cut-off literal, a double in the C++.
const CMU_GAUSSIAN_CUTOFF: f64 = 4.6052;

/// CMU's `putVecMaps` for the limb from input pixel `a` to `b`. As the C++: the joints at
/// `x / stride` (CMU multiplies by 0.125, its stride 8); the pixels visited are
/// `[max(0, round(min(ax, bx) - thre)), min(W, round(max(ax, bx) + thre)))` (exclusive end,
/// `round` half away from zero) and likewise in y; a pixel takes the unit vector when its
/// distance to the limb's *line*, `|(g - a) x u|`, is at most `thre` (so the rounded box, not
/// the segment, bounds the limb's ends). Where people overlap the C++ means to average
/// (`(v * cnt + u) / (cnt + 1)`), but it increments its count only in the averaging branch,
/// which a count of 0 never reaches: every pixel keeps the *last* person's vector. Here the
/// count is reset to 1 on each write, which gives that same result. A zero-length limb draws
/// nothing (its direction is NaN in the C++, failing the distance test); returns whether drawn.
fn put_vec_cmu(
    count: &mut [u32],
    sum: &mut [(f32, f32)],
    w: usize,
    h: usize,
    a: (f32, f32),
    b: (f32, f32),
    params: &PafEncodeParams,
) -> bool {
    let inv = 1.0 / params.stride;
    let thre = params.limb_width;
    let (ax, ay) = (a.0 * inv, a.1 * inv);
    let (bx, by) = (b.0 * inv, b.1 * inv);
    let (vx, vy) = (bx - ax, by - ay);
    let norm = (vx * vx + vy * vy).sqrt();
    if norm.is_nan() || norm <= 0.0 {
        return false;
    }
    let (ux, uy) = (vx / norm, vy / norm);
    let lo = |v: f32| ((v - thre).round() as i64).max(0) as usize;
    let hi = |v: f32, n: usize| ((v + thre).round() as i64).clamp(0, n as i64) as usize;
    let (x0, x1) = (lo(ax.min(bx)), hi(ax.max(bx), w));
    let (y0, y1) = (lo(ay.min(by)), hi(ay.max(by), h));
    for gy in y0..y1 {
        for gx in x0..x1 {
            let (px, py) = (gx as f32 - ax, gy as f32 - ay);
            let dist = (px * uy - py * ux).abs();
            if dist <= thre {
                let i = gy * w + gx;
                count[i] = 1;
                sum[i] = (ux, uy);
            }
        }
    }
    true
}

/// Maximum of the existing channel and a Gaussian at (mx, my), cut off at `GAUSSIAN_CUTOFF`.
fn draw_gaussian(maps: &mut Array3<f32>, channel: usize, mx: f32, my: f32, sigma: f32) {
    let (_, h, w) = maps.dim();
    let reach = (2.0 * GAUSSIAN_CUTOFF).sqrt() * sigma;
    let x0 = (mx - reach).floor().max(0.0) as usize;
    let y0 = (my - reach).floor().max(0.0) as usize;
    let x1 = ((mx + reach).ceil() + 1.0).clamp(0.0, w as f32) as usize;
    let y1 = ((my + reach).ceil() + 1.0).clamp(0.0, h as f32) as usize;
    let inv = 1.0 / (2.0 * sigma * sigma);
    for y in y0..y1 {
        for x in x0..x1 {
            let (dx, dy) = (x as f32 - mx, y as f32 - my);
            let e = (dx * dx + dy * dy) * inv;
            if e > GAUSSIAN_CUTOFF {
                continue;
            }
            let v = &mut maps[[channel, y, x]];
            *v = v.max((-e).exp());
        }
    }
}

/// Adds the unit vector a -> b to every pixel within `width` of the segment and counts it, so
/// that overlapping people average. Returns false for a zero-length limb, which has no direction.
fn draw_limb(
    count: &mut [u32],
    sum: &mut [(f32, f32)],
    w: usize,
    h: usize,
    a: (f32, f32),
    b: (f32, f32),
    width: f32,
) -> bool {
    let (vx, vy) = (b.0 - a.0, b.1 - a.1);
    let len = (vx * vx + vy * vy).sqrt();
    let has_direction = len > 1e-6; // false for NaN
    if !has_direction {
        return false;
    }
    let (ux, uy) = (vx / len, vy / len);
    let x0 = (a.0.min(b.0) - width).floor().max(0.0) as usize;
    let y0 = (a.1.min(b.1) - width).floor().max(0.0) as usize;
    let x1 = ((a.0.max(b.0) + width).ceil() + 1.0).clamp(0.0, w as f32) as usize;
    let y1 = ((a.1.max(b.1) + width).ceil() + 1.0).clamp(0.0, h as f32) as usize;
    for y in y0..y1 {
        for x in x0..x1 {
            let (px, py) = (x as f32 - a.0, y as f32 - a.1);
            let along = px * ux + py * uy;
            let dist = if along < 0.0 {
                (px * px + py * py).sqrt()
            } else if along > len {
                let (qx, qy) = (x as f32 - b.0, y as f32 - b.1);
                (qx * qx + qy * qy).sqrt()
            } else {
                (px * uy - py * ux).abs()
            };
            if dist <= width {
                let i = y * w + x;
                count[i] += 1;
                sum[i].0 += ux;
                sum[i].1 += uy;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::limbs::Limb;
    use super::*;
    use ndarray::{array, Array2, Array3};

    fn one_limb() -> PafLimbs {
        PafLimbs::new(2, vec![Limb::new(0, 1, 0, 1)]).unwrap()
    }

    fn params(w: usize, h: usize) -> PafEncodeParams {
        PafEncodeParams {
            heatmap_size: [w, h],
            stride: 1.0,
            sigma: 1.0,
            limb_width: 1.0,
            background: true,
            rules: PafTargetRules::Posekit,
        }
    }

    fn cmu(w: usize, h: usize) -> PafEncodeParams {
        PafEncodeParams {
            rules: PafTargetRules::Cmu,
            ..params(w, h)
        }
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn horizontal_limb_gets_unit_vectors_within_width() {
        let kp = Array3::from_shape_vec((1, 2, 2), vec![2.0, 5.0, 10.0, 5.0]).unwrap();
        let vis = Array2::from_elem((1, 2), 2.0);
        let t = encode(&params(16, 12), &one_limb(), kp.view(), vis.view()).unwrap();
        assert_eq!(t.pafs[[0, 5, 6]], 1.0);
        assert_eq!(t.pafs[[1, 5, 6]], 0.0);
        assert_eq!(t.pafs[[0, 4, 2]], 1.0); // distance 1 from the end point
        assert_eq!(t.pafs[[0, 3, 6]], 0.0); // distance 2
        assert_eq!(t.pafs[[0, 5, 12]], 0.0); // beyond B
        assert_eq!(t.heatmaps[[0, 5, 2]], 1.0);
        assert!((t.heatmaps[[2, 5, 2]]).abs() < 1e-6); // background
        assert_eq!(t.heatmaps[[2, 0, 15]], 1.0);
        assert_eq!(t.limb_weights, array![[1.0]]);
        assert_eq!(t.keypoint_weights, array![[1.0, 1.0]]);
    }

    /// Two people whose one limb each, horizontal and vertical, cross at (6, 6).
    fn crossing_limbs() -> (Array3<f32>, Array2<f32>) {
        let kp = Array3::from_shape_vec((2, 2, 2), vec![2.0, 6.0, 10.0, 6.0, 6.0, 2.0, 6.0, 10.0])
            .unwrap();
        (kp, Array2::from_elem((2, 2), 1.0))
    }

    #[test]
    fn overlapping_people_average() {
        let (kp, vis) = crossing_limbs();
        let t = encode(&params(12, 12), &one_limb(), kp.view(), vis.view()).unwrap();
        assert!((t.pafs[[0, 6, 6]] - 0.5).abs() < 1e-6);
        assert!((t.pafs[[1, 6, 6]] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn unlabelled_joints_draw_nothing_and_stride_maps_centres() {
        let kp = Array3::from_shape_vec((1, 2, 2), vec![19.5, 11.5, 60.0, 60.0]).unwrap();
        let vis = array![[1.0, 0.0]];
        let p = PafEncodeParams {
            stride: 4.0,
            ..params(8, 8)
        };
        let t = encode(&p, &one_limb(), kp.view(), vis.view()).unwrap();
        // (19.5 + 0.5) / 4 - 0.5 = 4.5, (11.5 + 0.5) / 4 - 0.5 = 2.5: four pixels tie.
        assert_eq!(t.heatmaps[[0, 2, 4]], t.heatmaps[[0, 3, 5]]);
        assert!(t.pafs.iter().all(|&v| v == 0.0));
        assert_eq!(t.limb_weights, array![[0.0]]);
        assert_eq!(t.keypoint_weights, array![[1.0, 0.0]]);
    }

    #[test]
    fn cmu_sums_overlapping_gaussians_and_clips_at_one() {
        // One joint of two people one pixel apart (stride 1, sigma 1: input = map pixels).
        let kp = Array3::from_shape_vec((2, 2, 2), vec![5.0, 5.0, 0.0, 0.0, 6.0, 5.0, 0.0, 0.0])
            .unwrap();
        let vis = array![[1.0, 0.0], [1.0, 0.0]];
        let t = encode(&cmu(12, 12), &one_limb(), kp.view(), vis.view()).unwrap();
        let (e05, e2) = ((-0.5f32).exp(), (-2.0f32).exp());
        // (5, 5): 1 + e^-0.5, clipped; (4, 5): e^-0.5 + e^-2 = 0.7419.
        assert_eq!(t.heatmaps[[0, 5, 5]], 1.0);
        assert!(close(t.heatmaps[[0, 5, 4]], e05 + e2));
        assert!(close(t.heatmaps[[0, 5, 7]], e2 + e05));
        assert!(close(t.heatmaps[[2, 5, 4]], 1.0 - (e05 + e2)));
        assert_eq!(t.heatmaps[[2, 5, 5]], 0.0);
        // Posekit's rule keeps the larger one.
        let t = encode(&params(12, 12), &one_limb(), kp.view(), vis.view()).unwrap();
        assert!(close(t.heatmaps[[0, 5, 4]], e05));
    }

    #[test]
    fn cmu_gaussians_sit_on_the_stride_grid_with_sigma_in_input_pixels() {
        // Stride 8, sigma 7 px (0.875 map px); heatmap pixel g is centred at 8 g + 3.5.
        let kp = Array3::from_shape_vec((1, 2, 2), vec![3.5, 3.5, 0.0, 0.0]).unwrap();
        let vis = array![[2.0, 0.0]];
        let p = PafEncodeParams {
            stride: 8.0,
            sigma: 0.875,
            ..cmu(6, 6)
        };
        let t = encode(&p, &one_limb(), kp.view(), vis.view()).unwrap();
        assert_eq!(t.heatmaps[[0, 0, 0]], 1.0);
        // 8 px away: exp(-64 / 2 / 49).
        assert!(close(t.heatmaps[[0, 0, 1]], (-64.0f32 / 98.0).exp()));
        // 24 px away: 576 / 98 = 5.88 > 4.6052, cut off.
        assert_eq!(t.heatmaps[[0, 0, 3]], 0.0);
        // Diagonal neighbour: 128 / 98; two diagonal steps: 512 / 98 = 5.22, cut off.
        assert!(close(t.heatmaps[[0, 1, 1]], (-128.0f32 / 98.0).exp()));
        assert_eq!(t.heatmaps[[0, 2, 2]], 0.0);
    }

    #[test]
    fn cmu_limb_fills_its_rounded_box_around_the_line() {
        // A (2, 5) -> B (10, 5), thre 1: the box is x in [round(1), round(11)) = 1..=10 and y in
        // [round(4), round(6)) = 4..=5; inside it every pixel is within 1 of the line.
        let kp = Array3::from_shape_vec((1, 2, 2), vec![2.0, 5.0, 10.0, 5.0]).unwrap();
        let vis = Array2::from_elem((1, 2), 2.0);
        let t = encode(&cmu(16, 12), &one_limb(), kp.view(), vis.view()).unwrap();
        for x in 0..16 {
            for y in 0..12 {
                let inside = (1..=10).contains(&x) && (4..=5).contains(&y);
                let want = if inside { 1.0 } else { 0.0 };
                assert_eq!(t.pafs[[0, y, x]], want, "x {x} y {y}");
                assert_eq!(t.pafs[[1, y, x]], 0.0);
            }
        }
        assert_eq!(t.limb_weights, array![[1.0]]);
        // Posekit's segment rule differs at the corners and past the box's exclusive ends:
        let t = encode(&params(16, 12), &one_limb(), kp.view(), vis.view()).unwrap();
        assert_eq!(t.pafs[[0, 4, 1]], 0.0); // sqrt(2) from A
        assert_eq!(t.pafs[[0, 6, 6]], 1.0); // 1 below the segment
        assert_eq!(t.pafs[[0, 5, 11]], 1.0); // 1 beyond B
    }

    #[test]
    fn cmu_limb_joints_are_at_x_over_stride() {
        // Input (40, 16) -> (40, 80) at stride 8 is map x = 5, y 2 -> 10 (the Gaussians'
        // convention would put it at x = 4.5625). Box x in [4, 6), y in [1, 11).
        let kp = Array3::from_shape_vec((1, 2, 2), vec![40.0, 16.0, 40.0, 80.0]).unwrap();
        let vis = Array2::from_elem((1, 2), 2.0);
        let p = PafEncodeParams {
            stride: 8.0,
            ..cmu(12, 12)
        };
        let t = encode(&p, &one_limb(), kp.view(), vis.view()).unwrap();
        assert_eq!(t.pafs[[1, 6, 4]], 1.0);
        assert_eq!(t.pafs[[1, 6, 5]], 1.0);
        assert_eq!(t.pafs[[1, 6, 6]], 0.0); // distance 1 but x = 6 is the box's open end
        assert_eq!(t.pafs[[1, 1, 5]], 1.0);
        assert_eq!(t.pafs[[1, 0, 5]], 0.0);
        assert_eq!(t.pafs[[1, 10, 5]], 1.0);
        assert_eq!(t.pafs[[1, 11, 5]], 0.0);
    }

    #[test]
    fn cmu_later_person_replaces_the_earlier_ones_vector() {
        // CMU's count never leaves 0, so the last person drawn wins where the crossing limbs
        // overlap; posekit averages.
        let (kp, vis) = crossing_limbs();
        let t = encode(&cmu(12, 12), &one_limb(), kp.view(), vis.view()).unwrap();
        assert_eq!((t.pafs[[0, 6, 6]], t.pafs[[1, 6, 6]]), (0.0, 1.0));
        assert_eq!((t.pafs[[0, 6, 3]], t.pafs[[1, 6, 3]]), (1.0, 0.0));
        assert_eq!(t.limb_weights, array![[1.0], [1.0]]);
    }

    #[test]
    fn cmu_zero_length_limb_draws_nothing() {
        let kp = Array3::from_shape_vec((1, 2, 2), vec![4.0, 4.0, 4.0, 4.0]).unwrap();
        let vis = Array2::from_elem((1, 2), 2.0);
        let t = encode(&cmu(8, 8), &one_limb(), kp.view(), vis.view()).unwrap();
        assert!(t.pafs.iter().all(|&v| v == 0.0));
        assert_eq!(t.limb_weights, array![[0.0]]);
        assert_eq!(t.heatmaps[[0, 4, 4]], 1.0);
    }

    #[test]
    fn saved_parameters_without_rules_keep_posekits() {
        let json = r#"{"heatmap_size": [4, 4], "stride": 8.0, "sigma": 0.875, "limb_width": 1.0}"#;
        let p: PafEncodeParams = serde_json::from_str(json).unwrap();
        assert_eq!(p.rules, PafTargetRules::Posekit);
        let json = r#"{"heatmap_size": [4, 4], "stride": 8.0, "sigma": 0.875, "limb_width": 1.0,
                       "rules": "cmu"}"#;
        let p: PafEncodeParams = serde_json::from_str(json).unwrap();
        assert_eq!(p.rules, PafTargetRules::Cmu);
    }

    #[test]
    fn bad_input_is_an_error() {
        let limbs = one_limb();
        let kp = Array3::<f32>::zeros((1, 3, 2));
        let vis = Array2::<f32>::ones((1, 3));
        assert!(encode(&params(8, 8), &limbs, kp.view(), vis.view()).is_err());
        let kp = Array3::from_shape_vec((1, 2, 2), vec![f32::NAN, 1.0, 2.0, 2.0]).unwrap();
        let vis = Array2::<f32>::ones((1, 2));
        assert!(encode(&params(8, 8), &limbs, kp.view(), vis.view()).is_err());
        let kp = Array3::<f32>::zeros((1, 2, 2));
        assert!(encode(
            &params(8, 8),
            &limbs,
            kp.view(),
            Array2::<f32>::ones((2, 2)).view()
        )
        .is_err());
        assert!(encode(&params(0, 8), &limbs, kp.view(), vis.view()).is_err());
    }
}
