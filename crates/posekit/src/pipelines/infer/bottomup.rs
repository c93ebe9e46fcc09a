//! Bottom-up networks that need the user's weights: HigherHRNet (associative embedding),
//! SPM (root + displacements) and the original OpenPose on VGG-19 (part affinity fields).
//!
//! Each follows its reference test pipeline; the submodules hold the geometry and decoding of
//! one family, this module what they share: the loaded network, the input size, tensors in and
//! maps out, and the [`BottomUpPredictor`] that `posekit test`'s bottom-up scoring takes.
//!
//! * [`higher_hrnet`]: the official single-scale test (`resize_align_multi_scale`, flip test,
//!   heatmaps averaged over the 1/4 and 1/2 heads at the input resolution, AE grouping);
//! * [`spm`]: the image letterboxed into a square, root peaks and hierarchical displacements;
//! * [`openpose_vgg`]: CMU's demo preprocessing (BGR, `/256 - 0.5`, height 368, padded with
//!   128 to a multiple of 8), maps resized to the image, CMU's PAF grouping.

pub mod higher_hrnet;
pub mod openpose_vgg;
pub mod spm;

use anyhow::{bail, Context};
use ndarray::{Array3, ArrayD};
use posekit_core::layout::KeypointLayout;
use posekit_core::pose::Pose;
use posekit_nn::models::openpose_mobilenet::cmu18_to_coco17;
use posekit_nn::models::Preset;
use tch::{Device, Kind, Tensor};

use crate::pipelines::bottomup_test::BottomUpPredictor;
use crate::pipelines::data::config::{IMAGENET_MEAN, IMAGENET_STD};
use crate::pipelines::model::LoadedModel;

/// Which reference pipeline a bottom-up preset runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BottomUpFamily {
    HigherHrnet,
    Spm,
    OpenPoseVgg,
}

impl BottomUpFamily {
    /// The family of a bottom-up preset; `None` for presets this module does not run.
    pub fn of_preset(name: &str) -> Option<Self> {
        match name {
            "higherhrnet-w32" | "higherhrnet-w48" => Some(Self::HigherHrnet),
            "spm-hourglass" | "spm-hrnet-w32" => Some(Self::Spm),
            "openpose-vgg19" => Some(Self::OpenPoseVgg),
            _ => None,
        }
    }

    /// Inputs must be multiples of this: HigherHRNet's long side is rounded to 64 by its own
    /// resize; SPM's backbones need 64 (hourglass) or 32 (HRNet) and 64 covers both; OpenPose
    /// pads to its stride itself, so any size of at least one stride works.
    pub fn size_multiple(self) -> usize {
        match self {
            Self::HigherHrnet | Self::Spm => 64,
            Self::OpenPoseVgg => 8,
        }
    }

    /// The reference input size: HigherHRNet's short side (the preset's), SPM's square side,
    /// OpenPose's `boxsize` (the height the picture is scaled to).
    pub fn default_input_size(self, preset: &Preset) -> usize {
        match self {
            Self::OpenPoseVgg => openpose_vgg::BOX_SIZE,
            _ => preset.default_input_size().0 as usize,
        }
    }
}

/// A bottom-up network with the pre- and post-processing of its reference test.
pub struct BottomUpNet {
    pub model: LoadedModel,
    pub family: BottomUpFamily,
    /// See [`BottomUpFamily::default_input_size`].
    pub input_size: usize,
    /// HigherHRNet's flip test (its official test runs it); the other two have none.
    pub flip: bool,
    pub device: Device,
    /// COCO-17 (the flip pairs of HigherHRNet's flip test, SPM's hierarchy).
    coco: KeypointLayout,
}

/// People of one picture in the model's own layout (CMU-18 for OpenPose, else COCO-17), in
/// image pixels, with the raw outputs for `--heatmaps`.
pub struct BottomUpOutput {
    pub poses: Vec<Pose>,
    pub maps: Vec<(String, ArrayD<f32>)>,
}

impl BottomUpNet {
    /// `input_size` `None` is the reference size; a size is checked against the family's
    /// multiple so that a bad `--input-size` fails before the first picture.
    pub fn new(
        model: LoadedModel,
        input_size: Option<usize>,
        flip: bool,
        device: Device,
    ) -> anyhow::Result<Self> {
        let name = model.preset.name;
        let Some(family) = BottomUpFamily::of_preset(name) else {
            bail!("{name} is not a bottom-up model `posekit infer` can run");
        };
        let input_size = input_size.unwrap_or_else(|| family.default_input_size(model.preset));
        let multiple = family.size_multiple();
        if input_size == 0 || !input_size.is_multiple_of(multiple) {
            bail!("--input-size {input_size}: {name} needs a positive multiple of {multiple}");
        }
        let coco =
            KeypointLayout::builtin("coco17").context("the built-in coco17 layout is missing")?;
        Ok(BottomUpNet {
            model,
            family,
            input_size,
            flip,
            device,
            coco,
        })
    }

