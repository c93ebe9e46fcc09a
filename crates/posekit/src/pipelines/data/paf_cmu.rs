//! CMU's own augmentation chain for OpenPose's person-framed samples, step by step as
//! `Transform_nv` of `cpm_data_transformer.cpp` (CMU-Perceptual-Computing-Lab/caffe_train) runs
//! it, with OpenCV's fixed-point kernels, so that under `rules = "cmu"` the picture (border
//! 128), the ignore mask (`mask_miss`, border 255) and the joints are CMU's:
//!
//! 1. `augmentation_scale`: `cv::resize(src, dst, Size(), s, s, INTER_CUBIC)` with the `float`
//!    scale `s = target_dist / scale_self * multiplier`
//!    ([`posekit_core::geometry::resize::resize_cubic_opencv_by`]); the main person's centre
//!    (`objpos`) and the joints are multiplied by `s` in `float`;
//! 2. `augmentation_rotate`: `getRotationMatrix2D` about the scaled picture's centre
//!    `(cols / 2, rows / 2)` by the `float` degree, moved into `RotatedRect(centre, size,
//!    degree).boundingRect()` (`float` corners, floor/ceil, `+ 1`), then
//!    `warpAffine(INTER_CUBIC, BORDER_CONSTANT, border)`
//!    ([`posekit_core::geometry::warp::warp_affine_cubic`]); `objpos` and the joints go through
//!    the matrix in `double` and back to `float` (`RotatePoint`);
//! 3. `augmentation_croppad`: the shift truncated to whole pixels (`int(...)`), the crop centre
//!    `Point2i(objpos + shift)` (rounded half to even), pixels copied where they fall in the
//!    rotated map, `border` elsewhere; the joints move by the whole-pixel offset;
//! 4. `augmentation_flip`: the columns mirrored, joints `x = (w - 1) - x`.
//!
//! `Transform_nv` then resizes `mask_miss` to `1 / stride` (`INTER_CUBIC`, a whole factor here,
//! so the same as resizing to `crop / stride`) and divides it by 255: [`cmu_mask`].
//!
//! Only the part of the picture the crop takes is scaled and rotated (the windowed kernels give
//! the same bytes as CMU's whole-picture steps, which `tests/paf_pipeline.rs` checks against
//! OpenCV 4.10); a small person scaled up several times so needs no huge buffer.
//!
//! posekit's draws map to CMU's one to one ([`PafAugmentation`]): `scale` is CMU's
//! `scale_multiplier`, `rotation` its degree (the same sense), `shift` its `x_offset`,
//! `y_offset` before the truncation, `flip` its flip; the picture's `objpos` is the main
//! person's box centre and `scale_self` its box height over the crop height (COCO
//! coordinates, without CMU's Matlab `- 1`, as everywhere in posekit).

use ndarray::{s, Array2, Array3, ArrayView3, Axis};
use posekit_core::geometry::affine::Affine2;
use posekit_core::geometry::resize::{resize_cubic_opencv, resize_cubic_opencv_by_window};
use posekit_core::geometry::warp::{cubic_source_window, warp_affine_cubic_window_from};
use posekit_core::masks::Rle;

use super::error::DataError;
use super::paf::PafAugmentation;

/// The geometry of CMU's chain for one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CmuSteps {
    /// `augmentation_scale`'s `float scale`.
    pub scale: f32,
    /// The main person's box centre in the picture (`objpos`).
    pub centre: [f32; 2],
    /// `augmentation_rotate`'s `float degree`.
    pub degree: f32,
    /// The crop centre shift, whole pixels (`int` of the draw).
    pub shift: [f32; 2],
    pub flip: bool,
    /// `[width, height]` of the crop.
    pub crop: [usize; 2],
}

