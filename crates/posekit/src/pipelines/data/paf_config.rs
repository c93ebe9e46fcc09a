//! The `[bottomup.paf]` part of a config: OpenPose (part affinity field) training, with the
//! values of CMU's COCO training as defaults (`pose_train_test.prototxt` of
//! ZheC/Realtime_Multi-Person_Pose_Estimation, its `cpm_transform_param`), so a config states
//! only what differs. Unknown keys are errors.
//!
//! With `[bottomup.paf]` present, `[bottomup]` keeps only what both pipelines share:
//! `input_size` is the crop *height* (368; a multiple of the network's 16 or 8),
//! `test_input_size` the test's network height (tf-pose models) or box size (CMU models), and
//! `layout` the annotation file's layout (COCO-17, converted to the network's CMU-18). HigherHRNet's
//! `sigma`, `max_people`, `augmentation`, `loss`, `mean` and `std` do not apply and are refused
//! ([`check_raw_bottomup_table`]): the input normalisation is the one the family's test
//! pipeline feeds (BGR `v / 256 - 0.5` for CMU models, BGR 0..255 for tf-pose ones).

use posekit_core::codecs::paf::PafTargetRules;
use serde::{Deserialize, Serialize};

use super::error::DataError;

/// `[bottomup.paf]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PafDataConfig {
    /// Crop width; `None` is square (CMU's `crop_size_x = crop_size_y = 368`); 432 for the
    /// tf-pose MobileNetV2 variant (`--input-width 432 --input-height 368`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop_width: Option<usize>,
    /// Gaussian sigma in input pixels (CMU's `sigma: 7`; 7 / 8 = 0.875 heatmap pixels).
    pub sigma: f64,
    /// PAF half-width in heatmap pixels (CMU's `putVecMaps` `thre = 1`).
    pub limb_width: f64,
    /// Whose rules draw the targets: `"cmu"` (CMU's generator exactly: Gaussians of people
    /// summed and clipped at 1, limbs by distance to their line inside their rounded box, a
    /// later person's vector replacing an earlier one's, the main person drawn first, joints
    /// off the crop still drawn) or `"posekit"` (the core encoder's own rules; the default, so
    /// configs written before the key keep their targets). See
    /// [`PafTargetRules`] and the module doc of `data/paf.rs`.
    pub rules: PafTargetRules,
    /// Train with the BatchNorm layers in inference mode (their running statistics used and
    /// kept, the weights still learning): for fine-tuning a trained model, whose statistics
    /// one epoch of a small dataset would otherwise replace (the shipped MobileNetV2 lost every
    /// person after one epoch on coco-mini, BENCHMARKS.md). Layers that always normalise with
    /// batch statistics (tf-pose's backbone) are unaffected. Default false (CMU trains them).
    pub frozen_batchnorm: bool,
    pub augmentation: PafAugmentConfig,
}

impl Default for PafDataConfig {
    fn default() -> Self {
        Self {
            crop_width: None,
            sigma: 7.0,
            limb_width: 1.0,
            rules: PafTargetRules::Posekit,
            frozen_batchnorm: false,
            augmentation: PafAugmentConfig::default(),
        }
    }
}

/// How a training crop is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PafFraming {
    /// CMU's: one sample per "main" person (at least `min_keypoints` labelled joints and a
    /// segmentation area of `min_area`), scaled so that its box height is `target_dist` of the
    /// crop height times a random factor, centred on its box centre plus the perturbation.
    Person,
    /// One sample per image: the whole picture stretched to the crop (what tf-pose's test feeds
    /// the network), then the same random scale factor, rotation, shift and flip. Not CMU's;
    /// for overfitting a few pictures, where the test framing must be the training one.
    Picture,
}

/// CMU's `cpm_transform_param` (`augmentation_scale`, `augmentation_rotate`,
/// `augmentation_croppad`, `augmentation_flip` of `cpm_data_transformer.cpp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PafAugmentConfig {
    pub framing: PafFraming,
    /// The main person's box height as a fraction of the crop height at factor 1 (0.6).
    pub target_dist: f64,
    /// The random scale factor, uniform in `[scale_min, scale_max]` (0.5, 1.1) with probability
    /// `scale_prob` (1), else 1.
    pub scale_min: f64,
    pub scale_max: f64,
    pub scale_prob: f64,
    /// Rotation uniform in `[-max_rotate, max_rotate]` degrees (40).
    pub max_rotate: f64,
    /// Centre shift uniform in `[-c, c]` crop pixels on each axis (`center_perterb_max: 40`).
    pub center_perturb_max: f64,
    /// Probability of the horizontal flip with the CMU-18 pairs (0.5).
    pub flip_prob: f64,
    /// Main-person rule of CMU's `genJSON.m` (at least 5 labelled joints, area 32 x 32).
    pub min_keypoints: u32,
    pub min_area: f64,
    /// `genJSON.m`'s other main-person rule: a person whose box centre is closer to the box
    /// centre of an earlier main person of the image (annotation order) than this fraction
    /// of that person's larger box side is no main person (CMU: 0.3, its
    /// `norm(dist) < prev_center(k,3)*0.3`). Default 0: off, so that configs written before
    /// the key keep their samples; the two COCO OpenPose recipes say 0.3.
    pub min_main_distance: f64,
}

