//! Datasets and loaders, training, testing and inference.

pub mod data;
pub mod image_io;
pub mod model;
pub mod video;
