//! Datasets and loaders, training, testing and inference.

pub mod image_io;
pub mod model;
pub mod video;
