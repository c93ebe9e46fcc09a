//! SPM end to end through the binary on the 4 COCO images of `tests/data/coco`, with the
//! repo's tiny SPM config:
//!
//! * `posekit browse`: the root map, the displacements drawn as lines from their anchors, and
//!   tensor files holding exactly the dataset's sample;
//! * a short `posekit train` (the full overfit to AP > 0.5 takes minutes and is the acceptance
//!   check `E1-paf-spm-tiny-overfit.sh`) whose loss goes down, then `posekit test` of its
//!   weights with the config: a results file for the images.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use posekit::pipelines::browse::{read_tensors, TensorData};
use posekit::pipelines::config::ExperimentConfig;
use posekit::pipelines::data::spm::SpmDataset;
use posekit::pipelines::data::LoadMode;
use posekit::pipelines::train::task::bottomup_dataset;

/// The tiny SPM config with absolute data paths and `edits` (`key = value` lines replaced).
fn tiny_spm_config(dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    tiny_config(dir, "tiny_spm_coco_test", edits)
}

fn f32s(t: &TensorData) -> &[f32] {
    match t {
        TensorData::F32(v) => v,
        TensorData::I64(_) => panic!("expected f32"),
    }
}

#[test]
fn browse_shows_spm_targets_and_writes_the_loss_tensors() {
    let dir = scratch("spm-browse");
    let config = tiny_spm_config(&dir, &[("flip_prob", "0.5"), ("max_rotation", "20.0")]);
    let out = dir.join("browse");
    let o = posekit(&[
        "browse",
        path_str(&config),
        "--out",
        path_str(&out),
        "--tensors",
        "--n",
        "2",
    ]);
    assert!(o.status.success(), "{}", text_of(&o));
    let cfg = ExperimentConfig::load(&config).unwrap().config;
    let d = &cfg.dataset;
    let base = bottomup_dataset(
        &cfg,
        d.train_annotations.as_ref().unwrap(),
        d.train_images.as_ref().unwrap(),
    )
    .unwrap();
    let spm = cfg.bottomup.as_ref().unwrap().spm.clone().unwrap();
    let ds = SpmDataset::new(base, spm).unwrap();
    for index in 0..2 {
        let sample = ds
            .load(
                index,
                LoadMode::Train {
                    seed: cfg.train.seed,
                    epoch: 0,
                },
            )
            .unwrap();
        let name = sample.image_id.to_string();
        for suffix in ["input", "root", "displacements"] {
            let png = out.join(format!("{name}_{suffix}.png"));
            assert!(png.is_file(), "{} missing", png.display());
        }
        let tensors = read_tensors(&out.join(format!("{name}.safetensors"))).unwrap();
        assert_eq!(f32s(&tensors["input"].data), &sample.input[..]);
        let t = &sample.targets;
        let r = sample.size;
        assert_eq!(tensors["root"].shape, [1, r, r]);
        assert_eq!(
            f32s(&tensors["root"].data),
            t.root_heatmap.iter().copied().collect::<Vec<_>>()
        );
        assert_eq!(
            f32s(&tensors["mask"].data),
            sample.mask.iter().copied().collect::<Vec<_>>()
        );
        assert_eq!(tensors["displacements"].shape, [34, r, r]);
        assert_eq!(
            f32s(&tensors["displacements"].data),
            t.displacements.iter().copied().collect::<Vec<_>>()
        );
        assert_eq!(
            f32s(&tensors["weights"].data),
            t.weights.iter().copied().collect::<Vec<_>>()
        );
    }
    assert!(stdout(&o).contains("SPM"), "{}", stdout(&o));
}

#[test]
fn tiny_spm_trains_and_tests_with_its_own_config() {
    let dir = scratch("spm-train");
    // 20 epochs at a smaller input (a minute or two of CPU on a loaded machine).
    let config = tiny_spm_config(
        &dir,
        &[
            ("epochs", "20"),
            ("input_size", "128"),
            ("test_input_size", "128"),
            ("milestones", "[15]"),
            ("val_interval", "0"),
        ],
    );
    let out = dir.join("run");
    let o = posekit(&[
        "train",
        path_str(&config),
        "--out",
        path_str(&out),
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", text_of(&o));
    let losses = logged_losses(&out);
    assert_eq!(losses.len(), 20);
    assert!(
        losses[19] < 0.75 * losses[0],
        "the loss should fall: {losses:?}"
    );
    let test_out = dir.join("test");
    let o = run_ok(test_cmd(&config, &out.join("final.safetensors"), &test_out));
    assert!(stdout(&o).contains("AP"), "{}", stdout(&o));
    assert!(test_out.join("results.json").is_file());
}
