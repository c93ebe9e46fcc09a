//! Datasets and loaders, training, testing and inference.

pub mod bench;
pub mod bottomup_test;
pub mod browse;
pub mod config;
pub mod data;
pub mod export;
pub mod image_io;
pub mod infer;
pub mod model;
pub mod paf_browse;
pub mod paf_model;
pub mod spm_browse;
pub mod test;
pub mod topdown;
pub mod train;
pub mod video;
