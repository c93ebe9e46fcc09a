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
//!
//! Data parallel ([`train_in_group`]): every rank of a c10d group (torchrun, SLURM, `--nproc`)
//! runs this same loop on its own device, as PyTorch's DistributedDataParallel does: the
//! ranks join the group, rank 0's initial weights are broadcast, each rank trains on its shard
//! of the epoch (batches `r, r + W, ...` of the single-process order, see
//! [`Shard`]), and after backward the gradients are averaged
//! over the ranks with a bucketed all-reduce, so that every rank takes the same optimizer step.
//! BatchNorm stays per rank by default (the official HRNet and HigherHRNet trainings do not
//! synchronise it); rank 0's running statistics are the ones saved. With
//! `train.sync_batchnorm` it is SyncBatchNorm (`posekit_nn::sync_bn`, over the group's
//! differentiable all-reduce): every rank normalises with the whole step's batch statistics
//! and keeps the same running statistics, which is one process on the whole batch.
//! Only rank 0 writes checkpoints, the log, validation results and the progress bar; the
//! others wait for it at a barrier after each epoch, so a checkpoint on disk is always one the
//! whole group completed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{bail, ResultExt};
use posekit_dist::{
    broadcast_var_store, Backend, DistEnv, GradAverager, GroupOptions, ProcessGroup,
};
use posekit_nn::optim::Optimizer;
use posekit_nn::sync_bn::{with_batch_norm_sync, BatchNormSync};
use tch::{Device, Kind, Tensor};

use super::checkpoint::{self, CheckpointMeta};
use super::paf_task::PafTask;
use super::task::{BatchOf, BottomUpTask, TopDownTask, TrainingTask};
use crate::pipelines::config::{ExperimentConfig, LoadedConfig};
use crate::pipelines::data::{
    LoadMode, Loader, LoaderOptions, SampleSource, Shard, TopDownDataset,
};
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
fn remove_earlier_run(out: &Path, files: &[&str]) -> crate::Result<()> {
    for name in files {
        let path = out.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| crate::Error::io(&path, "cannot remove (--overwrite)", e))?;
    }
    Ok(())
}

/// The training split of a top-down config.
pub fn train_dataset(cfg: &ExperimentConfig) -> crate::Result<TopDownDataset> {
    super::task::topdown_train_dataset(cfg)
}

/// Trains the experiment of `loaded` into `opts.out_dir`, in this process alone.
pub fn train(loaded: &LoadedConfig, opts: &TrainOptions) -> crate::Result<TrainSummary> {
    train_with(loaded, opts, None)
}

/// How long the other ranks wait at the end of an epoch while rank 0 alone validates and writes
/// the checkpoint. A validation of COCO val2017 on one GPU takes minutes, on a CPU hours; a
/// rank 0 that dies meanwhile is still noticed at once (its heartbeat and the store stop).
pub const WRITER_WAIT: Duration = Duration::from_secs(12 * 3600);

/// Trains the experiment of `loaded` as rank `env.rank` of a data-parallel group of
/// `env.world_size` ranks (torchrun's variables, see [`DistEnv::from_env`]): Gloo on the CPU,
/// NCCL on CUDA (`opts.device` must be this rank's device). Every rank calls it with the same
/// config and options; only rank 0 writes into `opts.out_dir` and reports (the other ranks'
/// reporters are not called). A rank that fails leaves the group with its error, which the
/// others then name; a rank that dies is named by the others within a few heartbeats.
pub fn train_in_group(
    loaded: &LoadedConfig,
    opts: &TrainOptions,
    env: &DistEnv,
) -> crate::Result<TrainSummary> {
    let options = GroupOptions {
        backend: Backend::for_device(opts.device)?,
        ..GroupOptions::default()
    };
    let group = ProcessGroup::init(env, &options)
        .with_context(|| format!("rank {} cannot join the process group", env.rank))?;
    match train_with(loaded, opts, Some(&group)) {
        Ok(summary) => {
            // Nobody leaves (rank 0 may host the store) before everyone is done.
            group.barrier_within(WRITER_WAIT)?;
            group.shutdown();
            Ok(summary)
        }
        Err(err) => {
            group.leave(&err.report());
            Err(err)
        }
    }
}

/// A rank's place in the run: its group (none when alone) and whether it writes.
struct Rank<'a> {
    group: Option<&'a ProcessGroup>,
}

impl Rank<'_> {
    fn writer(&self) -> bool {
        self.group.is_none_or(|g| g.rank() == 0)
    }

    fn world(&self) -> usize {
        self.group.map_or(1, ProcessGroup::world_size)
    }

    fn shard(&self) -> crate::Result<Shard> {
        Ok(match self.group {
            Some(g) => Shard::new(g.rank(), g.world_size())?,
            None => Shard::WHOLE,
        })
    }
}

