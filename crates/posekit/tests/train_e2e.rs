//! Overfit proof: a small HRNet trained on the CPU on the 4 real COCO images of
//! `tests/data/coco` (12 annotated people, ground-truth boxes) reaches AP > 0.9 on them.
//!
//! Passing means the whole path is right: crop -> Gaussian targets -> network -> JointsMSELoss
//! with target weights -> backward -> Adam with the schedule -> flip test -> decoding ->
//! inverse crop transform -> rescoring -> OKS-NMS -> pycocotools-exact AP. A swapped axis, a
//! wrong flip pair, a crop off by its padding or an inverted affine each keep AP far below 0.9.
//!
//! Why these settings: the final 1x1 convolution makes 17 heatmaps out of the high-resolution
//! branch, so the branch needs more channels than joints (width 32); one module per stage and
//! one block per branch keep a step cheap; no augmentation so that 12 people can be memorised
//! in a few hundred steps; UDP targets with DARK decoding give sub-pixel positions from small
//! 16x24 heatmaps (HRNet's quantised targets would cap the precision at that size).

use std::path::Path;

use posekit::pipelines::config::ExperimentConfig;
use posekit::pipelines::train::{train, TrainOptions};

#[test]
fn tiny_hrnet_overfits_four_coco_images_to_ap_above_0_9() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/coco");
    let dir = std::env::temp_dir().join(format!("posekit-overfit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        r#"
[model]
preset = "hrnet-w32"
[model.hrnet]
width = 32
modules = [1, 1, 1]
blocks = 1

[dataset]
format = "coco"
train_annotations = "{ann}"
train_images = "{img}"
val_annotations = "{ann}"
val_images = "{img}"

[data]
input_size = [64, 96]
heatmap_size = [16, 24]
codec = "udp"
refinement = "dark"
[data.augmentation]
scale_factor = 0.0
rotation_factor = 0.0
rotation_prob = 0.0
flip = false
half_body_prob = 0.0

[train]
epochs = 300
batch_size = 12
workers = 1
val_interval = 0
seed = 1
[train.schedule]
lr = 3e-3
milestones = [200, 260]

[test]
flip = true
batch_size = 12
workers = 1
"#,
        ann = data.join("test_coco.json").display(),
        img = data.display(),
    );
    let config = dir.join("overfit.toml");
    std::fs::write(&config, text).unwrap();
    let loaded = ExperimentConfig::load(&config).unwrap();
    let summary = train(
        &loaded,
        &TrainOptions {
            resume: false,
            device: tch::Device::Cpu,
            out_dir: dir.join("out"),
            progress: false,
        },
    )
    .unwrap();
    let ap = summary.last_metric.expect("the last epoch is validated");
    println!("overfit AP on the 4 COCO images: {ap:.4}");
    assert!(ap > 0.9, "AP {ap:.4} after overfitting 12 people");
    // The results file of that validation is a valid COCO results file for these images.
    let results = dir.join("out/val/results.json");
    let gt =
        posekit_core::formats::coco::CocoKeypointsGt::load(data.join("test_coco.json")).unwrap();
    let parsed = posekit_core::formats::coco::load_keypoint_results(&results, &gt).unwrap();
    assert!(parsed.len() >= 12, "{} results", parsed.len());
    let _ = std::fs::remove_dir_all(&dir);
}
