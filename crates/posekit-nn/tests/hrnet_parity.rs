//! HRNet parity with PyTorch (fixtures in `tests/data/hrnet/`, see its README):
//! a tiny HRNet's eval heatmaps, a training-mode forward, the JointsMSELoss, every parameter's
//! gradient and the BatchNorm running statistics after the step, all to 1e-4 relative
//! (max |ours - reference| / max |reference|); and the exact key/shape sets of W32 and W48.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use posekit_nn::loss::joints_mse_loss;
use posekit_nn::models::hrnet::{HrnetConfig, PoseHrnet};
use tch::nn;
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-4;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hrnet")
        .join(name)
}

fn read_tensors(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(data(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_iter()
        .collect()
}

/// The tiny model of the fixtures: width 8, stage modules (1, 2, 2), 2 BasicBlocks per
/// branch, 17 joints (README, and the key list: `stage3.1` exists, `stage3.2` does not;
/// `branches.i.1` exists, `branches.i.2` does not; `final_layer.weight` is [17, 8, 1, 1]).
fn tiny_config() -> HrnetConfig {
    HrnetConfig::uniform(8, [1, 2, 2], 2, 17)
}

/// Key -> shape of a reference list, without `num_batches_tracked` (a scalar counter that
/// PyTorch's BatchNorm keeps and tch's does not; it only matters with `momentum=None`).
fn reference_keys(name: &str) -> (BTreeMap<String, Vec<i64>>, usize) {
    let text = std::fs::read_to_string(data(name)).unwrap();
    let all: BTreeMap<String, Vec<i64>> = serde_json::from_str(&text).unwrap();
    let counters = all
        .iter()
        .filter(|(k, _)| k.ends_with(".num_batches_tracked"))
        .inspect(|(_, shape)| assert!(shape.is_empty(), "counter with a shape: {shape:?}"))
        .count();
    let keys = all
        .into_iter()
        .filter(|(k, _)| !k.ends_with(".num_batches_tracked"))
        .collect();
    (keys, counters)
}

fn our_keys(vs: &nn::VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables()
        .into_iter()
        .map(|(k, t)| (k, t.size()))
        .collect()
}

fn assert_same_keys(ours: &BTreeMap<String, Vec<i64>>, reference: &BTreeMap<String, Vec<i64>>) {
    let missing: Vec<_> = reference
        .keys()
        .filter(|k| !ours.contains_key(*k))
        .collect();
    let extra: Vec<_> = ours
        .keys()
        .filter(|k| !reference.contains_key(*k))
        .collect();
    let misshaped: Vec<_> = reference
        .iter()
        .filter(|(k, s)| ours.get(*k).is_some_and(|o| o != *s))
        .map(|(k, s)| format!("{k}: ours {:?} reference {s:?}", ours[k]))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && misshaped.is_empty(),
        "missing {missing:?}\nextra {extra:?}\nmis-shaped {misshaped:?}"
    );
}

/// Copies every variable of `vs` from `tensors[prefix + name]`, insisting on equal shapes
/// (a broadcasting `copy_` would hide a layout error).
fn load(vs: &nn::VarStore, tensors: &HashMap<String, Tensor>, prefix: &str) {
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let key = format!("{prefix}{name}");
            let src = tensors
                .get(&key)
                .unwrap_or_else(|| panic!("{key} missing in the fixture"));
            assert_eq!(src.size(), var.size(), "{key}");
            var.copy_(&src.to_kind(var.kind()));
        }
    });
}

