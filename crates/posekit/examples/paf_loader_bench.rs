//! OpenPose loader throughput: CMU-style training samples (368x368 crop, or 432x368 for the
//! tf-pose MobileNetV2 variant; CMU-18 heatmaps, PAFs and mask at stride 8; CMU's random
//! augmentation, one sample per main person) made by the shared multi-threaded loader, in
//! samples per second and per worker thread. Prints figures; asserts nothing.
//!
//! ```text
//! cargo run --release -p posekit --example paf_loader_bench -- \
//!     ANNOTATIONS.json IMAGES_DIR [WORKERS] [SAMPLES] [CROP_WIDTH] [RULES]
//! ```
//!
//! `RULES` is `posekit` (default) or `cmu` (CMU's targets, and CMU's own bicubic chain for the
//! picture and the mask).

use std::path::PathBuf;
use std::sync::Arc;

use posekit::pipelines::data::paf::PafInput;
use posekit::pipelines::data::{BottomUpDataConfig, PafDataConfig, PafDataset};
use posekit_core::codecs::paf::PafTargetRules;

#[path = "common/loader_timing.rs"]
mod loader_timing;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        anyhow::bail!(
            "usage: paf_loader_bench ANNOTATIONS.json IMAGES_DIR [WORKERS] [SAMPLES] [CROP_WIDTH] \
             [RULES: posekit | cmu]"
        );
    }
    let ann = PathBuf::from(&args[0]);
    let images = PathBuf::from(&args[1]);
    let workers: usize = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let samples: usize = args.get(3).map_or(Ok(200), |s| s.parse())?;
    let crop_width: usize = args.get(4).map_or(Ok(368), |s| s.parse())?;
    let rules = match args.get(5).map(String::as_str) {
        None | Some("posekit") => PafTargetRules::Posekit,
        Some("cmu") => PafTargetRules::Cmu,
        Some(other) => anyhow::bail!("RULES is posekit or cmu, not `{other}`"),
    };
    let mut cfg = BottomUpDataConfig::new(64);
    cfg.input_size = 368;
    cfg.paf = Some(PafDataConfig {
        crop_width: Some(crop_width),
        rules,
        ..PafDataConfig::default()
    });
    let ds = Arc::new(PafDataset::coco(&ann, &images, &cfg, PafInput::CmuBgr, 8)?);
    let (made, secs) = loader_timing::time_training_samples(Arc::clone(&ds), workers, samples)?;
    println!(
        "{made} samples ({crop_width}x368 crop, targets at stride 8, rules {rules:?}) from {} main people of {} \
         images with {workers} worker(s) in {secs:.2} s: {:.1} samples/s, {:.1} samples/s per \
         worker",
        ds.len(),
        ds.images().len(),
        made as f64 / secs,
        made as f64 / secs / workers.max(1) as f64
    );
    Ok(())
}
