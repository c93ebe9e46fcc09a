//! The bilinear crop warp of top-down pose estimation: `cv2.warpAffine(img, M, (w, h),
//! flags=INTER_LINEAR, borderMode=BORDER_CONSTANT, borderValue=0)`, reproduced exactly.
//!
//! Why reproduce OpenCV rather than write "a" bilinear warp: every published checkpoint was
//! trained and evaluated on crops cut by OpenCV, and a crop that differs by a rounding pattern
//! moves keypoints by a fraction of a pixel. OpenCV has two different kernels:
//!
//! * [`WarpKernel::Float32`] — OpenCV 5.x (the `opencv-python` wheel on PyPI today). The
//!   inverse matrix is cast to f32; per row `M1*y + M2` is a rounded product plus a rounded sum,
//!   per pixel the source coordinate is one fused multiply-add `M0*x + row`, the fractions are
//!   `s - floor(s)`, and the two interpolation stages are fused multiply-adds
//!   `p0 + a*(p1 - p0)` rounded half-to-even at the end. (OpenCV's SIMD path uses FMA where the
//!   CPU has it; on a CPU without FMA it rounds twice and can differ by one grey level.)
//! * [`WarpKernel::FixedPoint`] — OpenCV up to 4.10 (what HRNet/MMPose checkpoints were
//!   trained with). Source coordinates are fixed point with 1/32-pixel steps (`INTER_BITS = 5`,
//!   computed as `round(M*x*1024)` per column plus `round((M*y + M2)*1024) + 16` per row, then
//!   shifted by 5), bilinear weights are 15-bit integers (`INTER_REMAP_COEF_BITS`), and the sum
//!   is rounded by `(s + 2^14) >> 15`.
//!
//! In both, a tap outside the image reads the constant border 0, so pixels whose 2x2
//! neighbourhood straddles the image edge are blended with black, exactly as OpenCV does.
//! `tests/warp_opencv.rs` checks both kernels against crops made by OpenCV 5.0.0 and 4.10.0 on
//! two real photos (0 differences on the machine that made them; the test allows 1).
//!
//! [`warp_affine_cubic`] is OpenCV's fixed-point `INTER_CUBIC` warp with a constant border
//! (checked against OpenCV 4.10; 5.x warps in float), the rotation of CMU's OpenPose data layer.

use ndarray::{Array3, ArrayView3};

use super::affine::Affine2;
use crate::error::{Error, Result};

/// Which of OpenCV's `INTER_LINEAR` warp implementations to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WarpKernel {
    /// OpenCV 5.x: float32 coordinates and interpolation (the current PyPI wheel).
    #[default]
    Float32,
    /// OpenCV <= 4.10: 1/32-pixel fixed-point coordinates and 15-bit integer weights.
    FixedPoint,
}

/// Warps an `[H, W, C]` u8 image with `m` (source -> destination, as passed to
/// `cv2.warpAffine`) into an `[out_h, out_w, C]` image; the default kernel matches the current
/// OpenCV. Errors for an empty image or output, or a matrix that cannot be inverted.
pub fn warp_affine(
    src: ArrayView3<u8>,
    m: &Affine2,
    out_w: usize,
    out_h: usize,
) -> Result<Array3<u8>> {
    warp_affine_with(src, m, out_w, out_h, WarpKernel::default())
}

/// [`warp_affine`] with an explicit OpenCV kernel.
pub fn warp_affine_with(
    src: ArrayView3<u8>,
    m: &Affine2,
    out_w: usize,
    out_h: usize,
    kernel: WarpKernel,
) -> Result<Array3<u8>> {
    let (h, w, c) = check(src, out_w, out_h)?;
    if kernel == WarpKernel::FixedPoint && (h > i16::MAX as usize || w > i16::MAX as usize) {
        // OpenCV 4 stores source coordinates as i16; beyond that its results are not defined.
        return Err(Error::Shape(format!(
            "warp: the fixed-point kernel handles at most 32767 pixels per side, source is {w}x{h}"
        )));
    }
    let inv = m.inverse()?;
    let src = src.as_standard_layout();
    let data = src
        .as_slice()
        .ok_or_else(|| Error::Shape("warp: source is not contiguous".into()))?;
    let img = Image { data, h, w, c };
    let mut out = Array3::<u8>::zeros((out_h, out_w, c));
    let dst = out
        .as_slice_mut()
        .ok_or_else(|| Error::Shape("warp: output is not contiguous".into()))?;
    match kernel {
        WarpKernel::Float32 => float32_kernel(&img, &inv, out_w, out_h, |i, v| {
            dst[i] = v.round_ties_even().clamp(0.0, 255.0) as u8
        }),
        WarpKernel::FixedPoint => fixed_point_kernel(&img, &inv, out_w, out_h, dst),
    }
    Ok(out)
}

