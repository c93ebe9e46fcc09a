//! COCO keypoint evaluation against pycocotools.
//!
//! `tests/data/coco_eval/` holds randomized ground-truth/result pairs and two real COCO val2017
//! ground truths with noisy results, made by `tools/fixtures/make_coco_eval_fixtures.py`, with
//! the ten stats pycocotools printed for each (`expected.json`). Every stat must agree to 1e-9.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use posekit_core::eval::coco::{evaluate_coco_files, CocoEvaluator, CocoStats};
use posekit_core::formats::coco::{load_keypoint_results, CocoKeypointsGt};
use posekit_core::Error;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/coco_eval")
}

fn expected() -> BTreeMap<String, [f64; 10]> {
    let text = std::fs::read_to_string(data_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_case_matches_pycocotools() {
    let expected = expected();
    assert!(expected.len() >= 60, "only {} cases", expected.len());
    let mut failures = Vec::new();
    let mut bit_exact = 0;
    let mut minus_one = 0;
    for (name, want) in &expected {
        let gt = data_dir().join(format!("{name}_gt.json"));
        let results = data_dir().join(format!("{name}_results.json"));
        let got = evaluate_coco_files(&gt, &results)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .values();
        for ((label, g), w) in CocoStats::names().iter().zip(got).zip(want) {
            if (g - w).abs() > 1e-9 {
                failures.push(format!("{name} {label}: got {g}, pycocotools {w}"));
            }
            bit_exact += usize::from(g == *w);
            minus_one += usize::from(*w == -1.0);
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The fixtures must reach the "no ground truth in this range" branch.
    assert!(minus_one > 0);
    eprintln!(
        "{bit_exact} of {} stats bit-identical to pycocotools",
        expected.len() * 10
    );
}

#[test]
fn summary_text_is_what_pycocotools_prints() {
    let text = std::fs::read_to_string(data_dir().join("summaries.json")).unwrap();
    let summaries: BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
    for (name, values) in expected() {
        let printed = CocoStats::from_values(values).summary();
        assert_eq!(printed, summaries[&name], "{name}");
    }
}

#[test]
fn real_coco_ground_truth_loads_with_its_segmentations() {
    let gt = CocoKeypointsGt::load(data_dir().join("coco_val2017_mmpose_gt.json")).unwrap();
    assert_eq!(gt.images.len(), 4);
    assert_eq!(gt.annotations.len(), 14);
    assert!(gt.annotations.iter().all(|a| a.segmentation.is_some()));
    assert_eq!(gt.categories[0].keypoints.len(), 17);
    // The evaluator can be reused across result files.
    let results =
        load_keypoint_results(data_dir().join("coco_val2017_mmpose_results.json"), &gt).unwrap();
    let evaluator = CocoEvaluator::new(&gt);
    assert_eq!(
        evaluator.evaluate(&results).unwrap(),
        evaluator.evaluate(&results).unwrap()
    );
}

/// A scratch folder for bad-input files, named after the test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("posekit-coco-eval-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gt_path() -> PathBuf {
    data_dir().join("coco_val2017_mmpose_gt.json")
}

fn result(image_id: i64, n: usize, score: &str) -> String {
    let kps = vec!["100.5"; n].join(", ");
    format!(
        r#"{{"image_id": {image_id}, "category_id": 1, "keypoints": [{kps}], "score": {score}}}"#
    )
}

fn eval_error(name: &str, results_text: &str) -> String {
    let dir = scratch(name);
    let path = dir.join("results.json");
    std::fs::write(&path, results_text).unwrap();
    let err = evaluate_coco_files(gt_path(), &path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = err.to_string();
    assert!(!text.contains('\n'), "error is not one line: {text}");
    text
}

#[test]
fn bad_results_name_the_file_and_the_field() {
    let text = format!("[{}, {}]", result(785, 51, "0.9"), result(785, 48, "0.5"));
    let err = eval_error("short", &text);
    assert!(
        err.ends_with(
            "results.json: [1].keypoints: expected 51 numbers (17 keypoints x 3), got 48"
        ),
        "{err}"
    );

    let err = eval_error("nan", &format!("[{}]", result(785, 51, "NaN")));
    assert!(
        err.contains("results.json: [0].score: NaN is not a valid JSON number"),
        "{err}"
    );

    let err = eval_error("inf", &format!("[{}]", result(785, 51, "1e999")));
    assert!(err.contains("results.json: [0].score:"), "{err}");

    let err = eval_error(
        "unknown-image",
        &format!("[{}, {}]", result(785, 51, "0.9"), result(1, 51, "0.9")),
    );
    assert!(
        err.ends_with("results.json: [1].image_id: image 1 is not in the ground truth"),
        "{err}"
    );

    let err = eval_error(
        "missing",
        r#"[{"image_id": 785, "category_id": 1, "score": 0.3}]"#,
    );
    assert!(
        err.contains("results.json: [0]: missing field `keypoints`"),
        "{err}"
    );

    let err = eval_error("malformed", "[{\"image_id\": 785,, }]");
    assert!(
        err.contains("results.json") && err.contains("line 1"),
        "{err}"
    );

    let err = eval_error("not-a-list", r#"{"annotations": []}"#);
    assert!(
        err.contains("results.json: invalid type: map, expected a sequence"),
        "{err}"
    );
}

#[test]
fn bad_ground_truth_names_the_file_and_the_field() {
    let dir = scratch("gt");
    let text = std::fs::read_to_string(gt_path()).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["annotations"][3]["keypoints"]
        .as_array_mut()
        .unwrap()
        .pop();
    let bad = dir.join("gt.json");
    std::fs::write(&bad, value.to_string()).unwrap();
    let err = CocoKeypointsGt::load(&bad).unwrap_err().to_string();
    assert!(
        err.ends_with(
            "gt.json: annotations[3].keypoints: expected 51 numbers (17 keypoints x 3), got 50"
        ),
        "{err}"
    );

    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["annotations"][2]
        .as_object_mut()
        .unwrap()
        .remove("num_keypoints");
    std::fs::write(&bad, value.to_string()).unwrap();
    let err = CocoKeypointsGt::load(&bad).unwrap_err().to_string();
    assert!(
        err.contains("gt.json: annotations[2]: missing field `num_keypoints`"),
        "{err}"
    );

    let err = CocoKeypointsGt::load(dir.join("absent.json")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("absent.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}
