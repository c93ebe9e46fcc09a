//! COCO's compressed RLE string (pycocotools' `rleToString` / `rleFrString`).
//!
//! Each count becomes a little-endian run of 5-bit groups, one printable character per group
//! (`'0' + group`, with bit `0x20` set on every character but a count's last), like LEB128 with
//! 6 bits per character. From the fourth count on (index > 2) what is written is the difference
//! with the count two places before, the previous run of the same value, which is small and may
//! be negative; the last group's bit `0x10` carries the sign.

use super::rle::Rle;
use super::MaskError;

/// Bit that says another character of the same count follows.
const MORE: i64 = 0x20;
/// Sign bit of a count's last group.
const SIGN: i64 = 0x10;
/// The value bits of a group.
const GROUP: i64 = 0x1f;
/// Characters are `'0' + (0..64)`, from `'0'` to `'o'`.
const FIRST_CHAR: u8 = b'0';
const LAST_CHAR: u8 = b'0' + 63;
/// 7 groups hold 35 bits, enough for any difference of two 32-bit counts with its sign.
const MAX_GROUPS: u32 = 7;

impl Rle {
    /// The compressed string of the counts (the `counts` of COCO's RLE results).
    pub fn to_compressed(&self) -> String {
        let counts = self.counts();
        let mut out = String::with_capacity(counts.len() * 2);
        for (i, &count) in counts.iter().enumerate() {
            let mut x = i64::from(count);
            if i > 2 {
                x -= i64::from(counts[i - 2]);
            }
            loop {
                let mut group = x & GROUP;
                // Arithmetic shift, as C's `>>` on a negative `long`.
                x >>= 5;
                let more = if group & SIGN != 0 { x != -1 } else { x != 0 };
                if more {
                    group |= MORE;
                }
                out.push(char::from(FIRST_CHAR + group as u8));
                if !more {
                    break;
                }
            }
        }
        out
    }

    /// Parses a compressed string for a `height x width` mask.
    ///
    /// pycocotools reads any byte (and past the end of a string cut inside a count); here a
    /// byte outside `'0'..='o'`, a cut count, a count outside `0..=u32::MAX` and counts that do
    /// not cover the mask are errors. Counts pycocotools could write are read exactly; its C
    /// reader shifts an `int`, so it misreads counts beyond 2^29, which are read right here.
    pub fn from_compressed(height: u32, width: u32, s: &str) -> Result<Self, MaskError> {
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::with_capacity(bytes.len());
        let mut p = 0;
        while p < bytes.len() {
            let index = counts.len();
            let mut x: i64 = 0;
            let mut groups = 0u32;
            loop {
                let Some(&byte) = bytes.get(p) else {
                    return Err(MaskError::CompressedTruncated { index });
                };
                if !(FIRST_CHAR..=LAST_CHAR).contains(&byte) {
                    return Err(MaskError::CompressedByte {
                        position: p,
                        byte: s[p..].chars().next().unwrap_or('\u{fffd}'),
                    });
                }
                if groups == MAX_GROUPS {
                    return Err(MaskError::CompressedTooLong { index });
                }
                let c = i64::from(byte - FIRST_CHAR);
                x |= (c & GROUP) << (5 * groups);
                p += 1;
                groups += 1;
                if c & MORE == 0 {
                    if c & SIGN != 0 {
                        x |= -1i64 << (5 * groups);
                    }
                    break;
                }
            }
            if index > 2 {
                x += i64::from(counts[index - 2]);
            }
            let count = match u32::try_from(x) {
                Ok(c) => c,
                Err(_) if x < 0 => return Err(MaskError::NegativeCount { index, value: x }),
                Err(_) => return Err(MaskError::CountTooLarge { index, value: x }),
            };
            counts.push(count);
        }
        Rle::new(height, width, counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_strings() {
        // pycocotools: mask.encode of a 2x3 Fortran mask [[0,1,0],[1,1,0]] -> b'132'.
        let rle = Rle::new(2, 3, vec![1, 3, 2]).unwrap();
        assert_eq!(rle.to_compressed(), "132");
        // pycocotools: frPyObjects([[10,10,20,10,20,20,10,20]], 50, 60) -> this string.
        let rle = Rle::from_compressed(50, 60, "n?:X100000000000000000Vn1").unwrap();
        assert_eq!(rle.area(), 100);
        assert_eq!(rle.to_compressed(), "n?:X100000000000000000Vn1");
    }

    #[test]
    fn round_trips_large_and_negative_differences() {
        // Differences with the count two back: large positive, large negative, zero.
        let counts = vec![0, 7, 1 << 20, 3, 5, (1 << 28) - 13, 1, 0, 2];
        let total: u32 = counts.iter().sum();
        let rle = Rle::new(1, total, counts.clone()).unwrap();
        let s = rle.to_compressed();
        assert_eq!(
            Rle::from_compressed(1, total, &s).unwrap().counts(),
            &counts
        );
    }

    #[test]
    fn round_trips_32_bit_counts() {
        let counts = vec![u32::MAX - 5, 5];
        let rle = Rle::new(1, u32::MAX, counts.clone()).unwrap();
        let s = rle.to_compressed();
        assert!(s.len() <= 14, "{s}");
        assert_eq!(
            Rle::from_compressed(1, u32::MAX, &s).unwrap().counts(),
            &counts
        );
    }

    #[test]
    fn bad_strings_are_errors() {
        let err = Rle::from_compressed(2, 3, "1 32").unwrap_err();
        assert_eq!(
            err.to_string(),
            "compressed RLE: byte 1 is ' ', not one of the characters '0' to 'o' COCO writes"
        );
        assert!(matches!(
            Rle::from_compressed(2, 3, "13é"),
            Err(MaskError::CompressedByte {
                position: 2,
                byte: 'é'
            })
        ));
        // 'P' = '0' + 0x20: a count that says more characters follow, then the string ends.
        assert_eq!(
            Rle::from_compressed(2, 3, "13P").unwrap_err(),
            MaskError::CompressedTruncated { index: 2 }
        );
        assert_eq!(
            Rle::from_compressed(2, 3, "1PPPPPPP1").unwrap_err(),
            MaskError::CompressedTooLong { index: 1 }
        );
        // '?' = '0' + 15 would be fine; 'O' = '0' + 31 is -1 with the sign bit.
        assert_eq!(
            Rle::from_compressed(2, 3, "1O").unwrap_err(),
            MaskError::NegativeCount {
                index: 1,
                value: -1
            }
        );
        assert!(matches!(
            Rle::from_compressed(2, 3, "133"),
            Err(MaskError::CountsSum { sum: 7, .. })
        ));
        assert_eq!(
            Rle::from_compressed(0, 3, "").unwrap().counts(),
            &[] as &[u32]
        );
    }
}
