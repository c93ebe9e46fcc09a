//! Training targets of a PAF model, as OpenPose builds them: per limb, a field holding the unit
//! vector from joint A to joint B on every pixel near the limb (averaged where people overlap),
//! and per joint a Gaussian heatmap (maximum over people) plus a background channel.
//!
//! Coordinates: keypoints are in input-image pixels; heatmap pixel `g` covers input pixels
//! `[g * stride, (g + 1) * stride)`, so its centre is at `g * stride + stride / 2 - 0.5` (the
//! convention of OpenPose's Gaussian targets and of tf-pose's area-downsampled ones). Sigma and
//! limb width are in heatmap pixels.

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
    // Keypoints in heatmap pixels; None for unlabelled ones.
    let mut pts: Vec<Option<(f32, f32)>> = Vec::with_capacity(n * k);
    for p in 0..n {
        for j in 0..k {
            let labelled = visible[[p, j]] > 0.0; // false for NaN
            if !labelled {
                pts.push(None);
                continue;
            }
            let (x, y) = (keypoints[[p, j, 0]], keypoints[[p, j, 1]]);
            if !(x.is_finite() && y.is_finite()) {
                return Err(Error::Shape(format!(
                    "PAF encode: labelled keypoint [{p}][{j}] has a non-finite coordinate ({x}, {y})"
                )));
            }
            let to_map = |v: f32| (v + 0.5) / params.stride - 0.5;
            pts.push(Some((to_map(x), to_map(y))));
        }
    }
    let [w, h] = params.heatmap_size;
    let channels = k + usize::from(params.background);
    let mut heatmaps = Array3::<f32>::zeros((channels, h, w));
    let mut keypoint_weights = Array2::<f32>::zeros((n, k));
    for p in 0..n {
        for j in 0..k {
            let Some((mx, my)) = pts[p * k + j] else {
                continue;
            };
            let on_map = mx >= -0.5 && mx < w as f32 - 0.5 && my >= -0.5 && my < h as f32 - 0.5;
            keypoint_weights[[p, j]] = if on_map { 1.0 } else { 0.0 };
            draw_gaussian(&mut heatmaps, j, mx, my, params.sigma);
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
            let (Some(a), Some(b)) = (pts[p * k + limb.joint_a], pts[p * k + limb.joint_b]) else {
                continue;
            };
            if draw_limb(&mut count, &mut sum, w, h, a, b, params.limb_width) {
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
        }
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

    #[test]
    fn overlapping_people_average() {
        // Two people, perpendicular limbs crossing at (6, 6).
        let kp = Array3::from_shape_vec((2, 2, 2), vec![2.0, 6.0, 10.0, 6.0, 6.0, 2.0, 6.0, 10.0])
            .unwrap();
        let vis = Array2::from_elem((2, 2), 1.0);
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
