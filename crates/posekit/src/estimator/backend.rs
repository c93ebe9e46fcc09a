//! Which engine runs a network: libtorch (the network's own modules) or ONNX Runtime (the same
//! network exported to ONNX by posekit, see `posekit_nn::export`, and run by
//! `posekit_nn::ort_engine`).
//!
//! Only the network changes: [`use_onnx_runtime`] swaps a [`LoadedModel`]'s network for an
//! [`OrtBackedNetwork`] behind the same [`PoseNetwork`] interface, so the pre-processing, flip
//! test, decoding and grouping of every pipeline (the estimator, `posekit test`, `posekit
//! infer`, `posekit bench`) run unchanged on either backend. This is the one place that builds
//! ONNX Runtime sessions of posekit's networks.
//!
//! Where the ONNX model comes from:
//! * by default it is **exported in memory** from the loaded network (weights and all) when an
//!   input size is first seen, never written to a cache file: an export takes well under a
//!   second next to loading the weights, a cache file beside the weights could go stale when
//!   they change (or be unwritable), and bottom-up models (HigherHRNet, CMU's OpenPose) see a
//!   different input size for each picture shape, each of which is its own fixed-size graph.
//!   The [`MAX_SESSIONS`] most recently used sizes are kept;
//! * or it is a user's `.onnx` file ([`OrtSettings::model`]), checked against the preset before
//!   it runs (input and output names and shapes, the exported preset), which runs at its one
//!   input size only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use posekit_nn::export::proto::{Message, ModelProto};
use posekit_nn::export::{self, ExportInfo, ExportOptions, Precision};
use posekit_nn::models::PoseNetwork;
use posekit_nn::ort_engine::{ExpectedModel, OrtNetwork, OrtOptions};
use tch::{Device, Tensor};

use posekit_nn::models::normalization::InputNormalization;

use crate::error::{bail, invalid, Result};
use crate::pipelines::config::ExperimentConfig;
use crate::pipelines::model::LoadedModel;

/// Input sizes whose ONNX Runtime sessions are kept (each holds a copy of the weights).
pub const MAX_SESSIONS: usize = 4;

/// The engine that runs the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The faster engine that gives the same results: ONNX Runtime on the CPU when its library
    /// can be loaded, libtorch otherwise and on a GPU ([`Backend::resolve`]). On the 2-core
    /// CPU of BENCHMARKS.md ONNX Runtime is faster on every measured row (HRNet-W32 at batch 1
    /// and 8, the shipped OpenPose-MobileNetV2) and `posekit test` gives the same AP on
    /// coco-mini, which is the rule issue 12 set for the CPU default.
    #[default]
    Auto,
    /// libtorch through tch (CPU or CUDA), BatchNorm folded for inference.
    Torch,
    /// ONNX Runtime on the CPU, loaded from the `onnxruntime` wheel that `scripts/setup.sh`
    /// installs.
    Ort,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Torch => "torch",
            Backend::Ort => "ort",
        }
    }

    /// The engine that runs on `device`: [`Backend::Auto`] is ONNX Runtime on the CPU when
    /// `libonnxruntime` loads (see [`posekit_nn::ort_engine::library`]) and libtorch
    /// otherwise; the others are themselves.
    pub fn resolve(self, device: Device) -> Backend {
        match self {
            Backend::Auto
                if device == Device::Cpu && posekit_nn::ort_engine::library::is_available() =>
            {
                Backend::Ort
            }
            Backend::Auto => Backend::Torch,
            chosen => chosen,
        }
    }

    /// What runs, for start lines and reports (`libtorch`, `onnxruntime`) once resolved.
    pub fn engine_name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Torch => "libtorch",
            Backend::Ort => "onnxruntime",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Backend::Auto),
            "torch" | "libtorch" => Ok(Backend::Torch),
            "ort" | "onnxruntime" => Ok(Backend::Ort),
            other => bail!("unknown backend `{other}` (auto, torch or ort)"),
        }
    }
}

