//! SPM parity with a PyTorch reference (`tools/fixtures/spm_ref.py`, fixtures in
//! `tests/data/spm/`): the root and displacement heads on a tiny two-stack hourglass and on a
//! tiny HRNet, in eval mode and over one training step (MSE loss over all heads, every
//! gradient, BN running statistics), to 1e-4 relative; and the presets' exact keys, shapes
//! and parameter counts.

use posekit_nn::models::hourglass::HourglassNetConfig;
use posekit_nn::models::hrnet::HrnetConfig;
use posekit_nn::models::spm::{Spm, SpmBackboneConfig, SpmNetConfig};
use tch::{nn, Device};

mod common;

const DIR: &str = "spm";

fn check(cfg: SpmNetConfig, files: &[&str], tag: &str) {
    let mut io = common::read_tensors(DIR, files[0]);
    for f in &files[1..] {
        io.extend(common::read_tensors(DIR, f));
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Spm::new(&vs.root(), &cfg).unwrap();
    common::load_all_fixture_weights(&vs, &io);
    let comparisons =
        common::check_fixture(&vs, &io, |x, train| net.forward_named(x, train).unwrap());
    println!("spm tiny ({tag}): {}", comparisons.summary());
}

#[test]
fn tiny_spm_hourglass_matches_pytorch() {
    let json = common::read_json(DIR, "spm.json");
    let tiny = &json["tiny"]["hourglass"];
    let backbone: HourglassNetConfig = serde_json::from_value(tiny["config"].clone()).unwrap();
    let cfg = SpmNetConfig {
        backbone: SpmBackboneConfig::Hourglass(backbone),
        num_joints: tiny["num_joints"].as_i64().unwrap(),
    };
    check(cfg, &["spm_hourglass_tiny.safetensors"], "hourglass");
}

#[test]
fn tiny_spm_hrnet_matches_pytorch() {
    let json = common::read_json(DIR, "spm.json");
    let tiny = &json["tiny"]["hrnet"];
    let c = &tiny["config"];
    let width = c["width"].as_i64().unwrap();
    let modules: Vec<usize> = serde_json::from_value(c["modules"].clone()).unwrap();
    let blocks = c["blocks"].as_u64().unwrap() as usize;
    let k = tiny["num_joints"].as_i64().unwrap();
    let cfg = SpmNetConfig {
        backbone: SpmBackboneConfig::Hrnet(HrnetConfig::uniform(
            width,
            [modules[0], modules[1], modules[2]],
            blocks,
            k,
        )),
        num_joints: k,
    };
    check(
        cfg,
        &[
            "spm_hrnet_tiny.safetensors",
            "spm_hrnet_tiny_weights.safetensors",
        ],
        "hrnet",
    );
}

#[test]
fn presets_have_the_reference_keys_shapes_and_parameter_counts() {
    let json = common::read_json(DIR, "spm.json");
    for name in ["spm-hourglass", "spm-hrnet-w32"] {
        let reference = &json["presets"][name];
        let vs = nn::VarStore::new(Device::Cpu);
        Spm::new(&vs.root(), &SpmNetConfig::preset(name).unwrap()).unwrap();
        common::assert_matches_reference_model(&vs, reference, name);
    }
}
