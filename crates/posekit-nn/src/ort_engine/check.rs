//! Checks an ONNX model against the network it is supposed to be, before it runs: an ONNX file
//! from elsewhere (another exporter, another preset, another input size) must be refused with
//! what differs, not run into a decoder that reads the wrong channels.
//!
//! What a preset's network produces comes from the network itself: one libtorch forward at the
//! input size ([`ExpectedModel::probe`]) gives every head's name and shape.

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};
use posekit_core::{Error, Result};
use tch::{nn, Device, Kind, Tensor};

use crate::export::metadata::KEY_PRESET;
use crate::export::INPUT_NAME;
use crate::models::{PoseNetwork, Preset};

/// The graph a preset's network is, at one input size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedModel {
    pub preset: String,
    /// `(height, width)`.
    pub input_size: (i64, i64),
    /// Every head's name and `[1, C, h, w]` shape, in `forward_named` order.
    pub heads: Vec<(String, Vec<i64>)>,
}

impl ExpectedModel {
    /// What `net` (named `preset`) produces at `input_size`, from one batch-1 forward.
    pub fn probe(preset: &str, net: &dyn PoseNetwork, input_size: (i64, i64)) -> Result<Self> {
        let (h, w) = input_size;
        let x = Tensor::zeros([1, 3, h, w], (Kind::Float, Device::Cpu));
        let outputs = tch::no_grad(|| net.forward_named(&x, false))
            .map_err(|e| Error::Shape(format!("{preset}: {e}")))?;
        Ok(ExpectedModel {
            preset: preset.to_string(),
            input_size,
            heads: outputs.into_iter().map(|(n, t)| (n, t.size())).collect(),
        })
    }

    /// [`Self::probe`] of a preset's network as built (random weights: only shapes matter).
    pub fn for_preset(preset: &Preset, input_size: (i64, i64)) -> Result<Self> {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = preset.build(&vs.root())?;
        Self::probe(preset.name, net.as_ref(), input_size)
    }
}

/// Compares `session`'s metadata, input and outputs with `expected`; `origin` names the model
/// (its file) in the error, which lists every difference found.
pub fn check_session(session: &Session, expected: &ExpectedModel, origin: &str) -> Result<()> {
    let mut problems = Vec::new();
    let preset = &expected.preset;
    if let Some(exported) = session.metadata().ok().and_then(|m| m.custom(KEY_PRESET)) {
        if exported != *preset {
            problems.push(format!(
                "it was exported from preset {exported}, not {preset}"
            ));
        }
    }

    let (h, w) = expected.input_size;
    let inputs = session.inputs();
    match inputs {
        [input] if input.name() == INPUT_NAME => {
            let want = [None, Some(3), Some(h), Some(w)];
            if let Some(p) = tensor_mismatch(input.dtype(), &want) {
                problems.push(format!(
                    "input `{INPUT_NAME}` {p}; {preset} takes [N, 3, {h}, {w}] float32"
                ));
            }
        }
        _ => {
            let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
            problems.push(format!(
                "its inputs are {names:?}; {preset} takes one input named `{INPUT_NAME}`, [N, 3, {h}, {w}] float32"
            ));
        }
    }

    let outputs = session.outputs();
    for (name, shape) in &expected.heads {
        let Some(output) = outputs.iter().find(|o| o.name() == name) else {
            let names: Vec<&str> = outputs.iter().map(|o| o.name()).collect();
            problems.push(format!(
                "it has no output `{name}` (its outputs are {names:?})"
            ));
            continue;
        };
        let want: Vec<Option<i64>> = std::iter::once(None)
            .chain(shape.iter().skip(1).map(|&d| Some(d)))
            .collect();
        if let Some(p) = tensor_mismatch(output.dtype(), &want) {
            problems.push(format!(
                "output `{name}` {p}; {preset} at {h}x{w} gives [N, {}] float32",
                shape[1..]
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{origin} is not a {preset} model at {h}x{w}: {}",
            problems.join("; ")
        )))
    }
}

/// Why a declared tensor type does not fit `want` (float32, one entry per dimension, `None`
/// for any size); symbolic dimensions of the model fit anything.
fn tensor_mismatch(ty: &ValueType, want: &[Option<i64>]) -> Option<String> {
    let ValueType::Tensor { ty, shape, .. } = ty else {
        return Some("is not a tensor".to_string());
    };
    if *ty != TensorElementType::Float32 {
        return Some(format!("has element type {ty:?}"));
    }
    let dims: &[i64] = shape;
    if dims.len() != want.len() {
        return Some(format!("has {} dimensions ({})", dims.len(), show(dims)));
    }
    let fits = dims
        .iter()
        .zip(want)
        .all(|(&d, w)| d < 0 || w.is_none_or(|w| w == d));
    (!fits).then(|| format!("has shape [{}]", show(dims)))
}

/// A declared shape with symbolic dimensions as `?`.
fn show(dims: &[i64]) -> String {
    dims.iter()
        .map(|&d| {
            if d < 0 {
                "?".to_string()
            } else {
                d.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
