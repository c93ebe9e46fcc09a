//! ONNX export of posekit's networks, written by posekit from its own modules.
//!
//! Each network describes itself to an [`OnnxGraph`] through
//! [`crate::models::PoseNetwork::export_onnx`], implemented in its own
//! file next to its `forward`: the same layers in the same order with the same weights, every
//! BatchNorm that follows a convolution folded into it (inference mode). [`export_network`]
//! wraps that in a model: the graph input `input` (`[N, 3, H, W]` float32, `N` symbolic with
//! `dynamic_batch`), one float32 output per head under the name `posekit forward` gives it, and
//! the metadata of [`metadata`] (preset, layout, input size, normalisation, strides).
//!
//! Before describing the graph the network runs one libtorch forward at the export's input
//! size: it validates the size with the network's own checks, and the heads it returns (names,
//! order, channels, spatial sizes) are what the graph must produce, so an export that drifted
//! from its forward is an error rather than a wrong file.

pub mod graph;
pub mod metadata;
pub mod random_weights;

use std::path::Path;

use onnx_protobuf::{Message, ModelProto};
use posekit_core::{Error, Result};
use tch::{Device, Kind, Tensor};

/// The ONNX protobuf messages (`onnx-protobuf`), for reading an exported model back.
pub use onnx_protobuf as proto;

pub use graph::{
    check_opset, Dim, OnnxGraph, Precision, Value, DEFAULT_OPSET, MAX_OPSET, MIN_OPSET,
};
pub use metadata::{ExportInfo, HeadInfo, INPUT_NAME};

use crate::models::PoseNetwork;

/// Name of the symbolic batch dimension of a `dynamic_batch` export.
pub const BATCH_DIM: &str = "batch";

/// How to export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// ONNX opset, [`MIN_OPSET`]..=[`MAX_OPSET`].
    pub opset: i64,
    /// Input `(height, width)`; the spatial sizes of the graph are fixed.
    pub input_size: (i64, i64),
    /// Batch size of the graph, or `None` for a symbolic batch dimension.
    pub batch: Option<i64>,
    pub precision: Precision,
}

impl ExportOptions {
    /// Opset 17, float32, batch 1.
    pub fn new(input_size: (i64, i64)) -> Self {
        ExportOptions {
            opset: DEFAULT_OPSET,
            input_size,
            batch: Some(1),
            precision: Precision::Float32,
        }
    }
}

/// An exported network: the ONNX model and a description of its outputs.
#[derive(Debug)]
pub struct ExportedModel {
    pub model: ModelProto,
    /// The graph's outputs in order, with their `[N, C, h, w]` shapes at batch 1.
    pub heads: Vec<(HeadInfo, Vec<i64>)>,
}

impl ExportedModel {
    /// The serialised `.onnx` file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.model
            .write_to_bytes()
            .map_err(|e| Error::Shape(format!("ONNX export: cannot serialise the model: {e}")))
    }

    /// Writes the model to `path` through a temporary file in the same folder that is renamed
    /// over `path` once complete, so an interrupted export never leaves a truncated file.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomically(path, &self.to_bytes()?)
    }
}

