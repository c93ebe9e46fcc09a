//! The `[data]` part of a training/testing config: crop and heatmap sizes, target encoding,
//! augmentation, normalisation and which boxes to test on.
//!
//! Defaults are the official HRNet COCO experiment's (`w32_256x192_adam_lr1e-3.yaml`), so a
//! config only states what differs. Unknown keys are errors: a misspelt `rotation_factr` must
//! not silently train with the default.

use std::path::Path;

use posekit_core::codecs::heatmap::{HeatmapCodec, HeatmapVariant, Refinement};
use posekit_core::geometry::affine::AffineMode;
use posekit_core::layout::KeypointLayout;
use serde::{Deserialize, Serialize};

use super::coco::CocoSplit;
use super::error::DataError;

/// ImageNet RGB mean, the statistics every published HRNet/Hourglass checkpoint was trained
/// with (torchvision `Normalize`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet RGB standard deviation.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Network input (crop) size `[width, height]`, e.g. `[192, 256]`.
    pub input_size: [usize; 2],
    /// Heatmap size `[width, height]`, e.g. `[48, 64]`.
    pub heatmap_size: [usize; 2],
    /// Gaussian sigma of the targets in heatmap pixels (HRNet: 2 at 64x48, 3 at 96x72).
    #[serde(default = "default_sigma")]
    pub sigma: f64,
    /// Keypoint layout: a built-in name (`coco17`, `mpii16`, ...) or a layout JSON file.
    #[serde(default = "default_layout")]
    pub layout: String,
    /// Target encoding; `udp` also switches the crop to UDP's pixel-centre-aligned transform,
    /// as MMPose does, since the two only make sense together.
    #[serde(default)]
    pub codec: HeatmapVariant,
    /// Decoding refinement used at test time (HRNet's quarter-pixel shift by default).
    #[serde(default)]
    pub refinement: Refinement,
    /// Blur kernel of DARK decoding (11 for sigma 2, 17 for sigma 3).
    #[serde(default = "default_blur_kernel")]
    pub blur_kernel: usize,
    /// Per-joint loss weights multiplied into the target weights (HRNet's
    /// `USE_DIFFERENT_JOINTS_WEIGHT`); one per joint of the layout.
    #[serde(default)]
    pub joint_weights: Option<Vec<f32>>,
    #[serde(default)]
    pub augmentation: AugmentConfig,
    /// RGB mean subtracted after scaling pixels to 0..1.
    #[serde(default = "default_mean")]
    pub mean: [f32; 3],
    /// RGB standard deviation divided after subtracting the mean.
    #[serde(default = "default_std")]
    pub std: [f32; 3],
    /// Padding of a person box before cropping (HRNet's 1.25).
    #[serde(default = "default_box_padding")]
    pub box_padding: f64,
    /// Detections with a lower score are not tested (HRNet `TEST.IMAGE_THRE`, 0.0 in the
    /// official COCO configs).
    #[serde(default)]
    pub det_score_threshold: f64,
    /// Test on ground-truth boxes (`true`) or on a detection-results file.
    #[serde(default = "default_true")]
    pub use_gt_boxes: bool,
    /// Drop annotations whose box is empty or lies outside the image, as the official loader
    /// does silently, instead of stopping with an error naming the annotation. Off by default:
    /// the COCO files have no such person with keypoints, so one usually means a broken
    /// conversion that should be fixed rather than trained around.
    #[serde(default)]
    pub skip_invalid_boxes: bool,
}

/// HRNet's training augmentation (`DATASET.*` keys of the official configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Scale jitter: `s *= clip(N(0,1) * f + 1, 1 - f, 1 + f)` (`SCALE_FACTOR`).
    pub scale_factor: f64,
    /// Rotation jitter in degrees: `clip(N(0,1) * f, -2f, 2f)` (`ROT_FACTOR`).
    pub rotation_factor: f64,
    /// Probability that a sample is rotated at all (0.6, hard-coded in the official code).
    pub rotation_prob: f64,
    /// Horizontal flip with the layout's left/right swap (`FLIP`).
    pub flip: bool,
    /// Probability of the flip when enabled (0.5 in the official code).
    pub flip_prob: f64,
    /// Probability of the half-body crop (`PROB_HALF_BODY`).
    pub half_body_prob: f64,
    /// The half-body crop needs more than this many labeled joints (`NUM_JOINTS_HALF_BODY`).
    pub num_joints_half_body: usize,
    /// Padding of the half-body box (1.5, hard-coded in the official code).
    pub half_body_padding: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            scale_factor: 0.35,
            rotation_factor: 45.0,
            rotation_prob: 0.6,
            flip: true,
            flip_prob: 0.5,
            half_body_prob: 0.3,
            num_joints_half_body: 8,
            half_body_padding: 1.5,
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all: what the overfit test and debugging want from a training run.
    pub fn none() -> Self {
        Self {
            scale_factor: 0.0,
            rotation_factor: 0.0,
            rotation_prob: 0.0,
            flip: false,
            flip_prob: 0.0,
            half_body_prob: 0.0,
            num_joints_half_body: 8,
            half_body_padding: 1.5,
        }
    }
}

