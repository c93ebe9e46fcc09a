//! Stochastic gradient descent with momentum, the optimizer of CMU's OpenPose training
//! (Caffe's `SGDSolver`, `pose_solver.prototxt`) and of most ImageNet-style recipes, written out
//! on tensors like [`super::Adam`] so that its momentum buffers go into checkpoints.
//!
//! Two forms, which agree while the learning rate is constant and differ when it steps:
//!
//! * `pytorch` (default): `torch.optim.SGD` (`_single_tensor_sgd`, PyTorch 2.x), step for step:
//!
//!   ```text
//!   g = grad + weight_decay * p                        (if weight_decay != 0)
//!   b = g                                              (first step of a parameter: a copy)
//!   b = momentum * b + (1 - dampening) * g             (later steps)
//!   g = g + momentum * b  (nesterov)   or   g = b      (momentum > 0)
//!   p = p - lr * g
//!   ```
//!
//! * `caffe`: Caffe's `SGDSolver` (`src/caffe/solvers/sgd_solver.cpp`: `Regularize`, then
//!   `ComputeUpdateValue`, then `Blob::Update`), whose buffer (`history`) holds the rate:
//!
//!   ```text
//!   g = grad + weight_decay * decay_mult * p
//!   v = momentum * v + lr * lr_mult * g                (v starts at zero)
//!   p = p - v
//!   ```
//!
//!   After the rate steps down, the momentum carried in `v` still moves at the old rate for a
//!   while, where PyTorch's form rescales it at once. Caffe has no dampening, and Nesterov is a
//!   different solver there (`NesterovSolver`), so neither is accepted with this form.
//!
//! Both forms take per-parameter multipliers ([`ParamGroup`]): Caffe's `lr_mult` /
//! `decay_mult` of a layer's `param` blocks, or in PyTorch terms one param group per rule with
//! `lr = lr * lr_mult` and `weight_decay = weight_decay * decay_mult`. Parameters no rule
//! matches get 1 and 1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Kind, Tensor};

use super::{shape_problem, state_fits, trainable_by_name};

/// Which framework's momentum update (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SgdForm {
    /// `torch.optim.SGD`: the buffer accumulates gradients, the rate multiplies it.
    #[default]
    Pytorch,
    /// Caffe's `SGDSolver`: the buffer accumulates rate x gradient.
    Caffe,
}

/// Multipliers for the parameters whose VarStore name starts with `prefix` and ends with
/// `suffix` (both may be empty). The first rule that matches a parameter applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamGroup {
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub suffix: String,
    /// Multiplies the learning rate (Caffe's `lr_mult`).
    #[serde(default = "one")]
    pub lr_mult: f64,
    /// Multiplies `weight_decay` (Caffe's `decay_mult`).
    #[serde(default = "one")]
    pub decay_mult: f64,
}

fn one() -> f64 {
    1.0
}

impl ParamGroup {
    fn matches(&self, name: &str) -> bool {
        name.starts_with(&self.prefix) && name.ends_with(&self.suffix)
    }

    fn describe(&self) -> String {
        format!("prefix '{}' suffix '{}'", self.prefix, self.suffix)
    }
}

/// `torch.optim.SGD`'s arguments other than `lr` (which comes from the schedule), with its
/// defaults, plus the form and the per-parameter multipliers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SgdConfig {
    /// Heavy-ball momentum (0: plain SGD, no buffer kept).
    pub momentum: f64,
    /// Scales the gradient added to the buffer by `1 - dampening` (PyTorch form only).
    pub dampening: f64,
    /// Nesterov momentum (PyTorch form only; needs momentum > 0 and no dampening).
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    pub form: SgdForm,
    /// Per-parameter multipliers, first match wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<ParamGroup>,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            form: SgdForm::Pytorch,
            groups: Vec::new(),
        }
    }
}

impl SgdConfig {
    /// What `torch.optim.SGD` refuses, what Caffe's solver has no counterpart of, and
    /// multipliers that are not numbers >= 0, as a message.
    pub fn check(&self) -> Result<(), String> {
        for (field, v) in [
            ("momentum", self.momentum),
            ("dampening", self.dampening),
            ("weight_decay", self.weight_decay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{field} must be >= 0, got {v}"));
            }
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err("nesterov needs momentum > 0 and dampening 0".into());
        }
        if self.form == SgdForm::Caffe && (self.nesterov || self.dampening != 0.0) {
            return Err(
                "form \"caffe\" has no dampening or nesterov (Caffe's SGDSolver has neither)"
                    .into(),
            );
        }
        for (i, g) in self.groups.iter().enumerate() {
            for (field, v) in [("lr_mult", g.lr_mult), ("decay_mult", g.decay_mult)] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("groups[{i}].{field} must be >= 0, got {v}"));
                }
            }
        }
        Ok(())
    }
}

