//! PAF grouping end to end: tf-pose's post-processing reproduced on real network outputs, and
//! an encode -> decode round trip on synthetic people.
//!
//! The real outputs come from tf-pose-estimation's `mobilenet_v2_small` on three images (see
//! `tests/data/paf/README.md`); the expected people were computed by an independent
//! re-implementation of tf-pose's `pafprocess` (the shared fixture's README).

use ndarray::{s, Array2, Array3, ArrayView3};
use posekit_core::codecs::paf::{
    self, smoothing, HeatmapSmoothing, PafCodec, PafDecodeParams, PafEncodeParams, PafLimbs,
    PafTargetRules,
};

#[path = "support/paf_people.rs"]
mod paf_people;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/paf/tfpose_outputs.safetensors"
);

fn load(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(FIXTURE).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    let data = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), data)
}

fn output(img: &str) -> Array3<f32> {
    let (shape, data) = load(&format!("output_{img}"));
    assert_eq!(shape, vec![57, 46, 54]);
    Array3::from_shape_vec((57, 46, 54), data).unwrap()
}

fn decode_tfpose(img: &str) -> paf::PafDecoding {
    let out = output(img);
    let (heat, pafs) = (out.slice(s![..19, .., ..]), out.slice(s![19.., .., ..]));
    tfpose_codec().decode(heat, pafs).unwrap()
}

/// tf-pose's post-processing of these outputs (46x54 maps of 8-pixel cells).
fn tfpose_codec() -> PafCodec {
    PafCodec::new(
        PafLimbs::cmu18(),
        PafEncodeParams::openpose([54, 46]),
        PafDecodeParams::tf_pose(),
    )
}

/// (sorted present parts, score) per person, in assembly order.
fn summary(d: &paf::PafDecoding) -> Vec<(Vec<usize>, f32)> {
    d.people
        .iter()
        .map(|p| {
            let parts = p
                .parts
                .iter()
                .enumerate()
                .filter(|(_, id)| id.is_some())
                .map(|(j, _)| j)
                .collect();
            (parts, p.score())
        })
        .collect()
}

#[test]
fn kernel_derivation_matches_tfpose_float32_kernel() {
    let (shape, stored) = load("postproc_gauss_kernel_25x25");
    assert_eq!(shape, vec![25, 25]);
    let g = HeatmapSmoothing::CdfGaussian {
        size: 25,
        nsig: 3.0,
    }
    .kernel_1d()
    .unwrap()
    .unwrap();
    let mut max_diff = 0f64;
    for i in 0..25 {
        for j in 0..25 {
            let mine = (g[i] * g[j]) as f32;
            max_diff = max_diff.max((mine as f64 - stored[i * 25 + j] as f64).abs());
        }
    }
    assert!(max_diff <= 1e-7, "kernel differs by {max_diff}");
}

/// tf-pose smooths with a direct 25x25 depthwise convolution; the separable passes must agree
/// with that (stored float32 kernel, accumulated in f64) on real upsampled heatmaps.
#[test]
fn separable_smoothing_matches_direct_convolution_on_real_heatmaps() {
    let (_, kernel) = load("postproc_gauss_kernel_25x25");
    let out = output("astronaut");
    let heat = out.slice(s![0..2, .., ..]);
    let up = smoothing::upsample_replicate(heat, 4).unwrap();
    let mut sep = up.clone();
    let g = HeatmapSmoothing::CdfGaussian {
        size: 25,
        nsig: 3.0,
    }
    .kernel_1d()
    .unwrap()
    .unwrap();
    smoothing::smooth_separable(&mut sep, &g);
    let (c, h, w) = up.dim();
    let mut max_diff = 0f64;
    for ch in 0..c {
        // Every 3rd pixel keeps the O(25^2) reference affordable and still covers the borders.
        for y in (0..h).step_by(3).chain([h - 1]) {
            for x in (0..w).step_by(3).chain([w - 1]) {
                let mut acc = 0f64;
                for ty in 0..25 {
                    for tx in 0..25 {
                        let (yy, xx) =
                            (y as isize + ty as isize - 12, x as isize + tx as isize - 12);
                        if yy >= 0 && yy < h as isize && xx >= 0 && xx < w as isize {
                            acc += kernel[ty * 25 + tx] as f64
                                * up[[ch, yy as usize, xx as usize]] as f64;
                        }
                    }
                }
                max_diff = max_diff.max((sep[[ch, y, x]] as f64 - acc).abs());
            }
        }
    }
    assert!(
        max_diff < 2e-7,
        "separable and direct smoothing differ by {max_diff}"
    );
}

