//! HigherHRNet parity with PyTorch (fixtures in `tests/data/higher_hrnet/`, made by
//! `tools/fixtures/make_higher_hrnet_fixtures.py`, see the README there): a tiny HigherHRNet's
//! eval outputs at 1/4 and 1/2, a training-mode forward, the multi-resolution loss with the
//! associative-embedding terms, every gradient and the BN running statistics, to 1e-4 relative
//! (max |ours - reference| / max |reference|); and the exact key/shape sets of W32 and W48.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use posekit_nn::loss::{AeLoss, AeLossKind, MultiResolutionLoss, MultiResolutionLossConfig};
use posekit_nn::models::higher_hrnet::{HigherHrnet, HigherHrnetConfig};
use posekit_nn::models::hrnet::HrnetConfig;
use tch::nn;
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-4;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/higher_hrnet")
        .join(name)
}

fn read_tensors(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(data(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_iter()
        .collect()
}

/// The fixture's tiny model: width 4, stage modules (1, 2, 1), 1 BasicBlock per branch, 5
/// joints, and the official head (one 4x4 deconv of the backbone's width, 4 BasicBlocks,
/// tags per joint at 1/4 only).
fn tiny_config() -> HigherHrnetConfig {
    HigherHrnetConfig::official_head(HrnetConfig::uniform(4, [1, 2, 1], 1, 5))
}

fn shapes_without_counters(
    all: impl IntoIterator<Item = (String, Vec<i64>)>,
) -> BTreeMap<String, Vec<i64>> {
    all.into_iter()
        .filter(|(k, _)| !k.ends_with(".num_batches_tracked"))
        .collect()
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

/// Copies every variable from `tensors["weight." + name]` (stored as float16 values that are
/// exactly representable, so the float32 copy is the reference's float32 weight).
fn load(vs: &nn::VarStore, tensors: &HashMap<String, Tensor>) {
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let key = format!("weight.{name}");
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

/// Asserts the tolerance and records the figure for the summary line.
fn check(what: &str, ours: &Tensor, reference: &Tensor, seen: &mut Vec<(String, f64)>) {
    let d = rel_diff(ours, reference);
    assert!(d <= TOL, "{what}: relative difference {d:e} > {TOL:e}");
    seen.push((what.to_string(), d));
}

#[test]
fn w32_and_w48_have_exactly_the_official_keys_and_shapes() {
    for (cfg, file) in [
        (HigherHrnetConfig::w32(), "higher_hrnet_w32_keys.json"),
        (HigherHrnetConfig::w48(), "higher_hrnet_w48_keys.json"),
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        HigherHrnet::new(&vs.root(), &cfg).unwrap();
        let text = std::fs::read_to_string(data(file)).unwrap();
        let all: BTreeMap<String, Vec<i64>> = serde_json::from_str(&text).unwrap();
        assert!(all.keys().any(|k| k.ends_with(".num_batches_tracked")));
        assert_same_keys(&our_keys(&vs), &shapes_without_counters(all));
    }
}

#[test]
fn tiny_higher_hrnet_matches_pytorch_in_eval_and_one_training_step() {
    let fx = read_tensors("higher_hrnet_tiny.safetensors");
    let cfg = tiny_config();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = HigherHrnet::new(&vs.root(), &cfg).unwrap();
    let reference_keys = shapes_without_counters(
        fx.iter()
            .filter_map(|(k, t)| k.strip_prefix("weight.").map(|n| (n.to_string(), t.size()))),
    );
    assert_same_keys(&our_keys(&vs), &reference_keys);
    load(&vs, &fx);
    let mut seen = Vec::new();
    let k = cfg.num_joints();

    // Eval mode, both resolutions, and the named heads of the `forward` command.
    let x = &fx["input"];
    let eval = tch::no_grad(|| net.forward_outputs(x, false).unwrap());
    assert_eq!(eval.len(), 2);
    assert_eq!((eval[0].stride, eval[1].stride), (4, 2));
    let eval0 = Tensor::cat(&[&eval[0].heatmaps, eval[0].tags.as_ref().unwrap()], 1);
    check("eval.out0", &eval0, &fx["eval.out0"], &mut seen);
    assert!(eval[1].tags.is_none());
    check("eval.out1", &eval[1].heatmaps, &fx["eval.out1"], &mut seen);
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
    check(
        "ae_max_eval.push",
        &push_max,
        &fx["ae_max_eval.push"],
        &mut seen,
    );
    check(
        "ae_max_eval.pull",
        &pull_max,
        &fx["ae_max_eval.pull"],
        &mut seen,
    );

    // One training step with the multi-resolution loss (AE factors of the fixture).
    let outputs = net.forward_raw(x, true);
    check("train.out0", &outputs[0], &fx["train.out0"], &mut seen);
    check("train.out1", &outputs[1], &fx["train.out1"], &mut seen);
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
    let some = |t: &Option<Tensor>| t.as_ref().expect("term present").shallow_clone();
    check(
        "loss.heatmaps0",
        &some(&terms.heatmaps[0]),
        &fx["loss.heatmaps0"],
        &mut seen,
    );
    check(
        "loss.heatmaps1",
        &some(&terms.heatmaps[1]),
        &fx["loss.heatmaps1"],
        &mut seen,
    );
    check(
        "loss.push0",
        &some(&terms.push[0]),
        &fx["loss.push0"],
        &mut seen,
    );
    check(
        "loss.pull0",
        &some(&terms.pull[0]),
        &fx["loss.pull0"],
        &mut seen,
    );
    assert!(terms.push[1].is_none() && terms.pull[1].is_none());
    check(
        "loss.total",
        &terms.total.reshape([1]),
        &fx["loss.total"],
        &mut seen,
    );
    terms.total.backward();

    let (mut grads, mut stats) = (0, 0);
    for (name, var) in vs.variables() {
        if var.requires_grad() {
            let key = format!("grad.{name}");
            let reference = fx.get(&key).unwrap_or_else(|| panic!("{key} missing"));
            check(&key, &var.grad(), reference, &mut seen);
            grads += 1;
        } else {
            let key = format!("running_after.{name}");
            let reference = fx.get(&key).unwrap_or_else(|| panic!("{key} missing"));
            check(&key, &var, reference, &mut seen);
            stats += 1;
        }
    }
    let ref_grads = fx.keys().filter(|k| k.starts_with("grad.")).count();
    let ref_stats = fx
        .keys()
        .filter(|k| k.starts_with("running_after.") && !k.ends_with("num_batches_tracked"))
        .count();
    assert_eq!((grads, stats), (ref_grads, ref_stats));

    let worst = seen
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .cloned()
        .unwrap_or_default();
    let head: Vec<String> = seen
        .iter()
        .filter(|(n, _)| !n.starts_with("grad.") && !n.starts_with("running_after."))
        .map(|(n, d)| format!("{n} {d:.1e}"))
        .collect();
    println!(
        "higher_hrnet tiny parity: {}; worst over {} tensors {:.2e} ({})",
        head.join(", "),
        seen.len(),
        worst.1,
        worst.0
    );
}

/// Inference with BatchNorm folded into the convolutions (and the transposed conv) computes
/// the same outputs.
#[test]
fn folded_batch_norm_matches_pytorch_eval() {
    let fx = read_tensors("higher_hrnet_tiny.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let mut net = HigherHrnet::new(&vs.root(), &tiny_config()).unwrap();
    load(&vs, &fx);
    net.fold_batch_norm();
    let outputs = tch::no_grad(|| net.forward_raw(&fx["input"], false));
    let d0 = rel_diff(&outputs[0], &fx["eval.out0"]);
    let d1 = rel_diff(&outputs[1], &fx["eval.out1"]);
    println!("higher_hrnet tiny parity, BN folded: out0 {d0:.2e}, out1 {d1:.2e}");
    assert!(d0 <= TOL && d1 <= TOL, "folded eval: {d0:e} {d1:e}");
}
