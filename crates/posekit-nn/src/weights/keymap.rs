//! From a checkpoint's names to a model's variable names.
//!
//! Public pose checkpoints name the same weights in several ways: the official HRNet /
//! HigherHRNet releases use the module path of the model (`conv1.weight`,
//! `final_layer.weight`), which is what posekit's models use; training scripts wrap the
//! state_dict in `{"state_dict": ..., "epoch": ...}`; `nn.DataParallel` prefixes every key with
//! `module.`; MMPose puts the backbone under `backbone.` and the head under `keypoint_head.`
//! (0.x) or `head.` (1.x). A [`KeyMap`] is a small table of those conventions, so a model whose
//! head lives elsewhere adds one rule instead of a new code path.
//!
//! `num_batches_tracked` is dropped by default. PyTorch's BatchNorm only reads it when
//! `momentum=None` (a cumulative average of the batch statistics); every posekit network uses a
//! fixed momentum like the papers' code (HRNet's `BN_MOMENTUM = 0.1`), so the counter never
//! influences an output or a running statistic, and tch's BatchNorm has no such variable. A model
//! that did register it would keep it: a name the model knows is never dropped or renamed
//! (see [`KeyMap::resolve`]).

use std::collections::{BTreeMap, HashMap};

use super::pth::Item;

/// Replace the leading `from` of a key by `to` (`to` may be empty: "move to the root").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRule {
    pub from: String,
    pub to: String,
}

/// What became of one checkpoint key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Use the tensor under this model name.
    Keep(String),
    /// Not a weight the model needs (see the module docs for `num_batches_tracked`).
    Drop,
}

/// The table of naming conventions. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMap {
    /// Keys of wrapper dicts to descend into, in order of preference: a training checkpoint
    /// `{"state_dict": ..., "optimizer": ...}` loads its `state_dict` and ignores the rest.
    pub containers: Vec<String>,
    /// Prefixes stripped (repeatedly) from every key before anything else: wrappers like
    /// DataParallel that add a level without changing the model.
    pub wrapper_prefixes: Vec<String>,
    /// Renamings, tried in order; the first matching rule applies.
    pub rules: Vec<PrefixRule>,
    /// Keys ending in one of these are dropped unless the model has a variable of that name.
    pub dropped_suffixes: Vec<String>,
}

impl Default for KeyMap {
    /// MMPose conventions with the head at the model's root, right for HRNet, Hourglass and
    /// HigherHRNet, whose head layers (`final_layer`, `final_layers`, `deconv_layers`) are
    /// top-level modules in the official checkpoints.
    fn default() -> Self {
        KeyMap::mmpose("")
    }
}

impl KeyMap {
    /// No conventions at all: names must match exactly (containers are still unwrapped).
    pub fn exact() -> Self {
        KeyMap {
            containers: default_containers(),
            wrapper_prefixes: Vec::new(),
            rules: Vec::new(),
            dropped_suffixes: Vec::new(),
        }
    }

    /// DataParallel's `module.`, MMPose's `backbone.` mapped to the root and `keypoint_head.` /
    /// `head.` mapped to `head_namespace` (`""` for the root, or e.g. `"head."`), and
    /// `num_batches_tracked` dropped.
    pub fn mmpose(head_namespace: &str) -> Self {
        KeyMap {
            containers: default_containers(),
            wrapper_prefixes: vec!["module.".into()],
            rules: vec![
                rule("backbone.", ""),
                rule("keypoint_head.", head_namespace),
                rule("head.", head_namespace),
            ],
            dropped_suffixes: vec!["num_batches_tracked".into()],
        }
    }

    /// Adds a renaming rule, tried before the existing ones (a model's own convention wins
    /// over the generic MMPose ones).
    pub fn with_rule(mut self, from: &str, to: &str) -> Self {
        self.rules.insert(0, rule(from, to));
        self
    }

    /// The fixed part of the mapping, without knowledge of the model: strip wrappers, drop
    /// counters, apply the first matching rule.
    pub fn map_key(&self, key: &str) -> KeyAction {
        self.resolve(key, |_| false)
    }

