//! Errors of the data pipeline.
//!
//! They are split by what the caller should do about them: an unreadable image
//! ([`DataError::Image`], possibly wrapped in [`DataError::Sample`]) is something training can
//! skip and count, while a bad annotation or configuration means the run cannot be trusted and
//! must stop. [`DataError::is_unreadable_image`] is the one test the loader uses.

use std::path::PathBuf;

use crate::pipelines::image_io::ImageError;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An annotation or detection file is unreadable or has a bad value (the core's errors name
    /// the file and the field), or a geometric step was given degenerate numbers.
    #[error(transparent)]
    Core(#[from] posekit_core::Error),
    /// The image of a sample is missing, truncated or not a JPEG/PNG (the error names the file).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A value of the data configuration is out of range (`field` is its key).
    #[error("data config: {field}: {message}")]
    Config { field: String, message: String },
    /// A loader worker panicked while making a sample, or the workers stopped early.
    #[error("data loader: {0}")]
    Loader(String),
    /// A sample could not be built; says which one so that a failure deep in a batch can be
    /// traced back to its annotation.
    #[error("sample {index} ({}): {source}", image.display())]
    Sample {
        index: usize,
        image: PathBuf,
        #[source]
        source: Box<DataError>,
    },
}

impl DataError {
    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        DataError::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// True when the cause is an image that cannot be read or decoded: the failure training
    /// skips (with a warning) instead of stopping, since one bad file among 150,000 should not
    /// end a multi-day run, while a wrong annotation or configuration should.
    pub fn is_unreadable_image(&self) -> bool {
        match self {
            DataError::Image(ImageError::Read { .. } | ImageError::Decode { .. }) => true,
            DataError::Sample { source, .. } => source.is_unreadable_image(),
            _ => false,
        }
    }
}
