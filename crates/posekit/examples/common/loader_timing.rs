//! The timing loop the loader benchmarks share (`*_loader_bench.rs`).

use std::sync::Arc;
use std::time::Instant;

use posekit::pipelines::data::{LoadMode, Loader, LoaderOptions, SampleSource};

/// Makes at least `samples` training samples of `dataset` in batches of 8 with `workers`
/// workers (4 batches of prefetch), epoch after epoch with seed 0, and returns how many were
/// made and the seconds it took.
pub fn time_training_samples<D: SampleSource>(
    dataset: Arc<D>,
    workers: usize,
    samples: usize,
) -> anyhow::Result<(usize, f64)> {
    let loader = Loader::new(
        dataset,
        LoaderOptions {
            batch_size: 8,
            num_workers: workers,
            prefetch_batches: 4,
            drop_last: false,
        },
    )?;
    let start = Instant::now();
    let (mut made, mut epoch) = (0usize, 0u64);
    while made < samples {
        for batch in loader.epoch(LoadMode::Train { seed: 0, epoch }) {
            made += D::batch_len(&batch?);
            if made >= samples {
                break;
            }
        }
        epoch += 1;
    }
    Ok((made, start.elapsed().as_secs_f64()))
}
