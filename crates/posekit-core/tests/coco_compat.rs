//! `posekit eval coco` accepts exactly what pycocotools' keypoint evaluation accepts (issue 7,
//! item 11): each variant of a valid ground-truth/results pair in `tests/data/coco_compat/`
//! (written by `tools/fixtures/make_coco_compat_fixtures.py`) carries pycocotools' ten stats, or
//! the exception it raised; posekit must give the same stats to 1e-9, or an error.

use std::path::{Path, PathBuf};

use posekit_core::eval::coco::{evaluate_coco_files, CocoStats};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/coco_compat")
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("posekit-coco-compat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_variant_is_treated_as_pycocotools_treats_it() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 13, "only {} variants", files.len());
    let dir = scratch();
    let (mut evaluated, mut refused) = (0, 0);
    let mut failures = Vec::new();
    for file in &files {
        let case: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let name = case["name"].as_str().unwrap();
        let gt = dir.join("gt.json");
        let results = dir.join("results.json");
        std::fs::write(&gt, case["gt"].to_string()).unwrap();
        std::fs::write(&results, case["results"].to_string()).unwrap();
        let got = evaluate_coco_files(&gt, &results);
        match (&case["pycocotools"]["stats"], got) {
            (serde_json::Value::Array(want), Ok(stats)) => {
                evaluated += 1;
                for ((label, g), w) in CocoStats::names().iter().zip(stats.values()).zip(want) {
                    let w = w.as_f64().unwrap();
                    if (g - w).abs() > 1e-9 {
                        failures.push(format!("{name} {label}: posekit {g}, pycocotools {w}"));
                    }
                }
            }
            (serde_json::Value::Array(_), Err(e)) => failures.push(format!(
                "{name}: refused ({e}) but pycocotools evaluates it"
            )),
            (_, Ok(_)) => failures.push(format!(
                "{name}: evaluated but pycocotools raises {}",
                case["pycocotools"]["error"]
            )),
            (_, Err(e)) => {
                refused += 1;
                let text = e.to_string();
                // A refusal is one line that names the file at fault.
                assert!(
                    !text.contains('\n')
                        && (text.contains("gt.json") || text.contains("results.json")),
                    "{name}: {text}"
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        evaluated >= 13 && refused >= 3,
        "{evaluated} evaluated, {refused} refused"
    );
}
