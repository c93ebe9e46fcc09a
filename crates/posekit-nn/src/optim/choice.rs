//! The optimizer a training config chooses: Adam (posekit's default, HRNet's and MMPose's
//! choice), RMSprop (Newell et al.'s Stacked Hourglass) or SGD (CMU's OpenPose), behind one
//! interface for the trainer and the checkpoints.
//!
//! In a config file, `[train.optimizer]` is a table whose `type` picks the optimizer
//! (`"adam"` when absent, so the Adam tables written before RMSprop existed still read) and
//! whose other fields are that optimizer's arguments; `optimizer = "rmsprop"` (or `"sgd"`) is
//! short for the table with PyTorch's defaults.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

use super::rmsprop::{RmsProp, RmsPropConfig};
use super::sgd::{Sgd, SgdConfig, HISTORY, MOMENTUM_BUFFER};
use super::{Adam, AdamConfig};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OptimizerConfig {
    Adam(AdamConfig),
    Rmsprop(RmsPropConfig),
    Sgd(SgdConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Adam(AdamConfig::default())
    }
}

impl From<AdamConfig> for OptimizerConfig {
    fn from(c: AdamConfig) -> Self {
        OptimizerConfig::Adam(c)
    }
}

impl From<RmsPropConfig> for OptimizerConfig {
    fn from(c: RmsPropConfig) -> Self {
        OptimizerConfig::Rmsprop(c)
    }
}

impl From<SgdConfig> for OptimizerConfig {
    fn from(c: SgdConfig) -> Self {
        OptimizerConfig::Sgd(c)
    }
}

impl OptimizerConfig {
    /// The name a config file uses (`type`).
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Adam(_) => "adam",
            OptimizerConfig::Rmsprop(_) => "rmsprop",
            OptimizerConfig::Sgd(_) => "sgd",
        }
    }

    fn from_name<E: de::Error>(name: &str) -> Result<Self, E> {
        match name {
            "adam" => Ok(OptimizerConfig::Adam(AdamConfig::default())),
            "rmsprop" => Ok(OptimizerConfig::Rmsprop(RmsPropConfig::default())),
            "sgd" => Ok(OptimizerConfig::Sgd(SgdConfig::default())),
            other => Err(E::custom(format!(
                "unknown optimizer '{other}' (adam, rmsprop, sgd)"
            ))),
        }
    }
}