fn train_with(
    loaded: &LoadedConfig,
    opts: &TrainOptions,
    group: Option<&ProcessGroup>,
) -> crate::Result<TrainSummary> {
    let rank = Rank { group };
    // One writer: the other ranks report nothing and show no progress bar.
    let quiet;
    let opts = if rank.writer() {
        opts
    } else {
        quiet = TrainOptions {
            progress: false,
            report: Arc::new(|_: &str| {}),
            ..opts.clone()
        };
        &quiet
    };
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
        if ck.meta.world_size != rank.world() {
            bail!(
                "cannot resume from {}: the run was trained by {} rank(s) (effective batch {} = \
                 {} per rank x {}), and this one has {}. Another number of ranks would change \
                 the effective batch (and so the learning dynamics) and which samples each step \
                 trains on, so the run could not continue as it started; resume it with {} \
                 ranks (--nproc {} or torchrun --nproc-per-node ...), or start a new run",
                ck.path.display(),
                ck.meta.world_size,
                cfg.train.batch_size * ck.meta.world_size,
                cfg.train.batch_size,
                ck.meta.world_size,
                rank.world(),
                ck.meta.world_size,
                ck.meta.world_size
            );
        }
    }
    if let Some(g) = rank.group {
        // Every rank must start from the same point: they read the same folder, which must be
        // one they all see (a shared filesystem when the ranks are on several machines).
        let mine = resume_from.as_ref().map_or([-1, 0], |ck| {
            [ck.meta.epoch as i64, ck.meta.global_iter as i64]
        });
        let all = g.all_gather_i64(&mine)?;
        if let Some((other, theirs)) = all.iter().enumerate().find(|(_, t)| t[..] != all[0][..]) {
            let says = |t: &[i64]| {
                if t[0] < 0 {
                    "no checkpoint".to_string()
                } else {
                    format!("a checkpoint after epoch {}", t[0])
                }
            };
            bail!(
                "the ranks do not see the same run in {}: rank 0 finds {}, rank {other} finds \
                 {}; every rank must read the same output folder (on several machines, a \
                 shared filesystem)",
                out.display(),
                says(&all[0]),
                says(theirs)
            );
        }
    }

    let left_out = |n: usize| {
        if n > 0 {
            (opts.report)(&format!(
                "{n} image(s) without any annotation left out, as HigherHRNet does"
            ));
        }
    };
    // One task per family of the preset's registry row.
    match posekit_nn::models::Preset::find(&cfg.model.preset)?.family {
        posekit_nn::models::Family::PartAffinity(_) => {
            let task = PafTask::new(cfg)?;
            left_out(task.dataset().unannotated_images());
            run(loaded, opts, &rank, task, resume_from, &earlier)
        }
        posekit_nn::models::Family::StructuredPose => {
            let task = super::spm_task::SpmTask::new(cfg)?;
            left_out(task.unannotated_images());
            run(loaded, opts, &rank, task, resume_from, &earlier)
        }
        _ if cfg.is_bottom_up() => {
            let task = BottomUpTask::new(cfg)?;
            left_out(task.dataset().unannotated_images);
            run(loaded, opts, &rank, task, resume_from, &earlier)
        }
        _ => {
            let task = TopDownTask::new(cfg)?;
            run(loaded, opts, &rank, task, resume_from, &earlier)
        }
    }
}

/// `train.init_weights`: the preset's bundled weights or a weights file / checkpoint.
fn init_weights(model: &mut crate::pipelines::model::LoadedModel, init: &str) -> crate::Result<()> {
    use crate::estimator::weights;
    if init == crate::pipelines::config::INIT_BUNDLED {
        weights::load_bundled(model).context("train.init_weights")
    } else {
        weights::load(model, Path::new(init)).context("train.init_weights")
    }
}

