//! `posekit test CONFIG --weights W`: the HRNet test of a model on the config's test split
//! (flip test, decoding, rescoring, OKS-NMS, COCO AP or MPII PCKh).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use posekit::pipelines::config::ExperimentConfig;
use posekit::pipelines::test::{print_report, run_test, test_dataset, GroundTruth, TestOptions};
use posekit::pipelines::train::checkpoint;
use posekit_core::codecs::heatmap::Refinement;
use posekit_nn::device::parse_device;

#[derive(Args)]
pub struct TestArgs {
    /// Experiment config (TOML).
    config: PathBuf,
    /// Weights: a training checkpoint (last/best.safetensors), exported weights
    /// (final.safetensors) or an official/MMPose .pth of the same model.
    #[arg(long)]
    weights: PathBuf,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Flip test on (the default of the official configs).
    #[arg(long, overrides_with = "no_flip")]
    flip: bool,
    /// Flip test off.
    #[arg(long)]
    no_flip: bool,
    /// DARK decoding instead of the config's refinement (HRNet's quarter-pixel shift).
    #[arg(long)]
    dark: bool,
    /// Where results.json (COCO) or pred.json (MPII) goes (default: <output dir>/test).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Crops per forward pass (default: the config's test.batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let mut loaded = ExperimentConfig::load(&args.config)?;
    let cfg = &mut loaded.config;
    if args.dark {
        cfg.data.refinement = Refinement::Dark;
    }
    if args.no_flip {
        cfg.test.flip = false;
    } else if args.flip {
        cfg.test.flip = true;
    }
    if let Some(b) = args.batch_size {
        anyhow::ensure!(b > 0, "--batch-size must be at least 1");
        cfg.test.batch_size = b;
    }
    let device = parse_device(&args.device)?;
    let layout = cfg.layout()?;
    let mut model = cfg.model.build(&layout, device)?;
    if checkpoint::is_checkpoint(&args.weights) {
        let ck = checkpoint::load(&args.weights)?;
        ck.restore_model(&model.vs)?;
    } else {
        posekit_nn::weights::load_weights(&mut model.vs, &args.weights).with_context(|| {
            format!(
                "loading {} into {}",
                args.weights.display(),
                cfg.model.preset
            )
        })?;
    }
    let dataset = Arc::new(test_dataset(cfg)?);
    let report_load = dataset.report().to_string();
    if report_load != "nothing left out" {
        println!("test split: {report_load}");
    }
    let gt = GroundTruth::load(cfg)?;
    let out_dir = args
        .out
        .unwrap_or_else(|| cfg.output_dir(&args.config, None).join("test"));
    println!(
        "testing {} ({} instances, flip {}, {:?} decoding) on {:?}",
        args.weights.display(),
        dataset.len(),
        if cfg.test.flip { "on" } else { "off" },
        cfg.data.refinement,
        device
    );
    let report = run_test(
        model.net.as_ref(),
        device,
        cfg,
        &dataset,
        &gt,
        &TestOptions {
            test: cfg.test.clone(),
            out_dir: Some(out_dir),
            progress: !args.no_progress,
        },
    )?;
    print_report(&report, &cfg.dataset.val_annotations);
    Ok(())
}
