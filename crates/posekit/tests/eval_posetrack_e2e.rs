//! `posekit eval posetrack` end to end: the real binary on the PoseTrack fixture of posekit-core
//! (numbers from poseval's algorithm on motmetrics, tools/fixtures/posetrack_mota.py).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn posekit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_posekit"))
        .args(args)
        .output()
        .expect("the posekit binary runs")
}

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../posekit-core/tests/data/posetrack")
        .join(path)
}

#[test]
fn eval_posetrack_prints_poseval_numbers() {
    let (gt, results) = (data("gt"), data("pred"));
    let out = posekit(&[
        "eval",
        "posetrack",
        "--gt",
        gt.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("expected.json")).unwrap()).unwrap();
    for (name, want) in expected["table"].as_object().unwrap() {
        let (g, w) = (got[name].as_f64().unwrap(), want.as_f64().unwrap());
        assert!((g - w).abs() < 1e-9, "{name}: {g} vs {w}");
    }
    // The table form, one video's files.
    let out = posekit(&[
        "eval",
        "posetrack",
        "--gt",
        data("gt/009473_mpii_test.json").to_str().unwrap(),
        "--results",
        data("pred").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("| MOTA | MOTP | Prec | Rec |"), "{text}");
}

#[test]
fn eval_posetrack_reports_bad_files_in_one_line() {
    let dir = std::env::temp_dir().join(format!("posekit-posetrack-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("009473_mpii_test.json");
    let text = std::fs::read_to_string(data("pred/009473_mpii_test.json")).unwrap();
    std::fs::write(
        &bad,
        text.replacen("\"track_id\":", "\"track_id\":\"x\",\"t\":", 1),
    )
    .unwrap();
    let out = posekit(&[
        "eval",
        "posetrack",
        "--gt",
        data("gt/009473_mpii_test.json").to_str().unwrap(),
        "--results",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("009473_mpii_test.json") && err.contains("track_id"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
