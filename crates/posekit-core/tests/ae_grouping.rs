//! Associative-embedding grouping and targets against the NumPy/torch/munkres reference of
//! `tools/fixtures/make_ae_fixtures.py` (HigherHRNet's `HeatmapParser` behaviour).

use ndarray::{Array3, Array4, ArrayD, IxDyn};
use posekit_core::codecs::associative_embedding::{
    AeCodec, AeDecodeParams, AeEncodeParams, Matcher,
};
use posekit_core::codecs::hungarian::{min_cost_assignment, munkres_assignment};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ae");

fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exp = ((bits >> 10) & 0x1f) as u32;
    let frac = (bits & 0x3ff) as u32;
    let out = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = frac * 2^-24.
            let v = frac as f32 * (2.0f32).powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, _) => sign | 0x7fc0_0000,
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(out)
}

fn load(st: &SafeTensors, name: &str) -> ArrayD<f32> {
    let t = st.tensor(name).unwrap();
    let data = t.data();
    let values: Vec<f32> = match t.dtype() {
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    };
    ArrayD::from_shape_vec(IxDyn(t.shape()), values).unwrap()
}

fn fixture() -> (Vec<u8>, Value) {
    let bytes = std::fs::read(format!("{DATA}/ae_inputs.safetensors")).unwrap();
    let json = std::fs::read_to_string(format!("{DATA}/ae_expected.json")).unwrap();
    (bytes, serde_json::from_str(&json).unwrap())
}

fn config_from(p: &Value) -> AeDecodeParams {
    let order = p["joint_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let mut cfg = AeDecodeParams::new(order);
    cfg.max_num_people = p["max_num_people"].as_u64().unwrap() as usize;
    cfg.detection_threshold = p["detection_threshold"].as_f64().unwrap() as f32;
    cfg.tag_threshold = p["tag_threshold"].as_f64().unwrap();
    cfg.use_detection_val = p["use_detection_val"].as_bool().unwrap();
    cfg.ignore_too_much = p["ignore_too_much"].as_bool().unwrap();
    cfg.nms_kernel = p["nms_kernel"].as_u64().unwrap() as usize;
    cfg.adjust = p["adjust"].as_bool().unwrap();
    cfg.refine = p["refine"].as_bool().unwrap();
    cfg
}

/// The codec of these heatmaps with the fixture's grouping parameters.
fn codec_for(heatmaps: &Array3<f32>, decoding: AeDecodeParams) -> AeCodec {
    let (_, h, w) = heatmaps.dim();
    AeCodec::new(AeEncodeParams::new([w, h]), decoding)
}

#[test]
fn grouping_matches_the_reference_parser() {
    let (bytes, expected) = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let heatmaps: Array3<f32> = load(&st, &format!("{name}.heatmaps"))
            .into_dimensionality()
            .unwrap();
        let tags: Array4<f32> = load(&st, &format!("{name}.tags"))
            .into_dimensionality()
            .unwrap();
        let codec = codec_for(&heatmaps, config_from(&case["params"]));
        let poses = codec.decode(heatmaps.view(), tags.view()).unwrap();
        let want = case["poses"].as_array().unwrap();
        assert_eq!(poses.len(), want.len(), "{name}: number of people");
        for (p, (pose, w)) in poses.iter().zip(want).enumerate() {
            let ws = w["score"].as_f64().unwrap();
            assert!(
                (pose.score as f64 - ws).abs() < 1e-6,
                "{name} person {p}: score {} vs {ws}",
                pose.score
            );
            for (j, (kp, wk)) in pose
                .keypoints
                .iter()
                .zip(w["keypoints"].as_array().unwrap())
                .enumerate()
            {
                let wk: Vec<f64> = wk
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                assert!(
                    (kp.x as f64 - wk[0]).abs() < 1e-4
                        && (kp.y as f64 - wk[1]).abs() < 1e-4
                        && (kp.score as f64 - wk[2]).abs() < 1e-6,
                    "{name} person {p} joint {j}: got ({}, {}, {}), want {wk:?}",
                    kp.x,
                    kp.y,
                    kp.score
                );
            }
        }
    }
}

