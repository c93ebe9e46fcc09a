//! `posekit train CONFIG.toml`: trains a top-down model as the config describes (see
//! `pipelines::config` for the file and `pipelines::train` for the loop and checkpoints).
//!
//! Data parallel: started by torchrun (or SLURM / Kubernetes setting torchrun's RANK,
//! WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), this process is one rank of the group, on
//! `cuda:LOCAL_RANK` when `--device` is CUDA; with `--nproc N` it starts N local ranks of
//! itself and waits for them (see posekit-dist's `spawn_local`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use posekit::pipelines::config::ExperimentConfig;
use posekit::pipelines::train::{train, train_in_group, TrainOptions};
use posekit_dist::{spawn_local, DistEnv, SpawnOptions, SPAWNED_VAR};
use posekit_nn::device::parse_device;
use tch::Device;

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
    /// CPU threads for libtorch (default: libtorch's choice; with --nproc, the cores shared
    /// out among the ranks).
    #[arg(long)]
    threads: Option<i32>,
    /// Train data-parallel on N ranks started on this machine (one per GPU with --device
    /// cuda, else N CPU processes with Gloo), as `torchrun --nproc-per-node N` would.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    nproc: Option<u32>,
}

/// This command line without `--nproc N` / `--nproc=N`: what each spawned rank runs.
fn args_without_nproc() -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--nproc" {
            args.next();
        } else if !arg.to_string_lossy().starts_with("--nproc=") {
            out.push(arg);
        }
    }
    out
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let env = DistEnv::from_env()?;
    if let Some(n) = args.nproc {
        if std::env::var_os(SPAWNED_VAR).is_none() {
            anyhow::ensure!(
                env.is_none(),
                "--nproc starts the ranks itself, but RANK/WORLD_SIZE are already set (by \
                 torchrun?); drop --nproc under a launcher"
            );
            // Parse what the ranks will need now, so a bad config fails once, here.
            ExperimentConfig::load(&args.config)?;
            parse_device(&args.device)?;
            let mut options = SpawnOptions::current_exe(args_without_nproc())?;
            options.grace = std::time::Duration::from_secs(30);
            if args.threads.is_none() && std::env::var_os("OMP_NUM_THREADS").is_none() {
                // N ranks each using every core would fight over them (torchrun sets
                // OMP_NUM_THREADS=1 for the same reason); give each its share.
                let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
                let share = (cores / n as usize).max(1);
                // SAFETY: single-threaded here: nothing else reads the environment yet.
                unsafe { std::env::set_var("OMP_NUM_THREADS", share.to_string()) };
            }
            return spawn_local(n as usize, &options).context("--nproc training failed");
        }
    }
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let loaded = ExperimentConfig::load(&args.config)?;
    let mut device = parse_device(&args.device)?;
    if let (Some(e), Device::Cuda(_)) = (&env, device) {
        // One GPU per local rank, as torchrun's users expect (`cuda:LOCAL_RANK`).
        device = Device::Cuda(e.local_rank);
    }
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let out_dir = loaded.config.output_dir(&args.config, args.out.as_deref());
    let opts = TrainOptions {
        resume: args.resume,
        overwrite: args.overwrite,
        device,
        out_dir,
        progress: !args.no_progress,
        report: std::sync::Arc::new(|line| println!("{line}")),
    };
    match &env {
        None => train(&loaded, &opts)?,
        Some(e) => train_in_group(&loaded, &opts, e).with_context(|| format!("rank {}", e.rank))?,
    };
    Ok(())
}
