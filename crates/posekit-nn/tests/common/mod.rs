//! Helpers shared by the network parity tests (`hrnet_parity`, `higher_hrnet_parity`,
//! `hourglass_parity`, `spm_parity`, `openpose_vgg_parity`).
//!
//! Each of those tests compares our network with a PyTorch reference through fixtures made
//! once by a script under `tools/fixtures/` and stored in `tests/data/<network>/`: the
//! reference's weights, an input, the reference's outputs in eval mode and in one training
//! step, the loss, every gradient and the BatchNorm running statistics after that step. The
//! comparison is the same everywhere, so it lives here, once: a change of tolerance or of what
//! "every tensor compared" means then reaches every network.
//!
//! Cargo builds every file in `tests/` as its own crate and compiles this module into each of
//! them (`mod common;`), so a helper one test does not use is dead code *in that crate* only;
//! hence the crate-wide `allow(dead_code)` below.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use tch::{nn, Kind, Reduction, Tensor};

/// Largest accepted [`relative_max_abs_diff`]. The references are float32 computed by
/// PyTorch on the CPU; ours compose the same arithmetic from other ops or in another order,
/// which moves results by a few ulps and more through a deep backward pass (measured worst:
/// 3.0e-6 for the tiny HRNet, 1.1e-5 for the tiny HigherHRNet, both in gradients). 1e-4 leaves
/// room for that and still catches a real error: a 1% change of one bias is caught
/// (`openpose_vgg_parity::a_perturbed_weight_is_detected`).
pub const TOL: f64 = 1e-4;

/// A file of `tests/data/<dir>/`; the path is absolute so the tests do not depend on the
/// directory cargo runs them from.
pub fn data_path(dir: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir)
        .join(name)
}

/// All tensors of a safetensors fixture, by name.
pub fn read_tensors(dir: &str, name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(data_path(dir, name))
        .unwrap_or_else(|e| panic!("{dir}/{name}: {e}"))
        .into_iter()
        .collect()
}

