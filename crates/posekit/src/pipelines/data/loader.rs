//! The batch loader: worker threads decode, crop and encode samples ahead of the trainer, and
//! batches come out in the epoch's order whatever the number of workers or their timing.
//!
//! Why this design:
//! * Work is handed out per sample (not per batch) so that a batch is ready as soon as all
//!   workers together have made it, which keeps the first batch of an epoch and the tail short.
//! * Workers may run at most a few batches ahead of the consumer (`prefetch_batches`), so memory
//!   stays bounded even when the device is slower than decoding.
//! * Each sample's augmentation comes from its own `(seed, epoch, index)` stream and the order
//!   from the `(seed, epoch)` stream, so the batches are a pure function of `(seed, epoch)`.
//! * A missing or corrupt image is skipped: its batch is one sample shorter, a warning naming
//!   the file is printed the first time it is met, and [`EpochBatches::skipped`] counts it for
//!   the end-of-epoch report. Any other error ends the epoch, since it means the annotations or
//!   the configuration are wrong.
//! * Data-parallel training shards an epoch by batches ([`Shard`]): rank `r` of `W` takes the
//!   batches `r, r + W, r + 2W, ...` of the single-process order, as PyTorch's
//!   `DistributedSampler` gives every rank a disjoint slice of one epoch-seeded permutation.
//!   Step `s` of the group therefore trains on the single-process batches `sW .. sW + W - 1`:
//!   the union of the ranks' batches is exactly the single-process epoch, whatever `W`.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::dataset::{LoadMode, TopDownDataset};
use super::error::DataError;
use super::rng::permutation;
use super::sample::{SampleMeta, TopDownSample};

/// How batches are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderOptions {
    /// Samples per batch.
    pub batch_size: usize,
    /// Worker threads; 0 loads in the calling thread (handy in a debugger).
    pub num_workers: usize,
    /// How many batches the workers may prepare beyond the one being assembled.
    pub prefetch_batches: usize,
    /// In training, drop the last batch when it is smaller than `batch_size` (evaluation never
    /// drops: every person must be scored).
    pub drop_last: bool,
}

impl LoaderOptions {
    /// `batch_size` with one worker per available core, 4 batches of prefetch and no drop.
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            num_workers: default_num_workers(),
            prefetch_batches: 4,
            drop_last: false,
        }
    }
}

/// One worker per core the process may use (at least one).
pub fn default_num_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Which part of each epoch this process loads: rank `rank` of a data-parallel group of
/// `world` ranks takes the batches `rank, rank + world, ...` of the single-process order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Shard {
    /// The whole epoch (one process).
    pub const WHOLE: Shard = Shard { rank: 0, world: 1 };

    pub fn new(rank: usize, world: usize) -> Result<Shard, DataError> {
        if world == 0 || rank >= world {
            return Err(DataError::config(
                "shard",
                format!("rank {rank} is outside a group of {world} ranks"),
            ));
        }
        Ok(Shard { rank, world })
    }

    /// Steps of an epoch of `num_batches` single-process batches: every rank takes the same
    /// number of steps (a rank whose batch of the last step does not exist takes that step
    /// without a batch, so that the collectives stay in step).
    pub fn steps(&self, num_batches: usize) -> usize {
        num_batches.div_ceil(self.world)
    }

    /// This shard's batches among `num_batches`, as single-process batch numbers.
    fn batches(&self, num_batches: usize) -> impl Iterator<Item = usize> + '_ {
        (self.rank..num_batches).step_by(self.world)
    }
}

/// A batch of samples, row-major and ready to become tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct TopDownBatch {
    /// Position of the batch in its epoch.
    pub index: usize,
    /// Samples in the batch (`batch_size` minus those skipped).
    pub batch_size: usize,
    /// `[N, 3, H, W]` normalised crops.
    pub inputs: Vec<f32>,
    /// `[N, K, h, w]` target heatmaps.
    pub targets: Vec<f32>,
    /// `[N, K]` target weights.
    pub target_weights: Vec<f32>,
    pub metas: Vec<SampleMeta>,
    /// Samples of this batch skipped for an unreadable image.
    pub skipped: usize,
    /// `[w, h]` of the inputs.
    pub input_size: [usize; 2],
    /// `[w, h]` of the targets.
    pub heatmap_size: [usize; 2],
    pub num_joints: usize,
}

impl TopDownBatch {
    /// `[N, 3, H, W]`.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch_size, 3, self.input_size[1], self.input_size[0]]
    }

    /// `[N, K, h, w]`.
    pub fn target_shape(&self) -> [usize; 4] {
        [
            self.batch_size,
            self.num_joints,
            self.heatmap_size[1],
            self.heatmap_size[0],
        ]
    }
}

