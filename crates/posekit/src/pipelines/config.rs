//! The experiment config that `posekit train` and `posekit test` read: one TOML file with the
//! model, the dataset files, the `[data]` pipeline, the training run and the test procedure.
//!
//! ```toml
//! output_dir = "runs/hrnet_w32_coco_256x192"   # optional; default runs/<config name>
//!
//! [model]
//! preset = "hrnet-w32"
//!
//! [dataset]
//! format = "coco"                                  # or "mpii"
//! train_annotations = "data/coco/annotations/person_keypoints_train2017.json"
//! train_images = "data/coco/train2017"
//! val_annotations = "data/coco/annotations/person_keypoints_val2017.json"
//! val_images = "data/coco/val2017"
//! val_detections = "data/coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json"
//!
//! [data]                                           # the data pipeline's DataConfig
//! input_size = [192, 256]
//! heatmap_size = [48, 64]
//! use_gt_boxes = false
//!
//! [train]
//! epochs = 210
//! batch_size = 32
//! [train.schedule]
//! lr = 1e-3
//! milestones = [170, 200]
//! ```
//!
//! Relative paths are relative to the folder of the config file (not to the working
//! directory), so a config works from wherever it is run. Every table rejects unknown keys:
//! a misspelt `lr_stpes` must stop the run at once, not train 210 epochs with a default.

use std::path::{Path, PathBuf};

use crate::error::{bail, ResultExt};
use posekit_core::layout::KeypointLayout;
use posekit_nn::models::higher_hrnet::{HigherHrnet, HigherHrnetConfig};
use posekit_nn::models::hrnet::{HrnetConfig, PoseHrnet};
use posekit_nn::models::stacked_hourglass::{StackedHourglass, StackedHourglassConfig};
use posekit_nn::models::{Architecture, Family, Paradigm, Preset};
use posekit_nn::optim::{AdamConfig, OptimizerConfig};
use serde::{Deserialize, Serialize};
use tch::{nn, Device};

use super::data::{BottomUpDataConfig, DataConfig};
use super::model::LoadedModel;
use super::train::schedule::ScheduleConfig;

/// `train.init_weights` value naming the preset's bundled weights.
pub const INIT_BUNDLED: &str = "bundled";

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Where checkpoints, logs and results go (relative to the config's folder); default
    /// `runs/<config file stem>` in the current directory. `--out` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<PathBuf>,
    pub model: ModelConfig,
    pub dataset: DatasetConfig,
    /// The top-down crop pipeline. A bottom-up config has no `[data]` table: this is then
    /// derived from `[bottomup]` (input size, layout, normalisation) so that what both share
    /// (the layout, the input statistics) is read in one place.
    #[serde(default = "placeholder_data")]
    pub data: DataConfig,
    /// The bottom-up pipeline (HigherHRNet's `DATASET` and `LOSS`); present exactly when
    /// `model.preset` is a bottom-up model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottomup: Option<BottomUpDataConfig>,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub test: TestConfig,
}

/// Which network to train or test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A preset of `posekit models` (`hrnet-w32`, `hrnet-w48`, `hrnet-w32-mpii`, `hourglass-8`).
    pub preset: String,
    /// Replaces an HRNet preset's stage table by a uniform one, e.g. a width-8 HRNet with one
    /// module per stage for tests and quick experiments. Checkpoints of such a model only fit
    /// a model built from the same table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hrnet: Option<HrnetOverride>,
    /// Replaces a Stacked Hourglass preset's (`hourglass-N`) sizes, e.g. a narrow two-stack
    /// model for tests; the joints come from `data.layout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourglass: Option<HourglassOverride>,
    /// Resizes an OpenPose preset (`openpose-vgg19`, `openpose-mobilenetv2`): fewer stages or
    /// narrower refinement layers, e.g. for tests (see [`OpenPoseOverride`](super::paf_model::OpenPoseOverride)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openpose: Option<super::paf_model::OpenPoseOverride>,
}

/// The sizes of a Stacked Hourglass (`StackedHourglassConfig`; bearpaw's network has stem
/// width 64, 128 bottleneck features and order 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HourglassOverride {
    pub num_stacks: usize,
    pub num_blocks: usize,
    pub stem_planes: i64,
    pub num_feats: i64,
    pub depth: usize,
}

/// A uniform HRNet stage table (`HrnetConfig::uniform`): branch widths `width * 2^i`, the
/// official models being width 32 or 48 with modules `[1, 4, 3]` and 4 blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HrnetOverride {
    pub width: i64,
    /// Exchange modules in stages 2, 3 and 4.
    pub modules: [usize; 3],
    /// Basic blocks per branch in every module.
    pub blocks: usize,
}

