//! Bottom-up loader throughput: HigherHRNet's training samples (input 512, targets at 128 and
//! 256, the official augmentation) made by the shared multi-threaded loader, in samples per
//! second and per worker thread. Prints figures; asserts nothing.
//!
//! ```text
//! cargo run --release -p posekit --example bottomup_loader_bench -- \
//!     ANNOTATIONS.json IMAGES_DIR [WORKERS] [SAMPLES]
//! ```
//! e.g. with coco-mini: `../shared/data/coco-mini/annotations/person_keypoints_train2017.json
//! ../shared/data/coco-mini/train2017 1 200`.

use std::path::PathBuf;
use std::sync::Arc;

use posekit::pipelines::data::{BottomUpDataConfig, BottomUpDataset};

#[path = "common/loader_timing.rs"]
mod loader_timing;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        anyhow::bail!(
            "usage: bottomup_loader_bench ANNOTATIONS.json IMAGES_DIR [WORKERS] [SAMPLES]"
        );
    }
    let ann = PathBuf::from(&args[0]);
    let images = PathBuf::from(&args[1]);
    let workers: usize = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let samples: usize = args.get(3).map_or(Ok(200), |s| s.parse())?;
    let cfg = BottomUpDataConfig::new(512);
    let ds = Arc::new(BottomUpDataset::coco(&ann, &images, &cfg)?);
    let (made, secs) = loader_timing::time_training_samples(Arc::clone(&ds), workers, samples)?;
    println!(
        "{made} samples (512 input, targets 128 + 256) from {} images with {workers} worker(s) \
         in {secs:.2} s: {:.1} samples/s, {:.1} samples/s per worker",
        ds.len(),
        made as f64 / secs,
        made as f64 / secs / workers.max(1) as f64
    );
    Ok(())
}
