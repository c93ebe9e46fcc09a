//! Geometry parity with OpenCV and the official HRNet / MMPose conventions, on fixtures made once
//! by `tools/fixtures/make_warp_fixture.py` (see `tests/data/warp/README.md`).

use std::path::PathBuf;

use ndarray::{Array3, ArrayView3};
use posekit_core::geometry::affine::{
    crop_transform, get_affine_transform, heatmap_to_image, transform_preds, udp_warp_matrix,
    Affine2, AffineMode,
};
use posekit_core::geometry::center_scale::CenterScale;
use posekit_core::geometry::resize::resize_cubic_opencv;
use posekit_core::geometry::warp::{warp_affine, warp_affine_with, WarpKernel};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/warp")
}

fn read(name: &str) -> Vec<u8> {
    let path = data_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&read(name)).unwrap()
}

fn u8_tensor(st: &SafeTensors, name: &str) -> Array3<u8> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::U8, "{name}");
    let s = t.shape();
    Array3::from_shape_vec((s[0], s[1], s[2]), t.data().to_vec()).unwrap()
}

fn matrix(st: &SafeTensors, name: &str) -> Affine2 {
    let t = st.tensor(name).unwrap();
    assert_eq!(
        (t.dtype(), t.shape()),
        (Dtype::F64, &[2usize, 3][..]),
        "{name}"
    );
    let v: Vec<f64> = t
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    Affine2::new([[v[0], v[1], v[2]], [v[3], v[4], v[5]]])
}

/// (max abs difference, number of differing values)
fn diff(a: ArrayView3<u8>, b: ArrayView3<u8>) -> (i32, usize) {
    assert_eq!(a.dim(), b.dim());
    a.iter().zip(b.iter()).fold((0, 0), |(m, n), (&x, &y)| {
        let d = (x as i32 - y as i32).abs();
        (m.max(d), n + (d > 0) as usize)
    })
}

fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn sources() -> (Vec<u8>, Value) {
    (read("sources.safetensors"), json("cases.json"))
}

fn check_warp_version(version: &str, kernel: WarpKernel) -> Vec<(String, i32, usize)> {
    let (src_bytes, meta) = sources();
    let srcs = SafeTensors::deserialize(&src_bytes).unwrap();
    let entry = &meta["warp"][version];
    let bytes = read(entry["file"].as_str().unwrap());
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let [w, h] = [0, 1].map(|i| meta["crop_size"][i].as_u64().unwrap() as usize);
    let cases = entry["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    let mut report = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let img = u8_tensor(&srcs, case["source"].as_str().unwrap());
        let m = matrix(&st, &format!("{name}/matrix"));
        let expected = u8_tensor(&st, &format!("{name}/expected"));
        let got = warp_affine_with(img.view(), &m, w, h, kernel).unwrap();
        let (max, count) = diff(got.view(), expected.view());
        eprintln!("OpenCV {version} {name}: max diff {max}, {count} values differ");
        assert!(
            max <= 1,
            "OpenCV {version} {name}: max diff {max} ({count} values differ)"
        );
        report.push((name.to_string(), max, count));
    }
    report
}

#[test]
fn warp_matches_opencv_5_float_kernel() {
    check_warp_version("5.0.0", WarpKernel::Float32);
}

#[test]
fn warp_matches_opencv_4_10_fixed_point_kernel() {
    check_warp_version("4.10.0", WarpKernel::FixedPoint);
}

#[test]
fn the_two_opencv_kernels_really_differ_on_these_photos() {
    // Guards the fixture: if both OpenCV versions produced the same crops, the two tests above
    // would not show that each kernel is needed.
    let meta = json("cases.json");
    let a = read(meta["warp"]["5.0.0"]["file"].as_str().unwrap());
    let b = read(meta["warp"]["4.10.0"]["file"].as_str().unwrap());
    let (a, b) = (
        SafeTensors::deserialize(&a).unwrap(),
        SafeTensors::deserialize(&b).unwrap(),
    );
    let mut worst = 0;
    for case in meta["warp"]["5.0.0"]["cases"].as_array().unwrap() {
        let name = format!("{}/expected", case["name"].as_str().unwrap());
        worst = worst.max(diff(u8_tensor(&a, &name).view(), u8_tensor(&b, &name).view()).0);
    }
    assert!(
        worst > 1,
        "OpenCV 5.0 and 4.10 crops differ by at most {worst}"
    );
}

#[test]
fn default_warp_is_the_current_opencv() {
    let (src_bytes, meta) = sources();
    let srcs = SafeTensors::deserialize(&src_bytes).unwrap();
    let bytes = read(meta["warp"]["5.0.0"]["file"].as_str().unwrap());
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let img = u8_tensor(&srcs, "astronaut");
    let m = matrix(&st, "astronaut/hrnet_rot30_shift/matrix");
    let expected = u8_tensor(&st, "astronaut/hrnet_rot30_shift/expected");
    assert!(
        diff(
            warp_affine(img.view(), &m, 48, 64).unwrap().view(),
            expected.view()
        )
        .0 <= 1
    );
}

