//! Training checkpoints: everything a run needs to continue exactly where it stopped, in one
//! safetensors file that is either complete and verified or refused.
//!
//! Contents: the model's variables as `model.<var>` (parameters and BatchNorm statistics),
//! the optimizer's state as `optim.<name>.<var>` (Adam: `exp_avg`, `exp_avg_sq`; RMSprop:
//! `square_avg`, and `momentum_buffer` / `grad_avg` where configured; SGD with momentum:
//! `momentum_buffer`, or Caffe's `history` in its form), and string metadata:
//! format and version, epochs completed, global iteration, the optimizer's step count (under
//! the key `adam_step`, which checkpoints had before RMSprop), best AP so far
//! (and its epoch), the seed and the config as TOML. There is no RNG state to save: every
//! random draw of the data pipeline comes from a stream seeded by `(seed, epoch, index)`, and
//! libtorch's generator is only used to initialise the weights, which the checkpoint holds.
//!
//! Why a checksum: a process killed while writing, a full disk or a bad copy can leave a file
//! that still parses (a header whose tensors happen to fit) but holds wrong bytes. The CRC-32
//! of every metadata entry and of every tensor's name, dtype, shape and bytes is stored in the
//! header and checked on load, so a torn or flipped file is an error naming it, never a run
//! that silently continues from garbage.
//!
//! Why the write is atomic: the file is written under a temporary name in the same folder,
//! flushed to disk (`fsync`), renamed over the old one and the folder is synced, so at any
//! moment `last.safetensors` is either the previous complete checkpoint or the new one.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use posekit_nn::optim::Optimizer;
use posekit_nn::weights::safetensors_io::write_safetensors_with_metadata;
use posekit_nn::weights::{RawTensor, WeightsError};
use safetensors::SafeTensors;
use tch::nn::VarStore;
use tch::Tensor;

/// Value of the `posekit_checkpoint` metadata key.
pub const FORMAT: &str = "posekit-train";
/// Bumped when the layout of the file changes incompatibly.
pub const VERSION: u32 = 1;

const MODEL_PREFIX: &str = "model.";
const OPTIM_PREFIX: &str = "optim.";

/// Errors of checkpoint files. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {message}: {source}", path.display())]
    Io {
        path: PathBuf,
        message: String,
        #[source]
        source: std::io::Error,
    },
    /// Truncated, torn or altered: the file must not be used.
    #[error("{}: corrupt or incomplete checkpoint ({message}); it cannot be used", path.display())]
    Corrupt { path: PathBuf, message: String },
    /// A valid file of another kind, version or model.
    #[error("{}: {message}", path.display())]
    Mismatch { path: PathBuf, message: String },
}

/// The scalar state of a run stored with the tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointMeta {
    /// Epochs completed; training resumes at this (0-based) epoch.
    pub epoch: usize,
    /// Iterations completed since the start (what the warm-up counts).
    pub global_iter: u64,
    /// The optimizer's step count (Adam's or RMSprop's; the name predates RMSprop).
    pub adam_step: i64,
    /// Best validation metric so far and the epoch (1-based count) it was reached after.
    pub best_metric: Option<f64>,
    pub best_epoch: Option<usize>,
    pub seed: u64,
    /// Ranks of the data-parallel group that trained it (1: one process). `--resume` needs the
    /// same number: the data order and the effective batch depend on it. Checkpoints written
    /// before data-parallel training have no such entry and read as 1.
    pub world_size: usize,
    /// Samples per optimizer step over all ranks: `train.batch_size` x `world_size`.
    pub effective_batch: usize,
    /// The experiment config as TOML, to check that `--resume` continues the same experiment.
    pub config_toml: String,
}

/// A verified checkpoint read from disk.
pub struct Checkpoint {
    pub path: PathBuf,
    pub meta: CheckpointMeta,
    /// Model variables by VarStore name (prefix removed), on the CPU.
    pub model: HashMap<String, Tensor>,
    /// Optimizer state by [`Optimizer::state`] name (prefix removed), on the CPU.
    pub optim: BTreeMap<String, Tensor>,
}

