//! Adam, written out on tensors instead of tch's wrapped C++ optimizer, because a checkpoint that
//! survives a crash must hold the optimizer's moments and step count, and tch does not expose
//! those of its own optimizers. The update is torch.optim.Adam's (bias-corrected, `eps` added
//! after the square root), so training matches PyTorch step for step. RMSprop
//! ([`rmsprop`]) and SGD ([`sgd`], PyTorch's or Caffe's form) are written the same way, and
//! [`Optimizer`] is the one a config chooses.

mod choice;
pub mod rmsprop;
pub mod sgd;

pub use choice::{Optimizer, OptimizerConfig};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use sgd::{ParamGroup, Sgd, SgdConfig, SgdForm};

use std::collections::BTreeMap;

use tch::{nn::VarStore, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// L2 penalty added to the gradient (torch.optim.Adam's `weight_decay`).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Adam over the trainable variables of a VarStore, keyed by variable name so that its state
/// can be saved and restored next to the weights.
pub struct Adam {
    config: AdamConfig,
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    step: i64,
}

impl Adam {
    pub fn new(vs: &VarStore, config: AdamConfig) -> Self {
        let named = trainable_by_name(vs);
        let exp_avg = named.iter().map(|(_, t)| t.zeros_like()).collect();
        let exp_avg_sq = named.iter().map(|(_, t)| t.zeros_like()).collect();
        Adam {
            config,
            params: named,
            exp_avg,
            exp_avg_sq,
            step: 0,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Number of updates taken so far.
    pub fn step_count(&self) -> i64 {
        self.step
    }

    /// One update with learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(self.step as i32);
        let bias2 = 1.0 - c.beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = if c.weight_decay != 0.0 {
                    &g + &*p * c.weight_decay
                } else {
                    g
                };
                let m = &mut self.exp_avg[i];
                let _ = m.g_mul_scalar_(c.beta1);
                let _ = m.g_add_(&(&g * (1.0 - c.beta1)));
                let v = &mut self.exp_avg_sq[i];
                let _ = v.g_mul_scalar_(c.beta2);
                let _ = v.g_add_(&(&g * &g * (1.0 - c.beta2)));
                let denom = v.sqrt() / bias2.sqrt() + c.eps;
                let update = &*m / denom * (lr / bias1);
                let _ = p.g_sub_(&update);
            }
        });
    }

    /// The optimizer state as named tensors (`exp_avg.<var>`, `exp_avg_sq.<var>`) plus the step
    /// count, for checkpoints.
    pub fn state(&self) -> (BTreeMap<String, Tensor>, i64) {
        let mut map = BTreeMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            map.insert(format!("exp_avg.{name}"), self.exp_avg[i].shallow_clone());
            map.insert(
                format!("exp_avg_sq.{name}"),
                self.exp_avg_sq[i].shallow_clone(),
            );
        }
        (map, self.step)
    }

    /// Restores a state saved by [`Adam::state`]. Every moment must be present with the shape of
    /// its variable; anything else is an error listing the offending names.
    pub fn load_state(
        &mut self,
        state: &BTreeMap<String, Tensor>,
        step: i64,
    ) -> Result<(), String> {
        let mut problems = Vec::new();
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (prefix, slot) in [
                ("exp_avg", &mut self.exp_avg[i]),
                ("exp_avg_sq", &mut self.exp_avg_sq[i]),
            ] {
                restore_slot(state, &format!("{prefix}.{name}"), p, slot, &mut problems);
            }
        }
        state_fits("optimizer state does not fit the model", problems)?;
        self.step = step;
        Ok(())
    }
}

