//! Associative-embedding grouping speed: `cargo bench -p posekit-core --bench ae_grouping`.
//!
//! One image's grouping as HigherHRNet does it after aggregation: a 128x128 map, 17 COCO joints,
//! 30 people (heatmaps from `AeTargetConfig::encode` at 0.9 plus 0.005 uniform noise, one tag
//! dimension (person i's tag 2i near its joints, uniform in [-30, 30] elsewhere),
//! one joint in ten missing so that `refine` has work to do): NMS (5x5) + top-30 per joint +
//! `match_by_tag` + `adjust` + `refine`. Target: < 5 ms on one core (the code is
//! single-threaded). Also printed: the generic JV matcher, and grouping without `refine`.
//!
//! Prints the median (and 90th percentile) of many runs after warm-up.

use std::hint::black_box;
use std::time::Instant;

use ndarray::{Array3, Array4};
use posekit_core::codecs::associative_embedding::{AeGroupingConfig, AeTargetConfig, Matcher};

/// (median, p90) wall time in milliseconds of `runs` calls of `f`, after warm-up calls.
fn timings_ms(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..runs / 10 + 1 {
        f();
    }
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[runs / 2], t[runs * 9 / 10])
}

struct Lcg(u64);
impl Lcg {
    fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// 30 people on a 6 x 5 grid, joints scattered around each person's centre.
fn synthetic_image() -> (Array3<f32>, Array4<f32>) {
    let (k, h, w, n) = (17usize, 128usize, 128usize, 30usize);
    let mut rng = Lcg(42);
    let mut people = Array3::<f32>::zeros((n, k, 3));
    for p in 0..n {
        let cx = 11.0 + (p % 6) as f32 * 21.0;
        let cy = 12.0 + (p / 6) as f32 * 26.0;
        for j in 0..k {
            people[[p, j, 0]] = cx + (rng.uniform() - 0.5) * 16.0;
            people[[p, j, 1]] = cy + (rng.uniform() - 0.5) * 20.0;
            people[[p, j, 2]] = if rng.uniform() < 0.1 { 0.0 } else { 1.0 };
        }
    }
    let mut heatmaps = AeTargetConfig::new([w, h])
        .encode(people.view())
        .unwrap()
        .heatmaps;
    heatmaps.mapv_inplace(|v| v * 0.9);
    for v in heatmaps.iter_mut() {
        *v += rng.uniform() * 0.005;
    }
    let mut tags = Array4::<f32>::zeros((k, h, w, 1));
    for v in tags.iter_mut() {
        *v = (rng.uniform() - 0.5) * 60.0;
    }
    for p in 0..n {
        for j in 0..k {
            if people[[p, j, 2]] == 0.0 {
                continue;
            }
            let (x, y) = (people[[p, j, 0]] as i64, people[[p, j, 1]] as i64);
            for yy in (y - 3).max(0)..(y + 4).min(h as i64) {
                for xx in (x - 3).max(0)..(x + 4).min(w as i64) {
                    tags[[j, yy as usize, xx as usize, 0]] = p as f32 * 2.0 + rng.uniform() * 0.1;
                }
            }
        }
    }
    (heatmaps, tags)
}

fn main() {
    let (heatmaps, tags) = synthetic_image();
    let cfg = AeGroupingConfig::coco();
    let poses = cfg.decode(heatmaps.view(), tags.view()).unwrap();
    let found: usize = poses
        .iter()
        .map(|p| p.keypoints.iter().filter(|k| k.score > 0.0).count())
        .sum();
    println!(
        "AE grouping, 128x128, 17 joints, 30 people: {} people, {} joints found",
        poses.len(),
        found
    );

    let runs = 200;
    let (med, p90) = timings_ms(runs, || {
        black_box(
            cfg.decode(black_box(heatmaps.view()), black_box(tags.view()))
                .unwrap(),
        );
    });
    println!("  default (Munkres, adjust, refine):   median {med:.3} ms  p90 {p90:.3} ms");

    let mut jv = cfg.clone();
    jv.matcher = Matcher::ShortestPath;
    let (med, p90) = timings_ms(runs, || {
        black_box(
            jv.decode(black_box(heatmaps.view()), black_box(tags.view()))
                .unwrap(),
        );
    });
    println!("  JV matcher (adjust, refine):         median {med:.3} ms  p90 {p90:.3} ms");

    let mut no_refine = cfg.clone();
    no_refine.refine = false;
    let (med, p90) = timings_ms(runs, || {
        black_box(
            no_refine
                .decode(black_box(heatmaps.view()), black_box(tags.view()))
                .unwrap(),
        );
    });
    println!("  Munkres, adjust, no refine:          median {med:.3} ms  p90 {p90:.3} ms");
}