/// How to run on ONNX Runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrtSettings {
    /// Intra-op threads; `None` lets ONNX Runtime choose (one per physical core).
    pub threads: Option<usize>,
    /// A `.onnx` file to run instead of the in-memory export of the loaded network.
    pub model: Option<PathBuf>,
}

/// A network on ONNX Runtime; see the module documentation.
pub struct OrtBackedNetwork {
    /// The libtorch network: what is exported for each new input size, and the reference the
    /// sessions are checked against.
    torch: Box<dyn PoseNetwork>,
    info: ExportInfo,
    options: OrtOptions,
    /// A user's model, loaded once: the only session, at its own input size.
    file: Option<(PathBuf, Arc<OrtNetwork>)>,
    /// In-memory exports by input size, the most recently used last.
    sessions: Mutex<Vec<SizedSession>>,
}

/// A session and the input size `(h, w)` it was exported at.
type SizedSession = ((i64, i64), Arc<OrtNetwork>);

impl std::fmt::Debug for OrtBackedNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtBackedNetwork")
            .field("preset", &self.info.preset)
            .field("file", &self.file.as_ref().map(|(p, _)| p))
            .field("threads", &self.options.threads)
            .finish()
    }
}

impl OrtBackedNetwork {
    /// `torch` (on the CPU, weights loaded) on ONNX Runtime. With a model file the file is
    /// loaded and checked now; otherwise each input size is exported when first run.
    pub fn new(
        torch: Box<dyn PoseNetwork>,
        info: ExportInfo,
        settings: &OrtSettings,
    ) -> Result<Self> {
        if settings.threads == Some(0) {
            bail!("the ONNX Runtime thread count must be at least 1");
        }
        // A missing library is said before any work, with how to install it.
        posekit_nn::ort_engine::library::environment()?;
        let options = OrtOptions {
            threads: settings.threads,
        };
        let file = match &settings.model {
            Some(path) => {
                let net = load_file(torch.as_ref(), &info, path, options)?;
                Some((path.clone(), Arc::new(net)))
            }
            None => None,
        };
        Ok(OrtBackedNetwork {
            torch,
            info,
            options,
            file,
            sessions: Mutex::new(Vec::new()),
        })
    }

    /// The input size `(h, w)` of a user's model file; `None` for in-memory exports (any size).
    pub fn fixed_input_size(&self) -> Option<(i64, i64)> {
        self.file.as_ref().map(|(_, n)| n.expected().input_size)
    }

    /// The session for inputs of `(h, w)`.
    fn session(&self, size: (i64, i64)) -> Result<Arc<OrtNetwork>> {
        if let Some((path, net)) = &self.file {
            let (h, w) = net.expected().input_size;
            if size != (h, w) {
                bail!(
                    "{} takes {h}x{w} inputs, this one is {}x{} (export the model at that size \
                     with `posekit export --input-size`, or leave out the model file to export \
                     in memory at every size)",
                    path.display(),
                    size.0,
                    size.1
                );
            }
            return Ok(net.clone());
        }
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| invalid!("{}: a previous ONNX Runtime run panicked", self.info.preset))?;
        if let Some(i) = sessions.iter().position(|(s, _)| *s == size) {
            let entry = sessions.remove(i);
            let net = entry.1.clone();
            sessions.push(entry);
            return Ok(net);
        }
        let net = Arc::new(export_in_memory(
            self.torch.as_ref(),
            &self.info,
            size,
            None,
            Precision::Float32,
            self.options,
        )?);
        if sessions.len() >= MAX_SESSIONS {
            sessions.remove(0);
        }
        sessions.push((size, net.clone()));
        Ok(net)
    }
}

