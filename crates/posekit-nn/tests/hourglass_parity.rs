//! Stacked Hourglass parity with a PyTorch reference of MMPose's HourglassNet
//! (`tools/fixtures/hourglass_ref.py`, fixtures in `tests/data/hourglass/`): two tiny
//! two-stack models (MMPose's strided-conv and Newell's max-pool downsampling) compared in
//! eval mode and over one training step (outputs of every stack, MSE loss, every gradient, BN
//! running statistics), all to 1e-4 relative; and the presets' exact key/shape sets and
//! parameter counts.

use posekit_nn::models::hourglass::{HourglassConfig, PoseHourglass};
use tch::{nn, Device};

mod common;

const DIR: &str = "hourglass";

fn tiny_config(json: &serde_json::Value, tag: &str) -> HourglassConfig {
    let c = &json["tiny"][tag]["config"];
    let backbone = serde_json::json!({
        "downsample_times": c["downsample_times"],
        "num_stacks": c["num_stacks"],
        "stage_channels": c["stage_channels"],
        "stage_blocks": c["stage_blocks"],
        "feat_channel": c["feat_channel"],
        "stem_channels": c["stem_channels"],
        "downsample": c["downsample"],
    });
    serde_json::from_value(serde_json::json!({"backbone": backbone, "num_joints": c["num_joints"]}))
        .unwrap()
}

fn check_tiny(tag: &str) {
    let json = common::read_json(DIR, "hourglass.json");
    let io = common::read_tensors(DIR, &format!("hourglass_tiny_{tag}.safetensors"));
    let vs = nn::VarStore::new(Device::Cpu);
    let net = PoseHourglass::new(&vs.root(), &tiny_config(&json, tag)).unwrap();
    common::load_all_fixture_weights(&vs, &io);
    let comparisons =
        common::check_fixture(&vs, &io, |x, train| net.forward_named(x, train).unwrap());
    println!("hourglass tiny ({tag}): {}", comparisons.summary());
}

#[test]
fn tiny_hourglass_with_strided_conv_matches_pytorch() {
    check_tiny("conv");
}

#[test]
fn tiny_hourglass_with_max_pool_matches_pytorch() {
    check_tiny("maxpool");
}

#[test]
fn presets_have_the_reference_keys_shapes_and_parameter_counts() {
    let json = common::read_json(DIR, "hourglass.json");
    for name in ["hourglass-1", "hourglass-2", "hourglass-8"] {
        let reference = &json["presets"][name];
        let vs = nn::VarStore::new(Device::Cpu);
        PoseHourglass::new(&vs.root(), &HourglassConfig::preset(name).unwrap()).unwrap();
        common::assert_matches_reference_model(&vs, reference, name);
    }
}

/// MMPose saves the model as `backbone.*` + `keypoint_head.*` (plus BN counters); the default
/// key map must land every such key on ours, so a `hourglass52_coco_256x256` checkpoint loads
/// strictly.
#[test]
fn mmpose_checkpoint_names_map_onto_the_model() {
    use posekit_nn::weights::{KeyAction, KeyMap};
    let json = common::read_json(DIR, "hourglass.json");
    let all = common::shapes_from_json(&json["presets"]["hourglass-1"]["keys"]);
    let vs = nn::VarStore::new(Device::Cpu);
    PoseHourglass::new(&vs.root(), &HourglassConfig::hourglass52()).unwrap();
    let ours = common::our_shapes(&vs);
    let map = KeyMap::default();
    let mut mapped = 0;
    for key in all.keys() {
        let prefix = if key.starts_with("multi_final_layers.") {
            "keypoint_head."
        } else {
            "backbone."
        };
        let saved = format!("{prefix}{key}");
        match map.resolve(&saved, |k| ours.contains_key(k)) {
            KeyAction::Keep(name) => {
                assert_eq!(&name, key);
                assert!(ours.contains_key(&name), "{name}");
                mapped += 1;
            }
            KeyAction::Drop => assert!(key.ends_with("num_batches_tracked"), "{key} dropped"),
        }
    }
    assert_eq!(mapped, ours.len());
}
