//! RMSprop, the optimizer Newell et al. trained the Stacked Hourglass with (and
//! bearpaw/pytorch-pose's default, `--solver rms`), written out on tensors like
//! [`super::Adam`] so that its running averages go into checkpoints.
//!
//! The update is `torch.optim.RMSprop`'s (`_single_tensor_rmsprop`, PyTorch 2.x), step for step
//! and in the same order of floating-point operations where that is cheap to keep:
//!
//! ```text
//! g   = grad + weight_decay * p                          (if weight_decay != 0)
//! v   = alpha * v + (1 - alpha) * g * g                  (square_avg)
//! m   = lerp(m, g, 1 - alpha);  avg = sqrt(v - m * m)    (centered: grad_avg)
//! avg = sqrt(v)                                          (otherwise)
//! avg = avg + eps                                        (eps outside the square root)
//! b   = momentum * b + g / avg;  p = p - lr * b          (momentum > 0: momentum_buffer)
//! p   = p - lr * g / avg                                 (otherwise)
//! ```
//!
//! Unlike Adam there is no bias correction, so the step count only matters to the checkpoint.

use std::collections::BTreeMap;

use tch::{nn::VarStore, Tensor};

use super::{restore_slot, state_fits, trainable_by_name};

/// `torch.optim.RMSprop`'s arguments other than `lr` (which comes from the schedule), with its
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RmsPropConfig {
    /// Smoothing constant of the squared-gradient average.
    pub alpha: f64,
    /// Added to the root of the average (not inside it).
    pub eps: f64,
    /// Heavy-ball momentum on the normalised gradient (0: none, no buffer kept).
    pub momentum: f64,
    /// Normalise by the estimated variance (the mean gradient's square subtracted).
    pub centered: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            centered: false,
            weight_decay: 0.0,
        }
    }
}

impl RmsPropConfig {
    /// What `torch.optim.RMSprop` refuses (`Invalid ... value`), as a message.
    pub fn check(&self) -> Result<(), String> {
        for (field, v) in [
            ("alpha", self.alpha),
            ("eps", self.eps),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
        ] {
            if v.is_nan() || v < 0.0 {
                return Err(format!("{field} must be >= 0, got {v}"));
            }
        }
        Ok(())
    }
}

/// The state PyTorch keeps per parameter, under the same names.
const SQUARE_AVG: &str = "square_avg";
const MOMENTUM_BUFFER: &str = "momentum_buffer";
const GRAD_AVG: &str = "grad_avg";

/// RMSprop over the trainable variables of a VarStore, keyed by variable name.
pub struct RmsProp {
    config: RmsPropConfig,
    params: Vec<(String, Tensor)>,
    square_avg: Vec<Tensor>,
    /// Only with `momentum > 0`, as in PyTorch.
    momentum_buffer: Option<Vec<Tensor>>,
    /// Only when `centered`.
    grad_avg: Option<Vec<Tensor>>,
    step: i64,
}

impl RmsProp {
    pub fn new(vs: &VarStore, config: RmsPropConfig) -> Self {
        let named = trainable_by_name(vs);
        let zeros = |named: &[(String, Tensor)]| -> Vec<Tensor> {
            named.iter().map(|(_, t)| t.zeros_like()).collect()
        };
        RmsProp {
            config,
            square_avg: zeros(&named),
            momentum_buffer: (config.momentum > 0.0).then(|| zeros(&named)),
            grad_avg: config.centered.then(|| zeros(&named)),
            params: named,
            step: 0,
        }
    }