/// The loop shared by every family: `task` says what a batch is, how its loss is computed and
/// how the model is validated.
fn run<T: TrainingTask>(
    loaded: &LoadedConfig,
    opts: &TrainOptions,
    rank: &Rank,
    task: T,
    resume_from: Option<checkpoint::Checkpoint>,
    earlier: &[&str],
) -> crate::Result<TrainSummary> {
    let cfg = &loaded.config;
    let out = &opts.out_dir;
    let layout = cfg.layout()?;
    let last_path = out.join(LAST);
    if rank.writer() {
        if opts.overwrite && !opts.resume {
            remove_earlier_run(out, earlier)?;
        }
        std::fs::create_dir_all(out).map_err(|e| crate::Error::io(out, "cannot create", e))?;
    }

    tch::manual_seed(cfg.train.seed as i64);
    let mut model = cfg.model.build(&layout, opts.device)?;
    if let (None, Some(init)) = (&resume_from, &cfg.train.init_weights) {
        init_weights(&mut model, init)?;
        (opts.report)(&format!("starting from the weights of {init}"));
    }
    let mut adam = Optimizer::new(&model.vs, &cfg.train.optimizer);
    if let [first, ..] = adam.unused_groups() {
        bail!(
            "train.optimizer.groups: {first} matches no trainable variable of {} ({} such groups)",
            model.preset.name,
            adam.unused_groups().len()
        );
    }
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
    // Every rank built the same model from the same seed and checkpoint; the broadcast makes
    // that certain (as DDP's constructor does) and checks that the ranks hold the same model.
    let averager = match rank.group {
        Some(g) => {
            broadcast_var_store(g, &model.vs, 0)?;
            Some(GradAverager::new(g, &model.vs)?)
        }
        None => None,
    };
    let parallel = match (rank.group, &averager) {
        (Some(group), Some(averager)) => Some(Parallel {
            group,
            averager,
            sync_batchnorm: cfg.train.sync_batchnorm && group.world_size() > 1,
        }),
        _ => None,
    };
    if cfg.train.sync_batchnorm && parallel.is_none() {
        (opts.report)(
            "train.sync_batchnorm: one process, so BatchNorm is the plain one (it only \
             synchronises the ranks of a data-parallel group)",
        );
    }

    let t = &cfg.train;
    let world = rank.world();
    let shard = rank.shard()?;
    let loader = Loader::new(
        Arc::clone(task.dataset()),
        LoaderOptions {
            batch_size: t.batch_size,
            num_workers: t.workers,
            prefetch_batches: 4,
            drop_last: false,
        },
    )?
    .with_skip_warning({
        let report = Arc::clone(&opts.report);
        Arc::new(move |index, err| report(&format!("warning: skipping sample {index}: {err}")))
    });
    let iters_per_epoch = shard.steps(loader.num_batches(LoadMode::Train {
        seed: t.seed,
        epoch: 0,
    }));
    let effective_batch = t.batch_size * world;
    (opts.report)(&format!(
        "training {} on {} {} ({} iterations of {} per epoch) for epochs {}..{} on {:?}; \
         output {}",
        model.preset.name,
        task.dataset().len(),
        task.sample_noun(),
        iters_per_epoch,
        effective_batch,
        state.epoch + 1,
        t.epochs,
        opts.device,
        out.display()
    ));
    if let Some(p) = &parallel {
        (opts.report)(&format!(
            "data parallel: world size {world} ({} ranks, {} backend), effective batch \
             {effective_batch} = {} per rank x {world}; gradients of {} tensors ({:.1} MB) \
             averaged in {} bucket(s) per step; BatchNorm {}",
            world,
            p.group.backend().name(),
            t.batch_size,
            p.averager.len(),
            p.averager.bytes() as f64 / 1e6,
            p.averager.buckets(),
            if p.sync_batchnorm {
                "synchronised over the ranks (train.sync_batchnorm)"
            } else {
                "per rank"
            }
        ));
    }
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
            EpochPlace {
                epoch,
                shard,
                parallel: parallel.as_ref(),
            },
            &mut state.global_iter,
        )?;
        if !rank.writer() {
            // Rank 0 validates and writes the checkpoint; wait until it has, so that a run
            // stopped later resumes from a checkpoint the whole group completed.
            state.epoch = epoch + 1;
            epochs_run += 1;
            if let Some(g) = rank.group {
                g.barrier_within(WRITER_WAIT)?;
            }
            continue;
        }
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
            world_size: world,
            effective_batch,
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
        append_log(out, &state, &stats, metric, &meta, &opts.report);
        if let Some(g) = rank.group {
            g.barrier_within(WRITER_WAIT)?;
        }
    }

    let final_path = out.join(FINAL);
    if !rank.writer() {
        return Ok(TrainSummary {
            epochs_run,
            best_metric: None,
            best_epoch: None,
            last_metric: None,
            final_weights: final_path,
        });
    }
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

/// The group and gradient averager of a data-parallel rank.
struct Parallel<'a> {
    group: &'a ProcessGroup,
    averager: &'a GradAverager,
    /// SyncBatchNorm (`train.sync_batchnorm` with more than one rank).
    sync_batchnorm: bool,
}

