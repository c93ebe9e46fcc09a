//! RMSprop against `torch.optim.RMSprop` (`tools/fixtures/make_rmsprop_fixtures.py`, fixture in
//! `tests/data/optim/`): the same gradients fed for five steps in five variants (plain,
//! momentum, centered, centered with momentum and weight decay, other alpha/eps); the
//! parameters after every step and the optimizer state after the last one must agree.

use std::collections::HashMap;

use posekit_nn::optim::{Optimizer, RmsPropConfig};
use tch::{nn::VarStore, Device, Kind, Tensor};

mod common;

const PARAMS: [&str; 2] = ["a.weight", "b.bias"];
/// Elementwise float32 arithmetic in the same order as PyTorch's: only the last bits may differ.
const TOL: f64 = 1e-6;

fn run_variant(io: &HashMap<String, Tensor>, name: &str, args: &serde_json::Value, steps: usize) {
    let f = |k: &str, d: f64| args.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
    let defaults = RmsPropConfig::default();
    let config = RmsPropConfig {
        alpha: f("alpha", defaults.alpha),
        eps: f("eps", defaults.eps),
        momentum: f("momentum", defaults.momentum),
        centered: args
            .get("centered")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        weight_decay: f("weight_decay", defaults.weight_decay),
    };
    let lr = args["lr"].as_f64().unwrap();

    let vs = VarStore::new(Device::Cpu);
    let vars: Vec<Tensor> = PARAMS
        .iter()
        .map(|p| {
            let (module, leaf) = p.split_once('.').unwrap();
            (vs.root() / module).var_copy(leaf, &io[&format!("init.{p}")])
        })
        .collect();
    let mut opt = Optimizer::new(&vs, &config.into());
    for step in 0..steps {
        opt.zero_grad();
        // d/dp sum(p * G) = G exactly: the fixture's gradient lands in p.grad as is
        let loss = PARAMS
            .iter()
            .zip(&vars)
            .map(|(p, v)| (v * &io[&format!("grad.{step}.{p}")]).sum(Kind::Float))
            .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
        loss.backward();
        opt.step(lr);
        for (p, v) in PARAMS.iter().zip(&vars) {
            let d = common::relative_max_abs_diff(v, &io[&format!("after.{name}.{step}.{p}")]);
            assert!(d <= TOL, "{name} step {step} {p}: {d:e}");
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
    }
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
