//! `posekit train` / `posekit test` on a bottom-up (HigherHRNet) config, end to end through the
//! binary, on the 4 COCO images of `tests/data/coco`:
//!
//! * a short run of the repo's tiny config (the full overfit to AP > 0.5 takes minutes and is
//!   the acceptance check `D1-higherhrnet-tiny-overfit.sh`), tested with its own config: the
//!   results file covers the images and the loss went down;
//! * kill -9 at several moments, then `--resume`: the same final weights, bit for bit, as an
//!   uninterrupted run, with the full augmentation on (so the replayed crops must be the same);
//! * a bottom-up preset with a top-down `[data]` section is refused, naming it.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// The repo's tiny HigherHRNet config with absolute data paths and `edits` (`key = value`
/// lines replaced), written into `dir`.
fn tiny_bottomup_config(dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    tiny_config(dir, "tiny_higherhrnet_coco_test", edits)
}

#[test]
fn tiny_higherhrnet_trains_and_tests_with_its_own_config() {
    let dir = scratch("bu-train");
    // 40 of the 300 epochs, at a smaller input: a few seconds of CPU.
    let config = tiny_bottomup_config(
        &dir,
        &[
            ("epochs", "40"),
            ("input_size", "128"),
            ("milestones", "[30]"),
        ],
    );
    let run = dir.join("run");
    let out = run_ok(train_cmd(&config, &run, false));
    let text = stdout(&out);
    assert!(text.contains("on 4 images"), "{text}");
    let losses = logged_losses(&run);
    assert_eq!(losses.len(), 40);
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[35..].iter().sum::<f64>() / 5.0;
    assert!(last < first, "the loss did not go down: {first} -> {last}");
    // Validation ran after the last epoch through the bottom-up test.
    assert!(run.join("val/results.json").exists());

    let test_out = dir.join("test");
    let out = run_ok(test_cmd(&config, &run.join("final.safetensors"), &test_out));
    let text = stdout(&out);
    assert!(text.contains("Average Precision"), "{text}");
    assert!(text.contains("4 images"), "{text}");
    // Every result is on one of the 4 images, in COCO-17.
    for r in results(&test_out) {
        let id = r["image_id"].as_i64().unwrap();
        assert!([785, 40083, 196141, 197388].contains(&id), "{r}");
        assert_eq!(r["keypoints"].as_array().unwrap().len(), 51);
    }
    // The checkpoint `last` is accepted by `posekit test` as well.
    run_ok(test_cmd(
        &config,
        &run.join("last.safetensors"),
        &dir.join("test_last"),
    ));
    assert_eq!(
        file_bytes(&test_out.join("results.json")),
        file_bytes(&dir.join("test_last/results.json")),
        "final and last hold the same weights"
    );
}

const EPOCHS: usize = 6;

#[test]
fn killed_bottomup_runs_resume_to_the_same_weights() {
    let dir = scratch("bu-kill");
    // A width-4 HigherHRNet at input 64, 2 images per batch, the full official augmentation.
    let config = tiny_bottomup_config(
        &dir,
        &[
            ("width", "4"),
            ("input_size", "64"),
            ("max_rotation", "30.0"),
            ("min_scale", "0.75"),
            ("max_scale", "1.5"),
            ("max_translate", "40.0"),
            ("flip_prob", "0.5"),
            ("epochs", &EPOCHS.to_string()),
            ("batch_size", "2"),
            ("val_interval", "3"),
            ("milestones", "[4]"),
        ],
    );
    let reference = dir.join("reference");
    run_ok(train_cmd(&config, &reference, false));

    let out = dir.join("killed");
    kill_when(
        train_cmd(&config, &out, false),
        || false,
        Duration::from_millis(300),
    );
    kill_when(
        train_cmd(&config, &out, true),
        || checkpoint_epoch(&out) >= 1,
        Duration::from_secs(120),
    );
    assert!(
        checkpoint_epoch(&out) >= 1,
        "no checkpoint after the second start"
    );
    kill_when(
        train_cmd(&config, &out, true),
        || false,
        Duration::from_millis(1500),
    );
    kill_when(
        train_cmd(&config, &out, true),
        || checkpoint_epoch(&out) >= 3,
        Duration::from_secs(120),
    );
    run_ok(train_cmd(&config, &out, true));
    assert_eq!(checkpoint_epoch(&out), EPOCHS);
    let a = file_bytes(&reference.join("final.safetensors"));
    let b = file_bytes(&out.join("final.safetensors"));
    assert!(
        a == b,
        "resumed weights differ from the uninterrupted run's"
    );
}

#[test]
fn a_bottom_up_preset_with_a_top_down_data_section_is_refused() {
    let dir = scratch("bu-bad-config");
    let config = tiny_bottomup_config(&dir, &[]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[data]\ninput_size = [192, 256]\nheatmap_size = [48, 64]\n");
    std::fs::write(&config, text).unwrap();
    let out = posekit(&[
        "train",
        path_str(&config),
        "--out",
        path_str(&dir.join("r")),
    ]);
    assert_clean_failure(&out, "bottom-up preset with [data]");
    let err = stderr(&out);
    assert!(
        err.contains("[data]") && err.contains("higherhrnet-w32"),
        "{err}"
    );
    assert!(
        !dir.join("r").exists(),
        "nothing is written for a bad config"
    );
}
