//! COCO person_keypoints instances, as the official HRNet `COCODataset` builds them.
//!
//! * Ground truth (training, and testing on GT boxes): every non-crowd person annotation with
//!   at least one labeled joint, in the file's image order, its box cleaned as
//!   `_load_coco_keypoint_annotation_kernal` does (clipped to the image, 1 px narrower) and
//!   turned into center/scale with the model's aspect ratio and 1.25 padding.
//! * Detections (`_load_coco_person_detection_results`): person boxes with a score at or above
//!   the threshold, uncleaned, scored with the detector's score.
//!
//! Where the official code silently drops an annotation with an empty box, we stop with an
//! error naming it unless `skip_invalid_boxes` is set (see [`DataConfig`]): a broken box in a
//! converted dataset is better fixed than trained around.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use posekit_core::formats::coco::{load_detections, CocoKeypointsGt, CocoPersonAnnotation};
use posekit_core::geometry::center_scale::{clean_coco_box, CenterScale};
use posekit_core::layout::KeypointLayout;
use posekit_core::Error;

use super::config::DataConfig;
use super::dataset::LoadReport;
use super::error::DataError;
use super::instance::{crop_area, TopDownInstance};

/// Which people of a COCO split become instances.
#[derive(Debug, Clone, PartialEq)]
pub enum CocoSplit {
    /// Training: annotated people on their ground-truth boxes.
    Train,
    /// Testing on ground-truth boxes (HRNet `TEST.USE_GT_BBOX = true`): the same people.
    GtBoxes,
    /// Testing on a detection-results file (`[{image_id, category_id, bbox, score}]`); boxes
    /// scoring below `threshold` are left out.
    Detections { path: PathBuf, threshold: f64 },
}

/// Reads the instances of a COCO split. `images_dir` is the folder the `file_name`s are in.
pub(crate) fn load_coco_instances(
    ann_path: &Path,
    images_dir: &Path,
    cfg: &DataConfig,
    layout: &KeypointLayout,
    split: &CocoSplit,
) -> Result<(Vec<TopDownInstance>, LoadReport), DataError> {
    let gt = CocoKeypointsGt::load(ann_path)?;
    let person = person_category(&gt, ann_path, layout)?;
    match split {
        CocoSplit::Train | CocoSplit::GtBoxes => {
            gt_instances(&gt, ann_path, images_dir, cfg, layout, person)
        }
        CocoSplit::Detections { path, threshold } => {
            detection_instances(&gt, path, images_dir, cfg, person, *threshold)
        }
    }
}

/// The id of the person category: the only category, or the one named `person`. Its keypoint
/// count must be the layout's, or every joint index downstream would be off.
fn person_category(
    gt: &CocoKeypointsGt,
    path: &Path,
    layout: &KeypointLayout,
) -> Result<i64, DataError> {
    let position = if gt.categories.len() == 1 {
        Some(0)
    } else {
        gt.categories.iter().position(|c| c.name == "person")
    };
    let Some(i) = position else {
        return Err(Error::invalid(
            path,
            "categories",
            format!(
                "{} categories and none is named `person`; cannot tell which one to train on",
                gt.categories.len()
            ),
        )
        .into());
    };
    let category = &gt.categories[i];
    if category.keypoints.len() != layout.num_keypoints() {
        return Err(Error::invalid(
            path,
            format!("categories[{i}].keypoints"),
            format!(
                "category `{}` has {} keypoints but layout `{}` has {}",
                category.name,
                category.keypoints.len(),
                layout.name,
                layout.num_keypoints()
            ),
        )
        .into());
    }
    Ok(category.id)
}

