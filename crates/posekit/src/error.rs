//! The library's error type: one enum a caller can match on, whose messages name the file and
//! the field at fault, as every posekit error does.
//!
//! Each variant's `Display` says what went wrong at its own level and, where there is one, the
//! lower-level error is its `source()`: printed as a chain (`{:#}` through `anyhow`, or by
//! walking `source()`), a message reads `context: cause: root cause`, each part once.

use std::path::{Path, PathBuf};

/// What can go wrong in posekit's pipelines.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder that cannot be read, written or created.
    #[error("{}: {action}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A malformed file (COCO JSON, MAT, config values...) or arrays that do not fit together.
    #[error(transparent)]
    Format(#[from] posekit_core::Error),
    /// A weights file that cannot be read, or that does not fit the model.
    #[error(transparent)]
    Weights(#[from] posekit_nn::weights::WeightsError),
    /// A picture that cannot be decoded or written.
    #[error(transparent)]
    Image(#[from] crate::pipelines::image_io::ImageError),
    /// A video that ffmpeg cannot open, decode or encode.
    #[error(transparent)]
    Video(#[from] crate::pipelines::video::VideoError),
    /// A dataset sample or annotation that cannot be used.
    #[error(transparent)]
    Data(#[from] crate::pipelines::data::DataError),
    /// A training checkpoint that is torn, altered or of another run.
    #[error(transparent)]
    Checkpoint(#[from] crate::pipelines::train::CheckpointError),
    /// libtorch refused an operation (out of memory, an unavailable device...).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A data-parallel group that cannot form or that lost a rank.
    #[error(transparent)]
    Dist(#[from] posekit_dist::DistError),
    /// A preset name that is not in the registry.
    #[error("unknown model preset '{name}'; known presets: {known}")]
    UnknownPreset { name: String, known: String },
    /// A model that needs a weights file and was given none.
    #[error("{preset} needs weights ({hint})")]
    WeightsNeeded { preset: String, hint: String },
    /// Options that do not fit the model or each other (`--boxes` with a bottom-up model, an
    /// input size the network cannot take, a config of another model...).
    #[error("{0}")]
    Invalid(String),
    /// An error with what was being done when it happened.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
}

/// Arrays whose shapes do not fit (an internal inconsistency, reported rather than panicking).
impl From<ndarray::ShapeError> for Error {
    fn from(e: ndarray::ShapeError) -> Self {
        Error::Invalid(format!("array shapes do not fit: {e}"))
    }
}

/// Results and configs that cannot be written as JSON (a non-finite number...): the context
/// says which file.
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Invalid(format!("cannot write JSON: {e}"))
    }
}

/// A config that cannot be written back as TOML.
impl From<toml::ser::Error> for Error {
    fn from(e: toml::ser::Error) -> Self {
        Error::Invalid(format!("cannot write TOML: {e}"))
    }
}

/// Tensors that do not make a safetensors file, or a file that is not one.
impl From<safetensors::SafeTensorError> for Error {
    fn from(e: safetensors::SafeTensorError) -> Self {
        Error::Invalid(format!("safetensors: {e}"))
    }
}

/// `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O failure on `path` while doing `action` ("cannot read", "cannot create"...).
    pub fn io(path: impl AsRef<Path>, action: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            action,
            source,
        }
    }

    /// The whole message: this error and every cause under it, joined by ": " (what the
    /// command line prints). `Display` alone gives the outermost layer only.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            next = cause.source();
        }
        text
    }

    /// The error this one wraps, through every [`Error::Context`] layer: what to match on.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            other => other,
        }
    }
}

/// `anyhow`-style context for the library's results: `.context("loading x")`.
pub trait ResultExt<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context.into(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context().into(),
            source: Box::new(e.into()),
        })
    }
}

/// `return Err(Error::Invalid(format!(...)))`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// `Error::Invalid(format!(...))`.
macro_rules! invalid {
    ($($arg:tt)*) => {
        $crate::Error::Invalid(format!($($arg)*))
    };
}
pub(crate) use invalid;

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(err: &dyn std::error::Error) -> String {
        let mut parts = vec![err.to_string()];
        let mut next = err.source();
        while let Some(e) = next {
            parts.push(e.to_string());
            next = e.source();
        }
        parts.join(": ")
    }

    #[test]
    fn a_chain_names_each_cause_once() {
        let missing = std::fs::read("/nonexistent/posekit.pth").unwrap_err();
        let err: Result<()> = Err(Error::io(
            "/nonexistent/posekit.pth",
            "cannot read",
            missing,
        ));
        let err = err.context("loading the weights").unwrap_err();
        let text = chain(&err);
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
        assert!(text.starts_with("loading the weights: /nonexistent/posekit.pth: cannot read"));
        assert!(matches!(err.root(), Error::Io { .. }));
    }
}
