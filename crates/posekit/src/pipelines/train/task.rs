//! What differs between the training of model families, behind one trait, so that the loop,
//! the schedule, checkpoints, `--resume` and best-checkpoint selection in [`super::trainer`]
//! are written once:
//!
//! * [`TopDownTask`]: person crops, `JointsMSELoss` with target weights on every heatmap head,
//!   validation by the HRNet test (COCO AP or MPII PCKh);
//! * [`BottomUpTask`]: whole images through HigherHRNet's pipeline, `MultiLossFactory`
//!   (masked heatmap MSE per resolution, AE push/pull where the network has tags), validation
//!   by the bottom-up COCO test.
//!
//! OpenPose is [`super::paf_task::PafTask`] (CMU's crops and targets, the masked Euclidean
//! loss of every stage); the next family (SPM) is one more implementation.

use std::path::Path;
use std::sync::Arc;

use crate::error::{bail, ResultExt};
use posekit_nn::loss::{joints_mse_loss, MultiResolutionLoss, MultiResolutionLossConfig};
use tch::{Device, Kind, Tensor};

use super::trainer::Reporter;
use crate::pipelines::bottomup_test::{bottomup_report_text, test_config_model};
use crate::pipelines::config::{DatasetFormat, ExperimentConfig};
use crate::pipelines::data::{
    BottomUpBatch, BottomUpDataset, CocoSplit, SampleSource, TopDownBatch, TopDownDataset,
};
use crate::pipelines::model::LoadedModel;
use crate::pipelines::test::{report_text, run_test, test_dataset, GroundTruth, TestOptions};
use crate::pipelines::topdown::heatmap_heads;

/// The batch type of a task's dataset.
pub type BatchOf<T> = <<T as TrainingTask>::Data as SampleSource>::Batch;

/// One family's part of training.
pub trait TrainingTask {
    type Data: SampleSource;

    /// The training split.
    fn dataset(&self) -> &Arc<Self::Data>;

    /// What one sample is, for the log ("instances", "images").
    fn sample_noun(&self) -> &'static str;

    /// The scalar loss of one batch (forward in training mode included).
    fn loss(
        &self,
        model: &LoadedModel,
        batch: &BatchOf<Self>,
        device: Device,
    ) -> crate::Result<Tensor>;

    /// Samples of `batch` whose targets had to leave something out (bottom-up: people beyond
    /// `max_people`), counted in the epoch report.
    fn overflowing(&self, _batch: &BatchOf<Self>) -> usize {
        0
    }

    /// Tests `model` on the validation split, writing results under `out_dir`; returns the
    /// model and the metric that selects the best checkpoint (higher is better); the test's
    /// table goes to `report`.
    fn validate(
        &self,
        model: LoadedModel,
        device: Device,
        out_dir: &Path,
        progress: bool,
        report: &Reporter,
    ) -> crate::Result<(LoadedModel, Option<f64>)>;
}

/// Top-down training: the official HRNet recipe.
pub struct TopDownTask {
    cfg: ExperimentConfig,
    train_set: Arc<TopDownDataset>,
    val_set: Arc<TopDownDataset>,
    gt: GroundTruth,
}

impl TopDownTask {
    pub fn new(cfg: &ExperimentConfig) -> crate::Result<Self> {
        Ok(Self {
            cfg: cfg.clone(),
            train_set: Arc::new(topdown_train_dataset(cfg)?),
            val_set: Arc::new(test_dataset(cfg)?),
            gt: GroundTruth::load(cfg)?,
        })
    }
}

/// The training split of a top-down config.
pub fn topdown_train_dataset(cfg: &ExperimentConfig) -> crate::Result<TopDownDataset> {
    let d = &cfg.dataset;
    let (Some(ann), Some(images)) = (&d.train_annotations, &d.train_images) else {
        bail!("dataset.train_annotations and dataset.train_images are needed for training");
    };
    let ds = match d.format {
        DatasetFormat::Coco => TopDownDataset::coco(ann, images, &cfg.data, CocoSplit::Train)?,
        DatasetFormat::Mpii => TopDownDataset::mpii(ann, images, &cfg.data, true)?,
        DatasetFormat::Crowdpose => {
            bail!("dataset.format: CrowdPose is read by bottom-up configs only for now")
        }
    };
    if ds.is_empty() {
        bail!(
            "{}: no person with a labeled joint to train on",
            ann.display()
        );
    }
    Ok(ds)
}

impl TrainingTask for TopDownTask {
    type Data = TopDownDataset;

    fn dataset(&self) -> &Arc<TopDownDataset> {
        &self.train_set
    }

