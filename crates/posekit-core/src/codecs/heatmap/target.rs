//! Drawing one joint's Gaussian into its map. The arithmetic mirrors the reference code step by
//! step (Python's truncating `int()`, float32 Gaussians) because targets are compared with the
//! references to 1e-6 and because the truncation decides, at the map's edges, whether a joint
//! gets a target at all.

use ndarray::ArrayViewMut2;

/// Python's `int()` on a float: truncation toward zero (not floor), which matters for joints
/// left of or above the map.
fn py_int(v: f64) -> i64 {
    v.trunc() as i64
}

/// HRNet's `generate_target` patch (and, with `subpixel`, UDP's): a `2 * 3 sigma + 1` square
/// around the joint rounded to a pixel, cut at the map's borders. With `subpixel` the Gaussian
/// inside the square is centred on the exact position instead of the rounded one.
///
/// `centre` is in heatmap pixels. Returns false when the square lies wholly outside the map,
/// the case where the references set the target weight to 0. Note the reference's test is
/// `br < 0`, so a square ending exactly at the left border keeps weight 1 with nothing drawn.
pub(super) fn draw_truncated(
    map: &mut ArrayViewMut2<f32>,
    centre: [f64; 2],
    sigma: f64,
    subpixel: bool,
) -> bool {
    let (height, width) = (map.nrows() as i64, map.ncols() as i64);
    let radius = sigma * 3.0;
    let mu = [py_int(centre[0] + 0.5), py_int(centre[1] + 0.5)];
    let ul = [py_int(mu[0] as f64 - radius), py_int(mu[1] as f64 - radius)];
    let br = [
        py_int(mu[0] as f64 + radius + 1.0),
        py_int(mu[1] as f64 + radius + 1.0),
    ];
    if ul[0] >= width || ul[1] >= height || br[0] < 0 || br[1] < 0 {
        return false;
    }

    // np.arange(0, size) has ceil(size) entries; its centre is size // 2 (a float floor).
    let size = 2.0 * radius + 1.0;
    let patch_len = size.ceil() as i64;
    let mut x0 = (size / 2.0).floor();
    let mut y0 = x0;
    if subpixel {
        x0 += centre[0] - mu[0] as f64;
        y0 += centre[1] - mu[1] as f64;
    }
    // The references subtract a Python float from a float32 grid: float32 arithmetic.
    let (x0, y0) = (x0 as f32, y0 as f32);
    let two_sigma_sq = (2.0 * sigma * sigma) as f32;

    let rows = ul[1].max(0)..br[1].min(height);
    let cols = ul[0].max(0)..br[0].min(width);
    for r in rows {
        let gy = r - ul[1];
        if gy >= patch_len {
            break;
        }
        let dy = gy as f32 - y0;
        for c in cols.clone() {
            let gx = c - ul[0];
            if gx >= patch_len {
                break;
            }
            let dx = gx as f32 - x0;
            map[[r as usize, c as usize]] = (-(dx * dx + dy * dy) / two_sigma_sq).exp();
        }
    }
    true
}

/// DARK's unbiased target (MMPose `generate_unbiased_gaussian_heatmaps`): the Gaussian centred
/// on the exact position over the whole map, in float32 like the reference. Returns false when
/// the 3-sigma square misses the map.
pub(super) fn draw_unbiased(map: &mut ArrayViewMut2<f32>, centre: [f64; 2], sigma: f64) -> bool {
    let (height, width) = (map.nrows() as f32, map.ncols() as f32);
    let radius = (sigma * 3.0) as f32;
    let mu = [centre[0] as f32, centre[1] as f32];
    let (left, top) = (mu[0] - radius, mu[1] - radius);
    let (right, bottom) = (mu[0] + radius + 1.0, mu[1] + radius + 1.0);
    if left >= width || top >= height || right < 0.0 || bottom < 0.0 {
        return false;
    }
    let two_sigma_sq = (2.0 * sigma * sigma) as f32;
    for ((r, c), v) in map.indexed_iter_mut() {
        let dx = c as f32 - mu[0];
        let dy = r as f32 - mu[1];
        *v = (-(dx * dx + dy * dy) / two_sigma_sq).exp();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn python_int_truncates_toward_zero() {
        assert_eq!(py_int(-2.5), -2);
        assert_eq!(py_int(2.5), 2);
        assert_eq!(py_int(-0.25), 0);
    }

    #[test]
    fn non_integer_sigma_keeps_the_reference_patch_size() {
        // sigma 1.5: radius 4.5, np.arange(0, 10.0) has 10 entries, centre 5.
        let mut map = Array2::<f32>::zeros((30, 30));
        assert!(draw_truncated(
            &mut map.view_mut(),
            [15.0, 15.0],
            1.5,
            false
        ));
        // ul = int(10.5) = 10, so the peak (patch index 5) lands on pixel 15.
        assert_eq!(map[[15, 15]], 1.0);
        let nonzero = map.iter().filter(|v| **v > 0.0).count();
        assert_eq!(nonzero, 10 * 10);
    }

    #[test]
    fn udp_patch_peaks_between_pixels() {
        let mut map = Array2::<f32>::zeros((20, 20));
        assert!(draw_truncated(&mut map.view_mut(), [10.25, 7.5], 2.0, true));
        // Symmetric around 7.5 in y: rows 7 and 8 are equal.
        assert_eq!(map[[7, 10]], map[[8, 10]]);
        assert!(map[[7, 10]] > map[[7, 11]]);
    }

    #[test]
    fn a_square_ending_on_the_left_border_keeps_its_weight() {
        // mu = int(-8 + 0.5) = -7 and br = int(-7 + 6 + 1) = 0: not `< 0`, so weight 1, but the
        // square covers no pixel. One step further left, br = -1 and the joint is dropped.
        let mut map = Array2::<f32>::zeros((10, 10));
        assert!(draw_truncated(&mut map.view_mut(), [-8.0, 5.0], 2.0, false));
        assert!(map.iter().all(|v| *v == 0.0));
        assert!(!draw_truncated(
            &mut map.view_mut(),
            [-8.6, 5.0],
            2.0,
            false
        ));
    }
}
