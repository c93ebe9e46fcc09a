//! Distribution-aware decoding (DARK, Zhang et al., 2020): a network's heatmap is a noisy,
//! flattened Gaussian, so the maximum is first smoothed back into a Gaussian shape with a blur,
//! then its log (a quadratic around the peak) is maximised with one Newton step.
//!
//! Two references exist and differ in their borders and in which joints they refine:
//! DarkPose's `taylor` (used by the standard and unbiased encodings) and MMPose's
//! `refine_keypoints_dark_udp` (for UDP). Both are reproduced, with their float32 derivative
//! arithmetic, since the derivatives are differences of nearly equal numbers.

use ndarray::{Array2, ArrayView2};

/// OpenCV's `getGaussianKernel(ksize, sigma = 0)`: the fixed binomial-like tables OpenCV uses
/// up to size 9, otherwise a sampled Gaussian with OpenCV's default
/// `sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8` (2.0 for the usual 11), normalised to sum 1.
/// `ksize` must be odd; the codec checks that.
pub fn gaussian_kernel(ksize: usize) -> Vec<f64> {
    match ksize {
        1 => vec![1.0],
        3 => vec![0.25, 0.5, 0.25],
        5 => vec![0.0625, 0.25, 0.375, 0.25, 0.0625],
        7 => vec![
            0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125,
        ],
        9 => [4.0, 13.0, 30.0, 51.0, 60.0, 51.0, 30.0, 13.0, 4.0]
            .iter()
            .map(|v| v / 256.0)
            .collect(),
        _ => {
            let sigma = 0.3 * ((ksize as f64 - 1.0) * 0.5 - 1.0) + 0.8;
            let centre = (ksize as f64 - 1.0) * 0.5;
            let raw: Vec<f64> = (0..ksize)
                .map(|i| {
                    let d = i as f64 - centre;
                    (-d * d / (2.0 * sigma * sigma)).exp()
                })
                .collect();
            let sum: f64 = raw.iter().sum();
            raw.into_iter().map(|v| v / sum).collect()
        }
    }
}

/// The references' `gaussian_blur`: the map zero-padded by the kernel radius, blurred with
/// `cv2.GaussianBlur(ksize, 0)` and cropped back, then rescaled so that its maximum equals the
/// original maximum. Because the padding equals the kernel radius, OpenCV's border mode never
/// reaches the kept pixels: the result is a zero-padded separable convolution (computed in
/// f64, as DarkPose's float64 buffer, and stored as f32).
pub fn modulate(map: ArrayView2<f32>, ksize: usize) -> Array2<f32> {
    let (height, width) = map.dim();
    let kernel = gaussian_kernel(ksize);
    let radius = (ksize / 2) as isize;

    let mut rows = Array2::<f64>::zeros((height, width));
    for y in 0..height {
        for x in 0..width {
            let mut acc = 0.0;
            for (j, k) in kernel.iter().enumerate() {
                let sx = x as isize + j as isize - radius;
                if sx >= 0 && (sx as usize) < width {
                    acc += k * map[[y, sx as usize]] as f64;
                }
            }
            rows[[y, x]] = acc;
        }
    }
    let mut blurred = Array2::<f32>::zeros((height, width));
    for y in 0..height {
        for x in 0..width {
            let mut acc = 0.0;
            for (i, k) in kernel.iter().enumerate() {
                let sy = y as isize + i as isize - radius;
                if sy >= 0 && (sy as usize) < height {
                    acc += k * rows[[sy as usize, x]];
                }
            }
            blurred[[y, x]] = acc as f32;
        }
    }

    // float32 / float32 as in NumPy; an all-zero map gives 0 / 0 = NaN like the reference,
    // and the refinement then leaves the joint alone.
    let ratio = nan_max(map) / nan_max(blurred.view());
    blurred.mapv_inplace(|v| v * ratio);
    blurred
}

