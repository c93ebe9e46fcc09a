//! One error type for the core. Every variant says where the problem is (a file, and inside it
//! a field such as `annotations[3].keypoints`) so that a user can fix the input without a
//! debugger.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON, or its JSON does not have the expected shape.
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// The input parsed but a value is wrong (`field` is a path such as `annotations[3].bbox`).
    #[error("{}: {field}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// Arrays or arguments given in code do not fit together (not tied to a file).
    #[error("{0}")]
    Shape(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn parse(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Parse {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub fn invalid(
        path: impl AsRef<Path>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            path: path.as_ref().to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// A JSON error from serde, with serde's line/column and the field path it names.
    pub fn json(path: impl AsRef<Path>, err: serde_json::Error) -> Self {
        Error::parse(path, format!("invalid JSON: {err}"))
    }
}

/// Reads a whole file, naming it in the error.
pub fn read_file(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    std::fs::read(path).map_err(|e| Error::io(path, e))
}