/// Writes a checkpoint of `vs` and the optimizer atomically to `path`.
pub fn save(
    path: &Path,
    vs: &VarStore,
    adam: Option<&Optimizer>,
    meta: &CheckpointMeta,
) -> Result<(), CheckpointError> {
    let mut tensors: BTreeMap<String, RawTensor> = BTreeMap::new();
    let torch_err = |name: &str, e: String| CheckpointError::Mismatch {
        path: path.to_path_buf(),
        message: format!("cannot copy tensor {name}: {e}"),
    };
    for (name, var) in vs.variables() {
        let raw = RawTensor::from_tch(&var).map_err(|e| torch_err(&name, e))?;
        tensors.insert(format!("{MODEL_PREFIX}{name}"), raw);
    }
    if let Some(adam) = adam {
        let (state, _) = adam.state();
        for (name, t) in state {
            let raw = RawTensor::from_tch(&t).map_err(|e| torch_err(&name, e))?;
            tensors.insert(format!("{OPTIM_PREFIX}{name}"), raw);
        }
    }
    let mut metadata = meta_to_map(meta);
    let checksum = checksum(
        &metadata,
        tensors.iter().map(|(n, t)| {
            (
                n.as_str(),
                t.dtype.safetensors(),
                t.shape.as_slice(),
                t.data.as_slice(),
            )
        }),
    );
    metadata.insert("checksum".into(), format!("{checksum:08x}"));
    write_safetensors_with_metadata(path, tensors.iter().map(|(n, t)| (n.as_str(), t)), metadata)
        .map_err(|e| match e {
            WeightsError::Io { action, source, .. } => CheckpointError::Io {
                path: path.to_path_buf(),
                message: action.to_string(),
                source,
            },
            other => CheckpointError::Mismatch {
                path: path.to_path_buf(),
                message: format!("cannot write the checkpoint: {other}"),
            },
        })
}

/// Reads and verifies a checkpoint.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        message: "cannot read checkpoint".into(),
        source,
    })?;
    parse(path, &bytes)
}

/// Verifies and decodes checkpoint bytes; `path` names the file in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let corrupt = |message: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let mismatch = |message: String| CheckpointError::Mismatch {
        path: path.to_path_buf(),
        message,
    };
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| corrupt(format!("not a complete safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| corrupt(format!("not a complete safetensors file: {e}")))?;
    let mut metadata: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    match metadata.get("posekit_checkpoint") {
        Some(f) if f == FORMAT => {}
        Some(f) => {
            return Err(mismatch(format!(
                "checkpoint format `{f}` is not `{FORMAT}`"
            )))
        }
        None => {
            return Err(mismatch(
                "not a posekit training checkpoint (no `posekit_checkpoint` metadata); plain \
                 weights can be tested with `posekit test --weights` but not resumed"
                    .into(),
            ))
        }
    }
    let stored = metadata
        .remove("checksum")
        .ok_or_else(|| corrupt("the checksum entry is missing".into()))?;
    let mut views = st.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    let sorted_meta: BTreeMap<String, String> = metadata.into_iter().collect();
    let computed = checksum(
        &sorted_meta,
        views
            .iter()
            .map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())),
    );
    if format!("{computed:08x}") != stored {
        return Err(corrupt(format!(
            "checksum mismatch: stored {stored}, computed {computed:08x}"
        )));
    }
    let meta = meta_from_map(&sorted_meta).map_err(&mismatch)?;
    let mut model = HashMap::new();
    let mut optim = BTreeMap::new();
    for (name, view) in views {
        let dtype =
            posekit_nn::weights::DType::from_safetensors(view.dtype()).ok_or_else(|| {
                mismatch(format!(
                    "tensor {name} has unsupported dtype {:?}",
                    view.dtype()
                ))
            })?;
        let raw = RawTensor::new(dtype, view.shape().to_vec(), view.data().to_vec())
            .map_err(|m| corrupt(format!("tensor {name}: {m}")))?;
        let t = raw
            .to_tch()
            .map_err(|e| mismatch(format!("tensor {name}: {e}")))?;
        if let Some(n) = name.strip_prefix(MODEL_PREFIX) {
            model.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix(OPTIM_PREFIX) {
            optim.insert(n.to_string(), t);
        } else {
            return Err(mismatch(format!(
                "unexpected tensor {name} (neither model. nor optim.)"
            )));
        }
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        meta,
        model,
        optim,
    })
}

