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

/// One training step with SPM's loss (`posekit_nn::spm_loss`, intermediate supervision over
/// both stacks) against `tools/fixtures/make_spm_train_fixtures.py`: each stack's root and
/// displacement terms, the total, every gradient and the BN running statistics, to 1e-4
/// relative.
#[test]
fn tiny_spm_hourglass_training_step_with_the_spm_loss_matches_pytorch() {
    use posekit_nn::spm_loss::{SpmLoss, SpmLossConfig};
    let json = common::read_json(DIR, "spm.json");
    let tiny = &json["tiny"]["hourglass"];
    let backbone: HourglassNetConfig = serde_json::from_value(tiny["config"].clone()).unwrap();
    let cfg = SpmNetConfig {
        backbone: SpmBackboneConfig::Hourglass(backbone),
        num_joints: tiny["num_joints"].as_i64().unwrap(),
    };
    let model = common::read_tensors(DIR, "spm_hourglass_tiny.safetensors");
    let fx = common::read_tensors(DIR, "spm_train_step.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Spm::new(&vs.root(), &cfg).unwrap();
    common::load_all_fixture_weights(&vs, &model);
    let outputs: Vec<_> = net
        .outputs(&model["input"], true)
        .unwrap()
        .into_iter()
        .map(|o| (o.root, o.displacements))
        .collect();
    assert_eq!(outputs.len(), 2, "one supervised output per stack");
    let loss = SpmLoss::new(SpmLossConfig {
        displacement_factor: fx["loss.beta"].double_value(&[0]),
        smooth_l1_beta: fx["loss.transition"].double_value(&[0]),
    })
    .unwrap();
    let terms = loss
        .forward(
            &outputs,
            &fx["target.root"],
            &fx["target.mask"],
            &fx["target.displacements"],
            &fx["target.weights"],
        )
        .unwrap();
    let mut comparisons = common::Comparisons::default();
    for t in 0..2 {
        comparisons.check(
            &format!("loss.root{t}"),
            &terms.root[t].reshape([1]),
            &fx[&format!("loss.root{t}")],
        );
        comparisons.check(
            &format!("loss.displacement{t}"),
            &terms.displacement[t].reshape([1]),
            &fx[&format!("loss.displacement{t}")],
        );
    }
    comparisons.check("loss.total", &terms.total.reshape([1]), &fx["loss.total"]);
    terms.total.backward();
    let (grads, stats) = common::check_gradients_and_running_stats(&vs, &fx, &mut comparisons);
    assert!(
        grads > 50 && stats > 10,
        "{grads} gradients, {stats} statistics"
    );
    println!("spm training step: {}", comparisons.summary());
}
