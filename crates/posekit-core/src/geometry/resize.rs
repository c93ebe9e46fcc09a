//! Image and map resizing.
//!
//! * [`resize_cubic_opencv`] is `cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)` bit for
//!   bit (OpenCV's own code path, i.e. with IPP off, the path of every non-x86 build). The
//!   OpenPose-style bottom-up models were run on exactly such resized inputs, and their outputs
//!   are compared to stored reference tensors, so "close" is not enough: one different input
//!   value changes the network's output in the 5th digit.
//! * [`resize_bilinear_chw`] is PyTorch's `F.interpolate(mode="bilinear")` on `[C, H, W]` float
//!   maps (heatmaps, tag maps), for the pipelines that rescale network outputs.
//!
//! The fixture test (`tests/warp_opencv.rs`) checks the cubic resize against OpenCV 5.0.0 and
//! 4.10.0 (identical on these inputs) with 0 differences.

use ndarray::{Array3, ArrayView3};

use crate::error::{Error, Result};

/// OpenCV's bicubic constant `A` (Keys' kernel with a = -0.75).
const CUBIC_A: f32 = -0.75;
/// Fixed-point bits of the resize coefficients (`INTER_RESIZE_COEF_BITS`).
const COEF_BITS: i32 = 11;

/// Bicubic resize of an `[H, W, C]` u8 image to `[out_h, out_w, C]`, equal to OpenCV's
/// `INTER_CUBIC` with IPP disabled (`cv2.ipp.setUseIPP(False)`).
///
/// The algorithm, step by step as OpenCV does it (each detail changes some output values):
/// 1. per axis `scale = in / out` (f64); for output index `d`, `f = f32((d + 0.5) * scale - 0.5)`,
///    `s = floor(f)`, `t = f - s` in f32;
/// 2. Keys weights in f32 (`A = -0.75`, the last one `1 - w0 - w1 - w2`), converted to i16 by
///    `round_half_even(w * 2048)`;
/// 3. taps `s-1 ..= s+2` clamped to the image (edge replicate);
/// 4. horizontal pass exact in i32;
/// 5. vertical pass in f32 with weights `w * 2^-22`, accumulated from the last tap to the first,
///    every product and sum rounded (no fused multiply-add), then rounded half to even and
///    clamped to 0..=255.
///
/// x86 wheels with IPP enabled differ from this by ±1 in a few percent of values.
pub fn resize_cubic_opencv(src: ArrayView3<u8>, out_w: usize, out_h: usize) -> Result<Array3<u8>> {
    let (h, w, _) = src.dim();
    let scales = [
        w as f64 / out_w.max(1) as f64,
        h as f64 / out_h.max(1) as f64,
    ];
    resize_cubic(src, [0, 0, out_w, out_h], scales)
}

/// `cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)` (IPP off): the output
/// size is `round(w * f) x round(h * f)` (half to even, `saturate_cast<int>`) and the source
/// step is `1 / f` rather than `w / out_w` (what `cv::resize` does when given factors instead
/// of a size; CMU's data layer scales its pictures and `mask_miss` so, `augmentation_scale`).
/// Errors for an empty source, a factor that is not finite and positive, or an empty output.
pub fn resize_cubic_opencv_by(src: ArrayView3<u8>, f: f64) -> Result<Array3<u8>> {
    let [w, h] = resized_size(src, f);
    resize_cubic_opencv_by_window(src, f, [0, 0, w, h])
}

/// `[width, height]` of [`resize_cubic_opencv_by`]'s output.
pub fn resized_size(src: ArrayView3<u8>, f: f64) -> [usize; 2] {
    let (h, w, _) = src.dim();
    let size = |n: usize| (n as f64 * f).round_ties_even().clamp(0.0, i32::MAX as f64) as usize;
    [size(w), size(h)]
}

