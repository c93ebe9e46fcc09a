//! COCO segmentation masks: polygons and run-length encodings (RLE), bit for bit as
//! pycocotools computes them.
//!
//! COCO stores a person's outline as polygons and a crowd region as an RLE; bottom-up training
//! masks out crowds and people without keypoints with them, and segmentation results are RLEs.
//! Everything here reproduces pycocotools' `common/maskApi.c` (cocodataset/cocoapi, identical
//! in the PyPI `pycocotools` 2.0.x built from ppwwyyxx/cocoapi) and the Python glue in
//! `_mask.pyx` and `coco.py`:
//!
//! | pycocotools | here |
//! |---|---|
//! | `rleFrPoly` (`frPyObjects` on a polygon list) | [`Rle::from_polygon`], [`Segmentation::to_rles`] |
//! | `rleFrBbox` (`frPyObjects` on boxes) | [`Rle::from_bbox`] |
//! | `rleToString` / `rleFrString` | [`Rle::to_compressed`] / [`Rle::from_compressed`] |
//! | `rleEncode` / `rleDecode` (`encode` / `decode`) | [`Rle::encode`] / [`Rle::decode`] |
//! | `rleMerge` (`merge`) | [`Rle::union`], [`Rle::intersection`] |
//! | `rleArea` (`area`) | [`Rle::area`] |
//! | `COCO.annToRLE` | [`Segmentation::to_rle`], [`CocoPersonAnnotation::segmentation_rle`](crate::formats::coco::CocoPersonAnnotation::segmentation_rle) |
//!
//! **Pixel order.** COCO's runs walk the mask column by column (Fortran order: down the first
//! column, then the second, ...), which is what [`Rle::counts`] and the compressed strings
//! hold. [`Rle::decode`] returns an ordinary row-major `[height, width]` array, the layout of
//! images in the pipelines, and [`Rle::encode`] takes one; the transposition happens inside.
//!
//! **Where this is stricter than pycocotools.** pycocotools trusts its input: an odd-length
//! polygon loses its last number, counts that do not add up to `h * w` decode to uninitialised
//! memory, an RLE of the wrong size is merged into nothing (a `0 x 0` mask) and a negative count
//! wraps around. Here each of these is a [`MaskError`], and in an annotation an
//! [`AnnotationMaskError`] that names the annotation id. Every input pycocotools handles
//! correctly gives its result exactly.

mod annotation;
mod compressed;
mod merge;
mod polygon;
mod rle;
mod segmentation;

pub use annotation::AnnotationMaskError;
pub use polygon::{PolygonError, MAX_POLYGON_COORDINATE};
pub use rle::Rle;
pub use segmentation::Segmentation;

/// Why a mask could not be built. The messages say what pycocotools would have done instead
/// where that is the surprise.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MaskError {
    /// A polygon of a segmentation is malformed.
    #[error("polygon {index}: {problem}")]
    Polygon { index: usize, problem: PolygonError },
    /// A segmentation that is a list of polygons has none.
    #[error("no polygons: the segmentation is an empty list (pycocotools fails on it too)")]
    NoPolygons,
    /// COCO counts are 32-bit, so a mask cannot have more pixels than that.
    #[error(
        "a {height}x{width} mask has more than 4294967295 pixels, beyond COCO's 32-bit RLE counts"
    )]
    TooLarge { height: u32, width: u32 },
    /// An uncompressed RLE count below zero.
    #[error("RLE count {index} is {value}; counts are run lengths and cannot be negative")]
    NegativeCount { index: usize, value: i64 },
    /// An RLE count (given or decoded) that does not fit COCO's 32-bit counts.
    #[error("RLE count {index} is {value}, more than the 32-bit maximum 4294967295")]
    CountTooLarge { index: usize, value: i64 },
    /// The runs do not cover the mask exactly.
    #[error("RLE counts add up to {sum} pixels, but a {height}x{width} mask has {expected}")]
    CountsSum {
        sum: u64,
        height: u32,
        width: u32,
        expected: u64,
    },
    /// An RLE whose `size` is not the image's.
    #[error(
        "RLE size is {rle_height}x{rle_width} (height x width) but the image is {height}x{width}"
    )]
    SizeMismatch {
        rle_height: u32,
        rle_width: u32,
        height: u32,
        width: u32,
    },
    /// A compressed RLE string holds a byte outside COCO's 64-character alphabet.
    #[error("compressed RLE: byte {position} is {byte:?}, not one of the characters '0' to 'o' COCO writes")]
    CompressedByte { position: usize, byte: char },
    /// A compressed RLE string ends inside a count.
    #[error("compressed RLE: the string ends in the middle of count {index}")]
    CompressedTruncated { index: usize },
    /// A compressed count uses more characters than any 32-bit count needs.
    #[error("compressed RLE: count {index} is longer than 7 characters, more than any 32-bit count needs")]
    CompressedTooLong { index: usize },
    /// Masks of different sizes cannot be merged (pycocotools returns an empty `0 x 0` mask).
    #[error("cannot merge a {height}x{width} mask with a {other_height}x{other_width} one")]
    MergeSizes {
        height: u32,
        width: u32,
        other_height: u32,
        other_width: u32,
    },
    /// Merging needs at least one mask to know the size of the result.
    #[error("cannot merge an empty list of masks")]
    MergeEmpty,
}

/// A mask problem in code (not tied to a file) is an argument that does not fit.
impl From<MaskError> for crate::Error {
    fn from(e: MaskError) -> Self {
        crate::Error::Shape(e.to_string())
    }
}