/// A JSON fixture (configurations of the tiny models, key/shape lists, parameter counts).
pub fn read_json(dir: &str, name: &str) -> serde_json::Value {
    let path = data_path(dir, name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Variable name -> shape of our model, the form in which the fixtures list the reference's
/// `state_dict()`.
pub fn our_shapes(vs: &nn::VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables()
        .into_iter()
        .map(|(k, t)| (k, t.size()))
        .collect()
}

/// A `{"name": [shape...]}` object of a JSON fixture, every key kept.
pub fn shapes_from_json(value: &serde_json::Value) -> BTreeMap<String, Vec<i64>> {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("key/shape list: {e}"))
}

/// Drops PyTorch's `num_batches_tracked` counters: tch's BatchNorm keeps none (they only
/// matter with `momentum=None`, which none of these networks uses), so they are the one
/// part of a reference `state_dict()` that legitimately has no counterpart in ours.
pub fn without_batch_counters(
    all: impl IntoIterator<Item = (String, Vec<i64>)>,
) -> BTreeMap<String, Vec<i64>> {
    all.into_iter()
        .filter(|(k, _)| !k.ends_with(".num_batches_tracked"))
        .collect()
}

/// The reference's key/shape list as ours must match it: [`shapes_from_json`] without
/// the BatchNorm counters.
pub fn reference_shapes(value: &serde_json::Value) -> BTreeMap<String, Vec<i64>> {
    without_batch_counters(shapes_from_json(value))
}

/// Our variables are exactly the reference's, with the same shapes. All three kinds of
/// mismatch are gathered before failing, because a wrong layer usually shows up as one of
/// each and the whole picture says which layer it is.
pub fn assert_same_shapes(
    ours: &BTreeMap<String, Vec<i64>>,
    reference: &BTreeMap<String, Vec<i64>>,
) {
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

/// Number of trainable parameters, compared with the reference's `sum(p.numel())`.
pub fn param_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

/// A preset built by us against the reference model's `{"keys": {name: shape}, "params": N}`
/// entry of a JSON fixture: the exact key/shape set is what a strict load of a published
/// checkpoint needs, and the trainable parameter count (the reference's `sum(p.numel())`)
/// also checks which of those variables train, which the key set cannot see (a weight kept
/// as a frozen buffer has the right name and shape). `what` names the preset in a failure.
pub fn assert_matches_reference_model(
    vs: &nn::VarStore,
    reference: &serde_json::Value,
    what: &str,
) {
    assert_same_shapes(&our_shapes(vs), &reference_shapes(&reference["keys"]));
    let params = reference["params"]
        .as_i64()
        .unwrap_or_else(|| panic!("{what}: no parameter count in the fixture"));
    assert_eq!(param_count(vs), params, "{what}: trainable parameters");
}

/// Copies every variable of `vs` from `tensors[prefix + name]`, insisting on equal shapes:
/// a broadcasting `copy_` would silently hide a layout error. Fixture weights may be stored
/// as float16 values that are exactly representable, so the copy is the reference's float32.
pub fn copy_weights(vs: &nn::VarStore, tensors: &HashMap<String, Tensor>, prefix: &str) {
    tch::no_grad(|| {
        for (name, var) in vs.variables() {
            let key = format!("{prefix}{name}");
            let src = tensors
                .get(&key)
                .unwrap_or_else(|| panic!("{key} missing in the fixture"));
            assert_eq!(src.size(), var.size(), "{key}");
            var.shallow_clone().copy_(&src.to_kind(var.kind()));
        }
    });
}

/// [`copy_weights`] from the `weight.*` tensors of a fixture, and then insists that every
/// stored weight was used: a reference layer our model lacks would otherwise go unnoticed
/// whenever its output happens not to reach the compared heads.
pub fn load_all_fixture_weights(vs: &nn::VarStore, tensors: &HashMap<String, Tensor>) {
    copy_weights(vs, tensors, "weight.");
    let vars = vs.variables();
    let unused: Vec<_> = tensors
        .keys()
        .filter_map(|k| k.strip_prefix("weight."))
        .filter(|k| !k.ends_with("num_batches_tracked") && !vars.contains_key(*k))
        .collect();
    assert!(
        unused.is_empty(),
        "fixture weights the model lacks: {unused:?}"
    );
}

/// max |ours - reference| / max |reference| (plain max |ours - reference| for an all-zero
/// reference).
///
/// Why this measure: an element-wise relative error blows up wherever the reference is near
/// zero (heatmap backgrounds, many gradient entries), and one absolute tolerance cannot suit
/// tensors whose magnitudes differ by orders (a scalar loss, heatmaps, gradients). Scaling the
/// worst absolute error by the tensor's own largest magnitude gives one dimensionless figure
/// per tensor that float32 reordering keeps at ~1e-6 and a real bug pushes far above [`TOL`].
pub fn relative_max_abs_diff(ours: &Tensor, reference: &Tensor) -> f64 {
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

/// Every comparison of one parity test: each is asserted against [`TOL`] on the spot (the
/// failure names the tensor) and recorded, so the test can print how close it came overall
/// and over how many tensors, the figure to watch when a change of arithmetic makes the
/// margin shrink.
#[derive(Default)]
pub struct Comparisons {
    seen: Vec<(String, f64)>,
}

impl Comparisons {
    /// Asserts `ours` matches `reference` within [`TOL`] and returns the difference.
    pub fn check(&mut self, what: &str, ours: &Tensor, reference: &Tensor) -> f64 {
        let d = relative_max_abs_diff(ours, reference);
        assert!(d <= TOL, "{what}: relative difference {d:e} > {TOL:e}");
        self.seen.push((what.to_string(), d));
        d
    }

    /// Number of tensors compared.
    pub fn count(&self) -> usize {
        self.seen.len()
    }

    /// Every comparison in order, name and difference.
    pub fn all(&self) -> &[(String, f64)] {
        &self.seen
    }

    /// The largest difference and the tensor it was in (`("", 0.0)` before any comparison;
    /// the first of equal ones).
    pub fn worst(&self) -> (&str, f64) {
        self.seen.iter().fold(
            ("", 0.0),
            |w, (n, d)| if *d > w.1 { (n.as_str(), *d) } else { w },
        )
    }

    /// "worst over N tensors D (name)", the tail of each test's summary line; "(all
    /// exact)" when every tensor matched bit for bit, which tiny CPU models often do.
    pub fn summary(&self) -> String {
        let (name, d) = self.worst();
        let name = if name.is_empty() { "all exact" } else { name };
        format!("worst over {} tensors {d:.2e} ({name})", self.count())
    }
}

/// After `loss.backward()`: compares every trainable variable's gradient with `grad.<name>`
/// and every BatchNorm running statistic with `running_after.<name>`, then asserts that the
/// fixture holds no gradient or statistic that went uncompared, so a parameter our model
/// lacks (or holds under another name) fails the test instead of being skipped. Returns
/// (gradients, statistics) compared.
pub fn check_gradients_and_running_stats(
    vs: &nn::VarStore,
    io: &HashMap<String, Tensor>,
    comparisons: &mut Comparisons,
) -> (usize, usize) {
    let (mut grads, mut stats) = (0, 0);
    for (name, var) in vs.variables() {
        if var.requires_grad() {
            let key = format!("grad.{name}");
            let reference = io
                .get(&key)
                .unwrap_or_else(|| panic!("no reference gradient for {name}"));
            comparisons.check(&key, &var.grad(), reference);
            grads += 1;
        } else {
            let key = format!("running_after.{name}");
            let reference = io
                .get(&key)
                .unwrap_or_else(|| panic!("no reference running statistic for {name}"));
            comparisons.check(&key, &var, reference);
            stats += 1;
        }
    }
    let ref_grads = io.keys().filter(|k| k.starts_with("grad.")).count();
    let ref_stats = io
        .keys()
        .filter(|k| k.starts_with("running_after.") && !k.ends_with("num_batches_tracked"))
        .count();
    assert_eq!(
        (grads, stats),
        (ref_grads, ref_stats),
        "every reference gradient and running statistic compared"
    );
    (grads, stats)
}

/// The whole parity check of a fixture written by `tools/fixtures/nn_parity_common.py`
/// (`eval.<head>`, `train.<head>`, `target.<head>`, `loss`, `grad.*`, `running_after.*`;
/// HRNet and HigherHRNet have fixtures of their own layout): `forward(x, train)` runs the model
/// on the fixture's `input` and returns its named heads. Eval outputs (every reference head,
/// none extra), training-mode outputs, the sum of per-head mean MSE losses (what the
/// generator scripts back-propagate), then gradients and running statistics.
pub fn check_fixture(
    vs: &nn::VarStore,
    io: &HashMap<String, Tensor>,
    forward: impl Fn(&Tensor, bool) -> Vec<(String, Tensor)>,
) -> Comparisons {
    let mut comparisons = Comparisons::default();
    let x = &io["input"];
    let reference_heads: Vec<&str> = io.keys().filter_map(|k| k.strip_prefix("eval.")).collect();

    let eval = tch::no_grad(|| forward(x, false));
    assert_eq!(eval.len(), reference_heads.len(), "number of heads");
    for (name, t) in &eval {
        let reference = io
            .get(&format!("eval.{name}"))
            .unwrap_or_else(|| panic!("no reference for head {name}"));
        comparisons.check(&format!("eval.{name}"), t, reference);
    }

    let train = forward(x, true);
    let mut losses = Vec::new();
    for (name, t) in &train {
        comparisons.check(&format!("train.{name}"), t, &io[&format!("train.{name}")]);
        losses.push(t.mse_loss(&io[&format!("target.{name}")], Reduction::Mean));
    }
    let loss = losses
        .into_iter()
        .fold(Tensor::zeros([], (Kind::Float, x.device())), |acc, l| {
            acc + l
        });
    comparisons.check("loss", &loss.reshape([1]), &io["loss"]);
    loss.backward();

    check_gradients_and_running_stats(vs, io, &mut comparisons);
    comparisons
}
