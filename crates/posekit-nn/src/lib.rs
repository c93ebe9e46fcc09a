//! posekit's networks on libtorch, through the `tch` crate.
//!
//! Each model family is one file under `models/` with a serde `Config` whose presets are the
//! papers' stage tables, and a constructor that takes a `tch::nn::Path` whose sub-paths are the
//! public checkpoints' state_dict keys, so that loading weights is a name-for-name copy.

pub mod blocks;
pub mod device;
pub mod export;
pub mod loss;
pub mod models;
pub mod optim;
pub mod ort_engine;
pub mod paf_loss;
pub mod spm_loss;
pub mod sync_bn;
pub mod weights;