/// Annotation format of the dataset files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    /// COCO person_keypoints JSON; scored with COCO keypoint AP.
    Coco,
    /// The HRNet/MMPose MPII JSON; scored with PCKh against `val_gt_mat`.
    Mpii,
    /// CrowdPose's COCO-like JSON (14 joints, no segmentation, no `area`): bottom-up training
    /// only for now, with the `crowdpose14` layout.
    Crowdpose,
}

/// The dataset files. Only `val_*` are needed by `posekit test`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    pub format: DatasetFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_annotations: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_images: Option<PathBuf>,
    pub val_annotations: PathBuf,
    pub val_images: PathBuf,
    /// COCO person detections to test on when `data.use_gt_boxes = false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_detections: Option<PathBuf>,
    /// MPII's `gt_valid.mat` (head boxes and joints in the order of `val_annotations`): PCKh
    /// needs the head boxes, which the MPII JSON does not have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_gt_mat: Option<PathBuf>,
}

/// The training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Images per iteration (the official configs: 32 per GPU x 4 GPUs = 128 for HRNet; 32 is
    /// what fits one GPU and MMPose's single-GPU setting, with the same lr).
    pub batch_size: usize,
    /// Loader threads (0: decode in the training thread); does not change the results.
    pub workers: usize,
    /// Validate every this many epochs (and after the last); 0 only after the last.
    pub val_interval: usize,
    /// Seeds the weight initialisation and every augmentation and shuffle.
    pub seed: u64,
    pub schedule: ScheduleConfig,
    /// Adam (default), RMSprop or SGD: `[train.optimizer]` with `type = "rmsprop"` / `"sgd"`
    /// and its arguments, or `optimizer = "rmsprop"` (see [`OptimizerConfig`]).
    pub optimizer: OptimizerConfig,
    /// Data parallel only: SyncBatchNorm, every BatchNorm normalising with the statistics of
    /// the whole group's batch (`torch.nn.SyncBatchNorm`) rather than each rank's own (the
    /// official trainings, and the default). With one process it changes nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sync_batchnorm: bool,
    /// Weights to start from instead of the random initialisation (fine-tuning): a weights
    /// file or checkpoint (relative to the config), or `"bundled"` for the weights that ship
    /// with the preset (`openpose-mobilenetv2`). Ignored when `--resume` finds a checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_weights: Option<String>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 210,
            batch_size: 32,
            workers: super::data::loader::default_num_workers(),
            val_interval: 10,
            seed: 0,
            schedule: ScheduleConfig::hrnet_official(),
            optimizer: OptimizerConfig::default(),
            sync_batchnorm: false,
            init_weights: None,
        }
    }
}

/// The test procedure; defaults are the official HRNet test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestConfig {
    /// Average with the mirrored crop's heatmaps (`TEST.FLIP_TEST`).
    pub flip: bool,
    pub batch_size: usize,
    pub workers: usize,
    /// OKS above which a pose is suppressed by a better one (`TEST.OKS_THRE`).
    pub oks_threshold: f64,
    /// Keypoint scores at or below this do not count in the rescoring (`TEST.IN_VIS_THRE`).
    pub in_vis_threshold: f32,
    /// Soft OKS-NMS instead of hard (`TEST.SOFT_NMS`, off in the official configs).
    pub soft_nms: bool,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self {
            flip: true,
            batch_size: 32,
            workers: super::data::loader::default_num_workers(),
            oks_threshold: posekit_core::nms::HRNET_OKS_THRESHOLD,
            in_vis_threshold: posekit_core::nms::HRNET_IN_VIS_THRESHOLD,
            soft_nms: false,
        }
    }
}

/// A config as read from disk: the parsed values with paths resolved, plus where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: ExperimentConfig,
}

impl ExperimentConfig {
    /// Parses TOML text; relative paths are resolved against `base_dir`; `origin` names the
    /// file in errors (serde's messages name the offending key and line).
    pub fn from_toml_str(text: &str, origin: &Path, base_dir: &Path) -> crate::Result<Self> {
        let invalid = |e: toml::de::Error| {
            crate::error::invalid!(
                "{}: invalid config: {}",
                origin.display(),
                one_line_toml_error(text, &e)
            )
        };
        let table: toml::Table = toml::from_str(text).map_err(invalid)?;
        check_paradigm_sections(&table)
            .with_context(|| format!("{}: invalid config", origin.display()))?;
        let mut cfg: ExperimentConfig = toml::from_str(text).map_err(invalid)?;
        if let Some(bu) = &cfg.bottomup {
            cfg.data = bu.derived_data_config();
        }
        cfg.resolve_paths(base_dir);
        cfg.validate()
            .with_context(|| format!("{}: invalid config", origin.display()))?;
        Ok(cfg)
    }

