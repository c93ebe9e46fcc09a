//! One file per model family, and the preset table that names them.

pub mod higher_hrnet;
pub mod hourglass;
pub mod hrnet;
pub mod normalization;
pub mod openpose;
pub mod openpose_mobilenet;
pub mod registry;
pub mod spm;
pub mod stacked_hourglass;

pub use registry::{
    Architecture, Family, PafStyle, Paradigm, PoseNetwork, Preset, BUNDLED_PRESET, PRESETS,
};
