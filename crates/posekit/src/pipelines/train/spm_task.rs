//! SPM training (`spm-hourglass`, `spm-hrnet-w32`) as one more [`TrainingTask`]: HigherHRNet's
//! whole-picture pipeline with SPM's targets ([`SpmDataset`]), the paper's loss
//! ([`SpmLoss`]: L2 on the root map, smooth-L1 on the displacements where defined, summed over
//! every hourglass stack), validation by the bottom-up COCO test with SPM's letterbox test.
//!
//! Also the network a config builds for an SPM preset ([`build_spm`]): the preset's own, or a
//! smaller backbone through `[model.hrnet]` (`spm-hrnet-w32`) or `[model.hourglass]`
//! (`spm-hourglass`), always in the preset's layout: the test decodes with the hierarchy of
//! that layout and scores COCO-17, so data in another layout is refused, not silently mixed.

use std::path::Path;
use std::sync::Arc;

use crate::error::{bail, ResultExt};
use posekit_core::layout::KeypointLayout;
use posekit_nn::models::hourglass::{HourglassDownsample, HourglassNetConfig};
use posekit_nn::models::hrnet::HrnetConfig;
use posekit_nn::models::spm::{Spm, SpmBackboneConfig, SpmNetConfig};
use posekit_nn::models::{PoseNetwork, Preset};
use posekit_nn::spm_loss::{SpmLoss, SpmLossTerms};
use tch::{nn, Device, Kind, Tensor};

use super::task::{bottomup_train_dataset, validate_bottomup, TrainingTask};
use super::trainer::Reporter;
use crate::pipelines::config::{ExperimentConfig, HourglassOverride, HrnetOverride};
use crate::pipelines::data::spm::{SpmBatch, SpmDataset};
use crate::pipelines::model::LoadedModel;

/// The SPM network of a config: `preset` with its backbone replaced by `[model.hrnet]` or
/// `[model.hourglass]` when given. The data's layout must be the preset's.
pub fn build_spm(
    preset: &'static Preset,
    layout: &KeypointLayout,
    hrnet: &Option<HrnetOverride>,
    hourglass: &Option<HourglassOverride>,
    vs: &nn::VarStore,
) -> crate::Result<Box<dyn PoseNetwork>> {
    if layout.name != preset.layout {
        bail!(
            "model.preset `{}` predicts the {} layout ({} joints; its hierarchy of displacements \
             and its COCO test follow those joints), but the data's layout is `{}` ({} joints): \
             set [bottomup] layout = \"{}\" and give annotations in that order",
            preset.name,
            preset.layout,
            preset.num_joints,
            layout.name,
            layout.num_keypoints(),
            preset.layout
        );
    }
    let mut cfg = SpmNetConfig::preset(preset.name)?;
    let k = cfg.num_joints;
    match (&mut cfg.backbone, hrnet, hourglass) {
        (_, Some(_), Some(_)) => bail!("model.hrnet and model.hourglass exclude each other"),
        (SpmBackboneConfig::Hrnet(b), Some(h), None) => {
            *b = HrnetConfig::uniform(h.width, h.modules, h.blocks, k);
        }
        (SpmBackboneConfig::Hourglass(b), None, Some(h)) => {
            // Newell's hourglass in MMPose's terms: `depth` halvings, `num_feats` channels and
            // `num_blocks` residual blocks at every level, a max-pool stem of `stem_planes`.
            let levels = h.depth + 1;
            *b = HourglassNetConfig {
                downsample_times: h.depth,
                num_stacks: h.num_stacks,
                stage_channels: vec![h.num_feats; levels],
                stage_blocks: vec![h.num_blocks; levels],
                feat_channel: h.num_feats,
                stem_channels: h.stem_planes,
                downsample: HourglassDownsample::MaxPool,
            };
        }
        (_, None, None) => {}
        (_, Some(_), None) => bail!(
            "model.hrnet resizes an HRNet backbone, but `{}` is SPM on a stacked hourglass \
             (use [model.hourglass])",
            preset.name
        ),
        (_, None, Some(_)) => bail!(
            "model.hourglass resizes a stacked hourglass, but `{}` is SPM on HRNet (use \
             [model.hrnet])",
            preset.name
        ),
    }
    Ok(Box::new(Spm::new(&vs.root(), &cfg)?))
}

/// SPM training: its dataset, the paper's loss, the bottom-up COCO test.
pub struct SpmTask {
    cfg: ExperimentConfig,
    train_set: Arc<SpmDataset>,
    loss: SpmLoss,
}

impl SpmTask {
    pub fn new(cfg: &ExperimentConfig) -> crate::Result<Self> {
        let Some(bu) = &cfg.bottomup else {
            bail!("the config has no [bottomup] section");
        };
        let (base, ann) = bottomup_train_dataset(cfg)?;
        let spm = bu.spm.clone().unwrap_or_default();
        let loss = SpmLoss::new(spm.loss())?;
        let ds = SpmDataset::new(base, spm).with_context(|| format!("{}", ann.display()))?;
        Ok(Self {
            cfg: cfg.clone(),
            train_set: Arc::new(ds),
            loss,
        })
    }

    /// Images of the annotation file without any annotation (left out, as HigherHRNet does).
    pub fn unannotated_images(&self) -> usize {
        self.train_set.base().unannotated_images
    }
}

/// The tensors of an SPM batch.
pub struct SpmTensors {
    pub input: Tensor,
    pub root: Tensor,
    pub mask: Tensor,
    pub displacements: Tensor,
    pub weights: Tensor,
}

