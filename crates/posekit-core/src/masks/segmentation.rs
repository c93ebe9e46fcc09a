//! The `segmentation` of a COCO annotation in its three spellings, and its mask
//! (pycocotools' `frPyObjects` and `COCO.annToRLE`).

use std::fmt;

use ndarray::Array2;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::polygon::polygon_rle;
use super::rle::{pixel_count, Rle};
use super::MaskError;

/// A COCO `segmentation`, as written in annotation and result files.
///
/// Parsing checks the JSON types only (numbers where numbers belong, `size` two non-negative
/// integers); whether the values make a mask (even polygon lengths, counts covering the image,
/// the size being the image's) is checked when the mask is built, where the annotation id is
/// known for the error.
#[derive(Debug, Clone, PartialEq)]
pub enum Segmentation {
    /// `[[x0, y0, x1, y1, ...], ...]`: one or more polygons (single people; an occluded person
    /// can have several parts).
    Polygons(Vec<Vec<f64>>),
    /// `{"size": [h, w], "counts": [n0, n1, ...]}`: plain column-major run lengths (crowd
    /// regions in COCO's annotation files). Counts are kept signed so that a negative one is
    /// reported with its annotation rather than as a parse error.
    UncompressedRle { size: [u32; 2], counts: Vec<i64> },
    /// `{"size": [h, w], "counts": "..."}`: the compressed string (results files, OCHuman,
    /// LVIS, and what `annToRLE` returns).
    CompressedRle { size: [u32; 2], counts: String },
}

impl Segmentation {
    /// The masks pycocotools' `frPyObjects(segmentation, height, width)` makes: one per
    /// polygon, or the RLE itself, on a `height x width` image.
    ///
    /// pycocotools ignores `height` and `width` for an RLE (taking its `size`), and `annToRLE`
    /// hands a compressed one over without reading it; here an RLE must be the image's size and
    /// is fully checked.
    pub fn to_rles(&self, height: u32, width: u32) -> Result<Vec<Rle>, MaskError> {
        match self {
            Segmentation::Polygons(polygons) => {
                if polygons.is_empty() {
                    return Err(MaskError::NoPolygons);
                }
                polygons
                    .iter()
                    .enumerate()
                    .map(|(i, p)| polygon_rle(i, p, height, width))
                    .collect()
            }
            Segmentation::UncompressedRle { size, counts } => {
                check_size(*size, height, width)?;
                Ok(vec![Rle::from_signed_counts(height, width, counts)?])
            }
            Segmentation::CompressedRle { size, counts } => {
                check_size(*size, height, width)?;
                Ok(vec![Rle::from_compressed(height, width, counts)?])
            }
        }
    }

    /// The annotation's mask as one RLE, as pycocotools' `COCO.annToRLE` makes it: the union
    /// of the polygons, or the RLE.
    pub fn to_rle(&self, height: u32, width: u32) -> Result<Rle, MaskError> {
        Rle::union(&self.to_rles(height, width)?)
    }

    /// The mask as a row-major `[height, width]` array of 0 and 1 (`COCO.annToMask`).
    pub fn to_mask(&self, height: u32, width: u32) -> Result<Array2<u8>, MaskError> {
        Ok(self.to_rle(height, width)?.decode())
    }
}

fn check_size([rle_height, rle_width]: [u32; 2], height: u32, width: u32) -> Result<(), MaskError> {
    pixel_count(height, width)?;
    if (rle_height, rle_width) != (height, width) {
        return Err(MaskError::SizeMismatch {
            rle_height,
            rle_width,
            height,
            width,
        });
    }
    Ok(())
}

/// The compressed spelling of a mask.
impl From<&Rle> for Segmentation {
    fn from(rle: &Rle) -> Self {
        Segmentation::CompressedRle {
            size: [rle.height(), rle.width()],
            counts: rle.to_compressed(),
        }
    }
}

impl Serialize for Segmentation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Segmentation::Polygons(polygons) => polygons.serialize(s),
            Segmentation::UncompressedRle { size, counts } => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("size", size)?;
                map.serialize_entry("counts", counts)?;
                map.end()
            }
            Segmentation::CompressedRle { size, counts } => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("size", size)?;
                map.serialize_entry("counts", counts)?;
                map.end()
            }
        }
    }
}

