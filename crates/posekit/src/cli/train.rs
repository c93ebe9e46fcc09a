//! `posekit train CONFIG.toml`: trains a top-down model as the config describes (see
//! `pipelines::config` for the file and `pipelines::train` for the loop and checkpoints).

use std::path::PathBuf;

use clap::Args;
use posekit::pipelines::config::ExperimentConfig;
use posekit::pipelines::train::{train, TrainOptions};
use posekit_nn::device::parse_device;

#[derive(Args)]
pub struct TrainArgs {
    /// Experiment config (TOML); relative paths inside are relative to its folder.
    config: PathBuf,
    /// Continue from OUT/last.safetensors (the same config, the same schedule and data order);
    /// starts from scratch when the folder holds no run yet.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Start from scratch even though the output folder holds an earlier run, replacing its
    /// checkpoints, log and validation results (other files stay).
    #[arg(long)]
    overwrite: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Output folder (default: the config's output_dir, else runs/<config name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar (one line per epoch is printed either way).
    #[arg(long)]
    no_progress: bool,
    /// CPU threads for libtorch (default: libtorch's choice).
    #[arg(long)]
    threads: Option<i32>,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let loaded = ExperimentConfig::load(&args.config)?;
    let device = parse_device(&args.device)?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let out_dir = loaded.config.output_dir(&args.config, args.out.as_deref());
    train(
        &loaded,
        &TrainOptions {
            resume: args.resume,
            overwrite: args.overwrite,
            device,
            out_dir,
            progress: !args.no_progress,
            report: std::sync::Arc::new(|line| println!("{line}")),
        },
    )?;
    Ok(())
}
