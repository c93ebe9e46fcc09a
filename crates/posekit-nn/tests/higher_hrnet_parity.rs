//! HigherHRNet parity with PyTorch (fixtures in `tests/data/higher_hrnet/`, made by
//! `tools/fixtures/make_higher_hrnet_fixtures.py`, see the README there): a tiny HigherHRNet's
//! eval outputs at 1/4 and 1/2, a training-mode forward, the multi-resolution loss with the
//! associative-embedding terms, every gradient and the BN running statistics, to 1e-4 relative
//! (max |ours - reference| / max |reference|); and the exact key/shape sets of W32 and W48.

use posekit_nn::loss::{AeLoss, AeLossKind, MultiResolutionLoss, MultiResolutionLossConfig};
use posekit_nn::models::higher_hrnet::{HigherHrnet, HigherHrnetConfig};
use posekit_nn::models::hrnet::HrnetConfig;
use tch::{nn, Device, Tensor};

mod common;

const DIR: &str = "higher_hrnet";

/// The fixture's tiny model: width 4, stage modules (1, 2, 1), 1 BasicBlock per branch, 5
/// joints, and the official head (one 4x4 deconv of the backbone's width, 4 BasicBlocks,
/// tags per joint at 1/4 only).
fn tiny_config() -> HigherHrnetConfig {
    HigherHrnetConfig::official_head(HrnetConfig::uniform(4, [1, 2, 1], 1, 5))
}

#[test]
fn w32_and_w48_have_exactly_the_official_keys_and_shapes() {
    for (cfg, file) in [
        (HigherHrnetConfig::w32(), "higher_hrnet_w32_keys.json"),
        (HigherHrnetConfig::w48(), "higher_hrnet_w48_keys.json"),
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        HigherHrnet::new(&vs.root(), &cfg).unwrap();
        let all = common::shapes_from_json(&common::read_json(DIR, file));
        assert!(all.keys().any(|k| k.ends_with(".num_batches_tracked")));
        common::assert_same_shapes(
            &common::our_shapes(&vs),
            &common::without_batch_counters(all),
        );
    }
}

#[test]
fn tiny_higher_hrnet_matches_pytorch_in_eval_and_one_training_step() {
    let fx = common::read_tensors(DIR, "higher_hrnet_tiny.safetensors");
    let cfg = tiny_config();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = HigherHrnet::new(&vs.root(), &cfg).unwrap();
    let reference_keys = common::without_batch_counters(
        fx.iter()
            .filter_map(|(k, t)| k.strip_prefix("weight.").map(|n| (n.to_string(), t.size()))),
    );
    common::assert_same_shapes(&common::our_shapes(&vs), &reference_keys);
    common::copy_weights(&vs, &fx, "weight.");
    let mut comparisons = common::Comparisons::default();
    let k = cfg.num_joints();

    // Eval mode, both resolutions, and the named heads of the `forward` command.
    let x = &fx["input"];
    let eval = tch::no_grad(|| net.forward_outputs(x, false).unwrap());
    assert_eq!(eval.len(), 2);
    assert_eq!((eval[0].stride, eval[1].stride), (4, 2));
    let eval0 = Tensor::cat(&[&eval[0].heatmaps, eval[0].tags.as_ref().unwrap()], 1);
    comparisons.check("eval.out0", &eval0, &fx["eval.out0"]);
    assert!(eval[1].tags.is_none());
    comparisons.check("eval.out1", &eval[1].heatmaps, &fx["eval.out1"]);
    let names: Vec<String> = tch::no_grad(|| net.forward_named(x, false).unwrap())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["heatmaps_s4", "tags_s4", "heatmaps_s2"]);

    // The 'max' push variant on the eval tags (factor 1).
    let joints = &fx["target.joints0"];
    let (push_max, pull_max) = AeLoss::new(AeLossKind::Max)
        .forward(&eval0.narrow(1, k, k), joints)
        .unwrap();
    comparisons.check("ae_max_eval.push", &push_max, &fx["ae_max_eval.push"]);
    comparisons.check("ae_max_eval.pull", &pull_max, &fx["ae_max_eval.pull"]);

    // One training step with the multi-resolution loss (AE factors of the fixture).
    let outputs = net.forward_raw(x, true);
    comparisons.check("train.out0", &outputs[0], &fx["train.out0"]);
    comparisons.check("train.out1", &outputs[1], &fx["train.out1"]);
    let loss_cfg = MultiResolutionLossConfig {
        push_loss_factor: vec![fx["loss.push_factor"].double_value(&[0]); 2],
        pull_loss_factor: vec![fx["loss.pull_factor"].double_value(&[0]); 2],
        ..MultiResolutionLossConfig::default()
    };
    let loss = MultiResolutionLoss::new(k, loss_cfg).unwrap();
    let terms = loss
        .forward(
            &outputs,
            &[
                fx["target.heatmaps0"].shallow_clone(),
                fx["target.heatmaps1"].shallow_clone(),
            ],
            &[
                fx["target.masks0"].shallow_clone(),
                fx["target.masks1"].shallow_clone(),
            ],
            &[Some(joints.shallow_clone()), None],
        )
        .unwrap();
    for (name, term) in [
        ("loss.heatmaps0", &terms.heatmaps[0]),
        ("loss.heatmaps1", &terms.heatmaps[1]),
        ("loss.push0", &terms.push[0]),
        ("loss.pull0", &terms.pull[0]),
    ] {
        let term = term
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: term missing"));
        comparisons.check(name, term, &fx[name]);
    }
    assert!(terms.push[1].is_none() && terms.pull[1].is_none());
    comparisons.check("loss.total", &terms.total.reshape([1]), &fx["loss.total"]);
    terms.total.backward();

    common::check_gradients_and_running_stats(&vs, &fx, &mut comparisons);

    let head: Vec<String> = comparisons
        .all()
        .iter()
        .filter(|(n, _)| !n.starts_with("grad.") && !n.starts_with("running_after."))
        .map(|(n, d)| format!("{n} {d:.1e}"))
        .collect();
    println!(
        "higher_hrnet tiny parity: {}; {}",
        head.join(", "),
        comparisons.summary()
    );
}

/// Inference with BatchNorm folded into the convolutions (and the transposed conv) computes
/// the same outputs.
#[test]
fn folded_batch_norm_matches_pytorch_eval() {
    let fx = common::read_tensors(DIR, "higher_hrnet_tiny.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let mut net = HigherHrnet::new(&vs.root(), &tiny_config()).unwrap();
    common::copy_weights(&vs, &fx, "weight.");
    net.fold_batch_norm();
    let outputs = tch::no_grad(|| net.forward_raw(&fx["input"], false));
    let d0 = common::relative_max_abs_diff(&outputs[0], &fx["eval.out0"]);
    let d1 = common::relative_max_abs_diff(&outputs[1], &fx["eval.out1"]);
    println!("higher_hrnet tiny parity, BN folded: out0 {d0:.2e}, out1 {d1:.2e}");
    assert!(
        d0 <= common::TOL && d1 <= common::TOL,
        "folded eval: {d0:e} {d1:e}"
    );
}
