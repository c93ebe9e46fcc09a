//! The run-length encoded mask: its invariants, area, and the conversion to and from a dense
//! array (pycocotools' `rleEncode`, `rleDecode`, `rleArea`).

use ndarray::{Array2, ArrayView2};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::MaskError;

/// A binary mask of `height x width` pixels as COCO run lengths.
///
/// `counts` alternate between runs of 0 and runs of 1, starting with 0 (so a mask whose first
/// pixel is set starts with a count of 0), walking the pixels column by column (see the
/// [module documentation](super)). The counts always add up to `height * width`, which is at
/// most `u32::MAX` as in COCO; runs of length 0 elsewhere are kept as given, because
/// pycocotools keeps them and they change the compressed string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rle {
    height: u32,
    width: u32,
    counts: Vec<u32>,
}

impl Rle {
    /// An RLE from its counts, checked to cover the mask exactly.
    pub fn new(height: u32, width: u32, counts: Vec<u32>) -> Result<Self, MaskError> {
        let expected = pixel_count(height, width)?;
        let sum: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        if sum != expected {
            return Err(MaskError::CountsSum {
                sum,
                height,
                width,
                expected,
            });
        }
        Ok(Rle {
            height,
            width,
            counts,
        })
    }

    /// An RLE from counts as a JSON file spells them (COCO's uncompressed RLE of crowd
    /// regions), where nothing stops a count from being negative or too large.
    ///
    /// pycocotools converts them with `np.array(counts, dtype=np.uint32)`, which refuses
    /// negative numbers; they are refused here too, with the index of the bad count.
    pub fn from_signed_counts(height: u32, width: u32, counts: &[i64]) -> Result<Self, MaskError> {
        let counts = counts
            .iter()
            .enumerate()
            .map(|(index, &value)| match u32::try_from(value) {
                Ok(c) => Ok(c),
                Err(_) if value < 0 => Err(MaskError::NegativeCount { index, value }),
                Err(_) => Err(MaskError::CountTooLarge { index, value }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Rle::new(height, width, counts)
    }

    /// Builds an RLE whose counts are known to add up to `height * width` (the constructors in
    /// this module guarantee it by construction).
    pub(super) fn from_parts_unchecked(height: u32, width: u32, counts: Vec<u32>) -> Self {
        debug_assert_eq!(
            counts.iter().map(|&c| u64::from(c)).sum::<u64>(),
            u64::from(height) * u64::from(width)
        );
        Rle {
            height,
            width,
            counts,
        }
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    /// The run lengths, column-major, starting with a run of 0s.
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    pub fn into_counts(self) -> Vec<u32> {
        self.counts
    }

    /// Number of set pixels (pycocotools' `area`, the sum of the runs of 1s).
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| u64::from(c))
            .sum()
    }

    /// The mask as a row-major `[height, width]` array of 0 and 1.
    ///
    /// pycocotools' `decode` gives the same array (it builds it in Fortran order and numpy
    /// indexes it as `[row, column]`); only the memory order differs.
    pub fn decode(&self) -> Array2<u8> {
        let (h, w) = (self.height as usize, self.width as usize);
        let mut mask = Array2::<u8>::zeros((h, w));
        let pixels = mask
            .as_slice_mut()
            .expect("a freshly allocated array is contiguous");
        let mut start = 0usize;
        for (i, &count) in self.counts.iter().enumerate() {
            let end = start + count as usize;
            if i % 2 == 1 {
                set_column_major_run(pixels, h, w, start, end);
            }
            start = end;
        }
        mask
    }

    /// Encodes a row-major `[height, width]` mask; every non-zero pixel counts as set.
    ///
    /// pycocotools' `encode` expects 0/1 and starts a new run at every change of value, so a
    /// mask holding other values gives it broken counts; here they are all 1.
    pub fn encode(mask: ArrayView2<'_, u8>) -> Result<Self, MaskError> {
        let (h, w) = mask.dim();
        let too_large = || MaskError::TooLarge {
            height: u32::try_from(h).unwrap_or(u32::MAX),
            width: u32::try_from(w).unwrap_or(u32::MAX),
        };
        let height = u32::try_from(h).map_err(|_| too_large())?;
        let width = u32::try_from(w).map_err(|_| too_large())?;
        pixel_count(height, width)?;
        let mut counts = Vec::new();
        let mut value = false;
        let mut run = 0u32;
        // The transposed view iterates column by column, COCO's order.
        for &pixel in mask.t().iter() {
            if (pixel != 0) != value {
                counts.push(run);
                run = 0;
                value = !value;
            }
            run += 1;
        }
        counts.push(run);
        Ok(Rle::from_parts_unchecked(height, width, counts))
    }
}

/// `height * width`, refused above COCO's 32-bit counts.
pub(super) fn pixel_count(height: u32, width: u32) -> Result<u64, MaskError> {
    let n = u64::from(height) * u64::from(width);
    if n > u64::from(u32::MAX) {
        return Err(MaskError::TooLarge { height, width });
    }
    Ok(n)
}

/// Sets the column-major pixel range `start..end` in a row-major `h x w` buffer, one column
/// piece at a time.
fn set_column_major_run(pixels: &mut [u8], h: usize, w: usize, start: usize, end: usize) {
    let (mut col, mut row) = (start / h.max(1), start % h.max(1));
    let mut left = end - start;
    while left > 0 {
        let n = left.min(h - row);
        for r in row..row + n {
            pixels[r * w + col] = 1;
        }
        left -= n;
        row = 0;
        col += 1;
    }
}

/// Written as COCO writes RLEs in results and in `annToRLE`'s output:
/// `{"size": [height, width], "counts": "<compressed string>"}`.
impl Serialize for Rle {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Rle", 2)?;
        st.serialize_field("size", &[self.height, self.width])?;
        st.serialize_field("counts", &self.to_compressed())?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn counts_must_cover_the_mask() {
        assert!(Rle::new(2, 3, vec![1, 2, 3]).is_ok());
        let err = Rle::new(2, 3, vec![1, 2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "RLE counts add up to 3 pixels, but a 2x3 mask has 6"
        );
        assert!(matches!(
            Rle::new(70_000, 70_000, vec![]),
            Err(MaskError::TooLarge { .. })
        ));
    }

    #[test]
    fn signed_counts_name_the_bad_one() {
        let err = Rle::from_signed_counts(2, 3, &[1, -2, 7]).unwrap_err();
        assert_eq!(
            err,
            MaskError::NegativeCount {
                index: 1,
                value: -2
            }
        );
        let err = Rle::from_signed_counts(2, 3, &[1, 1 << 40]).unwrap_err();
        assert_eq!(
            err,
            MaskError::CountTooLarge {
                index: 1,
                value: 1 << 40
            }
        );
        assert_eq!(
            Rle::from_signed_counts(2, 3, &[0, 6]).unwrap().counts(),
            &[0, 6]
        );
    }

    #[test]
    fn decode_is_row_major_from_column_major_runs() {
        // Column-major pixels: col 0 = (0,0) (1,0); col 1 = (0,1) (1,1); col 2 = (0,2) (1,2).
        // Runs: 1 zero, 3 ones -> (1,0) (0,1) (1,1) set; then 2 zeros.
        let rle = Rle::new(2, 3, vec![1, 3, 2]).unwrap();
        assert_eq!(rle.decode(), array![[0, 1, 0], [1, 1, 0]]);
        assert_eq!(rle.area(), 3);
    }

    #[test]
    fn encode_round_trips_and_starts_with_zeros() {
        let mask = array![[1u8, 0, 0, 1], [1, 1, 0, 0], [0, 5, 0, 1]];
        let rle = Rle::encode(mask.view()).unwrap();
        // Column by column: 1 1 0 | 0 1 1 | 0 0 0 | 1 0 1.
        assert_eq!(rle.counts(), &[0, 2, 2, 2, 3, 1, 1, 1]);
        let ones = mask.mapv(|v| u8::from(v != 0));
        assert_eq!(rle.decode(), ones);
        assert_eq!(rle.area(), 6);
        let empty = Rle::encode(Array2::<u8>::zeros((0, 4)).view()).unwrap();
        assert_eq!(empty.counts(), &[0]);
        assert_eq!(empty.decode().dim(), (0, 4));
    }

    #[test]
    fn serializes_as_coco_compressed() {
        let rle = Rle::new(2, 3, vec![1, 3, 2]).unwrap();
        assert_eq!(
            serde_json::to_string(&rle).unwrap(),
            r#"{"size":[2,3],"counts":"132"}"#
        );
    }
}
