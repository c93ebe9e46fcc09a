//! `posekit test` end to end through the binary: a tiny model trained for two epochs on the 4
//! COCO images of `tests/data/coco` is tested on ground-truth boxes and on detections
//! (results.json written, pycocotools' table printed), with the exported weights and with a
//! training checkpoint; configuration and weight mistakes are clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/coco")
}

fn config_text(extra_data: &str) -> String {
    let data = data_dir();
    format!(
        r#"
[model]
preset = "hrnet-w32"
[model.hrnet]
width = 4
modules = [1, 1, 1]
blocks = 1

[dataset]
format = "coco"
train_annotations = "{ann}"
train_images = "{img}"
val_annotations = "{ann}"
val_images = "{img}"
val_detections = "{det}"

[data]
input_size = [32, 64]
heatmap_size = [8, 16]
{extra_data}

[train]
epochs = 2
batch_size = 6
workers = 1
val_interval = 0
seed = 3

[test]
batch_size = 8
workers = 1
"#,
        ann = data.join("test_coco.json").display(),
        img = data.display(),
        det = data.join("test_coco_det_AP_H_56.json").display(),
    )
}

fn posekit(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_posekit"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn test_command_writes_results_and_prints_the_coco_table() {
    let dir = std::env::temp_dir().join(format!("posekit-test-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let gt_cfg = dir.join("gt.toml");
    std::fs::write(&gt_cfg, config_text("")).unwrap();
    let det_cfg = dir.join("det.toml");
    std::fs::write(
        &det_cfg,
        config_text("use_gt_boxes = false\ndet_score_threshold = 0.0"),
    )
    .unwrap();

    let out = dir.join("run");
    let trained = posekit(&[
        "train".as_ref(),
        gt_cfg.as_ref(),
        "--out".as_ref(),
        out.as_ref(),
        "--no-progress".as_ref(),
    ]);
    assert!(trained.status.success(), "{}", text(&trained));
    assert!(out.join("final.safetensors").exists());

    // Exported weights, ground-truth boxes, flip test, default decoding.
    let res = dir.join("res_gt");
    let r = posekit(&[
        "test".as_ref(),
        gt_cfg.as_ref(),
        "--weights".as_ref(),
        out.join("final.safetensors").as_ref(),
        "--out".as_ref(),
        res.as_ref(),
        "--no-progress".as_ref(),
    ]);
    assert!(r.status.success(), "{}", text(&r));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(
        stdout
            .contains(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ] = "),
        "{stdout}"
    );
    assert!(stdout.contains("Average Recall"), "{stdout}");
    let gt = posekit_core::formats::coco::CocoKeypointsGt::load(data_dir().join("test_coco.json"))
        .unwrap();
    let results =
        posekit_core::formats::coco::load_keypoint_results(res.join("results.json"), &gt).unwrap();
    assert!(
        !results.is_empty() && results.len() <= 12,
        "{} results",
        results.len()
    );
    assert!(results
        .iter()
        .all(|r| r.keypoints.len() == 51 && r.category_id == 1));

    // A training checkpoint, detector boxes, no flip, DARK decoding.
    let res = dir.join("res_det");
    let r = posekit(&[
        "test".as_ref(),
        det_cfg.as_ref(),
        "--weights".as_ref(),
        out.join("last.safetensors").as_ref(),
        "--no-flip".as_ref(),
        "--dark".as_ref(),
        "--out".as_ref(),
        res.as_ref(),
        "--no-progress".as_ref(),
    ]);
    assert!(r.status.success(), "{}", text(&r));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(
        stdout.contains("118 instances") && stdout.contains("flip off"),
        "{stdout}"
    );
    let results =
        posekit_core::formats::coco::load_keypoint_results(res.join("results.json"), &gt).unwrap();
    // OKS-NMS at 0.9 keeps at most one pose per detection and usually fewer.
    assert!(!results.is_empty() && results.len() <= 118);

    // An unknown key in the config: the error names it and the file.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        config_text("").replace("[test]\n", "[test]\nflip_tset = true\n"),
    )
    .unwrap();
    let r = posekit(&[
        "test".as_ref(),
        bad.as_ref(),
        "--weights".as_ref(),
        out.join("final.safetensors").as_ref(),
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("flip_tset") && err.contains("bad.toml"),
        "{err}"
    );

    // Weights of another model: the full HRNet-W32 preset cannot take the tiny model's weights.
    let other = dir.join("other.toml");
    let full = config_text("").replace(
        "[model.hrnet]\nwidth = 4\nmodules = [1, 1, 1]\nblocks = 1\n",
        "",
    );
    std::fs::write(&other, full).unwrap();
    for weights in ["final.safetensors", "last.safetensors"] {
        let r = posekit(&[
            "test".as_ref(),
            other.as_ref(),
            "--weights".as_ref(),
            out.join(weights).as_ref(),
        ]);
        assert!(!r.status.success(), "{weights} loaded into another model");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(weights), "{weights}: {err}");
        assert!(
            err.to_lowercase().contains("missing") || err.contains("shape"),
            "{weights}: {err}"
        );
    }

    // A missing weights file and a missing annotation file name the file.
    let r = posekit(&[
        "test".as_ref(),
        gt_cfg.as_ref(),
        "--weights".as_ref(),
        dir.join("nope.safetensors").as_ref(),
    ]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("nope.safetensors"));
    let missing = dir.join("missing.toml");
    std::fs::write(
        &missing,
        config_text("").replace("test_coco.json", "no_such.json"),
    )
    .unwrap();
    let r = posekit(&[
        "test".as_ref(),
        missing.as_ref(),
        "--weights".as_ref(),
        out.join("final.safetensors").as_ref(),
    ]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("no_such.json"),
        "{}",
        text(&r)
    );

    let _ = std::fs::remove_dir_all(&dir);
}
