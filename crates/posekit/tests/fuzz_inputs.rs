//! Property-based tests of the parsers of `posekit`'s own inputs (issue 7, item 10): the box
//! file of `infer --boxes` (both spellings, loaded and matched to a picture) and experiment
//! configs (TOML), mutated and truncated, plus structure-aware edits. No panic; every error is
//! one line naming the file. `cargo test -p posekit --test fuzz_inputs -- --ignored` runs
//! 100,000 cases per parser.

#[path = "../../posekit-core/tests/support/fuzz.rs"]
mod fuzz;
#[path = "../../posekit-core/tests/support/fuzz_json.rs"]
mod fuzz_json;

mod common;

use std::path::Path;

use posekit::pipelines::config::ExperimentConfig;
use posekit::pipelines::infer::boxes::BoxIndex;
use posekit::pipelines::infer::inputs::{Input, InputKind};
use posekit_core::formats::coco::CocoKeypointsGt;
use rand::Rng;

const PICTURE: &str = "000000196141.jpg";

fn box_seeds() -> Vec<serde_json::Value> {
    let coco: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::data("coco/test_coco_det_AP_H_56.json")).unwrap(),
    )
    .unwrap();
    let mut coco = coco.as_array().unwrap()[..12].to_vec();
    // The second spelling: file names, some without score.
    let plain: Vec<serde_json::Value> = coco
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.clone();
            let m = e.as_object_mut().unwrap();
            m.remove("image_id");
            m.remove("category_id");
            m.insert("file_name".into(), PICTURE.into());
            if i % 2 == 0 {
                m.remove("score");
            }
            e
        })
        .collect();
    coco.truncate(8);
    vec![coco.into(), plain.into()]
}

fn boxes(cases: usize, seed: u64) {
    let seeds = box_seeds();
    let bytes: Vec<Vec<u8>> = seeds
        .iter()
        .map(|v| serde_json::to_vec_pretty(v).unwrap())
        .collect();
    let mut keys = Vec::new();
    seeds.iter().for_each(|v| fuzz_json::keys(v, &mut keys));
    let gt = CocoKeypointsGt::load(common::data("coco/test_coco.json")).unwrap();
    let inputs = vec![Input {
        path: common::data(&format!("infer/{PICTURE}")),
        kind: InputKind::Image,
        name: PICTURE.into(),
    }];
    let path = Path::new("boxes.json");
    fuzz::run(
        "boxes",
        "boxes.json",
        cases,
        seed,
        |rng| {
            if rng.random_bool(0.5) {
                fuzz::mutated_seed(rng, &bytes)
            } else {
                fuzz_json::json_case(rng, &seeds, &keys)
            }
        },
        |bytes| {
            let index =
                BoxIndex::from_slice(path, bytes, Some(&gt), 0.0).map_err(|e| e.to_string())?;
            index.assign(&inputs).map(|_| ()).map_err(|e| e.to_string())
        },
    );
}

const CONFIG_SEEDS: [&str; 3] = [
    "configs/tiny_hrnet_coco_test.toml",
    "configs/hrnet_w32_coco_256x192.toml",
    "configs/hourglass8_mpii_256x256.toml",
];

/// One `key = value` line of the config replaced by a value of another kind or range.
fn edit_toml_value(rng: &mut fuzz::ChaCha8Rng, text: &str) -> Vec<u8> {
    let lines: Vec<&str> = text.lines().collect();
    let candidates: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains(" = "))
        .collect();
    if candidates.is_empty() {
        return text.as_bytes().to_vec();
    }
    let i = candidates[rng.random_range(0..candidates.len())];
    let key = lines[i].split(" = ").next().unwrap();
    let value = [
        "0",
        "-1",
        "1e308",
        "-0.5",
        "nan",
        "inf",
        "\"\"",
        "[]",
        "[0, 0]",
        "[1e9, 1e9]",
        "true",
        "{}",
        "9223372036854775807",
        "\"x\"",
        "[-1, 3]",
        "0.0",
    ][rng.random_range(0..16)];
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    if rng.random_range(0..5) == 0 {
        out.remove(i);
    } else {
        out[i] = format!("{key} = {value}");
    }
    out.join("\n").into_bytes()
}

fn configs(cases: usize, seed: u64) {
    let texts: Vec<String> = CONFIG_SEEDS
        .iter()
        .map(|p| std::fs::read_to_string(common::repo(p)).unwrap())
        .collect();
    let bytes: Vec<Vec<u8>> = texts.iter().map(|t| t.clone().into_bytes()).collect();
    let origin = Path::new("experiment.toml");
    let base = common::repo("configs");
    fuzz::run(
        "config",
        "experiment.toml",
        cases,
        seed,
        |rng| {
            if rng.random_bool(0.5) {
                let which = rng.random_range(0..texts.len());
                edit_toml_value(rng, &texts[which])
            } else {
                fuzz::mutated_seed(rng, &bytes)
            }
        },
        |bytes| {
            // A config is text: invalid UTF-8 is what `load` reports when reading it.
            let Ok(text) = std::str::from_utf8(bytes) else {
                return Ok(());
            };
            ExperimentConfig::from_toml_str(text, origin, &base)
                .map(|_| ())
                .map_err(|e| e.report())
        },
    );
}

#[test]
fn box_files_never_panic_and_errors_name_the_file() {
    boxes(fuzz::DEFAULT_CASES, 6);
}

#[test]
fn configs_never_panic_and_errors_name_the_file() {
    configs(fuzz::DEFAULT_CASES, 7);
}

#[test]
#[ignore = "long: 100,000 cases"]
fn box_files_long() {
    boxes(fuzz::LONG_CASES, 106);
}

#[test]
#[ignore = "long: 100,000 cases"]
fn configs_long() {
    configs(fuzz::LONG_CASES, 107);
}
