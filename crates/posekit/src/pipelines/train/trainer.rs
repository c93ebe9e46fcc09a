//! The training loop.
//!
//! Reproducibility is a design goal, not a side effect: the weights are initialised after
//! `tch::manual_seed(seed)`, every batch is a pure function of `(seed, epoch)` (see the data
//! loader), and the learning rate a pure function of `(epoch, global iteration)`. A run resumed
//! from `last.safetensors` therefore replays the same batches with the same rates from the same
//! weights and optimizer moments; on the CPU it ends with the same weights as a run that was
//! never interrupted (the `kill_resume` test checks this bit for bit).
//!
//! Files in the output folder:
//! * `last.safetensors`: full checkpoint after every epoch (what `--resume` reads);
//! * `best.safetensors`: full checkpoint of the epoch with the best validation metric;
//! * `final.safetensors`: the final model weights only, for `posekit test` / `infer`;
//! * `log.jsonl`: one JSON line per epoch (loss, lr, images/s, validation metric);
//! * `val/results.json`: the last validation's results.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use posekit_nn::optim::Optimizer;
use tch::{Device, Kind};

use super::checkpoint::{self, CheckpointMeta};
use super::task::{BatchOf, BottomUpTask, TopDownTask, TrainingTask};
use crate::pipelines::config::{ExperimentConfig, LoadedConfig};
use crate::pipelines::data::{LoadMode, Loader, LoaderOptions, SampleSource, TopDownDataset};
use crate::progress::progress_bar;

/// How to run a training.
#[derive(Clone)]
pub struct TrainOptions {
    /// Continue from `OUT/last.safetensors` (starting from scratch when there is none yet).
    pub resume: bool,
    /// Start from scratch in a folder that holds an earlier run, replacing its files (without
    /// it, such a folder is refused).
    pub overwrite: bool,
    pub device: Device,
    pub out_dir: PathBuf,
    /// Show progress bars (they are hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Where the run's one-line reports go (start, resume, each epoch, best checkpoint, end):
    /// the command line prints them; a library caller logs or drops them.
    pub report: Reporter,
}

/// Receives the trainer's one-line reports; the library itself never prints.
pub type Reporter = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// What a finished training left behind.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Epochs run by this process (0 when resuming a finished run).
    pub epochs_run: usize,
    pub best_metric: Option<f64>,
    pub best_epoch: Option<usize>,
    /// The last validation's metric.
    pub last_metric: Option<f64>,
    pub final_weights: PathBuf,
}

pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
pub const FINAL: &str = "final.safetensors";
pub const LOG: &str = "log.jsonl";
/// The validation results folder.
pub const VAL: &str = "val";

/// What a run writes into its output folder: any of them present means a run was here.
const RUN_FILES: [&str; 5] = [LAST, BEST, FINAL, LOG, VAL];

/// Files that exist only once an epoch has completed (and `last` was written). A run killed
/// during its first epoch leaves at most `val/`, and `--resume` then starts it from scratch.
const COMPLETED_EPOCH_FILES: [&str; 3] = [BEST, FINAL, LOG];

/// The run files present in `out` (none when the folder does not exist).
fn earlier_run_files(out: &Path) -> Vec<&'static str> {
    RUN_FILES
        .into_iter()
        .filter(|name| out.join(name).symlink_metadata().is_ok())
        .collect()
}