/// Receives the warning about a skipped sample: its dataset index and why.
pub type SkipWarning = Arc<dyn Fn(usize, &DataError) + Send + Sync>;

/// What the loader needs from a dataset: samples made by index (a pure function of `(index,
/// mode)`, so any thread may make any sample) and how samples become one batch. The top-down
/// and the bottom-up datasets both implement it, so they share one loader.
pub trait SampleSource: Send + Sync + 'static {
    type Sample: Send + 'static;
    type Batch;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn load(&self, index: usize, mode: LoadMode) -> Result<Self::Sample, DataError>;
    /// Batch `index` of its epoch from its samples (in order), `skipped` of them having been
    /// left out for an unreadable image.
    fn collate(&self, index: usize, samples: Vec<Self::Sample>, skipped: usize) -> Self::Batch;
    /// Samples in a batch.
    fn batch_len(batch: &Self::Batch) -> usize;
    /// Samples of a batch skipped for an unreadable image.
    fn batch_skipped(batch: &Self::Batch) -> usize;
}

impl SampleSource for TopDownDataset {
    type Sample = TopDownSample;
    type Batch = TopDownBatch;

    fn len(&self) -> usize {
        TopDownDataset::len(self)
    }

    fn load(&self, index: usize, mode: LoadMode) -> Result<TopDownSample, DataError> {
        TopDownDataset::load(self, index, mode)
    }

    fn collate(&self, index: usize, samples: Vec<TopDownSample>, skipped: usize) -> TopDownBatch {
        let cfg = self.config();
        let mut batch = TopDownBatch {
            index,
            batch_size: samples.len(),
            inputs: Vec::new(),
            targets: Vec::new(),
            target_weights: Vec::new(),
            metas: Vec::with_capacity(samples.len()),
            skipped,
            input_size: cfg.input_size,
            heatmap_size: cfg.heatmap_size,
            num_joints: self.layout().num_keypoints(),
        };
        if let Some(first) = samples.first() {
            batch
                .inputs
                .reserve_exact(first.input.len() * samples.len());
            batch
                .targets
                .reserve_exact(first.target.len() * samples.len());
        }
        for sample in samples {
            batch.inputs.extend_from_slice(&sample.input);
            batch.targets.extend_from_slice(&sample.target);
            batch
                .target_weights
                .extend_from_slice(&sample.target_weight);
            batch.metas.push(sample.meta);
        }
        batch
    }

    fn batch_len(batch: &TopDownBatch) -> usize {
        batch.batch_size
    }

    fn batch_skipped(batch: &TopDownBatch) -> usize {
        batch.skipped
    }
}

/// Makes the batches of a dataset, epoch after epoch.
pub struct Loader<D: SampleSource = TopDownDataset> {
    dataset: Arc<D>,
    options: LoaderOptions,
    /// Samples already warned about: a bad file is reported once per run, not once per epoch.
    warned: Arc<Mutex<HashSet<usize>>>,
    warn: SkipWarning,
}

impl<D: SampleSource> Loader<D> {
    pub fn new(dataset: Arc<D>, options: LoaderOptions) -> Result<Self, DataError> {
        if options.batch_size == 0 {
            return Err(DataError::config("batch_size", "must be at least 1"));
        }
        Ok(Self {
            dataset,
            options,
            warned: Arc::default(),
            // The library prints nothing: skips are counted (`EpochBatches::skipped`) and a
            // caller that wants each one says where with `with_skip_warning`.
            warn: Arc::new(|_, _| {}),
        })
    }

    /// Sends a warning for each skipped sample (its index and why, once per run) to `warn`,
    /// e.g. the caller's reporter or a progress bar's `println` so that it does not tear the
    /// bar's line. Without it skips are only counted.
    pub fn with_skip_warning(mut self, warn: SkipWarning) -> Self {
        self.warn = warn;
        self
    }

    pub fn dataset(&self) -> &Arc<D> {
        &self.dataset
    }

    pub fn options(&self) -> &LoaderOptions {
        &self.options
    }

    /// Number of batches an epoch in `mode` has (before any skipping).
    pub fn num_batches(&self, mode: LoadMode) -> usize {
        let (n, bs) = (SampleSource::len(&*self.dataset), self.options.batch_size);
        match mode {
            LoadMode::Train { .. } if self.options.drop_last => n / bs,
            _ => n.div_ceil(bs),
        }
    }

    /// The batches of one epoch: shuffled by `(seed, epoch)` and augmented in
    /// [`LoadMode::Train`], in dataset order and unaugmented in [`LoadMode::Eval`].
    pub fn epoch(&self, mode: LoadMode) -> EpochBatches<D> {
        self.epoch_from(mode, 0)
    }

