//! Bottom-up networks (the whole picture in, every person out), each through the test pipeline
//! of the reference its weights come from. The registry row's family picks the pipeline:
//!
//! * [`higher_hrnet`] (associative embedding): the official single-scale test
//!   (`resize_align_multi_scale`, flip test, heatmaps averaged over the 1/4 and 1/2 heads at the
//!   input resolution, AE grouping);
//! * [`spm`] (structured pose representation): the picture letterboxed into a square, root
//!   peaks and hierarchical displacements;
//! * [`openpose_cmu`] (part affinity fields, CMU's models such as OpenPose-VGG19): CMU's demo
//!   preprocessing (BGR, `/256 - 0.5`, height 368, padded with 128 to a multiple of 8), maps
//!   resized to the picture, CMU's grouping;
//! * [`openpose_tfpose`] (part affinity fields, tf-pose-estimation's models such as the shipped
//!   OpenPose-MobileNetV2): BGR 0..255 stretched to the network size, tf-pose's `pafprocess`.
//!
//! This module holds what they share: the loaded network, the input size, tensors in and maps
//! out.
//!
//! Every pipeline runs in three steps: [`BottomUpSteps::prepare`] (the picture made into the
//! network input, on the CPU), [`BottomUpEngine::run_network`] (the network alone) and
//! [`BottomUpSteps::decode`] (maps to people, on the CPU). [`BottomUpEngine::predict`] runs them
//! one after the other; a video pipeline runs them on different threads, so that the network
//! of one frame overlaps the resizing of the next and the grouping of the last
//! ([`crate::pipelines::infer`]). [`BottomUpSteps`] holds no network, so it can go to other
//! threads than the network's.

pub mod higher_hrnet;
pub mod openpose_cmu;
pub mod openpose_tfpose;
pub mod spm;

use ndarray::{Array3, ArrayD};
use posekit_core::layout::KeypointLayout;
use posekit_core::pose::Pose;
use posekit_nn::models::{Family, PafStyle, Preset};
use tch::{Device, Kind, Tensor};

use crate::error::{bail, invalid, Result, ResultExt};
use crate::pipelines::data::config::{IMAGENET_MEAN, IMAGENET_STD};
use crate::pipelines::model::LoadedModel;

/// Which reference test pipeline a bottom-up network runs: the family of its registry row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BottomUpPipeline {
    HigherHrnet,
    Spm,
    OpenPoseCmu,
    OpenPoseTfPose,
}

impl BottomUpPipeline {
    /// The pipeline of a bottom-up family; `None` for top-down families.
    pub fn of_family(family: Family) -> Option<Self> {
        match family {
            Family::AssociativeEmbedding => Some(Self::HigherHrnet),
            Family::StructuredPose => Some(Self::Spm),
            Family::PartAffinity(PafStyle::Cmu) => Some(Self::OpenPoseCmu),
            Family::PartAffinity(PafStyle::TfPose) => Some(Self::OpenPoseTfPose),
            Family::TopDownHeatmap => None,
        }
    }

    /// Input sizes must be multiples of this: HigherHRNet's long side is rounded to 64 by its
    /// own resize; SPM's backbones need 64 (hourglass) or 32 (HRNet) and 64 covers both;
    /// CMU's OpenPose pads to its stride itself; tf-pose needs 16 so that its internal 2x
    /// resize is exact.
    pub fn size_multiple(self) -> usize {
        match self {
            Self::HigherHrnet | Self::Spm => 64,
            Self::OpenPoseCmu => openpose_cmu::STRIDE,
            Self::OpenPoseTfPose => openpose_tfpose::INPUT_MULTIPLE,
        }
    }

    /// The reference input size: HigherHRNet's short side (the preset's), SPM's square side,
    /// CMU's `boxsize` (the height the picture is scaled to), tf-pose's network height.
    pub fn default_input_size(self, preset: &Preset) -> usize {
        match self {
            Self::OpenPoseCmu => openpose_cmu::BOX_SIZE,
            _ => preset.default_input_size().0 as usize,
        }
    }

    /// Whether the reference test has a flip test (HigherHRNet's; the others have none).
    pub fn has_flip_test(self) -> bool {
        self == Self::HigherHrnet
    }

    /// Joints drawn by default. HigherHRNet's refinement fills every joint of a person, also
    /// the invisible ones, with their (low) heatmap value: its detection threshold 0.1 keeps
    /// those off the picture. SPM gives every joint its root's score and OpenPose reports only
    /// joints it found, so all of theirs are drawn.
    pub fn default_min_score(self) -> f32 {
        match self {
            Self::HigherHrnet => 0.1,
            _ => 0.0,
        }
    }
}

