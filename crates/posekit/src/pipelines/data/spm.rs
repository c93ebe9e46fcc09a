//! SPM's training data (Nie et al., "Single-Stage Multi-Person Pose Machines", ICCV 2019): the
//! pictures, people, ignore masks, random affine and flip of HigherHRNet's bottom-up pipeline
//! ([`BottomUpDataset::load_with`] and [`BottomUpDataset::warp`], not a copy), at the one output
//! resolution of the SPM networks (1/4 of the input), then the targets of the core's
//! [`SpmCodec`] encoder: the root-joint Gaussian, the hierarchical displacements and their
//! weights.
//!
//! The codec is the one the test decodes with (`SpmCodec::hierarchical` over the layout, `Z` the
//! heatmap diagonal, see `estimator::bottomup::spm`), so training and testing agree on the
//! hierarchy and the units; `[bottomup.spm]` sets only what encoding alone reads (the root's
//! sigma, the disk radius, the root joints, the overlap rule) and the loss weights.
//!
//! What the paper gives and what it leaves open (the codec's module doc has the encoding side):
//!
//! * root map `C(p) = exp(-|p - r|^2 / sigma^2)` with `sigma = 7`: the core draws
//!   `exp(-d^2 / (2 s^2))`, so the paper's value is `s = 7 / sqrt(2) = 4.95`, the default; the
//!   paper does not say at which resolution, posekit reads it in heatmap pixels;
//! * displacements inside `N = {p : |p - anchor| <= tau}`, `tau = 7`: read as a radius in heatmap
//!   pixels (the default `radius = 7`; a summary of the paper writes the squared distance,
//!   `|p - anchor|^2 <= tau`, which would make the radius sqrt(7) = 2.6, while an unofficial
//!   implementation fills a box of half-side tau: posekit takes tau as the radius); where several people's disks overlap, the paper's mean
//!   of their displacements (`overlap = "average"`, the default) or the nearer anchor's alone
//!   (`overlap = "nearest"`: a mean of two people's offsets points at neither);
//! * the root is the centroid of the person's labelled joints (the paper says "centroid" and
//!   nothing more); `root_joints` picks a subset (e.g. the torso);
//! * the flip swaps joints by the layout's pairs, which the hierarchy then follows (the left
//!   wrist still hangs from the left elbow);
//! * augmentation: the paper gives none; HigherHRNet's random affine and flip are used, with its
//!   defaults (`[bottomup.augmentation]`).

use std::sync::Arc;

use ndarray::{Array2, Array3};
use posekit_core::codecs::spm::{SpmCodec, SpmOverlap, SpmTargets};
use posekit_core::layout::KeypointLayout;
use posekit_core::Error;
use posekit_nn::spm_loss::SpmLossConfig;
use serde::{Deserialize, Serialize};

use super::bottomup::{BottomUpAugmentation, BottomUpDataset, BottomUpImage, WarpedSample};
use super::bottomup_config::BottomUpDataConfig;
use super::dataset::LoadMode;
use super::error::DataError;
use super::loader::SampleSource;

/// SPM's networks predict at 1/4 of their input (both backbones).
pub const SPM_STRIDE: usize = 4;

/// `[bottomup.spm]`: SPM's target and loss settings, the paper's values by default. Unknown
/// keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpmTrainConfig {
    /// Standard deviation of the root Gaussian `exp(-d^2 / (2 sigma^2))`, heatmap pixels (the
    /// paper's `sigma = 7` in `exp(-d^2 / sigma^2)`, i.e. 4.95).
    pub root_sigma: f64,
    /// Radius of the disk around each anchor that carries displacement targets, heatmap pixels
    /// (the paper's `tau = 7`).
    pub radius: f64,
    /// Joints whose labelled centroid is the root; empty (default) means all joints.
    pub root_joints: Vec<usize>,
    /// The target of a pixel in several people's disks: the paper's mean (`"average"`) or the
    /// nearer anchor's (`"nearest"`).
    pub overlap: SpmOverlap,
    /// The paper's `beta`: weight of the displacement loss (0.01).
    pub displacement_loss_factor: f64,
    /// Transition of the smooth-L1 loss in normalised displacement units (PyTorch's default 1).
    pub smooth_l1_beta: f64,
}

