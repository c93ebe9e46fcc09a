//! The two binaries: `posekit` runs `eval` and `--help` without libtorch (so they start in a
//! few milliseconds with a few MB, BENCHMARKS.md), and hands every network command to
//! `posekit-engine`, which keeps the explicit `libtorch_cuda` link that `--device cuda` needs.

mod common;

use std::path::Path;
use std::process::Command;

use common::{posekit, posekit_cmd, scratch};

/// The shared libraries an ELF binary asks the dynamic loader for (`readelf -d`; binutils is
/// there wherever Rust links).
fn needed_libraries(binary: &Path) -> Vec<String> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(binary)
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf -d {}", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_string))
        .collect()
}

#[test]
fn the_front_binary_links_no_libtorch_and_the_engine_links_cuda_where_the_wheel_has_it() {
    let front = needed_libraries(Path::new(env!("CARGO_BIN_EXE_posekit")));
    assert!(front.iter().any(|l| l.starts_with("libc.so")), "{front:?}");
    assert!(
        !front
            .iter()
            .any(|l| l.contains("torch") || l.contains("c10")),
        "posekit loads libtorch: {front:?}"
    );
    let engine = needed_libraries(Path::new(env!("CARGO_BIN_EXE_posekit-engine")));
    assert!(engine.iter().any(|l| l == "libtorch_cpu.so"), "{engine:?}");
    let torch_lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/libtorch/lib");
    if torch_lib.join("libtorch_cuda.so").exists() {
        assert!(engine.iter().any(|l| l == "libtorch_cuda.so"), "{engine:?}");
    }
}

#[test]
fn eval_runs_in_the_front_binary() {
    let gt = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/coco/test_coco.json");
    let dir = scratch("startup-eval");
    let results = dir.join("results.json");
    let gt_text = std::fs::read_to_string(&gt).unwrap();
    let gt_json: serde_json::Value = serde_json::from_str(&gt_text).unwrap();
    // Perfect results: every labelled person's own keypoints.
    let dts: Vec<serde_json::Value> = gt_json["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["num_keypoints"].as_u64().unwrap_or(0) > 0 && a["iscrowd"] == 0)
        .map(|a| {
            serde_json::json!({"image_id": a["image_id"], "category_id": 1,
                               "keypoints": a["keypoints"], "score": 1.0})
        })
        .collect();
    assert!(!dts.is_empty());
    std::fs::write(&results, serde_json::to_string(&dts).unwrap()).unwrap();
    let out = posekit(&[
        "eval",
        "coco",
        "--gt",
        gt.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["AP"].as_f64(), Some(1.0), "{stdout}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn network_commands_go_through_the_engine_with_their_exit_codes() {
    let out = posekit(&["models"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("hrnet-w32"));
    // An engine error comes back as the engine's exit code and message.
    let out = posekit(&[
        "forward",
        "--model",
        "no-such-model",
        "--weights",
        "w",
        "--input",
        "x",
        "--output",
        "y",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-model"));
    // Argument errors are found by the front, before any engine starts.
    let out = posekit_cmd()
        .args(["infer", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_missing_engine_is_a_clear_error() {
    let dir = scratch("startup-no-engine");
    let lone = dir.join("posekit");
    std::fs::copy(env!("CARGO_BIN_EXE_posekit"), &lone).unwrap();
    let out = Command::new(&lone).arg("models").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("posekit-engine") && stderr.contains("missing"),
        "{stderr}"
    );
    // eval needs no engine.
    let out = Command::new(&lone).arg("--help").output().unwrap();
    assert!(out.status.success());
    std::fs::remove_dir_all(&dir).ok();
}