/// The group as posekit-nn's SyncBatchNorm sees it: a differentiable sum across the ranks.
struct GroupSync<'a>(&'a ProcessGroup);

impl BatchNormSync for GroupSync<'_> {
    fn rank(&self) -> usize {
        self.0.rank()
    }

    fn world_size(&self) -> usize {
        self.0.world_size()
    }

    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor, String> {
        self.0.all_reduce_sum_autograd(x).map_err(|e| e.to_string())
    }
}

/// Which epoch, and this rank's part of it.
struct EpochPlace<'a> {
    epoch: usize,
    shard: Shard,
    parallel: Option<&'a Parallel<'a>>,
}

#[allow(clippy::too_many_arguments)]
fn train_epoch<T: TrainingTask>(
    cfg: &ExperimentConfig,
    opts: &TrainOptions,
    task: &T,
    model: &crate::pipelines::model::LoadedModel,
    adam: &mut Optimizer,
    loader: &Loader<T::Data>,
    place: EpochPlace,
    global_iter: &mut u64,
) -> crate::Result<EpochStats> {
    let t = &cfg.train;
    let epoch = place.epoch;
    let start = Instant::now();
    let mode = LoadMode::Train {
        seed: t.seed,
        epoch: epoch as u64,
    };
    let steps = place.shard.steps(loader.num_batches(mode));
    let mut batches = loader.epoch_shard(mode, 0, place.shard);
    let bar = progress_bar(
        opts.progress,
        steps as u64,
        &format!("epoch {}/{}", epoch + 1, t.epochs),
    );
    let mut stats = EpochStats::default();
    let mut loss_sum = 0.0;
    let mut steps_taken = 0usize;
    let mut next = batches.next_step();
    // SyncBatchNorm: this rank's latest batch, which it runs (without counting it) in a step
    // where it has none, so that it joins the others' collectives.
    let mut stand_in: Option<BatchOf<T>> = None;
    for step in 0..steps {
        // This rank's batch of the step; none when all its images were unreadable, or when
        // the epoch's batches ran out before this rank's turn in the last step.
        let batch = match next.take() {
            Some((s, batch)) if s == step => {
                next = batches.next_step();
                Some(batch?)
            }
            other => {
                next = other;
                None
            }
        };
        let lr = t.schedule.lr_at(epoch, *global_iter as usize);
        let outcome = match place.parallel {
            None => match &batch {
                Some(b) => Some(StepOutcome {
                    loss: train_step(task, model, adam, b, lr, opts.device)?,
                    images: T::Data::batch_len(b),
                    overflowing: task.overflowing(b),
                }),
                None => None,
            },
            Some(p) => {
                let outcome = parallel_step(
                    task,
                    model,
                    adam,
                    StepBatch {
                        batch: batch.as_ref(),
                        stand_in: stand_in.as_ref(),
                    },
                    lr,
                    opts.device,
                    p,
                )?;
                if p.sync_batchnorm && batch.is_some() {
                    stand_in = batch;
                }
                outcome
            }
        };
        let Some(outcome) = outcome else {
            // No rank had a sample: the step is skipped, as a single process skips a batch
            // whose images were all unreadable.
            continue;
        };
        if !outcome.loss.is_finite() {
            bail!(
                "the loss is {} at epoch {}, iteration {}: training diverged (lower \
                 train.schedule.lr or check the data)",
                outcome.loss,
                epoch + 1,
                *global_iter
            );
        }
        *global_iter += 1;
        steps_taken += 1;
        loss_sum += outcome.loss;
        stats.images += outcome.images;
        stats.overflowing += outcome.overflowing;
        stats.last_lr = lr;
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "loss {:.6} lr {:.2e} {:.1} img/s",
            loss_sum / steps_taken as f64,
            lr,
            stats.images as f64 / secs
        ));
        bar.inc(1);
    }
    stats.skipped = batches.skipped();
    drop(batches);
    if let Some(p) = place.parallel {
        let all = p.group.all_gather_i64(&[stats.skipped as i64])?;
        stats.skipped = all.iter().map(|v| v[0] as usize).sum();
    }
    bar.finish_and_clear();
    if steps_taken == 0 {
        bail!(
            "epoch {}: no batch could be made (every image unreadable?)",
            epoch + 1
        );
    }
    stats.mean_loss = loss_sum / steps_taken as f64;
    stats.seconds = start.elapsed().as_secs_f64();
    Ok(stats)
}

/// What one optimizer step did, over all ranks.
struct StepOutcome {
    /// The loss (data parallel: the mean of the ranks' losses, as DDP users log it).
    loss: f64,
    images: usize,
    overflowing: usize,
}

