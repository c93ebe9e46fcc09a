//! `posekit convert IN.pth --model PRESET -o OUT.safetensors`: check a checkpoint against a model
//! and write it as safetensors with the model's names.

use std::path::PathBuf;

use clap::Args;
use posekit_nn::{models::Preset, weights};
use tch::{nn, Device};

#[derive(Args)]
pub struct ConvertArgs {
    /// A PyTorch checkpoint (.pth/.pt/.pth.tar; official, MMPose or DataParallel names) or safetensors.
    input: PathBuf,
    /// The preset the checkpoint is for (see `posekit models`).
    #[arg(long)]
    model: String,
    /// Where to write the safetensors file.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    posekit::files::ensure_not_input(&args.input, &args.output)?;
    let preset = Preset::find(&args.model)?;
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = preset.build(&vs.root())?;
    let report = weights::convert_checkpoint(&args.input, &vs, &args.output)?;
    println!(
        "{}: {} tensors checked against {} and written to {} ({} bytes){}{}",
        args.input.display(),
        report.tensors,
        preset.name,
        args.output.display(),
        report.output_bytes,
        if report.container.is_empty() {
            String::new()
        } else {
            format!("; read from '{}'", report.container.join("."))
        },
        if report.dropped.is_empty() {
            String::new()
        } else {
            format!(
                "; {} bookkeeping keys dropped (num_batches_tracked)",
                report.dropped.len()
            )
        },
    );
    Ok(())
}