fn assert_people(got: &[(Vec<usize>, f32)], expected: &[(&[usize], f32)]) {
    assert_eq!(got.len(), expected.len(), "people: {got:?}");
    for ((parts, score), (exp_parts, exp_score)) in got.iter().zip(expected) {
        assert_eq!(parts.as_slice(), *exp_parts, "people: {got:?}");
        assert!(
            (score - exp_score).abs() < 1e-3,
            "score {score} vs {exp_score}"
        );
    }
}

#[test]
fn tfpose_postprocessing_astronaut() {
    let d = decode_tfpose("astronaut");
    assert_eq!((d.width, d.height), (216, 184));
    assert_people(&summary(&d), &[(&[0, 1, 2, 3, 5, 14, 15, 16, 17], 1.147)]);
}

#[test]
fn tfpose_postprocessing_grace_hopper() {
    let d = decode_tfpose("grace_hopper");
    assert_people(&summary(&d), &[(&[0, 14, 15, 16, 17], 1.324)]);
}

#[test]
fn tfpose_postprocessing_coco_three_people() {
    let d = decode_tfpose("coco_000000196141");
    let all_but_16: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17];
    let got = summary(&d);
    // Part counts and scores are the reference's; assembly order is tf-pose's subset order.
    let counts: Vec<usize> = got.iter().map(|(p, _)| p.len()).collect();
    assert_eq!(counts, vec![17, 12, 17], "people: {got:?}");
    assert_people(
        &got,
        &[
            (all_but_16, 0.957),
            (&[1, 2, 3, 5, 6, 7, 8, 11, 12, 13, 16, 17], 0.675),
            (all_but_16, 0.933),
        ],
    );
}

/// Every joint's pixel and score and every person score equal those of the fixture script's
/// NumPy/SciPy re-implementation (direct 2D smoothing, SciPy's maximum filter).
#[test]
fn tfpose_postprocessing_matches_numpy_reference_joint_by_joint() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/paf/tfpose_expected.json"
    );
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for img in ["astronaut", "grace_hopper", "coco_000000196141"] {
        let e = &expected[img];
        let d = decode_tfpose(img);
        assert_eq!(d.width as u64, e["width"].as_u64().unwrap());
        assert_eq!(d.height as u64, e["height"].as_u64().unwrap());
        assert_eq!(
            d.peaks.peaks.len() as u64,
            e["num_peaks"].as_u64().unwrap(),
            "{img}: peaks"
        );
        let people = e["people"].as_array().unwrap();
        let poses = d.poses();
        assert_eq!(poses.len(), people.len(), "{img}: people");
        for (i, (pose, ep)) in poses.iter().zip(people).enumerate() {
            assert!(
                (pose.score as f64 - ep["score"].as_f64().unwrap()).abs() < 1e-5,
                "{img} person {i}"
            );
            assert_eq!(
                d.people[i].part_count as u64,
                ep["part_count"].as_u64().unwrap()
            );
            for (j, (k, ek)) in pose
                .keypoints
                .iter()
                .zip(ep["keypoints"].as_array().unwrap())
                .enumerate()
            {
                match ek.as_array() {
                    None => {
                        assert_eq!(k.score, 0.0, "{img} person {i} joint {j} should be missing")
                    }
                    Some(v) => {
                        let (x, y, sc) = (
                            v[0].as_f64().unwrap(),
                            v[1].as_f64().unwrap(),
                            v[2].as_f64().unwrap(),
                        );
                        assert_eq!(
                            (k.x as f64, k.y as f64),
                            (x, y),
                            "{img} person {i} joint {j}"
                        );
                        assert!(
                            (k.score as f64 - sc).abs() < 1e-7,
                            "{img} person {i} joint {j}"
                        );
                    }
                }
            }
        }
    }
}