impl PoseNetwork for OrtBackedNetwork {
    fn forward_named(
        &self,
        input: &Tensor,
        train: bool,
    ) -> posekit_core::Result<Vec<(String, Tensor)>> {
        if train {
            return Err(posekit_core::Error::Shape(format!(
                "{}: ONNX Runtime runs inference only (training runs on libtorch)",
                self.info.preset
            )));
        }
        let size = input.size();
        if size.len() != 4 {
            return Err(posekit_core::Error::Shape(format!(
                "{}: expects an input [N, 3, H, W], got {size:?}",
                self.info.preset
            )));
        }
        let session = self
            .session((size[2], size[3]))
            .map_err(|e| posekit_core::Error::Shape(e.to_string()))?;
        session.run(input)
    }

    fn batch_dependent(&self) -> bool {
        self.torch.batch_dependent()
    }
}

/// Swaps `model`'s network for its ONNX Runtime version (see [`OrtBackedNetwork::new`]). The
/// model must be on the CPU: ONNX Runtime runs on the CPU here. `input_size`, when the pipeline
/// feeds one fixed `(h, w)` (a top-down crop), is checked against a user's model file now
/// rather than at the first picture.
pub fn use_onnx_runtime(
    model: LoadedModel,
    info: ExportInfo,
    settings: &OrtSettings,
    input_size: Option<(i64, i64)>,
) -> Result<LoadedModel> {
    if model.vs.device() != Device::Cpu {
        bail!(
            "the ONNX Runtime backend runs on the CPU; leave out the device (or use --backend \
             torch on the GPU)"
        );
    }
    let LoadedModel { preset, vs, net } = model;
    let net = OrtBackedNetwork::new(net, info, settings)?;
    if let (Some((path, file)), Some((h, w))) = (&net.file, input_size) {
        let (fh, fw) = file.expected().input_size;
        if (fh, fw) != (h, w) {
            bail!(
                "{} takes {fh}x{fw} inputs, but {} runs at {h}x{w} (export it at that size with \
                 `posekit export --input-size {h}x{w}`)",
                path.display(),
                preset.name
            );
        }
    }
    Ok(LoadedModel {
        preset,
        vs,
        net: Box::new(net),
    })
}

/// [`use_onnx_runtime`] of a preset's network (its layout and normalisation in the metadata).
pub fn use_onnx_runtime_for_preset(
    model: LoadedModel,
    settings: &OrtSettings,
    input_size: Option<(i64, i64)>,
) -> Result<LoadedModel> {
    let info = ExportInfo::for_preset(model.preset)?;
    use_onnx_runtime(model, info, settings, input_size)
}

/// The ONNX description of a network trained with a config: its preset's family, the config's
/// layout and its input normalisation (what `posekit export CONFIG` writes).
pub fn config_export_info(cfg: &ExperimentConfig, path: Option<&Path>) -> Result<ExportInfo> {
    let layout = cfg.layout()?;
    let preset = posekit_nn::models::Preset::find(&cfg.model.preset)?;
    let trained = path.map_or_else(|| "a config".to_string(), |p| p.display().to_string());
    Ok(ExportInfo {
        preset: preset.name.to_string(),
        family: preset.family,
        layout,
        normalization: InputNormalization::rgb_unit_scale(cfg.data.mean, cfg.data.std),
        summary: format!("{}, trained with {trained}", preset.summary),
    })
}

/// `net` exported at `input_size` (batch `batch`, symbolic when `None`) and loaded into ONNX
/// Runtime; the export's own heads are what the session is checked against.
pub fn export_in_memory(
    net: &dyn PoseNetwork,
    info: &ExportInfo,
    input_size: (i64, i64),
    batch: Option<i64>,
    precision: Precision,
    options: OrtOptions,
) -> Result<OrtNetwork> {
    let export_options = ExportOptions {
        batch,
        precision,
        ..ExportOptions::new(input_size)
    };
    let exported = export::export_network(net, info, &export_options)?;
    let expected = ExpectedModel {
        preset: info.preset.clone(),
        input_size,
        heads: exported
            .heads
            .iter()
            .map(|(head, shape)| (head.name.clone(), shape.clone()))
            .collect(),
    };
    let origin = format!(
        "{} (exported in memory at {}x{})",
        info.preset, input_size.0, input_size.1
    );
    Ok(OrtNetwork::from_bytes(
        &exported.to_bytes()?,
        &origin,
        expected,
        options,
    )?)
}