/// A bottom-up network with the pre- and post-processing of its reference test.
pub struct BottomUpEngine {
    pub model: LoadedModel,
    pub pipeline: BottomUpPipeline,
    /// See [`BottomUpPipeline::default_input_size`].
    pub input_size: usize,
    /// HigherHRNet's flip test.
    pub flip: bool,
    pub device: Device,
    /// The network's own layout (COCO-17, or CMU-18 for OpenPose): flip pairs of the flip
    /// test, SPM's hierarchy, OpenPose's limbs.
    pub layout: KeypointLayout,
}

/// The CPU side of a [`BottomUpEngine`]: its settings without the network (which stays on
/// the thread that loaded it: libtorch's tensors may move between threads but not be shared).
#[derive(Debug, Clone)]
pub struct BottomUpSteps {
    pub pipeline: BottomUpPipeline,
    pub input_size: usize,
    pub flip: bool,
    pub layout: KeypointLayout,
}

/// One picture made ready for the network ([`BottomUpSteps::prepare`]).
pub struct BottomUpInput {
    /// `[3, H, W]` network input.
    chw: Array3<f32>,
    geometry: Geometry,
    /// The picture's `(height, width)`.
    image_hw: (usize, usize),
}

/// The network's outputs for one picture ([`BottomUpEngine::run_network`]), to decode.
pub struct BottomUpRaw {
    /// The named outputs of the plain pass, then (flip test) of the mirrored one.
    passes: Vec<Vec<(String, Tensor)>>,
    geometry: Geometry,
    image_hw: (usize, usize),
}

impl BottomUpRaw {
    /// The picture's `(height, width)`.
    pub fn image_hw(&self) -> (usize, usize) {
        self.image_hw
    }
}

/// How the picture became the network input, for mapping the people back.
#[derive(Debug, Clone, Copy)]
enum Geometry {
    HigherHrnet(higher_hrnet::ResizeAlign),
    Spm(spm::Letterbox),
    OpenPoseCmu(openpose_cmu::CmuResize),
    /// A plain stretch to the input size.
    OpenPoseTfPose,
}

impl BottomUpSteps {
    /// The picture (`[H, W, 3]` RGB) as the network input of the reference pipeline.
    pub fn prepare(&self, image: &Array3<u8>) -> Result<BottomUpInput> {
        let (h, w, _) = image.dim();
        if h == 0 || w == 0 {
            bail!("the picture is empty ({w}x{h})");
        }
        let (chw, geometry) = match self.pipeline {
            BottomUpPipeline::HigherHrnet => higher_hrnet::prepare(self, image)?,
            BottomUpPipeline::Spm => spm::prepare(self, image)?,
            BottomUpPipeline::OpenPoseCmu => openpose_cmu::prepare(self, image)?,
            BottomUpPipeline::OpenPoseTfPose => openpose_tfpose::prepare(self, image)?,
        };
        Ok(BottomUpInput {
            chw,
            geometry,
            image_hw: (h, w),
        })
    }

    /// The people in the network's outputs, in the network's layout and picture pixels.
    pub fn decode(&self, raw: BottomUpRaw, keep_maps: bool) -> Result<BottomUpOutput> {
        let BottomUpRaw {
            passes,
            geometry,
            image_hw,
        } = raw;
        match geometry {
            Geometry::HigherHrnet(resize) => {
                higher_hrnet::decode(self, &passes, &resize, keep_maps)
            }
            Geometry::Spm(letterbox) => spm::decode(self, &passes, &letterbox, keep_maps),
            Geometry::OpenPoseCmu(resize) => {
                openpose_cmu::decode(&passes, &resize, image_hw, keep_maps)
            }
            Geometry::OpenPoseTfPose => openpose_tfpose::decode(&passes, image_hw, keep_maps),
        }
    }
}

/// The plain pass's outputs (every pipeline has one).
fn first_pass(passes: &[Vec<(String, Tensor)>]) -> Result<&[(String, Tensor)]> {
    passes
        .first()
        .map(Vec::as_slice)
        .ok_or_else(|| invalid!("the network gave no outputs"))
}

/// People of one picture in the network's own layout, in picture pixels, with the raw outputs
/// for `--heatmaps`.
pub struct BottomUpOutput {
    pub poses: Vec<Pose>,
    pub maps: Vec<(String, ArrayD<f32>)>,
}

