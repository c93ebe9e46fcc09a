//! `posekit export --model P [--weights W] -o model.onnx` and
//! `posekit export CONFIG.toml --weights W -o model.onnx`: a network as an ONNX graph written by
//! posekit from its own modules (BatchNorm folded, one output per head under the names of
//! `posekit forward`, metadata for a consumer that has nothing else); see
//! `posekit_nn::export`.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use posekit::pipelines::export::{prepare_export, ExportSource, ExportWeights};
use posekit_nn::export::{self, ExportOptions, Precision, DEFAULT_OPSET, MAX_OPSET, MIN_OPSET};

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
        posekit::files::ensure_not_input(input, &args.output)?;
    }
    let source = match (&args.config, &args.model) {
        (Some(config), _) => ExportSource::Config(config),
        (None, Some(preset)) => ExportSource::Preset(preset),
        (None, None) => {
            bail!("give --model PRESET (see `posekit models`) or a training CONFIG.toml")
        }
    };
    let weights = match (&args.weights, args.random_weights) {
        (Some(path), _) => ExportWeights::File(path),
        (None, true) => ExportWeights::Random(args.seed),
        (None, false) => match source {
            ExportSource::Preset(name) if is_bundled(name) => ExportWeights::Bundled,
            ExportSource::Preset(name) => bail!(
                "{name} needs --weights (its official .pth, an MMPose checkpoint, a training \
                 checkpoint or a .safetensors of that model), or --random-weights for a benchmark"
            ),
            ExportSource::Config(path) => bail!(
                "{} needs --weights (the run's final.safetensors or a checkpoint)",
                path.display()
            ),
        },
    };
    let size = args.input_size.as_deref().map(parse_size).transpose()?;
    let (model, info, input_size) = prepare_export(source, weights, size)?;
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

/// Whether the preset ships with weights (only the bundled model does).
fn is_bundled(name: &str) -> bool {
    posekit_nn::models::Preset::find(name).is_ok_and(|p| p.bundled_weights().is_some())
}