/// PyTorch's name of the buffer (`state['momentum_buffer']`) and Caffe's (`history_`); the
/// two hold different quantities, so a state of one form is not read as the other's.
pub(crate) const MOMENTUM_BUFFER: &str = "momentum_buffer";
pub(crate) const HISTORY: &str = "history";

/// SGD over the trainable variables of a VarStore, keyed by variable name.
pub struct Sgd {
    config: SgdConfig,
    params: Vec<(String, Tensor)>,
    /// Per parameter: (lr multiplier, weight-decay multiplier) from the groups.
    mults: Vec<(f64, f64)>,
    /// Per parameter, made on its first step with a gradient (PyTorch: a copy of the gradient;
    /// Caffe: from zero); none at all without momentum.
    buffers: Vec<Option<Tensor>>,
    /// Groups that no parameter matched (a misspelt prefix), for the caller to refuse.
    unused_groups: Vec<String>,
    step: i64,
}

impl Sgd {
    pub fn new(vs: &VarStore, config: SgdConfig) -> Self {
        let named = trainable_by_name(vs);
        let mut used = vec![false; config.groups.len()];
        let mults = named
            .iter()
            .map(
                |(name, _)| match config.groups.iter().position(|g| g.matches(name)) {
                    Some(i) => {
                        used[i] = true;
                        (config.groups[i].lr_mult, config.groups[i].decay_mult)
                    }
                    None => (1.0, 1.0),
                },
            )
            .collect();
        let unused_groups = config
            .groups
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(g, _)| g.describe())
            .collect();
        Sgd {
            buffers: named.iter().map(|_| None).collect(),
            params: named,
            mults,
            unused_groups,
            config,
            step: 0,
        }
    }

    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    /// The groups of the config that match no trainable variable.
    pub fn unused_groups(&self) -> &[String] {
        &self.unused_groups
    }

    /// The (lr, weight-decay) multipliers of variable `name`, if it is trained.
    pub fn multipliers(&self, name: &str) -> Option<(f64, f64)> {
        let i = self.params.iter().position(|(n, _)| n == name)?;
        Some(self.mults[i])
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Number of updates taken so far (SGD itself does not use it).
    pub fn step_count(&self) -> i64 {
        self.step
    }

    fn buffer_name(&self) -> &'static str {
        match self.config.form {
            SgdForm::Pytorch => MOMENTUM_BUFFER,
            SgdForm::Caffe => HISTORY,
        }
    }

    /// One update with learning rate `lr`; parameters without a gradient are left alone (their
    /// buffers too, as both frameworks skip them).
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let c = &self.config;
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let (lr_mult, decay_mult) = self.mults[i];
                let decay = c.weight_decay * decay_mult;
                let lr = lr * lr_mult;
                let g = if decay != 0.0 { &g + &*p * decay } else { g };
                match c.form {
                    SgdForm::Pytorch => {
                        let step = if c.momentum != 0.0 {
                            let buf = match &mut self.buffers[i] {
                                Some(b) => {
                                    let _ = b.g_mul_scalar_(c.momentum);
                                    let _ = b.g_add_(&(&g * (1.0 - c.dampening)));
                                    b.shallow_clone()
                                }
                                slot @ None => {
                                    let b = g.copy();
                                    *slot = Some(b.shallow_clone());
                                    b
                                }
                            };
                            if c.nesterov {
                                &g + buf * c.momentum
                            } else {
                                buf
                            }
                        } else {
                            g
                        };
                        let _ = p.g_sub_(&(step * lr));
                    }
                    SgdForm::Caffe => {
                        let scaled = g * lr;
                        let update = if c.momentum != 0.0 {
                            let b = self.buffers[i].get_or_insert_with(|| p.zeros_like());
                            let _ = b.g_mul_scalar_(c.momentum);
                            let _ = b.g_add_(&scaled);
                            b.shallow_clone()
                        } else {
                            scaled
                        };
                        let _ = p.g_sub_(&update);
                    }
                }
            }
        });
    }

    /// The buffers that exist as `momentum_buffer.<var>` (PyTorch form) or `history.<var>`
    /// (Caffe form), plus the step count, for checkpoints.
    pub fn state(&self) -> (BTreeMap<String, Tensor>, i64) {
        let prefix = self.buffer_name();
        let map = self
            .params
            .iter()
            .zip(&self.buffers)
            .filter_map(|((name, _), b)| {
                b.as_ref()
                    .map(|b| (format!("{prefix}.{name}"), b.shallow_clone()))
            })
            .collect();
        (map, self.step)
    }

    /// Restores a state saved by [`Sgd::state`] with the same config. Every entry must be a
    /// buffer of this form for a trained variable, with its shape; a variable without one has
    /// not had a gradient yet (it is made on its next step, as PyTorch does). A state without
    /// any buffer after some steps with momentum is refused too (saved without momentum).
    pub fn load_state(
        &mut self,
        state: &BTreeMap<String, Tensor>,
        step: i64,
    ) -> Result<(), String> {
        let prefix = self.buffer_name();
        let mut problems = Vec::new();
        let mut buffers: Vec<Option<Tensor>> = self.params.iter().map(|_| None).collect();
        for (key, t) in state {
            let var = key
                .strip_prefix(prefix)
                .and_then(|k| k.strip_prefix('.'))
                .filter(|_| self.config.momentum != 0.0);
            let Some(var) = var else {
                problems.push(format!("{key}: not a buffer of this SGD config"));
                continue;
            };
            match self.params.iter().position(|(n, _)| n == var) {
                Some(i) if t.size() == self.params[i].1.size() => {
                    let p = &self.params[i].1;
                    buffers[i] = Some(t.to_kind(Kind::Float).to_device(p.device()).copy());
                }
                Some(i) => problems.push(shape_problem(key, t, &self.params[i].1)),
                None => problems.push(format!("{key}: no such trained variable")),
            }
        }
        if state.is_empty() && step > 0 && self.config.momentum != 0.0 && !self.params.is_empty() {
            problems.push(format!(
                "no {prefix} buffers after {step} steps (saved without momentum?)"
            ));
        }
        state_fits("SGD state does not fit the model and config", problems)?;
        self.buffers = buffers;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, nn::Module, Device};

    fn one_var(values: &[f32]) -> (VarStore, Tensor) {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(values));
        (vs, w)
    }

    fn descend(opt: &mut Sgd, w: &Tensor, lr: f64) {
        opt.zero_grad();
        (w - 0.5).square().sum(Kind::Float).backward();
        opt.step(lr);
    }

    /// Momentum 0.9 on f(w) = sum((w - 0.5)^2), evaluated in f64 here for both forms: equal
    /// while the rate is constant, different after it drops (the fixture test in
    /// tests/optim_parity.rs checks the PyTorch form against PyTorch itself).
    #[test]
    fn forms_agree_until_the_rate_changes() {
        let rates = [0.1, 0.1, 0.01, 0.01];
        let mut expect_pt = [1.0f64, -2.0];
        let mut expect_caffe = expect_pt;
        let (mut b, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        let mut got = Vec::new();
        for form in [SgdForm::Pytorch, SgdForm::Caffe] {
            let (vs, w) = one_var(&[1.0, -2.0]);
            let cfg = SgdConfig {
                momentum: 0.9,
                form,
                ..Default::default()
            };
            let mut opt = Sgd::new(&vs, cfg);
            let mut trace = Vec::new();
            for lr in rates {
                descend(&mut opt, &w, lr);
                trace.push(Vec::<f32>::try_from(&w).unwrap());
            }
            got.push(trace);
        }
        for (k, lr) in rates.iter().enumerate() {
            for i in 0..2 {
                let g = 2.0 * (expect_pt[i] - 0.5);
                b[i] = if k == 0 { g } else { 0.9 * b[i] + g };
                expect_pt[i] -= lr * b[i];
                let g = 2.0 * (expect_caffe[i] - 0.5);
                v[i] = 0.9 * v[i] + lr * g;
                expect_caffe[i] -= v[i];
                assert!((got[0][k][i] as f64 - expect_pt[i]).abs() < 1e-5, "{k} {i}");
                assert!(
                    (got[1][k][i] as f64 - expect_caffe[i]).abs() < 1e-5,
                    "{k} {i}"
                );
            }
            if k < 2 {
                assert!((expect_pt[0] - expect_caffe[0]).abs() < 1e-12);
            }
        }
        assert!((expect_pt[0] - expect_caffe[0]).abs() > 1e-3);
    }

    #[test]
    fn groups_match_first_rule_and_unused_ones_are_reported() {
        let vs = VarStore::new(Device::Cpu);
        let _a = nn::linear(vs.root() / "model0", 2, 2, Default::default());
        let _b = nn::linear(vs.root() / "model2_1", 2, 2, Default::default());
        let group = |prefix: &str, suffix: &str, lr_mult, decay_mult| ParamGroup {
            prefix: prefix.into(),
            suffix: suffix.into(),
            lr_mult,
            decay_mult,
        };
        let cfg = SgdConfig {
            groups: vec![
                group("model0.", ".bias", 2.0, 0.0),
                group("model0.", "", 1.0, 1.0),
                group("", ".bias", 8.0, 0.0),
                group("", "", 4.0, 1.0),
                group("modle1_", "", 1.0, 1.0),
            ],
            ..Default::default()
        };
        let opt = Sgd::new(&vs, cfg);
        assert_eq!(opt.multipliers("model0.bias"), Some((2.0, 0.0)));
        assert_eq!(opt.multipliers("model0.weight"), Some((1.0, 1.0)));
        assert_eq!(opt.multipliers("model2_1.bias"), Some((8.0, 0.0)));
        assert_eq!(opt.multipliers("model2_1.weight"), Some((4.0, 1.0)));
        assert_eq!(opt.unused_groups(), ["prefix 'modle1_' suffix ''"]);
    }

    #[test]
    fn state_round_trips_and_other_forms_are_refused() {
        let vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "fc", 3, 2, Default::default());
        let cfg = SgdConfig {
            momentum: 0.9,
            form: SgdForm::Caffe,
            ..Default::default()
        };
        let mut opt = Sgd::new(&vs, cfg.clone());
        let (empty, _) = opt.state();
        assert!(empty.is_empty());
        opt.zero_grad();
        lin.forward(&Tensor::ones([4, 3], (Kind::Float, Device::Cpu)))
            .sum(Kind::Float)
            .backward();
        opt.step(0.01);
        let (state, step) = opt.state();
        let keys: Vec<&str> = state.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["history.fc.bias", "history.fc.weight"]);

        let vs2 = VarStore::new(Device::Cpu);
        let _lin2 = nn::linear(vs2.root() / "fc", 3, 2, Default::default());
        let mut opt2 = Sgd::new(&vs2, cfg);
        opt2.load_state(&state, step).unwrap();
        let (s2, step2) = opt2.state();
        assert_eq!(step2, 1);
        for (k, t) in &state {
            assert!(t.equal(&s2[k]), "{k}");
        }

        // a Caffe history is not a PyTorch momentum buffer, and plain SGD keeps none
        let mut pt = Sgd::new(
            &vs2,
            SgdConfig {
                momentum: 0.9,
                ..Default::default()
            },
        );
        let err = pt.load_state(&state, step).unwrap_err();
        assert!(err.contains("history.fc.bias: not a buffer"), "{err}");
        let err = pt.load_state(&BTreeMap::new(), 3).unwrap_err();
        assert!(err.contains("no momentum_buffer buffers"), "{err}");
        let mut plain = Sgd::new(&vs2, SgdConfig::default());
        assert!(plain.load_state(&state, step).is_err());
        plain.load_state(&BTreeMap::new(), 3).unwrap();
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = [
            SgdConfig {
                momentum: -0.1,
                ..Default::default()
            },
            SgdConfig {
                nesterov: true,
                ..Default::default()
            },
            SgdConfig {
                momentum: 0.9,
                dampening: 0.1,
                form: SgdForm::Caffe,
                ..Default::default()
            },
            SgdConfig {
                groups: vec![ParamGroup {
                    prefix: String::new(),
                    suffix: String::new(),
                    lr_mult: f64::NAN,
                    decay_mult: 1.0,
                }],
                ..Default::default()
            },
        ];
        for cfg in bad {
            assert!(cfg.check().is_err(), "{cfg:?}");
        }
        assert!(SgdConfig::default().check().is_ok());
    }
}
