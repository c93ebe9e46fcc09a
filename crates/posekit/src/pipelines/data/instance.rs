//! One person to crop: where its image is, its box as center/scale, and (for training and
//! ground-truth testing) its joints.

use std::path::PathBuf;

use ndarray::Array2;

/// A person instance of a top-down dataset, the equivalent of one `db` record of the official
/// HRNet loaders.
#[derive(Debug, Clone, PartialEq)]
pub struct TopDownInstance {
    /// The image file, already resolved against the images folder.
    pub image_path: PathBuf,
    /// COCO image id; for MPII the entry's position in the annotation file (MPII has no image
    /// ids, and PCKh is scored in annotation order).
    pub image_id: i64,
    /// `[K, 3]` joints `(x, y, vis)` in 0-based image pixels, `vis` 0 (unlabeled) or 1
    /// (labeled; COCO's 1 and 2 both become 1, as in the official loader). `None` for
    /// detector boxes, which have no labels.
    pub joints: Option<Array2<f32>>,
    /// Crop center in image pixels.
    pub center: [f64; 2],
    /// Crop size `[w, h]` in units of 200 px, aspect-corrected and padded.
    pub scale: [f64; 2],
    /// Detector score of the box (1 for ground-truth boxes, as in the official code); test-time
    /// rescoring multiplies it with the keypoint confidence.
    pub box_score: f32,
    /// Area of the crop in pixels² (`scale * 200` squared), what HRNet writes as a result's
    /// `area` and feeds to OKS-NMS.
    pub area: f64,
    /// Position of the annotation (or detection) in its file, for error messages and for
    /// matching results back to the file's order.
    pub source_index: usize,
}

impl TopDownInstance {
    /// Number of labeled joints (0 for detections).
    pub fn num_labeled(&self) -> usize {
        self.joints
            .as_ref()
            .map_or(0, |j| j.outer_iter().filter(|row| row[2] > 0.0).count())
    }
}

/// The crop area HRNet stores for a center/scale pair.
pub(crate) fn crop_area(scale: [f64; 2]) -> f64 {
    let p = posekit_core::geometry::center_scale::PIXEL_STD;
    scale[0] * p * scale[1] * p
}