/// Whether a file is a posekit training checkpoint (rather than plain weights), judged from
/// its header alone. Unreadable files answer false; loading them reports why.
pub fn is_checkpoint(path: &Path) -> bool {
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    use std::io::Read;
    let mut len = [0u8; 8];
    if f.read_exact(&mut len).is_err() {
        return false;
    }
    let n = u64::from_le_bytes(len);
    if n == 0 || n > 100 << 20 {
        return false;
    }
    let mut header = vec![0u8; n as usize];
    if f.read_exact(&mut header).is_err() {
        // Truncated inside the header: only a checkpoint loader reports that well, and only
        // if it is one; look for the marker in what is there.
        return String::from_utf8_lossy(&header).contains("posekit_checkpoint");
    }
    String::from_utf8_lossy(&header).contains("\"posekit_checkpoint\"")
}

impl Checkpoint {
    /// Copies the model variables into `vs`; every variable must be present with its shape,
    /// and the checkpoint must hold no other model tensor.
    pub fn restore_model(&self, vs: &VarStore) -> Result<(), CheckpointError> {
        restore_variables(&self.path, vs, &self.model)
    }

    /// Restores the optimizer's state and step count (refused if it is another optimizer's).
    pub fn restore_optimizer(&self, adam: &mut Optimizer) -> Result<(), CheckpointError> {
        adam.load_state(&self.optim, self.meta.adam_step)
            .map_err(|m| CheckpointError::Mismatch {
                path: self.path.clone(),
                message: m,
            })
    }
}

/// Copies named tensors into the variables of `vs`, reporting missing, unexpected and
/// mis-shaped names together (a checkpoint of another model shows all three).
pub fn restore_variables(
    path: &Path,
    vs: &VarStore,
    tensors: &HashMap<String, Tensor>,
) -> Result<(), CheckpointError> {
    let vars = vs.variables();
    let mut problems = Vec::new();
    let mut missing = 0usize;
    let mut misshaped = 0usize;
    for (name, var) in &vars {
        match tensors.get(name) {
            Some(t) if t.size() == var.size() => {}
            Some(t) => {
                misshaped += 1;
                problems.push(format!(
                    "{name}: shape {:?} in the file, {:?} in the model",
                    t.size(),
                    var.size()
                ));
            }
            None => {
                missing += 1;
                problems.push(format!("{name}: missing"));
            }
        }
    }
    let unexpected: Vec<&String> = tensors.keys().filter(|k| !vars.contains_key(*k)).collect();
    for k in &unexpected {
        problems.push(format!("{k}: not in the model"));
    }
    if !problems.is_empty() {
        problems.sort();
        let n = problems.len();
        problems.truncate(6);
        return Err(CheckpointError::Mismatch {
            path: path.to_path_buf(),
            message: format!(
                "the checkpoint is of another model ({missing} variables missing, {misshaped} of \
                 another shape, {} unexpected), e.g. {}",
                unexpected.len(),
                problems.join("; ")
            ) + if n > 6 { "; ..." } else { "" },
        });
    }
    tch::no_grad(|| {
        for (name, mut var) in vars {
            if let Some(t) = tensors.get(&name) {
                var.copy_(&t.to_kind(var.kind()).to_device(var.device()));
            }
        }
    });
    Ok(())
}

