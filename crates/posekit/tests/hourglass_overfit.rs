//! Overfit proof for the Stacked Hourglass (bearpaw/pytorch-pose layout) trained the way the
//! paper is: a narrow two-stack hourglass learns the 5 real MPII persons of `tests/data/mpii`
//! with RMSprop, sigma-1 targets, every stack supervised (JointsMSELoss summed over stacks),
//! then is tested with the flip average and the quarter-pixel shift and scored by the MPII
//! PCKh evaluator; PCKh@0.5 must exceed 90 on them.
//!
//! The PCKh ground truth `test_mpii_gt.mat` is made by `tools/fixtures/make_mpii_overfit_gt.py`
//! (the MPII JSON keeps no head boxes: each is the square between upper neck and head top whose
//! normaliser is 0.75 x their distance, the ratio measured on MPII's validation split).
//!
//! Measured with these settings (through `posekit train` on the same config, 2026-12-06):
//! PCKh@0.5 98.5 (every joint group 100 except elbows 90), loss 0.0033 -> 0.0023. A narrower
//! model (stem 8, 16 features, lr 2.5e-3) stalled at 83.3, hence these widths.
//!
//! Ignored by default because of its cost: 300 steps of 5 crops at 128x128 took 23 minutes on
//! the shared 2-core CPU with three other trainings running (13 images/s when it had the cores,
//! i.e. about 2 to 3 minutes on a free machine). Run it with
//! `cargo test -p posekit --test hourglass_overfit -- --ignored --nocapture`.

use std::path::Path;

use posekit::pipelines::config::ExperimentConfig;
use posekit::pipelines::train::{train, TrainOptions};

#[test]
#[ignore = "minutes of CPU training; run with --ignored"]
fn narrow_stacked_hourglass_overfits_five_mpii_persons_to_pckh_above_90() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mpii");
    let dir = std::env::temp_dir().join(format!("posekit-hg-overfit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        r#"
[model]
preset = "hourglass-2"
[model.hourglass]
num_stacks = 2
num_blocks = 1
stem_planes = 16
num_feats = 32
depth = 4

[dataset]
format = "mpii"
train_annotations = "{ann}"
train_images = "{img}"
val_annotations = "{ann}"
val_images = "{img}"
val_gt_mat = "{gt}"

[data]
input_size = [128, 128]
heatmap_size = [32, 32]
sigma = 1.0
layout = "mpii16"
mean = [0.4404, 0.4440, 0.4327]
std = [1.0, 1.0, 1.0]
[data.augmentation]
scale_factor = 0.0
rotation_factor = 0.0
rotation_prob = 0.0
flip = true
half_body_prob = 0.0

[train]
epochs = 300
batch_size = 5
workers = 1
val_interval = 0
seed = 1
[train.optimizer]
type = "rmsprop"
[train.schedule]
lr = 1e-3
milestones = [240, 280]

[test]
flip = true
batch_size = 5
workers = 1
"#,
        ann = data.join("test_mpii.json").display(),
        img = data.display(),
        gt = data.join("test_mpii_gt.mat").display(),
    );
    let config = dir.join("overfit.toml");
    std::fs::write(&config, text).unwrap();
    let loaded = ExperimentConfig::load(&config).unwrap();
    let summary = train(
        &loaded,
        &TrainOptions {
            resume: false,
            overwrite: false,
            device: tch::Device::Cpu,
            out_dir: dir.join("out"),
            progress: false,
            report: std::sync::Arc::new(|line| eprintln!("{line}")),
        },
    )
    .unwrap();
    let pckh = summary.last_metric.expect("the last epoch is validated");
    // the trainer's validation metric is PCKh@0.5 as a fraction
    println!("overfit PCKh@0.5 on the 5 MPII persons: {pckh:.4}");
    assert!(pckh > 0.9, "PCKh@0.5 {pckh:.4} after overfitting 5 persons");
    let _ = std::fs::remove_dir_all(&dir);
}
