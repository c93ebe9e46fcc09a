//! `posekit test CONFIG --weights W`: the HRNet test of a model on the config's test split
//! (flip test, decoding, rescoring, OKS-NMS, COCO AP or MPII PCKh).
//!
//! `posekit test --model PRESET --gt GT.json --images DIR [--weights W]`: a bottom-up model
//! (the bundled OpenPose-MobileNetV2 by default weights, HigherHRNet, SPM, OpenPose-VGG19) on
//! every image of a COCO ground truth, scored by the core's COCO evaluator.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use posekit::estimator::{backend, Backend};
use posekit::pipelines::bottomup_test::{
    bottomup_report_text, bottomup_test, test_config_model, BottomUpPredictor,
};
use posekit::pipelines::config::ExperimentConfig;
use posekit::pipelines::model::LoadedModel;
use posekit::pipelines::test::{report_text, run_test, test_dataset, GroundTruth, TestOptions};
use posekit::PoseEstimator;

use super::bench::EngineArgs;
use posekit_core::codecs::heatmap::Refinement;
use posekit_nn::device::parse_device;

#[derive(Args)]
pub struct TestArgs {
    /// Experiment config (TOML) of a top-down model or of a bottom-up one (with `[bottomup]`);
    /// leave out for a bottom-up `--model` preset.
    config: Option<PathBuf>,
    /// Weights: a training checkpoint (last/best.safetensors), exported weights
    /// (final.safetensors) or an official/MMPose .pth of the same model. Optional only for
    /// the bundled openpose-mobilenetv2.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// A bottom-up preset to test without a config (with --gt and --images).
    #[arg(long, conflicts_with = "config")]
    model: Option<String>,
    /// COCO person_keypoints ground truth for a bottom-up test.
    #[arg(long, requires = "model")]
    gt: Option<PathBuf>,
    /// Folder of the ground truth's images for a bottom-up test.
    #[arg(long, requires = "model")]
    images: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
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
    #[command(flatten)]
    pub(crate) engine: super::bench::EngineArgs,
}

pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let Some(config_path) = args.config.clone() else {
        return run_bottomup(args);
    };
    let Some(weights) = args.weights.clone() else {
        anyhow::bail!("--weights is required to test {}", config_path.display());
    };
    let mut loaded = ExperimentConfig::load(&config_path)?;
    let cfg = &mut loaded.config;
    if cfg.is_bottom_up() {
        return run_bottomup_config(args, cfg, &config_path, &weights);
    }
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
    posekit::estimator::weights::load(&mut model, &weights)?;
    let (model, engine) = on_engine(model, &args.engine, device, cfg, &config_path, true)?;
    let dataset = Arc::new(test_dataset(cfg)?);
    let report_load = dataset.report().to_string();
    if report_load != "nothing left out" {
        println!("test split: {report_load}");
    }
    let gt = GroundTruth::load(cfg)?;
    let out_dir = args
        .out
        .unwrap_or_else(|| cfg.output_dir(&config_path, None).join("test"));
    println!(
        "testing {} ({} instances, flip {}, {:?} decoding) on {:?}, {}",
        weights.display(),
        dataset.len(),
        if cfg.test.flip { "on" } else { "off" },
        cfg.data.refinement,
        device,
        engine
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
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", report_text(&report, &cfg.dataset.val_annotations));
    Ok(())
}