    /// Maps one key, preferring names the model has: after stripping wrappers, a key the model
    /// knows (`is_model_key`) is used as is. That keeps a model whose own modules happen to be
    /// called `head.` or `backbone.` from being renamed by the MMPose rules, and a model that
    /// registers `num_batches_tracked` from losing it.
    pub fn resolve(&self, key: &str, is_model_key: impl Fn(&str) -> bool) -> KeyAction {
        let mut key = key;
        'strip: loop {
            for prefix in &self.wrapper_prefixes {
                if let Some(rest) = key.strip_prefix(prefix.as_str()) {
                    key = rest;
                    continue 'strip;
                }
            }
            break;
        }
        if is_model_key(key) {
            return KeyAction::Keep(key.to_string());
        }
        if self
            .dropped_suffixes
            .iter()
            .any(|s| key == s || key.ends_with(&format!(".{s}")))
        {
            return KeyAction::Drop;
        }
        for r in &self.rules {
            if let Some(rest) = key.strip_prefix(r.from.as_str()) {
                return KeyAction::Keep(format!("{}{rest}", r.to));
            }
        }
        KeyAction::Keep(key.to_string())
    }

    /// The part of a checkpoint that holds the weights: descends into the first container key
    /// present that holds tensors, repeatedly (`{"model": {"state_dict": ...}}`). Returns the
    /// item and the path taken (e.g. `["state_dict"]`), for reports.
    pub fn select_weights<'a>(&self, root: &'a Item) -> (&'a Item, Vec<String>) {
        let mut item = root;
        let mut trail = Vec::new();
        'descend: loop {
            for c in &self.containers {
                if let Some(inner) = item.get(c) {
                    if inner.has_tensors() {
                        item = inner;
                        trail.push(c.clone());
                        continue 'descend;
                    }
                }
            }
            return (item, trail);
        }
    }

    /// Applies the map to named values. Two checkpoint keys landing on the same model name (a
    /// checkpoint holding both `backbone.conv1.weight` and `conv1.weight`) is an error listing
    /// them, since silently picking one would load the wrong weights.
    pub fn apply<T>(
        &self,
        named: Vec<(String, T)>,
        is_model_key: impl Fn(&str) -> bool,
    ) -> Result<Mapped<T>, Vec<(String, Vec<String>)>> {
        let mut tensors = HashMap::new();
        let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut dropped = Vec::new();
        let mut renamed = 0;
        for (key, value) in named {
            match self.resolve(&key, &is_model_key) {
                KeyAction::Drop => dropped.push(key),
                KeyAction::Keep(name) => {
                    if name != key {
                        renamed += 1;
                    }
                    sources.entry(name.clone()).or_default().push(key);
                    tensors.insert(name, value);
                }
            }
        }
        let collisions: Vec<(String, Vec<String>)> = sources
            .into_iter()
            .filter(|(_, from)| from.len() > 1)
            .collect();
        if !collisions.is_empty() {
            return Err(collisions);
        }
        Ok(Mapped {
            tensors,
            dropped,
            renamed,
        })
    }
}

/// The result of [`KeyMap::apply`].
#[derive(Debug)]
pub struct Mapped<T> {
    /// By model name.
    pub tensors: HashMap<String, T>,
    /// Checkpoint keys that were dropped.
    pub dropped: Vec<String>,
    /// How many keys changed name.
    pub renamed: usize,
}

fn rule(from: &str, to: &str) -> PrefixRule {
    PrefixRule {
        from: from.into(),
        to: to.into(),
    }
}