/// The fixture's close tags make matching costs tie; the generic solver then may (and here
/// does) pick another optimum, which is why grouping defaults to the Munkres-compatible one.
/// Both must still produce a valid grouping of the same candidates.
#[test]
fn shortest_path_matcher_groups_the_same_candidates() {
    let (bytes, expected) = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for case in expected["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let heatmaps: Array3<f32> = load(&st, &format!("{name}.heatmaps"))
            .into_dimensionality()
            .unwrap();
        let tags: Array4<f32> = load(&st, &format!("{name}.tags"))
            .into_dimensionality()
            .unwrap();
        let mut codec = codec_for(&heatmaps, config_from(&case["params"]));
        codec.decoding.refine = false;
        let munkres = codec.decode(heatmaps.view(), tags.view()).unwrap();
        codec.decoding.matcher = Matcher::ShortestPath;
        let jv = codec.decode(heatmaps.view(), tags.view()).unwrap();
        let found = |poses: &[posekit_core::Pose]| {
            let mut v: Vec<(u32, u32, u32)> = poses
                .iter()
                .flat_map(|p| p.keypoints.iter())
                .filter(|k| k.score > 0.0)
                .map(|k| (k.x.to_bits(), k.y.to_bits(), k.score.to_bits()))
                .collect();
            v.sort();
            v
        };
        // Ties may move joints between people but never lose or invent candidates, unless the
        // assignment changed which people exist (new people are keyed by tag).
        if munkres.len() == jv.len() {
            assert_eq!(found(&munkres), found(&jv), "{name}");
        }
    }
}

#[test]
fn munkres_ties_match_the_python_package() {
    let (_, expected) = fixture();
    for (i, case) in expected["munkres"].as_array().unwrap().iter().enumerate() {
        let rows: Vec<Vec<f64>> = case["cost"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            })
            .collect();
        let cost = ndarray::Array2::from_shape_fn((rows.len(), rows[0].len()), |(r, c)| rows[r][c]);
        let want: Vec<(usize, usize)> = case["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_u64().unwrap() as usize,
                    p[1].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert_eq!(
            munkres_assignment(cost.view()).unwrap(),
            want,
            "case {i}: {rows:?}"
        );
        let jv = min_cost_assignment(cost.view()).unwrap();
        let want_cost: f64 = want.iter().map(|&(r, c)| cost[[r, c]]).sum();
        assert!(
            (jv.cost - want_cost).abs() < 1e-9,
            "case {i}: JV not optimal"
        );
    }
}

#[test]
fn targets_match_the_reference_generators() {
    let (bytes, expected) = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = &expected["targets"];
    let people: Array3<f32> = load(&st, "targets.people").into_dimensionality().unwrap();
    let heatmaps: Array3<f32> = load(&st, "targets.heatmaps").into_dimensionality().unwrap();
    let mut codec = AeCodec::coco([
        t["width"].as_u64().unwrap() as usize,
        t["height"].as_u64().unwrap() as usize,
    ]);
    codec.encoding.sigma = t["sigma"].as_f64().unwrap();
    codec.encoding.max_people = t["max_people"].as_u64().unwrap() as usize;
    let to_vec = |v: &Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p.as_array().unwrap().iter())
            .flat_map(|j| j.as_array().unwrap().iter())
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    let got = codec.encode(people.view()).unwrap();
    assert_eq!(got.heatmaps.shape(), heatmaps.shape());
    for (a, b) in got.heatmaps.iter().zip(heatmaps.iter()) {
        assert!((a - b).abs() <= 1e-7, "heatmap {a} vs {b}");
    }
    assert_eq!(
        got.joints.iter().copied().collect::<Vec<_>>(),
        to_vec(&t["joints"])
    );
    assert_eq!(got.dropped_people, 1);
    codec.encoding.tag_per_joint = false;
    let shared = codec.encode(people.view()).unwrap();
    assert_eq!(
        shared.joints.iter().copied().collect::<Vec<_>>(),
        to_vec(&t["joints_shared"])
    );
}