/// `--overwrite`: the earlier run's files go before the first epoch, so that the folder never
/// mixes two runs (a log with epochs 1, 2, 1, 2, 3; a `best` of the old run beside a new
/// `last`). Only the files a run writes are removed; anything else in the folder is the
/// user's and stays.
fn remove_earlier_run(out: &Path, files: &[&str]) -> anyhow::Result<()> {
    for name in files {
        let path = out.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("--overwrite: cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// The training split of a top-down config.
pub fn train_dataset(cfg: &ExperimentConfig) -> anyhow::Result<TopDownDataset> {
    super::task::topdown_train_dataset(cfg)
}

/// Trains the experiment of `loaded` into `opts.out_dir`.
pub fn train(loaded: &LoadedConfig, opts: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let cfg = &loaded.config;
    let out = &opts.out_dir;
    cfg.layout()?;
    let last_path = out.join(LAST);

    // Everything that can fail on user input is checked before the first iteration.
    let earlier = earlier_run_files(out);
    let resume_from = if opts.resume {
        if last_path.exists() {
            Some(checkpoint::load(&last_path).with_context(|| {
                format!(
                    "cannot resume: {} is not a usable checkpoint; restore it from a copy, or \
                     pass --overwrite (instead of --resume) to start again from scratch",
                    last_path.display()
                )
            })?)
        } else if earlier.iter().any(|f| COMPLETED_EPOCH_FILES.contains(f)) {
            // A finished run whose `last` was deleted to save space, or a folder of another
            // run: starting from scratch here would replace `best`/`final` and mix two runs in
            // `log.jsonl`.
            bail!(
                "cannot resume: {} has no {LAST} but holds an earlier run's {}; nothing was \
                 changed. Pass --overwrite (without --resume) to start again from scratch and \
                 replace them, or choose another output folder with --out",
                out.display(),
                earlier.join(", ")
            );
        } else {
            (opts.report)(&format!(
                "no checkpoint at {} yet: starting from scratch",
                last_path.display()
            ));
            None
        }
    } else {
        if !earlier.is_empty() && !opts.overwrite {
            bail!(
                "{} holds an earlier run ({}); nothing was changed. Pass --resume to continue \
                 it, --overwrite to replace it, or choose another output folder with --out",
                out.display(),
                earlier.join(", ")
            );
        }
        None
    };
    if let Some(ck) = &resume_from {
        let base = Path::new("/");
        let saved = ExperimentConfig::from_toml_str(&ck.meta.config_toml, &ck.path, base)
            .with_context(|| format!("{}: the stored config cannot be read", ck.path.display()))?;
        let diff = cfg.training_differences(&saved)?;
        if !diff.is_empty() {
            bail!(
                "cannot resume from {}: the config differs from the one the run started with in: \
                 {} (only epochs, workers, val_interval, paths and [test] may change)",
                ck.path.display(),
                diff.join(", ")
            );
        }
    }

    if cfg.is_bottom_up() {
        let task = BottomUpTask::new(cfg)?;
        let left_out = task.dataset().unannotated_images;
        if left_out > 0 {
            (opts.report)(&format!(
                "{left_out} image(s) without any annotation left out, as HigherHRNet does"
            ));
        }
        run(loaded, opts, task, resume_from, &earlier)
    } else {
        let task = TopDownTask::new(cfg)?;
        run(loaded, opts, task, resume_from, &earlier)
    }
}

/// The loop shared by every family: `task` says what a batch is, how its loss is computed and
/// how the model is validated.
fn run<T: TrainingTask>(
    loaded: &LoadedConfig,
    opts: &TrainOptions,
    task: T,
    resume_from: Option<checkpoint::Checkpoint>,
    earlier: &[&str],
) -> anyhow::Result<TrainSummary> {
    let cfg = &loaded.config;
    let out = &opts.out_dir;
    let layout = cfg.layout()?;
    let last_path = out.join(LAST);
    if opts.overwrite && !opts.resume {
        remove_earlier_run(out, earlier)?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;

    tch::manual_seed(cfg.train.seed as i64);
    let mut model = cfg.model.build(&layout, opts.device)?;
    let mut adam = Optimizer::new(&model.vs, &cfg.train.optimizer);
    let mut state = RunState::default();
    if let Some(ck) = &resume_from {
        ck.restore_model(&model.vs)?;
        ck.restore_optimizer(&mut adam)?;
        state = RunState {
            epoch: ck.meta.epoch,
            global_iter: ck.meta.global_iter,
            best_metric: ck.meta.best_metric,
            best_epoch: ck.meta.best_epoch,
        };
        (opts.report)(&format!(
            "resuming from {} after epoch {} (iteration {}{})",
            ck.path.display(),
            state.epoch,
            state.global_iter,
            state
                .best_metric
                .map_or(String::new(), |b| format!(", best {b:.4}"))
        ));
    }
    drop(resume_from);

    let t = &cfg.train;
    let loader = Loader::new(
        Arc::clone(task.dataset()),
        LoaderOptions {
            batch_size: t.batch_size,
            num_workers: t.workers,
            prefetch_batches: 4,
            drop_last: false,
        },
    )?;
    let iters_per_epoch = loader.num_batches(LoadMode::Train {
        seed: t.seed,
        epoch: 0,
    });
    (opts.report)(&format!(
        "training {} on {} {} ({} iterations of {} per epoch) for epochs {}..{} on {:?}; \
         output {}",
        model.preset.name,
        task.dataset().len(),
        task.sample_noun(),
        iters_per_epoch,
        t.batch_size,
        state.epoch + 1,
        t.epochs,
        opts.device,
        out.display()
    ));
    let config_toml = cfg.to_toml()?;

    let mut epochs_run = 0;
    let mut last_metric = None;
    while state.epoch < t.epochs {
        let epoch = state.epoch;
        let stats = train_epoch(
            cfg,
            opts,
            &task,
            &model,
            &mut adam,
            &loader,
            epoch,
            &mut state.global_iter,
        )?;
        epochs_run += 1;
        if stats.skipped > 0 {
            (opts.report)(&format!(
                "epoch {}: {} sample(s) skipped because their image could not be read",
                epoch + 1,
                stats.skipped
            ));
        }
        if stats.overflowing > 0 {
            (opts.report)(&format!(
                "epoch {}: {} sample(s) had more people than max_people; the first ones were \
                 kept for the grouping loss",
                epoch + 1,
                stats.overflowing
            ));
        }
        (opts.report)(&format!(
            "epoch {}/{}: loss {:.6}, lr {:.3e}, {:.1} images/s, {:.1} s",
            epoch + 1,
            t.epochs,
            stats.mean_loss,
            stats.last_lr,
            stats.images as f64 / stats.seconds.max(1e-9),
            stats.seconds
        ));

        let validate =
            epoch + 1 == t.epochs || (t.val_interval > 0 && (epoch + 1) % t.val_interval == 0);
        let mut metric = None;
        if validate {
            let (back, m) = task.validate(
                model,
                opts.device,
                &out.join(VAL),
                opts.progress,
                &opts.report,
            )?;
            model = back;
            metric = m;
            last_metric = metric;
        }
        state.epoch = epoch + 1;
        let improved = match (metric, state.best_metric) {
            (Some(m), Some(b)) => m > b,
            (Some(_), None) => true,
            _ => false,
        };
        if improved {
            state.best_metric = metric;
            state.best_epoch = Some(state.epoch);
        }
        let meta = CheckpointMeta {
            epoch: state.epoch,
            global_iter: state.global_iter,
            adam_step: adam.step_count(),
            best_metric: state.best_metric,
            best_epoch: state.best_epoch,
            seed: t.seed,
            config_toml: config_toml.clone(),
        };
        // Best first: if the process dies between the two writes, `last` still points at the
        // previous epoch, which is re-run and re-validated, so `best` stays consistent.
        if improved {
            checkpoint::save(&out.join(BEST), &model.vs, Some(&adam), &meta)?;
            (opts.report)(&format!(
                "new best {:.4} after epoch {}: {}",
                metric.unwrap_or(0.0),
                state.epoch,
                out.join(BEST).display()
            ));
        }
        checkpoint::save(&last_path, &model.vs, Some(&adam), &meta)?;
        append_log(out, &state, &stats, metric, &opts.report);
    }

    let final_path = out.join(FINAL);
    posekit_nn::weights::save_safetensors(&model.vs, &final_path)?;
    (opts.report)(&format!(
        "finished {} epochs; final weights {}{}",
        t.epochs,
        final_path.display(),
        match (state.best_metric, state.best_epoch) {
            (Some(b), Some(e)) => format!(
                "; best {b:.4} after epoch {e} ({})",
                out.join(BEST).display()
            ),
            _ => String::new(),
        }
    ));
    Ok(TrainSummary {
        epochs_run,
        best_metric: state.best_metric,
        best_epoch: state.best_epoch,
        last_metric,
        final_weights: final_path,
    })
}

#[derive(Debug, Clone, Default)]
struct RunState {
    /// Epochs completed.
    epoch: usize,
    global_iter: u64,
    best_metric: Option<f64>,
    best_epoch: Option<usize>,
}

#[derive(Debug, Clone, Default)]
struct EpochStats {
    mean_loss: f64,
    last_lr: f64,
    images: usize,
    skipped: usize,
    /// Samples with more people than the targets hold (bottom-up `max_people`).
    overflowing: usize,
    seconds: f64,
}

#[allow(clippy::too_many_arguments)]
fn train_epoch<T: TrainingTask>(
    cfg: &ExperimentConfig,
    opts: &TrainOptions,
    task: &T,
    model: &crate::pipelines::model::LoadedModel,
    adam: &mut Optimizer,
    loader: &Loader<T::Data>,
    epoch: usize,
    global_iter: &mut u64,
) -> anyhow::Result<EpochStats> {
    let t = &cfg.train;
    let start = Instant::now();
    let mut batches = loader.epoch(LoadMode::Train {
        seed: t.seed,
        epoch: epoch as u64,
    });
    let bar = progress_bar(
        opts.progress,
        batches.num_batches() as u64,
        &format!("epoch {}/{}", epoch + 1, t.epochs),
    );
    let mut stats = EpochStats::default();
    let mut loss_sum = 0.0;
    let mut steps = 0usize;
    for batch in &mut batches {
        let batch = batch?;
        let lr = t.schedule.lr_at(epoch, *global_iter as usize);
        let loss = train_step(task, model, adam, &batch, lr, opts.device)?;
        if !loss.is_finite() {
            bail!(
                "the loss is {loss} at epoch {}, iteration {}: training diverged (lower \
                 train.schedule.lr or check the data)",
                epoch + 1,
                *global_iter
            );
        }
        *global_iter += 1;
        steps += 1;
        loss_sum += loss;
        stats.images += T::Data::batch_len(&batch);
        stats.overflowing += task.overflowing(&batch);
        stats.last_lr = lr;
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "loss {:.6} lr {:.2e} {:.1} img/s",
            loss_sum / steps as f64,
            lr,
            stats.images as f64 / secs
        ));
        bar.inc(1);
    }
    stats.skipped = batches.skipped();
    drop(batches);
    bar.finish_and_clear();
    if steps == 0 {
        bail!(
            "epoch {}: no batch could be made (every image unreadable?)",
            epoch + 1
        );
    }
    stats.mean_loss = loss_sum / steps as f64;
    stats.seconds = start.elapsed().as_secs_f64();
    Ok(stats)
}

/// One iteration: the task's loss, backward, the optimizer (Adam or RMSprop). Returns the loss.
fn train_step<T: TrainingTask>(
    task: &T,
    model: &crate::pipelines::model::LoadedModel,
    adam: &mut Optimizer,
    batch: &BatchOf<T>,
    lr: f64,
    device: Device,
) -> anyhow::Result<f64> {
    let loss = task.loss(model, batch, device)?;
    adam.zero_grad();
    loss.backward();
    adam.step(lr);
    Ok(loss.to_kind(Kind::Double).double_value(&[]))
}

fn append_log(
    out: &Path,
    state: &RunState,
    stats: &EpochStats,
    metric: Option<f64>,
    report: &Reporter,
) {
    let line = serde_json::json!({
        "epoch": state.epoch,
        "iteration": state.global_iter,
        "loss": stats.mean_loss,
        "lr": stats.last_lr,
        "images_per_s": stats.images as f64 / stats.seconds.max(1e-9),
        "skipped": stats.skipped,
        "val_metric": metric,
    });
    let path = out.join(LOG);
    let result = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = result {
        report(&format!(
            "warning: cannot append to {}: {e}",
            path.display()
        ));
    }
}