fn default_sigma() -> f64 {
    2.0
}
fn default_layout() -> String {
    "coco17".into()
}
fn default_blur_kernel() -> usize {
    11
}
fn default_mean() -> [f32; 3] {
    IMAGENET_MEAN
}
fn default_std() -> [f32; 3] {
    IMAGENET_STD
}
fn default_box_padding() -> f64 {
    posekit_core::geometry::center_scale::DEFAULT_PADDING
}
fn default_true() -> bool {
    true
}

impl DataConfig {
    /// A config with the official HRNet COCO defaults for the given sizes (`[width, height]`).
    pub fn new(input_size: [usize; 2], heatmap_size: [usize; 2]) -> Self {
        Self {
            input_size,
            heatmap_size,
            sigma: default_sigma(),
            layout: default_layout(),
            codec: HeatmapVariant::default(),
            refinement: Refinement::default(),
            blur_kernel: default_blur_kernel(),
            joint_weights: None,
            augmentation: AugmentConfig::default(),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            box_padding: default_box_padding(),
            det_score_threshold: 0.0,
            use_gt_boxes: true,
            skip_invalid_boxes: false,
        }
    }

    /// Parses a `[data]` table written as TOML text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self, DataError> {
        let cfg: Self = toml::from_str(text).map_err(|e| {
            DataError::Core(posekit_core::Error::parse(
                origin,
                format!("invalid data config: {e}"),
            ))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// `input_w / input_h`, the aspect ratio boxes are widened or heightened to.
    pub fn aspect_ratio(&self) -> f64 {
        self.input_size[0] as f64 / self.input_size[1] as f64
    }

    /// The keypoint layout this config names (built-in or file).
    pub fn keypoint_layout(&self) -> Result<KeypointLayout, DataError> {
        Ok(KeypointLayout::resolve(&self.layout)?)
    }

    /// The heatmap codec for targets and decoding.
    pub fn codec(&self) -> HeatmapCodec {
        HeatmapCodec {
            input_size: self.input_size,
            heatmap_size: self.heatmap_size,
            sigma: self.sigma,
            variant: self.codec,
            refinement: self.refinement,
            blur_kernel: self.blur_kernel,
            joint_weights: self.joint_weights.clone(),
        }
    }

    /// The crop convention that goes with the codec: UDP targets need UDP crops.
    pub fn affine_mode(&self) -> AffineMode {
        match self.codec {
            HeatmapVariant::Udp => AffineMode::Udp,
            _ => AffineMode::Standard,
        }
    }

    /// Which COCO boxes to test on: ground truth when `use_gt_boxes`, otherwise `detections`
    /// filtered by `det_score_threshold` (an error when no detection file is given, since
    /// silently falling back to ground-truth boxes would report a far too high AP).
    pub fn coco_test_split(&self, detections: Option<&Path>) -> Result<CocoSplit, DataError> {
        if self.use_gt_boxes {
            return Ok(CocoSplit::GtBoxes);
        }
        match detections {
            Some(path) => Ok(CocoSplit::Detections {
                path: path.to_path_buf(),
                threshold: self.det_score_threshold,
            }),
            None => Err(DataError::config(
                "use_gt_boxes",
                "is false but no detection results file is given",
            )),
        }
    }

    /// Checks every value before any file is read, so a typo fails in the first second.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |field: &str, message: String| Err(DataError::config(field, message));
        for (field, size) in [
            ("input_size", self.input_size),
            ("heatmap_size", self.heatmap_size),
        ] {
            if size[0] < 2 || size[1] < 2 {
                return bad(field, format!("must be at least 2x2 pixels, got {size:?}"));
            }
        }
        self.codec().validate()?;
        let layout = self.keypoint_layout()?;
        if let Some(weights) = &self.joint_weights {
            if weights.len() != layout.num_keypoints() {
                return bad(
                    "joint_weights",
                    format!(
                        "has {} entries, layout `{}` has {} joints",
                        weights.len(),
                        layout.name,
                        layout.num_keypoints()
                    ),
                );
            }
        }
        if let Some(i) = (0..3).find(|&i| !self.mean[i].is_finite()) {
            return bad("mean", format!("mean[{i}] is not finite"));
        }
        if let Some(i) = (0..3).find(|&i| !(self.std[i].is_finite() && self.std[i] > 0.0)) {
            return bad(
                "std",
                format!("std[{i}] must be positive, got {}", self.std[i]),
            );
        }
        if !(self.box_padding.is_finite() && self.box_padding > 0.0) {
            return bad(
                "box_padding",
                format!("must be positive, got {}", self.box_padding),
            );
        }
        if !self.det_score_threshold.is_finite() {
            return bad("det_score_threshold", "must be a finite number".into());
        }
        self.augmentation.validate()
    }
}

impl AugmentConfig {
    fn validate(&self) -> Result<(), DataError> {
        let bad = |field: &str, message: String| {
            Err(DataError::config(format!("augmentation.{field}"), message))
        };
        if !(self.scale_factor.is_finite() && (0.0..1.0).contains(&self.scale_factor)) {
            return bad(
                "scale_factor",
                format!(
                    "must be in [0, 1) so the crop keeps a positive size, got {}",
                    self.scale_factor
                ),
            );
        }
        if !(self.rotation_factor.is_finite() && self.rotation_factor >= 0.0) {
            return bad(
                "rotation_factor",
                format!("must be >= 0 degrees, got {}", self.rotation_factor),
            );
        }
        for (field, p) in [
            ("rotation_prob", self.rotation_prob),
            ("flip_prob", self.flip_prob),
            ("half_body_prob", self.half_body_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(field, format!("is a probability, got {p}"));
            }
        }
        if !(self.half_body_padding.is_finite() && self.half_body_padding > 0.0) {
            return bad(
                "half_body_padding",
                format!("must be positive, got {}", self.half_body_padding),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_table_gets_the_official_defaults() {
        let cfg = DataConfig::from_toml_str(
            "input_size = [192, 256]\nheatmap_size = [48, 64]\n",
            Path::new("cfg.toml"),
        )
        .unwrap();
        assert_eq!(cfg, DataConfig::new([192, 256], [48, 64]));
        assert_eq!(cfg.augmentation.rotation_factor, 45.0);
        assert_eq!(cfg.mean, IMAGENET_MEAN);
        assert_eq!(cfg.affine_mode(), AffineMode::Standard);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = DataConfig::from_toml_str(
            "input_size = [192, 256]\nheatmap_size = [48, 64]\n[augmentation]\nrotation_factr = 30\n",
            Path::new("cfg.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cfg.toml") && err.contains("rotation_factr"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_values_are_errors_naming_the_field() {
        let mut cfg = DataConfig::new([192, 256], [48, 64]);
        cfg.augmentation.scale_factor = 1.5;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("augmentation.scale_factor"));
        let mut cfg = DataConfig::new([192, 256], [48, 64]);
        cfg.std = [0.2, 0.0, 0.2];
        assert!(cfg.validate().unwrap_err().to_string().contains("std"));
        let mut cfg = DataConfig::new([192, 256], [48, 64]);
        cfg.joint_weights = Some(vec![1.0; 3]);
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("joint_weights"));
        let mut cfg = DataConfig::new([192, 256], [48, 64]);
        cfg.layout = "no-such-layout".into();
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn detections_are_required_when_not_testing_on_gt_boxes() {
        let mut cfg = DataConfig::new([192, 256], [48, 64]);
        assert!(matches!(cfg.coco_test_split(None), Ok(CocoSplit::GtBoxes)));
        cfg.use_gt_boxes = false;
        cfg.det_score_threshold = 0.3;
        assert!(cfg.coco_test_split(None).is_err());
        match cfg.coco_test_split(Some(Path::new("det.json"))) {
            Ok(CocoSplit::Detections { threshold, .. }) => assert_eq!(threshold, 0.3),
            other => panic!("{other:?}"),
        }
    }
}
