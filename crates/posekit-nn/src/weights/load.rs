//! Putting weights into a model, checking a file against a model, and writing a model out.
//!
//! Loading is all-or-nothing: every name and shape is compared first and the variables are only
//! written when everything fits, so a failed load leaves the model as it was (a half-loaded
//! network runs and gives plausible-looking garbage, which is worse than an error). All missing,
//! unexpected and mis-shaped keys are reported together in one [`WeightsError::Mismatch`].

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::Tensor;

use super::error::{KeyMismatch, ShapeMismatch, WeightsError};
use super::keymap::{KeyMap, Mapped};
use super::pth::{read_pth_selected, Item, PthFormat};
use super::safetensors_io::{read_safetensors, write_safetensors};
use super::tensor::RawTensor;

/// The kind of weights file, recognised from its content (and the `.safetensors` extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    PthZip,
    PthLegacy,
    Safetensors,
}

/// The tensors of a weights file, after unwrapping containers but before renaming.
#[derive(Debug, Clone)]
pub struct WeightsFile {
    pub path: PathBuf,
    pub format: WeightsFormat,
    /// The container keys descended into, e.g. `["state_dict"]`; empty for a flat file.
    pub container: Vec<String>,
    /// By checkpoint name, in file order.
    pub tensors: Vec<(String, RawTensor)>,
}

/// How [`load_weights_with`] maps and checks names.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub key_map: KeyMap,
    /// `false` accepts missing and unexpected keys (fine-tuning from a backbone-only or
    /// classification checkpoint, like PyTorch's `strict=False`); they are listed in the report.
    /// Mis-shaped keys are an error either way: there is no sensible partial copy of a tensor.
    pub strict: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            key_map: KeyMap::default(),
            strict: true,
        }
    }
}

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Model variables written.
    pub loaded: usize,
    /// Checkpoint keys dropped by the key map (`num_batches_tracked`).
    pub dropped: Vec<String>,
    /// Checkpoint keys renamed by the key map.
    pub renamed: usize,
    /// Container keys descended into.
    pub container: Vec<String>,
    /// Only non-empty for non-strict loads.
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
}

/// What [`convert_checkpoint`] did.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub input_format: WeightsFormat,
    pub container: Vec<String>,
    /// Tensors written (= the model's variable count).
    pub tensors: usize,
    pub dropped: Vec<String>,
    pub renamed: usize,
    pub output_bytes: u64,
}

/// Reads the tensors of a `.pth`/`.pt`/`.pth.tar` or `.safetensors` file, descending into the
/// key map's containers.
pub fn read_weights(path: &Path, key_map: &KeyMap) -> Result<WeightsFile, WeightsError> {
    read_weights_checked(path, key_map, None)
}

/// The model a checkpoint is read for: its variables' shapes and whether missing and unexpected
/// keys are fatal (see [`LoadOptions::strict`]).
struct ModelCheck<'a> {
    shapes: &'a HashMap<String, Vec<i64>>,
    strict: bool,
}

/// [`read_weights`] that, given the model, compares the names and shapes a `.pth` declares
/// against it *before* reading any storage (issue 7: a 2 MB file whose storage inflates to 2 GB
/// failed only after inflating it), and reads only the selected container's storages.
fn read_weights_checked(
    path: &Path,
    key_map: &KeyMap,
    model: Option<ModelCheck<'_>>,
) -> Result<WeightsFile, WeightsError> {
    let format = detect_format(path)?;
    match format {
        WeightsFormat::Safetensors => Ok(WeightsFile {
            path: path.to_path_buf(),
            format,
            container: Vec::new(),
            tensors: read_safetensors(path)?,
        }),
        WeightsFormat::PthZip | WeightsFormat::PthLegacy => {
            let mut select = |skeleton: &Item| -> Result<Vec<String>, WeightsError> {
                let (weights, container) = key_map.select_weights(skeleton);
                if let Some(model) = &model {
                    let shapes: Vec<(String, Vec<i64>)> = weights
                        .tensors()
                        .into_iter()
                        .map(|(name, t)| (name, t.shape_i64()))
                        .collect();
                    let mapped =
                        map_names(shapes, path, key_map, |k| model.shapes.contains_key(k))?;
                    let mismatch = compare(
                        model.shapes,
                        mapped.tensors.iter().map(|(k, s)| (k.as_str(), s.clone())),
                    );
                    let fatal = if model.strict {
                        !mismatch.is_empty()
                    } else {
                        !mismatch.mis_shaped.is_empty()
                    };
                    if fatal {
                        return Err(WeightsError::Mismatch {
                            path: path.to_path_buf(),
                            mismatch,
                        });
                    }
                }
                Ok(container)
            };
            let ckpt = read_pth_selected(path, &mut select)?;
            let format = match ckpt.format {
                PthFormat::Zip => WeightsFormat::PthZip,
                PthFormat::Legacy => WeightsFormat::PthLegacy,
            };
            let container = ckpt.container;
            let tensors = ckpt.root.into_tensors();
            if tensors.is_empty() {
                return Err(WeightsError::format(
                    path,
                    "the checkpoint contains no tensors",
                ));
            }
            Ok(WeightsFile {
                path: path.to_path_buf(),
                format,
                container,
                tensors,
            })
        }
    }
}

