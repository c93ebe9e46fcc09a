//! Associative-embedding grouping speed: `cargo bench -p posekit-core --bench ae_grouping`.
//!
//! One image's grouping as HigherHRNet does it after aggregation: a 128x128 map, 17 COCO joints,
//! 30 people (heatmaps from `AeCodec::encode` at 0.9 plus 0.005 uniform noise, one tag
//! dimension (person i's tag 2i near its joints, uniform in [-30, 30] elsewhere),
//! one joint in ten missing so that `refine` has work to do): NMS (5x5) + top-30 per joint +
//! `match_by_tag` + `adjust` + `refine`. Target: < 5 ms on one core (the code is
//! single-threaded). Also printed: the generic JV matcher, and grouping without `refine`.
//!
//! Two scenes:
//! * "30 people": every person has its nose (the first joint of the grouping order, which
//!   seeds people), so matching finds exactly the 30 people. This is the target case.
//! * "noses missing too": the nose is dropped like any other joint. A person without a nose
//!   is started by a later joint, and when a joint then has more candidates than there are
//!   people, the surplus candidates must take some person's column in the assignment. With
//!   one tag dimension, costs `round(|d|) * 100` add up along a line: moving every joint of
//!   a chain of people one person over costs exactly as much as the direct assignment, and
//!   Munkres' tie-breaking (HigherHRNet's, reproduced here) may pick the chain, whose moved
//!   joints are then over `tag_threshold` and start new people. Once more than
//!   `max_num_people` people exist, the later ones never take part in matching and every
//!   joint of theirs becomes a one-joint person: 59 "people" for 30. That is what HigherHRNet
//!   itself does on this input, and it makes `refine` search for 16 joints of each split, so
//!   it is kept as the heavy case.
//!
//! Prints the median and 90th percentile wall time of many runs after warm-up, and the mean
//! on-CPU time of the thread (Linux), which is what one core costs when the machine is busy.

use std::hint::black_box;
use std::time::Instant;

use ndarray::{Array3, Array4};
use posekit_core::codecs::associative_embedding::{AeCodec, Matcher};

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

/// One synthetic image: `[K, H, W]` heatmaps, `[K, H, W, 1]` tags and the ground truth
/// `[30, K, 3]` people (x, y, visible).
struct Scene {
    heatmaps: Array3<f32>,
    tags: Array4<f32>,
    people: Array3<f32>,
}

/// 30 people on a 6 x 5 grid, joints scattered around each person's centre, one joint in ten
/// missing; `seed_joint` (the first joint of the grouping order) is kept for everyone when
/// given. The random draws do not depend on it, so both scenes place the same joints.
fn synthetic_image(seed_joint: Option<usize>) -> Scene {
    let (k, h, w, n) = (17usize, 128usize, 128usize, 30usize);
    let mut rng = Lcg(42);
    let mut people = Array3::<f32>::zeros((n, k, 3));
    for p in 0..n {
        let cx = 11.0 + (p % 6) as f32 * 21.0;
        let cy = 12.0 + (p / 6) as f32 * 26.0;
        for j in 0..k {
            people[[p, j, 0]] = cx + (rng.uniform() - 0.5) * 16.0;
            people[[p, j, 1]] = cy + (rng.uniform() - 0.5) * 20.0;
            let missing = rng.uniform() < 0.1 && seed_joint != Some(j);
            people[[p, j, 2]] = if missing { 0.0 } else { 1.0 };
        }
    }
    let mut heatmaps = AeCodec::coco([w, h])
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
    Scene {
        heatmaps,
        tags,
        people,
    }
}

/// People found, joints found by matching (refine off) and visible joints in the ground truth.
fn describe(scene: &Scene, codec: &AeCodec) -> String {
    let mut matching_only = codec.clone();
    matching_only.decoding.refine = false;
    let poses = matching_only
        .decode(scene.heatmaps.view(), scene.tags.view())
        .unwrap();
    let matched: usize = poses
        .iter()
        .map(|p| p.keypoints.iter().filter(|k| k.score > 0.0).count())
        .sum();
    let visible = scene
        .people
        .iter()
        .skip(2)
        .step_by(3)
        .filter(|&&v| v > 0.0)
        .count();
    format!(
        "{} people found for {}, {matched} joints grouped of {visible} visible",
        poses.len(),
        scene.people.dim().0
    )
}

fn bench_scene(title: &str, scene: &Scene, codec: &AeCodec, runs: usize) {
    println!("{title}: {}", describe(scene, codec));
    let (heatmaps, tags) = (scene.heatmaps.view(), scene.tags.view());
    let decode = |c: &AeCodec| {
        black_box(c.decode(black_box(heatmaps), black_box(tags)).unwrap());
    };
    report(
        "default (Munkres, adjust, refine):",
        timings_ms(runs, || decode(codec)),
    );
    let mut jv = codec.clone();
    jv.decoding.matcher = Matcher::ShortestPath;
    report(
        "JV matcher (adjust, refine):",
        timings_ms(runs, || decode(&jv)),
    );
    let mut no_refine = codec.clone();
    no_refine.decoding.refine = false;
    report(
        "Munkres, adjust, no refine:",
        timings_ms(runs, || decode(&no_refine)),
    );
}

fn main() {
    let codec = AeCodec::coco([128, 128]);
    let runs = 200;
    bench_scene(
        "AE grouping, 128x128, 17 joints, 30 people (target case)",
        &synthetic_image(Some(codec.decoding.joint_order[0])),
        &codec,
        runs,
    );
    bench_scene(
        "Same people, noses missing too (heavy refine)",
        &synthetic_image(None),
        &codec,
        runs,
    );
}
