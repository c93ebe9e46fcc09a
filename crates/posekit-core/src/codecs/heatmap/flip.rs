//! The flip test: the network also sees the mirrored crop, and its heatmaps, mirrored back with
//! left and right joints swapped, are averaged with the normal ones, which reduces noise in both.

use ndarray::{s, Array3, ArrayView3, Axis};

use crate::error::{Error, Result};

/// HRNet's `flip_back`: mirrors each map horizontally and swaps the channels of each flip pair,
/// pair by pair in the given order (as the reference's loop does).
pub fn flip_back(flipped: ArrayView3<f32>, flip_pairs: &[[usize; 2]]) -> Result<Array3<f32>> {
    let num_joints = flipped.len_of(Axis(0));
    let mut source: Vec<usize> = (0..num_joints).collect();
    for (i, &[a, b]) in flip_pairs.iter().enumerate() {
        if a >= num_joints || b >= num_joints {
            return Err(Error::Shape(format!(
                "flip_back: flip pair {i} is [{a}, {b}] but the heatmaps have {num_joints} joints"
            )));
        }
        source.swap(a, b);
    }
    let mirrored = flipped.slice(s![.., .., ..;-1]);
    let mut out = Array3::<f32>::zeros(flipped.raw_dim());
    for (k, &src) in source.iter().enumerate() {
        out.index_axis_mut(Axis(0), k)
            .assign(&mirrored.index_axis(Axis(0), src));
    }
    Ok(out)
}

/// HRNet's `SHIFT_HEATMAP`: `maps[:, :, 1:] = maps[:, :, :-1]`, column 0 keeping its value.
/// With stride `s = input / heatmap` the flipped-back maps sit `1 - 1/s` pixels left of the
/// normal ones; the one-pixel shift approximately compensates it.
pub fn shift_flipped_heatmaps(maps: &mut Array3<f32>) {
    let width = maps.len_of(Axis(2));
    for c in (1..width).rev() {
        let (left, mut right) = maps.multi_slice_mut((s![.., .., c - 1], s![.., .., c]));
        right.assign(&left);
    }
}

/// The flip-test merge: `(output + shift(flip_back(flipped_output))) * 0.5`, the shift only
/// when `shift` is set (HRNet and DARK: yes; UDP: no).
pub fn merge_flip(
    output: ArrayView3<f32>,
    flipped_output: ArrayView3<f32>,
    flip_pairs: &[[usize; 2]],
    shift: bool,
) -> Result<Array3<f32>> {
    if output.dim() != flipped_output.dim() {
        return Err(Error::Shape(format!(
            "flip test: output is {:?} but the flipped output is {:?}",
            output.shape(),
            flipped_output.shape()
        )));
    }
    let mut back = flip_back(flipped_output, flip_pairs)?;
    if shift {
        shift_flipped_heatmaps(&mut back);
    }
    back.zip_mut_with(&output, |b, &o| *b = (o + *b) * 0.5);
    Ok(back)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(k: usize, h: usize, w: usize) -> Array3<f32> {
        Array3::from_shape_fn((k, h, w), |(c, y, x)| (c * 100 + y * 10 + x) as f32)
    }

    #[test]
    fn flip_back_is_an_involution() {
        let maps = ramp(5, 3, 4);
        let pairs = [[1, 2], [3, 4]];
        let twice = flip_back(flip_back(maps.view(), &pairs).unwrap().view(), &pairs).unwrap();
        assert_eq!(twice, maps);
    }

    #[test]
    fn flip_back_mirrors_and_swaps() {
        let maps = ramp(3, 2, 3);
        let back = flip_back(maps.view(), &[[0, 2]]).unwrap();
        assert_eq!(back[[0, 1, 0]], maps[[2, 1, 2]]);
        assert_eq!(back[[2, 0, 2]], maps[[0, 0, 0]]);
        assert_eq!(back[[1, 0, 0]], maps[[1, 0, 2]]);
    }

    #[test]
    fn shift_moves_columns_right_and_keeps_the_first() {
        let mut maps = ramp(1, 1, 4);
        shift_flipped_heatmaps(&mut maps);
        assert_eq!(
            maps.iter().copied().collect::<Vec<_>>(),
            vec![0.0, 0.0, 1.0, 2.0]
        );
    }

    #[test]
    fn merge_of_a_symmetric_output_with_itself_is_itself() {
        // A map symmetric about its centre column, seen unflipped and flipped, merges to
        // itself without the shift.
        let maps = Array3::from_shape_fn((1, 2, 5), |(_, y, x)| {
            (y * 10) as f32 + (x as f32 - 2.0).abs()
        });
        let merged = merge_flip(maps.view(), maps.view(), &[], false).unwrap();
        assert_eq!(merged, maps);
    }

    #[test]
    fn bad_pairs_and_shapes_are_errors() {
        let maps = ramp(2, 2, 2);
        assert!(flip_back(maps.view(), &[[0, 2]]).is_err());
        let other = ramp(3, 2, 2);
        assert!(merge_flip(maps.view(), other.view(), &[], true).is_err());
    }
}