/// Exports `net` (built on the CPU, weights loaded) as described by `info` and `options`.
pub fn export_network(
    net: &dyn PoseNetwork,
    info: &ExportInfo,
    options: &ExportOptions,
) -> Result<ExportedModel> {
    check_opset(options.opset)?;
    let (h, w) = options.input_size;
    if h <= 0 || w <= 0 {
        return Err(Error::Shape(format!(
            "ONNX export: input size {h}x{w} must be positive"
        )));
    }
    if let Some(b) = options.batch {
        if b <= 0 {
            return Err(Error::Shape(format!(
                "ONNX export: batch size {b} must be positive"
            )));
        }
    }
    let context = |e: Error| Error::Shape(format!("{}: {e}", info.preset));

    // The reference forward: validates the size and says what the graph must produce.
    let probe = Tensor::zeros([1, 3, h, w], (Kind::Float, Device::Cpu));
    let expected = tch::no_grad(|| net.forward_named(&probe, false)).map_err(context)?;

    let batch_dim = match options.batch {
        Some(b) => Dim::Fixed(b),
        None => Dim::Symbolic(BATCH_DIM.into()),
    };
    let mut g = OnnxGraph::new(options.opset, options.precision)?;
    let spatial = [Dim::Fixed(3), Dim::Fixed(h), Dim::Fixed(w)];
    let input_dims: Vec<Dim> = std::iter::once(batch_dim.clone()).chain(spatial).collect();
    let input = g.input(INPUT_NAME, &input_dims);
    let produced = net.export_onnx(&mut g, &input, (h, w)).map_err(context)?;

    let produced_names: Vec<&str> = produced.iter().map(|(n, _)| n.as_str()).collect();
    let expected_names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    if produced_names != expected_names {
        return Err(Error::Shape(format!(
            "{}: the ONNX graph's outputs {produced_names:?} differ from the forward's \
             {expected_names:?} (an export out of step with its network)",
            info.preset
        )));
    }
    let mut heads = Vec::with_capacity(expected.len());
    for ((name, value), (_, reference)) in produced.iter().zip(&expected) {
        let size = reference.size();
        if size.len() != 4 {
            return Err(Error::Shape(format!(
                "{}: output {name} has shape {size:?}; ONNX export expects [N, C, H, W] heads",
                info.preset
            )));
        }
        let dims = [
            batch_dim.clone(),
            Dim::Fixed(size[1]),
            Dim::Fixed(size[2]),
            Dim::Fixed(size[3]),
        ];
        g.output(name, value, &dims);
        let head = HeadInfo {
            name: name.clone(),
            channels: size[1],
            stride: stride_of(h, size[2]),
        };
        heads.push((head, size));
    }
    let head_infos: Vec<HeadInfo> = heads.iter().map(|(h, _)| h.clone()).collect();
    let props = metadata::Metadata {
        info,
        input_size: (h, w),
        heads: &head_infos,
        precision: options.precision,
        dynamic_batch: options.batch.is_none(),
        batch_dependent: net.batch_dependent(),
    }
    .props()?;
    let doc = format!(
        "{} ({}), exported by posekit {}",
        info.preset,
        info.summary,
        env!("CARGO_PKG_VERSION")
    );
    let model = g.finish(&info.preset, &doc, props);
    Ok(ExportedModel { model, heads })
}

/// Input pixels per output pixel: the smallest power of two `s` with `floor(input / s)` (VGG's
/// pooling) or `ceil(input / s)` (TF's `SAME` padding) equal to `output`; every posekit head is
/// at a power-of-two stride. 0 when none fits.
fn stride_of(input: i64, output: i64) -> i64 {
    (0..8)
        .map(|k| 1i64 << k)
        .find(|&s| input / s == output || (input + s - 1) / s == output)
        .unwrap_or(0)
}

/// [`posekit_core::files::write_atomic`], the one atomic writer of the workspace.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    posekit_core::files::write_atomic(path, bytes).map_err(|e| Error::io(path, e.source))
}

/// The error of a network without an export (the default of
/// [`crate::models::PoseNetwork::export_onnx`]).
pub fn unsupported(what: &str) -> Error {
    Error::Shape(format!("{what} has no ONNX export yet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_the_power_of_two_that_gives_the_output_size() {
        assert_eq!(stride_of(256, 64), 4);
        assert_eq!(stride_of(368, 46), 8);
        assert_eq!(stride_of(100, 13), 8); // TF SAME: ceil(100 / 8)
        assert_eq!(stride_of(100, 12), 8); // pooling: floor(100 / 8)
        assert_eq!(stride_of(52, 6), 8);
        assert_eq!(stride_of(512, 256), 2);
        assert_eq!(stride_of(512, 7), 0);
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("posekit-export-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.onnx");
        std::fs::write(&path, b"old").unwrap();
        write_atomically(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1);
        let err = write_atomically(&dir.join("missing/m.onnx"), b"x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing/m.onnx"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
