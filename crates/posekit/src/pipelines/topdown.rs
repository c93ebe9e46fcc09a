//! Batched top-down inference: person crops in, poses in image pixels out. Shared by
//! `posekit test` (crops from the dataset loader) and `posekit infer` (crops from
//! [`prepare_crop`](super::data::prepare_crop)), so that a model scores the same in both.
//!
//! The steps are those of the official HRNet `validate()`:
//! 1. run the network on the crops (eval mode, no gradient) and take the last heatmap head
//!    (HRNet has one; Stacked Hourglass predicts with its last stack);
//! 2. with the flip test, run it again on the mirrored crops and merge with the codec's
//!    `merge_flip` (flip back, swap left/right, one-pixel shift for non-UDP codecs, average);
//! 3. decode each instance's heatmaps with the codec's refinement (quarter-pixel shift, or
//!    DARK);
//! 4. map heatmap pixels to image pixels with the inverse of the crop's affine
//!    ([`heatmap_to_image`], the official `transform_preds`).

use crate::error::{bail, ResultExt};
use ndarray::{Array3, ArrayView3};
use posekit_core::codecs::heatmap::HeatmapCodec;
use posekit_core::geometry::affine::{heatmap_to_image, AffineMode};
use posekit_core::geometry::center_scale::CenterScale;
use posekit_core::pose::Keypoint;
use posekit_nn::models::PoseNetwork;
use tch::{Device, Kind, Tensor};

use super::data::flip_input;

/// What is fixed for a whole test run.
pub struct TopDownPredictor<'a> {
    pub net: &'a dyn PoseNetwork,
    pub device: Device,
    pub codec: HeatmapCodec,
    /// Crop convention of the data (standard, or UDP).
    pub affine_mode: AffineMode,
    /// The layout's left/right pairs, for the flip test.
    pub flip_pairs: Vec<[usize; 2]>,
    pub flip: bool,
}

/// The prediction of one crop.
#[derive(Debug, Clone)]
pub struct TopDownPrediction {
    /// Keypoints in image pixels (0-based), each with its heatmap maximum as score.
    pub keypoints: Vec<Keypoint>,
    /// The heatmaps that were decoded (`[K, h, w]`, flip-merged when flipping), for
    /// `infer --heatmaps` and debugging.
    pub heatmaps: Array3<f32>,
}

impl TopDownPredictor<'_> {
    /// Predicts `n` crops given as row-major `[n, 3, H, W]` values with their crop geometry.
    pub fn predict(
        &self,
        inputs: &[f32],
        crops: &[CenterScale],
    ) -> crate::Result<Vec<TopDownPrediction>> {
        let n = crops.len();
        let [w, h] = self.codec.input_size;
        if n == 0 {
            return Ok(Vec::new());
        }
        if inputs.len() != n * 3 * h * w {
            bail!(
                "top-down inference: {} input values for {n} crops of 3x{h}x{w}",
                inputs.len()
            );
        }
        let output = self.heatmaps(inputs, n)?;
        let flipped = if self.flip {
            let mirrored = flip_input(inputs, w)?;
            Some(self.heatmaps(&mirrored, n)?)
        } else {
            None
        };
        let [hw, hh] = self.codec.heatmap_size;
        let k = output.len() / (n * hh * hw);
        let per = k * hh * hw;
        let mut out = Vec::with_capacity(n);
        for (i, cs) in crops.iter().enumerate() {
            let view = ArrayView3::from_shape((k, hh, hw), &output[i * per..(i + 1) * per])?;
            let maps = match &flipped {
                Some(f) => {
                    let fview = ArrayView3::from_shape((k, hh, hw), &f[i * per..(i + 1) * per])?;
                    self.codec.merge_flip(view, fview, &self.flip_pairs)?
                }
                None => view.to_owned(),
            };
            let mut keypoints = self.codec.decode(maps.view())?;
            let to_image = heatmap_to_image(cs, [hw as f64, hh as f64], self.affine_mode)?;
            to_image.apply_keypoints(&mut keypoints);
            out.push(TopDownPrediction {
                keypoints,
                heatmaps: maps,
            });
        }
        Ok(out)
    }

    /// The prediction head's `[n, K, h, w]` heatmaps as f32 values on the CPU.
    fn heatmaps(&self, inputs: &[f32], n: usize) -> crate::Result<Vec<f32>> {
        let [w, h] = self.codec.input_size;
        let [hw, hh] = self.codec.heatmap_size;
        let x = Tensor::from_slice(inputs)
            .view([n as i64, 3, h as i64, w as i64])
            .to_device(self.device);
        let outputs = tch::no_grad(|| self.net.forward_named(&x, false))?;
        let last = prediction_head(&outputs)?;
        let size = last.size();
        if size.len() != 4 || size[0] != n as i64 || size[2] != hh as i64 || size[3] != hw as i64 {
            bail!(
                "the network outputs heatmaps of shape {size:?}, but the config's \
                 data.heatmap_size is {hw}x{hh} (WxH) for {n} crops of {w}x{h}"
            );
        }
        let values = last
            .to_kind(Kind::Float)
            .to_device(Device::Cpu)
            .contiguous()
            .view([-1]);
        Vec::<f32>::try_from(&values).context("reading the network's heatmaps")
    }
}