fn rel_diff(ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(ours.size(), reference.size());
    let ours = ours.to_kind(Kind::Double);
    let reference = reference.to_kind(Kind::Double);
    let scale = reference.abs().max().double_value(&[]);
    let diff = (ours - &reference).abs().max().double_value(&[]);
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

fn check(what: &str, ours: &Tensor, reference: &Tensor, worst: &mut (f64, String)) {
    let d = rel_diff(ours, reference);
    assert!(d <= TOL, "{what}: relative difference {d:e} > {TOL:e}");
    if d > worst.0 {
        *worst = (d, what.to_string());
    }
}

#[test]
fn tiny_hrnet_keys_match_the_reference_model() {
    let vs = nn::VarStore::new(Device::Cpu);
    PoseHrnet::new(&vs.root(), &tiny_config()).unwrap();
    let (reference, counters) = reference_keys("hrnet_tiny_keys.json");
    assert_same_keys(&our_keys(&vs), &reference);
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
        assert_same_keys(&our_keys(&vs), &reference);
        assert!(counters > 0);
    }
}

#[test]
fn tiny_hrnet_matches_pytorch_in_eval_and_one_training_step() {
    let weights = read_tensors("hrnet_tiny_weights.safetensors");
    let io = read_tensors("hrnet_tiny_io.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = PoseHrnet::new(&vs.root(), &tiny_config()).unwrap();
    load(&vs, &weights, "");
    let mut worst = (0.0, String::new());

    // Eval mode: BatchNorm uses the stored running statistics.
    let x = &io["input"];
    let eval = tch::no_grad(|| net.heatmaps(x, false).unwrap());
    let d_eval = rel_diff(&eval, &io["heatmaps_eval"]);
    check("heatmaps_eval", &eval, &io["heatmaps_eval"], &mut worst);

    // One training step: batch statistics, loss, backward.
    let train = net.heatmaps(x, true).unwrap();
    let d_train = rel_diff(&train, &io["heatmaps_train"]);
    check("heatmaps_train", &train, &io["heatmaps_train"], &mut worst);
    let loss = joints_mse_loss(&train, &io["target"], Some(&io["target_weight"])).unwrap();
    let d_loss = rel_diff(&loss.reshape([1]), &io["loss"]);
    check("loss", &loss.reshape([1]), &io["loss"], &mut worst);
    loss.backward();

    let vars = vs.variables();
    let mut grads = 0;
    let mut stats = 0;
    for (name, var) in &vars {
        if var.requires_grad() {
            let reference = io
                .get(&format!("grad.{name}"))
                .unwrap_or_else(|| panic!("no reference gradient for {name}"));
            check(&format!("grad.{name}"), &var.grad(), reference, &mut worst);
            grads += 1;
        } else {
            let reference = io
                .get(&format!("running_after.{name}"))
                .unwrap_or_else(|| panic!("no reference running statistic for {name}"));
            check(&format!("running_after.{name}"), var, reference, &mut worst);
            stats += 1;
        }
    }
    // Every reference gradient and statistic was compared (none of ours is missing).
    let ref_grads = io.keys().filter(|k| k.starts_with("grad.")).count();
    let ref_stats = io
        .keys()
        .filter(|k| k.starts_with("running_after.") && !k.ends_with("num_batches_tracked"))
        .count();
    assert_eq!((grads, stats), (ref_grads, ref_stats));
    println!(
        "hrnet tiny parity: eval {d_eval:.2e}, train {d_train:.2e}, loss {d_loss:.2e}; \
         worst over {} tensors {:.2e} ({})",
        grads + stats + 3,
        worst.0,
        worst.1
    );
}

/// Inference with BatchNorm folded into the convolutions computes the same heatmaps.
#[test]
fn folded_batch_norm_matches_pytorch_eval() {
    let weights = read_tensors("hrnet_tiny_weights.safetensors");
    let io = read_tensors("hrnet_tiny_io.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let mut net = PoseHrnet::new(&vs.root(), &tiny_config()).unwrap();
    load(&vs, &weights, "");
    net.fold_batch_norm();
    let eval = tch::no_grad(|| net.heatmaps(&io["input"], false).unwrap());
    let d = rel_diff(&eval, &io["heatmaps_eval"]);
    println!("hrnet tiny parity, BN folded: eval {d:.2e}");
    assert!(d <= TOL, "folded eval: {d:e}");
}