impl CmuSteps {
    /// The steps for the main person with box `[x, y, w, h]`, CMU's `target_dist`, and the
    /// sample's draws.
    pub fn new(bbox: [f64; 4], target_dist: f64, crop: [usize; 2], aug: &PafAugmentation) -> Self {
        let [x, y, w, h] = bbox;
        Self {
            scale: (target_dist * crop[1] as f64 / h * aug.scale) as f32,
            centre: [(x + w / 2.0) as f32, (y + h / 2.0) as f32],
            degree: aug.rotation as f32,
            shift: aug.shift.map(|v| v.trunc() as f32),
            flip: aug.flip,
            crop,
        }
    }

    /// Where the chain takes a `[width, height]` picture: the scaled picture's size (`cv::resize`'s
    /// `round(w * s)`), the rotation into the rotated picture's bounding box and that box's
    /// size, and the crop's top-left corner in it.
    pub fn geometry(&self, picture: [usize; 2]) -> CmuGeometry {
        let size = |n: usize| (n as f64 * self.scale as f64).round_ties_even().max(0.0) as usize;
        let scaled = [size(picture[0]), size(picture[1])];
        let (rotation, rotated) = rotation(scaled[0], scaled[1], self.degree);
        // objpos: scaled in float, rotated in double, back to float, plus the whole-pixel shift;
        // `Point2i(...)` rounds half to even.
        let objpos = self.centre.map(|v| v * self.scale);
        let [ox, oy] = rotation.apply([objpos[0] as f64, objpos[1] as f64]);
        let centre = [
            (ox as f32 + self.shift[0]).round_ties_even() as i64,
            (oy as f32 + self.shift[1]).round_ties_even() as i64,
        ];
        let [cw, ch] = self.crop;
        CmuGeometry {
            scaled,
            rotation,
            rotated,
            origin: [centre[0] - (cw / 2) as i64, centre[1] - (ch / 2) as i64],
            scale: self.scale,
        }
    }

    /// `[H, W, C]` u8 through scale, rotate, crop-pad and flip, `border` where the picture
    /// does not reach: `[crop_h, crop_w, C]`.
    pub fn apply(&self, src: ArrayView3<u8>, border: u8) -> Result<Array3<u8>, DataError> {
        let (h, w, c) = src.dim();
        let g = self.geometry([w, h]);
        let [bw, bh] = g.rotated;
        let [cw, ch] = self.crop;
        let [x0, y0] = g.origin;
        let mut out = Array3::<u8>::from_elem((ch, cw, c), border);
        // The crop rows and columns that fall on the rotated map.
        let span = |origin: i64, len: usize, size: usize| {
            let lo = (-origin).clamp(0, len as i64) as usize;
            let hi = (size as i64 - origin).clamp(0, len as i64) as usize;
            (lo, hi.max(lo))
        };
        let (xl, xh) = span(x0, cw, bw);
        let (yl, yh) = span(y0, ch, bh);
        if xl < xh && yl < yh {
            // Only the part of the rotated picture the crop takes (the same bytes as rotating
            // all of it, as CMU does, then cropping).
            let sx = (x0 + xl as i64) as usize;
            let sy = (y0 + yl as i64) as usize;
            let window = [sx, sy, xh - xl, yh - yl];
            // ... from only the part of the scaled picture its taps read (the same bytes as
            // scaling all of it; a small person scaled up many times stays cheap). Nothing read:
            // the window is all border, as it already is.
            if let Some(part) = cubic_source_window(&g.rotation, window, g.scaled)? {
                let scaled = resize_cubic_opencv_by_window(src, self.scale as f64, part)?;
                let rotated = warp_affine_cubic_window_from(
                    scaled.view(),
                    [part[0], part[1]],
                    g.scaled,
                    &g.rotation,
                    window,
                    border,
                )?;
                out.slice_mut(s![yl..yh, xl..xh, ..]).assign(&rotated);
            }
        }
        if self.flip {
            out = out.slice(s![.., ..;-1, ..]).to_owned();
        }
        Ok(out)
    }
}

