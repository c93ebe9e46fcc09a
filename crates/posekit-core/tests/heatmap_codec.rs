//! Parity of the Gaussian heatmap codec with the reference implementations (HRNet, DarkPose,
//! UDP-Pose / MMPose, OpenCV), through the fixtures written by
//! `tools/fixtures/make_heatmap_fixtures.py` (see that script for what each file holds).

use std::collections::HashMap;
use std::path::PathBuf;

use ndarray::{Array, ArrayD, Ix1, Ix2, Ix3, IxDyn};
use posekit_core::codecs::heatmap::{
    dark::gaussian_kernel, merge_flip, HeatmapCodec, HeatmapVariant, Refinement,
};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/heatmap")
        .join(name)
}

struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    fn open(name: &str) -> Self {
        let bytes = std::fs::read(data_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        Self { bytes }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap()
    }

    fn metadata(&self) -> HashMap<String, String> {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).unwrap();
        meta.metadata().clone().unwrap_or_default()
    }

    fn array<T: FromLe>(&self, name: &str) -> ArrayD<T> {
        let tensors = self.tensors();
        let view = tensors
            .tensor(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(view.dtype(), T::DTYPE, "{name}");
        let values: Vec<T> = view.data().chunks_exact(T::SIZE).map(T::from_le).collect();
        Array::from_shape_vec(IxDyn(view.shape()), values).unwrap()
    }

    fn f32<D: ndarray::Dimension>(&self, name: &str) -> Array<f32, D> {
        self.array::<f32>(name).into_dimensionality::<D>().unwrap()
    }
}

trait FromLe: Sized + Clone {
    const DTYPE: Dtype;
    const SIZE: usize;
    fn from_le(bytes: &[u8]) -> Self;
}

impl FromLe for f32 {
    const DTYPE: Dtype = Dtype::F32;
    const SIZE: usize = 4;
    fn from_le(b: &[u8]) -> Self {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl FromLe for f64 {
    const DTYPE: Dtype = Dtype::F64;
    const SIZE: usize = 8;
    fn from_le(b: &[u8]) -> Self {
        f64::from_le_bytes(b.try_into().unwrap())
    }
}

impl FromLe for i64 {
    const DTYPE: Dtype = Dtype::I64;
    const SIZE: usize = 8;
    fn from_le(b: &[u8]) -> Self {
        i64::from_le_bytes(b.try_into().unwrap())
    }
}

fn variant(name: &str) -> HeatmapVariant {
    serde_json::from_value(Value::String(name.to_string())).unwrap()
}

fn size(value: &Value) -> [usize; 2] {
    [
        value[0].as_u64().unwrap() as usize,
        value[1].as_u64().unwrap() as usize,
    ]
}

#[test]
fn encoding_matches_the_references() {
    let fixture = Fixture::open("encode.safetensors");
    let metadata = fixture.metadata();
    let mut cases: Vec<_> = metadata
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "numpy" | "opencv"))
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 7);
    for (name, params) in cases {
        let params: Value = serde_json::from_str(params).unwrap();
        let codec = HeatmapCodec {
            sigma: params["sigma"].as_f64().unwrap(),
            variant: variant(params["variant"].as_str().unwrap()),
            ..HeatmapCodec::new(size(&params["input_size"]), size(&params["heatmap_size"]))
        };
        let joints = fixture.f32::<Ix2>(&format!("{name}.joints"));
        let expected = fixture.f32::<Ix3>(&format!("{name}.heatmaps"));
        let expected_weights = fixture.f32::<Ix1>(&format!("{name}.weights"));
        let target = codec.encode(joints.view()).unwrap();
        assert_eq!(target.heatmaps.dim(), expected.dim(), "{name}");
        assert_eq!(target.weights, expected_weights, "{name}: weights");
        let max_err = (&target.heatmaps - &expected)
            .mapv(f32::abs)
            .fold(0.0f32, |a, &b| a.max(b));
        eprintln!("encode {name}: max heatmap error {max_err:e}");
        assert!(max_err <= 1e-6, "{name}: max heatmap error {max_err}");
        // The fixture must exercise what it claims: weight-0 joints and drawn ones.
        assert!(
            expected_weights.iter().any(|w| *w == 0.0)
                && expected_weights.iter().any(|w| *w == 1.0),
            "{name}"
        );
    }
}