/// The same crop as [`warp_affine`] (float32 kernel) but without the final rounding to u8:
/// values in 0..=255 as `f32`, `[out_h, out_w, C]`. For training pipelines that normalise right
/// after the crop; note it is *not* what the reference fed its networks (they saw the rounded u8
/// crop), so use [`warp_affine`] where parity matters.
pub fn warp_affine_f32(
    src: ArrayView3<u8>,
    m: &Affine2,
    out_w: usize,
    out_h: usize,
) -> Result<Array3<f32>> {
    let (h, w, c) = check(src, out_w, out_h)?;
    let inv = m.inverse()?;
    let src = src.as_standard_layout();
    let data = src
        .as_slice()
        .ok_or_else(|| Error::Shape("warp: source is not contiguous".into()))?;
    let img = Image { data, h, w, c };
    let mut out = Array3::<f32>::zeros((out_h, out_w, c));
    let dst = out
        .as_slice_mut()
        .ok_or_else(|| Error::Shape("warp: output is not contiguous".into()))?;
    float32_kernel(&img, &inv, out_w, out_h, |i, v| dst[i] = v);
    Ok(out)
}

struct Image<'a> {
    data: &'a [u8],
    h: usize,
    w: usize,
    c: usize,
}

impl Image<'_> {
    /// Offset of pixel (x, y) when (x, y) .. (x + 1, y + 1) are all inside the image.
    #[inline]
    fn interior(&self, x: i64, y: i64) -> Option<usize> {
        if x >= 0 && y >= 0 && (x as usize) + 1 < self.w && (y as usize) + 1 < self.h {
            Some((y as usize * self.w + x as usize) * self.c)
        } else {
            None
        }
    }

    /// Offset of pixel (x, y), or `None` outside the image (the constant-0 border).
    #[inline]
    fn offset(&self, x: i64, y: i64) -> Option<usize> {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            Some((y as usize * self.w + x as usize) * self.c)
        } else {
            None
        }
    }
}

fn check(src: ArrayView3<u8>, out_w: usize, out_h: usize) -> Result<(usize, usize, usize)> {
    let (h, w, c) = src.dim();
    if h == 0 || w == 0 || c == 0 {
        return Err(Error::Shape(format!(
            "warp: source image is empty ({h}x{w}x{c})"
        )));
    }
    if out_w == 0 || out_h == 0 {
        return Err(Error::Shape(format!(
            "warp: output size {out_w}x{out_h} is empty"
        )));
    }
    // OpenCV addresses source pixels with i32.
    if h > i32::MAX as usize / 4 || w > i32::MAX as usize / 4 {
        return Err(Error::Shape(format!("warp: source {w}x{h} is too large")));
    }
    Ok((h, w, c))
}

/// OpenCV 5.x `warpAffineLinearInvoker`: `inv` maps destination to source; `put(index, value)`
/// receives the interpolated value of each output element.
///
/// `f32::mul_add` is an exact fused multiply-add everywhere (a libm call where the CPU has no
/// FMA instruction); on x86-64 CPUs with FMA the body is compiled with it enabled, which gives
/// the same values several times faster.
fn float32_kernel(
    img: &Image,
    inv: &Affine2,
    out_w: usize,
    out_h: usize,
    put: impl FnMut(usize, f32),
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports FMA, checked just above.
        unsafe { float32_kernel_fma(img, inv, out_w, out_h, put) };
        return;
    }
    float32_kernel_body(img, inv, out_w, out_h, put)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn float32_kernel_fma(
    img: &Image,
    inv: &Affine2,
    out_w: usize,
    out_h: usize,
    put: impl FnMut(usize, f32),
) {
    float32_kernel_body(img, inv, out_w, out_h, put)
}

