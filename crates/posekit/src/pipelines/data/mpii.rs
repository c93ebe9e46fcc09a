//! MPII instances from the HRNet/MMPose annotation JSON, as the official `MPIIDataset` builds
//! them: the center moves `15 * scale` px down and the scale grows by 1.25 (both "to avoid
//! cropping limbs"), then center and joints go from MATLAB's 1-based to 0-based pixels.
//!
//! Every entry becomes an instance, in file order, because MPII's PCKh ground truth
//! (`gt_valid.mat`) is matched to predictions by position.

use std::path::Path;

use ndarray::Array2;
use posekit_core::formats::mpii::{read_mpii_annotations, MPII_NUM_JOINTS};
use posekit_core::geometry::center_scale::CenterScale;
use posekit_core::layout::KeypointLayout;
use posekit_core::Error;

use super::config::DataConfig;
use super::dataset::LoadReport;
use super::error::DataError;
use super::instance::{crop_area, TopDownInstance};

/// Reads MPII instances; `train` requires joints on every entry (the test split has none).
pub(crate) fn load_mpii_instances(
    ann_path: &Path,
    images_dir: &Path,
    cfg: &DataConfig,
    layout: &KeypointLayout,
    train: bool,
) -> Result<(Vec<TopDownInstance>, LoadReport), DataError> {
    if layout.num_keypoints() != MPII_NUM_JOINTS {
        return Err(DataError::config(
            "layout",
            format!(
                "MPII annotations have {MPII_NUM_JOINTS} joints but layout `{}` has {}",
                layout.name,
                layout.num_keypoints()
            ),
        ));
    }
    let annotations = read_mpii_annotations(ann_path)?;
    let mut report = LoadReport::default();
    let mut instances = Vec::with_capacity(annotations.len());
    for (i, ann) in annotations.iter().enumerate() {
        // MPII marks people without a usable position with center x = -1; the official code
        // would crop around (-2, y - 1) anyway. Such a crop is meaningless, so it is an error
        // (or, with skip_invalid_boxes, dropped and counted).
        let cs = match CenterScale::from_mpii(ann.center, ann.scale) {
            Ok(cs) => cs,
            Err(_) if cfg.skip_invalid_boxes => {
                report.dropped_boxes += 1;
                continue;
            }
            Err(e) => {
                return Err(Error::invalid(
                    ann_path,
                    format!("[{i}].center"),
                    format!(
                        "entry for image {}: {e}; set skip_invalid_boxes = true to drop it",
                        ann.image
                    ),
                )
                .into())
            }
        };
        let joints = match (&ann.joints, &ann.joints_vis) {
            (Some(points), Some(vis)) => {
                let mut joints = Array2::<f32>::zeros((MPII_NUM_JOINTS, 3));
                for k in 0..MPII_NUM_JOINTS {
                    joints[[k, 0]] = (points[k][0] - 1.0) as f32;
                    joints[[k, 1]] = (points[k][1] - 1.0) as f32;
                    joints[[k, 2]] = if vis[k] { 1.0 } else { 0.0 };
                }
                Some(joints)
            }
            _ if train => {
                return Err(Error::invalid(
                    ann_path,
                    format!("[{i}].joints"),
                    format!(
                        "entry for image {} has no joints; training needs labeled people \
                         (is this the test split?)",
                        ann.image
                    ),
                )
                .into())
            }
            _ => None,
        };
        instances.push(TopDownInstance {
            image_path: images_dir.join(&ann.image),
            image_id: i as i64,
            joints,
            center: cs.center,
            scale: cs.scale,
            box_score: 1.0,
            area: crop_area(cs.scale),
            source_index: i,
        });
    }
    Ok((instances, report))
}