#[test]
fn decoding_matches_the_references() {
    let fixture = Fixture::open("decode.safetensors");
    let metadata = fixture.metadata();
    let mut checked = 0;
    let mut max_err = 0.0f32;
    for set in ["clean", "noisy", "edge"] {
        let heatmaps = fixture.f32::<Ix3>(&format!("{set}.heatmaps"));
        let (_, h, w) = heatmaps.dim();
        for mode in [
            "none",
            "shift",
            "dark",
            "dark_k7",
            "dark_k17",
            "udp_dark",
            "udp_dark_k5",
        ] {
            let params: Value = serde_json::from_str(&metadata[mode]).unwrap();
            let refinement: Refinement =
                serde_json::from_value(params["refinement"].clone()).unwrap();
            let codec = HeatmapCodec {
                variant: variant(params["variant"].as_str().unwrap()),
                refinement,
                blur_kernel: params["blur_kernel"].as_u64().unwrap() as usize,
                ..HeatmapCodec::new([4 * w, 4 * h], [w, h])
            };
            let coords = fixture.f32::<Ix2>(&format!("{set}.{mode}.coords"));
            let scores = fixture.f32::<Ix1>(&format!("{set}.{mode}.scores"));
            let decoded = codec.decode(heatmaps.view()).unwrap();
            assert_eq!(decoded.len(), coords.nrows());
            for (k, kp) in decoded.iter().enumerate() {
                let (ex, ey) = (coords[[k, 0]], coords[[k, 1]]);
                assert!(
                    (kp.x - ex).abs() <= 1e-5 && (kp.y - ey).abs() <= 1e-5,
                    "{set}/{mode} joint {k}: got ({}, {}), expected ({ex}, {ey})",
                    kp.x,
                    kp.y
                );
                assert_eq!(kp.score, scores[k], "{set}/{mode} joint {k}: score");
                max_err = max_err.max((kp.x - ex).abs()).max((kp.y - ey).abs());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 7 * (4 + 8 + 8));
    eprintln!("decode: {checked} joints, max coordinate error {max_err:e}");
}

#[test]
fn dark_moves_joints_in_the_fixture() {
    // Guards against a fixture (or decoder) where refinement silently does nothing.
    let fixture = Fixture::open("decode.safetensors");
    let none = fixture.f32::<Ix2>("clean.none.coords");
    for mode in ["shift", "dark", "udp_dark"] {
        let refined = fixture.f32::<Ix2>(&format!("clean.{mode}.coords"));
        assert!(
            none.iter().zip(refined.iter()).all(|(a, b)| a != b),
            "{mode}"
        );
    }
}

#[test]
fn flip_test_matches_hrnet() {
    let fixture = Fixture::open("flip.safetensors");
    let output = fixture.f32::<Ix3>("output");
    let flipped = fixture.f32::<Ix3>("flipped");
    let pairs: Vec<[usize; 2]> = fixture
        .array::<i64>("flip_pairs")
        .into_dimensionality::<Ix2>()
        .unwrap()
        .outer_iter()
        .map(|p| [p[0] as usize, p[1] as usize])
        .collect();
    for (shift, name) in [(true, "merged_shift"), (false, "merged_noshift")] {
        let merged = merge_flip(output.view(), flipped.view(), &pairs, shift).unwrap();
        assert_eq!(merged, fixture.f32::<Ix3>(name), "{name}");
    }
    // The codec picks the shift from its variant: HRNet shifts, UDP does not.
    let (_, h, w) = output.dim();
    let standard = HeatmapCodec::new([4 * w, 4 * h], [w, h]);
    let udp = HeatmapCodec::udp([4 * w, 4 * h], [w, h]);
    assert_eq!(
        standard
            .merge_flip(output.view(), flipped.view(), &pairs)
            .unwrap(),
        fixture.f32::<Ix3>("merged_shift")
    );
    assert_eq!(
        udp.merge_flip(output.view(), flipped.view(), &pairs)
            .unwrap(),
        fixture.f32::<Ix3>("merged_noshift")
    );
}

#[test]
fn blur_kernels_match_opencv() {
    let fixture = Fixture::open("kernels.safetensors");
    for k in (1..32).step_by(2) {
        let expected = fixture.array::<f64>(&format!("k{k}"));
        let kernel = gaussian_kernel(k);
        assert_eq!(kernel.len(), expected.len());
        for (a, b) in kernel.iter().zip(expected.iter()) {
            assert!((a - b).abs() <= 1e-15, "ksize {k}: {a} vs {b}");
        }
    }
}
