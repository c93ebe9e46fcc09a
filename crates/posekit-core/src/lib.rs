//! The framework-free core of posekit.
//!
//! Everything that is not a tensor operation lives here: keypoint layouts, geometry (box to
//! center/scale, affine transforms, the crop warp), the codecs that turn annotations into
//! training targets and network outputs into poses, OKS and NMS, COCO and MPII evaluation, and
//! the file formats. Nothing here depends on libtorch, so it builds and tests in seconds.
//!
//! Arrays are `ndarray` arrays in the layout of the networks' outputs with the batch dimension
//! removed: heatmaps are `[K, H, W]`, tag maps `[K, H, W]` (one tag dimension) and part affinity
//! fields `[2 * limbs, H, W]`.

pub mod codecs;
pub mod draw;
pub mod error;
pub mod eval;
pub mod files;
pub mod formats;
pub mod geometry;
pub mod layout;
pub mod masks;
pub mod nms;
pub mod oks;
pub mod pose;
pub mod tracking;

pub use error::{Error, Result};
pub use layout::KeypointLayout;
pub use pose::{Keypoint, Pose};
