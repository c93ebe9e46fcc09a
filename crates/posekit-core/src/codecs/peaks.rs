//! The one [`Peak`] type of every codec, and peak picking on heatmaps the way the bottom-up
//! PyTorch code bases do it: max-pool NMS (`MaxPool2d(k, stride 1, padding (k-1)/2)` and keep
//! the pixels equal to the pooled value) followed by `topk` over the flattened map.
//!
//! The picking is used by associative-embedding grouping and the SPM decoder. The PAF decoder
//! has its own peak rules, after OpenPose ([`super::paf::peaks`]), and the top-down heatmap
//! decoder takes each map's single maximum ([`super::heatmap::maximum`]); both report the same
//! [`Peak`].
//!
//! Ties. `torch.topk` on CPU orders exactly equal values by libstdc++'s heap/introsort, which
//! is not index order; when ties straddle the k-th place it keeps the lowest flat indices.
//! Here ties are always broken by ascending flat index (`y * W + x`): the same *set* of peaks
//! as torch, in a well-defined order. Exactly equal surviving maxima only happen on plateaus,
//! which float network outputs practically never have.
//!
//! Inputs are expected to be finite; a NaN compares unequal to everything, so it is never a
//! peak here (torch would propagate it).

use ndarray::{Array3, ArrayView2, ArrayView3};

use crate::error::{Error, Result};

/// A joint candidate: a local maximum (or the maximum) of a heatmap at an integer pixel of the
/// map it was found on, and its score. Which joint it belongs to is known to the caller (one
/// map per joint) or to the collection holding it (the PAF decoder's
/// [`PeakSet`](super::paf::PeakSet)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    pub x: usize,
    pub y: usize,
    /// The heatmap value at the peak (for the PAF decoder: on the unsmoothed map).
    pub score: f32,
}

fn check_kernel(kernel: usize) -> Result<()> {
    if kernel == 0 || kernel.is_multiple_of(2) {
        return Err(Error::Shape(format!(
            "NMS kernel must be odd and at least 1 (a stride-1 max pool with padding (k-1)/2 \
             keeps the map size only for odd k), got {kernel}"
        )));
    }
    Ok(())
}

/// Whether `map[y, x]` equals the maximum of the `kernel × kernel` window centred on it
/// (the window clipped to the map, which is what padding with -inf amounts to).
#[inline]
fn is_window_max(map: &ArrayView2<f32>, x: usize, y: usize, radius: usize) -> bool {
    let (h, w) = map.dim();
    let v = map[[y, x]];
    let (y0, y1) = (y.saturating_sub(radius), (y + radius).min(h - 1));
    let (x0, x1) = (x.saturating_sub(radius), (x + radius).min(w - 1));
    for yy in y0..=y1 {
        let row = map.row(yy);
        for xx in x0..=x1 {
            // `v < other` (not `!(v >= other)`) so that a NaN neighbour does not veto.
            if v < row[xx] {
                return false;
            }
        }
    }
    !v.is_nan()
}

/// A cheap first test for windows of radius >= 1: on a smooth heatmap most pixels above the
/// threshold have a higher left or right neighbour, and since both neighbours lie in the
/// window that alone rules them out before the full window is read.
#[inline]
fn beaten_by_row_neighbour(row: &[f32], x: usize, v: f32) -> bool {
    (x > 0 && v < row[x - 1]) || (x + 1 < row.len() && v < row[x + 1])
}

/// [`is_window_max`] on a contiguous row-major `h x w` map.
#[inline]
fn is_window_max_contiguous(
    data: &[f32],
    w: usize,
    h: usize,
    x: usize,
    y: usize,
    radius: usize,
) -> bool {
    let v = data[y * w + x];
    let (y0, y1) = (y.saturating_sub(radius), (y + radius).min(h - 1));
    let (x0, x1) = (x.saturating_sub(radius), (x + radius).min(w - 1));
    for yy in y0..=y1 {
        if data[yy * w + x0..=yy * w + x1].iter().any(|&o| v < o) {
            return false;
        }
    }
    !v.is_nan()
}

/// Max-pool NMS of every channel of a `[K, H, W]` stack: pixels that are not the maximum of
/// their `kernel × kernel` neighbourhood become 0, the others keep their value (as
/// `det * (maxpool(det) == det)` does).
pub fn max_pool_nms(heatmaps: ArrayView3<f32>, kernel: usize) -> Result<Array3<f32>> {
    check_kernel(kernel)?;
    let radius = (kernel - 1) / 2;
    let mut out = Array3::<f32>::zeros(heatmaps.raw_dim());
    for (k, map) in heatmaps.outer_iter().enumerate() {
        let (h, w) = map.dim();
        for y in 0..h {
            for x in 0..w {
                if is_window_max(&map, x, y, radius) {
                    out[[k, y, x]] = map[[y, x]];
                }
            }
        }
    }
    Ok(out)
}

/// The `k` largest values of a `[H, W]` map, largest first, ties by ascending flat index.
pub fn top_k(map: ArrayView2<f32>, k: usize) -> Vec<Peak> {
    let w = map.dim().1;
    let mut all: Vec<(f32, usize)> = map.iter().enumerate().map(|(i, &v)| (v, i)).collect();
    sort_descending(&mut all);
    all.truncate(k);
    all.into_iter()
        .map(|(score, i)| Peak {
            x: i % w,
            y: i / w,
            score,
        })
        .collect()
}