fn meta_to_map(meta: &CheckpointMeta) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("format".into(), "pt".into());
    m.insert("posekit_checkpoint".into(), FORMAT.into());
    m.insert("version".into(), VERSION.to_string());
    m.insert("epoch".into(), meta.epoch.to_string());
    m.insert("global_iter".into(), meta.global_iter.to_string());
    m.insert("adam_step".into(), meta.adam_step.to_string());
    if let Some(v) = meta.best_metric {
        // `{:?}` of an f64 is its shortest exact decimal: it parses back to the same bits.
        m.insert("best_metric".into(), format!("{v:?}"));
    }
    if let Some(e) = meta.best_epoch {
        m.insert("best_epoch".into(), e.to_string());
    }
    m.insert("seed".into(), meta.seed.to_string());
    m.insert("world_size".into(), meta.world_size.to_string());
    m.insert("effective_batch".into(), meta.effective_batch.to_string());
    m.insert("config".into(), meta.config_toml.clone());
    m
}

fn meta_from_map(m: &BTreeMap<String, String>) -> Result<CheckpointMeta, String> {
    fn get<T: std::str::FromStr>(m: &BTreeMap<String, String>, key: &str) -> Result<T, String> {
        let v = m
            .get(key)
            .ok_or_else(|| format!("metadata `{key}` is missing"))?;
        v.parse()
            .map_err(|_| format!("metadata `{key}` = `{v}` is not valid"))
    }
    fn opt<T: std::str::FromStr>(
        m: &BTreeMap<String, String>,
        key: &str,
    ) -> Result<Option<T>, String> {
        m.get(key).map(|_| get(m, key)).transpose()
    }
    let version: u32 = get(m, "version")?;
    if version != VERSION {
        return Err(format!(
            "checkpoint version {version}; this posekit reads version {VERSION}"
        ));
    }
    Ok(CheckpointMeta {
        epoch: get(m, "epoch")?,
        global_iter: get(m, "global_iter")?,
        adam_step: get(m, "adam_step")?,
        best_metric: opt(m, "best_metric")?,
        best_epoch: opt(m, "best_epoch")?,
        seed: get(m, "seed")?,
        world_size: opt(m, "world_size")?.unwrap_or(1),
        // Older checkpoints: unknown here, 0 (the trainer knows the config's batch size).
        effective_batch: opt(m, "effective_batch")?.unwrap_or(0),
        config_toml: m
            .get("config")
            .cloned()
            .ok_or("metadata `config` is missing")?,
    })
}

/// CRC-32 of the metadata entries (in key order) and of each tensor's name, dtype, shape and
/// bytes (in name order). Independent of where the serializer puts the tensors in the file.
fn checksum<'a>(
    metadata: &impl MetaEntries,
    tensors: impl Iterator<Item = (&'a str, safetensors::Dtype, &'a [usize], &'a [u8])>,
) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (k, v) in metadata.sorted_entries() {
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(v.as_bytes());
        h.update(&[0]);
    }
    for (name, dtype, shape, data) in tensors {
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(format!("{dtype:?}").as_bytes());
        for d in shape {
            h.update(&(*d as u64).to_le_bytes());
        }
        h.update(&(data.len() as u64).to_le_bytes());
        h.update(data);
    }
    h.finalize()
}

/// Metadata in a stable order whatever map holds it.
trait MetaEntries {
    fn sorted_entries(&self) -> Vec<(&String, &String)>;
}

impl MetaEntries for HashMap<String, String> {
    fn sorted_entries(&self) -> Vec<(&String, &String)> {
        let mut v: Vec<_> = self.iter().collect();
        v.sort();
        v
    }
}

impl MetaEntries for BTreeMap<String, String> {
    fn sorted_entries(&self) -> Vec<(&String, &String)> {
        self.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posekit_nn::optim::{OptimizerConfig, ParamGroup, RmsPropConfig, SgdConfig, SgdForm};
    use tch::{nn, nn::Module, Device, Kind};

    fn model() -> (VarStore, nn::Linear) {
        let vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "fc", 3, 2, Default::default());
        (vs, lin)
    }

