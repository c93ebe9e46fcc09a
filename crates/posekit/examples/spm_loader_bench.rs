//! SPM loader throughput: SPM's training samples (input 512, root map, hierarchical
//! displacements and weights at 128, the ignore mask; HigherHRNet's official augmentation) made
//! by the shared multi-threaded loader, in samples per second and per worker thread. Prints
//! figures; asserts nothing.
//!
//! ```text
//! cargo run --release -p posekit --example spm_loader_bench -- \
//!     ANNOTATIONS.json IMAGES_DIR [WORKERS] [SAMPLES]
//! ```
//! e.g. with coco-mini: `../shared/data/coco-mini/annotations/person_keypoints_train2017.json
//! ../shared/data/coco-mini/train2017 1 200`.

use std::path::PathBuf;
use std::sync::Arc;

use posekit::pipelines::data::spm::{SpmDataset, SpmTrainConfig};
use posekit::pipelines::data::{BottomUpDataConfig, BottomUpDataset};

#[path = "common/loader_timing.rs"]
mod loader_timing;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        anyhow::bail!("usage: spm_loader_bench ANNOTATIONS.json IMAGES_DIR [WORKERS] [SAMPLES]");
    }
    let ann = PathBuf::from(&args[0]);
    let images = PathBuf::from(&args[1]);
    let workers: usize = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let samples: usize = args.get(3).map_or(Ok(200), |s| s.parse())?;
    let mut cfg = BottomUpDataConfig::new(512);
    cfg.augmentation.scale_type = posekit::pipelines::data::bottomup_config::ScaleType::Long;
    let base = BottomUpDataset::coco(&ann, &images, &cfg)?;
    let ds = Arc::new(SpmDataset::new(base, SpmTrainConfig::default())?);
    let (made, secs) = loader_timing::time_training_samples(Arc::clone(&ds), workers, samples)?;
    println!(
        "{made} SPM samples (512 input, targets at 128) from {} images with {workers} worker(s) \
         in {secs:.2} s: {:.1} samples/s, {:.1} samples/s per worker",
        ds.len(),
        made as f64 / secs,
        made as f64 / secs / workers.max(1) as f64
    );
    Ok(())
}