/// A list is polygons, an object is an RLE whose `counts` decide which kind; other keys of the
/// object are ignored as pycocotools ignores them.
impl<'de> Deserialize<'de> for Segmentation {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(SegmentationVisitor)
    }
}

const EXPECTED: &str =
    "a list of polygons [[x0, y0, x1, y1, ...], ...] or an RLE {\"size\": [h, w], \"counts\": ...}";

struct SegmentationVisitor;

impl<'de> Visitor<'de> for SegmentationVisitor {
    type Value = Segmentation;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Segmentation, A::Error> {
        let mut polygons = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
        while let Some(Polygon(p)) = seq.next_element()? {
            polygons.push(p);
        }
        Ok(Segmentation::Polygons(polygons))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Segmentation, A::Error> {
        let mut size: Option<[u32; 2]> = None;
        let mut counts: Option<Counts> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "size" => {
                    if size.is_some() {
                        return Err(de::Error::duplicate_field("size"));
                    }
                    let Size(h, w) = map.next_value()?;
                    size = Some([h, w]);
                }
                "counts" => {
                    if counts.is_some() {
                        return Err(de::Error::duplicate_field("counts"));
                    }
                    counts = Some(map.next_value()?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let size = size.ok_or_else(|| de::Error::missing_field("size"))?;
        match counts.ok_or_else(|| de::Error::missing_field("counts"))? {
            Counts::List(counts) => Ok(Segmentation::UncompressedRle { size, counts }),
            Counts::String(counts) => Ok(Segmentation::CompressedRle { size, counts }),
        }
    }
}

/// One polygon: a list of numbers.
struct Polygon(Vec<f64>);

impl<'de> Deserialize<'de> for Polygon {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Polygon;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a polygon: a list of numbers x0, y0, x1, y1, ...")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Polygon, A::Error> {
                let mut coords = Vec::with_capacity(seq.size_hint().unwrap_or(16).min(4096));
                while let Some(v) = seq.next_element::<f64>()? {
                    coords.push(v);
                }
                Ok(Polygon(coords))
            }
        }
        de.deserialize_seq(V)
    }
}

/// `size`: `[height, width]`, integers (integral floats such as `480.0` accepted).
struct Size(u32, u32);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RLE size [height, width] of two non-negative integers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Size, A::Error> {
                let mut next = |i: usize| -> Result<u32, A::Error> {
                    let Integer(v) = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                    u32::try_from(v).map_err(|_| {
                        de::Error::custom(format_args!(
                            "RLE size must be two integers in 0..=4294967295, got {v}"
                        ))
                    })
                };
                let (h, w) = (next(0)?, next(1)?);
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                Ok(Size(h, w))
            }
        }
        de.deserialize_seq(V)
    }
}