/// [`CmuSteps::geometry`] of one picture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CmuGeometry {
    /// `[width, height]` after `augmentation_scale`.
    pub scaled: [usize; 2],
    /// The rotation matrix `augmentation_rotate` warps with.
    pub rotation: Affine2,
    /// `[width, height]` of the rotated picture.
    pub rotated: [usize; 2],
    /// The crop's top-left corner in the rotated picture.
    pub origin: [i64; 2],
    scale: f32,
}

impl CmuGeometry {
    /// Where CMU's chain puts picture point `p` in the crop before the flip, as it moves its
    /// joints: times the float scale, through the rotation in double and back to float, plus
    /// the crop offset (then `augmentation_flip` sets `x = (crop_w - 1) - x`).
    pub fn point(&self, p: [f32; 2]) -> [f32; 2] {
        let q = p.map(|v| v * self.scale);
        let [x, y] = self.rotation.apply([q[0] as f64, q[1] as f64]);
        [
            x as f32 + (-self.origin[0]) as f32,
            y as f32 + (-self.origin[1]) as f32,
        ]
    }
}

/// `getRotationMatrix2D((cols / 2, rows / 2), degree, 1)` moved into the rotated picture's
/// `RotatedRect::boundingRect()`, and that rectangle's `[width, height]`.
fn rotation(cols: usize, rows: usize, degree: f32) -> (Affine2, [usize; 2]) {
    let (cx, cy) = (cols as f32 / 2.0, rows as f32 / 2.0);
    let angle = degree as f64 * std::f64::consts::PI / 180.0;
    let (alpha, beta) = (angle.cos(), angle.sin());
    let (cxd, cyd) = (cx as f64, cy as f64);
    // RotatedRect::points, in float.
    let b = angle.cos() as f32 * 0.5;
    let a = angle.sin() as f32 * 0.5;
    let (w, h) = (cols as f32, rows as f32);
    let p0 = [cx - a * h - b * w, cy + b * h - a * w];
    let p1 = [cx + a * h - b * w, cy - b * h - a * w];
    let p2 = [2.0 * cx - p0[0], 2.0 * cy - p0[1]];
    let p3 = [2.0 * cx - p1[0], 2.0 * cy - p1[1]];
    let xs = [p0[0], p1[0], p2[0], p3[0]];
    let ys = [p0[1], p1[1], p2[1], p3[1]];
    let min = |v: [f32; 4]| v.into_iter().fold(f32::INFINITY, f32::min).floor() as i64;
    let max = |v: [f32; 4]| v.into_iter().fold(f32::NEG_INFINITY, f32::max).ceil() as i64;
    let bw = (max(xs) - min(xs) + 1).max(1) as usize;
    let bh = (max(ys) - min(ys) + 1).max(1) as usize;
    let m = Affine2::new([
        [
            alpha,
            beta,
            (1.0 - alpha) * cxd - beta * cyd + (bw as f64 / 2.0 - cxd),
        ],
        [
            -beta,
            alpha,
            beta * cxd + (1.0 - alpha) * cyd + (bh as f64 / 2.0 - cyd),
        ],
    ]);
    (m, [bw, bh])
}

/// CMU's ignore mask at the output grid: `mask_miss` (255 counted, 0 where `ignore` is set)
/// through [`CmuSteps::apply`] with border 255, resized to `crop / stride` (bicubic) and
/// divided by 255.
pub fn cmu_mask(
    ignore: Option<&Rle>,
    picture: [usize; 2],
    steps: &CmuSteps,
    stride: usize,
) -> Result<Array2<f32>, DataError> {
    let [w, h] = picture;
    let miss = match ignore {
        Some(rle) => rle.decode().mapv(|v| if v > 0 { 0u8 } else { 255 }),
        None => Array2::from_elem((h, w), 255u8),
    };
    let crop = steps.apply(miss.insert_axis(Axis(2)).view(), 255)?;
    let [cw, ch] = steps.crop;
    let small = resize_cubic_opencv(crop.view(), cw / stride, ch / stride)?;
    Ok(small.index_axis(Axis(2), 0).mapv(|v| v as f32 / 255.0))
}