/// A user's `.onnx` file, checked against what `net` produces at the file's input size.
fn load_file(
    net: &dyn PoseNetwork,
    info: &ExportInfo,
    path: &Path,
    options: OrtOptions,
) -> Result<OrtNetwork> {
    let bytes = posekit_core::error::read_file(path)?;
    let size = declared_input_size(&bytes).map_err(|why| {
        invalid!(
            "{}: {why}; a {} model takes one input `{}` [N, 3, H, W] (write one with `posekit \
             export`)",
            path.display(),
            info.preset,
            export::INPUT_NAME
        )
    })?;
    // What the libtorch network gives at that size (an input size it cannot take is refused
    // here, by its own check).
    let expected = ExpectedModel::probe(&info.preset, net, size)
        .map_err(|e| invalid!("{}: {e}", path.display()))?;
    Ok(OrtNetwork::from_bytes(
        &bytes,
        &path.display().to_string(),
        expected,
        options,
    )?)
}

/// The fixed `(H, W)` of an ONNX model's first input `[N, 3, H, W]`.
fn declared_input_size(bytes: &[u8]) -> std::result::Result<(i64, i64), String> {
    let model =
        ModelProto::parse_from_bytes(bytes).map_err(|e| format!("not an ONNX model ({e})"))?;
    let input = model
        .graph
        .input
        .iter()
        .find(|i| {
            // Initializers may be listed as inputs too (IR version 3 files).
            !model.graph.initializer.iter().any(|t| t.name == i.name)
        })
        .ok_or("the model has no input")?;
    let dims: Vec<Option<i64>> = input
        .type_
        .tensor_type()
        .shape
        .dim
        .iter()
        .map(|d| d.has_dim_value().then(|| d.dim_value()))
        .collect();
    match dims.as_slice() {
        [_, _, Some(h), Some(w)] if *h > 0 && *w > 0 => Ok((*h, *w)),
        _ => Err(format!(
            "its input `{}` has shape {:?}, not [N, 3, H, W] with a fixed H and W",
            input.name,
            dims.iter()
                .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
                .collect::<Vec<_>>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse() {
        assert_eq!("ort".parse::<Backend>().unwrap(), Backend::Ort);
        assert_eq!("torch".parse::<Backend>().unwrap(), Backend::Torch);
        assert_eq!("auto".parse::<Backend>().unwrap(), Backend::Auto);
        assert_eq!(Backend::default(), Backend::Auto);
        let err = "tensorrt".parse::<Backend>().unwrap_err().to_string();
        assert!(err.contains("tensorrt") && err.contains("ort"), "{err}");
    }

    #[test]
    fn auto_is_libtorch_on_a_gpu_and_a_choice_is_kept() {
        assert_eq!(Backend::Auto.resolve(Device::Cuda(0)), Backend::Torch);
        assert_eq!(Backend::Torch.resolve(Device::Cpu), Backend::Torch);
        assert_eq!(Backend::Ort.resolve(Device::Cpu), Backend::Ort);
        let on_cpu = Backend::Auto.resolve(Device::Cpu);
        let expected = if posekit_nn::ort_engine::library::is_available() {
            Backend::Ort
        } else {
            Backend::Torch
        };
        assert_eq!(on_cpu, expected);
    }

    #[test]
    fn a_file_that_is_not_onnx_is_refused_with_its_reason() {
        let err = declared_input_size(b"definitely not protobuf \xff\xff").unwrap_err();
        assert!(err.contains("not an ONNX model"), "{err}");
        let err = declared_input_size(&ModelProto::new().write_to_bytes().unwrap()).unwrap_err();
        assert!(err.contains("no input"), "{err}");
    }
}