/// `posekit test CONFIG --weights W` for a bottom-up config: the config's own network (e.g. a
/// tiny HigherHRNet), its input size and flip setting, every image of `val_annotations`.
fn run_bottomup_config(
    args: TestArgs,
    cfg: &mut ExperimentConfig,
    config_path: &std::path::Path,
    weights: &std::path::Path,
) -> anyhow::Result<()> {
    if args.dark || args.batch_size.is_some() {
        anyhow::bail!(
            "--dark and --batch-size are for top-down models; a bottom-up test runs one whole \
             picture at a time with the AE grouping"
        );
    }
    if args.no_flip {
        cfg.test.flip = false;
    } else if args.flip {
        cfg.test.flip = true;
    }
    let device = parse_device(&args.device)?;
    let layout = cfg.layout()?;
    let mut model = cfg.model.build(&layout, device)?;
    posekit::estimator::weights::load(&mut model, weights)?;
    let (model, engine) = on_engine(model, &args.engine, device, cfg, config_path, false)?;
    let out_dir = args
        .out
        .unwrap_or_else(|| cfg.output_dir(config_path, None).join("test"));
    println!(
        "testing {} ({} at input size {}, flip {}) on {:?}, {}",
        weights.display(),
        cfg.model.preset,
        cfg.bottomup.as_ref().map_or(0, |b| b.test_size()),
        if cfg.test.flip { "on" } else { "off" },
        device,
        engine
    );
    let (_, report) = test_config_model(model, cfg, device, &out_dir, !args.no_progress)?;
    print!("{}", bottomup_report_text(&report));
    Ok(())
}

/// The bottom-up test: every image of the ground truth through the model, COCO AP of the
/// people it finds.
fn run_bottomup(args: TestArgs) -> anyhow::Result<()> {
    let (Some(preset), Some(gt), Some(images)) =
        (args.model.clone(), args.gt.clone(), args.images.clone())
    else {
        anyhow::bail!(
            "give either a config (top-down: posekit test CONFIG --weights W) or \
             --model PRESET --gt GT.json --images DIR (bottom-up)"
        );
    };
    let device = parse_device(&args.device)?;
    let mut builder = PoseEstimator::builder(&preset).device(device);
    if let Some(w) = &args.weights {
        builder = builder.weights(w);
    }
    if args.no_flip {
        builder = builder.flip(false);
    }
    let estimator = args.engine.apply(builder, device)?.build()?;
    eprintln!(
        "testing {preset} on {}",
        engine_name(&args.engine, estimator.backend())
    );
    if estimator.is_top_down() {
        anyhow::bail!(
            "{preset} is a top-down model: test it with its config (posekit test CONFIG --weights W), \
             which supplies the person boxes"
        );
    }
    let predictor: &dyn BottomUpPredictor = &estimator;
    let out_dir = args
        .out
        .unwrap_or_else(|| PathBuf::from("runs").join(&preset).join("test"));
    let report = bottomup_test(predictor, &gt, &images, &out_dir, !args.no_progress)?;
    print!("{}", bottomup_report_text(&report));
    Ok(())
}

/// A config's trained network on the engine the flags name for `device` (libtorch: unchanged;
/// ONNX Runtime: exported in memory or the given file, checked against the config's preset),
/// with the engine's name for the start line. `fixed_size`: the network sees the config's one
/// crop size (top-down).
fn on_engine(
    model: LoadedModel,
    engine: &EngineArgs,
    device: tch::Device,
    cfg: &ExperimentConfig,
    config_path: &Path,
    fixed_size: bool,
) -> anyhow::Result<(LoadedModel, String)> {
    let (backend, ort) = engine.settings(device)?;
    let name = engine_name(engine, backend);
    if backend == Backend::Torch {
        return Ok((model, name));
    }
    let info = backend::config_export_info(cfg, Some(config_path))?;
    let [w, h] = cfg.data.input_size;
    let size = fixed_size.then_some((h as i64, w as i64));
    Ok((backend::use_onnx_runtime(model, info, &ort, size)?, name))
}

/// The engine that runs (`backend`, resolved) as the start line says it; `--backend auto`
/// says that it chose.
fn engine_name(engine: &EngineArgs, backend: Backend) -> String {
    let chosen = if engine.backend == super::bench::Backend::Auto && engine.onnx.is_none() {
        " (--backend auto)"
    } else {
        ""
    };
    match (&engine.onnx, backend) {
        (Some(path), _) => format!(
            "ONNX Runtime on {} (threads {})",
            path.display(),
            threads(engine.threads)
        ),
        (None, Backend::Torch | Backend::Auto) => format!("libtorch{chosen}"),
        (None, Backend::Ort) => format!(
            "ONNX Runtime, exported in memory (threads {}){chosen}",
            threads(engine.threads)
        ),
    }
}

fn threads(t: Option<usize>) -> String {
    t.map_or("default".to_string(), |t| t.to_string())
}