impl BottomUpEngine {
    /// `input_size` `None` is the reference size; a size is checked against the pipeline's
    /// multiple so that a bad `--input-size` fails before the first picture.
    pub fn new(
        model: LoadedModel,
        input_size: Option<usize>,
        flip: bool,
        device: Device,
    ) -> Result<Self> {
        let preset = model.preset;
        let Some(pipeline) = BottomUpPipeline::of_family(preset.family) else {
            bail!("{} is a top-down model, not a bottom-up one", preset.name);
        };
        if flip && !pipeline.has_flip_test() {
            bail!(
                "{}'s reference test has no flip test; leave the flip test off",
                preset.name
            );
        }
        let input_size = input_size.unwrap_or_else(|| pipeline.default_input_size(preset));
        let multiple = pipeline.size_multiple();
        if input_size == 0 || !input_size.is_multiple_of(multiple) {
            bail!(
                "input size {input_size}: {} needs a positive multiple of {multiple}",
                preset.name
            );
        }
        let layout = KeypointLayout::builtin(preset.layout).ok_or_else(|| {
            invalid!(
                "{}: the registry names layout `{}`, which is not built in",
                preset.name,
                preset.layout
            )
        })?;
        Ok(BottomUpEngine {
            model,
            pipeline,
            input_size,
            flip,
            device,
            layout,
        })
    }

    /// People in `image` (`[H, W, 3]` RGB), in the network's layout: the three steps of the
    /// module documentation, one after the other.
    pub fn predict(&self, image: &Array3<u8>, keep_maps: bool) -> Result<BottomUpOutput> {
        let steps = self.steps();
        let input = steps.prepare(image)?;
        steps.decode(self.run_network(input)?, keep_maps)
    }

    /// The CPU steps before and after the network, for other threads.
    pub fn steps(&self) -> BottomUpSteps {
        BottomUpSteps {
            pipeline: self.pipeline,
            input_size: self.input_size,
            flip: self.flip,
            layout: self.layout.clone(),
        }
    }

    /// The network on a prepared input: one pass, and with the flip test a second on the
    /// mirrored input (its outputs mirrored back).
    pub fn run_network(&self, input: BottomUpInput) -> Result<BottomUpRaw> {
        let mut passes = vec![self.forward(&input.chw)?];
        if self.flip {
            passes.push(self.forward_flipped(&input.chw)?);
        }
        Ok(BottomUpRaw {
            passes,
            geometry: input.geometry,
            image_hw: input.image_hw,
        })
    }

    /// The network's named outputs for one `[1, 3, H, W]` input given as `[3, H, W]` values.
    fn forward(&self, chw: &Array3<f32>) -> Result<Vec<(String, Tensor)>> {
        let (c, h, w) = chw.dim();
        let data = chw.as_standard_layout();
        let slice = data
            .as_slice()
            .ok_or_else(|| invalid!("the network input is not contiguous"))?;
        let x = Tensor::from_slice(slice)
            .view([1, c as i64, h as i64, w as i64])
            .to_device(self.device);
        tch::no_grad(|| self.model.net.forward_named(&x, false))
            .with_context(|| format!("running {} on a {w}x{h} input", self.model.preset.name))
    }

    /// [`Self::forward`] on the mirrored input, outputs mirrored back (channels unchanged).
    fn forward_flipped(&self, chw: &Array3<f32>) -> Result<Vec<(String, Tensor)>> {
        let mut mirrored = chw.clone();
        mirrored.invert_axis(ndarray::Axis(2));
        Ok(self
            .forward(&mirrored)?
            .into_iter()
            .map(|(name, t)| (name, t.flip([3])))
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

/// The output named `name` (a multi-stage network's prediction), or else the last one whose
/// name ends in `.{name}` (the last stage or stack).
fn output<'a>(outputs: &'a [(String, Tensor)], name: &str) -> Result<&'a Tensor> {
    let suffix = format!(".{name}");
    outputs
        .iter()
        .find(|(n, _)| n == name)
        .or_else(|| outputs.iter().rev().find(|(n, _)| n.ends_with(&suffix)))
        .map(|(_, t)| t)
        .ok_or_else(|| {
            let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
            invalid!(
                "the network has no `{name}` output (it has {})",
                names.join(", ")
            )
        })
}

/// A `[1, C, H, W]` output as `[C, H, W]` f32 on the CPU; non-finite values (weights that
/// overflow) are an error rather than a decoder fed NaN.
fn to_chw(t: &Tensor, what: &str) -> Result<Array3<f32>> {
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