fn nan_max(map: ArrayView2<f32>) -> f32 {
    map.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// DarkPose's modulated log map: blur, `np.maximum(hm, 1e-10)`, `np.log`.
pub fn dark_log_map(map: ArrayView2<f32>, ksize: usize) -> Array2<f32> {
    let mut log_map = modulate(map, ksize);
    // NaN stays NaN, as with np.maximum (f32::max would hide it).
    log_map.mapv_inplace(|v| {
        let floored = if v.is_nan() || v >= 1e-10 {
            v
        } else {
            1e-10f32
        };
        floored.ln()
    });
    log_map
}

/// MMPose's UDP modulated log map: blur, `np.clip(hm, 1e-3, 50)`, `np.log`.
pub fn udp_log_map(map: ArrayView2<f32>, ksize: usize) -> Array2<f32> {
    let mut log_map = modulate(map, ksize);
    log_map.mapv_inplace(|v| {
        // f32::clamp keeps NaN, as np.clip does.
        v.clamp(1e-3, 50.0).ln()
    });
    log_map
}

/// DarkPose's `taylor`: one Newton step on the log map at the integer maximum `(x, y)`, only
/// where the 5x5 stencil fits strictly inside (`1 < px < W - 2`, `1 < py < H - 2`) and the
/// Hessian's float32 determinant is not zero. Derivatives use float32 like the reference; the
/// 2x2 solve uses f64. A non-finite step leaves the joint where it was.
pub fn refine_dark(log_map: ArrayView2<f32>, x: f32, y: f32) -> (f32, f32) {
    let (height, width) = (log_map.nrows() as i64, log_map.ncols() as i64);
    let (px, py) = (x as i64, y as i64);
    if !(1 < px && px < width - 2 && 1 < py && py < height - 2) {
        return (x, y);
    }
    let (px, py) = (px as usize, py as usize);
    let hm =
        |dx: isize, dy: isize| log_map[[(py as isize + dy) as usize, (px as isize + dx) as usize]];

    let dx = 0.5f32 * (hm(1, 0) - hm(-1, 0));
    let dy = 0.5f32 * (hm(0, 1) - hm(0, -1));
    let dxx = 0.25f32 * (hm(2, 0) - 2.0 * hm(0, 0) + hm(-2, 0));
    let dxy = 0.25f32 * (hm(1, 1) - hm(1, -1) - hm(-1, 1) + hm(-1, -1));
    let dyy = 0.25f32 * (hm(0, 2) - 2.0 * hm(0, 0) + hm(0, -2));
    if dxx * dyy - dxy * dxy == 0.0 {
        return (x, y);
    }
    match newton_step([dx, dy], [dxx, dxy, dyy], 0.0) {
        Some([ox, oy]) => {
            let (nx, ny) = (x + ox as f32, y + oy as f32);
            if nx.is_finite() && ny.is_finite() {
                (nx, ny)
            } else {
                (x, y)
            }
        }
        None => (x, y),
    }
}

/// MMPose's `refine_keypoints_dark_udp` for one joint: the log map edge-padded by one pixel, so
/// every joint is refined, with float32 eps added to the Hessian's diagonal (which also keeps a
/// flat map from dividing by zero). Derivatives are float32, the solve f64, as in the
/// reference (NumPy promotes the Hessian when adding `eps * eye(2)`).
pub fn refine_dark_udp(log_map: ArrayView2<f32>, x: f32, y: f32) -> (f32, f32) {
    let (height, width) = (log_map.nrows() as i64, log_map.ncols() as i64);
    let (px, py) = (x as i64, y as i64);
    let hm = |dx: i64, dy: i64| {
        let xx = (px + dx).clamp(0, width - 1) as usize;
        let yy = (py + dy).clamp(0, height - 1) as usize;
        log_map[[yy, xx]]
    };
    let i_ = hm(0, 0);
    let ix1 = hm(1, 0);
    let iy1 = hm(0, 1);
    let ix1y1 = hm(1, 1);
    let ix1_y1_ = hm(-1, -1);
    let ix1_ = hm(-1, 0);
    let iy1_ = hm(0, -1);

    let dx = 0.5f32 * (ix1 - ix1_);
    let dy = 0.5f32 * (iy1 - iy1_);
    let dxx = ix1 - 2.0 * i_ + ix1_;
    let dyy = iy1 - 2.0 * i_ + iy1_;
    let dxy = 0.5f32 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_);
    match newton_step([dx, dy], [dxx, dxy, dyy], f32::EPSILON as f64) {
        Some([ox, oy]) => {
            let (nx, ny) = ((x as f64 + ox) as f32, (y as f64 + oy) as f32);
            if nx.is_finite() && ny.is_finite() {
                (nx, ny)
            } else {
                (x, y)
            }
        }
        None => (x, y),
    }
}

/// `-(H + eps I)^-1 g` in f64 for the symmetric Hessian `[dxx, dxy, dyy]`; None when singular.
fn newton_step(gradient: [f32; 2], hessian: [f32; 3], eps: f64) -> Option<[f64; 2]> {
    let [gx, gy] = gradient.map(f64::from);
    let [dxx, dxy, dyy] = hessian.map(f64::from);
    let (a, b, d) = (dxx + eps, dxy, dyy + eps);
    let det = a * d - b * b;
    if det == 0.0 || !det.is_finite() {
        return None;
    }
    Some([-(d * gx - b * gy) / det, -(-b * gx + a * gy) / det])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_sum_to_one_and_match_opencv_sigma() {
        for k in [1, 3, 5, 7, 9, 11, 17] {
            let kernel = gaussian_kernel(k);
            assert_eq!(kernel.len(), k);
            assert!((kernel.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        // cv2.getGaussianKernel(11, 0)[5]
        assert!((gaussian_kernel(11)[5] - 0.200_565_41).abs() < 1e-8);
    }

    #[test]
    fn newton_step_finds_the_peak_of_a_sampled_gaussian() {
        let (cx, cy) = (10.3f64, 8.6f64);
        let log_map = Array2::from_shape_fn((20, 20), |(r, c)| {
            let (dx, dy) = (c as f64 - cx, r as f64 - cy);
            (-(dx * dx + dy * dy) / 8.0) as f32
        });
        let (x, y) = refine_dark(log_map.view(), 10.0, 9.0);
        assert!((x as f64 - cx).abs() < 1e-4 && (y as f64 - cy).abs() < 1e-4);
        let (x, y) = refine_dark_udp(log_map.view(), 10.0, 9.0);
        assert!((x as f64 - cx).abs() < 1e-4 && (y as f64 - cy).abs() < 1e-4);
    }

    #[test]
    fn flat_maps_leave_the_joint_alone() {
        let flat = Array2::<f32>::from_elem((10, 10), -3.0);
        assert_eq!(refine_dark(flat.view(), 5.0, 5.0), (5.0, 5.0));
        assert_eq!(refine_dark_udp(flat.view(), 5.0, 5.0), (5.0, 5.0));
    }

    #[test]
    fn modulation_keeps_the_maximum() {
        let mut map = Array2::<f32>::zeros((9, 9));
        map[[4, 4]] = 0.8;
        map[[4, 5]] = 0.4;
        let blurred = modulate(map.view(), 11);
        assert!((nan_max(blurred.view()) - 0.8).abs() < 1e-6);
    }
}
