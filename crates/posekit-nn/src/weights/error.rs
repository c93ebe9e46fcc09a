//! The one error type of weight import and export.
//!
//! Every variant carries the file it is about: a user converting a directory of checkpoints must
//! be able to tell which one is broken, and the reason must be specific enough to act on (which
//! pickle global was refused, which keys are missing) without rerunning anything under a debugger.

use std::fmt;
use std::path::{Path, PathBuf};

/// How many names of each kind a key-mismatch message lists before it says "and N more": enough
/// to recognise a pattern (a missing head, a prefix that was not stripped), short enough to read.
const LISTED_PER_KIND: usize = 5;

/// Everything that can go wrong while reading, checking, loading or writing weights.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be opened, read or written.
    #[error("{}: {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a well-formed checkpoint of a supported kind (truncated, corrupt, an
    /// unsupported dtype or opcode, a TorchScript archive, ...).
    #[error("{}: {message}", .path.display())]
    Format { path: PathBuf, message: String },
    /// The pickle asks for a Python global outside the allowlist. Nothing was called: the reader
    /// stops at the reference itself.
    #[error(
        "{}: refusing pickle global `{global}` (in {member}, byte {offset}): a weights file may only \
         contain tensors, storages and plain containers; nothing from this file was executed. \
         If the file comes from a trusted source, re-save its state_dict with \
         `torch.save(model.state_dict(), path)` or convert it to safetensors.",
        .path.display()
    )]
    ForbiddenGlobal {
        path: PathBuf,
        global: String,
        member: String,
        offset: usize,
    },
    /// The checkpoint's names and shapes do not match the model's variables.
    #[error("{}: checkpoint does not match the model: {mismatch}", .path.display())]
    Mismatch {
        path: PathBuf,
        mismatch: KeyMismatch,
    },
    /// libtorch refused an operation (copying into a variable, moving to the CPU, ...).
    #[error("{}: libtorch: {message}", .path.display())]
    Torch { path: PathBuf, message: String },
}

impl WeightsError {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        WeightsError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        WeightsError::Format {
            path: path.to_path_buf(),
            message: printable(&message.into()),
        }
    }

    pub(crate) fn torch(path: &Path, err: impl fmt::Display) -> Self {
        WeightsError::Torch {
            path: path.to_path_buf(),
            message: err.to_string(),
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            WeightsError::Io { path, .. }
            | WeightsError::Format { path, .. }
            | WeightsError::ForbiddenGlobal { path, .. }
            | WeightsError::Mismatch { path, .. }
            | WeightsError::Torch { path, .. } => path,
        }
    }
}

/// `s` with control characters written as escapes (`\n`, `\u{1b}`). Member names, pickle
/// globals and tensor names come from the file, and a newline in one split the error over
/// several lines (found by the property tests, issue 7, item 10).
pub(crate) fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// A checkpoint variable whose shape differs from the model's variable of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub name: String,
    pub checkpoint: Vec<i64>,
    pub model: Vec<i64>,
}

/// All the ways a checkpoint's keys disagree with a model, gathered in one pass so that a user
/// sees the whole picture (say, a missing head *and* an unstripped prefix) in one error instead
/// of fixing one key per run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMismatch {
    /// Model variables the checkpoint does not have, sorted.
    pub missing: Vec<String>,
    /// Checkpoint tensors the model has no variable for, sorted.
    pub unexpected: Vec<String>,
    /// Present in both with different shapes, sorted by name.
    pub mis_shaped: Vec<ShapeMismatch>,
}

impl KeyMismatch {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mis_shaped.is_empty()
    }
}

impl fmt::Display for KeyMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(list("missing", &self.missing));
        }
        if !self.unexpected.is_empty() {
            parts.push(list("unexpected", &self.unexpected));
        }
        if !self.mis_shaped.is_empty() {
            let described: Vec<String> = self
                .mis_shaped
                .iter()
                .map(|m| {
                    format!(
                        "{} (checkpoint {:?}, model {:?})",
                        m.name, m.checkpoint, m.model
                    )
                })
                .collect();
            parts.push(list("mis-shaped", &described));
        }
        if parts.is_empty() {
            return write!(f, "no differences");
        }
        write!(f, "{}", parts.join("; "))
    }
}

fn list(kind: &str, names: &[String]) -> String {
    let plural = if names.len() == 1 { "key" } else { "keys" };
    let shown = names
        .iter()
        .take(LISTED_PER_KIND)
        .map(|n| printable(n))
        .collect::<Vec<_>>()
        .join(", ");
    let rest = names.len().saturating_sub(LISTED_PER_KIND);
    if rest > 0 {
        format!("{} {kind} {plural}: {shown}, and {rest} more", names.len())
    } else {
        format!("{} {kind} {plural}: {shown}", names.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_file_cannot_split_an_error_over_lines() {
        let err = WeightsError::format(Path::new("w.pth"), "missing member a\nb\u{1b}[2J");
        assert_eq!(err.to_string(), "w.pth: missing member a\\nb\\u{1b}[2J");
        let m = KeyMismatch {
            unexpected: vec!["x\ny".into()],
            ..KeyMismatch::default()
        };
        assert_eq!(m.to_string(), "1 unexpected key: x\\ny");
    }

    #[test]
    fn mismatch_lists_a_few_of_each_kind_with_counts() {
        let m = KeyMismatch {
            missing: (0..7).map(|i| format!("m{i}")).collect(),
            unexpected: vec!["u".into()],
            mis_shaped: vec![ShapeMismatch {
                name: "w".into(),
                checkpoint: vec![2, 3],
                model: vec![3, 2],
            }],
        };
        let text = m.to_string();
        assert!(
            text.contains("7 missing keys: m0, m1, m2, m3, m4, and 2 more"),
            "{text}"
        );
        assert!(text.contains("1 unexpected key: u"), "{text}");
        assert!(
            text.contains("1 mis-shaped key: w (checkpoint [2, 3], model [3, 2])"),
            "{text}"
        );
    }
}