#[inline(always)]
fn float32_kernel_body(
    img: &Image,
    inv: &Affine2,
    out_w: usize,
    out_h: usize,
    mut put: impl FnMut(usize, f32),
) {
    let m = inv.coefficients().map(|v| v as f32);
    let c = img.c;
    let mut taps = [0.0f32; 4 * 4];
    for y in 0..out_h {
        let yf = y as f32;
        // Two roundings, no FMA: OpenCV computes this once per row in scalar code.
        let row_x = yf * m[1] + m[2];
        let row_y = yf * m[4] + m[5];
        for x in 0..out_w {
            let xf = x as f32;
            let sx = m[0].mul_add(xf, row_x);
            let sy = m[3].mul_add(xf, row_y);
            let base = (y * out_w + x) * c;
            if !(sx.is_finite() && sy.is_finite()) {
                (0..c).for_each(|k| put(base + k, 0.0));
                continue;
            }
            let fx = sx.floor();
            let fy = sy.floor();
            let (ix, iy) = (fx as i64, fy as i64);
            let (a, b) = (sx - fx, sy - fy);
            if let Some(o) = img.interior(ix, iy) {
                // Fast path: the whole 2x2 neighbourhood is inside the image.
                let below = o + img.w * c;
                for k in 0..c {
                    let p = [
                        img.data[o + k],
                        img.data[o + c + k],
                        img.data[below + k],
                        img.data[below + c + k],
                    ]
                    .map(|v| v as f32);
                    let v0 = a.mul_add(p[1] - p[0], p[0]);
                    let v1 = a.mul_add(p[3] - p[2], p[2]);
                    put(base + k, b.mul_add(v1 - v0, v0));
                }
                continue;
            }
            let corners = [
                img.offset(ix, iy),
                img.offset(ix + 1, iy),
                img.offset(ix, iy + 1),
                img.offset(ix + 1, iy + 1),
            ];
            if corners.iter().all(Option::is_none) {
                (0..c).for_each(|k| put(base + k, 0.0));
                continue;
            }
            for k in 0..c {
                for (t, corner) in corners.iter().enumerate() {
                    taps[t] = corner.map_or(0.0, |o| img.data[o + k] as f32);
                }
                let v0 = a.mul_add(taps[1] - taps[0], taps[0]);
                let v1 = a.mul_add(taps[3] - taps[2], taps[2]);
                put(base + k, b.mul_add(v1 - v0, v0));
            }
        }
    }
}

/// Sub-pixel steps per pixel (`INTER_TAB_SIZE`) and their bits.
const INTER_BITS: i64 = 5;
const INTER_TAB_SIZE: i64 = 1 << INTER_BITS;
/// Fixed-point bits of the matrix products (`AB_BITS = max(10, INTER_BITS)`).
const AB_BITS: i64 = 10;
const AB_SCALE: f64 = (1 << AB_BITS) as f64;
/// Bits of the bilinear weights (`INTER_REMAP_COEF_BITS`).
const COEF_BITS: i64 = 15;

/// OpenCV <= 4.10 `WarpAffineInvoker` + `remapBilinear` with a constant 0 border.
fn fixed_point_kernel(img: &Image, inv: &Affine2, out_w: usize, out_h: usize, dst: &mut [u8]) {
    let map = FixedPointMap::from_inverse(inv, [0, 0, out_w, out_h]);
    let c = img.c;
    for y in 0..out_h {
        let row = map.row(y);
        for x in 0..out_w {
            let (sx, sy, a, b) = map.at(row, x);
            // The 2-D weight table entry: products of (1 - t, t) at 1/32 steps, scaled to 2^15;
            // exact in float, so no sum correction is ever needed for bilinear.
            let scale = (1 << COEF_BITS) / (INTER_TAB_SIZE * INTER_TAB_SIZE);
            let w = [
                (INTER_TAB_SIZE - a) * (INTER_TAB_SIZE - b) * scale,
                a * (INTER_TAB_SIZE - b) * scale,
                (INTER_TAB_SIZE - a) * b * scale,
                a * b * scale,
            ];
            let base = (y * out_w + x) * c;
            if let Some(o) = img.interior(sx, sy) {
                let below = o + img.w * c;
                for k in 0..c {
                    let p = [
                        img.data[o + k],
                        img.data[o + c + k],
                        img.data[below + k],
                        img.data[below + c + k],
                    ]
                    .map(|v| v as i64);
                    let sum = p[0] * w[0] + p[1] * w[1] + p[2] * w[2] + p[3] * w[3];
                    dst[base + k] =
                        ((sum + (1 << (COEF_BITS - 1))) >> COEF_BITS).clamp(0, 255) as u8;
                }
                continue;
            }
            let corners = [
                img.offset(sx, sy),
                img.offset(sx + 1, sy),
                img.offset(sx, sy + 1),
                img.offset(sx + 1, sy + 1),
            ];
            for k in 0..c {
                let mut sum = 0i64;
                for (t, corner) in corners.iter().enumerate() {
                    if let Some(o) = corner {
                        sum += img.data[o + k] as i64 * w[t];
                    }
                }
                dst[base + k] = ((sum + (1 << (COEF_BITS - 1))) >> COEF_BITS).clamp(0, 255) as u8;
            }
        }
    }
}

