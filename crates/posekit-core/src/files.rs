//! Writing a file so that it is only ever seen complete under its final name: the one
//! implementation behind checkpoints, exported weights, ONNX files and results.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The step of [`write_atomic`] that failed, and the OS error behind it.
#[derive(Debug)]
pub struct AtomicWriteError {
    /// What was being done: "cannot create a temporary file", "cannot write", ...
    pub step: &'static str,
    pub source: std::io::Error,
}

impl std::fmt::Display for AtomicWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

impl std::error::Error for AtomicWriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Writes `bytes` to `path` through a synced temporary file beside it and a rename, so that
/// `path` is never seen half-written, even after a crash or a kill. On failure the temporary
/// file is removed and `path` (an earlier version of it included) is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    let fail = |step| move |source| AtomicWriteError { step, source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(name) = path.file_name() else {
        return Err(AtomicWriteError {
            step: "not a file name",
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file =
            std::fs::File::create(&tmp).map_err(fail("cannot create a temporary file"))?;
        file.write_all(bytes).map_err(fail("cannot write"))?;
        file.sync_all().map_err(fail("cannot flush to disk"))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(fail("cannot rename the temporary file into place"))?;
        // The rename is only durable once the folder entry is.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = std::env::temp_dir().join(format!("posekit-core-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "only the written file remains");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_step() {
        let err = write_atomic(Path::new("/nonexistent-posekit-dir/x.bin"), b"x").unwrap_err();
        assert_eq!(err.step, "cannot create a temporary file");
        assert!(err
            .to_string()
            .starts_with("cannot create a temporary file: "));
    }
}