/// Poses are in the 216x184 peak map; normalised ones divide by it, and every reported joint is
/// a peak of its own heatmap channel with the unsmoothed upsampled score.
#[test]
fn tfpose_poses_report_peak_pixels_and_unsmoothed_scores() {
    let out = output("astronaut");
    let d = decode_tfpose("astronaut");
    let poses = d.poses();
    let norm = d.normalized_poses();
    assert_eq!(poses.len(), 1);
    assert_eq!(poses[0].keypoints.len(), 18);
    for (j, (k, n)) in poses[0]
        .keypoints
        .iter()
        .zip(&norm[0].keypoints)
        .enumerate()
    {
        if k.score == 0.0 {
            assert_eq!((k.x, k.y), (0.0, 0.0));
            continue;
        }
        let (x, y) = (k.x as usize, k.y as usize);
        assert_eq!(k.score, out[[j, y / 4, x / 4]]);
        assert!((n.x - k.x / 216.0).abs() < 1e-7 && (n.y - k.y / 184.0).abs() < 1e-7);
    }
    assert!((poses[0].score - 1.147).abs() < 1e-3);
}

/// People on a grid, no jitter: every joint lands on a whole pixel, so decoding must return it
/// exactly.
fn synthetic_people(n: usize, map: usize) -> (Array3<f32>, Array2<f32>) {
    paf_people::grid_people(n, map, 0.0)
}

/// Targets made by `encode` must decode back to the same people, joint for joint.
#[test]
fn encode_decode_round_trip() {
    let limbs = PafLimbs::cmu18();
    let (kp, vis) = synthetic_people(6, 96);
    let params = PafEncodeParams {
        heatmap_size: [96, 96],
        stride: 1.0,
        sigma: 1.0,
        limb_width: 1.0,
        background: true,
        rules: PafTargetRules::Posekit,
    };
    let codec = PafCodec::new(limbs, params, PafDecodeParams::grouping_only());
    let t = codec.encode(kp.view(), vis.view()).unwrap();
    assert_eq!(t.heatmaps.dim(), (19, 96, 96));
    assert_eq!(t.pafs.dim(), (38, 96, 96));
    assert!(t.limb_weights.iter().all(|&w| w == 1.0));
    let d = codec.decode(t.heatmaps.view(), t.pafs.view()).unwrap();
    let poses = d.poses();
    assert_recovers_exactly(&poses, &kp);
    for pose in &poses {
        // Every joint on a target peak (1.0) and every limb perfectly aligned: score > 1.
        assert!(pose.score > 1.0, "score {}", pose.score);
        assert!(pose.keypoints.iter().all(|k| (k.score - 1.0).abs() < 1e-6));
    }
}

/// The same round trip through tf-pose's full path (stride 4 targets, 4x upsampling, smoothing):
/// joints come back within the upsampling's resolution.
#[test]
fn encode_decode_round_trip_with_tfpose_upsampling() {
    let limbs = PafLimbs::cmu18();
    let (kp, vis) = synthetic_people(4, 192);
    let params = PafEncodeParams {
        heatmap_size: [48, 48],
        stride: 4.0,
        sigma: 1.0,
        limb_width: 1.0,
        background: true,
        rules: PafTargetRules::Posekit,
    };
    let codec = PafCodec::new(limbs, params, PafDecodeParams::tf_pose());
    let t = codec.encode(kp.view(), vis.view()).unwrap();
    let d = codec.decode(t.heatmaps.view(), t.pafs.view()).unwrap();
    let poses = d.poses();
    assert_eq!(poses.len(), 4);
    for pose in &poses {
        let present = pose.keypoints.iter().filter(|k| k.score > 0.0).count();
        assert!(present >= 16, "only {present} joints");
        // The nearest synthetic person, joint by joint, within 4 upsampled pixels.
        let p = (0..4)
            .min_by_key(|&p| {
                let dx = kp[[p, 1, 0]] - pose.keypoints[1].x;
                let dy = kp[[p, 1, 1]] - pose.keypoints[1].y;
                (dx * dx + dy * dy) as i64
            })
            .unwrap();
        for (j, k) in pose
            .keypoints
            .iter()
            .enumerate()
            .filter(|(_, k)| k.score > 0.0)
        {
            let (dx, dy) = (k.x - kp[[p, j, 0]], k.y - kp[[p, j, 1]]);
            assert!(
                dx.abs() <= 4.0 && dy.abs() <= 4.0,
                "person {p} joint {j}: off by ({dx}, {dy})"
            );
        }
    }
}

