//! A missing input file is reported in one line that names it and says the OS reason once
//! (issue 7, item 7: `No such file or directory (os error 2): No such file or directory (os
//! error 2)`), whichever command reads it.

mod common;

use common::*;

/// The command failed cleanly, naming `file`, with the OS message exactly once.
fn assert_missing_reported_once(args: &[&str], file: &str) {
    let out = posekit(args);
    assert_clean_failure(&out, &args.join(" "));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains(file), "{args:?}: {line}");
    assert_eq!(
        line.to_lowercase().matches("no such file").count(),
        1,
        "{args:?}: {line}"
    );
}

#[test]
fn eval_coco_with_a_missing_ground_truth() {
    let dir = scratch("missing-eval");
    let gt = dir.join("missing.json");
    let results = dir.join("results.json");
    std::fs::write(&results, "[]").unwrap();
    assert_missing_reported_once(
        &[
            "eval",
            "coco",
            "--gt",
            path_str(&gt),
            "--results",
            path_str(&results),
        ],
        "missing.json",
    );
}

#[test]
fn infer_with_a_missing_picture() {
    let dir = scratch("missing-infer");
    let picture = dir.join("missing.jpg");
    let out = dir.join("out");
    assert_missing_reported_once(
        &["infer", path_str(&picture), "--out", path_str(&out)],
        "missing.jpg",
    );
}

#[test]
fn convert_with_a_missing_checkpoint() {
    let dir = scratch("missing-convert");
    let pth = dir.join("missing.pth");
    let out = dir.join("out.safetensors");
    assert_missing_reported_once(
        &[
            "convert",
            path_str(&pth),
            "--model",
            "hrnet-w32",
            "-o",
            path_str(&out),
        ],
        "missing.pth",
    );
}

#[test]
fn test_with_a_missing_config() {
    let dir = scratch("missing-test");
    let config = dir.join("missing.toml");
    let weights = repo("crates/posekit-nn/tests/data/pth/expected.safetensors");
    assert_missing_reported_once(
        &["test", path_str(&config), "--weights", path_str(&weights)],
        "missing.toml",
    );
}