    fn meta() -> CheckpointMeta {
        CheckpointMeta {
            epoch: 3,
            global_iter: 42,
            adam_step: 42,
            best_metric: Some(0.123456789),
            best_epoch: Some(2),
            seed: 7,
            world_size: 2,
            effective_batch: 24,
            config_toml: "[model]\npreset = \"x\"\n".into(),
        }
    }

    fn step(lin: &nn::Linear, opt: &mut Optimizer, lr: f64) {
        opt.zero_grad();
        lin.forward(&Tensor::ones([4, 3], (Kind::Float, Device::Cpu)))
            .square()
            .sum(Kind::Float)
            .backward();
        opt.step(lr);
    }

    fn trained_with(config: &OptimizerConfig) -> (VarStore, nn::Linear, Optimizer) {
        let (vs, lin) = model();
        let mut opt = Optimizer::new(&vs, config);
        step(&lin, &mut opt, 0.01);
        (vs, lin, opt)
    }

    /// Saves `vs` and `opt` (with `opt`'s step count) to `path`, loads the file back and
    /// restores it into a fresh model and a fresh optimizer of `config`.
    fn saved_and_restored(
        path: &Path,
        vs: &VarStore,
        opt: &Optimizer,
        config: &OptimizerConfig,
    ) -> (Checkpoint, VarStore, nn::Linear, Optimizer) {
        let mut m = meta();
        m.adam_step = opt.step_count();
        save(path, vs, Some(opt), &m).unwrap();
        let ck = load(path).unwrap();
        let (vs2, lin2) = model();
        let mut opt2 = Optimizer::new(&vs2, config);
        ck.restore_model(&vs2).unwrap();
        ck.restore_optimizer(&mut opt2).unwrap();
        (ck, vs2, lin2, opt2)
    }

    fn trained() -> (VarStore, Optimizer) {
        let (vs, _, adam) = trained_with(&OptimizerConfig::default());
        (vs, adam)
    }

    /// RMSprop's averages (with the momentum and centred buffers) survive a checkpoint: the
    /// restored run's next step equals the uninterrupted run's.
    #[test]
    fn rmsprop_resumes_exactly() {
        let dir = tempdir();
        let path = dir.join("last.safetensors");
        let config: OptimizerConfig = RmsPropConfig {
            momentum: 0.9,
            centered: true,
            ..Default::default()
        }
        .into();
        let (vs, lin, mut opt) = trained_with(&config);
        let (ck, vs2, lin2, mut opt2) = saved_and_restored(&path, &vs, &opt, &config);
        assert_eq!(ck.optim.len(), 6, "{:?}", ck.optim.keys());
        assert_eq!(opt2.step_count(), 1);
        step(&lin, &mut opt, 0.01);
        step(&lin2, &mut opt2, 0.01);
        for (name, t) in vs.variables() {
            assert!(t.equal(&vs2.variables()[&name]), "{name}");
        }

        // resuming it with Adam is refused, naming both
        let mut adam = Optimizer::new(&vs2, &OptimizerConfig::default());
        let err = ck.restore_optimizer(&mut adam).unwrap_err().to_string();
        assert!(err.contains("rmsprop") && err.contains("adam"), "{err}");
    }