    fn sample_noun(&self) -> &'static str {
        "instances"
    }

    /// JointsMSELoss with target weights on every heatmap head (Hourglass supervises each
    /// stack).
    fn loss(
        &self,
        model: &LoadedModel,
        batch: &TopDownBatch,
        device: Device,
    ) -> crate::Result<Tensor> {
        let shape = batch.input_shape().map(|v| v as i64);
        let tshape = batch.target_shape().map(|v| v as i64);
        let x = Tensor::from_slice(&batch.inputs)
            .view(shape)
            .to_device(device);
        let target = Tensor::from_slice(&batch.targets)
            .view(tshape)
            .to_device(device);
        let weight = Tensor::from_slice(&batch.target_weights)
            .view([tshape[0], tshape[1], 1])
            .to_device(device);
        let outputs = model.net.forward_named(&x, true)?;
        let heads = heatmap_heads(&outputs);
        if heads.is_empty() {
            bail!("the network has no heatmap output to train");
        }
        let mut total: Option<Tensor> = None;
        for head in heads {
            if head.size() != tshape {
                bail!(
                    "the network outputs heatmaps of shape {:?}, but the targets are {:?} \
                     (data.heatmap_size must be the network's output size for data.input_size)",
                    head.size(),
                    tshape
                );
            }
            let l = joints_mse_loss(head, &target, Some(&weight))?;
            total = Some(match total {
                Some(t) => t + l,
                None => l,
            });
        }
        total.ok_or_else(|| crate::error::invalid!("no loss"))
    }

    fn validate(
        &self,
        model: LoadedModel,
        device: Device,
        out_dir: &Path,
        progress: bool,
        report: &Reporter,
    ) -> crate::Result<(LoadedModel, Option<f64>)> {
        let opts = TestOptions {
            test: self.cfg.test.clone(),
            out_dir: Some(out_dir.to_path_buf()),
            progress,
        };
        let test = run_test(
            model.net.as_ref(),
            device,
            &self.cfg,
            &self.val_set,
            &self.gt,
            &opts,
        )?;
        for warning in &test.warnings {
            report(&format!("warning: {warning}"));
        }
        report(&report_text(&test, &self.cfg.dataset.val_annotations));
        Ok((model, test.headline()))
    }
}

/// HigherHRNet training: its data pipeline and `MultiLossFactory`.
pub struct BottomUpTask {
    cfg: ExperimentConfig,
    train_set: Arc<BottomUpDataset>,
    loss: MultiResolutionLoss,
}

impl BottomUpTask {
    pub fn new(cfg: &ExperimentConfig) -> crate::Result<Self> {
        let Some(bu) = &cfg.bottomup else {
            bail!("the config has no [bottomup] section");
        };
        let (ds, _) = bottomup_train_dataset(cfg)?;
        let k = ds.layout().num_keypoints() as i64;
        let l = &bu.loss;
        let loss = MultiResolutionLoss::new(
            k,
            MultiResolutionLossConfig {
                with_heatmaps_loss: vec![true, true],
                heatmaps_loss_factor: l.heatmaps_loss_factor.clone(),
                // HigherHRNet's network carries tags at 1/4 only; the loss follows the outputs.
                with_ae_loss: vec![true, false],
                push_loss_factor: l.push_loss_factor.clone(),
                pull_loss_factor: l.pull_loss_factor.clone(),
                ae_loss_type: l.ae_loss_type,
            },
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            train_set: Arc::new(ds),
            loss,
        })
    }
}

/// The config's training annotations and images, which training needs, once the validation
/// annotations every bottom-up family validates on are known to exist.
pub(super) fn bottomup_train_split(cfg: &ExperimentConfig) -> crate::Result<(&Path, &Path)> {
    let d = &cfg.dataset;
    let (Some(ann), Some(images)) = (&d.train_annotations, &d.train_images) else {
        bail!("dataset.train_annotations and dataset.train_images are needed for training");
    };
    if !d.val_annotations.exists() {
        bail!(
            "dataset.val_annotations {} does not exist (validation needs it)",
            d.val_annotations.display()
        );
    }
    Ok((ann, images))
}

/// The training pictures of the HigherHRNet and SPM tasks ([`bottomup_dataset`] on the train
/// split), refused when no picture has an annotated person; with the annotation file read, for
/// messages.
pub(super) fn bottomup_train_dataset(
    cfg: &ExperimentConfig,
) -> crate::Result<(BottomUpDataset, &Path)> {
    let (ann, images) = bottomup_train_split(cfg)?;
    let ds = bottomup_dataset(cfg, ann, images)?;
    if ds.is_empty() {
        bail!("{}: no annotated image to train on", ann.display());
    }
    Ok((ds, ann))
}

/// The validation of every bottom-up family: the config's bottom-up COCO test, whose AP selects
/// the best checkpoint.
pub(super) fn validate_bottomup(
    cfg: &ExperimentConfig,
    model: LoadedModel,
    device: Device,
    out_dir: &Path,
    progress: bool,
    report: &Reporter,
) -> crate::Result<(LoadedModel, Option<f64>)> {
    let (model, test) = test_config_model(model, cfg, device, out_dir, progress)?;
    report(&bottomup_report_text(&test));
    Ok((model, Some(test.stats.ap)))
}

