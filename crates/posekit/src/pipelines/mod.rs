//! Datasets and loaders, training, testing and inference.

pub mod config;
pub mod data;
pub mod image_io;
pub mod model;
pub mod test;
pub mod topdown;
pub mod train;
pub mod video;
