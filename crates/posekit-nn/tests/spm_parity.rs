//! SPM parity with a PyTorch reference (`tools/fixtures/spm_ref.py`, fixtures in
//! `tests/data/spm/`): the root and displacement heads on a tiny two-stack hourglass and on a
//! tiny HRNet, in eval mode and over one training step (MSE loss over all heads, every
//! gradient, BN running statistics), to 1e-4 relative; and the presets' exact keys, shapes
//! and parameter counts.

use posekit_nn::models::hourglass::HourglassNetConfig;
use posekit_nn::models::hrnet::HrnetConfig;
use posekit_nn::models::spm::{Spm, SpmBackboneConfig, SpmNetConfig};
use tch::{nn, Device};

const DIR: &str = "spm";

fn check(cfg: SpmNetConfig, files: &[&str], tag: &str) {
    let mut io = parity::read_tensors(DIR, files[0]);
    for f in &files[1..] {
        io.extend(parity::read_tensors(DIR, f));
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Spm::new(&vs.root(), &cfg).unwrap();
    parity::load(&vs, &io);
    let worst = parity::check_fixture(&vs, &io, |x, train| net.forward_named(x, train).unwrap());
    println!(
        "spm tiny ({tag}): worst over {} tensors {:.2e} ({})",
        worst.2, worst.0, worst.1
    );
}

#[test]
fn tiny_spm_hourglass_matches_pytorch() {
    let json = parity::read_json(DIR, "spm.json");
    let tiny = &json["tiny"]["hourglass"];
    let backbone: HourglassNetConfig = serde_json::from_value(tiny["config"].clone()).unwrap();
    let cfg = SpmNetConfig {
        backbone: SpmBackboneConfig::Hourglass(backbone),
        num_joints: tiny["num_joints"].as_i64().unwrap(),
    };
    check(cfg, &["spm_hourglass_tiny.safetensors"], "hourglass");
}

#[test]
fn tiny_spm_hrnet_matches_pytorch() {
    let json = parity::read_json(DIR, "spm.json");
    let tiny = &json["tiny"]["hrnet"];
    let c = &tiny["config"];
    let width = c["width"].as_i64().unwrap();
    let modules: Vec<usize> = serde_json::from_value(c["modules"].clone()).unwrap();
    let blocks = c["blocks"].as_u64().unwrap() as usize;
    let k = tiny["num_joints"].as_i64().unwrap();
    let cfg = SpmNetConfig {
        backbone: SpmBackboneConfig::Hrnet(HrnetConfig::uniform(
            width,
            [modules[0], modules[1], modules[2]],
            blocks,
            k,
        )),
        num_joints: k,
    };
    check(
        cfg,
        &[
            "spm_hrnet_tiny.safetensors",
            "spm_hrnet_tiny_weights.safetensors",
        ],
        "hrnet",
    );
}

#[test]
fn presets_have_the_reference_keys_shapes_and_parameter_counts() {
    let json = parity::read_json(DIR, "spm.json");
    for name in ["spm-hourglass", "spm-hrnet-w32"] {
        let reference = &json["presets"][name];
        let vs = nn::VarStore::new(Device::Cpu);
        Spm::new(&vs.root(), &SpmNetConfig::preset(name).unwrap()).unwrap();
        parity::assert_same_keys(
            &parity::keys_of(&vs),
            &parity::reference_keys(&reference["keys"]),
        );
        assert_eq!(
            parity::param_count(&vs),
            reference["params"].as_i64().unwrap(),
            "{name}"
        );
    }
}

/// Shared by the network parity tests (the same code is in each test file, because each
/// integration test is its own crate): loads the fixture's weights into a VarStore, then
/// compares eval outputs, a training-mode forward, the MSE loss over every head, every
/// gradient and the BN running statistics after the step, each to [`TOL`] relative
/// (max |ours - reference| / max |reference|).
mod parity {
    use std::collections::{BTreeMap, HashMap};
    use std::path::PathBuf;

    use tch::nn;
    use tch::{Kind, Reduction, Tensor};

    pub const TOL: f64 = 1e-4;

    pub fn data(dir: &str, name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(dir)
            .join(name)
    }

    pub fn read_tensors(dir: &str, name: &str) -> HashMap<String, Tensor> {
        Tensor::read_safetensors(data(dir, name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_iter()
            .collect()
    }

    pub fn read_json(dir: &str, name: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(data(dir, name)).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Variable name -> shape, without PyTorch's `num_batches_tracked` counters (tch's
    /// BatchNorm has none; they only matter with `momentum=None`).
    pub fn keys_of(vs: &nn::VarStore) -> BTreeMap<String, Vec<i64>> {
        vs.variables()
            .into_iter()
            .map(|(k, t)| (k, t.size()))
            .collect()
    }

    pub fn reference_keys(value: &serde_json::Value) -> BTreeMap<String, Vec<i64>> {
        let all: BTreeMap<String, Vec<i64>> = serde_json::from_value(value.clone()).unwrap();
        all.into_iter()
            .filter(|(k, _)| !k.ends_with(".num_batches_tracked"))
            .collect()
    }

    pub fn assert_same_keys(
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

    pub fn param_count(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }

    /// Copies every variable from `weight.<name>`, insisting on equal shapes and on every
    /// stored weight being used.
    pub fn load(vs: &nn::VarStore, tensors: &HashMap<String, Tensor>) {
        let vars = vs.variables();
        tch::no_grad(|| {
            for (name, var) in &vars {
                let key = format!("weight.{name}");
                let src = tensors
                    .get(&key)
                    .unwrap_or_else(|| panic!("{key} missing in the fixture"));
                assert_eq!(src.size(), var.size(), "{key}");
                var.shallow_clone().copy_(&src.to_kind(var.kind()));
            }
        });
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

    pub fn rel_diff(ours: &Tensor, reference: &Tensor) -> f64 {
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

    /// Worst relative difference and where.
    #[derive(Default)]
    pub struct Worst(pub f64, pub String, pub usize);

    impl Worst {
        pub fn check(&mut self, what: &str, ours: &Tensor, reference: &Tensor) {
            let d = rel_diff(ours, reference);
            assert!(d <= TOL, "{what}: relative difference {d:e} > {TOL:e}");
            self.2 += 1;
            if d > self.0 {
                self.0 = d;
                self.1 = what.to_string();
            }
        }
    }

    /// The whole parity check of one fixture; `forward(train)` runs the model on the
    /// fixture's input and returns its named heads. Returns the worst difference.
    pub fn check_fixture(
        vs: &nn::VarStore,
        io: &HashMap<String, Tensor>,
        forward: impl Fn(&Tensor, bool) -> Vec<(String, Tensor)>,
    ) -> Worst {
        let mut worst = Worst::default();
        let x = &io["input"];
        let reference_heads: Vec<&str> =
            io.keys().filter_map(|k| k.strip_prefix("eval.")).collect();

        let eval = tch::no_grad(|| forward(x, false));
        assert_eq!(eval.len(), reference_heads.len(), "number of heads");
        for (name, t) in &eval {
            let reference = io
                .get(&format!("eval.{name}"))
                .unwrap_or_else(|| panic!("no reference for head {name}"));
            worst.check(&format!("eval.{name}"), t, reference);
        }

        let train = forward(x, true);
        let mut losses = Vec::new();
        for (name, t) in &train {
            worst.check(&format!("train.{name}"), t, &io[&format!("train.{name}")]);
            losses.push(t.mse_loss(&io[&format!("target.{name}")], Reduction::Mean));
        }
        let loss = losses
            .into_iter()
            .fold(Tensor::zeros([], (Kind::Float, x.device())), |acc, l| {
                acc + l
            });
        worst.check("loss", &loss.reshape([1]), &io["loss"]);
        loss.backward();

        let (mut grads, mut stats) = (0, 0);
        for (name, var) in vs.variables() {
            if var.requires_grad() {
                let reference = io
                    .get(&format!("grad.{name}"))
                    .unwrap_or_else(|| panic!("no reference gradient for {name}"));
                worst.check(&format!("grad.{name}"), &var.grad(), reference);
                grads += 1;
            } else {
                let reference = io
                    .get(&format!("running_after.{name}"))
                    .unwrap_or_else(|| panic!("no reference running statistic for {name}"));
                worst.check(&format!("running_after.{name}"), &var, reference);
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
            "every reference tensor compared"
        );
        worst
    }
}
