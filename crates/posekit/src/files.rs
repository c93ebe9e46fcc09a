//! File-system rules every command shares: an output never replaces one of the command's
//! inputs, and a file is only ever seen complete under its final name.

use std::path::Path;

/// Writes `bytes` to `path` so that it is never seen half-written ([`posekit_core::files::write_atomic`]:
/// checkpoints, results); the error names the file and the step that failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    posekit_core::files::write_atomic(path, bytes)
        .map_err(|e| crate::Error::io(path, e.step, e.source))
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
