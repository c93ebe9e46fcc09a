//! Dataset and result files, parsed with serde and validated strictly: every error names the
//! file and the field.

pub mod coco;
pub mod mat;
pub mod mpii;
pub mod posetrack;
