//! One file per model family.

pub mod hourglass;
pub mod higher_hrnet;
pub mod hrnet;
pub mod openpose;
pub mod openpose_mobilenet;
pub mod spm;
