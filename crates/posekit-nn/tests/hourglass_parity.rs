//! Stacked Hourglass parity with posekit's PyTorch references:
//!
//! * the paper's network as bearpaw/pytorch-pose builds it (`models::stacked_hourglass`,
//!   `tools/fixtures/stacked_hourglass_ref.py`, fixtures in `tests/data/stacked_hourglass/`):
//!   a tiny two-stack model compared in eval mode and over one training step (every stack's
//!   heatmaps, loss summed over stacks, every gradient, BN running statistics, all to 1e-4
//!   relative); a checkpoint saved as the port saves it loading as is; the presets
//!   `hourglass-1/-2/-4/-8`' exact key/shape sets and parameter counts;
//! * MMPose's CornerNet-style HourglassNet (`models::hourglass`, `hourglass_ref.py`, fixtures in
//!   `tests/data/hourglass/`): two tiny two-stack models (strided-conv and max-pool
//!   downsampling), and the `hourglass52` preset's keys and MMPose's checkpoint names.

use posekit_nn::models::hourglass::{HourglassConfig, PoseHourglass};
use posekit_nn::models::stacked_hourglass::{StackedHourglass, StackedHourglassConfig};
use posekit_nn::models::Preset;
use tch::{nn, Device};

mod common;

const DIR: &str = "hourglass";
const STACKED: &str = "stacked_hourglass";

fn stacked_tiny_config() -> StackedHourglassConfig {
    let json = common::read_json(STACKED, "stacked_hourglass.json");
    serde_json::from_value(json["tiny"]["config"].clone()).unwrap()
}

#[test]
fn tiny_stacked_hourglass_matches_pytorch_forward_and_training_step() {
    let io = common::read_tensors(STACKED, "stacked_hourglass_tiny.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = StackedHourglass::new(&vs.root(), &stacked_tiny_config()).unwrap();
    common::load_all_fixture_weights(&vs, &io);
    let comparisons =
        common::check_fixture(&vs, &io, |x, train| net.forward_named(x, train).unwrap());
    // 2 stacks x (eval, train) heads, the loss, and every gradient / running statistic
    let grads = vs.trainable_variables().len();
    assert!(comparisons.count() > 5 + grads, "{}", comparisons.count());
    println!("stacked hourglass tiny: {}", comparisons.summary());
}

/// The port's `example/main.py` saves `{'epoch', 'arch', 'state_dict', 'best_acc',
/// 'optimizer'}` from a DataParallel model; the default loader must take it as is (strict:
/// every key of the model, nothing left over) and then compute the reference's outputs.
#[test]
fn a_checkpoint_saved_like_the_ports_loads_as_is() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = StackedHourglass::new(&vs.root(), &stacked_tiny_config()).unwrap();
    let path = common::data_path(STACKED, "stacked_hourglass_tiny_bearpaw.pth.tar");
    let report = posekit_nn::weights::load_weights(&mut vs, &path).unwrap();
    assert_eq!(report.loaded, vs.variables().len(), "{report:?}");
    let io = common::read_tensors(STACKED, "stacked_hourglass_tiny.safetensors");
    let out = tch::no_grad(|| net.forward_named(&io["input"], false)).unwrap();
    assert_eq!(out.len(), 2);
    for (name, t) in &out {
        let d = common::relative_max_abs_diff(t, &io[&format!("eval.{name}")]);
        assert!(d <= common::TOL, "{name}: {d:e}");
    }
}

#[test]
fn stacked_presets_have_the_reference_keys_shapes_and_parameter_counts() {
    let json = common::read_json(STACKED, "stacked_hourglass.json");
    for name in ["hourglass-1", "hourglass-2", "hourglass-4", "hourglass-8"] {
        let reference = &json["presets"][name];
        let cfg = StackedHourglassConfig::preset(name).unwrap();
        assert_eq!(
            serde_json::to_value(&cfg).unwrap()["num_blocks"],
            reference["config"]["num_blocks"],
            "{name}"
        );
        let vs = nn::VarStore::new(Device::Cpu);
        StackedHourglass::new(&vs.root(), &cfg).unwrap();
        common::assert_matches_reference_model(&vs, reference, name);
        // `posekit models` prints the registry's literal without building the network
        let row = Preset::find(name).unwrap();
        assert_eq!(
            row.parameters,
            reference["params"].as_i64().unwrap(),
            "{name}"
        );
    }
}

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
fn tiny_mmpose_hourglass_with_strided_conv_matches_pytorch() {
    check_tiny("conv");
}

#[test]
fn tiny_mmpose_hourglass_with_max_pool_matches_pytorch() {
    check_tiny("maxpool");
}

#[test]
fn hourglass52_has_the_reference_keys_shapes_and_parameter_count() {
    let json = common::read_json(DIR, "hourglass.json");
    let reference = &json["presets"]["hourglass52"];
    let vs = nn::VarStore::new(Device::Cpu);
    PoseHourglass::new(&vs.root(), &HourglassConfig::preset("hourglass52").unwrap()).unwrap();
    common::assert_matches_reference_model(&vs, reference, "hourglass52");
}

/// MMPose saves the model as `backbone.*` + `keypoint_head.*` (plus BN counters); the default
/// key map must land every such key on ours, so a `hourglass52_coco_256x256` checkpoint loads
/// strictly.
#[test]
fn mmpose_checkpoint_names_map_onto_the_model() {
    use posekit_nn::weights::{KeyAction, KeyMap};
    let json = common::read_json(DIR, "hourglass.json");
    let all = common::shapes_from_json(&json["presets"]["hourglass52"]["keys"]);
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
