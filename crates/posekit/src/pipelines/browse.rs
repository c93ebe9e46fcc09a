//! `posekit browse`: what the network and the loss will see, before anyone spends GPU days on
//! it. The equivalent of MMPose's `tools/misc/browse_dataset.py`: the first samples of a split
//! made by the training pipeline (with its random augmentation of epoch 0, or with every random
//! part at identity), drawn as pictures, and optionally written as the exact tensors the loss
//! reads.
//!
//! Each family's data says how it is drawn and what its loss reads through one trait,
//! [`Browsable`]: top-down crops (the crop with its joints, the heatmap targets) and
//! HigherHRNet's whole images (the input with every person, per output resolution the heatmaps
//! with the ignore mask over them), OpenPose's crops with their heatmaps and part affinity
//! fields (`super::paf_browse`) and SPM's root map and displacements ([`super::spm_browse`]);
//! the command, the file names, the picture helpers and the tensor files are shared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{bail, ResultExt};
use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis};
use posekit_core::draw::{draw_poses, DrawStyle};
use posekit_core::formats::coco::CocoKeypointsGt;
use posekit_core::layout::KeypointLayout;
use posekit_core::pose::{Keypoint, Pose};
use posekit_nn::weights::{write_safetensors, DType, RawTensor};

use super::config::{DatasetFormat, ExperimentConfig};
use super::data::bottomup::BottomUpSample;
use super::data::{
    Augmentation, BottomUpDataset, CocoSplit, DataError, LoadMode, TopDownDataset, TopDownSample,
};
use super::image_io::write_rgb;
use super::train::task::{bottomup_dataset, topdown_train_dataset};

/// Which annotation file the samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowseSplit {
    /// `dataset.train_*`, through the training pipeline.
    Train,
    /// `dataset.val_*`, through the same training pipeline (ground-truth people).
    Val,
}

/// What `posekit browse` writes.
#[derive(Debug, Clone)]
pub struct BrowseOptions {
    pub split: BrowseSplit,
    /// How many samples, the first ones in the dataset's order.
    pub count: usize,
    /// `true`: the training augmentation as epoch 0 of a run with the config's seed draws it;
    /// `false`: the training transform with scale 1, no rotation, translation or flip.
    pub augment: bool,
    /// Also write one safetensors file per sample with the tensors the loss reads.
    pub tensors: bool,
    pub out_dir: PathBuf,
}

/// One browsed sample and the files written for it.
#[derive(Debug, Clone)]
pub struct BrowsedSample {
    /// The file stem: the COCO image id (bottom-up), image id and annotation id (top-down).
    pub name: String,
    pub files: Vec<PathBuf>,
}

/// What a browse wrote and what it left out.
#[derive(Debug, Clone)]
pub struct BrowseSummary {
    /// "top-down" or "bottom-up".
    pub paradigm: &'static str,
    /// Samples in the split.
    pub available: usize,
    pub samples: Vec<BrowsedSample>,
    /// Samples whose image is missing or unreadable (skipped as training skips them), with
    /// the reason.
    pub skipped: Vec<String>,
}

/// One tensor as the loss reads it for one sample (the batch axis left out).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A family's training data, seen from `posekit browse`: how its samples are made, named,
/// drawn and handed to the loss. One implementation per family of training data.
pub trait Browsable {
    type Sample;

    /// Samples in the split.
    fn sample_count(&self) -> usize;

    /// Sample `index`: with the training augmentation of epoch 0 of a run seeded `seed`, or
    /// (`seed` `None`) with every random part of it at identity.
    fn sample(&self, index: usize, seed: Option<u64>) -> Result<Self::Sample, DataError>;

    /// The file stem of a sample (unique within the split).
    fn name(&self, sample: &Self::Sample) -> String;

    /// `(suffix, picture)` pairs: `NAME_SUFFIX.png` for each.
    fn pictures(&self, sample: &Self::Sample) -> crate::Result<Vec<(String, Array3<u8>)>>;

    /// Exactly the tensors the loss reads for this sample.
    fn tensors(&self, sample: &Self::Sample) -> Vec<NamedTensor>;
}