    /// Like [`epoch`](Self::epoch) but starting at batch `first_batch`, for resuming inside an
    /// epoch: the batches are the same as those of a full epoch from that point on.
    pub fn epoch_from(&self, mode: LoadMode, first_batch: usize) -> EpochBatches<D> {
        self.epoch_shard(mode, first_batch, Shard::WHOLE)
    }

    /// This rank's part of an epoch (see [`Shard`]), from its `first_step`: batch `k` of the
    /// returned iterator is single-process batch `k * world + rank`, and
    /// [`EpochBatches::next_step`] says which step each batch belongs to. Samples are made
    /// exactly as in the whole epoch (the same permutation and augmentation streams).
    pub fn epoch_shard(&self, mode: LoadMode, first_step: usize, shard: Shard) -> EpochBatches<D> {
        let n = SampleSource::len(&*self.dataset);
        let order = match mode {
            LoadMode::Train { seed, epoch } => permutation(n, seed, epoch),
            LoadMode::Eval => (0..n).collect(),
        };
        let bs = self.options.batch_size;
        let (order, num_batches) = if shard == Shard::WHOLE {
            (order, self.num_batches(mode))
        } else {
            // The shard's own sample order: its batches' positions, one after the other. Only
            // the single-process epoch's last batch can be short, and it is the last one of
            // the shard that takes it, so chunks of `bs` of this order are the shard's batches.
            let whole = self.num_batches(mode);
            let mut mine = Vec::with_capacity(shard.steps(whole) * bs);
            for b in shard.batches(whole) {
                mine.extend_from_slice(&order[(b * bs).min(n)..((b + 1) * bs).min(n)]);
            }
            (mine, shard.batches(whole).count())
        };
        let first_batch = first_step;
        let n = order.len();
        let positions = (first_batch * bs).min(n)..(num_batches * bs).min(n);
        let order = Arc::new(order);
        let source = if self.options.num_workers == 0 {
            Source::Inline
        } else {
            Source::Threads(Workers::spawn(
                Arc::clone(&self.dataset),
                Arc::clone(&order),
                mode,
                positions.clone(),
                self.options.num_workers,
                (self.options.prefetch_batches + 1) * bs,
            ))
        };
        EpochBatches {
            dataset: Arc::clone(&self.dataset),
            order,
            mode,
            batch_size: bs,
            next_batch: first_batch,
            num_batches,
            positions,
            source,
            pending: HashMap::new(),
            warned: Arc::clone(&self.warned),
            warn: Arc::clone(&self.warn),
            skipped: Vec::new(),
            failed: false,
            shard,
        }
    }
}

/// The batches of one epoch, in order. Dropping it stops the workers.
pub struct EpochBatches<D: SampleSource = TopDownDataset> {
    dataset: Arc<D>,
    order: Arc<Vec<usize>>,
    mode: LoadMode,
    batch_size: usize,
    next_batch: usize,
    num_batches: usize,
    positions: Range<usize>,
    source: Source<D>,
    pending: HashMap<usize, Result<D::Sample, DataError>>,
    warned: Arc<Mutex<HashSet<usize>>>,
    warn: SkipWarning,
    skipped: Vec<usize>,
    failed: bool,
    shard: Shard,
}

impl<D: SampleSource> EpochBatches<D> {
    /// The next batch with its step: the position of the batch among this shard's batches
    /// (for the whole epoch, the batch number). Steps whose samples were all skipped for an
    /// unreadable image are left out, so a data-parallel trainer compares the step with its
    /// own count to take such a step without a batch.
    pub fn next_step(&mut self) -> Option<(usize, Result<D::Batch, DataError>)> {
        while !self.failed && self.next_batch < self.num_batches {
            let b = self.next_batch;
            self.next_batch += 1;
            let range = (b * self.batch_size).max(self.positions.start)
                ..((b + 1) * self.batch_size).min(self.positions.end);
            let mut samples = Vec::with_capacity(range.len());
            let mut skipped = 0;
            for pos in range.clone() {
                match self.take(pos) {
                    Ok(sample) => samples.push(sample),
                    Err(err) if err.is_unreadable_image() => {
                        let index = self.order[pos];
                        self.warn_once(index, &err);
                        self.skipped.push(index);
                        skipped += 1;
                    }
                    Err(err) => {
                        self.failed = true;
                        return Some((b, Err(err)));
                    }
                }
            }
            if let Source::Threads(workers) = &self.source {
                workers.advance(range.end);
            }
            if !samples.is_empty() {
                // The batch's number in the single-process epoch.
                let global = b * self.shard.world + self.shard.rank;
                return Some((b, Ok(self.dataset.collate(global, samples, skipped))));
            }
        }
        None
    }