/// `cv2.warpAffine(img, M, (w, h), flags=INTER_CUBIC, borderMode=BORDER_CONSTANT,
/// borderValue=border)` on u8 images, reproduced exactly as OpenCV 4.10 computes it:
/// the fixed-point path (`WarpAffineInvoker` + `remapBicubic`; CMU's Caffe data layer,
/// `cpm_data_transformer.cpp` `augmentation_rotate`, rotates its pictures and `mask_miss` with
/// it).
///
/// Source coordinates are those of [`WarpKernel::FixedPoint`] (1/32-pixel steps); the 4x4 taps
/// start one pixel up-left of the floor coordinate, and their weights come from OpenCV's
/// `initInterTab2D`: Keys' cubic (`A = -0.75`) at the 32 fractions in f32, the outer product in
/// f32 scaled by 2^15 and rounded half to even, then the largest (or smallest) of the four
/// central weights corrected so that every 4x4 table sums to exactly 2^15. A tap outside the
/// image reads `border`; a pixel whose 4x4 neighbourhood misses the image entirely is `border`.
/// OpenCV 5.x computes cubic warps in float instead (up to 4 grey levels apart from this).
pub fn warp_affine_cubic(
    src: ArrayView3<u8>,
    m: &Affine2,
    out_w: usize,
    out_h: usize,
    border: u8,
) -> Result<Array3<u8>> {
    warp_affine_cubic_window(src, m, [0, 0, out_w, out_h], border)
}

/// The part `[x, y, width, height]` of [`warp_affine_cubic`]'s output (of any size containing
/// it), computed alone and equal to it: each output pixel's fixed-point source coordinate
/// depends only on its own column and row, as in OpenCV's tiled loop. For crops of a large
/// warped picture (CMU's rotate-then-crop) without warping the whole picture.
pub fn warp_affine_cubic_window(
    src: ArrayView3<u8>,
    m: &Affine2,
    window: [usize; 4],
    border: u8,
) -> Result<Array3<u8>> {
    let (h, w, _) = src.dim();
    warp_affine_cubic_window_from(src, [0, 0], [w, h], m, window, border)
}

/// [`warp_affine_cubic_window`] of a `[width, height]` = `src_size` picture of which only
/// `part`, its pixels from `part_origin` on, is given: `part` must hold every pixel the window's
/// taps read on the picture ([`cubic_source_window`]); taps off the picture read `border`.
/// Errors where a tap on the picture falls outside `part`.
pub fn warp_affine_cubic_window_from(
    part: ArrayView3<u8>,
    part_origin: [usize; 2],
    src_size: [usize; 2],
    m: &Affine2,
    window: [usize; 4],
    border: u8,
) -> Result<Array3<u8>> {
    let [_, _, out_w, out_h] = window;
    let (ph, pw, c) = check(part, out_w, out_h)?;
    let [w, h] = src_size;
    if h > i16::MAX as usize || w > i16::MAX as usize {
        return Err(Error::Shape(format!(
            "warp: the fixed-point cubic kernel handles at most 32767 pixels per side, source is \
             {w}x{h}"
        )));
    }
    let map = FixedPointMap::new(m, window)?;
    let part = part.as_standard_layout();
    let data = part
        .as_slice()
        .ok_or_else(|| Error::Shape("warp: source is not contiguous".into()))?;
    let mut out = Array3::<u8>::zeros((out_h, out_w, c));
    let dst = out
        .as_slice_mut()
        .ok_or_else(|| Error::Shape("warp: output is not contiguous".into()))?;
    let table = cubic_table();
    let cval = border as i64;
    let one = 1i64 << COEF_BITS;
    let round = |sum: i64| ((sum + (1 << (COEF_BITS - 1))) >> COEF_BITS).clamp(0, 255) as u8;
    let (wi, hi) = (w as i64, h as i64);
    let (ox, oy) = (part_origin[0] as i64, part_origin[1] as i64);
    let (pwi, phi) = (pw as i64, ph as i64);
    let missing = || {
        Error::Shape(format!(
            "warp: a tap of window {window:?} falls on the {w}x{h} picture outside the given \
             {pw}x{ph} part at {part_origin:?}"
        ))
    };
    for y in 0..out_h {
        let row = map.row(y);
        for x in 0..out_w {
            let (sx, sy, frac) = map.cubic_at(row, x);
            let wt = &table[frac];
            let base = (y * out_w + x) * c;
            // Tap positions in the part.
            let (px, py) = (sx - ox, sy - oy);
            if px >= 0 && py >= 0 && px + 3 < pwi && py + 3 < phi && sx + 3 < wi && sy + 3 < hi {
                // All 16 taps on the picture (remapBicubic's fast path): exact integer sums.
                let (px, py) = (px as usize, py as usize);
                for k in 0..c {
                    let mut sum = 0i64;
                    for i in 0..4 {
                        let at = ((py + i) * pw + px) * c + k;
                        for j in 0..4 {
                            sum += data[at + j * c] as i64 * wt[i * 4 + j] as i64;
                        }
                    }
                    dst[base + k] = round(sum);
                }
                continue;
            }
            if sx >= wi || sx + 4 <= 0 || sy >= hi || sy + 4 <= 0 {
                dst[base..base + c].fill(border);
                continue;
            }
            let mut xs = [None; 4];
            let mut ys = [None; 4];
            for i in 0..4 {
                let (x, y) = (sx + i as i64, sy + i as i64);
                if x >= 0 && x < wi {
                    let p = x - ox;
                    if p < 0 || p >= pwi {
                        return Err(missing());
                    }
                    xs[i] = Some(p as usize);
                }
                if y >= 0 && y < hi {
                    let p = y - oy;
                    if p < 0 || p >= phi {
                        return Err(missing());
                    }
                    ys[i] = Some(p as usize);
                }
            }
            for k in 0..c {
                // OpenCV's border form `cval * 2^15 + sum (S - cval) * w`; with tables summing
                // to 2^15 it equals the plain sum with outside taps reading `cval`.
                let mut sum = cval * one;
                for (i, yv) in ys.iter().enumerate() {
                    let Some(yv) = yv else { continue };
                    for (j, xv) in xs.iter().enumerate() {
                        if let Some(xv) = xv {
                            let p = data[(yv * pw + xv) * c + k] as i64;
                            sum += (p - cval) * wt[i * 4 + j] as i64;
                        }
                    }
                }
                dst[base + k] = round(sum);
            }
        }
    }
    Ok(out)
}

