//! The integer maximum of a heatmap and HRNet's quarter-pixel shift, the decoding every
//! refinement starts from.

use ndarray::ArrayView2;

use crate::codecs::peaks::Peak;

/// HRNet's `get_max_preds` for one map (its position in heatmap pixels and its value): the
/// first maximum in row-major order (NumPy's `argmax`
/// tie rule) and its value; the position is masked to `(0, 0)` unless the value is positive,
/// which is how the reference marks a joint it did not find.
///
/// NaN values are skipped (a map of only NaN gives score NaN at `(0, 0)`), so one bad value
/// does not hide a real peak. An empty map gives score NaN.
pub fn heatmap_maximum(map: ArrayView2<f32>) -> Peak {
    let width = map.ncols();
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in map.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    match best {
        Some((i, score)) if score > 0.0 => Peak {
            x: i % width,
            y: i / width,
            score,
        },
        Some((_, score)) => Peak { x: 0, y: 0, score },
        None => Peak {
            x: 0,
            y: 0,
            score: f32::NAN,
        },
    }
}

/// `np.sign` for the shift; NaN counts as no direction rather than poisoning the coordinate.
fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// HRNet's `get_final_preds` post-processing: a quarter pixel toward the higher neighbour on
/// each axis, an approximation of the sub-pixel peak. It applies only when
/// `1 < px < W - 1 and 1 < py < H - 1` (with `p = floor(coord + 0.5)`), both axes together;
/// the reference's bound skips pixel 1 although its neighbours exist, and so does this.
pub fn quarter_pixel_shift(map: ArrayView2<f32>, x: f32, y: f32) -> (f32, f32) {
    let (height, width) = (map.nrows() as i64, map.ncols() as i64);
    let px = (x + 0.5).floor() as i64;
    let py = (y + 0.5).floor() as i64;
    if !(1 < px && px < width - 1 && 1 < py && py < height - 1) {
        return (x, y);
    }
    let (px, py) = (px as usize, py as usize);
    let dx = map[[py, px + 1]] - map[[py, px - 1]];
    let dy = map[[py + 1, px]] - map[[py - 1, px]];
    (x + sign(dx) * 0.25, y + sign(dy) * 0.25)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    #[test]
    fn ties_go_to_the_first_maximum() {
        let map = array![[0.0f32, 0.5, 0.2], [0.5, 0.1, 0.5]];
        assert_eq!(
            heatmap_maximum(map.view()),
            Peak {
                x: 1,
                y: 0,
                score: 0.5
            }
        );
    }

    #[test]
    fn nan_values_are_skipped() {
        let map = array![[f32::NAN, 0.5], [0.7, f32::NAN]];
        assert_eq!(
            heatmap_maximum(map.view()),
            Peak {
                x: 0,
                y: 1,
                score: 0.7
            }
        );
        let all_nan = Array2::from_elem((2, 2), f32::NAN);
        let peak = heatmap_maximum(all_nan.view());
        assert!(peak.score.is_nan() && peak.x == 0 && peak.y == 0);
    }

    #[test]
    fn equal_neighbours_do_not_shift() {
        let mut map = Array2::<f32>::zeros((6, 6));
        map[[3, 3]] = 1.0;
        map[[3, 2]] = 0.5;
        map[[3, 4]] = 0.5;
        map[[2, 3]] = 0.4;
        assert_eq!(quarter_pixel_shift(map.view(), 3.0, 3.0), (3.0, 2.75));
    }
}
