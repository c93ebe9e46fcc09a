//! COCO mask speed on the real annotations the tests use (coco-mini val/train 2017, mmpose's
//! test_coco, OCHuman: 309 segmentations on images of up to 640x640), to compare with
//! pycocotools on the same files:
//!
//! ```text
//! cargo bench -p posekit-core --bench masks
//! /work/venv-fixtures/bin/python tools/bench/time_pycocotools_masks.py
//! ```
//!
//! Prints, per annotation, the median wall time over passes and the mean on-CPU time (Linux) of:
//! `annToRLE` (polygons rasterised and merged, RLEs parsed and checked), the compressed string
//! both ways, `area`, and the decode to a dense `[h, w]` array; and the union of all the people
//! of each image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use posekit_core::masks::{Rle, Segmentation};
use serde::Deserialize;

#[path = "support/thread_cpu.rs"]
mod thread_cpu;

const PASSES: usize = 30;
const FILES: [&str; 4] = [
    "masks/coco_mini_person_keypoints_val2017.json",
    "masks/coco_mini_person_keypoints_train2017.json",
    "coco_eval/coco_val2017_mmpose_gt.json",
    "masks/ochuman_test.json",
];

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<Image>,
    annotations: Vec<Annotation>,
}

#[derive(Deserialize)]
struct Image {
    id: i64,
    height: u32,
    width: u32,
}

#[derive(Deserialize)]
struct Annotation {
    image_id: i64,
    segmentation: Option<Segmentation>,
}

/// One segmentation and its image's size.
struct Item {
    image: (String, i64),
    height: u32,
    width: u32,
    segmentation: Segmentation,
}

fn load(dir: &Path) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    for name in FILES {
        let path = dir.join(name);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: CocoFile =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let sizes: BTreeMap<i64, (u32, u32)> = file
            .images
            .iter()
            .map(|im| (im.id, (im.height, im.width)))
            .collect();
        for ann in file.annotations {
            let (Some(segmentation), Some(&(height, width))) =
                (ann.segmentation, sizes.get(&ann.image_id))
            else {
                continue;
            };
            items.push(Item {
                image: (name.to_string(), ann.image_id),
                height,
                width,
                segmentation,
            });
        }
    }
    Ok(items)
}

/// Timing of `PASSES` calls of `f`, which handles `n` items, after one warm-up call.
struct Timing {
    /// Median wall time per item.
    wall: Duration,
    /// Mean on-CPU time per item, where the platform reports it.
    cpu: Option<Duration>,
}

fn per_item(n: usize, mut f: impl FnMut()) -> Timing {
    f();
    let cpu_start = thread_cpu::thread_cpu_ns();
    let mut times: Vec<Duration> = (0..PASSES)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    let cpu = match (cpu_start, thread_cpu::thread_cpu_ns()) {
        (Some(a), Some(b)) => Some(Duration::from_nanos((b - a) / (PASSES * n) as u64)),
        _ => None,
    };
    times.sort();
    Timing {
        wall: times[PASSES / 2] / n as u32,
        cpu,
    }
}

fn us(t: Duration) -> f64 {
    t.as_secs_f64() * 1e6
}

fn report(label: &str, t: &Timing, unit: &str) {
    let cpu = t
        .cpu
        .map_or("n/a".to_string(), |c| format!("{:.2} us", us(c)));
    println!(
        "  {label:<32} median {:>8.2} us  on-CPU mean {cpu:>10} {unit}",
        us(t.wall)
    );
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let items = match load(&dir) {
        Ok(items) => items,
        Err(e) => return eprintln!("masks: {e}"),
    };
    let n = items.len();
    let to_rle = |item: &Item| {
        item.segmentation
            .to_rle(item.height, item.width)
            .expect("the committed annotations make masks")
    };
    let rles: Vec<Rle> = items.iter().map(to_rle).collect();
    let strings: Vec<String> = rles.iter().map(Rle::to_compressed).collect();
    let pixels: u64 = rles
        .iter()
        .map(|r| u64::from(r.height()) * u64::from(r.width()))
        .sum();
    let area: u64 = rles.iter().map(Rle::area).sum();
    println!(
        "masks: {n} annotations, mean image {:.0} pixels, mean mask {:.0} pixels; {PASSES} passes, per annotation:",
        pixels as f64 / n as f64,
        area as f64 / n as f64
    );

    report(
        "annToRLE (Segmentation::to_rle)",
        &per_item(n, || {
            for item in &items {
                std::hint::black_box(to_rle(item));
            }
        }),
        "",
    );
    report(
        "to compressed string",
        &per_item(n, || {
            for rle in &rles {
                std::hint::black_box(rle.to_compressed());
            }
        }),
        "",
    );
    report(
        "from compressed string",
        &per_item(n, || {
            for (rle, s) in rles.iter().zip(&strings) {
                std::hint::black_box(Rle::from_compressed(rle.height(), rle.width(), s).unwrap());
            }
        }),
        "",
    );
    report(
        "area",
        &per_item(n, || {
            for rle in &rles {
                std::hint::black_box(rle.area());
            }
        }),
        "",
    );
    report(
        "decode to [h, w] u8",
        &per_item(n, || {
            for rle in &rles {
                std::hint::black_box(rle.decode());
            }
        }),
        "",
    );

    let mut by_image: BTreeMap<&(String, i64), Vec<Rle>> = BTreeMap::new();
    for (item, rle) in items.iter().zip(&rles) {
        by_image.entry(&item.image).or_default().push(rle.clone());
    }
    let groups: Vec<&Vec<Rle>> = by_image.values().collect();
    let t = per_item(groups.len(), || {
        for group in &groups {
            std::hint::black_box(Rle::union(group).unwrap());
        }
    });
    let unit = format!(
        "per image ({} images, {:.1} people each)",
        groups.len(),
        n as f64 / groups.len() as f64
    );
    report("union of an image's people", &t, &unit);
}
