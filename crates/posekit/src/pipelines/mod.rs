//! Datasets and loaders, training, testing and inference.