    /// The layout the poses are drawn in (see [`BottomUpOutput`]).
    pub fn layout(&self) -> anyhow::Result<KeypointLayout> {
        match self.family {
            BottomUpFamily::OpenPoseVgg => openpose_vgg::drawing_layout(),
            _ => Ok(self.coco.clone()),
        }
    }

    /// A pose as written to results: COCO-17.
    pub fn result_pose(&self, pose: &Pose) -> Pose {
        match self.family {
            BottomUpFamily::OpenPoseVgg => cmu18_to_coco17(pose),
            _ => pose.clone(),
        }
    }

    /// Joints drawn by default. HigherHRNet's refinement fills every joint of a person, also
    /// the invisible ones, with their (low) heatmap value: its detection threshold 0.1 keeps
    /// those off the picture. SPM gives every joint its root's score and OpenPose reports only
    /// joints it found, so all of theirs are drawn.
    pub fn default_min_score(&self) -> f32 {
        match self.family {
            BottomUpFamily::HigherHrnet => 0.1,
            _ => 0.0,
        }
    }

    /// People in `image` (`[H, W, 3]` RGB).
    pub fn predict(&self, image: &Array3<u8>, keep_maps: bool) -> anyhow::Result<BottomUpOutput> {
        let (h, w, _) = image.dim();
        if h == 0 || w == 0 {
            bail!("the picture is empty ({w}x{h})");
        }
        match self.family {
            BottomUpFamily::HigherHrnet => higher_hrnet::predict(self, image, keep_maps),
            BottomUpFamily::Spm => spm::predict(self, image, keep_maps),
            BottomUpFamily::OpenPoseVgg => openpose_vgg::predict(self, image, keep_maps),
        }
    }

    /// The network's named outputs for one `[1, 3, H, W]` input given as `[3, H, W]` values.
    fn forward(&self, chw: &Array3<f32>) -> anyhow::Result<Vec<(String, Tensor)>> {
        let (c, h, w) = chw.dim();
        let data = chw.as_standard_layout();
        let slice = data.as_slice().context("input is not contiguous")?;
        let x = Tensor::from_slice(slice)
            .view([1, c as i64, h as i64, w as i64])
            .to_device(self.device);
        let outputs = tch::no_grad(|| self.model.net.forward_named(&x, false))
            .with_context(|| format!("running {} on a {w}x{h} input", self.model.preset.name))?;
        Ok(outputs)
    }

    /// [`Self::forward`] on the mirrored input, outputs mirrored back (channels unchanged).
    fn forward_flipped(&self, chw: &Array3<f32>) -> anyhow::Result<Vec<(String, Tensor)>> {
        let mut mirrored = chw.clone();
        mirrored.invert_axis(ndarray::Axis(2));
        Ok(self
            .forward(&mirrored)?
            .into_iter()
            .map(|(name, t)| (name, t.flip([3])))
            .collect())
    }
}

impl BottomUpPredictor for BottomUpNet {
    /// The reference pipeline's people in COCO-17 with its person score.
    fn predict_coco17(&self, image_rgb: &Array3<u8>) -> anyhow::Result<Vec<Pose>> {
        Ok(self
            .predict(image_rgb, false)?
            .poses
            .iter()
            .map(|p| self.result_pose(p))
            .collect())
    }
}

/// `[H, W, 3]` RGB as `[3, H, W]` with torchvision's ImageNet normalisation (RGB order).
fn imagenet_chw(image: &Array3<u8>) -> Array3<f32> {
    let (h, w, _) = image.dim();
    Array3::from_shape_fn((3, h, w), |(c, y, x)| {
        (image[[y, x, c]] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
    })
}

/// The output named `name`, or the last one whose name ends in `.{name}` (the last stage or
/// stack, the prediction).
fn output<'a>(outputs: &'a [(String, Tensor)], name: &str) -> anyhow::Result<&'a Tensor> {
    let suffix = format!(".{name}");
    outputs
        .iter()
        .rev()
        .find(|(n, _)| n == name || n.ends_with(&suffix))
        .map(|(_, t)| t)
        .with_context(|| {
            let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
            format!(
                "the network has no `{name}` output (it has {})",
                names.join(", ")
            )
        })
}

/// A `[1, C, H, W]` output as `[C, H, W]` f32 on the CPU; non-finite values (weights that
/// overflow) are an error rather than a decoder fed NaN.
fn to_chw(t: &Tensor, what: &str) -> anyhow::Result<Array3<f32>> {
    let size = t.size();
    if size.len() != 4 || size[0] != 1 {
        bail!("the network's {what} have shape {size:?}, expected [1, C, H, W]");
    }
    let (c, h, w) = (size[1] as usize, size[2] as usize, size[3] as usize);
    let flat = t
        .to_kind(Kind::Float)
        .to_device(Device::Cpu)
        .contiguous()
        .view([-1]);
    let values = Vec::<f32>::try_from(&flat).with_context(|| format!("reading the {what}"))?;
    if values.iter().any(|v| !v.is_finite()) {
        bail!("the network's {what} hold NaN or infinity: are the weights those of this model?");
    }
    Ok(Array3::from_shape_vec((c, h, w), values)?)
}