/// The part `[x, y, width, height]` of a `[width, height]` = `src_size` picture that the taps of
/// [`warp_affine_cubic_window`]'s `window` read; `None` where they all fall off the picture.
pub fn cubic_source_window(
    m: &Affine2,
    window: [usize; 4],
    src_size: [usize; 2],
) -> Result<Option<[usize; 4]>> {
    let map = FixedPointMap::new(m, window)?;
    let [w, h] = src_size.map(|v| v as i64);
    let (mut x0, mut y0, mut x1, mut y1) = (i64::MAX, i64::MAX, i64::MIN, i64::MIN);
    for y in 0..window[3] {
        let row = map.row(y);
        for x in 0..window[2] {
            let (sx, sy, _) = map.cubic_at(row, x);
            if sx >= w || sx + 4 <= 0 || sy >= h || sy + 4 <= 0 {
                continue;
            }
            x0 = x0.min(sx.max(0));
            y0 = y0.min(sy.max(0));
            x1 = x1.max((sx + 3).min(w - 1));
            y1 = y1.max((sy + 3).min(h - 1));
        }
    }
    Ok((x0 <= x1 && y0 <= y1).then(|| {
        [
            x0 as usize,
            y0 as usize,
            (x1 - x0 + 1) as usize,
            (y1 - y0 + 1) as usize,
        ]
    }))
}

/// OpenCV's fixed-point source coordinates (`WarpAffineInvoker`, shared by its bilinear and
/// cubic warps) of an output window: every output pixel's source position in 1/32 pixels.
struct FixedPointMap {
    /// The inverse matrix (output to source).
    m: [f64; 6],
    adelta: Vec<i64>,
    bdelta: Vec<i64>,
    wy: usize,
}

impl FixedPointMap {
    /// The map of the window `[x, y, width, height]` of the warp by `m` (source to output).
    fn new(m: &Affine2, window: [usize; 4]) -> Result<Self> {
        let [wx, wy, out_w, out_h] = window;
        if wx.saturating_add(out_w) > i32::MAX as usize
            || wy.saturating_add(out_h) > i32::MAX as usize
        {
            return Err(Error::Shape(format!(
                "warp: the output window {window:?} is too large"
            )));
        }
        Ok(Self::from_inverse(&m.inverse()?, window))
    }

    /// The same from the inverse matrix (output to source).
    fn from_inverse(inv: &Affine2, [wx, wy, out_w, _]: [usize; 4]) -> Self {
        let m = inv.coefficients();
        let adelta = (wx..wx + out_w)
            .map(|x| cv_round(m[0] * x as f64 * AB_SCALE))
            .collect();
        let bdelta = (wx..wx + out_w)
            .map(|x| cv_round(m[3] * x as f64 * AB_SCALE))
            .collect();
        Self {
            m,
            adelta,
            bdelta,
            wy,
        }
    }