    /// SGD's momentum buffers in both forms (with per-parameter multipliers) survive a
    /// checkpoint: after a rate drop, the restored run's next step equals the uninterrupted
    /// run's; a buffer of the other form is refused.
    #[test]
    fn sgd_resumes_exactly_in_both_forms() {
        let dir = tempdir();
        let path = dir.join("last.safetensors");
        for form in [SgdForm::Pytorch, SgdForm::Caffe] {
            let config: OptimizerConfig = SgdConfig {
                momentum: 0.9,
                weight_decay: 0.01,
                form,
                groups: vec![ParamGroup {
                    prefix: "fc.".into(),
                    suffix: ".bias".into(),
                    lr_mult: 2.0,
                    decay_mult: 0.0,
                }],
                ..Default::default()
            }
            .into();
            let (vs, lin, mut opt) = trained_with(&config);
            let (ck, vs2, lin2, mut opt2) = saved_and_restored(&path, &vs, &opt, &config);
            assert_eq!(ck.optim.len(), 2, "{:?}", ck.optim.keys());
            // A rate drop (0.01 -> 0.001), where Caffe's and PyTorch's forms part.
            step(&lin, &mut opt, 0.001);
            step(&lin2, &mut opt2, 0.001);
            for (name, t) in vs.variables() {
                assert!(t.equal(&vs2.variables()[&name]), "{form:?} {name}");
            }

            let other = match form {
                SgdForm::Pytorch => SgdForm::Caffe,
                SgdForm::Caffe => SgdForm::Pytorch,
            };
            let mut wrong = Optimizer::new(
                &vs2,
                &SgdConfig {
                    momentum: 0.9,
                    form: other,
                    ..Default::default()
                }
                .into(),
            );
            let err = ck.restore_optimizer(&mut wrong).unwrap_err().to_string();
            assert!(err.contains("not a buffer of this SGD config"), "{err}");
        }
    }

    #[test]
    fn round_trip_restores_everything() {
        let dir = tempdir();
        let path = dir.join("last.safetensors");
        let (vs, adam) = trained();
        save(&path, &vs, Some(&adam), &meta()).unwrap();
        let ck = load(&path).unwrap();
        assert_eq!(ck.meta, meta());
        let (vs2, _) = model();
        let mut adam2 = Optimizer::new(&vs2, &OptimizerConfig::default());
        ck.restore_model(&vs2).unwrap();
        ck.restore_optimizer(&mut adam2).unwrap();
        for (name, t) in vs.variables() {
            assert!(t.equal(&vs2.variables()[&name]), "{name}");
        }
        assert_eq!(adam2.step_count(), meta().adam_step);
        assert!(is_checkpoint(&path));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn torn_and_flipped_files_are_refused() {
        let dir = tempdir();
        let path = dir.join("last.safetensors");
        let (vs, adam) = trained();
        save(&path, &vs, Some(&adam), &meta()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 5, 8, 100, bytes.len() / 2, bytes.len() - 1] {
            let err = parse(&path, &bytes[..cut])
                .err()
                .expect("truncated file accepted");
            assert!(
                matches!(err, CheckpointError::Corrupt { .. }),
                "cut {cut}: {err}"
            );
        }
        // A flipped bit in every position of the data and in the header's values.
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        for pos in (8 + header_len..bytes.len()).step_by(3) {
            let mut b = bytes.clone();
            b[pos] ^= 0x10;
            let err = parse(&path, &b).err().expect("flipped data accepted");
            assert!(err.to_string().contains("checksum"), "{err}");
        }
        let text = String::from_utf8_lossy(&bytes[8..8 + header_len]).into_owned();
        let at = 8 + text.find("\"global_iter\":\"42\"").unwrap() + "\"global_iter\":\"".len();
        let mut b = bytes.clone();
        b[at] = b'5';
        let err = parse(&path, &b).err().expect("altered metadata accepted");
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn plain_weights_and_other_models_are_clear_errors() {
        let dir = tempdir();
        let path = dir.join("plain.safetensors");
        let (vs, _) = trained();
        posekit_nn::weights::save_safetensors(&vs, &path).unwrap();
        assert!(!is_checkpoint(&path));
        let err = load(&path).err().unwrap().to_string();
        assert!(err.contains("not a posekit training checkpoint"), "{err}");

        let ck_path = dir.join("ck.safetensors");
        save(&ck_path, &vs, None, &meta()).unwrap();
        let ck = load(&ck_path).unwrap();
        let other = VarStore::new(Device::Cpu);
        let _ = nn::linear(other.root() / "fc", 3, 5, Default::default());
        let _ = nn::linear(other.root() / "head", 5, 1, Default::default());
        let err = ck.restore_model(&other).unwrap_err().to_string();
        assert!(
            err.contains("another model")
                && err.contains("fc.weight")
                && err.contains("head.weight"),
            "{err}"
        );
    }

    fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "posekit-ckpt-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
