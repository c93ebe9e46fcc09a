//! File-system rules every command shares: an output never replaces one of the command's
//! inputs, and a file is only ever seen complete under its final name.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a synced temporary file beside it and a rename, so that
/// `path` is never seen half-written, even after a crash (checkpoints, results). On failure the
/// temporary file is removed and `path` is untouched; the error says which step failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    write_atomic_steps(path, bytes).map_err(|(action, e)| crate::Error::io(path, action, e))
}

/// [`write_atomic`] with the failing step as a plain `(what, io error)` pair, for callers with
/// their own error type.
pub fn write_atomic_steps(path: &Path, bytes: &[u8]) -> Result<(), (&'static str, std::io::Error)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file =
            std::fs::File::create(&tmp).map_err(|e| ("cannot create a temporary file", e))?;
        file.write_all(bytes).map_err(|e| ("cannot write", e))?;
        file.sync_all().map_err(|e| ("cannot flush to disk", e))?;
        drop(file);
        std::fs::rename(&tmp, path)
            .map_err(|e| ("cannot rename the temporary file into place", e))?;
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

/// Whether `a` and `b` are the same existing file (through links too); `false` when either
/// does not exist, since a file that does not exist cannot be lost.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b || same_inode(&a, &b),
        _ => false,
    }
}

#[cfg(unix)]
fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

/// An error when `output` is the file `input`: writing it would destroy the input (e.g.
/// `convert same.pth -o same.pth` turning a checkpoint into safetensors under its old name).
pub fn ensure_not_input(input: &Path, output: &Path) -> Result<(), std::io::Error> {
    if same_file(input, output) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{}: the output is the input {}; choose another output path (nothing was written)",
                output.display(),
                input.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_through_a_link_or_another_spelling_is_recognised() {
        let dir = std::env::temp_dir().join(format!("posekit-files-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let file = dir.join("a.pth");
        std::fs::write(&file, b"x").unwrap();
        assert!(same_file(&file, &dir.join("sub/../a.pth")));
        let hard = dir.join("hard.pth");
        std::fs::hard_link(&file, &hard).unwrap();
        assert!(same_file(&file, &hard));
        assert!(!same_file(&file, &dir.join("missing.pth")));
        std::fs::write(dir.join("b.pth"), b"x").unwrap();
        assert!(!same_file(&file, &dir.join("b.pth")));
        let err = ensure_not_input(&file, &hard).unwrap_err().to_string();
        assert!(err.contains("hard.pth") && err.contains("a.pth"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
