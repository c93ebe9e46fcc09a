//! MPII PCKh end to end on the committed fixture (tests/data/mpii, written by
//! tools/fixtures/make_mpii_fixture.py): a 300-person `gt_valid.mat`-layout file from the
//! BSD-licensed Stacked Hourglass annotations, Stacked Hourglass predictions for the same
//! persons, and the table numpy computed for them.

use std::path::{Path, PathBuf};

use posekit_core::eval::mpii::{evaluate, evaluate_files, weighted_mean_pckh, PckhTable};
use posekit_core::formats::mat::MatFile;
use posekit_core::formats::mpii::{
    read_mpii_annotations, MpiiGroundTruth, MpiiPredictions, MPII_MAT_JOINT_NAMES,
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/mpii")
        .join(name)
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(data("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A scratch file under the system temp dir, unique to this process and test.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("posekit-mpii-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn table_matches_numpy_to_1e9_for_plain_and_compressed_mat() {
    let want = expected();
    for gt_file in ["gt_valid_subset.mat", "gt_valid_subset_compressed.mat"] {
        let table = evaluate_files(data(gt_file), data("preds.json")).unwrap();
        for (name, value) in table.entries() {
            let expected = want["table"][name].as_f64().unwrap();
            assert!(
                (value - expected).abs() < 1e-9,
                "{gt_file} {name}: {value} vs numpy {expected}"
            );
        }
        for (j, value) in table.per_joint.iter().enumerate() {
            let expected = want["per_joint"][j].as_f64().unwrap();
            assert!(
                (value - expected).abs() < 1e-9,
                "{gt_file} joint {j}: {value} vs {expected}"
            );
        }
    }
}

#[test]
fn hrnet_mean_at_0_11_is_available() {
    let gt = MpiiGroundTruth::from_mat_file(data("gt_valid_subset.mat")).unwrap();
    let preds = MpiiPredictions::read(data("preds.json")).unwrap();
    let value = weighted_mean_pckh(&gt, &preds, 0.11).unwrap();
    let expected = expected()["mean_at_0_11"].as_f64().unwrap();
    assert!((value - expected).abs() < 1e-9, "{value} vs {expected}");
}

#[test]
fn compressed_and_plain_files_hold_the_same_ground_truth() {
    let plain = MpiiGroundTruth::from_mat_file(data("gt_valid_subset.mat")).unwrap();
    let compressed =
        MpiiGroundTruth::from_mat_file(data("gt_valid_subset_compressed.mat")).unwrap();
    assert_eq!(plain.persons, compressed.persons);
    assert_eq!(plain.persons.len(), 300);
    assert_eq!(plain.joint_names, MPII_MAT_JOINT_NAMES);
    // The raw variables keep MATLAB's classes and shapes.
    let mat = MatFile::open(data("gt_valid_subset.mat")).unwrap();
    let (dims, missing) = mat.require_numeric("jnt_missing").unwrap();
    assert_eq!(dims, &[16, 300]);
    assert_eq!(missing.class, posekit_core::formats::mat::MatClass::Uint8);
    assert_eq!(mat.require("pos_gt_src").unwrap().dims, vec![16, 2, 300]);
}

#[test]
fn json_output_has_the_nine_keys_in_order() {
    let table = evaluate_files(data("gt_valid_subset.mat"), data("preds.json")).unwrap();
    let json = serde_json::to_string(&table).unwrap();
    let keys: Vec<usize> = PckhTable::NAMES
        .iter()
        .map(|k| json.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{json}");
    let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed.len(), 9);
}

fn preds_text() -> String {
    std::fs::read_to_string(data("preds.json")).unwrap()
}

#[test]
fn wrong_row_count_is_an_error_naming_the_file() {
    let mut rows: Vec<serde_json::Value> = serde_json::from_str(&preds_text()).unwrap();
    rows.pop();
    let path = scratch(
        "short.json",
        serde_json::to_string(&rows).unwrap().as_bytes(),
    );
    let err = evaluate_files(data("gt_valid_subset.mat"), &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("short.json")
            && err.contains("299 prediction rows")
            && err.contains("300 persons"),
        "{err}"
    );
}

#[test]
fn nan_and_missing_joints_in_predictions_name_the_row() {
    // What Python's json.dump writes for a NaN coordinate.
    let mut rows: Vec<Vec<Vec<f64>>> = serde_json::from_str(&preds_text()).unwrap();
    let mut parts: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let mut row7: Vec<String> = rows[7]
        .iter()
        .map(|p| format!("[{}, {}]", p[0], p[1]))
        .collect();
    row7[4] = "[NaN, 1.0]".into();
    parts[7] = format!("[{}]", row7.join(", "));
    let with_nan = format!("[{}]", parts.join(", "));
    let path = scratch("nan.json", with_nan.as_bytes());
    let err = evaluate_files(data("gt_valid_subset.mat"), &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nan.json") && err.contains("[7][4]") && err.contains("not a finite"),
        "{err}"
    );

    rows[12].pop();
    let path = scratch(
        "fifteen.json",
        serde_json::to_string(&rows).unwrap().as_bytes(),
    );
    let err = MpiiPredictions::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("fifteen.json") && err.contains("[12]") && err.contains("found 15"),
        "{err}"
    );
}

#[test]
fn truncated_mat_files_are_errors_naming_the_file() {
    for name in ["gt_valid_subset.mat", "gt_valid_subset_compressed.mat"] {
        let bytes = std::fs::read(data(name)).unwrap();
        let len = bytes.len();
        for cut in [0, 100, 128, 200, len / 3, len / 2, len - 9, len - 1] {
            let path = scratch(&format!("cut_{cut}_{name}"), &bytes[..cut]);
            let err = MpiiGroundTruth::from_mat_file(&path)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("cut_{cut}_{name}")), "{err}");
        }
    }
    let err = MpiiGroundTruth::from_mat_file(data("does-not-exist.mat"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does-not-exist.mat"), "{err}");
    let err = MpiiGroundTruth::from_mat_file(data("preds.json"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("preds.json") && err.contains("not a MAT v5 file"),
        "{err}"
    );
}

#[test]
fn malformed_ground_truth_variables_are_named() {
    for (file, variable, needle) in [
        (
            "bad_headboxes_shape.mat",
            "headboxes_src",
            "expected dimensions 2x2x4",
        ),
        ("bad_jnt_missing_value.mat", "jnt_missing", "(4, 2) is 2"),
        (
            "bad_dataset_joints.mat",
            "dataset_joints",
            "expected 16 joint names, found 15",
        ),
        ("bad_no_pos_gt_src.mat", "pos_gt_src", "variable is missing"),
    ] {
        let err = MpiiGroundTruth::from_mat_file(data(file))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(file) && err.contains(variable) && err.contains(needle),
            "{err}"
        );
    }
}

#[test]
fn evaluation_of_the_ground_truth_itself_is_perfect() {
    let gt = MpiiGroundTruth::from_mat_file(data("gt_valid_subset_compressed.mat")).unwrap();
    let preds = MpiiPredictions {
        path: "self.json".into(),
        rows: gt.persons.iter().map(|p| p.joints).collect(),
    };
    let table = evaluate(&gt, &preds).unwrap();
    for (name, value) in table.entries() {
        assert_eq!(value, 100.0, "{name}");
    }
}

#[test]
fn mmpose_mpii_annotation_json_reads() {
    let annotations = read_mpii_annotations(data("test_mpii.json")).unwrap();
    assert_eq!(annotations.len(), 5);
    let last = &annotations[4];
    assert_eq!(last.image, "060754485.jpg");
    assert_eq!(last.center, [698.0, 404.0]);
    assert!((last.scale - 3.374796).abs() < 1e-12);
    assert_eq!(last.joints.unwrap()[15], [790.0, 405.0]);
    assert_eq!(annotations[0].joints.unwrap()[0], [804.0, 711.0]);
    assert!(annotations.iter().all(|a| a.joints_vis.is_some()));
}