    /// Reads a config file.
    pub fn load(path: &Path) -> crate::Result<LoadedConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::io(path, "cannot read this config", e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let config = Self::from_toml_str(&text, path, base)?;
        Ok(LoadedConfig {
            path: path.to_path_buf(),
            config,
        })
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let d = &mut self.dataset;
        for p in [
            &mut d.train_annotations,
            &mut d.train_images,
            &mut d.val_detections,
            &mut d.val_gt_mat,
            &mut self.output_dir,
        ]
        .into_iter()
        .flatten()
        {
            join(p);
        }
        if let Some(w) = &mut self.train.init_weights {
            if w != INIT_BUNDLED && Path::new(w.as_str()).is_relative() {
                *w = base.join(w.as_str()).to_string_lossy().into_owned();
            }
        }
        join(&mut d.val_annotations);
        join(&mut d.val_images);
        // A layout given as a file path is relative to the config too; built-in names stay.
        let mut layouts = vec![&mut self.data.layout];
        if let Some(bu) = &mut self.bottomup {
            layouts.push(&mut bu.layout);
        }
        for layout in layouts {
            if KeypointLayout::builtin(layout).is_none() {
                let p = Path::new(layout.as_str());
                if p.is_relative() {
                    *layout = base.join(p).to_string_lossy().into_owned();
                }
            }
        }
    }

    /// Checks values that serde cannot, before any file is opened.
    pub fn validate(&self) -> crate::Result<()> {
        self.data.validate()?;
        if let Some(bu) = &self.bottomup {
            bu.validate()?;
        }
        let t = &self.train;
        if t.epochs == 0 {
            bail!("train.epochs must be at least 1");
        }
        if t.batch_size == 0 {
            bail!("train.batch_size must be at least 1");
        }
        if self.test.batch_size == 0 {
            bail!("test.batch_size must be at least 1");
        }
        t.schedule
            .validate()
            .map_err(|m| crate::error::invalid!("train.{m}"))?;
        match &t.optimizer {
            OptimizerConfig::Adam(o) => check_adam(o)?,
            OptimizerConfig::Rmsprop(o) => o
                .check()
                .map_err(|m| crate::error::invalid!("train.optimizer (rmsprop): {m}"))?,
            OptimizerConfig::Sgd(o) => o
                .check()
                .map_err(|m| crate::error::invalid!("train.optimizer (sgd): {m}"))?,
        }
        if !(self.test.oks_threshold.is_finite() && self.test.oks_threshold > 0.0) {
            bail!(
                "test.oks_threshold must be positive, got {}",
                self.test.oks_threshold
            );
        }
        if !self.test.in_vis_threshold.is_finite() {
            bail!("test.in_vis_threshold must be finite");
        }
        if let Some(h) = &self.model.hrnet {
            if h.width <= 0 || h.blocks == 0 || h.modules.contains(&0) {
                bail!(
                    "model.hrnet: width, blocks and every modules entry must be positive, got \
                     width {}, modules {:?}, blocks {}",
                    h.width,
                    h.modules,
                    h.blocks
                );
            }
        }
        Ok(())
    }

    /// The config as TOML text with resolved paths; stored in checkpoints so a resumed run can
    /// check it continues the same experiment.
    pub fn to_toml(&self) -> crate::Result<String> {
        let mut value = toml::Table::try_from(self).context("cannot write the config as TOML")?;
        if self.bottomup.is_some() {
            // Derived from `[bottomup]`; written, it would read as a top-down section.
            value.remove("data");
        }
        if let Some(toml::Value::Table(bu)) = value.get_mut("bottomup") {
            if bu.contains_key("paf") {
                // HigherHRNet's keys (at their defaults here) are refused next to
                // `[bottomup.paf]`; written, the checkpoint's config would not read back and
                // an OpenPose run could not be resumed.
                for key in super::data::paf_config::HIGHERHRNET_ONLY {
                    bu.remove(key);
                }
            }
        }
        toml::to_string(&value).context("cannot write the config as TOML")
    }