/// Recovered poses equal the synthetic keypoints joint for joint (matched by the first joint).
fn assert_recovers_exactly(poses: &[posekit_core::Pose], kp: &Array3<f32>) {
    let n = kp.dim().0;
    assert_eq!(poses.len(), n);
    let mut matched = vec![false; n];
    for pose in poses {
        let p = (0..n)
            .find(|&p| kp[[p, 0, 0]] == pose.keypoints[0].x && kp[[p, 0, 1]] == pose.keypoints[0].y)
            .expect("first joint of a synthetic person");
        assert!(!matched[p]);
        matched[p] = true;
        for (j, k) in pose.keypoints.iter().enumerate() {
            assert_eq!(
                (k.x, k.y),
                (kp[[p, j, 0]], kp[[p, j, 1]]),
                "person {p} joint {j}"
            );
        }
    }
}

/// A new model on COCO-17: limbs from the layout's skeleton (which starts at the ankles) still
/// assemble whole people, because `from_skeleton` walks it from the torso.
#[test]
fn coco17_from_skeleton_round_trip() {
    let layout = posekit_core::KeypointLayout::builtin("coco17").unwrap();
    let limbs = PafLimbs::from_skeleton(&layout).unwrap();
    // COCO-17 joints taken from the CMU-18 template (CMU index of each COCO joint).
    const FROM_CMU: [usize; 17] = [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10];
    let (cmu, _) = synthetic_people(6, 96);
    let kp = Array3::from_shape_fn((6, 17, 2), |(p, j, c)| cmu[[p, FROM_CMU[j], c]]);
    let vis = Array2::from_elem((6, 17), 2.0);
    let params = PafEncodeParams {
        heatmap_size: [96, 96],
        stride: 1.0,
        sigma: 1.0,
        limb_width: 1.0,
        background: false,
        rules: PafTargetRules::Posekit,
    };
    let codec = PafCodec::new(limbs, params, PafDecodeParams::grouping_only());
    let t = codec.encode(kp.view(), vis.view()).unwrap();
    assert_eq!(t.heatmaps.dim(), (17, 96, 96));
    assert_eq!(t.pafs.dim(), (38, 96, 96));
    let d = codec.decode(t.heatmaps.view(), t.pafs.view()).unwrap();
    assert_recovers_exactly(&d.poses(), &kp);
}

/// CMU's settings (smoothing sigma 3, threshold 0.1, samples including B, stricter counts) on
/// maps at image resolution, where CMU applies them (its network's sigma-7 px Gaussians at stride
/// 8 become wide blobs once resized to the image): the generic path finds the same people.
#[test]
fn cmu_preset_round_trip() {
    let limbs = PafLimbs::cmu18();
    let (kp, vis) = synthetic_people(6, 192);
    let params = PafEncodeParams {
        heatmap_size: [192, 192],
        stride: 1.0,
        sigma: 3.0,
        limb_width: 1.0,
        background: true,
        rules: PafTargetRules::Posekit,
    };
    let codec = PafCodec::new(limbs, params, PafDecodeParams::cmu());
    let t = codec.encode(kp.view(), vis.view()).unwrap();
    let d = codec.decode(t.heatmaps.view(), t.pafs.view()).unwrap();
    assert_recovers_exactly(&d.poses(), &kp);
}

#[test]
fn decode_rejects_mismatched_arrays_without_panicking() {
    let out = output("grace_hopper");
    let heat: ArrayView3<f32> = out.slice(s![..19, .., ..]);
    let short = out.slice(s![19..50, .., ..]);
    assert!(tfpose_codec().decode(heat, short).is_err());
    let cropped = out.slice(s![19.., ..40, ..]);
    assert!(tfpose_codec().decode(heat, cropped).is_err());
}