    /// The row's `X0`, `Y0` (window row `y`).
    #[inline]
    fn row(&self, y: usize) -> (i64, i64) {
        let m = &self.m;
        let round_delta = (AB_SCALE as i64) / INTER_TAB_SIZE / 2;
        let yg = (self.wy + y) as f64;
        (
            cv_round((m[1] * yg + m[2]) * AB_SCALE) + round_delta,
            cv_round((m[4] * yg + m[5]) * AB_SCALE) + round_delta,
        )
    }

    /// The source pixel (floor) and the 1/32 fractions `(a, b)` in x and y of window column
    /// `x` in a row.
    #[inline]
    fn at(&self, (x0, y0): (i64, i64), x: usize) -> (i64, i64, i64, i64) {
        // i32 wrap-around as in OpenCV, then the i16 saturation of its coordinate map.
        let xx = ((x0 + self.adelta[x]) as i32 >> (AB_BITS - INTER_BITS)) as i64;
        let yy = ((y0 + self.bdelta[x]) as i32 >> (AB_BITS - INTER_BITS)) as i64;
        let sx = (xx >> INTER_BITS).clamp(i16::MIN as i64, i16::MAX as i64);
        let sy = (yy >> INTER_BITS).clamp(i16::MIN as i64, i16::MAX as i64);
        (sx, sy, xx & (INTER_TAB_SIZE - 1), yy & (INTER_TAB_SIZE - 1))
    }

    /// [`FixedPointMap::at`] for the cubic kernel: its first tap (one pixel up-left of the
    /// floor, as `remapBicubic` steps back) and the index of its 4x4 weight table.
    #[inline]
    fn cubic_at(&self, row: (i64, i64), x: usize) -> (i64, i64, usize) {
        let (sx, sy, a, b) = self.at(row, x);
        (sx - 1, sy - 1, (b * INTER_TAB_SIZE + a) as usize)
    }
}

/// OpenCV's `initInterTab2D(INTER_CUBIC, fixedpt = true)`: for each of the 32 x 32 sub-pixel
/// positions (`y` fraction major), the 4x4 weights in 15-bit fixed point summing to 2^15.
fn cubic_table() -> Vec<[i32; 16]> {
    let scale = 1.0f32 / INTER_TAB_SIZE as f32;
    let one_d: Vec<[f32; 4]> = (0..INTER_TAB_SIZE)
        .map(|i| interpolate_cubic(i as f32 * scale))
        .collect();
    let unit = (1i64 << COEF_BITS) as f32;
    let mut table = Vec::with_capacity((INTER_TAB_SIZE * INTER_TAB_SIZE) as usize);
    for i in 0..INTER_TAB_SIZE as usize {
        for j in 0..INTER_TAB_SIZE as usize {
            let mut t = [0i32; 16];
            let mut isum = 0i32;
            for k1 in 0..4 {
                for k2 in 0..4 {
                    let v = one_d[i][k1] * one_d[j][k2];
                    let q = (v * unit)
                        .round_ties_even()
                        .clamp(i16::MIN as f32, i16::MAX as f32) as i32;
                    t[k1 * 4 + k2] = q;
                    isum += q;
                }
            }
            let diff = isum - (1 << COEF_BITS);
            if diff != 0 {
                // The smallest and largest of the four central weights, first found kept.
                let (mut lo, mut hi) = ((2, 2), (2, 2));
                for k1 in 2..4 {
                    for k2 in 2..4 {
                        if t[k1 * 4 + k2] < t[lo.0 * 4 + lo.1] {
                            lo = (k1, k2);
                        } else if t[k1 * 4 + k2] > t[hi.0 * 4 + hi.1] {
                            hi = (k1, k2);
                        }
                    }
                }
                if diff < 0 {
                    t[hi.0 * 4 + hi.1] -= diff;
                } else {
                    t[lo.0 * 4 + lo.1] -= diff;
                }
            }
            table.push(t);
        }
    }
    table
}

/// OpenCV's `interpolateCubic` in f32 (`A = -0.75`), evaluated in its order.
fn interpolate_cubic(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let x1 = x + 1.0;
    let c0 = ((A * x1 - 5.0 * A) * x1 + 8.0 * A) * x1 - 4.0 * A;
    let c1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let u = 1.0 - x;
    let c2 = ((A + 2.0) * u - (A + 3.0)) * u * u + 1.0;
    [c0, c1, c2, 1.0 - c0 - c1 - c2]
}

