//! Masks of COCO annotations, with errors that name the annotation.

use std::path::Path;

use super::rle::Rle;
use super::MaskError;
use crate::formats::coco::CocoPersonAnnotation;

/// A segmentation that makes no mask, with the id of its annotation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("annotation {annotation_id}: segmentation: {problem}")]
pub struct AnnotationMaskError {
    pub annotation_id: i64,
    pub problem: MaskError,
}

impl AnnotationMaskError {
    /// The error as the core's file error, for a loader that knows which file the annotation
    /// came from: `gt.json: annotation 42 segmentation: polygon 1: has 7 coordinates, ...`.
    pub fn in_file(self, path: impl AsRef<Path>) -> crate::Error {
        crate::Error::invalid(
            path,
            format!("annotation {} segmentation", self.annotation_id),
            self.problem.to_string(),
        )
    }
}

impl CocoPersonAnnotation {
    /// The annotation's mask on its `height x width` image, as pycocotools' `annToRLE` makes it
    /// (polygons merged into one mask), or `None` when it has no segmentation.
    ///
    /// An RLE must be the image's size; any problem is an error naming the annotation id.
    pub fn segmentation_rle(
        &self,
        height: u32,
        width: u32,
    ) -> Result<Option<Rle>, AnnotationMaskError> {
        let Some(segmentation) = &self.segmentation else {
            return Ok(None);
        };
        segmentation
            .to_rle(height, width)
            .map(Some)
            .map_err(|problem| AnnotationMaskError {
                annotation_id: self.id,
                problem,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masks::Segmentation;

    fn person(id: i64, segmentation: Option<Segmentation>) -> CocoPersonAnnotation {
        CocoPersonAnnotation {
            id,
            image_id: 1,
            category_id: 1,
            keypoints: vec![0.0; 51],
            num_keypoints: 0,
            bbox: [0.0; 4],
            area: 0.0,
            iscrowd: false,
            segmentation,
        }
    }

    #[test]
    fn errors_name_the_annotation() {
        let ann = person(
            900100,
            Some(Segmentation::Polygons(vec![vec![
                1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0,
            ]])),
        );
        let err = ann.segmentation_rle(10, 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "annotation 900100: segmentation: polygon 0: has 7 coordinates, an odd number \
             (x, y pairs expected; pycocotools would drop the last one)"
        );
        assert_eq!(
            err.in_file("gt.json").to_string(),
            "gt.json: annotation 900100 segmentation: polygon 0: has 7 coordinates, an odd \
             number (x, y pairs expected; pycocotools would drop the last one)"
        );
        let crowd = person(
            7,
            Some(Segmentation::UncompressedRle {
                size: [10, 12],
                counts: vec![120],
            }),
        );
        assert_eq!(
            crowd.segmentation_rle(12, 10).unwrap_err().to_string(),
            "annotation 7: segmentation: RLE size is 10x12 (height x width) but the image is 12x10"
        );
    }

    #[test]
    fn no_segmentation_is_no_mask() {
        assert_eq!(person(1, None).segmentation_rle(10, 10), Ok(None));
        let ann = person(
            2,
            Some(Segmentation::Polygons(vec![vec![
                1.0, 1.0, 5.0, 1.0, 5.0, 5.0,
            ]])),
        );
        assert!(ann.segmentation_rle(10, 10).unwrap().unwrap().area() > 0);
    }
}
