//! `posekit browse` for OpenPose's training data: the crop with its CMU-18 people, the joint
//! heatmaps (background left out) with the ignore mask, and the part affinity fields in colour
//! (hue: the direction of the field, brightness: its length, the strongest limb of each cell),
//! and as tensors exactly what the loss reads (input, heatmaps with the background, PAFs,
//! mask).

use ndarray::{Array3, Axis};

use super::browse::{
    draw_joints, heatmap_overlay, people_to_poses, Browsable, BrowseSplit, NamedTensor, TensorData,
};
use super::config::ExperimentConfig;
use super::data::paf::{PafDataset, PafSample};
use super::data::{DataError, LoadMode};
use super::train::paf_task::paf_dataset;
use crate::error::bail;

pub struct PafBrowse {
    data: PafDataset,
}

impl PafBrowse {
    pub fn new(cfg: &ExperimentConfig, split: BrowseSplit) -> crate::Result<Self> {
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
        Ok(Self {
            data: paf_dataset(cfg, &ann, &images)?,
        })
    }
}

/// HSV (hue in turns, saturation 1) to RGB.
fn hue_rgb(hue: f32, value: f32) -> [f32; 3] {
    let h = hue.rem_euclid(1.0) * 6.0;
    let x = 1.0 - (h % 2.0 - 1.0).abs();
    let (r, g, b) = match h as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    [r * value * 255.0, g * value * 255.0, b * value * 255.0]
}

/// The PAFs (`[2L, r, r']`, x and y on consecutive channel pairs as the shipped order keeps
/// them) over a dimmed `input`: each cell coloured by the direction of its longest vector.
pub fn paf_overlay(input: &Array3<u8>, pafs: &Array3<f32>) -> Array3<u8> {
    let (h, w, _) = input.dim();
    let (c, mh, mw) = pafs.dim();
    let mut out = input.mapv(|v| (v as f32 * 0.35) as u8);
    if mh == 0 || mw == 0 {
        return out;
    }
    for y in 0..h {
        let my = (y * mh / h).min(mh - 1);
        for x in 0..w {
            let mx = (x * mw / w).min(mw - 1);
            let (mut best, mut angle) = (0.0f32, 0.0f32);
            for l in 0..c / 2 {
                let (vx, vy) = (pafs[[2 * l, my, mx]], pafs[[2 * l + 1, my, mx]]);
                let len = (vx * vx + vy * vy).sqrt();
                if len > best {
                    best = len;
                    angle = vy.atan2(vx);
                }
            }
            if best > 0.0 {
                let rgb = hue_rgb(angle / std::f32::consts::TAU, best.min(1.0));
                for (ch, v) in rgb.iter().enumerate() {
                    let base = out[[y, x, ch]] as f32;
                    out[[y, x, ch]] = (0.3 * base + 0.7 * v).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    out
}

impl Browsable for PafBrowse {
    type Sample = PafSample;

    fn sample_count(&self) -> usize {
        self.data.len()
    }

    fn sample(&self, index: usize, seed: Option<u64>) -> Result<PafSample, DataError> {
        match seed {
            Some(seed) => self.data.load(index, LoadMode::Train { seed, epoch: 0 }),
            None => self.data.load(index, LoadMode::Eval),
        }
    }

    /// The image id, and the main person's index in person framing.
    fn name(&self, s: &PafSample) -> String {
        match s.person {
            Some(p) => format!("{}_{p}", s.image_id),
            None => s.image_id.to_string(),
        }
    }

    fn pictures(&self, s: &PafSample) -> crate::Result<Vec<(String, Array3<u8>)>> {
        let [w, h] = self.data.crop_size();
        let Some(input) = self.data.input_style().to_rgb(&s.input, w, h) else {
            bail!("an input of {} values is not [3, {h}, {w}]", s.input.len());
        };
        let mut drawn = input.clone();
        draw_joints(
            &mut drawn,
            &people_to_poses(s.people.view()),
            self.data.layout(),
        );
        let k = s.heatmaps.len_of(Axis(0)) - 1;
        let joints = s.heatmaps.slice(ndarray::s![..k, .., ..]);
        Ok(vec![
            ("input".to_string(), drawn),
            (
                "heatmaps".to_string(),
                heatmap_overlay(&input, joints, Some(s.mask.view())),
            ),
            ("pafs".to_string(), paf_overlay(&input, &s.pafs)),
        ])
    }

    fn tensors(&self, s: &PafSample) -> Vec<NamedTensor> {
        let [w, h] = self.data.crop_size();
        let f = |name: &str, shape: &[usize], data: Vec<f32>| NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: TensorData::F32(data),
        };
        vec![
            f("input", &[3, h, w], s.input.clone()),
            f(
                "heatmaps",
                s.heatmaps.shape(),
                s.heatmaps.iter().copied().collect(),
            ),
            f("pafs", s.pafs.shape(), s.pafs.iter().copied().collect()),
            f("mask", s.mask.shape(), s.mask.iter().copied().collect()),
        ]
    }
}