/// A string (`"rmsprop"`) or a table with an optional `type`; the table's other fields are
/// read by the chosen optimizer's own config, so unknown or misplaced fields (`beta1` for
/// RMSprop) are errors naming the field.
impl<'de> Deserialize<'de> for OptimizerConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OptimizerConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "an optimizer name (\"adam\", \"rmsprop\", \"sgd\") or a table with `type`",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                OptimizerConfig::from_name(v)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = serde_json::Map::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    fields.insert(k, v);
                }
                let name = match fields.remove("type") {
                    None => "adam".to_string(),
                    Some(serde_json::Value::String(s)) => s,
                    Some(other) => {
                        return Err(de::Error::custom(format!(
                            "optimizer type must be a string, got {other}"
                        )))
                    }
                };
                let rest = serde_json::Value::Object(fields);
                let parsed = match OptimizerConfig::from_name::<A::Error>(&name)? {
                    OptimizerConfig::Adam(_) => {
                        serde_json::from_value(rest).map(OptimizerConfig::Adam)
                    }
                    OptimizerConfig::Rmsprop(_) => {
                        serde_json::from_value(rest).map(OptimizerConfig::Rmsprop)
                    }
                    OptimizerConfig::Sgd(_) => {
                        serde_json::from_value(rest).map(OptimizerConfig::Sgd)
                    }
                };
                parsed.map_err(|e| de::Error::custom(format!("{name}: {e}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// The optimizer of a training run.
pub enum Optimizer {
    Adam(Adam),
    RmsProp(RmsProp),
    Sgd(Sgd),
}

impl Optimizer {
    pub fn new(vs: &VarStore, config: &OptimizerConfig) -> Self {
        match config {
            OptimizerConfig::Adam(c) => Optimizer::Adam(Adam::new(vs, *c)),
            OptimizerConfig::Rmsprop(c) => Optimizer::RmsProp(RmsProp::new(vs, *c)),
            OptimizerConfig::Sgd(c) => Optimizer::Sgd(Sgd::new(vs, c.clone())),
        }
    }

    /// Configured parameter groups that match no trainable variable (only SGD has groups): a
    /// misspelt prefix would otherwise silently train with multiplier 1.
    pub fn unused_groups(&self) -> &[String] {
        match self {
            Optimizer::Sgd(o) => o.unused_groups(),
            _ => &[],
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Adam(_) => "adam",
            Optimizer::RmsProp(_) => "rmsprop",
            Optimizer::Sgd(_) => "sgd",
        }
    }

    pub fn zero_grad(&mut self) {
        match self {
            Optimizer::Adam(o) => o.zero_grad(),
            Optimizer::RmsProp(o) => o.zero_grad(),
            Optimizer::Sgd(o) => o.zero_grad(),
        }
    }

    pub fn step(&mut self, lr: f64) {
        match self {
            Optimizer::Adam(o) => o.step(lr),
            Optimizer::RmsProp(o) => o.step(lr),
            Optimizer::Sgd(o) => o.step(lr),
        }
    }

    pub fn step_count(&self) -> i64 {
        match self {
            Optimizer::Adam(o) => o.step_count(),
            Optimizer::RmsProp(o) => o.step_count(),
            Optimizer::Sgd(o) => o.step_count(),
        }
    }

    /// Named state tensors (Adam: `exp_avg.*`, `exp_avg_sq.*`; RMSprop: `square_avg.*`,
    /// `momentum_buffer.*`, `grad_avg.*`; SGD: `momentum_buffer.*`, PyTorch's names, or
    /// `history.*`, Caffe's) and the step count.
    pub fn state(&self) -> (BTreeMap<String, Tensor>, i64) {
        match self {
            Optimizer::Adam(o) => o.state(),
            Optimizer::RmsProp(o) => o.state(),
            Optimizer::Sgd(o) => o.state(),
        }
    }

    /// Restores a saved state; a state of the other optimizer is refused by name (a run
    /// resumed with a changed `train.optimizer`).
    pub fn load_state(
        &mut self,
        state: &BTreeMap<String, Tensor>,
        step: i64,
    ) -> Result<(), String> {
        let saved = if state.keys().any(|k| k.starts_with("exp_avg")) {
            Some("adam")
        } else if state.keys().any(|k| k.starts_with("square_avg.")) {
            Some("rmsprop")
        } else if state.keys().any(|k| {
            k.starts_with(&format!("{MOMENTUM_BUFFER}.")) || k.starts_with(&format!("{HISTORY}."))
        }) {
            Some("sgd")
        } else {
            None
        };
        if let Some(saved) = saved.filter(|s| *s != self.name()) {
            return Err(format!(
                "the saved optimizer state is {saved}'s, but the config trains with {}",
                self.name()
            ));
        }
        match self {
            Optimizer::Adam(o) => o.load_state(state, step),
            Optimizer::RmsProp(o) => o.load_state(state, step),
            Optimizer::Sgd(o) => o.load_state(state, step),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    #[derive(Deserialize)]
    struct Train {
        #[serde(default)]
        optimizer: OptimizerConfig,
    }

    fn parse(text: &str) -> Result<OptimizerConfig, String> {
        serde_json::from_str::<Train>(text)
            .map(|t| t.optimizer)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn config_forms() {
        assert_eq!(parse("{}").unwrap(), OptimizerConfig::default());
        assert_eq!(
            parse(r#"{"optimizer": "rmsprop"}"#).unwrap(),
            OptimizerConfig::Rmsprop(RmsPropConfig::default())
        );
        // a table without `type` is Adam's (configs written before RMSprop)
        let adam = parse(r#"{"optimizer": {"beta1": 0.5}}"#).unwrap();
        assert_eq!(
            adam,
            OptimizerConfig::Adam(AdamConfig {
                beta1: 0.5,
                ..Default::default()
            })
        );
        let rms = parse(r#"{"optimizer": {"type": "rmsprop", "momentum": 0.9, "centered": true}}"#)
            .unwrap();
        assert_eq!(
            rms,
            OptimizerConfig::Rmsprop(RmsPropConfig {
                momentum: 0.9,
                centered: true,
                ..Default::default()
            })
        );
        let err = parse(r#"{"optimizer": {"type": "rmsprop", "beta1": 0.9}}"#).unwrap_err();
        assert!(err.contains("rmsprop") && err.contains("beta1"), "{err}");
        let err = parse(r#"{"optimizer": "lbfgs"}"#).unwrap_err();
        assert!(err.contains("unknown optimizer 'lbfgs'"), "{err}");
        assert_eq!(
            parse(r#"{"optimizer": "sgd"}"#).unwrap(),
            OptimizerConfig::Sgd(SgdConfig::default())
        );
        let sgd = parse(
            r#"{"optimizer": {"type": "sgd", "momentum": 0.9, "form": "caffe",
                "groups": [{"suffix": ".bias", "lr_mult": 2.0, "decay_mult": 0.0}]}}"#,
        )
        .unwrap();
        let OptimizerConfig::Sgd(c) = &sgd else {
            panic!("{sgd:?}")
        };
        assert_eq!(c.form, super::super::sgd::SgdForm::Caffe);
        assert_eq!(c.groups[0].lr_mult, 2.0);
        assert_eq!(c.groups[0].prefix, "");
        let text = serde_json::to_string(&sgd).unwrap();
        assert_eq!(serde_json::from_str::<OptimizerConfig>(&text).unwrap(), sgd);
        let err = parse(r#"{"optimizer": {"type": "sgd", "form": "keras"}}"#).unwrap_err();
        assert!(err.contains("sgd") && err.contains("keras"), "{err}");
        // what is written reads back
        let text = serde_json::to_string(&rms).unwrap();
        assert_eq!(serde_json::from_str::<OptimizerConfig>(&text).unwrap(), rms);
    }

    #[test]
    fn a_state_of_the_other_optimizer_is_refused_by_name() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let adam = Optimizer::new(&vs, &OptimizerConfig::default());
        let (state, step) = adam.state();
        let mut rms = Optimizer::new(&vs, &RmsPropConfig::default().into());
        let err = rms.load_state(&state, step).unwrap_err();
        assert!(err.contains("adam's") && err.contains("rmsprop"), "{err}");
        let (state, step) = rms.state();
        assert!(state.contains_key("square_avg.w"));
        let mut rms2 = Optimizer::new(&vs, &RmsPropConfig::default().into());
        rms2.load_state(&state, step).unwrap();
        // an SGD momentum buffer is not RMSprop's (which always has square_avg) nor Adam's
        let sgd_config: OptimizerConfig = SgdConfig {
            momentum: 0.9,
            ..Default::default()
        }
        .into();
        let mut sgd = Optimizer::new(&vs, &sgd_config);
        sgd.zero_grad();
        (&w * 2.0).sum(tch::Kind::Float).backward();
        sgd.step(0.1);
        let (state, step) = sgd.state();
        assert!(state.contains_key("momentum_buffer.w"));
        let mut adam = Optimizer::new(&vs, &OptimizerConfig::default());
        let err = adam.load_state(&state, step).unwrap_err();
        assert!(err.contains("sgd's") && err.contains("adam"), "{err}");
        let err = rms2.load_state(&state, step).unwrap_err();
        assert!(err.contains("sgd's") && err.contains("rmsprop"), "{err}");
    }
}
