//! OpenPose (VGG-19 CPM) parity with a PyTorch reference (`tools/fixtures/openpose_vgg_ref.py`,
//! fixtures in `tests/data/openpose_vgg/`): a tiny three-stage model's PAFs and heatmaps of
//! every stage in eval mode and over one training step (MSE loss over all heads, every
//! gradient), to 1e-4 relative; and the `openpose-vgg19` preset's exact keys, shapes and
//! parameter count.

use std::collections::HashMap;

use posekit_nn::models::openpose::{OpenPoseVgg, OpenPoseVggConfig};
use tch::{nn, Device, Tensor};

mod common;

const DIR: &str = "openpose_vgg";

/// The fixture's tiny three-stage model with the reference's weights, and the fixture.
fn tiny_network() -> (nn::VarStore, OpenPoseVgg, HashMap<String, Tensor>) {
    let json = common::read_json(DIR, "openpose_vgg.json");
    let cfg: OpenPoseVggConfig = serde_json::from_value(json["tiny"]["config"].clone()).unwrap();
    let io = common::read_tensors(DIR, "openpose_vgg_tiny.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = OpenPoseVgg::new(&vs.root(), &cfg).unwrap();
    common::load_all_fixture_weights(&vs, &io);
    (vs, net, io)
}

#[test]
fn tiny_openpose_matches_pytorch() {
    let (vs, net, io) = tiny_network();
    let comparisons =
        common::check_fixture(&vs, &io, |x, train| net.forward_named(x, train).unwrap());
    println!("openpose-vgg tiny: {}", comparisons.summary());
}

/// The comparison has teeth: a 1% change of one bias deep in the network is caught.
#[test]
fn a_perturbed_weight_is_detected() {
    let (vs, net, io) = tiny_network();
    tch::no_grad(|| {
        let mut bias = vs.variables()["model2_2.Mconv7_stage2_L2.bias"].shallow_clone();
        let _ = bias.g_mul_scalar_(1.01);
    });
    let out = tch::no_grad(|| net.forward_named(&io["input"], false).unwrap());
    let (name, t) = &out[3];
    assert_eq!(name, "stage2.heatmaps");
    let d = common::relative_max_abs_diff(t, &io["eval.stage2.heatmaps"]);
    assert!(d > common::TOL, "perturbation not detected: {d:e}");
}

#[test]
fn vgg19_preset_has_the_reference_keys_shapes_and_parameter_count() {
    let json = common::read_json(DIR, "openpose_vgg.json");
    let reference = &json["openpose-vgg19"];
    let vs = nn::VarStore::new(Device::Cpu);
    OpenPoseVgg::new(&vs.root(), &OpenPoseVggConfig::vgg19_coco()).unwrap();
    common::assert_matches_reference_model(&vs, reference, "openpose-vgg19");
    assert_eq!(common::param_count(&vs), 52_311_446);
}