/// `state_dict` (most training scripts, MMPose), `model` (timm, detectron-style and many
/// research repos), `state_dict_ema` / `model_ema` (EMA weights, used only when the plain ones
/// are absent).
fn default_containers() -> Vec<String> {
    ["state_dict", "model", "state_dict_ema", "model_ema"]
        .into_iter()
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::tensor::{DType, RawTensor};

    fn keep(s: &str) -> KeyAction {
        KeyAction::Keep(s.into())
    }

    #[test]
    fn dataparallel_and_mmpose_prefixes_map_to_the_official_names() {
        let map = KeyMap::default();
        assert_eq!(map.map_key("module.conv1.weight"), keep("conv1.weight"));
        assert_eq!(
            map.map_key("module.module.conv1.weight"),
            keep("conv1.weight")
        );
        assert_eq!(
            map.map_key("backbone.stage2.0.fuse_layers.0.1.0.weight"),
            keep("stage2.0.fuse_layers.0.1.0.weight")
        );
        assert_eq!(
            map.map_key("keypoint_head.final_layer.weight"),
            keep("final_layer.weight")
        );
        assert_eq!(
            map.map_key("head.final_layer.bias"),
            keep("final_layer.bias")
        );
        assert_eq!(
            map.map_key("module.backbone.conv1.weight"),
            keep("conv1.weight")
        );
        assert_eq!(
            map.map_key("final_layer.weight"),
            keep("final_layer.weight")
        );
        // Only leading prefixes are touched.
        assert_eq!(
            map.map_key("stage2.head.weight"),
            keep("stage2.head.weight")
        );
    }

    #[test]
    fn batch_counters_are_dropped_unless_the_model_has_them() {
        let map = KeyMap::default();
        assert_eq!(map.map_key("bn1.num_batches_tracked"), KeyAction::Drop);
        assert_eq!(
            map.map_key("backbone.layer1.0.bn1.num_batches_tracked"),
            KeyAction::Drop
        );
        assert_eq!(
            map.resolve("bn1.num_batches_tracked", |k| k
                == "bn1.num_batches_tracked"),
            keep("bn1.num_batches_tracked")
        );
        // Not a suffix match inside a name.
        assert_eq!(
            map.map_key("my_num_batches_tracked"),
            keep("my_num_batches_tracked")
        );
    }

    #[test]
    fn model_names_win_over_rules_and_custom_rules_win_over_defaults() {
        let map = KeyMap::mmpose("");
        assert_eq!(
            map.resolve("head.conv.weight", |k| k == "head.conv.weight"),
            keep("head.conv.weight")
        );
        let spm = KeyMap::mmpose("").with_rule("keypoint_head.", "spm_head.");
        assert_eq!(
            spm.map_key("keypoint_head.root.weight"),
            keep("spm_head.root.weight")
        );
        assert_eq!(spm.map_key("head.root.weight"), keep("root.weight"));
        assert_eq!(KeyMap::mmpose("heads.").map_key("head.x"), keep("heads.x"));
    }

    #[test]
    fn containers_are_unwrapped_in_preference_order() {
        let t = || Item::Tensor(RawTensor::new(DType::U8, vec![1], vec![0]).unwrap());
        let ckpt = Item::Dict(vec![
            ("epoch".into(), Item::Int(3)),
            (
                "state_dict_ema".into(),
                Item::Dict(vec![("ema".into(), t())]),
            ),
            ("state_dict".into(), Item::Dict(vec![("w".into(), t())])),
            (
                "optimizer".into(),
                Item::Dict(vec![("state".into(), Item::Dict(vec![]))]),
            ),
        ]);
        let map = KeyMap::default();
        let (weights, trail) = map.select_weights(&ckpt);
        assert_eq!(trail, vec!["state_dict".to_string()]);
        assert_eq!(weights.tensors()[0].0, "w");
        // A flat state_dict is its own weights, and an empty `model` entry is not descended into.
        let flat = Item::Dict(vec![("model".into(), Item::Int(1)), ("w".into(), t())]);
        let (weights, trail) = map.select_weights(&flat);
        assert!(trail.is_empty());
        assert_eq!(weights.tensors().len(), 1);
    }

    #[test]
    fn colliding_names_are_reported() {
        let map = KeyMap::default();
        let named = vec![
            ("backbone.conv1.weight".to_string(), 1),
            ("conv1.weight".to_string(), 2),
            ("bn1.num_batches_tracked".to_string(), 3),
        ];
        let err = map.apply(named, |_| false).unwrap_err();
        assert_eq!(
            err,
            vec![(
                "conv1.weight".to_string(),
                vec![
                    "backbone.conv1.weight".to_string(),
                    "conv1.weight".to_string()
                ]
            )]
        );
        let ok = map
            .apply(
                vec![
                    ("module.a".to_string(), 1),
                    ("b.num_batches_tracked".to_string(), 2),
                ],
                |_| false,
            )
            .unwrap();
        assert_eq!(ok.tensors.len(), 1);
        assert_eq!(ok.dropped, vec!["b.num_batches_tracked".to_string()]);
        assert_eq!(ok.renamed, 1);
    }
}
