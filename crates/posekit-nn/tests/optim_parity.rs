//! RMSprop against `torch.optim.RMSprop` (`tools/fixtures/make_rmsprop_fixtures.py`) and SGD
//! against `torch.optim.SGD` and a transcription of Caffe's `SGDSolver`
//! (`tools/fixtures/make_sgd_fixtures.py`), fixtures in `tests/data/optim/`: the same gradients
//! fed for five steps in every variant; the parameters after every step and the optimizer
//! state after the last one must agree.

use std::collections::HashMap;

use posekit_nn::optim::{Optimizer, OptimizerConfig, RmsPropConfig, SgdConfig};
use tch::{nn::VarStore, Device, Kind, Tensor};

mod common;

const PARAMS: [&str; 2] = ["a.weight", "b.bias"];
/// Elementwise float32 arithmetic in the same order as PyTorch's: only the last bits may differ.
const TOL: f64 = 1e-6;

fn run_variant(io: &HashMap<String, Tensor>, name: &str, args: &serde_json::Value, steps: usize) {
    let lr = args["lr"].as_f64().unwrap();
    run(
        io,
        name,
        &rmsprop_config(args).into(),
        &vec![lr; steps],
        false,
    );
}

fn rmsprop_config(args: &serde_json::Value) -> RmsPropConfig {
    let f = |k: &str, d: f64| args.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
    let defaults = RmsPropConfig::default();
    RmsPropConfig {
        alpha: f("alpha", defaults.alpha),
        eps: f("eps", defaults.eps),
        momentum: f("momentum", defaults.momentum),
        centered: args
            .get("centered")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        weight_decay: f("weight_decay", defaults.weight_decay),
    }
}

/// Feeds the fixture's gradients for `lrs.len()` steps at those rates (`late_bias`: `b.bias`
/// gets none at step 0) and compares the parameters after every step and the final state.
fn run(
    io: &HashMap<String, Tensor>,
    name: &str,
    config: &OptimizerConfig,
    lrs: &[f64],
    late_bias: bool,
) -> f64 {
    let steps = lrs.len();
    let mut worst = 0f64;
    let vs = VarStore::new(Device::Cpu);
    let vars: Vec<Tensor> = PARAMS
        .iter()
        .map(|p| {
            let (module, leaf) = p.split_once('.').unwrap();
            (vs.root() / module).var_copy(leaf, &io[&format!("init.{p}")])
        })
        .collect();
    let mut opt = Optimizer::new(&vs, config);
    assert!(opt.unused_groups().is_empty(), "{:?}", opt.unused_groups());
    for (step, &lr) in lrs.iter().enumerate() {
        opt.zero_grad();
        // d/dp sum(p * G) = G exactly: the fixture's gradient lands in p.grad as is; a
        // parameter left out of the loss before its first gradient has none (PyTorch: None)
        let loss = PARAMS
            .iter()
            .zip(&vars)
            .filter(|(p, _)| !(late_bias && step == 0 && **p == "b.bias"))
            .map(|(p, v)| (v * &io[&format!("grad.{step}.{p}")]).sum(Kind::Float))
            .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
        loss.backward();
        opt.step(lr);
        for (p, v) in PARAMS.iter().zip(&vars) {
            let d = common::relative_max_abs_diff(v, &io[&format!("after.{name}.{step}.{p}")]);
            assert!(d <= TOL, "{name} step {step} {p}: {d:e}");
            worst = worst.max(d);
        }
    }
    let (state, count) = opt.state();
    assert_eq!(count, steps as i64);
    let prefix = format!("state.{name}.");
    let reference: Vec<&String> = io.keys().filter(|k| k.starts_with(&prefix)).collect();
    assert_eq!(state.len(), reference.len(), "{name}: {:?}", state.keys());
    for key in reference {
        let ours = &state[&key[prefix.len()..]];
        let d = common::relative_max_abs_diff(ours, &io[key]);
        assert!(d <= TOL, "{key}: {d:e}");
        worst = worst.max(d);
    }
    worst
}

#[test]
fn rmsprop_matches_torch_in_every_variant() {
    let io = common::read_tensors("optim", "rmsprop.safetensors");
    let json = common::read_json("optim", "rmsprop.json");
    let steps = json["steps"].as_u64().unwrap() as usize;
    let variants = json["variants"].as_object().unwrap();
    assert_eq!(variants.len(), 5);
    for (name, args) in variants {
        run_variant(&io, name, args, steps);
    }
}

/// Every variant of `torch.optim.SGD` (plain, momentum, dampening, nesterov, weight decay, a
/// rate that drops mid-run, a parameter whose buffer starts at step 1, per-parameter
/// multipliers as param groups) and Caffe's `SGDSolver` form (with its lr/decay multipliers).
#[test]
fn sgd_matches_torch_and_caffe_in_every_variant() {
    let io = common::read_tensors("optim", "sgd.safetensors");
    let json = common::read_json("optim", "sgd.json");
    let steps = json["steps"].as_u64().unwrap() as usize;
    let variants = json["variants"].as_object().unwrap();
    assert_eq!(variants.len(), 10);
    let mut worst = 0f64;
    for (name, spec) in variants {
        let mut fields = spec["args"].as_object().unwrap().clone();
        if let Some(groups) = spec.get("groups") {
            fields.insert("groups".into(), groups.clone());
        }
        let config: SgdConfig = serde_json::from_value(fields.into()).unwrap();
        config.check().unwrap();
        let lrs: Vec<f64> = spec["lrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(lrs.len(), steps);
        let late_bias = spec.get("late_bias").and_then(|v| v.as_bool()) == Some(true);
        worst = worst.max(run(&io, name, &config.into(), &lrs, late_bias));
    }
    eprintln!("SGD parity: largest relative difference {worst:e}");
}