/// Browses the config's split: top-down or bottom-up by the config's `[bottomup]` section.
pub fn browse(cfg: &ExperimentConfig, opts: &BrowseOptions) -> crate::Result<BrowseSummary> {
    let family = posekit_nn::models::Preset::find(&cfg.model.preset)?.family;
    if family == posekit_nn::models::Family::StructuredPose {
        let data = super::spm_browse::SpmBrowse::new(cfg, opts.split)?;
        browse_with(&data, "bottom-up (SPM)", cfg.train.seed, opts)
    } else if matches!(family, posekit_nn::models::Family::PartAffinity(_)) {
        let data = super::paf_browse::PafBrowse::new(cfg, opts.split)?;
        browse_with(&data, "bottom-up (OpenPose)", cfg.train.seed, opts)
    } else if cfg.bottomup.is_some() {
        let data = BottomUpBrowse::new(cfg, opts.split)?;
        browse_with(&data, "bottom-up", cfg.train.seed, opts)
    } else {
        let data = TopDownBrowse::new(cfg, opts.split)?;
        browse_with(&data, "top-down", cfg.train.seed, opts)
    }
}

/// The shared part: the first `opts.count` samples, their pictures and tensor files.
pub fn browse_with<B: Browsable>(
    data: &B,
    paradigm: &'static str,
    seed: u64,
    opts: &BrowseOptions,
) -> crate::Result<BrowseSummary> {
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(|e| crate::Error::io(&opts.out_dir, "cannot create the output folder", e))?;
    let mut summary = BrowseSummary {
        paradigm,
        available: data.sample_count(),
        samples: Vec::new(),
        skipped: Vec::new(),
    };
    let seed = opts.augment.then_some(seed);
    for index in 0..data.sample_count() {
        if summary.samples.len() >= opts.count {
            break;
        }
        let sample = match data.sample(index, seed) {
            Ok(s) => s,
            Err(e) if e.is_unreadable_image() => {
                summary.skipped.push(e.to_string());
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("making sample {index}")),
        };
        let name = data.name(&sample);
        let mut files = Vec::new();
        for (suffix, picture) in data.pictures(&sample)? {
            let path = opts.out_dir.join(format!("{name}_{suffix}.png"));
            write_rgb(&path, &picture)?;
            files.push(path);
        }
        if opts.tensors {
            let path = opts.out_dir.join(format!("{name}.safetensors"));
            write_tensors(&path, &data.tensors(&sample))?;
            files.push(path);
        }
        summary.samples.push(BrowsedSample { name, files });
    }
    Ok(summary)
}

/// One line per sample and the skipped images, as the CLI prints them.
pub fn browse_report_text(summary: &BrowseSummary, out_dir: &Path) -> String {
    let mut text = String::new();
    for s in &summary.samples {
        let names: Vec<String> = s
            .files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        text += &format!("{}: {}\n", s.name, names.join(", "));
    }
    for s in &summary.skipped {
        text += &format!("skipped: {s}\n");
    }
    text += &format!(
        "{} of {} {} samples written to {}",
        summary.samples.len(),
        summary.available,
        summary.paradigm,
        out_dir.display()
    );
    if !summary.skipped.is_empty() {
        text += &format!(" ({} unreadable images skipped)", summary.skipped.len());
    }
    text
}

