//! Savitzky-Golay smoothing over a whole track (offline), as `scipy.signal.savgol_filter` with
//! its default `mode='interp'` computes it, which is what MMPose's `SavizkyGolayFilter` calls
//! (defaults `window_size=11`, `polyorder=2`, the defaults here).
//!
//! Each sample is replaced by the value at its position of the least-squares polynomial of
//! degree `polyorder` through the `window` samples centred on it; within `window / 2` of either
//! end, the polynomial through the first (last) `window` samples is evaluated there instead.
//! A track shorter than the window is smoothed with the longest odd window it has, and left as
//! it is when that is not longer than `polyorder`.

use crate::error::{Error, Result};
use crate::Pose;

/// Parameters of the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavgolParams {
    /// Odd number of samples, at least 3.
    pub window: usize,
    /// Degree of the polynomial, below `window`.
    pub polyorder: usize,
}

impl Default for SavgolParams {
    fn default() -> Self {
        SavgolParams {
            window: 11,
            polyorder: 2,
        }
    }
}

impl SavgolParams {
    pub fn validate(&self) -> Result<()> {
        if self.window < 3 || self.window.is_multiple_of(2) {
            return Err(Error::Shape(format!(
                "Savitzky-Golay window must be odd and at least 3, got {}",
                self.window
            )));
        }
        if self.polyorder >= self.window {
            return Err(Error::Shape(format!(
                "Savitzky-Golay polyorder ({}) must be below the window ({})",
                self.polyorder, self.window
            )));
        }
        Ok(())
    }
}

/// Weights `w` such that `Σ w[i] · y[i]` over a window of `window` samples is the fitted
/// polynomial's value at sample `at` (`window / 2` is the centre, scipy's `savgol_coeffs(...,
/// pos=at, use='dot')`).
pub fn savgol_coefficients(window: usize, polyorder: usize, at: usize) -> Vec<f64> {
    let n = polyorder + 1;
    let half = (window / 2) as f64;
    // Centred abscissae keep the normal equations well conditioned.
    let t: Vec<f64> = (0..window).map(|i| i as f64 - half).collect();
    let t0 = at as f64 - half;
    // Normal matrix AᵀA (A[i][j] = t_i^j) and right-hand side e = [1, t0, t0², ...].
    let mut m = vec![vec![0.0f64; n + 1]; n];
    for (r, row) in m.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().take(n).enumerate() {
            *v = t.iter().map(|ti| ti.powi((r + c) as i32)).sum();
        }
        row[n] = t0.powi(r as i32);
    }
    // Gauss-Jordan with partial pivoting (AᵀA is symmetric positive definite for window > order).
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))
            .unwrap_or(col);
        m.swap(col, pivot);
        let d = m[col][col];
        for v in m[col].iter_mut() {
            *v /= d;
        }
        for r in 0..n {
            if r != col {
                let f = m[r][col];
                if f != 0.0 {
                    let pivot_row = m[col].clone();
                    for (v, p) in m[r].iter_mut().zip(&pivot_row) {
                        *v -= f * p;
                    }
                }
            }
        }
    }
    let z: Vec<f64> = m.iter().map(|row| row[n]).collect();
    t.iter()
        .map(|ti| {
            z.iter()
                .enumerate()
                .map(|(j, zj)| zj * ti.powi(j as i32))
                .sum()
        })
        .collect()
}

/// `scipy.signal.savgol_filter(y, window, polyorder)` (mode `interp`), with a window shrunk to
/// the longest odd one that fits a short series.
pub fn savgol_filter(y: &[f64], params: &SavgolParams) -> Result<Vec<f64>> {
    params.validate()?;
    let mut window = params.window.min(y.len());
    if window.is_multiple_of(2) {
        window = window.saturating_sub(1);
    }
    if window <= params.polyorder || window < 3 {
        return Ok(y.to_vec());
    }
    let half = window / 2;
    let n = y.len();
    let dot = |w: &[f64], start: usize| -> f64 {
        w.iter()
            .zip(&y[start..start + window])
            .map(|(a, b)| a * b)
            .sum()
    };
    let centre = savgol_coefficients(window, params.polyorder, half);
    let mut out = vec![0.0; n];
    for (i, o) in out.iter_mut().enumerate().take(n - half).skip(half) {
        *o = dot(&centre, i - half);
    }
    for i in 0..half {
        out[i] = dot(&savgol_coefficients(window, params.polyorder, i), 0);
        let j = n - half + i;
        out[j] = dot(
            &savgol_coefficients(window, params.polyorder, half + 1 + i),
            n - window,
        );
    }
    Ok(out)
}

/// Smooths one track in place: `poses` are the track's poses in frame order. Each joint is
/// smoothed over the frames where it was found (score above `min_score`), treated as evenly
/// spaced; the other frames' values of that joint are left alone.
pub fn smooth_track(poses: &mut [Pose], params: &SavgolParams, min_score: f32) -> Result<()> {
    params.validate()?;
    let joints = poses.iter().map(|p| p.keypoints.len()).max().unwrap_or(0);
    for j in 0..joints {
        let seen: Vec<usize> = poses
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.keypoints
                    .get(j)
                    .is_some_and(|k| k.score > min_score && k.x.is_finite() && k.y.is_finite())
            })
            .map(|(i, _)| i)
            .collect();
        let xs: Vec<f64> = seen
            .iter()
            .map(|&i| poses[i].keypoints[j].x as f64)
            .collect();
        let ys: Vec<f64> = seen
            .iter()
            .map(|&i| poses[i].keypoints[j].y as f64)
            .collect();
        let (xs, ys) = (savgol_filter(&xs, params)?, savgol_filter(&ys, params)?);
        for (n, &i) in seen.iter().enumerate() {
            poses[i].keypoints[j].x = xs[n] as f32;
            poses[i].keypoints[j].y = ys[n] as f32;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_polynomial_of_the_filter_order_passes_unchanged() {
        let y: Vec<f64> = (0..30)
            .map(|i| 3.0 - 0.5 * i as f64 + 0.02 * (i * i) as f64)
            .collect();
        let out = savgol_filter(&y, &SavgolParams::default()).unwrap();
        for (a, b) in y.iter().zip(&out) {
            assert!((a - b).abs() < 1e-9, "{a} {b}");
        }
    }

    #[test]
    fn bad_parameters_are_errors_and_short_tracks_are_handled() {
        assert!(savgol_filter(
            &[1.0; 20],
            &SavgolParams {
                window: 4,
                polyorder: 2
            }
        )
        .is_err());
        assert!(savgol_filter(
            &[1.0; 20],
            &SavgolParams {
                window: 5,
                polyorder: 5
            }
        )
        .is_err());
        // Two samples: no window fits, left as is; four: window 3.
        let p = SavgolParams::default();
        assert_eq!(savgol_filter(&[1.0, 5.0], &p).unwrap(), vec![1.0, 5.0]);
        assert_eq!(savgol_filter(&[], &p).unwrap(), Vec::<f64>::new());
        assert_eq!(savgol_filter(&[1.0, 2.0, 3.0, 4.0], &p).unwrap().len(), 4);
    }
}
