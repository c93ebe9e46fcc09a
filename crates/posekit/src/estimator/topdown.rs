//! Top-down models on pictures: one crop per person box through the shared
//! [`TopDownPredictor`] (the code `posekit test` scores), then HRNet's rescoring and OKS-NMS, as
//! the official test does on detector boxes.

use ndarray::{Array3, ArrayD, IxDyn};
use posekit_core::layout::KeypointLayout;
use posekit_core::nms::{hrnet_rescore, oks_nms, HRNET_IN_VIS_THRESHOLD, HRNET_OKS_THRESHOLD};
use posekit_core::pose::Pose;
use posekit_nn::models::Preset;
use tch::Device;

use super::Estimate;
use crate::error::Result;
use crate::pipelines::data::{DataConfig, TopDownTransform};
use crate::pipelines::model::LoadedModel;
use crate::pipelines::topdown::TopDownPredictor;

/// Crops per forward pass.
const BATCH: usize = 32;

/// One person box in picture pixels, `[x, y, w, h]`, with its detector score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PersonBox {
    pub bbox: [f64; 4],
    pub score: f32,
}

impl PersonBox {
    /// A box with score 1.
    pub fn new(bbox: [f64; 4]) -> Self {
        PersonBox { bbox, score: 1.0 }
    }
}

/// A top-down network with the crop settings it was trained with.
pub struct TopDownEngine {
    pub model: LoadedModel,
    pub data: DataConfig,
    pub transform: TopDownTransform,
    pub layout: KeypointLayout,
    pub flip: bool,
    pub device: Device,
}

impl TopDownEngine {
    pub fn new(model: LoadedModel, data: DataConfig, flip: bool, device: Device) -> Result<Self> {
        let layout = data.keypoint_layout()?;
        let transform = TopDownTransform::new(&data)?;
        Ok(TopDownEngine {
            model,
            data,
            transform,
            layout,
            flip,
            device,
        })
    }

    /// The predictor of prepared crops, shared with `posekit test`.
    pub fn predictor(&self) -> TopDownPredictor<'_> {
        TopDownPredictor {
            net: self.model.net.as_ref(),
            device: self.device,
            codec: self.data.codec(),
            affine_mode: self.data.affine_mode(),
            flip_pairs: self.layout.flip_pairs.clone(),
            flip: self.flip,
        }
    }

    /// The people of each picture in its boxes, crops of all pictures batched together.
    pub(crate) fn predict_many(
        &self,
        images: &[Array3<u8>],
        boxes: &[Vec<PersonBox>],
        keep_maps: bool,
    ) -> Result<Vec<Estimate>> {
        let predictor = self.predictor();
        // Every crop of every picture: (picture, box), in order.
        let jobs: Vec<(usize, &PersonBox)> = boxes
            .iter()
            .enumerate()
            .flat_map(|(i, b)| b.iter().map(move |pb| (i, pb)))
            .collect();
        let mut poses: Vec<Vec<Pose>> = vec![Vec::new(); images.len()];
        let mut areas: Vec<Vec<f64>> = vec![Vec::new(); images.len()];
        let mut maps: Vec<Vec<Array3<f32>>> = vec![Vec::new(); images.len()];
        for chunk in jobs.chunks(BATCH) {
            let mut inputs = Vec::new();
            let mut crops = Vec::with_capacity(chunk.len());
            for &(i, b) in chunk {
                let (input, meta) = self.transform.prepare_crop(&images[i], b.bbox)?;
                inputs.extend_from_slice(&input);
                crops.push(meta.center_scale());
                areas[i].push(meta.area);
            }
            let predictions = predictor.predict(&inputs, &crops)?;
            for (pred, &(i, b)) in predictions.into_iter().zip(chunk) {
                // HRNet's test score: box score x mean of the confident joints' maxima.
                let score = hrnet_rescore(b.score, &pred.keypoints, HRNET_IN_VIS_THRESHOLD);
                poses[i].push(Pose::new(pred.keypoints, score));
                if keep_maps {
                    maps[i].push(pred.heatmaps);
                }
            }
        }
        let mut out = Vec::with_capacity(images.len());
        for (i, picture_boxes) in boxes.iter().enumerate() {
            let keep = self.oks_nms(&poses[i], &areas[i])?;
            let mut estimate = Estimate::default();
            for &j in &keep {
                estimate.poses.push(poses[i][j].clone());
                estimate.boxes.push(picture_boxes[j].bbox);
                estimate.crops.push(j);
            }
            if keep_maps && !keep.is_empty() {
                let (k, h, w) = maps[i][keep[0]].dim();
                let mut stacked = Vec::with_capacity(keep.len() * k * h * w);
                for &j in &keep {
                    stacked.extend(maps[i][j].iter().copied());
                }
                let arr = ArrayD::from_shape_vec(IxDyn(&[keep.len(), k, h, w]), stacked)?;
                estimate.maps.push(("heatmaps".to_string(), arr));
            }
            out.push(estimate);
        }
        Ok(out)
    }

    /// Overlapping detector boxes of one person give near-identical poses; HRNet's OKS-NMS
    /// keeps the best. Layouts without OKS sigmas (MPII) keep every pose.
    fn oks_nms(&self, poses: &[Pose], areas: &[f64]) -> Result<Vec<usize>> {
        match &self.layout.sigmas {
            Some(sigmas) if poses.len() > 1 => {
                let keep = oks_nms(poses, areas, HRNET_OKS_THRESHOLD, sigmas, None)?;
                Ok(if keep.is_empty() {
                    (0..poses.len()).collect()
                } else {
                    keep
                })
            }
            _ => Ok((0..poses.len()).collect()),
        }
    }
}

/// The official HRNet COCO data settings at the preset's default input size, heatmaps at a
/// quarter of it: what the published checkpoints of these presets were trained with.
pub(crate) fn preset_data_config(preset: &Preset) -> DataConfig {
    let (h, w) = preset.default_input_size();
    let (h, w) = (h as usize, w as usize);
    let mut data = DataConfig::new([w, h], [w / 4, h / 4]);
    data.layout = preset.layout.to_string();
    data
}