/// Copies `tensors` (already under the model's names) into the model's variables, strictly: any
/// missing, unexpected or mis-shaped key fails the whole load. `source` names the file in errors.
pub fn load_into(
    vs: &mut VarStore,
    tensors: HashMap<String, Tensor>,
    source: &Path,
) -> Result<LoadReport, WeightsError> {
    load_into_with(vs, tensors, source, true)
}

/// [`load_into`] with PyTorch's `strict` switch (see [`LoadOptions::strict`]).
pub fn load_into_with(
    vs: &mut VarStore,
    tensors: HashMap<String, Tensor>,
    source: &Path,
    strict: bool,
) -> Result<LoadReport, WeightsError> {
    let variables = vs.variables();
    let model_shapes: HashMap<String, Vec<i64>> = variables
        .iter()
        .map(|(k, v)| (k.clone(), v.size()))
        .collect();
    let mismatch = compare(
        &model_shapes,
        tensors.iter().map(|(k, t)| (k.as_str(), t.size())),
    );
    let fatal = if strict {
        !mismatch.is_empty()
    } else {
        !mismatch.mis_shaped.is_empty()
    };
    if fatal {
        return Err(WeightsError::Mismatch {
            path: source.to_path_buf(),
            mismatch,
        });
    }
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    let mut loaded = 0;
    // no_grad: the copy must not become part of an autograd graph of the parameters.
    tch::no_grad(|| -> Result<(), WeightsError> {
        for name in names {
            let Some(src) = tensors.get(name) else {
                continue;
            };
            let mut var = variables[name].shallow_clone();
            var.f_copy_(src)
                .map_err(|e| WeightsError::torch(source, format!("copying {name}: {e}")))?;
            loaded += 1;
        }
        Ok(())
    })?;
    Ok(LoadReport {
        loaded,
        missing: mismatch.missing,
        unexpected: mismatch.unexpected,
        ..LoadReport::default()
    })
}

/// Loads a weights file into a model with the default key map (DataParallel and MMPose names,
/// training-checkpoint containers), strictly.
pub fn load_weights(vs: &mut VarStore, path: &Path) -> Result<LoadReport, WeightsError> {
    load_weights_with(vs, path, &LoadOptions::default())
}

/// [`load_weights`] with a model-specific key map or a non-strict load.
pub fn load_weights_with(
    vs: &mut VarStore,
    path: &Path,
    options: &LoadOptions,
) -> Result<LoadReport, WeightsError> {
    let variables = vs.variables();
    let shapes = var_shapes(vs);
    let model = ModelCheck {
        shapes: &shapes,
        strict: options.strict,
    };
    let WeightsFile {
        tensors, container, ..
    } = read_weights_checked(path, &options.key_map, Some(model))?;
    let mapped = map_names(tensors, path, &options.key_map, |k| {
        variables.contains_key(k)
    })?;
    let mut tensors = HashMap::with_capacity(mapped.tensors.len());
    for (name, raw) in mapped.tensors {
        let t = raw
            .to_tch()
            .map_err(|e| WeightsError::torch(path, format!("tensor {name}: {e}")))?;
        tensors.insert(name, t);
    }
    let report = load_into_with(vs, tensors, path, options.strict)?;
    Ok(LoadReport {
        dropped: mapped.dropped,
        renamed: mapped.renamed,
        container,
        ..report
    })
}

/// Checks that `tensors` has exactly the model's names and shapes, without touching the model.
pub fn check_against(
    vs: &VarStore,
    tensors: &HashMap<String, Tensor>,
    source: &Path,
) -> Result<(), WeightsError> {
    let model_shapes = var_shapes(vs);
    let mismatch = compare(
        &model_shapes,
        tensors.iter().map(|(k, t)| (k.as_str(), t.size())),
    );
    mismatch_result(mismatch, source)
}

/// What `posekit convert IN --model PRESET -o OUT.safetensors` does: reads `input` (any
/// supported format), maps its names with the default key map, checks it against the model's
/// variables (all differences in one error, and nothing written then), and writes exactly the
/// model's variables, in the model's dtypes, to `output`. The model is not modified.
pub fn convert_checkpoint(
    input: &Path,
    vs: &VarStore,
    output: &Path,
) -> Result<ConvertReport, WeightsError> {
    convert_checkpoint_with(input, vs, output, &KeyMap::default())
}