impl Default for SpmTrainConfig {
    fn default() -> Self {
        let loss = SpmLossConfig::default();
        Self {
            root_sigma: 7.0 / std::f64::consts::SQRT_2,
            radius: 7.0,
            root_joints: Vec::new(),
            overlap: SpmOverlap::Average,
            displacement_loss_factor: loss.displacement_factor,
            smooth_l1_beta: loss.smooth_l1_beta,
        }
    }
}

impl SpmTrainConfig {
    /// The codec that encodes targets for `heatmap_size` (`[W, H]`) and that the test decodes
    /// with (its decoding settings are the test's defaults).
    pub fn codec(&self, heatmap_size: [usize; 2], layout: &KeypointLayout) -> SpmCodec {
        let mut codec = SpmCodec::hierarchical(heatmap_size, layout);
        codec.sigma = self.root_sigma;
        codec.radius = self.radius;
        codec.root_joints = self.root_joints.clone();
        codec.overlap = self.overlap;
        codec
    }

    pub fn loss(&self) -> SpmLossConfig {
        SpmLossConfig {
            displacement_factor: self.displacement_loss_factor,
            smooth_l1_beta: self.smooth_l1_beta,
        }
    }

    pub fn validate(&self, num_joints: usize) -> Result<(), DataError> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.root_sigma) {
            return Err(DataError::config(
                "bottomup.spm.root_sigma",
                format!("must be positive, got {}", self.root_sigma),
            ));
        }
        if !positive(self.radius) {
            return Err(DataError::config(
                "bottomup.spm.radius",
                format!("must be positive, got {}", self.radius),
            ));
        }
        if let Some(j) = self.root_joints.iter().find(|&&j| j >= num_joints) {
            return Err(DataError::config(
                "bottomup.spm.root_joints",
                format!("joint {j} is not one of the layout's {num_joints}"),
            ));
        }
        if !(self.displacement_loss_factor.is_finite() && self.displacement_loss_factor >= 0.0) {
            return Err(DataError::config(
                "bottomup.spm.displacement_loss_factor",
                format!("must be >= 0, got {}", self.displacement_loss_factor),
            ));
        }
        if !positive(self.smooth_l1_beta) {
            return Err(DataError::config(
                "bottomup.spm.smooth_l1_beta",
                format!("must be positive, got {}", self.smooth_l1_beta),
            ));
        }
        Ok(())
    }
}

/// One SPM training sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SpmSample {
    /// `[3, S, S]` normalised RGB.
    pub input: Vec<f32>,
    /// Side of the (square) output maps, `S / 4`.
    pub size: usize,
    /// Root map, displacements `[2K, R, R]` and their weights `[K, R, R]`.
    pub targets: SpmTargets,
    /// `[R, R]` 1 where the root loss counts, 0 in crowds, unlabelled people and padding.
    pub mask: Array2<f32>,
    /// `[N, K, 3]` joints at the output resolution after the affine and flip.
    pub people: Array3<f32>,
    /// `[N, K, 3]` joints in input pixels (for drawing).
    pub people_input: Array3<f32>,
    pub image_id: i64,
    pub augmentation: BottomUpAugmentation,
}

/// SPM's dataset: HigherHRNet's images and augmentation, SPM's targets.
#[derive(Debug, Clone)]
pub struct SpmDataset {
    base: Arc<BottomUpDataset>,
    spm: SpmTrainConfig,
    codec: SpmCodec,
}

impl SpmDataset {
    /// SPM targets over `base`'s images (its `[bottomup]` config gives the input size and the
    /// augmentation).
    pub fn new(base: BottomUpDataset, spm: SpmTrainConfig) -> Result<Self, DataError> {
        let layout = base.layout();
        spm.validate(layout.num_keypoints())?;
        let side = base.config().input_size / SPM_STRIDE;
        let codec = spm.codec([side, side], layout);
        Ok(Self {
            base: Arc::new(base),
            spm,
            codec,
        })
    }

