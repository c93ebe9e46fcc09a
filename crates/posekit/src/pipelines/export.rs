//! What `posekit export` exports: a preset with the user's weights (or the bundled ones, or
//! calibrated random ones for benchmarks), or a trained config's own network with its crop size
//! and normalisation. The graph itself is written by `posekit_nn::export`.

use std::path::Path;

use posekit_nn::export::{random_weights, ExportInfo};
use posekit_nn::models::normalization::InputNormalization;
use tch::Device;

use super::config::ExperimentConfig;
use super::model::LoadedModel;
use crate::error::{bail, Result, ResultExt};
use crate::estimator::weights;

/// Which network to export.
#[derive(Debug, Clone, Copy)]
pub enum ExportSource<'a> {
    /// A preset of `posekit models`.
    Preset(&'a str),
    /// A training config (its `[model]` and `[data]`).
    Config(&'a Path),
}

/// Where the exported weights come from.
#[derive(Debug, Clone, Copy)]
pub enum ExportWeights<'a> {
    /// A training checkpoint, safetensors or an official/MMPose `.pth`.
    File(&'a Path),
    /// The weights that ship with the preset.
    Bundled,
    /// Random weights calibrated like trained ones (benchmarks and checks; the outputs mean
    /// nothing), from this seed.
    Random(i64),
}

/// A network on the CPU with its weights, its ONNX metadata and the input size `(h, w)` to
/// export at (`input_size`, else the preset's default or the config's crop size).
pub fn prepare_export(
    source: ExportSource,
    weights: ExportWeights,
    input_size: Option<(i64, i64)>,
) -> Result<(LoadedModel, ExportInfo, (i64, i64))> {
    let (mut model, info, size) = match source {
        ExportSource::Preset(name) => {
            let model = LoadedModel::new(name, Device::Cpu)?;
            let preset = model.preset;
            let info = ExportInfo::for_preset(preset)?;
            (
                model,
                info,
                input_size.unwrap_or_else(|| preset.default_input_size()),
            )
        }
        ExportSource::Config(path) => {
            let cfg = ExperimentConfig::load(path)?.config;
            if input_size.is_some() {
                bail!(
                    "an input size: {} fixes the crop size (data.input_size)",
                    path.display()
                );
            }
            let layout = cfg.layout()?;
            let model = cfg.model.build(&layout, Device::Cpu)?;
            let [w, h] = cfg.data.input_size;
            let preset = model.preset;
            let info = ExportInfo {
                preset: preset.name.to_string(),
                family: preset.family,
                layout,
                normalization: InputNormalization::rgb_unit_scale(cfg.data.mean, cfg.data.std),
                summary: format!("{}, trained with {}", preset.summary, path.display()),
            };
            (model, info, (h as i64, w as i64))
        }
    };
    match weights {
        ExportWeights::File(path) => weights::load(&mut model, path)?,
        ExportWeights::Bundled => weights::load_bundled(&mut model)?,
        ExportWeights::Random(seed) => {
            random_weights::randomize(&model.vs, model.net.as_ref(), &info.normalization, seed)
                .context("randomising the weights")?
        }
    }
    Ok((model, info, size))
}
