//! `posekit export --model P [--weights W] -o model.onnx` and
//! `posekit export CONFIG.toml --weights W -o model.onnx`: a network as an ONNX graph written by
//! posekit from its own modules (BatchNorm folded, one output per head under the names of
//! `posekit forward`, metadata for a consumer that has nothing else); see
//! `posekit_nn::export`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use posekit::pipelines::config::ExperimentConfig;
use posekit::pipelines::infer::model::{bundled_openpose_weights, OPENPOSE_MOBILENET};
use posekit::pipelines::model::LoadedModel;
use posekit::pipelines::train::checkpoint;
use posekit_nn::export::{
    self, random_weights, ExportInfo, ExportOptions, Precision, DEFAULT_OPSET, MAX_OPSET, MIN_OPSET,
};
use posekit_nn::models::normalization::InputNormalization;
use posekit_nn::models::openpose_mobilenet::OpenPoseMobileNet;
use tch::Device;

use super::bench::parse_size;

#[derive(Args)]
pub struct ExportArgs {
    /// Experiment config (TOML) of a trained top-down model; leave out to export a --model preset.
    config: Option<PathBuf>,
    /// Model preset (see `posekit models`).
    #[arg(long, conflicts_with = "config")]
    model: Option<String>,
    /// Weights: a training checkpoint, safetensors or an official/MMPose .pth of the model
    /// (optional for the bundled openpose-mobilenetv2).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Export random (calibrated) weights instead, for benchmarks and checks: the outputs mean
    /// nothing.
    #[arg(long, conflicts_with = "weights")]
    random_weights: bool,
    /// Seed of --random-weights.
    #[arg(long, default_value_t = 0, requires = "random_weights")]
    seed: i64,
    /// The .onnx file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// ONNX opset.
    #[arg(long, default_value_t = DEFAULT_OPSET, help = format!("ONNX opset ({MIN_OPSET} to {MAX_OPSET})"))]
    opset: i64,
    /// Make the batch dimension symbolic (any batch size at run time).
    #[arg(long)]
    dynamic_batch: bool,
    /// Fixed batch size of the graph.
    #[arg(long, default_value_t = 1, conflicts_with = "dynamic_batch")]
    batch: i64,
    /// Input size HxW (default: the preset's first size; a config's crop size).
    #[arg(long)]
    input_size: Option<String>,
    /// float16 weights and activations (the graph's input and outputs stay float32, with Cast
    /// nodes at both ends).
    #[arg(long)]
    half: bool,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    export::check_opset(args.opset)?;
    if args.batch < 1 {
        bail!("--batch must be at least 1");
    }
    for input in [args.weights.as_deref(), args.config.as_deref()]
        .into_iter()
        .flatten()
    {
        if same_file(input, &args.output) {
            bail!(
                "-o {} is the input {}; choose another output file",
                args.output.display(),
                input.display()
            );
        }
    }
    let (model, info, input_size) = match (&args.config, &args.model) {
        (Some(config), _) => from_config(config, &args)?,
        (None, Some(preset)) => from_preset(preset, &args)?,
        (None, None) => {
            bail!("give --model PRESET (see `posekit models`) or a training CONFIG.toml")
        }
    };
    if args.random_weights {
        random_weights::randomize(
            &model.vs,
            model.net.as_ref(),
            &info.normalization,
            args.seed,
        )
        .context("randomising the weights")?;
    }
    let options = ExportOptions {
        opset: args.opset,
        input_size,
        batch: (!args.dynamic_batch).then_some(args.batch),
        precision: if args.half {
            Precision::Float16
        } else {
            Precision::Float32
        },
    };
    let exported = export::export_network(model.net.as_ref(), &info, &options)?;
    exported.write(&args.output)?;
    let bytes = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    let batch = options.batch.map_or("N".to_string(), |b| b.to_string());
    println!(
        "{}: {} at {}x{}, batch {batch}, opset {}, {}{} ({:.1} MB)",
        args.output.display(),
        info.preset,
        input_size.0,
        input_size.1,
        options.opset,
        options.precision.name(),
        if args.random_weights {
            ", RANDOM weights"
        } else {
            ""
        },
        bytes as f64 / 1e6
    );
    for (head, shape) in &exported.heads {
        println!(
            "  output {}: [{batch}, {}, {}, {}] (stride {})",
            head.name, shape[1], shape[2], shape[3], head.stride
        );
    }
    Ok(())
}

/// A preset with the user's weights (or the bundled ones, or random ones).
fn from_preset(
    name: &str,
    args: &ExportArgs,
) -> anyhow::Result<(LoadedModel, ExportInfo, (i64, i64))> {
    let mut model = LoadedModel::new(name, Device::Cpu)?;
    let preset = model.preset;
    match &args.weights {
        Some(weights) => load_weights(&mut model, weights)?,
        None if args.random_weights => {}
        None if preset.name == OPENPOSE_MOBILENET => {
            let bundled = bundled_openpose_weights().or_else(|err| {
                let checkout = OpenPoseMobileNet::bundled_weights();
                if checkout.is_file() {
                    Ok(checkout)
                } else {
                    Err(err)
                }
            })?;
            load_weights(&mut model, &bundled)?;
        }
        None => bail!(
            "--model {} needs --weights (its official .pth, an MMPose checkpoint, a training \
             checkpoint or a .safetensors of that model), or --random-weights for a benchmark",
            preset.name
        ),
    }
    let input_size = match &args.input_size {
        Some(s) => parse_size(s)?,
        None => preset.default_input_size(),
    };
    Ok((model, ExportInfo::for_preset(preset)?, input_size))
}

/// A trained top-down model: the config's network, layout, crop size and normalisation.
fn from_config(
    path: &Path,
    args: &ExportArgs,
) -> anyhow::Result<(LoadedModel, ExportInfo, (i64, i64))> {
    let cfg = ExperimentConfig::load(path)?.config;
    if args.input_size.is_some() {
        bail!(
            "--input-size: {} fixes the crop size (data.input_size)",
            path.display()
        );
    }
    let layout = cfg.layout()?;
    let mut model = cfg.model.build(&layout, Device::Cpu)?;
    match &args.weights {
        Some(weights) => load_weights(&mut model, weights)?,
        None if args.random_weights => {}
        None => bail!(
            "--weights is required to export {} (or --random-weights for a benchmark)",
            path.display()
        ),
    }
    let [w, h] = cfg.data.input_size;
    let preset = model.preset;
    let info = ExportInfo {
        preset: preset.name.to_string(),
        family: preset.family,
        layout,
        normalization: InputNormalization::rgb_unit_scale(cfg.data.mean, cfg.data.std),
        summary: format!("{}, trained with {}", preset.summary, path.display()),
    };
    Ok((model, info, (h as i64, w as i64)))
}

/// A training checkpoint or a weights file (safetensors, .pth).
fn load_weights(model: &mut LoadedModel, weights: &Path) -> anyhow::Result<()> {
    if !weights.is_file() {
        bail!("{}: no such weights file", weights.display());
    }
    if checkpoint::is_checkpoint(weights) {
        checkpoint::load(weights)?.restore_model(&model.vs)?;
    } else {
        posekit_nn::weights::load_weights(&mut model.vs, weights)
            .with_context(|| format!("loading {} into {}", weights.display(), model.preset.name))?;
    }
    Ok(())
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