/// The part `[x, y, width, height]` of [`resize_cubic_opencv_by`]'s output, computed alone and
/// equal to it (each output pixel's taps depend only on its own index); errors where the
/// window leaves the output.
pub fn resize_cubic_opencv_by_window(
    src: ArrayView3<u8>,
    f: f64,
    window: [usize; 4],
) -> Result<Array3<u8>> {
    if !(f.is_finite() && f > 0.0) {
        return Err(Error::Shape(format!(
            "resize: the factor {f} is not a positive number"
        )));
    }
    let [w, h] = resized_size(src, f);
    let [x, y, ww, wh] = window;
    if x.saturating_add(ww) > w || y.saturating_add(wh) > h {
        return Err(Error::Shape(format!(
            "resize: the window {window:?} leaves the {w}x{h} output"
        )));
    }
    resize_cubic(src, window, [1.0 / f, 1.0 / f])
}

/// The `[x, y, width, height]` part of [`resize_cubic_opencv`]'s output with OpenCV's source
/// steps `[x, y]` per output pixel.
fn resize_cubic(src: ArrayView3<u8>, window: [usize; 4], scales: [f64; 2]) -> Result<Array3<u8>> {
    let [wx, wy, out_w, out_h] = window;
    let (h, w, c) = src.dim();
    if h == 0 || w == 0 || c == 0 {
        return Err(Error::Shape(format!(
            "resize: source image is empty ({h}x{w}x{c})"
        )));
    }
    if out_w == 0 || out_h == 0 {
        return Err(Error::Shape(format!(
            "resize: output size {out_w}x{out_h} is empty"
        )));
    }
    let src = src.as_standard_layout();
    let data = src
        .as_slice()
        .ok_or_else(|| Error::Shape("resize: source is not contiguous".into()))?;
    let xtaps = cubic_taps(w, wx..wx + out_w, scales[0]);
    let ytaps = cubic_taps(h, wy..wy + out_h, scales[1]);

    // Horizontal pass for every source row (rows are reused by several output rows).
    let row_len = out_w * c;
    let mut horiz = vec![0i32; h * row_len];
    for y in 0..h {
        let src_row = &data[y * w * c..(y + 1) * w * c];
        let dst_row = &mut horiz[y * row_len..(y + 1) * row_len];
        for (dx, tap) in xtaps.iter().enumerate() {
            for k in 0..c {
                let mut sum = 0i32;
                for (&sx, &wt) in tap.index.iter().zip(&tap.weight) {
                    sum += src_row[sx * c + k] as i32 * wt as i32;
                }
                dst_row[dx * c + k] = sum;
            }
        }
    }

    let mut out = Array3::<u8>::zeros((out_h, out_w, c));
    let dst = out
        .as_slice_mut()
        .ok_or_else(|| Error::Shape("resize: output is not contiguous".into()))?;
    let unit = (2.0f32).powi(-2 * COEF_BITS);
    for (dy, tap) in ytaps.iter().enumerate() {
        let b = tap.weight.map(|v| v as f32 * unit);
        let rows = tap.index.map(|sy| &horiz[sy * row_len..(sy + 1) * row_len]);
        let dst_row = &mut dst[dy * row_len..(dy + 1) * row_len];
        for (i, d) in dst_row.iter_mut().enumerate() {
            // `acc += p` is `acc = acc + p`: one rounded product, one rounded sum, never fused.
            let mut acc = rows[3][i] as f32 * b[3];
            acc += rows[2][i] as f32 * b[2];
            acc += rows[1][i] as f32 * b[1];
            acc += rows[0][i] as f32 * b[0];
            *d = acc.round_ties_even().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(out)
}

/// Source taps and fixed-point weights of one output index.
struct CubicTap {
    index: [usize; 4],
    weight: [i16; 4],
}

fn cubic_taps(n_in: usize, out: std::ops::Range<usize>, scale: f64) -> Vec<CubicTap> {
    let last = n_in as i64 - 1;
    out.map(|d| {
        let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let s = f.floor();
        let t = f - s;
        let weight =
            cubic_weights(t).map(|w| (w * (1 << COEF_BITS) as f32).round_ties_even() as i16);
        let s = s as i64;
        let index = [0i64, 1, 2, 3].map(|k| (s - 1 + k).clamp(0, last) as usize);
        CubicTap { index, weight }
    })
    .collect()
}

/// OpenCV's `interpolateCubic`, evaluated in f32 in the same order.
fn cubic_weights(t: f32) -> [f32; 4] {
    let a = CUBIC_A;
    let t1 = t + 1.0;
    let w0 = ((a * t1 - 5.0 * a) * t1 + 8.0 * a) * t1 - 4.0 * a;
    let w1 = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
    let u = 1.0 - t;
    let w2 = ((a + 2.0) * u - (a + 3.0)) * u * u + 1.0;
    let w3 = 1.0 - w0 - w1 - w2;
    [w0, w1, w2, w3]
}

/// Bilinear resize of `[C, H, W]` float maps to `[C, out_h, out_w]`, as PyTorch's
/// `F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=...)`:
/// with `align_corners = false` the source coordinate is `(d + 0.5) * in/out - 0.5` clamped at
/// 0 (pixel areas aligned, what HRNet-style upsampling uses); with `true` it is
/// `d * (in - 1) / (out - 1)` (corner pixel centers aligned, HigherHRNet's choice).
pub fn resize_bilinear_chw(
    src: ArrayView3<f32>,
    out_w: usize,
    out_h: usize,
    align_corners: bool,
) -> Result<Array3<f32>> {
    let (c, h, w) = src.dim();
    if h == 0 || w == 0 {
        return Err(Error::Shape(format!(
            "resize: source maps are empty ({c}x{h}x{w})"
        )));
    }
    if out_w == 0 || out_h == 0 {
        return Err(Error::Shape(format!(
            "resize: output size {out_w}x{out_h} is empty"
        )));
    }
    let xs = linear_taps(w, out_w, align_corners);
    let ys = linear_taps(h, out_h, align_corners);
    let mut out = Array3::<f32>::zeros((c, out_h, out_w));
    for (mut dst, plane) in out.outer_iter_mut().zip(src.outer_iter()) {
        for (dy, &(y0, y1, ly)) in ys.iter().enumerate() {
            for (dx, &(x0, x1, lx)) in xs.iter().enumerate() {
                let top = (1.0 - lx) * plane[[y0, x0]] + lx * plane[[y0, x1]];
                let bottom = (1.0 - lx) * plane[[y1, x0]] + lx * plane[[y1, x1]];
                dst[[dy, dx]] = (1.0 - ly) * top + ly * bottom;
            }
        }
    }
    Ok(out)
}

/// (lower index, upper index, weight of the upper one) per output index.
fn linear_taps(n_in: usize, n_out: usize, align_corners: bool) -> Vec<(usize, usize, f32)> {
    (0..n_out)
        .map(|d| {
            let src = if align_corners {
                if n_out > 1 {
                    d as f32 * (n_in as f32 - 1.0) / (n_out as f32 - 1.0)
                } else {
                    0.0
                }
            } else {
                ((d as f32 + 0.5) * (n_in as f32 / n_out as f32) - 0.5).max(0.0)
            };
            let i0 = (src.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn cubic_weights_sum_to_one_and_interpolate() {
        for t in [0.0f32, 0.25, 0.5, 0.9] {
            let w = cubic_weights(t);
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn same_size_cubic_is_a_copy_and_constants_stay_constant() {
        let img = Array3::from_shape_fn((7, 9, 3), |(y, x, c)| (x * 20 + y * 5 + c) as u8);
        assert_eq!(resize_cubic_opencv(img.view(), 9, 7).unwrap(), img);
        let flat = Array3::from_elem((5, 6, 1), 77u8);
        assert!(resize_cubic_opencv(flat.view(), 13, 4)
            .unwrap()
            .iter()
            .all(|&v| v == 77));
        assert!(resize_cubic_opencv(flat.view(), 0, 4).is_err());
    }

    #[test]
    fn cubic_by_a_factor_matches_opencv() {
        // cv2 4.10.0 and 5.1.0 (IPP off): `cv2.resize(img, None, fx=f, fy=f,
        // interpolation=cv2.INTER_CUBIC)` with f = f32(1.37) (CMU's float scale) and
        // `img[y, x] = (37x + 23y + (xy mod 7) 11) mod 256` (9 x 11): 15 x 12 out, source step
        // 1 / f = 0.72993 where 11 / 15 = 0.73333 would give other values.
        let img = Array3::from_shape_fn((9, 11, 1), |(y, x, _)| {
            ((x * 37 + y * 23 + (x * y) % 7 * 11) % 256) as u8
        });
        let want: [[u8; 15]; 12] = [
            [
                0, 16, 48, 73, 97, 123, 158, 197, 253, 136, 0, 30, 59, 90, 112,
            ],
            [
                8, 33, 69, 100, 127, 180, 169, 78, 114, 76, 11, 50, 82, 119, 144,
            ],
            [
                27, 57, 102, 140, 178, 240, 178, 0, 15, 39, 40, 79, 117, 163, 197,
            ],
            [
                43, 78, 130, 173, 218, 234, 150, 11, 45, 62, 57, 102, 147, 197, 231,
            ],
            [
                58, 96, 159, 209, 243, 144, 21, 1, 54, 74, 73, 122, 183, 224, 232,
            ],
            [
                75, 123, 182, 189, 107, 13, 0, 47, 78, 82, 94, 151, 200, 159, 71,
            ],
            [
                92, 149, 203, 185, 71, 9, 35, 94, 97, 91, 114, 178, 213, 144, 35,
            ],
            [
                107, 168, 221, 227, 251, 151, 58, 87, 98, 103, 131, 200, 226, 234, 240,
            ],
            [
                122, 216, 188, 42, 92, 90, 70, 88, 103, 114, 154, 244, 119, 48, 111,
            ],
            [
                143, 207, 200, 93, 13, 16, 63, 82, 103, 127, 167, 228, 164, 58, 1,
            ],
            [
                164, 183, 221, 217, 58, 20, 73, 100, 128, 154, 176, 198, 243, 162, 14,
            ],
            [
                179, 230, 176, 38, 53, 89, 128, 159, 200, 200, 193, 239, 114, 34, 71,
            ],
        ];
        let out = resize_cubic_opencv_by(img.view(), 1.37f32 as f64).unwrap();
        assert_eq!(out.dim(), (12, 15, 1));
        for (y, row) in want.iter().enumerate() {
            for (x, &v) in row.iter().enumerate() {
                assert_eq!(out[[y, x, 0]], v, "pixel ({x}, {y})");
            }
        }
        assert!(resize_cubic_opencv_by(img.view(), 0.0).is_err());
        assert!(resize_cubic_opencv_by(img.view(), f64::NAN).is_err());
    }

    #[test]
    fn a_window_of_the_resize_equals_the_whole_resize_there() {
        let img = Array3::from_shape_fn((23, 31, 3), |(y, x, k)| {
            ((x * (7 + k) + y * 13 + (x * y) % 31) % 256) as u8
        });
        for f in [0.37, 1.0, 2.6137f32 as f64] {
            let whole = resize_cubic_opencv_by(img.view(), f).unwrap();
            let (h, w, _) = whole.dim();
            for window in [
                [0, 0, w, h],
                [w / 3, h / 4, w / 2, h / 2],
                [w - 1, h - 1, 1, 1],
            ] {
                let [x, y, ww, wh] = window;
                let part = resize_cubic_opencv_by_window(img.view(), f, window).unwrap();
                assert_eq!(part, whole.slice(ndarray::s![y..y + wh, x..x + ww, ..]));
            }
            assert!(resize_cubic_opencv_by_window(img.view(), f, [w, 0, 1, 1]).is_err());
        }
    }

    #[test]
    fn bilinear_matches_pytorch_conventions() {
        // [[0, 1], [2, 3]] upsampled to 4x4.
        let src = Array3::from_shape_vec((1, 2, 2), vec![0.0f32, 1.0, 2.0, 3.0]).unwrap();
        let ac = resize_bilinear_chw(src.view(), 4, 4, true).unwrap();
        assert!((ac[[0, 0, 1]] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(ac[[0, 3, 3]], 3.0);
        let hp = resize_bilinear_chw(src.view(), 4, 4, false).unwrap();
        // torch: x = [0, 0.25, 0.75, 1] along a row; rows likewise times 2.
        let row: Vec<f32> = (0..4).map(|x| hp[[0, 0, x]]).collect();
        assert_eq!(row, vec![0.0, 0.25, 0.75, 1.0]);
        assert_eq!(hp[[0, 3, 0]], 2.0);
        assert!(resize_bilinear_chw(src.view(), 4, 0, false).is_err());
    }
}