/// The heatmap outputs of a top-down network: every head whose name ends in `heatmaps`, in
/// the network's order (one for HRNet, one per stack for Hourglass).
pub fn heatmap_heads(outputs: &[(String, Tensor)]) -> Vec<&Tensor> {
    outputs
        .iter()
        .filter(|(name, _)| name.ends_with("heatmaps"))
        .map(|(_, t)| t)
        .collect()
}

/// The head a top-down network predicts with: its last heatmap head.
pub fn prediction_head(outputs: &[(String, Tensor)]) -> crate::Result<&Tensor> {
    heatmap_heads(outputs).pop().ok_or_else(|| {
        let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
        crate::error::invalid!("the network has no heatmap output (its outputs: {names:?})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use posekit_core::Result as CoreResult;

    /// A "network" whose heatmaps have one peak per joint at a known heatmap pixel, mirrored
    /// for mirrored inputs (it reads the input's first pixel to tell which it got).
    struct Peaks {
        k: usize,
        hw: usize,
        hh: usize,
    }

    impl PoseNetwork for Peaks {
        fn forward_named(&self, input: &Tensor, _train: bool) -> CoreResult<Vec<(String, Tensor)>> {
            let n = input.size()[0] as usize;
            let mut v = vec![0f32; n * self.k * self.hh * self.hw];
            for i in 0..n {
                let mirrored = input.double_value(&[i as i64, 0, 0, 0]) < 0.0;
                for j in 0..self.k {
                    let (x, y) = (2 + j, 3 + j);
                    let x = if mirrored { self.hw - 1 - x } else { x };
                    // Mirrored outputs have left/right swapped: joints 1 and 2 are a pair.
                    let jj = if mirrored && j > 0 { 3 - j } else { j };
                    let x = if mirrored && j > 0 {
                        self.hw - 1 - (2 + jj)
                    } else {
                        x
                    };
                    let y = if mirrored && j > 0 { 3 + jj } else { y };
                    let base = ((i * self.k + j) * self.hh + y) * self.hw;
                    v[base + x] = 1.0;
                }
            }
            let t = Tensor::from_slice(&v).view([
                n as i64,
                self.k as i64,
                self.hh as i64,
                self.hw as i64,
            ]);
            Ok(vec![("heatmaps".into(), t)])
        }
    }

    #[test]
    fn decodes_back_to_image_pixels_through_the_crop() {
        let net = Peaks {
            k: 3,
            hw: 12,
            hh: 16,
        };
        let codec = HeatmapCodec::new([48, 64], [12, 16]);
        let p = TopDownPredictor {
            net: &net,
            device: Device::Cpu,
            codec,
            affine_mode: AffineMode::Standard,
            flip_pairs: vec![[1, 2]],
            flip: false,
        };
        // Crop of 96x128 px centred at (100, 200): 8 image px per heatmap px.
        let cs = CenterScale {
            center: [100.0, 200.0],
            scale: [96.0 / 200.0, 128.0 / 200.0],
        };
        let inputs = vec![1.0f32; 3 * 64 * 48];
        let out = p.predict(&inputs, &[cs]).unwrap();
        assert_eq!(out.len(), 1);
        // Joint 0 peaks at heatmap (2, 3): image (100 - 48 + 2 * 8, 200 - 64 + 3 * 8).
        let k0 = out[0].keypoints[0];
        assert!(
            (k0.x - 68.0).abs() < 1e-3 && (k0.y - 160.0).abs() < 1e-3,
            "{k0:?}"
        );
        assert_eq!(k0.score, 1.0);
        assert!(p.predict(&inputs[1..], &[cs]).is_err());
    }

    #[test]
    fn flip_test_merges_mirrored_heatmaps() {
        let net = Peaks {
            k: 3,
            hw: 12,
            hh: 16,
        };
        let codec = HeatmapCodec::new([48, 64], [12, 16]);
        let p = TopDownPredictor {
            net: &net,
            device: Device::Cpu,
            codec: codec.clone(),
            affine_mode: AffineMode::Standard,
            flip_pairs: vec![[1, 2]],
            flip: true,
        };
        let cs = CenterScale {
            center: [100.0, 200.0],
            scale: [96.0 / 200.0, 128.0 / 200.0],
        };
        // Non-negative first value for the normal pass; flip_input mirrors rows so the
        // mirrored pass sees the last value of the row first.
        let mut inputs = vec![1.0f32; 3 * 64 * 48];
        for row in inputs.chunks_exact_mut(48) {
            row[47] = -1.0;
        }
        let out = p.predict(&inputs, &[cs]).unwrap();
        // The merged map of joint 0: half at the peak, half on the flipped-back-and-shifted
        // peak (one pixel right): the maximum stays at x = 2 with value 0.5... and decoding
        // with the quarter shift moves toward the right neighbour.
        let m = &out[0].heatmaps;
        assert!((m[[0, 3, 2]] - 0.5).abs() < 1e-6);
        assert!((m[[0, 3, 3]] - 0.5).abs() < 1e-6);
        assert_eq!(out[0].keypoints[0].score, 0.5);
    }
}