/// Writes `tensors` as one safetensors file (F32 and I64, little-endian), through the
/// workspace's safetensors writer.
pub fn write_tensors(path: &Path, tensors: &[NamedTensor]) -> crate::Result<()> {
    let raw = tensors
        .iter()
        .map(|t| {
            let (dtype, data) = match &t.data {
                TensorData::F32(v) => {
                    (DType::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
                TensorData::I64(v) => {
                    (DType::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
            };
            RawTensor::new(dtype, t.shape.clone(), data)
                .map(|r| (t.name.as_str(), r))
                .map_err(|m| crate::error::invalid!("{}: tensor {}: {m}", path.display(), t.name))
        })
        .collect::<crate::Result<Vec<_>>>()?;
    write_safetensors(path, raw.iter().map(|(n, r)| (*n, r)))?;
    Ok(())
}

/// Top-down training data: person crops and their heatmap targets.
pub struct TopDownBrowse {
    data: TopDownDataset,
    /// COCO annotation ids by position in the file; `None` for MPII (whose image id already
    /// names one person).
    annotation_ids: Option<Vec<i64>>,
}

impl TopDownBrowse {
    pub fn new(cfg: &ExperimentConfig, split: BrowseSplit) -> crate::Result<Self> {
        let d = &cfg.dataset;
        let (data, ann) = match split {
            BrowseSplit::Train => {
                let Some(ann) = &d.train_annotations else {
                    bail!("dataset.train_annotations is needed to browse the train split");
                };
                (topdown_train_dataset(cfg)?, ann.clone())
            }
            BrowseSplit::Val => {
                let ds = match d.format {
                    DatasetFormat::Coco => TopDownDataset::coco(
                        &d.val_annotations,
                        &d.val_images,
                        &cfg.data,
                        CocoSplit::GtBoxes,
                    )?,
                    DatasetFormat::Mpii => {
                        TopDownDataset::mpii(&d.val_annotations, &d.val_images, &cfg.data, false)?
                    }
                    DatasetFormat::Crowdpose => {
                        bail!("dataset.format: CrowdPose is read by bottom-up configs only for now")
                    }
                };
                (ds, d.val_annotations.clone())
            }
        };
        let annotation_ids = match d.format {
            DatasetFormat::Mpii => None,
            _ => Some(
                CocoKeypointsGt::load(&ann)?
                    .annotations
                    .iter()
                    .map(|a| a.id)
                    .collect(),
            ),
        };
        Ok(Self {
            data,
            annotation_ids,
        })
    }
}

impl Browsable for TopDownBrowse {
    type Sample = TopDownSample;

    fn sample_count(&self) -> usize {
        self.data.len()
    }

    fn sample(&self, index: usize, seed: Option<u64>) -> Result<TopDownSample, DataError> {
        if let Some(seed) = seed {
            return self.data.load(index, LoadMode::Train { seed, epoch: 0 });
        }
        let Some(instance) = self.data.instance(index) else {
            return self.data.load(index, LoadMode::Eval);
        };
        let image = super::data::read_rgb_checked(&instance.image_path)?;
        let identity = Augmentation {
            center: instance.center,
            scale: instance.scale,
            rotation: 0.0,
            flip: false,
            half_body: false,
        };
        self.data
            .transform()
            .make_sample_with(index, instance, &image, &identity)
    }

    fn name(&self, sample: &TopDownSample) -> String {
        let source = self
            .data
            .instance(sample.meta.index)
            .map_or(0, |i| i.source_index);
        match self.annotation_ids.as_ref().and_then(|ids| ids.get(source)) {
            Some(ann) => format!("{}_{ann}", sample.meta.image_id),
            None => format!("{}", sample.meta.image_id),
        }
    }

    fn pictures(&self, s: &TopDownSample) -> crate::Result<Vec<(String, Array3<u8>)>> {
        let cfg = self.data.config();
        let [w, h] = cfg.input_size;
        let input = denormalize(&s.input, w, h, cfg.mean, cfg.std)?;
        let mut drawn = input.clone();
        if let Some(joints) = &s.joints {
            let weights = &s.target_weight;
            let people = joints.clone().insert_axis(Axis(0));
            let mut pose = people_to_poses(people.view());
            for (kp, &wt) in pose[0].keypoints.iter_mut().zip(weights) {
                if wt <= 0.0 {
                    kp.score = 0.0;
                }
            }
            draw_joints(&mut drawn, &pose, self.data.layout());
        }
        let [hw, hh] = cfg.heatmap_size;
        let k = self.data.layout().num_keypoints();
        let maps = ArrayView3::from_shape((k, hh, hw), &s.target)?;
        let heat = heatmap_overlay(&input, maps, None);
        Ok(vec![("input".into(), drawn), ("heatmaps".into(), heat)])
    }

    fn tensors(&self, s: &TopDownSample) -> Vec<NamedTensor> {
        let cfg = self.data.config();
        let [w, h] = cfg.input_size;
        let [hw, hh] = cfg.heatmap_size;
        let k = self.data.layout().num_keypoints();
        vec![
            NamedTensor {
                name: "input".into(),
                shape: vec![3, h, w],
                data: TensorData::F32(s.input.clone()),
            },
            NamedTensor {
                name: "heatmaps".into(),
                shape: vec![k, hh, hw],
                data: TensorData::F32(s.target.clone()),
            },
            // The loss views the weights as `[N, K, 1]`.
            NamedTensor {
                name: "target_weight".into(),
                shape: vec![k, 1],
                data: TensorData::F32(s.target_weight.clone()),
            },
        ]
    }
}

/// HigherHRNet's training data: whole images, heatmaps, masks and joint indices per output
/// resolution.
pub struct BottomUpBrowse {
    data: BottomUpDataset,
}

impl BottomUpBrowse {
    pub fn new(cfg: &ExperimentConfig, split: BrowseSplit) -> crate::Result<Self> {
        Ok(Self {
            data: Self::dataset(cfg, split)?,
        })
    }

    /// The bottom-up dataset of a split (the pictures every bottom-up family's browse starts
    /// from).
    pub fn dataset(cfg: &ExperimentConfig, split: BrowseSplit) -> crate::Result<BottomUpDataset> {
        let d = &cfg.dataset;
        let (ann, images) = match split {
            BrowseSplit::Train => {
                let (Some(ann), Some(images)) = (&d.train_annotations, &d.train_images) else {
                    bail!(
                        "dataset.train_annotations and dataset.train_images are needed to \
                         browse the train split"
                    );
                };
                (ann.clone(), images.clone())
            }
            BrowseSplit::Val => (d.val_annotations.clone(), d.val_images.clone()),
        };
        bottomup_dataset(cfg, &ann, &images)
    }
}

impl Browsable for BottomUpBrowse {
    type Sample = BottomUpSample;

    fn sample_count(&self) -> usize {
        self.data.len()
    }

    fn sample(&self, index: usize, seed: Option<u64>) -> Result<BottomUpSample, DataError> {
        match seed {
            Some(seed) => self.data.load(index, LoadMode::Train { seed, epoch: 0 }),
            // `LoadMode::Eval` is the training transform at `BottomUpAugmentation::IDENTITY`.
            None => self.data.load(index, LoadMode::Eval),
        }
    }

    fn name(&self, sample: &BottomUpSample) -> String {
        sample.image_id.to_string()
    }

    fn pictures(&self, s: &BottomUpSample) -> crate::Result<Vec<(String, Array3<u8>)>> {
        let cfg = self.data.config();
        let side = cfg.input_size;
        let input = denormalize(&s.input, side, side, cfg.mean, cfg.std)?;
        let mut drawn = input.clone();
        draw_joints(
            &mut drawn,
            &people_to_poses(s.people.view()),
            self.data.layout(),
        );
        let mut out = vec![("input".to_string(), drawn)];
        for t in &s.targets {
            let heat = heatmap_overlay(&input, t.heatmaps.view(), Some(t.mask.view()));
            out.push((format!("heatmaps_{}", t.size), heat));
        }
        Ok(out)
    }

    fn tensors(&self, s: &BottomUpSample) -> Vec<NamedTensor> {
        let side = self.data.config().input_size;
        let mut out = vec![NamedTensor {
            name: "input".into(),
            shape: vec![3, side, side],
            data: TensorData::F32(s.input.clone()),
        }];
        for t in &s.targets {
            let r = t.size;
            out.push(NamedTensor {
                name: format!("heatmaps_{r}"),
                shape: t.heatmaps.shape().to_vec(),
                data: TensorData::F32(t.heatmaps.iter().copied().collect()),
            });
            out.push(NamedTensor {
                name: format!("mask_{r}"),
                shape: t.mask.shape().to_vec(),
                data: TensorData::F32(t.mask.iter().copied().collect()),
            });
            out.push(NamedTensor {
                name: format!("joints_{r}"),
                shape: t.joints.shape().to_vec(),
                data: TensorData::I64(t.joints.iter().copied().collect()),
            });
        }
        out
    }
}

/// `[3, h, w]` normalised RGB back to `[h, w, 3]` bytes: `(v * std + mean) * 255`.
pub fn denormalize(
    chw: &[f32],
    w: usize,
    h: usize,
    mean: [f32; 3],
    std: [f32; 3],
) -> crate::Result<Array3<u8>> {
    if chw.len() != 3 * w * h {
        bail!("an input of {} values is not [3, {h}, {w}]", chw.len());
    }
    Ok(Array3::from_shape_fn((h, w, 3), |(y, x, c)| {
        let v = (chw[c * h * w + y * w + x] * std[c] + mean[c]) * 255.0;
        v.round().clamp(0.0, 255.0) as u8
    }))
}

/// `[N, K, 3]` joints `(x, y, v)` as poses, a joint shown when `v > 0`.
pub fn people_to_poses(people: ndarray::ArrayView3<f32>) -> Vec<Pose> {
    people
        .outer_iter()
        .map(|p| {
            Pose::new(
                p.outer_iter()
                    .map(|j| Keypoint::new(j[0], j[1], if j[2] > 0.0 { 1.0 } else { 0.0 }))
                    .collect(),
                1.0,
            )
        })
        .collect()
}

/// Draws joints and limbs small enough for a network input.
pub fn draw_joints(image: &mut Array3<u8>, poses: &[Pose], layout: &KeypointLayout) {
    let style = DrawStyle {
        min_score: 0.5,
        line_width: 1,
        radius: 2,
        ..DrawStyle::default()
    };
    draw_poses(&mut image.view_mut(), poses, layout, &style);
}

/// OpenCV's `COLORMAP_JET` of `v` in `[0, 1]`.
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let channel = |centre: f32| ((1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0) * 255.0) as u8;
    [channel(3.0), channel(2.0), channel(1.0)]
}

/// The maximum over joints of `maps` (`[K, r, r']`), colour-mapped and blended half over
/// `input` (each map cell covering its block of input pixels); where `mask` is 0 (ignored by
/// the loss) the picture is darkened and tinted blue.
pub fn heatmap_overlay(
    input: &Array3<u8>,
    maps: ArrayView3<f32>,
    mask: Option<ArrayView2<f32>>,
) -> Array3<u8> {
    let (h, w, _) = input.dim();
    let (_, mh, mw) = maps.dim();
    let max: Array2<f32> = maps.fold_axis(Axis(0), 0.0f32, |a, &b| a.max(b));
    let mut out = input.clone();
    if mh == 0 || mw == 0 {
        return out;
    }
    for y in 0..h {
        let my = (y * mh / h).min(mh - 1);
        for x in 0..w {
            let mx = (x * mw / w).min(mw - 1);
            let colour = jet(max[[my, mx]]);
            let ignored = mask.is_some_and(|m| m[[my, mx]] <= 0.0);
            for c in 0..3 {
                let base = input[[y, x, c]] as f32;
                let mut v = 0.5 * base + 0.5 * colour[c] as f32;
                if ignored {
                    v = 0.35 * v + if c == 2 { 120.0 } else { 0.0 };
                }
                out[[y, x, c]] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// The tensors of a file written by [`write_tensors`], by name (for checks and tests).
pub fn read_tensors(path: &Path) -> crate::Result<HashMap<String, NamedTensor>> {
    let bytes = std::fs::read(path).map_err(|e| crate::Error::io(path, "cannot read", e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let data = match view.dtype() {
            safetensors::Dtype::F32 => TensorData::F32(
                view.data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            safetensors::Dtype::I64 => TensorData::I64(
                view.data()
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            other => bail!("{}: tensor {name} has dtype {other:?}", path.display()),
        };
        out.insert(
            name.clone(),
            NamedTensor {
                name,
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}