fn gt_instances(
    gt: &CocoKeypointsGt,
    ann_path: &Path,
    images_dir: &Path,
    cfg: &DataConfig,
    layout: &KeypointLayout,
    person: i64,
) -> Result<(Vec<TopDownInstance>, LoadReport), DataError> {
    let num_joints = layout.num_keypoints();
    // The official loader walks images in file order and each image's annotations in file
    // order; keeping that order keeps result files and debugging output comparable.
    let mut per_image: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, ann) in gt.annotations.iter().enumerate() {
        per_image.entry(ann.image_id).or_default().push(i);
    }
    let mut report = LoadReport::default();
    let mut instances = Vec::new();
    for image in &gt.images {
        let Some(indices) = per_image.get(&image.id) else {
            continue;
        };
        for &i in indices {
            let ann = &gt.annotations[i];
            if ann.iscrowd || ann.category_id != person {
                continue;
            }
            let joints = joints_of(ann, num_joints);
            if !joints.column(2).iter().any(|&v| v > 0.0) {
                continue;
            }
            let cs = match gt_center_scale(ann, i, ann_path, image.width, image.height, cfg) {
                Ok(cs) => cs,
                Err(_) if cfg.skip_invalid_boxes => {
                    report.dropped_boxes += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            instances.push(TopDownInstance {
                image_path: images_dir.join(&image.file_name),
                image_id: image.id,
                joints: Some(joints),
                center: cs.center,
                scale: cs.scale,
                box_score: 1.0,
                area: crop_area(cs.scale),
                source_index: i,
            });
        }
    }
    Ok((instances, report))
}

/// `[K, 3]` joints with COCO's visibility 2 (visible) and 1 (occluded) both as 1: the official
/// loader clips the flag, and both are trained on equally.
fn joints_of(ann: &CocoPersonAnnotation, num_joints: usize) -> Array2<f32> {
    let mut joints = Array2::<f32>::zeros((num_joints, 3));
    for (k, chunk) in ann.keypoints.chunks_exact(3).take(num_joints).enumerate() {
        joints[[k, 0]] = chunk[0] as f32;
        joints[[k, 1]] = chunk[1] as f32;
        joints[[k, 2]] = chunk[2].clamp(0.0, 1.0) as f32;
    }
    joints
}

/// The official box cleaning, then center/scale; an error names the annotation for every box
/// the official loader would have dropped or turned into a zero-size crop.
fn gt_center_scale(
    ann: &CocoPersonAnnotation,
    index: usize,
    path: &Path,
    width: u32,
    height: u32,
    cfg: &DataConfig,
) -> Result<CenterScale, DataError> {
    let field = format!("annotations[{index}].bbox");
    let who = format!("person annotation id {} (image {})", ann.id, ann.image_id);
    let hint = "fix the annotation or set skip_invalid_boxes = true to drop such people as the \
                official loader does";
    let [_, _, w, h] = ann.bbox;
    if !(ann.area > 0.0 && w > 0.0 && h > 0.0) {
        return Err(Error::invalid(
            path,
            field,
            format!(
                "{who} has a zero-area box {:?} (area {}); {hint}",
                ann.bbox, ann.area
            ),
        )
        .into());
    }
    let Some(clean) = clean_coco_box(ann.bbox, ann.area, width as f64, height as f64) else {
        return Err(Error::invalid(
            path,
            field,
            format!(
                "{who}: box {:?} lies outside its {width}x{height} image; {hint}",
                ann.bbox
            ),
        )
        .into());
    };
    CenterScale::from_xywh_padded(clean, cfg.aspect_ratio(), cfg.box_padding).map_err(|e| {
        Error::invalid(
            path,
            field,
            format!("{who}: box {:?} gives no crop ({e}); {hint}", ann.bbox),
        )
        .into()
    })
}

fn detection_instances(
    gt: &CocoKeypointsGt,
    det_path: &Path,
    images_dir: &Path,
    cfg: &DataConfig,
    person: i64,
    threshold: f64,
) -> Result<(Vec<TopDownInstance>, LoadReport), DataError> {
    if !threshold.is_finite() {
        return Err(DataError::config(
            "det_score_threshold",
            format!("must be finite, got {threshold}"),
        ));
    }
    let detections = load_detections(det_path)?;
    let images: HashMap<i64, &str> = gt
        .images
        .iter()
        .map(|im| (im.id, im.file_name.as_str()))
        .collect();
    let mut report = LoadReport {
        detections_total: detections.len(),
        ..LoadReport::default()
    };
    let mut instances = Vec::new();
    for (i, det) in detections.iter().enumerate() {
        if det.category_id != person {
            report.detections_not_person += 1;
            continue;
        }
        if det.score < threshold {
            report.detections_below_threshold += 1;
            continue;
        }
        // A detection file often covers the whole val2017 while the ground truth is a subset
        // (a mini split): those boxes cannot be scored, so they are counted, not fatal.
        let Some(file_name) = images.get(&det.image_id) else {
            report.detections_unknown_image += 1;
            continue;
        };
        let [_, _, w, h] = det.bbox;
        let cs = if w > 0.0 && h > 0.0 {
            CenterScale::from_xywh_padded(det.bbox, cfg.aspect_ratio(), cfg.box_padding)
                .map_err(|e| e.to_string())
        } else {
            Err(format!("zero-area box {:?}", det.bbox))
        };
        let cs = match cs {
            Ok(cs) => cs,
            Err(_) if cfg.skip_invalid_boxes => {
                report.dropped_boxes += 1;
                continue;
            }
            Err(message) => {
                return Err(Error::invalid(
                    det_path,
                    format!("[{i}].bbox"),
                    format!(
                        "detection on image {}: {message}; remove it or set \
                         skip_invalid_boxes = true",
                        det.image_id
                    ),
                )
                .into())
            }
        };
        instances.push(TopDownInstance {
            image_path: images_dir.join(file_name),
            image_id: det.image_id,
            joints: None,
            center: cs.center,
            scale: cs.scale,
            box_score: det.score as f32,
            area: crop_area(cs.scale),
            source_index: i,
        });
    }
    Ok((instances, report))
}