/// One iteration: the task's loss, backward, the optimizer (Adam, RMSprop or SGD). Returns the
/// loss.
fn train_step<T: TrainingTask>(
    task: &T,
    model: &crate::pipelines::model::LoadedModel,
    adam: &mut Optimizer,
    batch: &BatchOf<T>,
    lr: f64,
    device: Device,
) -> crate::Result<f64> {
    let loss = task.loss(model, batch, device)?;
    adam.zero_grad();
    loss.backward();
    adam.step(lr);
    Ok(loss.to_kind(Kind::Double).double_value(&[]))
}

/// A rank's batch of a data-parallel step, and (SyncBatchNorm) the stand-in it runs when it
/// has none.
struct StepBatch<'a, B> {
    batch: Option<&'a B>,
    stand_in: Option<&'a B>,
}

/// One data-parallel iteration: this rank's loss and backward (nothing when it has no batch
/// this step), the ranks' losses and sample counts gathered, the gradients averaged over the
/// ranks that had a batch (DDP divides by the world size; a rank without a batch contributes
/// zeros, which are then taken out of the mean), and the same optimizer step on every rank.
/// `None` when no rank had a batch (no step is taken).
///
/// With SyncBatchNorm every BatchNorm of the forward is a collective, so the ranks first agree
/// on who has a batch: a rank without one runs its stand-in (its latest batch) uncounted and
/// with its loss scaled by zero, so that it joins the others' all-reduces in the forward and
/// the backward and contributes nothing. When a rank has neither (all its images unreadable
/// since the epoch began), the step normalises per rank instead, as without the option.
fn parallel_step<T: TrainingTask>(
    task: &T,
    model: &crate::pipelines::model::LoadedModel,
    adam: &mut Optimizer,
    step: StepBatch<BatchOf<T>>,
    lr: f64,
    device: Device,
    p: &Parallel,
) -> crate::Result<Option<StepOutcome>> {
    adam.zero_grad();
    let batch = step.batch;
    let synced = p.sync_batchnorm && {
        let mine = [
            i64::from(batch.is_some()),
            i64::from(batch.is_some() || step.stand_in.is_some()),
        ];
        let all = p.group.all_gather_i64(&mine)?;
        if all.iter().all(|v| v[0] == 0) {
            return Ok(None);
        }
        all.iter().all(|v| v[1] == 1)
    };
    let run = match (batch, synced) {
        (Some(b), _) => Some((b, true)),
        (None, true) => step.stand_in.map(|b| (b, false)),
        (None, false) => None,
    };
    let mine = match run {
        Some((b, counts)) => {
            let loss = if synced {
                let sync = GroupSync(p.group);
                let (loss, failed) =
                    with_batch_norm_sync(&sync, counts, || task.loss(model, b, device));
                if let Some(error) = failed {
                    bail!("SyncBatchNorm: {error}");
                }
                loss?
            } else {
                task.loss(model, b, device)?
            };
            let loss = if counts { loss } else { loss * 0.0 };
            if let Err(e) = loss.f_backward() {
                // Synchronised, the backward runs collectives: name the rank that failed them.
                if synced {
                    return Err(p.group.explain_failure("backward", e.to_string()).into());
                }
                return Err(e.into());
            }
            if counts {
                [
                    1.0,
                    loss.to_kind(Kind::Double).double_value(&[]),
                    T::Data::batch_len(b) as f64,
                    task.overflowing(b) as f64,
                ]
            } else {
                [0.0; 4]
            }
        }
        None => [0.0; 4],
    };
    let all = p.group.all_gather_f64(&mine)?;
    let contributors = all.iter().filter(|v| v[0] > 0.0).count();
    if contributors == 0 {
        return Ok(None);
    }
    p.averager.average(p.group)?;
    let world = all.len();
    if contributors < world {
        let scale = world as f64 / contributors as f64;
        tch::no_grad(|| {
            for var in model.vs.trainable_variables() {
                let mut grad = var.grad();
                if grad.defined() {
                    let _ = grad.g_mul_scalar_(scale);
                }
            }
        });
    }
    adam.step(lr);
    let loss = all.iter().map(|v| v[1]).sum::<f64>() / contributors as f64;
    Ok(Some(StepOutcome {
        loss,
        images: all.iter().map(|v| v[2] as usize).sum(),
        overflowing: all.iter().map(|v| v[3] as usize).sum(),
    }))
}

fn append_log(
    out: &Path,
    state: &RunState,
    stats: &EpochStats,
    metric: Option<f64>,
    meta: &CheckpointMeta,
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
        "world_size": meta.world_size,
        "effective_batch": meta.effective_batch,
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