/// `saturate_cast<int>(double)`: round half to even, saturated to i32.
fn cv_round(v: f64) -> i64 {
    if v.is_nan() {
        return i32::MIN as i64;
    }
    v.round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn ramp(h: usize, w: usize) -> Array3<u8> {
        Array3::from_shape_fn((h, w, 3), |(y, x, c)| {
            ((x * 7 + y * 3 + c * 50) % 256) as u8
        })
    }

    #[test]
    fn identity_and_integer_shift_copy_pixels() {
        let img = ramp(20, 30);
        for kernel in [WarpKernel::Float32, WarpKernel::FixedPoint] {
            let out = warp_affine_with(img.view(), &Affine2::IDENTITY, 30, 20, kernel).unwrap();
            assert_eq!(out, img);
            // Shift the image 5 px right: the first 5 columns come from outside (black).
            let out = warp_affine_with(img.view(), &Affine2::translation(5.0, 0.0), 30, 20, kernel)
                .unwrap();
            assert!(out.slice(ndarray::s![.., ..5, ..]).iter().all(|&v| v == 0));
            assert_eq!(
                out.slice(ndarray::s![.., 5.., ..]),
                img.slice(ndarray::s![.., ..25, ..])
            );
        }
    }

    #[test]
    fn half_pixel_shift_averages_neighbours_and_blends_the_border_with_black() {
        let img = Array3::from_shape_fn((1, 4, 1), |(_, x, _)| [10u8, 20, 30, 200][x]);
        for kernel in [WarpKernel::Float32, WarpKernel::FixedPoint] {
            // dst(x) = src(x + 0.5)
            let out = warp_affine_with(img.view(), &Affine2::translation(-0.5, 0.0), 4, 1, kernel)
                .unwrap();
            // Row y=0 is the last source row, so the lower taps are border zeros: nothing is
            // lost vertically because the vertical fraction is 0.
            assert_eq!(
                out.iter().copied().collect::<Vec<_>>(),
                vec![15, 25, 115, 100]
            );
        }
    }

    #[test]
    fn float_output_is_the_unrounded_u8_crop() {
        let img = ramp(32, 32);
        let m = Affine2::rotation_deg(17.0)
            .then(&Affine2::scaling(0.8, 0.8))
            .then(&Affine2::translation(3.3, 1.7));
        let u = warp_affine(img.view(), &m, 24, 20).unwrap();
        let f = warp_affine_f32(img.view(), &m, 24, 20).unwrap();
        for (a, b) in u.iter().zip(f.iter()) {
            assert_eq!(*a, b.round_ties_even() as u8);
        }
    }

    #[test]
    fn portable_and_fma_paths_agree() {
        // The portable body (libm fused multiply-add) must give the same bytes as the
        // FMA-instruction build, otherwise results would depend on the CPU.
        let img = ramp(40, 50);
        let m = Affine2::rotation_deg(-23.0)
            .then(&Affine2::scaling(1.37, 1.37))
            .then(&Affine2::translation(-9.1, 4.3));
        let inv = m.inverse().unwrap();
        let src = img.as_slice().unwrap();
        let image = Image {
            data: src,
            h: 40,
            w: 50,
            c: 3,
        };
        let (mut a, mut b) = (vec![0.0f32; 33 * 31 * 3], vec![0.0f32; 33 * 31 * 3]);
        float32_kernel(&image, &inv, 33, 31, |i, v| a[i] = v);
        float32_kernel_body(&image, &inv, 33, 31, |i, v| b[i] = v);
        assert_eq!(a, b);
    }

    #[test]
    fn cubic_matches_opencv_and_keeps_constants() {
        // cv2 4.10.0 (IPP off), `cv2.warpAffine(img, M, (12, 10), flags=cv2.INTER_CUBIC,
        // borderMode=cv2.BORDER_CONSTANT, borderValue=200)` with
        // `img[y, x] = (37x + 23y + (xy mod 7) 11) mod 256` (9 x 11) and M =
        // getRotationMatrix2D((5, 4), 23, 1.3) + (0.37, -0.61): interior pixels, pixels
        // straddling the edge and pixels entirely outside. (cv2 5.x computes cubic warps in
        // float and differs here by up to 4 grey levels in 65 of the 120 pixels.)
        let img = Array3::from_shape_fn((9, 11, 1), |(y, x, _)| {
            ((x * 37 + y * 23 + (x * y) % 7 * 11) % 256) as u8
        });
        let m = Affine2::new([
            [1.1966563094881726, 0.507950467036056, -2.645083415585087],
            [-0.507950467036056, 1.1966563094881726, 1.1431270972275898],
        ]);
        let want: [[u8; 12]; 10] = [
            [84, 109, 182, 152, 0, 24, 52, 59, 110, 177, 218, 141],
            [89, 148, 221, 229, 48, 21, 76, 64, 111, 180, 187, 29],
            [116, 172, 224, 185, 31, 12, 77, 79, 109, 180, 222, 221],
            [133, 192, 245, 122, 0, 46, 92, 92, 104, 173, 219, 129],
            [131, 198, 171, 12, 0, 63, 98, 101, 109, 180, 233, 62],
            [128, 193, 164, 119, 111, 60, 88, 102, 119, 157, 217, 237],
            [121, 201, 231, 233, 160, 69, 79, 97, 118, 151, 190, 210],
            [116, 207, 160, 9, 15, 27, 62, 95, 149, 185, 195, 238],
            [131, 209, 207, 153, 76, 8, 80, 133, 201, 219, 197, 201],
            [166, 160, 195, 226, 74, 60, 124, 177, 199, 199, 200, 200],
        ];
        let out = warp_affine_cubic(img.view(), &m, 12, 10, 200).unwrap();
        for (y, row) in want.iter().enumerate() {
            for (x, &v) in row.iter().enumerate() {
                assert_eq!(out[[y, x, 0]], v, "pixel ({x}, {y})");
            }
        }
        // Every 2-D table sums to 2^15, so a constant image with the same border stays exact.
        for t in cubic_table() {
            assert_eq!(t.iter().sum::<i32>(), 1 << COEF_BITS);
        }
        let flat = Array3::from_elem((9, 11, 2), 255u8);
        let out = warp_affine_cubic(flat.view(), &m, 12, 10, 255).unwrap();
        assert!(out.iter().all(|&v| v == 255));
    }

    #[test]
    fn cubic_window_equals_the_window_of_the_whole_warp() {
        let img = ramp(40, 50);
        let m = Affine2::rotation_deg(-31.0)
            .then(&Affine2::scaling(1.7, 1.7))
            .then(&Affine2::translation(12.3, -4.6));
        let whole = warp_affine_cubic(img.view(), &m, 90, 80, 128).unwrap();
        for window in [
            [0, 0, 90, 80],
            [13, 7, 40, 33],
            [60, 50, 30, 30],
            [5, 70, 1, 10],
        ] {
            let [x, y, w, h] = window;
            let part = warp_affine_cubic_window(img.view(), &m, window, 128).unwrap();
            assert_eq!(
                part,
                whole.slice(ndarray::s![y..y + h, x..x + w, ..]),
                "{window:?}"
            );
        }
    }

    #[test]
    fn cubic_window_from_a_part_of_the_source_equals_the_whole_warp() {
        let img = ramp(40, 50);
        let m = Affine2::rotation_deg(28.0)
            .then(&Affine2::scaling(0.9, 0.9))
            .then(&Affine2::translation(14.0, -6.5));
        let whole = warp_affine_cubic(img.view(), &m, 70, 60, 255).unwrap();
        for window in [[10, 12, 30, 25], [0, 0, 70, 60], [55, 2, 15, 20]] {
            let [x, y, w, h] = window;
            let want = whole.slice(ndarray::s![y..y + h, x..x + w, ..]);
            let [px, py, pw, ph] = cubic_source_window(&m, window, [50, 40]).unwrap().unwrap();
            let part = img.slice(ndarray::s![py..py + ph, px..px + pw, ..]);
            let got =
                warp_affine_cubic_window_from(part, [px, py], [50, 40], &m, window, 255).unwrap();
            assert_eq!(got, want, "{window:?}");
            // One column short of what the taps read is an error, not a wrong answer.
            if pw > 1 {
                let short = img.slice(ndarray::s![py..py + ph, px + 1..px + pw, ..]);
                assert!(warp_affine_cubic_window_from(
                    short,
                    [px + 1, py],
                    [50, 40],
                    &m,
                    window,
                    255
                )
                .is_err());
            }
        }
        // A window whose taps all fall off the picture reads nothing.
        let far = Affine2::translation(500.0, 0.0);
        assert_eq!(
            cubic_source_window(&far, [0, 0, 10, 10], [50, 40]).unwrap(),
            None
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let img = ramp(8, 8);
        assert!(warp_affine(img.view(), &Affine2::scaling(0.0, 1.0), 4, 4).is_err());
        assert!(warp_affine(img.view(), &Affine2::IDENTITY, 0, 4).is_err());
        let empty = Array3::<u8>::zeros((0, 8, 3));
        assert!(warp_affine(empty.view(), &Affine2::IDENTITY, 4, 4).is_err());
    }

    #[test]
    fn non_contiguous_views_are_accepted() {
        let img = ramp(10, 12);
        let flipped = img.slice(ndarray::s![.., ..;-1, ..]);
        let out = warp_affine(flipped, &Affine2::IDENTITY, 12, 10).unwrap();
        assert_eq!(out, flipped.to_owned());
    }
}