impl SpmTensors {
    pub fn new(batch: &SpmBatch, device: Device) -> Self {
        let (n, k, s, r) = (
            batch.batch_size as i64,
            batch.num_joints as i64,
            batch.input_size as i64,
            batch.size as i64,
        );
        let t = |v: &[f32], shape: &[i64]| Tensor::from_slice(v).view(shape).to_device(device);
        Self {
            input: t(&batch.inputs, &[n, 3, s, s]),
            root: t(&batch.roots, &[n, 1, r, r]),
            mask: t(&batch.masks, &[n, r, r]),
            displacements: t(&batch.displacements, &[n, 2 * k, r, r]),
            weights: t(&batch.weights, &[n, k, r, r]),
        }
    }
}

/// The `(root, displacements)` pairs of SPM's named outputs in stack order: `root` and
/// `displacements` (one output) or `stack{i}.root` / `stack{i}.displacements`.
pub fn spm_outputs(named: Vec<(String, Tensor)>) -> crate::Result<Vec<(Tensor, Tensor)>> {
    let mut roots = Vec::new();
    let mut displacements = Vec::new();
    for (name, t) in named {
        let (stack, head) = match name.split_once('.') {
            Some((s, h)) => (
                s.strip_prefix("stack")
                    .and_then(|i| i.parse::<usize>().ok()),
                h,
            ),
            None => (Some(0), name.as_str()),
        };
        let Some(stack) = stack else {
            bail!("unexpected SPM output `{name}`");
        };
        match head {
            "root" => roots.push((stack, t)),
            "displacements" => displacements.push((stack, t)),
            _ => bail!("unexpected SPM output `{name}`"),
        }
    }
    roots.sort_by_key(|(i, _)| *i);
    displacements.sort_by_key(|(i, _)| *i);
    let same = roots.len() == displacements.len()
        && roots.iter().zip(&displacements).all(|(a, b)| a.0 == b.0);
    if roots.is_empty() || !same {
        bail!("the network's outputs are not SPM's root and displacement pairs");
    }
    Ok(roots
        .into_iter()
        .zip(displacements)
        .map(|((_, r), (_, d))| (r, d))
        .collect())
}

impl SpmTask {
    /// The loss terms of one batch (forward in training mode included).
    pub fn loss_terms(
        &self,
        model: &LoadedModel,
        batch: &SpmBatch,
        device: Device,
    ) -> crate::Result<SpmLossTerms> {
        let t = SpmTensors::new(batch, device);
        let outputs = spm_outputs(model.net.forward_named(&t.input, true)?)?;
        let want = t.displacements.size();
        for (r, d) in &outputs {
            if r.size()[2..] != want[2..] || d.size() != want {
                bail!(
                    "the network outputs displacements {:?} where the targets are {want:?} \
                     (the network's output must be 1/4 of bottomup.input_size, with 2 channels \
                     per joint of the layout)",
                    d.size()
                );
            }
        }
        Ok(self
            .loss
            .forward(&outputs, &t.root, &t.mask, &t.displacements, &t.weights)?)
    }
}

impl TrainingTask for SpmTask {
    type Data = SpmDataset;

    fn dataset(&self) -> &Arc<SpmDataset> {
        &self.train_set
    }

    fn sample_noun(&self) -> &'static str {
        "images"
    }

    fn loss(&self, model: &LoadedModel, batch: &SpmBatch, device: Device) -> crate::Result<Tensor> {
        Ok(self
            .loss_terms(model, batch, device)?
            .total
            .to_kind(Kind::Float))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn zeros(c: i64) -> Tensor {
        Tensor::zeros([1, c, 4, 4], (Kind::Float, Device::Cpu))
    }

    #[test]
    fn outputs_pair_by_stack_and_bad_names_are_errors() {
        let named = vec![
            ("stack1.root".to_string(), zeros(1)),
            ("stack0.root".to_string(), zeros(1)),
            ("stack0.displacements".to_string(), zeros(2)),
            ("stack1.displacements".to_string(), zeros(3)),
        ];
        let pairs = spm_outputs(named).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].1.size()[1], 2, "stack 0 first");
        assert_eq!(pairs[1].1.size()[1], 3);
        let single = spm_outputs(vec![
            ("root".to_string(), zeros(1)),
            ("displacements".to_string(), zeros(2)),
        ])
        .unwrap();
        assert_eq!(single.len(), 1);
        assert!(spm_outputs(vec![("heatmaps".to_string(), zeros(1))]).is_err());
        assert!(spm_outputs(vec![("stack0.root".to_string(), zeros(1))]).is_err());
    }

    #[test]
    fn the_hourglass_override_builds_a_small_two_stack_spm() {
        let preset = Preset::find("spm-hourglass").unwrap();
        let layout = KeypointLayout::builtin("coco17").unwrap();
        let hourglass = Some(HourglassOverride {
            num_stacks: 2,
            num_blocks: 1,
            stem_planes: 8,
            num_feats: 8,
            depth: 2,
        });
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build_spm(preset, &layout, &None, &hourglass, &vs).unwrap();
        let x = Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let pairs = spm_outputs(net.forward_named(&x, false).unwrap()).unwrap();
        assert_eq!(pairs.len(), 2, "one supervised output per stack");
        assert_eq!(pairs[1].0.size(), [1, 1, 16, 16]);
        assert_eq!(pairs[1].1.size(), [1, 34, 16, 16]);
        let hrnet = Some(HrnetOverride {
            width: 4,
            modules: [1, 1, 1],
            blocks: 1,
        });
        let err = build_spm(preset, &layout, &hrnet, &None, &vs)
            .err()
            .unwrap();
        assert!(err.to_string().contains("model.hourglass"), "{err}");
    }
}