    /// Whether the model is a bottom-up one (its config has `[bottomup]`, not `[data]`).
    pub fn is_bottom_up(&self) -> bool {
        self.bottomup.is_some()
    }

    /// The keys whose values differ from `other`'s, ignoring those that may change between a
    /// run and its resumption without changing what is trained: file locations (a dataset
    /// may move), the output folder, the number of epochs (to extend a run), loader threads,
    /// validation frequency and the test procedure.
    pub fn training_differences(&self, other: &ExperimentConfig) -> crate::Result<Vec<String>> {
        let strip = |cfg: &ExperimentConfig| -> crate::Result<toml::Value> {
            let mut c = cfg.clone();
            c.output_dir = None;
            c.dataset.train_annotations = None;
            c.dataset.train_images = None;
            c.dataset.val_annotations = PathBuf::new();
            c.dataset.val_images = PathBuf::new();
            c.dataset.val_detections = None;
            c.dataset.val_gt_mat = None;
            c.train.epochs = 1;
            c.train.workers = 0;
            c.train.val_interval = 0;
            c.test = TestConfig::default();
            if let Some(b) = &mut c.bottomup {
                b.test_input_size = None;
            }
            Ok(toml::Value::try_from(&c)?)
        };
        let mut out = Vec::new();
        diff_values("", &strip(self)?, &strip(other)?, &mut out);
        Ok(out)
    }

    /// The keypoint layout of the data (and of the network's outputs).
    pub fn layout(&self) -> crate::Result<KeypointLayout> {
        Ok(self.data.keypoint_layout()?)
    }

    /// The output folder: `--out`, else `output_dir`, else `runs/<config stem>` in the current
    /// directory (as MMPose's `work_dirs/`), so that runs never write into the checkout's
    /// `configs/`.
    pub fn output_dir(&self, config_path: &Path, cli: Option<&Path>) -> PathBuf {
        if let Some(p) = cli {
            return p.to_path_buf();
        }
        if let Some(p) = &self.output_dir {
            return p.clone();
        }
        let stem = config_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "experiment".into());
        Path::new("runs").join(stem)
    }
}

/// toml's message with its position as `line L, column C`: its own `Display` draws the
/// offending line with a caret over several lines, and posekit's errors are one line.
fn one_line_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', "; ");
    match e.span() {
        Some(span) => {
            let mut start = span.start.min(text.len());
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message,
    }
}

/// What `data` holds before a bottom-up config derives it (never used as such).
fn placeholder_data() -> DataConfig {
    DataConfig::new([64, 64], [16, 16])
}

/// A bottom-up preset takes `[bottomup]` and no `[data]`; a top-down one the reverse. Checked
/// on the raw table so that the error names the section the user wrote, before serde fills in
/// defaults.
fn check_paradigm_sections(table: &toml::Table) -> crate::Result<()> {
    let preset = table
        .get("model")
        .and_then(|m| m.get("preset"))
        .and_then(|p| p.as_str());
    let Some(preset) = preset.and_then(|name| Preset::find(name).ok()) else {
        return Ok(()); // serde or the model build names the problem
    };
    let (has_data, has_bottomup) = (table.contains_key("data"), table.contains_key("bottomup"));
    if let Some(bu) = table.get("bottomup").and_then(|b| b.as_table()) {
        super::data::paf_config::check_raw_bottomup_table(bu)?;
        let is_paf = matches!(preset.family, Family::PartAffinity(_));
        if bu.contains_key("paf") != is_paf {
            bail!(
                "[bottomup.paf] is OpenPose's training section: model.preset `{}` {}",
                preset.name,
                if is_paf {
                    "is an OpenPose model and needs it (an empty [bottomup.paf] takes CMU's values)"
                } else {
                    "is not an OpenPose model"
                }
            );
        }
        if bu.contains_key("spm") && preset.family != Family::StructuredPose {
            bail!(
                "[bottomup.spm] sets SPM's targets and loss, but model.preset `{}` is not an SPM model",
                preset.name
            );
        }
    }
    match preset.paradigm() {
        Paradigm::BottomUp if has_data => bail!(
            "[data] is the top-down crop pipeline, but model.preset `{}` is a bottom-up model: \
             describe its data in [bottomup] (input_size, sigma, max_people, augmentation, loss)",
            preset.name
        ),
        Paradigm::BottomUp if !has_bottomup => bail!(
            "model.preset `{}` is a bottom-up model and needs a [bottomup] section (at least \
             input_size)",
            preset.name
        ),
        Paradigm::TopDown if has_bottomup => bail!(
            "[bottomup] is the bottom-up pipeline, but model.preset `{}` is a top-down model: \
             describe its crops in [data]",
            preset.name
        ),
        Paradigm::TopDown if !has_data => bail!(
            "model.preset `{}` is a top-down model and needs a [data] section (at least \
             input_size and heatmap_size)",
            preset.name
        ),
        _ => Ok(()),
    }
}

