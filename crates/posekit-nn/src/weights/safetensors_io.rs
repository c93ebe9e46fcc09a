//! Safetensors in and out: posekit's own weights format.
//!
//! Safetensors is a JSON header plus raw little-endian bytes, so reading it can never run code and
//! needs no pickle at all; that is why `posekit convert` turns `.pth` files into it once, and why
//! `save_safetensors` is the way to export trained weights.

use std::collections::HashMap;
use std::path::Path;

use safetensors::SafeTensors;

use super::error::WeightsError;
use super::tensor::{DType, RawTensor};

/// Reads every tensor of a safetensors file, in the file's (name-sorted) order.
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, RawTensor)>, WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| WeightsError::io(path, "cannot read", e))?;
    parse_safetensors(&bytes, path)
}

/// Parses safetensors bytes; `path` is only used in error messages.
pub fn parse_safetensors(
    bytes: &[u8],
    path: &Path,
) -> Result<Vec<(String, RawTensor)>, WeightsError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| WeightsError::format(path, format!("not a valid safetensors file: {e}")))?;
    let mut out = Vec::with_capacity(st.len());
    let mut views = st.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in views {
        let dtype = DType::from_safetensors(view.dtype()).ok_or_else(|| {
            WeightsError::format(
                path,
                format!("tensor {name} has unsupported dtype {:?}", view.dtype()),
            )
        })?;
        let tensor = RawTensor::new(dtype, view.shape().to_vec(), view.data().to_vec())
            .map_err(|m| WeightsError::format(path, format!("tensor {name}: {m}")))?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// Reads a safetensors file straight into CPU `tch` tensors.
pub fn read_safetensors_tch(path: &Path) -> Result<HashMap<String, tch::Tensor>, WeightsError> {
    read_safetensors(path)?
        .into_iter()
        .map(|(name, raw)| {
            let t = raw
                .to_tch()
                .map_err(|e| WeightsError::torch(path, format!("tensor {name}: {e}")))?;
            Ok((name, t))
        })
        .collect()
}

/// Writes tensors by name. The file is written next to its destination and renamed into place,
/// so an interrupted export never leaves a truncated file under the final name. The header
/// carries `format: pt`, which Hugging Face tools expect from PyTorch-layout weights.
pub fn write_safetensors<'a, I>(path: &Path, tensors: I) -> Result<(), WeightsError>
where
    I: IntoIterator<Item = (&'a str, &'a RawTensor)>,
{
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors_with_metadata(path, tensors, metadata)
}

/// [`write_safetensors`] with the header's metadata given (training checkpoints keep their run
/// state and checksum there): the one safetensors writer of the workspace.
pub fn write_safetensors_with_metadata<'a, I>(
    path: &Path,
    tensors: I,
    metadata: HashMap<String, String>,
) -> Result<(), WeightsError>
where
    I: IntoIterator<Item = (&'a str, &'a RawTensor)>,
{
    let mut seen = std::collections::HashSet::new();
    let mut entries: Vec<(&str, &RawTensor)> = Vec::new();
    for (name, t) in tensors {
        if !seen.insert(name) {
            return Err(WeightsError::format(
                path,
                format!("tensor name {name} given twice"),
            ));
        }
        entries.push((name, t));
    }
    let bytes = safetensors::serialize(entries, Some(metadata))
        .map_err(|e| WeightsError::format(path, format!("cannot serialise safetensors: {e}")))?;
    posekit_core::files::write_atomic(path, &bytes)
        .map_err(|e| WeightsError::io(path, e.step, e.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_gives_the_same_tensors() {
        let dir = std::env::temp_dir().join(format!("posekit-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let a = RawTensor::new(DType::F16, vec![2, 1], vec![1, 2, 3, 4]).unwrap();
        let b = RawTensor::new(DType::Bool, vec![], vec![1]).unwrap();
        write_safetensors(&path, [("b", &b), ("a", &a)]).unwrap();
        let back = read_safetensors(&path).unwrap();
        assert_eq!(
            back,
            vec![("a".to_string(), a.clone()), ("b".to_string(), b)]
        );
        assert!(write_safetensors(&path, [("a", &a), ("a", &a)]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let err = parse_safetensors(
            b"\x10\x00\x00\x00\x00\x00\x00\x00{not json",
            Path::new("x.st"),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("x.st: "), "{err}");
    }
}