    pub fn base(&self) -> &BottomUpDataset {
        &self.base
    }

    pub fn config(&self) -> &BottomUpDataConfig {
        self.base.config()
    }

    pub fn spm_config(&self) -> &SpmTrainConfig {
        &self.spm
    }

    /// The codec of the targets (and of the test's decoding).
    pub fn codec(&self) -> &SpmCodec {
        &self.codec
    }

    pub fn output_size(&self) -> usize {
        self.codec.heatmap_size[0]
    }

    pub fn len(&self) -> usize {
        self.base.len()
    }

    pub fn is_empty(&self) -> bool {
        self.base.is_empty()
    }

    /// Reads image `i` and makes its sample (augmentation drawn as HigherHRNet's pipeline does).
    pub fn load(&self, i: usize, mode: LoadMode) -> Result<SpmSample, DataError> {
        self.base
            .load_with(i, mode, |im, image, aug| self.make_sample(im, image, aug))
    }

    /// The sample of `im` (its decoded `[H, W, 3]` picture) with given augmentation parameters.
    pub fn make_sample(
        &self,
        im: &BottomUpImage,
        image: &Array3<u8>,
        aug: &BottomUpAugmentation,
    ) -> Result<SpmSample, DataError> {
        let size = self.output_size();
        let WarpedSample {
            input,
            people: people_input,
            mut resolutions,
        } = self.base.warp(im, image, aug, &[size])?;
        let res = resolutions.pop().ok_or_else(|| {
            DataError::Core(Error::Shape("the warp gave no output resolution".into()))
        })?;
        let targets = self.codec.encode(res.people.view())?;
        Ok(SpmSample {
            input,
            size,
            targets,
            mask: res.mask,
            people: res.people,
            people_input,
            image_id: im.image_id,
            augmentation: *aug,
        })
    }
}

/// A batch of SPM samples, row-major, ready to become tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct SpmBatch {
    pub index: usize,
    pub batch_size: usize,
    /// `[N, 3, S, S]`.
    pub inputs: Vec<f32>,
    pub input_size: usize,
    /// Side `R` of the output maps.
    pub size: usize,
    pub num_joints: usize,
    /// `[N, 1, R, R]`.
    pub roots: Vec<f32>,
    /// `[N, R, R]`.
    pub masks: Vec<f32>,
    /// `[N, 2K, R, R]`.
    pub displacements: Vec<f32>,
    /// `[N, K, R, R]`.
    pub weights: Vec<f32>,
    pub image_ids: Vec<i64>,
    pub skipped: usize,
}

impl SampleSource for SpmDataset {
    type Sample = SpmSample;
    type Batch = SpmBatch;

    fn len(&self) -> usize {
        self.base.len()
    }

    fn load(&self, index: usize, mode: LoadMode) -> Result<SpmSample, DataError> {
        SpmDataset::load(self, index, mode)
    }

    fn collate(&self, index: usize, samples: Vec<SpmSample>, skipped: usize) -> SpmBatch {
        let mut batch = SpmBatch {
            index,
            batch_size: samples.len(),
            inputs: Vec::new(),
            input_size: self.config().input_size,
            size: self.output_size(),
            num_joints: self.base.layout().num_keypoints(),
            roots: Vec::new(),
            masks: Vec::new(),
            displacements: Vec::new(),
            weights: Vec::new(),
            image_ids: Vec::with_capacity(samples.len()),
            skipped,
        };
        for s in samples {
            batch.inputs.extend_from_slice(&s.input);
            batch.roots.extend(s.targets.root_heatmap.iter());
            batch.masks.extend(s.mask.iter());
            batch.displacements.extend(s.targets.displacements.iter());
            batch.weights.extend(s.targets.weights.iter());
            batch.image_ids.push(s.image_id);
        }
        batch
    }

    fn batch_len(batch: &SpmBatch) -> usize {
        batch.batch_size
    }

    fn batch_skipped(batch: &SpmBatch) -> usize {
        batch.skipped
    }
}