/// [`convert_checkpoint`] with a model-specific key map.
pub fn convert_checkpoint_with(
    input: &Path,
    vs: &VarStore,
    output: &Path,
    key_map: &KeyMap,
) -> Result<ConvertReport, WeightsError> {
    let WeightsFile {
        format,
        container,
        tensors,
        ..
    } = read_weights_checked(
        input,
        key_map,
        Some(ModelCheck {
            shapes: &var_shapes(vs),
            strict: true,
        }),
    )?;
    let variables = vs.variables();
    let mut mapped = map_names(tensors, input, key_map, |k| variables.contains_key(k))?;
    let model_shapes = var_shapes(vs);
    let mismatch = compare(
        &model_shapes,
        mapped
            .tensors
            .iter()
            .map(|(k, t)| (k.as_str(), t.shape_i64())),
    );
    mismatch_result(mismatch, input)?;

    let dropped = std::mem::take(&mut mapped.dropped);
    let mut out: BTreeMap<&str, RawTensor> = BTreeMap::new();
    for (name, var) in &variables {
        // Present: the strict check above found no missing key.
        let raw = mapped.tensors.remove(name).ok_or_else(|| {
            WeightsError::format(input, format!("tensor {name} vanished during conversion"))
        })?;
        let wanted = var.kind();
        let raw = if raw.dtype.kind() == wanted {
            raw
        } else {
            let cast = raw
                .to_tch()
                .and_then(|t| t.f_to_kind(wanted))
                .map_err(|e| WeightsError::torch(input, format!("tensor {name}: {e}")))?;
            RawTensor::from_tch(&cast).map_err(|e| WeightsError::torch(input, e))?
        };
        out.insert(name.as_str(), raw);
    }
    write_safetensors(output, out.iter().map(|(k, v)| (*k, v)))?;
    let output_bytes = std::fs::metadata(output)
        .map_err(|e| WeightsError::io(output, "cannot stat the written file", e))?
        .len();
    Ok(ConvertReport {
        input_format: format,
        container,
        tensors: out.len(),
        dropped,
        renamed: mapped.renamed,
        output_bytes,
    })
}

/// Writes every variable of the model (parameters and BatchNorm running statistics) to a
/// safetensors file under its variable name. Returns the number of tensors written.
pub fn save_safetensors(vs: &VarStore, path: &Path) -> Result<usize, WeightsError> {
    let variables = vs.variables();
    let mut out: BTreeMap<&str, RawTensor> = BTreeMap::new();
    for (name, var) in &variables {
        let raw = RawTensor::from_tch(var)
            .map_err(|e| WeightsError::torch(path, format!("variable {name}: {e}")))?;
        out.insert(name.as_str(), raw);
    }
    write_safetensors(path, out.iter().map(|(k, v)| (*k, v)))?;
    Ok(out.len())
}

// ----- helpers -----

fn detect_format(path: &Path) -> Result<WeightsFormat, WeightsError> {
    let mut head = [0u8; 9];
    let mut f = File::open(path).map_err(|e| WeightsError::io(path, "cannot open", e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(WeightsError::io(path, "cannot read", e)),
        }
    }
    let is_safetensors_ext = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    Ok(if head.starts_with(b"PK") {
        WeightsFormat::PthZip
    } else if head.starts_with(&[0x80, 0x02, 0x8a]) {
        WeightsFormat::PthLegacy
    } else if is_safetensors_ext || (n == 9 && head[8] == b'{') {
        WeightsFormat::Safetensors
    } else {
        // read_pth turns this into a precise "not a checkpoint" error.
        WeightsFormat::PthZip
    })
}

fn map_names<T>(
    tensors: Vec<(String, T)>,
    path: &Path,
    key_map: &KeyMap,
    is_model_key: impl Fn(&str) -> bool,
) -> Result<Mapped<T>, WeightsError> {
    key_map.apply(tensors, is_model_key).map_err(|collisions| {
        let described: Vec<String> = collisions
            .iter()
            .take(5)
            .map(|(to, from)| format!("{} -> {to}", from.join(" and ")))
            .collect();
        WeightsError::format(
            path,
            format!(
                "{} model names are given by more than one checkpoint key: {}",
                collisions.len(),
                described.join("; ")
            ),
        )
    })
}

fn var_shapes(vs: &VarStore) -> HashMap<String, Vec<i64>> {
    vs.variables()
        .into_iter()
        .map(|(k, v)| (k, v.size()))
        .collect()
}

fn compare<'a>(
    model: &HashMap<String, Vec<i64>>,
    checkpoint: impl Iterator<Item = (&'a str, Vec<i64>)>,
) -> KeyMismatch {
    let mut m = KeyMismatch::default();
    let mut seen = std::collections::HashSet::new();
    for (name, shape) in checkpoint {
        seen.insert(name.to_string());
        match model.get(name) {
            None => m.unexpected.push(name.to_string()),
            Some(model_shape) if *model_shape != shape => m.mis_shaped.push(ShapeMismatch {
                name: name.to_string(),
                checkpoint: shape,
                model: model_shape.clone(),
            }),
            Some(_) => {}
        }
    }
    m.missing = model
        .keys()
        .filter(|k| !seen.contains(*k))
        .cloned()
        .collect();
    m.missing.sort();
    m.unexpected.sort();
    m.mis_shaped.sort_by(|a, b| a.name.cmp(&b.name));
    m
}

fn mismatch_result(mismatch: KeyMismatch, source: &Path) -> Result<(), WeightsError> {
    if mismatch.is_empty() {
        Ok(())
    } else {
        Err(WeightsError::Mismatch {
            path: source.to_path_buf(),
            mismatch,
        })
    }
}
