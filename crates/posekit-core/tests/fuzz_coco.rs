//! Property-based tests of the COCO parsers (issue 7, item 10): mutated and truncated real
//! ground-truth and result files, and random documents made of their keys. Whatever the input,
//! loading (and evaluating what loads) never panics, and every error is one line naming the
//! file. The default suite runs a few thousand cases per parser; the `#[ignore]` tests run
//! 100,000 (`cargo test -p posekit-core --test fuzz_coco -- --ignored`).

#[path = "support/fuzz.rs"]
mod fuzz;
#[path = "support/fuzz_json.rs"]
mod fuzz_json;

use std::path::{Path, PathBuf};

use posekit_core::eval::coco::CocoEvaluator;
use posekit_core::formats::coco::{keypoint_results_from_slice, CocoKeypointsGt};
use rand::Rng;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(data(name)).unwrap()
}

struct Seeds {
    bytes: Vec<Vec<u8>>,
    values: Vec<serde_json::Value>,
    keys: Vec<String>,
}

fn seeds(names: &[&str]) -> Seeds {
    let bytes: Vec<Vec<u8>> = names.iter().map(|n| read(n)).collect();
    let values: Vec<serde_json::Value> = bytes
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    let mut keys = Vec::new();
    values.iter().for_each(|v| fuzz_json::keys(v, &mut keys));
    Seeds {
        bytes,
        values,
        keys,
    }
}

/// Half byte-level mutations (syntax), half structure-aware ones (validation).
fn case(rng: &mut fuzz::ChaCha8Rng, s: &Seeds) -> Vec<u8> {
    if rng.random_bool(0.5) {
        fuzz::mutated_seed(rng, &s.bytes)
    } else {
        fuzz_json::json_case(rng, &s.values, &s.keys)
    }
}

const GT_SEEDS: [&str; 2] = [
    "coco_eval/random_001_gt.json",
    "coco_eval/random_006_gt.json",
];

fn ground_truth(cases: usize, seed: u64) {
    let s = seeds(&GT_SEEDS);
    fuzz::run(
        "coco-gt",
        "gt.json",
        cases,
        seed,
        |rng| case(rng, &s),
        |bytes| {
            let strict = CocoKeypointsGt::from_slice("gt.json", bytes);
            let lenient = CocoKeypointsGt::from_slice_for_eval("gt.json", bytes);
            // What the strict loader accepts, the evaluation loader accepts too.
            if let (Ok(_), Err(e)) = (&strict, &lenient) {
                return Err(format!("gt.json: strict accepts, evaluation refuses: {e}"));
            }
            let gt = lenient.map_err(|e| e.to_string())?;
            // An empty result list is evaluated too: every accepted ground truth can be scored.
            let _ = CocoEvaluator::new(&gt).evaluate(&[]);
            Ok(())
        },
    );
}

fn results(cases: usize, seed: u64) {
    let gt = CocoKeypointsGt::load(data("coco_eval/random_001_gt.json")).unwrap();
    let s = seeds(&["coco_eval/random_001_results.json"]);
    let evaluator = CocoEvaluator::new(&gt);
    fuzz::run(
        "coco-results",
        "results.json",
        cases,
        seed,
        |rng| case(rng, &s),
        |bytes| {
            let results = keypoint_results_from_slice("results.json", bytes, &gt)
                .map_err(|e| e.to_string())?;
            // Loaded results are scored without a panic (an error is fine, but there is none
            // for validated results).
            evaluator
                .evaluate(&results)
                .map(|_| ())
                .map_err(|e| format!("results.json: validated but not scored: {e}"))
        },
    );
}

#[test]
fn ground_truth_never_panics_and_errors_name_the_file() {
    ground_truth(fuzz::DEFAULT_CASES, 1);
}

#[test]
fn results_never_panic_and_errors_name_the_file() {
    results(fuzz::DEFAULT_CASES, 2);
}

#[test]
#[ignore = "long: 100,000 cases"]
fn ground_truth_long() {
    ground_truth(fuzz::LONG_CASES, 101);
}

#[test]
#[ignore = "long: 100,000 cases"]
fn results_long() {
    results(fuzz::LONG_CASES, 102);
}
