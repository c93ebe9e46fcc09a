//! PAF grouping speed: `cargo bench -p posekit-core --bench paf_grouping`.
//!
//! 1. Grouping of a 128x128 map with 30 synthetic people (targets made by `paf::encode`, CMU-18,
//!    19 heatmap + 38 PAF channels): `paf::decode` with `PafDecodeParams::grouping_only()`, i.e.
//!    peak finding (3x3 NMS on 18 channels) + limb scoring (19 limbs, 10 samples per candidate) +
//!    greedy matching + assembly + filtering. No upsampling or smoothing. Target: < 5 ms, one core
//!    (the code is single-threaded).
//! 2. For information: tf-pose's full post-processing of a real 46x54 output (4x upsampling to
//!    184x216, 25x25 Gaussian smoothing of 18 channels, then grouping), and its map preparation.
//!
//! Prints the median of many runs (after warm-up).

use std::hint::black_box;
use std::time::Instant;

use ndarray::{s, Array2, Array3};
use posekit_core::codecs::paf::{
    self, smoothing, HeatmapSmoothing, PafDecodeParams, PafEncodeParams, PafLimbs,
};

/// Median wall time in milliseconds of `runs` calls of `f`, after `runs / 10 + 1` warm-up calls.
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
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
    t[runs / 2]
}

/// CMU-18 joints of a person one unit tall (x centred).
const TEMPLATE: [(f32, f32); 18] = [
    (0.0, 0.08),
    (0.0, 0.2),
    (-0.16, 0.2),
    (-0.24, 0.4),
    (-0.28, 0.56),
    (0.16, 0.2),
    (0.24, 0.4),
    (0.28, 0.56),
    (-0.08, 0.56),
    (-0.12, 0.76),
    (-0.12, 0.96),
    (0.08, 0.56),
    (0.12, 0.76),
    (0.12, 0.96),
    (-0.04, 0.04),
    (0.04, 0.04),
    (-0.08, 0.08),
    (0.08, 0.08),
];

/// `n` people on a grid filling a `map x map` image, each person with a small deterministic
/// pose jitter so that limbs are not all parallel.
fn people(n: usize, map: usize) -> (Array3<f32>, Array2<f32>) {
    let cols = (n as f32).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let (cw, ch) = (map as f32 / cols as f32, map as f32 / rows as f32);
    let height = ch * 0.9;
    let mut seed = 12345u32;
    let mut jitter = || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let mut kp = Array3::<f32>::zeros((n, 18, 2));
    for p in 0..n {
        let (cx, top) = ((p % cols) as f32 * cw + cw / 2.0, (p / cols) as f32 * ch);
        for (j, &(tx, ty)) in TEMPLATE.iter().enumerate() {
            let (jx, jy) = if j >= 2 && j != 14 && j != 15 {
                (jitter() * 0.06, jitter() * 0.04)
            } else {
                (0.0, 0.0)
            };
            kp[[p, j, 0]] = (cx + (tx + jx) * height).round();
            kp[[p, j, 1]] = (top + (ty + jy) * height).round();
        }
    }
    (kp, Array2::from_elem((n, 18), 2.0))
}

fn main() {
    let limbs = PafLimbs::cmu18();

    // 1. Grouping, 128x128, 30 people.
    let (kp, vis) = people(30, 128);
    let enc = PafEncodeParams {
        heatmap_size: [128, 128],
        stride: 1.0,
        sigma: 1.0,
        limb_width: 1.0,
        background: true,
    };
    let encode_ms = median_ms(50, || {
        black_box(paf::encode(&enc, &limbs, kp.view(), vis.view()).unwrap());
    });
    let t = paf::encode(&enc, &limbs, kp.view(), vis.view()).unwrap();
    let grouping = PafDecodeParams::grouping_only();
    let d = paf::decode(t.heatmaps.view(), t.pafs.view(), &limbs, &grouping).unwrap();
    let complete = d
        .people
        .iter()
        .filter(|p| p.parts.iter().all(|id| id.is_some()))
        .count();
    let group_ms = median_ms(500, || {
        black_box(paf::decode(t.heatmaps.view(), t.pafs.view(), &limbs, &grouping).unwrap());
    });
    println!(
        "paf grouping 128x128, 30 people (peaks + limb scoring + assembly): median {group_ms:.3} ms \
         ({} peaks, {} people found, {complete} with all 18 joints)",
        d.peaks.peaks.len(),
        d.people.len()
    );
    println!("paf encode   128x128, 30 people (19 heatmaps + 38 PAFs):          median {encode_ms:.3} ms");

    // 2. tf-pose post-processing of a real output (46x54 -> 184x216).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/paf/tfpose_outputs.safetensors"
    );
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tv = st.tensor("output_coco_000000196141").unwrap();
    let data: Vec<f32> = tv
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let out = Array3::from_shape_vec((57, 46, 54), data).unwrap();
    let (heat, pafs) = (out.slice(s![..19, .., ..]), out.slice(s![19.., .., ..]));
    let tfpose = PafDecodeParams::tf_pose();
    let full_ms = median_ms(50, || {
        black_box(paf::decode(heat, pafs, &limbs, &tfpose).unwrap());
    });
    let g = HeatmapSmoothing::CdfGaussian {
        size: 25,
        nsig: 3.0,
    }
    .kernel_1d()
    .unwrap()
    .unwrap();
    let parts = out.slice(s![..18, .., ..]);
    let prep_ms = median_ms(50, || {
        black_box(smoothing::upsample_and_smooth(parts, 4, &g).unwrap());
    });
    let n = paf::decode(heat, pafs, &limbs, &tfpose)
        .unwrap()
        .people
        .len();
    println!(
        "tf-pose post-processing 46x54 -> 184x216 (coco_000000196141, {n} people): median {full_ms:.3} ms \
         (of which 4x upsampling + 25x25 smoothing of 18 channels {prep_ms:.3} ms)"
    );
}
