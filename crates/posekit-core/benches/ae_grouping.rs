//! Associative-embedding grouping speed: `cargo bench -p posekit-core --bench ae_grouping`.
//!
//! One image's grouping as HigherHRNet does it after aggregation: a 128x128 map, 17 COCO joints,
//! 30 people (heatmaps from `AeTargetConfig::encode` at 0.9 plus 0.005 uniform noise, one tag
//! dimension (person i's tag 2i near its joints, uniform in [-30, 30] elsewhere),
//! one joint in ten missing so that `refine` has work to do): NMS (5x5) + top-30 per joint +
//! `match_by_tag` + `adjust` + `refine`. Target: < 5 ms on one core (the code is
//! single-threaded). Also printed: the generic JV matcher, and grouping without `refine`.
//!
//! Prints the median and 90th percentile wall time of many runs after warm-up, and the mean
//! on-CPU time of the thread (Linux), which is what one core costs when the machine is busy.

use std::hint::black_box;
use std::time::Instant;

use ndarray::{Array3, Array4};
use posekit_core::codecs::associative_embedding::{AeGroupingConfig, AeTargetConfig, Matcher};

/// Nanoseconds this thread has spent on a CPU (`CLOCK_THREAD_CPUTIME_ID`), on Linux. On a
/// machine shared with other work the wall time includes waiting for a core; on-CPU time is
/// the cost of the code itself on one core.
#[cfg(target_os = "linux")]
fn thread_cpu_ns() -> Option<u64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one Timespec (two 64-bit fields on x86_64/aarch64 Linux).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_ns() -> Option<u64> {
    None
}

/// Timings over `runs` calls of `f` after warm-up calls: (median wall ms, p90 wall ms, mean
/// on-CPU ms if the platform reports it).
fn timings_ms(runs: usize, mut f: impl FnMut()) -> (f64, f64, Option<f64>) {
    for _ in 0..runs / 10 + 1 {
        f();
    }
    let cpu_start = thread_cpu_ns();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cpu = match (cpu_start, thread_cpu_ns()) {
        (Some(a), Some(b)) => Some((b - a) as f64 / 1e6 / runs as f64),
        _ => None,
    };
    t.sort_by(f64::total_cmp);
    (t[runs / 2], t[runs * 9 / 10], cpu)
}

fn report(label: &str, (median, p90, cpu): (f64, f64, Option<f64>)) {
    let cpu = cpu.map_or("n/a".to_string(), |c| format!("{c:.3} ms"));
    println!("  {label:<38} median {median:.3} ms  p90 {p90:.3} ms  on-CPU mean {cpu}");
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
    let t = timings_ms(runs, || {
        black_box(
            cfg.decode(black_box(heatmaps.view()), black_box(tags.view()))
                .unwrap(),
        );
    });
    report("default (Munkres, adjust, refine):", t);

    let mut jv = cfg.clone();
    jv.matcher = Matcher::ShortestPath;
    let t = timings_ms(runs, || {
        black_box(
            jv.decode(black_box(heatmaps.view()), black_box(tags.view()))
                .unwrap(),
        );
    });
    report("JV matcher (adjust, refine):", t);

    let mut no_refine = cfg.clone();
    no_refine.refine = false;
    let t = timings_ms(runs, || {
        black_box(
            no_refine
                .decode(black_box(heatmaps.view()), black_box(tags.view()))
                .unwrap(),
        );
    });
    report("Munkres, adjust, no refine:", t);
}
