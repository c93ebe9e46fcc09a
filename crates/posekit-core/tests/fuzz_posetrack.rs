//! Property-based tests of the PoseTrack18 reader and the MOTA evaluation: mutated and truncated
//! fixture files (ground truth and results, byte-level and structure-aware). Whatever the input,
//! loading and evaluating what loads never panics, and every error is one line naming the file.
//! The `#[ignore]` tests run 100,000 cases
//! (`cargo test -p posekit-core --test fuzz_posetrack -- --ignored`).

#[path = "support/fuzz.rs"]
mod fuzz;
#[path = "support/fuzz_json.rs"]
mod fuzz_json;

use std::path::{Path, PathBuf};

use posekit_core::eval::posetrack::evaluate;
use posekit_core::formats::posetrack::{videos_from_slice, PoseTrackVideo};
use rand::Rng;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/posetrack")
        .join(name)
}

struct Seeds {
    bytes: Vec<Vec<u8>>,
    values: Vec<serde_json::Value>,
    keys: Vec<String>,
}

fn seeds(name: &str) -> Seeds {
    let bytes = vec![std::fs::read(data(name)).unwrap()];
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

fn case(rng: &mut fuzz::ChaCha8Rng, s: &Seeds) -> Vec<u8> {
    if rng.random_bool(0.5) {
        fuzz::mutated_seed(rng, &s.bytes)
    } else {
        fuzz_json::json_case(rng, &s.values, &s.keys)
    }
}

fn load(name: &str) -> PoseTrackVideo {
    let bytes = std::fs::read(data(name)).unwrap();
    videos_from_slice(&data(name), &bytes).unwrap().remove(0)
}

/// Mutates `which` ("gt" or "pred") of the sequence 009473 and evaluates it against the other.
fn run(which: &'static str, cases: usize, seed: u64) {
    let name = format!("{which}/009473_mpii_test.json");
    let s = seeds(&name);
    let (gt, pred) = (
        load("gt/009473_mpii_test.json"),
        load("pred/009473_mpii_test.json"),
    );
    let file = format!("{which}.json");
    fuzz::run(
        &format!("posetrack-{which}"),
        &file,
        cases,
        seed,
        |rng| case(rng, &s),
        |bytes| {
            let videos = videos_from_slice(Path::new(&file), bytes).map_err(|e| e.to_string())?;
            let Some(video) = videos.into_iter().next() else {
                return Ok(());
            };
            let pair = if which == "gt" {
                (video, pred.clone())
            } else {
                (gt.clone(), video)
            };
            match evaluate(&[pair]) {
                Ok(_) => Ok(()),
                // an error about the other, unmutated file is fine, if it says which
                Err(e) if e.to_string().contains("009473_mpii_test.json") => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        },
    );
}

#[test]
fn ground_truth_never_panics_and_errors_name_the_file() {
    run("gt", fuzz::DEFAULT_CASES, 11);
}

#[test]
fn results_never_panic_and_errors_name_the_file() {
    run("pred", fuzz::DEFAULT_CASES, 12);
}

#[test]
#[ignore = "long: 100,000 cases"]
fn ground_truth_long() {
    run("gt", fuzz::LONG_CASES, 111);
}

#[test]
#[ignore = "long: 100,000 cases"]
fn results_long() {
    run("pred", fuzz::LONG_CASES, 112);
}