/// The trainable variables of `vs` sorted by name: the order every optimizer keeps its state
/// in, so that a checkpoint's entries line up whatever order the VarStore hands them out.
fn trainable_by_name(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Copies the saved tensor `state[key]` into `slot`, the state of trained variable `param`, or
/// notes why it cannot: missing, or not of `param`'s shape. The optimizers' `load_state` share
/// it so that they refuse a checkpoint for the same reasons and in the same words.
fn restore_slot(
    state: &BTreeMap<String, Tensor>,
    key: &str,
    param: &Tensor,
    slot: &mut Tensor,
    problems: &mut Vec<String>,
) {
    match state.get(key) {
        Some(t) if t.size() == param.size() => {
            tch::no_grad(|| slot.copy_(&t.to_kind(Kind::Float).to_device(param.device())));
        }
        Some(t) => problems.push(shape_problem(key, t, param)),
        None => problems.push(format!("{key}: missing")),
    }
}

fn shape_problem(key: &str, saved: &Tensor, param: &Tensor) -> String {
    format!(
        "{key}: shape {:?}, expected {:?}",
        saved.size(),
        param.size()
    )
}

/// `Ok` when `problems` is empty, else `what` with their count and the first five.
fn state_fits(what: &str, mut problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        return Ok(());
    }
    let n = problems.len();
    problems.truncate(5);
    Err(format!("{what} ({n} problems): {}", problems.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, nn::Module, Device};

    /// Reference values from torch.optim.Adam(lr=0.1) on f(w) = sum((w - t)^2), w0 = [1, -2, 3],
    /// t = [0.5, 0.5, 0.5], three steps (computed by hand from the documented update, which is
    /// what PyTorch implements).
    #[test]
    fn matches_torch_adam_update() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs
            .root()
            .var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0, 3.0]));
        let target = Tensor::from_slice(&[0.5f32, 0.5, 0.5]);
        let mut opt = Adam::new(&vs, AdamConfig::default());
        let (mut m, mut v) = ([0f64; 3], [0f64; 3]);
        let mut expect = [1.0f64, -2.0, 3.0];
        for step in 1..=3 {
            opt.zero_grad();
            let loss = (&w - &target).square().sum(Kind::Float);
            loss.backward();
            opt.step(0.1);
            for i in 0..3 {
                let g = 2.0 * (expect[i] - 0.5);
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let denom = v[i].sqrt() / (1.0 - 0.999f64.powi(step)).sqrt() + 1e-8;
                expect[i] -= 0.1 / (1.0 - 0.9f64.powi(step)) * m[i] / denom;
            }
        }
        let got: Vec<f32> = Vec::<f32>::try_from(&w).unwrap();
        for i in 0..3 {
            assert!(
                (got[i] as f64 - expect[i]).abs() < 1e-6,
                "{i}: {} vs {}",
                got[i],
                expect[i]
            );
        }
        assert_eq!(opt.step_count(), 3);
    }

    #[test]
    fn state_round_trip_and_mismatch_error() {
        let vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "fc", 3, 2, Default::default());
        let mut opt = Adam::new(&vs, AdamConfig::default());
        let x = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
        opt.zero_grad();
        lin.forward(&x).sum(Kind::Float).backward();
        opt.step(0.01);
        let (state, step) = opt.state();
        assert_eq!(state.len(), 4);

        let vs2 = VarStore::new(Device::Cpu);
        let _lin2 = nn::linear(vs2.root() / "fc", 3, 2, Default::default());
        let mut opt2 = Adam::new(&vs2, AdamConfig::default());
        opt2.load_state(&state, step).unwrap();
        assert_eq!(opt2.step_count(), 1);
        let (s2, _) = opt2.state();
        for (k, t) in &state {
            assert!(t.equal(&s2[k]), "{k}");
        }

        let vs3 = VarStore::new(Device::Cpu);
        let _lin3 = nn::linear(vs3.root() / "fc", 3, 5, Default::default());
        let mut opt3 = Adam::new(&vs3, AdamConfig::default());
        let err = opt3.load_state(&state, step).unwrap_err();
        assert!(err.contains("fc.weight"), "{err}");
    }
}