    pub fn config(&self) -> &RmsPropConfig {
        &self.config
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

    /// One update with learning rate `lr`; parameters without a gradient are left alone (their
    /// state too, as PyTorch skips them).
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let c = self.config;
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
                let v = &mut self.square_avg[i];
                let _ = v.g_mul_scalar_(c.alpha);
                // addcmul_(g, g, value=1 - alpha) computes (value * g) * g
                let _ = v.g_add_(&((&g * (1.0 - c.alpha)) * &g));
                let avg = match &mut self.grad_avg {
                    Some(grad_avg) => {
                        let m = &mut grad_avg[i];
                        let _ = m.lerp_(&g, 1.0 - c.alpha);
                        (&*v - &*m * &*m).sqrt()
                    }
                    None => v.sqrt(),
                } + c.eps;
                let normalised = &g / &avg;
                match &mut self.momentum_buffer {
                    Some(bufs) => {
                        let b = &mut bufs[i];
                        let _ = b.g_mul_scalar_(c.momentum);
                        let _ = b.g_add_(&normalised);
                        let _ = p.g_sub_(&(&*b * lr));
                    }
                    None => {
                        let _ = p.g_sub_(&(normalised * lr));
                    }
                }
            }
        });
    }

    fn slots(&self) -> Vec<(&'static str, &Vec<Tensor>)> {
        let mut slots = vec![(SQUARE_AVG, &self.square_avg)];
        if let Some(b) = &self.momentum_buffer {
            slots.push((MOMENTUM_BUFFER, b));
        }
        if let Some(m) = &self.grad_avg {
            slots.push((GRAD_AVG, m));
        }
        slots
    }

    /// The state as named tensors (`square_avg.<var>`, and `momentum_buffer.<var>` /
    /// `grad_avg.<var>` where the config keeps them) plus the step count, for checkpoints.
    pub fn state(&self) -> (BTreeMap<String, Tensor>, i64) {
        let mut map = BTreeMap::new();
        for (prefix, tensors) in self.slots() {
            for ((name, _), t) in self.params.iter().zip(tensors) {
                map.insert(format!("{prefix}.{name}"), t.shallow_clone());
            }
        }
        (map, self.step)
    }

    /// Restores a state saved by [`RmsProp::state`] with the same config: every average the
    /// config keeps must be present with the shape of its variable; anything else is an error
    /// listing the offending names.
    pub fn load_state(
        &mut self,
        state: &BTreeMap<String, Tensor>,
        step: i64,
    ) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut slots: Vec<(&str, &mut Vec<Tensor>)> = vec![(SQUARE_AVG, &mut self.square_avg)];
        if let Some(b) = &mut self.momentum_buffer {
            slots.push((MOMENTUM_BUFFER, b));
        }
        if let Some(m) = &mut self.grad_avg {
            slots.push((GRAD_AVG, m));
        }
        for (prefix, tensors) in slots {
            for ((name, p), slot) in self.params.iter().zip(tensors.iter_mut()) {
                restore_slot(state, &format!("{prefix}.{name}"), p, slot, &mut problems);
            }
        }
        state_fits("RMSprop state does not fit the model and config", problems)?;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, nn::Module, Device, Kind};

    /// torch.optim.RMSprop(lr=0.01) on f(w) = sum((w - t)^2), two steps, from the documented
    /// update evaluated in f64 here (the fixture test in tests/optim_parity.rs checks against
    /// PyTorch itself).
    #[test]
    fn plain_update_by_hand() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs
            .root()
            .var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]));
        let mut opt = RmsProp::new(&vs, RmsPropConfig::default());
        let mut expect = [1.0f64, -2.0];
        let mut v = [0.0f64; 2];
        for _ in 0..2 {
            opt.zero_grad();
            (&w - 0.5).square().sum(Kind::Float).backward();
            opt.step(0.01);
            for i in 0..2 {
                let g = 2.0 * (expect[i] - 0.5);
                v[i] = 0.99 * v[i] + 0.01 * g * g;
                expect[i] -= 0.01 * g / (v[i].sqrt() + 1e-8);
            }
        }
        let got = Vec::<f32>::try_from(&w).unwrap();
        for i in 0..2 {
            assert!(
                (got[i] as f64 - expect[i]).abs() < 1e-6,
                "{got:?} {expect:?}"
            );
        }
        assert_eq!(opt.step_count(), 2);
    }

    #[test]
    fn state_names_follow_the_config_and_round_trip() {
        let vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "fc", 3, 2, Default::default());
        let cfg = RmsPropConfig {
            momentum: 0.9,
            centered: true,
            ..Default::default()
        };
        let mut opt = RmsProp::new(&vs, cfg);
        opt.zero_grad();
        lin.forward(&Tensor::ones([4, 3], (Kind::Float, Device::Cpu)))
            .sum(Kind::Float)
            .backward();
        opt.step(0.01);
        let (state, step) = opt.state();
        let keys: Vec<&str> = state.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "grad_avg.fc.bias",
                "grad_avg.fc.weight",
                "momentum_buffer.fc.bias",
                "momentum_buffer.fc.weight",
                "square_avg.fc.bias",
                "square_avg.fc.weight"
            ]
        );

        let vs2 = VarStore::new(Device::Cpu);
        let _lin2 = nn::linear(vs2.root() / "fc", 3, 2, Default::default());
        let mut opt2 = RmsProp::new(&vs2, cfg);
        opt2.load_state(&state, step).unwrap();
        let (s2, step2) = opt2.state();
        assert_eq!(step2, 1);
        for (k, t) in &state {
            assert!(t.equal(&s2[k]), "{k}");
        }

        // a plain RMSprop state lacks the buffers a momentum/centered config needs
        let mut plain = RmsProp::new(&vs2, RmsPropConfig::default());
        plain.zero_grad();
        let (plain_state, _) = plain.state();
        let err = opt2.load_state(&plain_state, 1).unwrap_err();
        assert!(err.contains("momentum_buffer.fc.bias: missing"), "{err}");
    }

    #[test]
    fn bad_configs_are_refused() {
        let cfg = RmsPropConfig {
            alpha: -0.1,
            ..Default::default()
        };
        assert!(cfg.check().unwrap_err().contains("alpha"));
        assert!(RmsPropConfig::default().check().is_ok());
    }
}
