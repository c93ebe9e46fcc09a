//! COCO keypoint evaluation speed on a 5,000-image / 30,000-result set, to compare with
//! pycocotools on the same files (the target is at least 10x faster).
//!
//! ```text
//! python3 tools/bench/make_coco_bench_set.py /tmp/posekit-coco-bench
//! cargo bench -p posekit-core --bench coco_eval -- /tmp/posekit-coco-bench
//! .venv-fixtures/bin/python tools/bench/time_pycocotools.py /tmp/posekit-coco-bench
//! ```
//!
//! Prints the best and median of several runs of load + evaluate (parse and validate both
//! files, then evaluate) and of evaluate alone, plus the stats so they can be compared with
//! pycocotools' line for line. Without the set it says how to make it and exits.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use posekit_core::eval::coco::CocoEvaluator;
use posekit_core::formats::coco::{load_keypoint_results, CocoKeypointsGt};

const REPEATS: usize = 10;

fn main() {
    // `cargo bench` passes `--bench`; the first other argument is the set's folder.
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/posekit-coco-bench"));
    let gt_path = dir.join("gt.json");
    let results_path = dir.join("results.json");
    if !gt_path.exists() || !results_path.exists() {
        println!(
            "coco_eval: no benchmark set in {}; make it with\n  python3 tools/bench/make_coco_bench_set.py {}",
            dir.display(),
            dir.display()
        );
        return;
    }

    let mut load_and_eval = Vec::new();
    let mut eval_only = Vec::new();
    let mut stats = None;
    for _ in 0..REPEATS {
        let start = Instant::now();
        let gt = match CocoKeypointsGt::load(&gt_path) {
            Ok(gt) => gt,
            Err(e) => return eprintln!("coco_eval: {e}"),
        };
        let results = match load_keypoint_results(&results_path, &gt) {
            Ok(r) => r,
            Err(e) => return eprintln!("coco_eval: {e}"),
        };
        let loaded = Instant::now();
        let evaluated = CocoEvaluator::new(&gt).evaluate(&results);
        let end = Instant::now();
        match evaluated {
            Ok(s) => stats = Some(s),
            Err(e) => return eprintln!("coco_eval: {e}"),
        }
        load_and_eval.push(end - start);
        eval_only.push(end - loaded);
        std::hint::black_box(&results);
    }
    let gt_count = CocoKeypointsGt::load(&gt_path).map(|g| (g.images.len(), g.annotations.len()));
    if let Ok((images, annotations)) = gt_count {
        println!(
            "coco_eval: {images} images, {annotations} annotations ({})",
            dir.display()
        );
    }
    report("load + evaluate", &mut load_and_eval);
    report("evaluate alone ", &mut eval_only);
    if let Some(stats) = stats {
        let values: Vec<String> = stats.values().iter().map(|v| format!("{v:?}")).collect();
        println!("stats: {}", values.join(" "));
    }
}

fn report(label: &str, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label}: best {:8.1} ms, median {:8.1} ms ({} runs, one thread)",
        ms(times[0]),
        ms(times[times.len() / 2]),
        times.len()
    );
}