/// RLE `counts`: a list of integers or a compressed string.
enum Counts {
    List(Vec<i64>),
    String(String),
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Counts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("RLE counts: a list of integers or a compressed string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Counts, E> {
                Ok(Counts::String(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Counts, E> {
                Ok(Counts::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Counts, A::Error> {
                let mut counts = Vec::with_capacity(seq.size_hint().unwrap_or(64).min(1 << 16));
                while let Some(Integer(v)) = seq.next_element()? {
                    counts.push(v);
                }
                Ok(Counts::List(counts))
            }
        }
        de.deserialize_any(V)
    }
}

/// An integer written as JSON writes integers, or as an integral float (`3.0`), which some
/// converters write; a fraction is refused rather than truncated as numpy's cast would.
struct Integer(i64);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Integer;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Integer, E> {
                Ok(Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Integer, E> {
                i64::try_from(v)
                    .map(Integer)
                    .map_err(|_| E::custom(format_args!("integer {v} is too large")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Integer, E> {
                // 2^63 is exact in f64; anything below it with no fraction converts exactly.
                const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
                if v.fract() == 0.0 && v.abs() < TWO_POW_63 {
                    Ok(Integer(v as i64))
                } else {
                    Err(E::custom(format_args!("expected an integer, got {v}")))
                }
            }
        }
        de.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Segmentation, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn parses_the_three_spellings_and_writes_them_back() {
        let cases = [
            (r#"[[1,2,3.5,4,5,6],[7,8,9,10,11,12]]"#, "polygons"),
            (r#"{"size":[3,4],"counts":[1,2,9]}"#, "uncompressed"),
            (r#"{"size":[3,4],"counts":"129"}"#, "compressed"),
        ];
        for (text, kind) in cases {
            let seg = parse(text).unwrap();
            let got = match &seg {
                Segmentation::Polygons(_) => "polygons",
                Segmentation::UncompressedRle { .. } => "uncompressed",
                Segmentation::CompressedRle { .. } => "compressed",
            };
            assert_eq!(got, kind);
            let back = serde_json::to_string(&seg).unwrap();
            assert_eq!(parse(&back).unwrap(), seg);
        }
        // Key order, extra keys and integral floats do not matter.
        let seg = parse(r#"{"counts":[1.0,2,9],"extra":{"a":[1]},"size":[3.0,4]}"#).unwrap();
        assert_eq!(
            seg,
            Segmentation::UncompressedRle {
                size: [3, 4],
                counts: vec![1, 2, 9]
            }
        );
    }

    #[test]
    fn wrong_json_types_are_parse_errors() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        assert!(
            err("[1, 2, 3, 4, 5, 6]").starts_with("invalid type: integer `1`, expected a polygon")
        );
        assert!(err(r#"[[1, "a"]]"#).starts_with("invalid type: string"));
        assert!(err(r#"{"counts": [1]}"#).starts_with("missing field `size`"));
        assert!(err(r#"{"size": [1, 1]}"#).starts_with("missing field `counts`"));
        assert!(err(r#"{"size": [1], "counts": [1]}"#).starts_with("invalid length 1"));
        assert!(err(r#"{"size": [1, 2, 3], "counts": [1]}"#).starts_with("invalid length 3"));
        assert!(err(r#"{"size": [-1, 2], "counts": [1]}"#).starts_with("RLE size must be"));
        assert!(
            err(r#"{"size": [1, 2], "counts": [1.5]}"#).starts_with("expected an integer, got 1.5")
        );
        assert!(err(r#"{"size": [1, 2], "counts": 7}"#)
            .starts_with("invalid type: integer `7`, expected RLE counts"));
        assert!(err("7").starts_with("invalid type: integer `7`, expected a list of polygons"));
    }

    #[test]
    fn builds_masks_like_ann_to_rle() {
        let square = parse("[[10,10,20,10,20,20,10,20]]").unwrap();
        let rle = square.to_rle(50, 60).unwrap();
        assert_eq!(rle.to_compressed(), "n?:X100000000000000000Vn1");
        let two = parse("[[10,10,20,10,20,20,10,20],[15,15,30,15,30,30,15,30]]").unwrap();
        let rles = two.to_rles(50, 60).unwrap();
        assert_eq!(rles.len(), 2);
        assert_eq!(two.to_rle(50, 60).unwrap(), Rle::union(&rles).unwrap());
        assert_eq!(
            two.to_mask(50, 60).unwrap(),
            Rle::union(&rles).unwrap().decode()
        );
        let compressed = Segmentation::from(&rle);
        assert_eq!(compressed.to_rle(50, 60).unwrap(), rle);
        let plain = Segmentation::UncompressedRle {
            size: [50, 60],
            counts: rle.counts().iter().map(|&c| i64::from(c)).collect(),
        };
        assert_eq!(plain.to_rle(50, 60).unwrap(), rle);
    }

    #[test]
    fn values_that_make_no_mask_are_errors() {
        let err = |text: &str| parse(text).unwrap().to_rle(3, 4).unwrap_err().to_string();
        assert_eq!(
            err("[]"),
            "no polygons: the segmentation is an empty list (pycocotools fails on it too)"
        );
        assert!(err("[[1,1,2,2,3,1],[1,1,2]]")
            .starts_with("polygon 1: has 3 coordinates, an odd number"));
        assert!(err("[[1,1,2,2]]").starts_with("polygon 0: has 2 point(s)"));
        assert_eq!(
            err(r#"{"size":[3,4],"counts":[1,-2,13]}"#),
            "RLE count 1 is -2; counts are run lengths and cannot be negative"
        );
        assert_eq!(
            err(r#"{"size":[3,4],"counts":[1,2]}"#),
            "RLE counts add up to 3 pixels, but a 3x4 mask has 12"
        );
        assert_eq!(
            err(r#"{"size":[4,3],"counts":[12]}"#),
            "RLE size is 4x3 (height x width) but the image is 3x4"
        );
        assert!(err(r#"{"size":[3,4],"counts":"1 2"}"#).starts_with("compressed RLE: byte 1"));
    }
}
