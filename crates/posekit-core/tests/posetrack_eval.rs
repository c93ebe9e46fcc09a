//! PoseTrack MOTA against poseval + motmetrics: sequences built from the real PoseTrack18 sample
//! annotations by `tools/fixtures/posetrack_mota.py`, whose numbers come from a re-implementation
//! of poseval on top of `motmetrics` (checked there against poseval's own code).

use std::path::{Path, PathBuf};

use posekit_core::eval::posetrack::{evaluate_paths, PoseTrackReport};
use posekit_core::formats::posetrack::{load_videos, write_results, POSETRACK_JOINT_NAMES};
use serde_json::Value;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/posetrack")
}

fn expected() -> Value {
    expected_in("expected.json")
}

fn expected_in(name: &str) -> Value {
    let text = std::fs::read_to_string(data().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn close(a: f64, b: &Value, what: &str) {
    match b.as_f64() {
        Some(b) => assert!((a - b).abs() <= 1e-9, "{what}: posekit {a}, motmetrics {b}"),
        None => assert!(a.is_nan(), "{what}: posekit {a}, motmetrics NaN"),
    }
}

fn check(report: &PoseTrackReport, exp: &Value) {
    let names: Vec<&str> = exp["joints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, POSETRACK_JOINT_NAMES);
    for (j, c) in report.counts.iter().enumerate() {
        let n = POSETRACK_JOINT_NAMES[j];
        let count = |k: &str| exp[k][j].as_u64().unwrap();
        assert_eq!(c.misses, count("num_misses"), "{n} misses");
        assert_eq!(c.switches, count("num_switches"), "{n} switches");
        assert_eq!(
            c.false_positives,
            count("num_false_positives"),
            "{n} false positives"
        );
        assert_eq!(c.objects, count("num_objects"), "{n} objects");
        assert_eq!(c.detections(), count("num_detections"), "{n} detections");
        close(c.sum_d, &exp["sum_d"][j], &format!("{n} sum of D"));
        let s = &report.per_joint[j];
        close(s.mota, &exp["mota"][j], &format!("{n} MOTA"));
        close(s.motp, &exp["motp"][j], &format!("{n} MOTP"));
        close(s.precision, &exp["pre"][j], &format!("{n} precision"));
        close(s.recall, &exp["rec"][j], &format!("{n} recall"));
    }
    let t = POSETRACK_JOINT_NAMES.len();
    close(report.total.mota, &exp["mota"][t], "total MOTA");
    close(report.total.motp, &exp["motp"][t], "total MOTP");
    close(report.total.precision, &exp["pre"][t], "total precision");
    close(report.total.recall, &exp["rec"][t], "total recall");
    for (name, value) in report.entries() {
        close(value, &exp["table"][name], name);
    }
}

#[test]
fn mota_equals_poseval_with_motmetrics() {
    let report = evaluate_paths(data().join("gt"), data().join("pred")).unwrap();
    assert_eq!(report.sequences, 3);
    check(&report, &expected());
    // the fixture exercises every kind of error
    let sum = |f: fn(&posekit_core::eval::posetrack::MotCounts) -> u64| -> u64 {
        report.counts.iter().map(f).sum()
    };
    assert!(sum(|c| c.misses) > 0 && sum(|c| c.switches) > 0 && sum(|c| c.false_positives) > 0);
    println!("{report}");
}

#[test]
fn mota_equals_poseval_with_motmetrics_on_hard_predictions() {
    // Ids shuffled among people now and then, and decoys within the gate of real people: the
    // per-frame assignment and the switch/transfer bookkeeping have real choices to make.
    let report = evaluate_paths(data().join("gt"), data().join("pred_stress")).unwrap();
    check(&report, &expected_in("expected_stress.json"));
    assert!(report.total.mota < 0.0, "{}", report.total.mota);
}

#[test]
fn written_results_score_the_same() {
    // Reading the predictions and writing them back in the results format changes nothing.
    let dir = std::env::temp_dir().join(format!("posekit-posetrack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(data().join("pred")).unwrap() {
        let path = entry.unwrap().path();
        let video = load_videos(&path).unwrap().remove(0);
        write_results(dir.join(path.file_name().unwrap()), &video).unwrap();
    }
    let report = evaluate_paths(data().join("gt"), &dir).unwrap();
    check(&report, &expected());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ground_truth_against_itself_is_perfect() {
    let report = evaluate_paths(data().join("gt"), data().join("gt")).unwrap();
    for c in &report.counts {
        assert_eq!((c.misses, c.switches, c.false_positives), (0, 0, 0));
    }
    assert_eq!(report.total.mota, 100.0);
}

#[test]
fn bad_input_is_an_error_naming_the_file() {
    let gt = data().join("gt/009473_mpii_test.json");
    let other = data().join("pred/003418_mpii_test.json");
    let msg = evaluate_paths(&gt, &other).unwrap_err().to_string();
    assert!(
        msg.contains("003418_mpii_test.json") && msg.contains("frames"),
        "{msg}"
    );
    let msg = evaluate_paths(data().join("gt"), data().join("nowhere"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nowhere"), "{msg}");
}
