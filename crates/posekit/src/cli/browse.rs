//! `posekit browse CONFIG --out DIR`: the first samples of a config's split as the training
//! pipeline makes them, drawn as pictures and optionally written as the loss's tensors (see
//! `pipelines::browse`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use posekit::pipelines::browse::{browse, browse_report_text, BrowseOptions, BrowseSplit};
use posekit::pipelines::config::ExperimentConfig;

#[derive(Clone, Copy, ValueEnum)]
enum Split {
    Train,
    Val,
}

#[derive(Args)]
pub struct BrowseArgs {
    /// Experiment config (TOML), top-down or bottom-up.
    config: PathBuf,
    /// Which annotation file the samples come from.
    #[arg(long, value_enum, default_value = "train")]
    split: Split,
    /// How many samples (the first ones of the split).
    #[arg(long, default_value_t = 8)]
    n: usize,
    /// The training transform with scale 1 and no rotation, translation or flip.
    #[arg(long)]
    no_augment: bool,
    /// Output folder for the pictures (and tensor files).
    #[arg(long)]
    out: PathBuf,
    /// Also write NAME.safetensors per sample with exactly the tensors the loss reads.
    #[arg(long)]
    tensors: bool,
}

pub fn run(args: BrowseArgs) -> anyhow::Result<()> {
    let loaded = ExperimentConfig::load(&args.config)?;
    let opts = BrowseOptions {
        split: match args.split {
            Split::Train => BrowseSplit::Train,
            Split::Val => BrowseSplit::Val,
        },
        count: args.n,
        augment: !args.no_augment,
        tensors: args.tensors,
        out_dir: args.out.clone(),
    };
    let summary = browse(&loaded.config, &opts)?;
    println!("{}", browse_report_text(&summary, &args.out));
    Ok(())
}