/// NMS and top-k fused for the common case where only peaks above a threshold matter.
///
/// Returns the same peaks, in the same order, as `top_k(max_pool_nms(map), k)` filtered to
/// `score > threshold`, for any `threshold >= 0` (suppressed pixels are 0 there, so they can
/// never pass). Only pixels above the threshold are window-tested, which makes this cheap on
/// real heatmaps where nearly everything is background.
pub fn local_maxima_above(
    map: ArrayView2<f32>,
    kernel: usize,
    threshold: f32,
    k: usize,
) -> Result<Vec<Peak>> {
    check_kernel(kernel)?;
    if threshold.is_nan() || threshold < 0.0 {
        return Err(Error::Shape(format!(
            "peak threshold must be >= 0 (suppressed pixels are 0 after NMS), got {threshold}"
        )));
    }
    let radius = (kernel - 1) / 2;
    let (h, w) = map.dim();
    let mut found: Vec<(f32, usize)> = Vec::new();
    if let Some(data) = map.as_slice() {
        for (y, row) in data.chunks_exact(w).enumerate() {
            for (x, &v) in row.iter().enumerate() {
                if v > threshold
                    && (radius == 0 || !beaten_by_row_neighbour(row, x, v))
                    && is_window_max_contiguous(data, w, h, x, y, radius)
                {
                    found.push((v, y * w + x));
                }
            }
        }
    } else {
        for y in 0..h {
            let row = map.row(y);
            for x in 0..w {
                let v = row[x];
                if v > threshold && is_window_max(&map, x, y, radius) {
                    found.push((v, y * w + x));
                }
            }
        }
    }
    sort_descending(&mut found);
    found.truncate(k);
    Ok(found
        .into_iter()
        .map(|(score, i)| Peak {
            x: i % w,
            y: i / w,
            score,
        })
        .collect())
}

fn sort_descending(items: &mut [(f32, usize)]) {
    items.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    #[test]
    fn nms_keeps_window_maxima_including_plateaus() {
        let map = array![
            [0.0f32, 0.1, 0.0, 0.0, 0.0, 0.0],
            [0.1, 0.9, 0.2, 0.0, 0.0, 0.0],
            [0.0, 0.2, 0.3, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.5, 0.5],
        ];
        let out = max_pool_nms(map.view().insert_axis(ndarray::Axis(0)), 3).unwrap();
        let out = out.index_axis(ndarray::Axis(0), 0);
        assert_eq!(out[[1, 1]], 0.9);
        assert_eq!(out[[2, 2]], 0.0, "0.3 is next to 0.9");
        assert_eq!(out[[3, 4]], 0.5);
        assert_eq!(out[[3, 5]], 0.5, "both plateau pixels survive, as in torch");
        // Zeros far from everything equal their (all-zero) window max and survive as 0.
        assert_eq!(out[[0, 5]], 0.0);
    }

    #[test]
    fn kernel_must_be_odd() {
        let map = Array2::<f32>::zeros((4, 4));
        assert!(max_pool_nms(map.view().insert_axis(ndarray::Axis(0)), 4).is_err());
        assert!(local_maxima_above(map.view(), 0, 0.1, 3).is_err());
        assert!(local_maxima_above(map.view(), 3, -0.1, 3).is_err());
    }

    #[test]
    fn top_k_sorts_descending_with_index_ties() {
        let map = array![[0.5f32, 0.1, 0.7], [0.5, 0.9, 0.5]];
        let p = top_k(map.view(), 4);
        let got: Vec<(usize, usize, f32)> = p.iter().map(|p| (p.x, p.y, p.score)).collect();
        assert_eq!(
            got,
            vec![(1, 1, 0.9), (2, 0, 0.7), (0, 0, 0.5), (0, 1, 0.5)]
        );
        assert_eq!(top_k(map.view(), 100).len(), 6);
    }

    #[test]
    fn fused_peaks_equal_nms_then_top_k() {
        let mut s = 12345u64;
        let map = Array2::from_shape_fn((23, 31), |_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((s >> 40) % 1000) as f32 / 1000.0
        });
        for kernel in [1, 3, 5, 7] {
            let nms = max_pool_nms(map.view().insert_axis(ndarray::Axis(0)), kernel).unwrap();
            let reference: Vec<Peak> = top_k(nms.index_axis(ndarray::Axis(0), 0), 20)
                .into_iter()
                .filter(|p| p.score > 0.3)
                .collect();
            let fused = local_maxima_above(map.view(), kernel, 0.3, 20).unwrap();
            assert_eq!(fused, reference, "kernel {kernel}");
            // A transposed view is not contiguous and takes the general path.
            let t = map.t();
            let nms = max_pool_nms(t.insert_axis(ndarray::Axis(0)), kernel).unwrap();
            let reference: Vec<Peak> = top_k(nms.index_axis(ndarray::Axis(0), 0), 20)
                .into_iter()
                .filter(|p| p.score > 0.3)
                .collect();
            let strided = local_maxima_above(t, kernel, 0.3, 20).unwrap();
            assert_eq!(strided, reference, "kernel {kernel}, transposed");
        }
    }
}