    /// Samples skipped so far in this epoch for an unreadable image.
    pub fn skipped(&self) -> usize {
        self.skipped.len()
    }

    /// Dataset indices of the skipped samples, in the order they were met.
    pub fn skipped_indices(&self) -> &[usize] {
        &self.skipped
    }

    /// Batches in the whole epoch (including any before `first_batch`).
    pub fn num_batches(&self) -> usize {
        self.num_batches
    }

    /// The sample at epoch position `pos`, waiting for the workers if needed.
    fn take(&mut self, pos: usize) -> Result<D::Sample, DataError> {
        let index = self.order[pos];
        match &self.source {
            Source::Inline => self.dataset.load(index, self.mode),
            Source::Threads(workers) => loop {
                if let Some(result) = self.pending.remove(&pos) {
                    return result;
                }
                match workers.results.recv() {
                    Ok((p, result)) => {
                        self.pending.insert(p, result);
                    }
                    Err(_) => {
                        return Err(DataError::Loader(format!(
                            "worker threads stopped before sample {index} was loaded"
                        )))
                    }
                }
            },
        }
    }

    fn warn_once(&self, index: usize, err: &DataError) {
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        if warned.insert(index) {
            (self.warn)(index, err);
        }
    }
}

impl<D: SampleSource> Iterator for EpochBatches<D> {
    type Item = Result<D::Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_step().map(|(_, batch)| batch)
    }
}

enum Source<D: SampleSource> {
    /// `num_workers == 0`: samples are loaded by `next()` itself.
    Inline,
    Threads(Workers<D>),
}

/// The worker threads of one epoch and their shared claim counter.
struct Workers<D: SampleSource> {
    shared: Arc<Shared>,
    results: Receiver<(usize, Result<D::Sample, DataError>)>,
    handles: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<Claims>,
    wake: Condvar,
}

struct Claims {
    /// Next epoch position to hand out.
    next: usize,
    /// Positions below this may be claimed (the consumer's cursor plus the prefetch window).
    limit: usize,
    window: usize,
    end: usize,
    stop: bool,
}

impl<D: SampleSource> Workers<D> {
    fn spawn(
        dataset: Arc<D>,
        order: Arc<Vec<usize>>,
        mode: LoadMode,
        positions: Range<usize>,
        num_workers: usize,
        window: usize,
    ) -> Self {
        // Every worker must be able to hold a sample, or some would idle behind the window.
        let window = window.max(num_workers);
        let shared = Arc::new(Shared {
            state: Mutex::new(Claims {
                next: positions.start,
                limit: positions.start + window,
                window,
                end: positions.end,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let (tx, results) = channel();
        let handles = (0..num_workers.min(positions.len().max(1)))
            .map(|_| {
                let (shared, dataset, order, tx) = (
                    Arc::clone(&shared),
                    Arc::clone(&dataset),
                    Arc::clone(&order),
                    tx.clone(),
                );
                std::thread::spawn(move || work(&shared, &*dataset, &order, mode, &tx))
            })
            .collect();
        Self {
            shared,
            results,
            handles,
        }
    }

    /// The consumer finished every position below `cursor`: let the workers claim further.
    fn advance(&self, cursor: usize) {
        let mut claims = self.shared.lock();
        claims.limit = claims.limit.max(cursor + claims.window);
        self.shared.wake.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Claims> {
        // A poisoned lock only means another worker panicked while holding it; the counters
        // are still consistent (they are plain integers updated in one step).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn work<D: SampleSource>(
    shared: &Shared,
    dataset: &D,
    order: &[usize],
    mode: LoadMode,
    results: &Sender<(usize, Result<D::Sample, DataError>)>,
) {
    loop {
        let pos = {
            let mut claims = shared.lock();
            while !claims.stop && claims.next < claims.end && claims.next >= claims.limit {
                claims = shared
                    .wake
                    .wait(claims)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if claims.stop || claims.next >= claims.end {
                return;
            }
            claims.next += 1;
            claims.next - 1
        };
        let index = order[pos];
        // A panic (a bug, never bad input) must still deliver a result for this position:
        // the consumer waits for positions in order and would otherwise wait forever.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| dataset.load(index, mode)))
            .unwrap_or_else(|_| {
                Err(DataError::Loader(format!(
                    "a worker panicked while loading sample {index}"
                )))
            });
        if results.send((pos, result)).is_err() {
            return;
        }
    }
}

impl<D: SampleSource> Drop for Workers<D> {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        for handle in self.handles.drain(..) {
            // A worker that panicked has already lost its sample; the consumer reported it.
            let _ = handle.join();
        }
    }
}