/// The bottom-up dataset of one split of a config (`ann` with its images under `images`), in
/// the config's `dataset.format`.
pub fn bottomup_dataset(
    cfg: &ExperimentConfig,
    ann: &Path,
    images: &Path,
) -> crate::Result<BottomUpDataset> {
    let Some(bu) = &cfg.bottomup else {
        bail!("the config has no [bottomup] section");
    };
    let ds = match cfg.dataset.format {
        DatasetFormat::Coco => BottomUpDataset::coco(ann, images, bu),
        DatasetFormat::Crowdpose => BottomUpDataset::crowdpose(ann, images, bu),
        DatasetFormat::Mpii => {
            bail!("dataset.format: bottom-up training reads COCO person_keypoints files, not MPII")
        }
    };
    ds.with_context(|| format!("loading {}", ann.display()))
}

/// The network's outputs per resolution as HigherHRNet's forward returns them (heatmaps, then
/// tags where present, along the channels), from the named heads `heatmaps_s{stride}` /
/// `tags_s{stride}`, highest stride (1/4) first.
fn raw_outputs(named: Vec<(String, Tensor)>) -> crate::Result<Vec<Tensor>> {
    let mut by_stride: Vec<(i64, Tensor, Option<Tensor>)> = Vec::new();
    for (name, t) in named {
        let (kind, stride) = name
            .split_once("_s")
            .and_then(|(k, s)| Some((k.to_string(), s.parse::<i64>().ok()?)))
            .ok_or_else(|| crate::error::invalid!("unexpected network output `{name}`"))?;
        match kind.as_str() {
            "heatmaps" => by_stride.push((stride, t, None)),
            "tags" => {
                let entry = by_stride
                    .iter_mut()
                    .find(|(s, _, _)| *s == stride)
                    .ok_or_else(|| crate::error::invalid!("tags_s{stride} before its heatmaps"))?;
                entry.2 = Some(t);
            }
            _ => bail!("unexpected network output `{name}`"),
        }
    }
    by_stride.sort_by_key(|(s, _, _)| -s);
    Ok(by_stride
        .into_iter()
        .map(|(_, h, tags)| match tags {
            Some(t) => Tensor::cat(&[h, t], 1),
            None => h,
        })
        .collect())
}

/// The tensors of a bottom-up batch: input, and per resolution heatmaps, masks, joints.
pub struct BottomUpTensors {
    pub input: Tensor,
    pub heatmaps: Vec<Tensor>,
    pub masks: Vec<Tensor>,
    pub joints: Vec<Tensor>,
}

impl BottomUpTensors {
    pub fn new(batch: &BottomUpBatch, device: Device) -> Self {
        let (n, k, p) = (
            batch.batch_size as i64,
            batch.num_joints as i64,
            batch.max_people as i64,
        );
        let s = batch.input_size as i64;
        let input = Tensor::from_slice(&batch.inputs)
            .view([n, 3, s, s])
            .to_device(device);
        let mut out = Self {
            input,
            heatmaps: Vec::new(),
            masks: Vec::new(),
            joints: Vec::new(),
        };
        for r in &batch.resolutions {
            let side = r.size as i64;
            out.heatmaps.push(
                Tensor::from_slice(&r.heatmaps)
                    .view([n, k, side, side])
                    .to_device(device),
            );
            out.masks.push(
                Tensor::from_slice(&r.masks)
                    .view([n, side, side])
                    .to_device(device),
            );
            out.joints.push(
                Tensor::from_slice(&r.joints)
                    .view([n, p, k, 2])
                    .to_device(device),
            );
        }
        out
    }
}

impl TrainingTask for BottomUpTask {
    type Data = BottomUpDataset;

    fn dataset(&self) -> &Arc<BottomUpDataset> {
        &self.train_set
    }

    fn sample_noun(&self) -> &'static str {
        "images"
    }

    fn loss(
        &self,
        model: &LoadedModel,
        batch: &BottomUpBatch,
        device: Device,
    ) -> crate::Result<Tensor> {
        let t = BottomUpTensors::new(batch, device);
        let outputs = raw_outputs(model.net.forward_named(&t.input, true)?)?;
        for (o, h) in outputs.iter().zip(&t.heatmaps) {
            let (os, hs) = (o.size(), h.size());
            if os.len() != 4 || os[2..] != hs[2..] {
                bail!(
                    "the network outputs {os:?} where the targets are {hs:?} \
                     (bottomup.input_size must give the network's output sizes)"
                );
            }
        }
        let joints: Vec<Option<Tensor>> = t.joints.into_iter().map(Some).collect();
        let terms = self
            .loss
            .forward(&outputs, &t.heatmaps, &t.masks, &joints)?;
        Ok(terms.total.to_kind(Kind::Float))
    }

    fn overflowing(&self, batch: &BottomUpBatch) -> usize {
        batch.overflowing_images
    }

    fn validate(
        &self,
        model: LoadedModel,
        device: Device,
        out_dir: &Path,
        progress: bool,
        report: &Reporter,
    ) -> crate::Result<(LoadedModel, Option<f64>)> {
        validate_bottomup(&self.cfg, model, device, out_dir, progress, report)
    }
}