fn diff_values(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(ta), toml::Value::Table(tb)) => {
            let mut keys: Vec<&String> = ta.keys().chain(tb.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (ta.get(k), tb.get(k)) {
                    (Some(x), Some(y)) => diff_values(&name, x, y, out),
                    _ => out.push(name),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

impl ModelConfig {
    /// Builds the network on `device` with fresh weights, checking it against the layout the
    /// data is in (a 16-joint MPII model cannot be trained on 17-joint COCO targets).
    pub fn build(&self, layout: &KeypointLayout, device: Device) -> crate::Result<LoadedModel> {
        let preset = Preset::find(&self.preset)?;
        let k = layout.num_keypoints() as i64;
        let check_joints = || -> crate::Result<()> {
            if preset.num_joints != k {
                bail!(
                    "model.preset `{}` outputs {} joints ({}), but the data's layout `{}` has {k}",
                    preset.name,
                    preset.num_joints,
                    preset.layout,
                    layout.name
                );
            }
            Ok(())
        };
        let vs = nn::VarStore::new(device);
        if self.openpose.is_some() && !matches!(preset.family, Family::PartAffinity(_)) {
            bail!(
                "model.openpose overrides an OpenPose preset, but the preset is `{}`",
                preset.name
            );
        }
        let net: Box<dyn posekit_nn::models::PoseNetwork> =
            match (preset.architecture, &self.hrnet, &self.hourglass) {
                (_, Some(_), Some(_)) => {
                    bail!("model.hrnet and model.hourglass exclude each other")
                }
                (Architecture::StackedHourglass, None, Some(h)) => {
                    let cfg = StackedHourglassConfig {
                        num_stacks: h.num_stacks,
                        num_blocks: h.num_blocks,
                        num_joints: k,
                        stem_planes: h.stem_planes,
                        num_feats: h.num_feats,
                        depth: h.depth,
                    };
                    Box::new(StackedHourglass::new(&vs.root(), &cfg)?)
                }
                (Architecture::Spm, hrnet, hourglass) => {
                    crate::pipelines::train::spm_task::build_spm(
                        preset, layout, hrnet, hourglass, &vs,
                    )?
                }
                (_, None, Some(_)) => bail!(
                    "model.hourglass overrides a Stacked Hourglass preset (hourglass-1/-2/-4/-8), \
                 but the preset is `{}`",
                    preset.name
                ),
                (Architecture::Hrnet, Some(h), None) => {
                    let cfg = HrnetConfig::uniform(h.width, h.modules, h.blocks, k);
                    Box::new(PoseHrnet::new(&vs.root(), &cfg)?)
                }
                (Architecture::HigherHrnet, Some(h), None) => {
                    // The official head on the uniform backbone; its deconv stage gets `blocks`
                    // BasicBlocks too (4 in the official model).
                    let mut cfg = HigherHrnetConfig::official_head(HrnetConfig::uniform(
                        h.width, h.modules, h.blocks, k,
                    ));
                    cfg.deconv.num_basic_blocks = h.blocks;
                    Box::new(HigherHrnet::new(&vs.root(), &cfg)?)
                }
                (_, Some(_), None) => bail!(
                    "model.hrnet overrides an HRNet or HigherHRNet preset, but the preset is `{}`",
                    preset.name
                ),
                _ if matches!(preset.family, Family::PartAffinity(_)) => {
                    super::paf_model::build_openpose(preset, self.openpose.as_ref(), layout, &vs)?
                }
                _ if matches!(
                    preset.family,
                    Family::TopDownHeatmap | Family::AssociativeEmbedding
                ) =>
                {
                    check_joints()?;
                    preset.build(&vs.root())?
                }
                _ => bail!(
                    "model.preset `{}`: training and testing from a config cover top-down models \
                 (HRNet, Hourglass), HigherHRNet, OpenPose and SPM; this one is tested with \
                 `posekit test --model`",
                    preset.name
                ),
            };
        Ok(LoadedModel { preset, vs, net })
    }
}

/// `torch.optim.Adam`'s argument checks, for `train.optimizer`.
fn check_adam(o: &AdamConfig) -> crate::Result<()> {
    if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
        bail!(
            "train.optimizer: beta1 and beta2 must be in [0, 1), got {} and {}",
            o.beta1,
            o.beta2
        );
    }
    let eps_ok = o.eps.is_finite() && o.eps > 0.0;
    let decay_ok = o.weight_decay.is_finite() && o.weight_decay >= 0.0;
    if !(eps_ok && decay_ok) {
        bail!("train.optimizer: eps must be positive and weight_decay >= 0");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[model]
preset = "hrnet-w32"
[dataset]
format = "coco"
val_annotations = "ann/val.json"
val_images = "/abs/val"
[data]
input_size = [192, 256]
heatmap_size = [48, 64]
"#;

    #[test]
    fn minimal_config_gets_official_defaults_and_resolved_paths() {
        let cfg = ExperimentConfig::from_toml_str(MINIMAL, Path::new("x.toml"), Path::new("/cfgs"))
            .unwrap();
        assert_eq!(
            cfg.dataset.val_annotations,
            PathBuf::from("/cfgs/ann/val.json")
        );
        assert_eq!(cfg.dataset.val_images, PathBuf::from("/abs/val"));
        assert_eq!(cfg.train.schedule, ScheduleConfig::hrnet_official());
        assert_eq!(cfg.train.epochs, 210);
        assert!(cfg.test.flip);
        assert_eq!(cfg.test.oks_threshold, 0.9);
        // Round trip through the checkpoint form.
        let text = cfg.to_toml().unwrap();
        let again =
            ExperimentConfig::from_toml_str(&text, Path::new("y"), Path::new("/other")).unwrap();
        assert_eq!(again, cfg);
        assert!(cfg.training_differences(&again).unwrap().is_empty());
    }

    #[test]
    fn unknown_keys_are_named() {
        for (extra, key) in [
            ("[train]\nepochz = 3\n", "epochz"),
            ("[train.schedule]\nlr = 1e-3\nlr_stpes = [1]\n", "lr_stpes"),
            ("[test]\nflipp = true\n", "flipp"),
            ("bogus = 1\n", "bogus"),
        ] {
            let text = format!("{extra}{MINIMAL}");
            let text = if extra.starts_with('[') {
                format!("{MINIMAL}{extra}")
            } else {
                text
            };
            let err = ExperimentConfig::from_toml_str(&text, Path::new("exp.toml"), Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key) && err.contains("exp.toml"), "{err}");
        }
    }

    #[test]
    fn differences_ignore_epochs_and_paths_but_not_the_schedule() {
        let a = ExperimentConfig::from_toml_str(MINIMAL, Path::new("x"), Path::new("/a")).unwrap();
        let mut b =
            ExperimentConfig::from_toml_str(MINIMAL, Path::new("x"), Path::new("/b")).unwrap();
        b.train.epochs = 300;
        assert!(a.training_differences(&b).unwrap().is_empty());
        b.train.schedule.lr = 5e-4;
        b.data.sigma = 3.0;
        assert_eq!(
            a.training_differences(&b).unwrap(),
            ["data.sigma", "train.schedule.lr"]
        );
    }

    #[test]
    fn every_shipped_config_parses_and_builds_its_layout() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let loaded =
                    ExperimentConfig::load(&path).unwrap_or_else(|e| panic!("{}", e.report()));
                loaded.config.layout().unwrap();
                assert!(
                    loaded.config.dataset.train_annotations.is_some(),
                    "{}",
                    path.display()
                );
                n += 1;
            }
        }
        assert!(n >= 8, "{n} configs");
    }

    /// `[model.hourglass]` sizes a Stacked Hourglass preset (joints from the layout) and is
    /// refused on other presets.
    #[test]
    fn hourglass_override_builds_a_narrow_stacked_hourglass() {
        let table = "[model.hourglass]\nnum_stacks = 2\nnum_blocks = 1\nstem_planes = 4\n\
                     num_feats = 6\ndepth = 2\n";
        let text = format!("{MINIMAL}{table}").replace("hrnet-w32", "hourglass-2");
        let cfg = ExperimentConfig::from_toml_str(&text, Path::new("x"), Path::new(".")).unwrap();
        let layout = cfg.layout().unwrap();
        let model = cfg.model.build(&layout, Device::Cpu).unwrap();
        let x = tch::Tensor::zeros([1, 3, 32, 32], (tch::Kind::Float, Device::Cpu));
        let out = model.net.forward_named(&x, false).unwrap();
        let sizes: Vec<Vec<i64>> = out.iter().map(|(_, t)| t.size()).collect();
        assert_eq!(sizes, [vec![1, 17, 8, 8], vec![1, 17, 8, 8]]);

        let text = format!("{MINIMAL}{table}");
        let cfg = ExperimentConfig::from_toml_str(&text, Path::new("x"), Path::new(".")).unwrap();
        let err = cfg
            .model
            .build(&layout, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("model.hourglass") && err.contains("hrnet-w32"),
            "{err}"
        );
    }

    /// RMSprop in both spellings, through the checkpoint's TOML form, and its checks.
    #[test]
    fn rmsprop_configs_read_and_round_trip() {
        use posekit_nn::optim::RmsPropConfig;
        let parse = |extra: &str| {
            let text = format!("{MINIMAL}{extra}");
            ExperimentConfig::from_toml_str(&text, Path::new("x.toml"), Path::new("."))
        };
        let short = parse("[train]\noptimizer = \"rmsprop\"\n").unwrap();
        assert_eq!(
            short.train.optimizer,
            OptimizerConfig::Rmsprop(RmsPropConfig::default())
        );
        let table =
            parse("[train.optimizer]\ntype = \"rmsprop\"\nmomentum = 0.9\ncentered = true\n")
                .unwrap();
        let text = table.to_toml().unwrap();
        let again = ExperimentConfig::from_toml_str(&text, Path::new("y"), Path::new(".")).unwrap();
        assert_eq!(again.train.optimizer, table.train.optimizer);
        assert_eq!(
            short.training_differences(&table).unwrap(),
            ["train.optimizer.centered", "train.optimizer.momentum"]
        );
        let err = parse("[train.optimizer]\ntype = \"rmsprop\"\nalpha = -1.0\n").unwrap_err();
        assert!(err.report().contains("alpha"), "{}", err.report());
        let err = parse("[train.optimizer]\ntype = \"rmsprop\"\nbeta1 = 0.9\n").unwrap_err();
        assert!(err.report().contains("beta1"), "{}", err.report());
    }

    /// SGD in both spellings, with groups, through the checkpoint's TOML form, and its checks.
    #[test]
    fn sgd_configs_read_and_round_trip() {
        use posekit_nn::optim::{SgdConfig, SgdForm};
        let parse = |extra: &str| {
            let text = format!("{MINIMAL}{extra}");
            ExperimentConfig::from_toml_str(&text, Path::new("x.toml"), Path::new("."))
        };
        let short = parse("[train]\noptimizer = \"sgd\"\n").unwrap();
        assert_eq!(
            short.train.optimizer,
            OptimizerConfig::Sgd(SgdConfig::default())
        );
        let table = parse(
            "[train.optimizer]\ntype = \"sgd\"\nform = \"caffe\"\nmomentum = 0.9\n\
             [[train.optimizer.groups]]\nsuffix = \".bias\"\nlr_mult = 2.0\ndecay_mult = 0.0\n",
        )
        .unwrap();
        let OptimizerConfig::Sgd(sgd) = &table.train.optimizer else {
            panic!("{:?}", table.train.optimizer)
        };
        assert_eq!(sgd.form, SgdForm::Caffe);
        assert_eq!(sgd.groups.len(), 1);
        let text = table.to_toml().unwrap();
        let again = ExperimentConfig::from_toml_str(&text, Path::new("y"), Path::new(".")).unwrap();
        assert_eq!(again.train.optimizer, table.train.optimizer);
        for (bad, field) in [
            ("type = \"sgd\"\nnesterov = true\n", "nesterov"),
            ("type = \"sgd\"\nmomentum = -1.0\n", "momentum"),
            ("type = \"sgd\"\nbeta1 = 0.9\n", "beta1"),
        ] {
            let err = parse(&format!("[train.optimizer]\n{bad}")).unwrap_err();
            assert!(err.report().contains(field), "{}", err.report());
        }
    }

    /// The VGG OpenPose config trains with CMU's solver, and its parameter groups give every
    /// variable of the network the prototxt's multipliers (none left unmatched).
    #[test]
    fn vgg_openpose_config_has_cmus_solver_and_multipliers() {
        use posekit_nn::optim::{Optimizer, SgdForm};
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../configs/openpose_vgg19_coco_368.toml");
        let cfg = ExperimentConfig::load(&path)
            .unwrap_or_else(|e| panic!("{}", e.report()))
            .config;
        let OptimizerConfig::Sgd(sgd) = &cfg.train.optimizer else {
            panic!("{:?}", cfg.train.optimizer)
        };
        assert_eq!(
            (sgd.form, sgd.momentum, sgd.weight_decay),
            (SgdForm::Caffe, 0.9, 5e-4)
        );
        let s = &cfg.train.schedule;
        assert_eq!((s.lr, s.gamma, s.step_iters), (4e-5, 0.333, 136_106));
        // the checkpoint's form reads back (an OpenPose run can be resumed)
        let text = cfg.to_toml().unwrap();
        let again = ExperimentConfig::from_toml_str(&text, Path::new("ck"), Path::new("/"))
            .unwrap_or_else(|e| panic!("{}\n{text}", e.report()));
        assert!(cfg.training_differences(&again).unwrap().is_empty());
        let model = cfg
            .model
            .build(&cfg.layout().unwrap(), Device::Cpu)
            .unwrap();
        let opt = Optimizer::new(&model.vs, &cfg.train.optimizer);
        assert!(opt.unused_groups().is_empty(), "{:?}", opt.unused_groups());
        let Optimizer::Sgd(opt) = opt else {
            panic!("not SGD")
        };
        for (name, mults) in [
            ("model0.conv1_1.weight", (1.0, 1.0)),
            ("model0.conv4_4_CPM.bias", (2.0, 0.0)),
            ("model1_1.conv5_5_CPM_L1.weight", (1.0, 1.0)),
            ("model1_2.conv5_1_CPM_L2.bias", (2.0, 0.0)),
            ("model2_1.Mconv1_stage2_L1.weight", (4.0, 1.0)),
            ("model6_2.Mconv7_stage6_L2.bias", (8.0, 0.0)),
        ] {
            assert_eq!(opt.multipliers(name), Some(mults), "{name}");
        }
        // every trained variable is a conv weight or bias, so the last two rules cover stages 2-6
        for (name, _) in model.vs.variables() {
            let (lr_mult, _) = opt.multipliers(&name).unwrap();
            let vgg_or_stage1 = name.starts_with("model0.") || name.starts_with("model1_");
            assert_eq!(lr_mult >= 4.0, !vgg_or_stage1, "{name}");
        }
    }

    #[test]
    fn sections_must_match_the_paradigm_and_errors_name_them() {
        let bottomup = r#"
[model]
preset = "higherhrnet-w32"
[dataset]
format = "coco"
val_annotations = "v.json"
val_images = "v"
[bottomup]
input_size = 512
"#;
        let cfg = ExperimentConfig::from_toml_str(bottomup, Path::new("bu.toml"), Path::new("/c"))
            .unwrap();
        let bu = cfg.bottomup.as_ref().unwrap();
        assert_eq!(bu.output_sizes(), [128, 256]);
        assert_eq!(bu.loss.push_loss_factor, [0.001, 0.001]);
        assert_eq!(cfg.data.input_size, [512, 512], "derived for shared code");
        // The checkpoint form round-trips (it leaves the derived [data] out).
        let text = cfg.to_toml().unwrap();
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("[data]") || l.starts_with("[data.")),
            "{text}"
        );
        let again =
            ExperimentConfig::from_toml_str(&text, Path::new("y"), Path::new("/c")).unwrap();
        assert_eq!(again, cfg);

        let cases = [
            (
                format!("{bottomup}[data]\ninput_size = [192, 256]\nheatmap_size = [48, 64]\n"),
                "[data]",
            ),
            (
                bottomup.replace("[bottomup]\ninput_size = 512\n", ""),
                "[bottomup]",
            ),
            (
                format!("{MINIMAL}[bottomup]\ninput_size = 512\n"),
                "[bottomup]",
            ),
            (
                bottomup.replace("input_size = 512", "input_size = 500"),
                "bottomup.input_size",
            ),
            (
                format!("{bottomup}[bottomup.augmentation]\nflip_prob = 2.0\n"),
                "bottomup.augmentation.flip_prob",
            ),
        ];
        for (text, key) in cases {
            let err = ExperimentConfig::from_toml_str(&text, Path::new("bad.toml"), Path::new("."))
                .unwrap_err();
            let msg = err.report();
            assert!(
                msg.contains(key) && msg.contains("bad.toml"),
                "{key}: {msg}"
            );
        }
    }

    #[test]
    fn bad_values_are_errors() {
        let text = format!("{MINIMAL}[train]\nbatch_size = 0\n");
        let err =
            ExperimentConfig::from_toml_str(&text, Path::new("x"), Path::new(".")).unwrap_err();
        assert!(err.report().contains("batch_size"), "{}", err.report());
    }
}