impl Default for PafAugmentConfig {
    fn default() -> Self {
        Self {
            framing: PafFraming::Person,
            target_dist: 0.6,
            scale_min: 0.5,
            scale_max: 1.1,
            scale_prob: 1.0,
            max_rotate: 40.0,
            center_perturb_max: 40.0,
            flip_prob: 0.5,
            min_keypoints: 5,
            min_area: 32.0 * 32.0,
            min_main_distance: 0.0,
        }
    }
}

impl PafAugmentConfig {
    /// Every random part at identity (the given framing, factor 1, no rotation, shift or flip).
    pub fn none(framing: PafFraming) -> Self {
        Self {
            framing,
            scale_min: 1.0,
            scale_max: 1.0,
            max_rotate: 0.0,
            center_perturb_max: 0.0,
            flip_prob: 0.0,
            ..Self::default()
        }
    }
}

/// The keys of `[bottomup]` that only HigherHRNet's pipeline reads.
pub const HIGHERHRNET_ONLY: [&str; 6] =
    ["sigma", "max_people", "augmentation", "loss", "mean", "std"];

/// Refuses HigherHRNet-only keys next to `[bottomup.paf]` (they would be silently ignored),
/// on the raw table so the error names what the user wrote.
pub fn check_raw_bottomup_table(bottomup: &toml::Table) -> Result<(), DataError> {
    if !bottomup.contains_key("paf") {
        return Ok(());
    }
    match HIGHERHRNET_ONLY.iter().find(|k| bottomup.contains_key(**k)) {
        Some(k) => Err(DataError::config(
            format!("bottomup.{k}"),
            "is HigherHRNet's; an OpenPose config sets its targets and augmentation in \
             [bottomup.paf] (sigma, limb_width, augmentation) and its input normalisation is \
             the model's own",
        )),
        None => Ok(()),
    }
}

impl PafDataConfig {
    /// `[width, height]` of the crop for crop height `input_size`.
    pub fn crop_size(&self, input_size: usize) -> [usize; 2] {
        [self.crop_width.unwrap_or(input_size), input_size]
    }

    /// Checks the values for a crop of height `input_size` and a network input `multiple`.
    pub fn validate(&self, input_size: usize, multiple: usize) -> Result<(), DataError> {
        let bad = |field: &str, message: String| {
            Err(DataError::config(format!("bottomup.paf.{field}"), message))
        };
        let [w, h] = self.crop_size(input_size);
        for (field, v) in [("crop_width", w), ("(bottomup.input_size)", h)] {
            if v == 0 || !v.is_multiple_of(multiple) {
                return bad(
                    field,
                    format!("must be a positive multiple of {multiple}, got {v}"),
                );
            }
        }
        for (field, v) in [("sigma", self.sigma), ("limb_width", self.limb_width)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(field, format!("must be positive, got {v}"));
            }
        }
        let a = &self.augmentation;
        if !(a.scale_min.is_finite() && a.scale_min > 0.0 && a.scale_min <= a.scale_max) {
            return bad(
                "augmentation.scale_min",
                format!(
                    "need 0 < scale_min <= scale_max, got {} and {}",
                    a.scale_min, a.scale_max
                ),
            );
        }
        if !(a.target_dist.is_finite() && a.target_dist > 0.0) {
            return bad(
                "augmentation.target_dist",
                format!("must be positive, got {}", a.target_dist),
            );
        }
        for (field, v) in [("scale_prob", a.scale_prob), ("flip_prob", a.flip_prob)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(
                    &format!("augmentation.{field}"),
                    format!("must be in [0, 1], got {v}"),
                );
            }
        }
        for (field, v) in [
            ("max_rotate", a.max_rotate),
            ("center_perturb_max", a.center_perturb_max),
            ("min_area", a.min_area),
            ("min_main_distance", a.min_main_distance),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(
                    &format!("augmentation.{field}"),
                    format!("must be >= 0, got {v}"),
                );
            }
        }
        Ok(())
    }
}
