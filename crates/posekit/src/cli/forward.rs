//! `posekit forward`: run a network on a stored input tensor and write every output head — the
//! command for checking a port against a reference implementation.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use posekit_nn::{device::parse_device, weights};
use tch::Kind;

use posekit::pipelines::model::LoadedModel;

#[derive(Args)]
pub struct ForwardArgs {
    /// Model preset (see `posekit models`).
    #[arg(long)]
    model: String,
    /// Weights (.pth or .safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// A safetensors file with the input batch under the key `input` ([N, 3, H, W]).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the outputs (one tensor per head, by name).
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Run in training mode (BatchNorm on batch statistics) instead of evaluation mode.
    #[arg(long)]
    train_mode: bool,
}

pub fn run(args: ForwardArgs) -> anyhow::Result<()> {
    for input in [&args.input, &args.weights] {
        posekit::files::ensure_not_input(input, &args.output)?;
    }
    let device = parse_device(&args.device)?;
    let model = LoadedModel::load(&args.model, &args.weights, device)?;
    let inputs = weights::read_safetensors_tch(&args.input)?;
    let input = inputs.get("input").ok_or_else(|| {
        anyhow!(
            "{}: no tensor named 'input' (found: {:?})",
            args.input.display(),
            inputs.keys().collect::<Vec<_>>()
        )
    })?;
    if input.dim() != 4 || input.size()[1] != 3 {
        return Err(anyhow!(
            "{}: 'input' must be [N, 3, H, W], got {:?}",
            args.input.display(),
            input.size()
        ));
    }
    let input = input.to_kind(Kind::Float).to_device(device);
    let outputs = tch::no_grad(|| model.net.forward_named(&input, args.train_mode))?;
    let raw: Vec<(String, weights::RawTensor)> = outputs
        .iter()
        .map(|(name, t)| {
            Ok((
                name.clone(),
                weights::RawTensor::from_tch(&t.to_device(tch::Device::Cpu))
                    .map_err(anyhow::Error::msg)?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    weights::write_safetensors(&args.output, raw.iter().map(|(n, t)| (n.as_str(), t)))
        .with_context(|| format!("writing {}", args.output.display()))?;
    for (name, t) in &outputs {
        println!("{name}: {:?}", t.size());
    }
    Ok(())
}