#[test]
fn cubic_resize_is_bit_exact_with_opencv() {
    let (src_bytes, meta) = sources();
    let srcs = SafeTensors::deserialize(&src_bytes).unwrap();
    let bytes = read("resize_cubic.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for case in meta["cubic"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let img = u8_tensor(&srcs, case["source"].as_str().unwrap());
        let (ow, oh) = (
            case["out_w"].as_u64().unwrap() as usize,
            case["out_h"].as_u64().unwrap() as usize,
        );
        let got = resize_cubic_opencv(img.view(), ow, oh).unwrap();
        assert_eq!(got.dim(), (oh, ow, 3));
        // Sampled rows first: they say how far off a failure is.
        let rows = u8_tensor(&st, &format!("{name}/rows"));
        for (i, r) in case["sample_rows"].as_array().unwrap().iter().enumerate() {
            let r = r.as_u64().unwrap() as usize;
            let got_row = got.slice(ndarray::s![r..r + 1, .., ..]);
            let exp_row = rows.slice(ndarray::s![i..i + 1, .., ..]);
            assert_eq!(diff(got_row, exp_row), (0, 0), "{name} row {r}");
        }
        if case["full"].as_bool().unwrap() {
            let expected = u8_tensor(&st, &format!("{name}/expected"));
            assert_eq!(diff(got.view(), expected.view()), (0, 0), "{name}");
        }
        // The whole output, bit for bit, through its hash.
        let bytes: Vec<u8> = got.iter().copied().collect();
        assert_eq!(
            fnv1a64(&bytes),
            case["fnv1a64"].as_str().unwrap(),
            "{name}: output differs from OpenCV"
        );
    }
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn pair(v: &Value) -> [f64; 2] {
    let x = f64s(v);
    [x[0], x[1]]
}

fn assert_matrix(got: &Affine2, expected: &[f64], what: &str) {
    let g: Vec<f64> = got.m.iter().flatten().copied().collect();
    for (a, b) in g.iter().zip(expected) {
        assert!(
            (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
            "{what}: {g:?} vs {expected:?}"
        );
    }
}

#[test]
fn center_scale_matches_hrnet_xywh2cs() {
    let r = json("affine_reference.json");
    for case in r["xywh2cs"].as_array().unwrap() {
        let b = f64s(&case["box"]);
        let ar = case["aspect_ratio"].as_f64().unwrap();
        let res = CenterScale::from_xywh([b[0], b[1], b[2], b[3]], ar);
        let cs = res.unwrap_or_else(|e| panic!("{b:?}: {e}"));
        // Both sides round to float32 at the same places: equal exactly.
        assert_eq!(cs.center, pair(&case["center"]), "{b:?} ar {ar}");
        assert_eq!(cs.scale, pair(&case["scale"]), "{b:?} ar {ar}");
    }
}

#[test]
fn affine_transform_matches_hrnet_get_affine_transform() {
    let r = json("affine_reference.json");
    let cases = r["get_affine_transform"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for case in cases {
        let got = get_affine_transform(
            pair(&case["center"]),
            pair(&case["scale"]),
            case["rot"].as_f64().unwrap(),
            pair(&case["output_size"]),
            pair(&case["shift"]),
            case["inv"].as_bool().unwrap(),
        )
        .unwrap();
        assert_matrix(&got, &f64s(&case["matrix"]), &format!("{case}"));
    }
}

#[test]
fn transform_preds_matches_hrnet() {
    let r = json("affine_reference.json");
    for case in r["transform_preds"].as_array().unwrap() {
        let cs = CenterScale {
            center: pair(&case["center"]),
            scale: pair(&case["scale"]),
        };
        let coords: Vec<[f64; 2]> = case["coords"]
            .as_array()
            .unwrap()
            .iter()
            .map(pair)
            .collect();
        let got = transform_preds(&coords, &cs, pair(&case["output_size"])).unwrap();
        for (g, e) in got.iter().zip(case["result"].as_array().unwrap()) {
            let e = pair(e);
            assert!(
                (g[0] - e[0]).abs() < 1e-9 && (g[1] - e[1]).abs() < 1e-9,
                "{g:?} vs {e:?}"
            );
        }
    }
}

#[test]
fn udp_matrix_matches_mmpose_get_warp_matrix() {
    let r = json("affine_reference.json");
    for case in r["udp_warp_matrix"].as_array().unwrap() {
        let cs = CenterScale {
            center: pair(&case["center"]),
            scale: pair(&case["scale"]),
        };
        let out = pair(&case["output_size"]);
        let rot = case["rot"].as_f64().unwrap();
        let got = crop_transform(&cs, rot, out, AffineMode::Udp).unwrap();
        assert_matrix(&got, &f64s(&case["matrix"]), &format!("{case}"));
        let direct = udp_warp_matrix(
            rot,
            [cs.center[0] * 2.0, cs.center[1] * 2.0],
            [out[0] - 1.0, out[1] - 1.0],
            cs.size_px(),
        );
        assert_eq!(direct, got);
        if rot == 0.0 {
            // Decoding at input resolution undoes the crop (up to the f32 storage of the matrix).
            let back = heatmap_to_image(&cs, out, AffineMode::Udp).unwrap();
            let p = [37.0, 91.5];
            let q = back.apply(got.apply(p));
            assert!(
                (q[0] - p[0]).abs() < 1e-3 && (q[1] - p[1]).abs() < 1e-3,
                "{q:?}"
            );
        }
    }
}
