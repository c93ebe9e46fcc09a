//! Datasets and loaders, training, testing and inference.

pub mod image_io;
pub mod video;
