//! HRNet parity with PyTorch (fixtures in `tests/data/hrnet/`, see its README):
//! a tiny HRNet's eval heatmaps, a training-mode forward, the JointsMSELoss, every parameter's
//! gradient and the BatchNorm running statistics after the step, all to 1e-4 relative
//! (max |ours - reference| / max |reference|); and the exact key/shape sets of W32 and W48.

use std::collections::{BTreeMap, HashMap};

use posekit_nn::loss::joints_mse_loss;
use posekit_nn::models::hrnet::{HrnetConfig, PoseHrnet};
use tch::{nn, Device, Tensor};

mod common;

const DIR: &str = "hrnet";

/// The tiny model of the fixtures: width 8, stage modules (1, 2, 2), 2 BasicBlocks per
/// branch, 17 joints (README, and the key list: `stage3.1` exists, `stage3.2` does not;
/// `branches.i.1` exists, `branches.i.2` does not; `final_layer.weight` is [17, 8, 1, 1]).
fn tiny_config() -> HrnetConfig {
    HrnetConfig::uniform(8, [1, 2, 2], 2, 17)
}

/// The tiny model with the reference's weights (`hrnet_tiny_weights`, the bare
/// `state_dict()`), and the fixture's input and reference outputs (`hrnet_tiny_io`).
fn tiny_network() -> (nn::VarStore, PoseHrnet, HashMap<String, Tensor>) {
    let weights = common::read_tensors(DIR, "hrnet_tiny_weights.safetensors");
    let io = common::read_tensors(DIR, "hrnet_tiny_io.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = PoseHrnet::new(&vs.root(), &tiny_config()).unwrap();
    common::copy_weights(&vs, &weights, "");
    (vs, net, io)
}

/// Key -> shape of a reference list without the BatchNorm counters, and how many counters
/// there were (checked against the number of BatchNorms: they are the only keys dropped).
fn reference_keys(name: &str) -> (BTreeMap<String, Vec<i64>>, usize) {
    let all = common::shapes_from_json(&common::read_json(DIR, name));
    let counters = all
        .iter()
        .filter(|(k, _)| k.ends_with(".num_batches_tracked"))
        .inspect(|(_, shape)| assert!(shape.is_empty(), "counter with a shape: {shape:?}"))
        .count();
    (common::without_batch_counters(all), counters)
}

#[test]
fn tiny_hrnet_keys_match_the_reference_model() {
    let vs = nn::VarStore::new(Device::Cpu);
    PoseHrnet::new(&vs.root(), &tiny_config()).unwrap();
    let (reference, counters) = reference_keys("hrnet_tiny_keys.json");
    common::assert_same_shapes(&common::our_shapes(&vs), &reference);
    let bns = reference
        .keys()
        .filter(|k| k.ends_with(".running_mean"))
        .count();
    assert_eq!(counters, bns, "one num_batches_tracked per BatchNorm");
}

#[test]
fn w32_and_w48_have_exactly_the_official_keys_and_shapes() {
    for (cfg, file) in [
        (HrnetConfig::w32(), "hrnet_w32_keys.json"),
        (HrnetConfig::w48(), "hrnet_w48_keys.json"),
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        PoseHrnet::new(&vs.root(), &cfg).unwrap();
        let (reference, counters) = reference_keys(file);
        common::assert_same_shapes(&common::our_shapes(&vs), &reference);
        assert!(counters > 0);
    }
}

#[test]
fn tiny_hrnet_matches_pytorch_in_eval_and_one_training_step() {
    let (vs, net, io) = tiny_network();
    let mut comparisons = common::Comparisons::default();

    // Eval mode: BatchNorm uses the stored running statistics.
    let x = &io["input"];
    let eval = tch::no_grad(|| net.heatmaps(x, false).unwrap());
    let d_eval = comparisons.check("heatmaps_eval", &eval, &io["heatmaps_eval"]);

    // One training step: batch statistics, loss, backward.
    let train = net.heatmaps(x, true).unwrap();
    let d_train = comparisons.check("heatmaps_train", &train, &io["heatmaps_train"]);
    let loss = joints_mse_loss(&train, &io["target"], Some(&io["target_weight"])).unwrap();
    let d_loss = comparisons.check("loss", &loss.reshape([1]), &io["loss"]);
    loss.backward();

    common::check_gradients_and_running_stats(&vs, &io, &mut comparisons);
    println!(
        "hrnet tiny parity: eval {d_eval:.2e}, train {d_train:.2e}, loss {d_loss:.2e}; {}",
        comparisons.summary()
    );
}

/// Inference with BatchNorm folded into the convolutions computes the same heatmaps.
#[test]
fn folded_batch_norm_matches_pytorch_eval() {
    let (_vs, mut net, io) = tiny_network();
    net.fold_batch_norm();
    let eval = tch::no_grad(|| net.heatmaps(&io["input"], false).unwrap());
    let d = common::relative_max_abs_diff(&eval, &io["heatmaps_eval"]);
    println!("hrnet tiny parity, BN folded: eval {d:.2e}");
    assert!(d <= common::TOL, "folded eval: {d:e}");
}
