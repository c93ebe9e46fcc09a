//! The presets a user names on the command line (`hrnet-w32`, `hourglass-8`, ...), what each
//! one is, and one way to build any of them. Pipelines and the CLI go through this table, so a
//! new model is one network file plus one row here.

use posekit_core::{Error, Result};
use tch::{nn, Tensor};

use super::higher_hrnet::{HigherHrnet, HigherHrnetConfig};
use super::hourglass::{HourglassConfig, PoseHourglass};
use super::hrnet::{HrnetConfig, PoseHrnet};
use super::openpose::{OpenPoseVgg, OpenPoseVggConfig};
use super::openpose_mobilenet::{OpenPoseMobileNetConfig, OpenPoseMobileNetV2};
use super::spm::{Spm, SpmNetConfig};
use super::stacked_hourglass::{StackedHourglass, StackedHourglassConfig};
use crate::export::{OnnxGraph, Value};

/// Top-down models see one person crop; bottom-up models see the whole image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paradigm {
    TopDown,
    BottomUp,
}

/// What a network's outputs mean, and so which codec decodes them, which training targets and
/// loss it learns from, and which reference test pipeline runs it. The pipelines choose by
/// family, never by preset name, so a new network of a known family is one network file plus
/// one row of [`PRESETS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// One person's Gaussian heatmaps from a crop (HRNet, Stacked Hourglass): heatmap codec,
    /// JointsMSELoss, the HRNet test (flip, shift or DARK, OKS-NMS).
    TopDownHeatmap,
    /// Heatmaps plus associative-embedding tags at one or more resolutions (HigherHRNet):
    /// masked heatmap MSE and push/pull tag loss, HigherHRNet's test and `HeatmapParser`
    /// grouping.
    AssociativeEmbedding,
    /// Part heatmaps plus part affinity fields over refinement stages (OpenPose), decoded by
    /// the pre-processing and grouping of the reference the weights come from.
    PartAffinity(PafStyle),
    /// A root-joint heatmap plus hierarchical displacements (SPM).
    StructuredPose,
}

/// The two OpenPose references whose weights posekit loads differ in pre-processing and
/// grouping constants; each preset is decoded as its own reference does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PafStyle {
    /// CMU's Caffe models: BGR `/256 - 0.5`, the height scaled to 368, CMU's grouping.
    Cmu,
    /// tf-pose-estimation's models: BGR 0..255 stretched to the network size, tf-pose's
    /// `pafprocess` grouping.
    TfPose,
}

/// The network a preset builds. A config's `[model.hrnet]` section resizes an HRNet (or
/// HigherHRNet's HRNet backbone) and `[model.hourglass]` a Stacked Hourglass of the paper; the
/// pipelines ask the row, never the preset's name, whether an override applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// HRNet with its heatmap head (Sun et al. 2019).
    Hrnet,
    /// HRNet with HigherHRNet's deconvolution head (Cheng et al. 2020).
    HigherHrnet,
    /// Newell et al.'s Stacked Hourglass in bearpaw/pytorch-pose's layout.
    StackedHourglass,
    /// MMPose's CornerNet-style HourglassNet.
    CornerNetHourglass,
    /// OpenPose's VGG-19 CPM.
    OpenPoseVgg,
    /// tf-pose-estimation's MobileNetV2 OpenPose.
    OpenPoseMobileNet,
    /// SPM on an hourglass or HRNet backbone.
    Spm,
}

impl Family {
    pub fn paradigm(self) -> Paradigm {
        match self {
            Family::TopDownHeatmap => Paradigm::TopDown,
            _ => Paradigm::BottomUp,
        }
    }
}

/// A network that maps an input batch to its named output heads (`heatmaps`, `tags`, `pafs`,
/// one entry per stage for multi-stage models). The names are the keys `posekit forward`
/// writes and the pipelines read.
pub trait PoseNetwork {
    fn forward_named(&self, input: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>>;

    /// Folds every BatchNorm that follows a convolution into that convolution's weights and
    /// bias, for inference only: the network then skips one memory pass per layer. Returns
    /// whether anything was folded. After folding, training mode is no longer meaningful.
    fn fold_batchnorm(&mut self) -> Result<bool> {
        Ok(false)
    }

    /// Appends the network to an ONNX graph after `input` (`[N, 3, H, W]`, `input_size` =
    /// `(H, W)`), in inference mode with every BatchNorm that follows a convolution folded, and
    /// returns each head under its [`Self::forward_named`] name, in the same order (see
    /// [`crate::export`]). Networks without an export say so.
    fn export_onnx(
        &self,
        graph: &mut OnnxGraph,
        input: &Value,
        input_size: (i64, i64),
    ) -> Result<Vec<(String, Value)>> {
        let _ = (graph, input, input_size);
        Err(crate::export::unsupported("this network"))
    }

    /// Whether an image's outputs depend on the other images of its batch (BatchNorm on batch
    /// statistics at inference, as in tf-pose's MobileNetV2).
    fn batch_dependent(&self) -> bool {
        false
    }
}

impl PoseNetwork for PoseHrnet {
    fn forward_named(&self, input: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        PoseHrnet::forward_named(self, input, train)
    }

    fn export_onnx(
        &self,
        graph: &mut OnnxGraph,
        input: &Value,
        _input_size: (i64, i64),
    ) -> Result<Vec<(String, Value)>> {
        PoseHrnet::export_onnx(self, graph, input)
    }

    fn fold_batchnorm(&mut self) -> Result<bool> {
        self.fold_batch_norm();
        Ok(true)
    }
}

impl PoseNetwork for PoseHourglass {
    fn forward_named(&self, input: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        PoseHourglass::forward_named(self, input, train)
    }

    fn export_onnx(
        &self,
        graph: &mut OnnxGraph,
        input: &Value,
        _input_size: (i64, i64),
    ) -> Result<Vec<(String, Value)>> {
        PoseHourglass::export_onnx(self, graph, input)
    }
}

impl PoseNetwork for StackedHourglass {
    fn forward_named(&self, input: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        StackedHourglass::forward_named(self, input, train)
    }

    fn export_onnx(
        &self,
        graph: &mut OnnxGraph,
        input: &Value,
        _input_size: (i64, i64),
    ) -> Result<Vec<(String, Value)>> {
        StackedHourglass::export_onnx(self, graph, input)
    }
}

impl PoseNetwork for OpenPoseVgg {
    fn forward_named(&self, input: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        OpenPoseVgg::forward_named(self, input, train)
    }

    fn export_onnx(
        &self,
        graph: &mut OnnxGraph,
        input: &Value,
        _input_size: (i64, i64),
    ) -> Result<Vec<(String, Value)>> {
        OpenPoseVgg::export_onnx(self, graph, input)
    }
}

impl PoseNetwork for Spm {
    fn forward_named(&self, input: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        Spm::forward_named(self, input, train)
    }

    fn export_onnx(
        &self,
        graph: &mut OnnxGraph,
        input: &Value,
        _input_size: (i64, i64),
    ) -> Result<Vec<(String, Value)>> {
        Spm::export_onnx(self, graph, input)
    }
}

impl PoseNetwork for HigherHrnet {
    fn forward_named(&self, input: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        HigherHrnet::forward_named(self, input, train)
    }

    fn export_onnx(
        &self,
        graph: &mut OnnxGraph,
        input: &Value,
        _input_size: (i64, i64),
    ) -> Result<Vec<(String, Value)>> {
        HigherHrnet::export_onnx(self, graph, input)
    }

    fn fold_batchnorm(&mut self) -> Result<bool> {
        self.fold_batch_norm();
        Ok(true)
    }
}

/// One row of the preset table.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    /// The network it builds, which says what a config may change of it.
    pub architecture: Architecture,
    pub family: Family,
    /// The keypoint layout (`posekit_core::KeypointLayout::builtin`) of its outputs.
    pub layout: &'static str,
    pub num_joints: i64,
    /// Input sizes as (height, width); the first is the default.
    pub input_sizes: &'static [(i64, i64)],
    pub summary: &'static str,
    /// Trainable parameters, a property of the architecture: `posekit models` prints it
    /// without building the network (the test below checks it against the built one).
    pub parameters: i64,
    /// Builds the network under a path whose variable names are then the checkpoint's keys.
    pub builder: fn(&nn::Path) -> Result<Box<dyn PoseNetwork>>,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "hrnet-w32",
        architecture: Architecture::Hrnet,
        family: Family::TopDownHeatmap,
        layout: "coco17",
        num_joints: 17,
        input_sizes: &[(256, 192), (384, 288)],
        summary: "HRNet-W32, COCO (Sun et al. 2019)",
        parameters: 28_536_113,
        builder: |p| Ok(Box::new(PoseHrnet::new(p, &HrnetConfig::w32())?)),
    },
    Preset {
        name: "hrnet-w48",
        architecture: Architecture::Hrnet,
        family: Family::TopDownHeatmap,
        layout: "coco17",
        num_joints: 17,
        input_sizes: &[(256, 192), (384, 288)],
        summary: "HRNet-W48, COCO",
        parameters: 63_595_745,
        builder: |p| Ok(Box::new(PoseHrnet::new(p, &HrnetConfig::w48())?)),
    },
    Preset {
        name: "hrnet-w32-mpii",
        architecture: Architecture::Hrnet,
        family: Family::TopDownHeatmap,
        layout: "mpii16",
        num_joints: 16,
        input_sizes: &[(256, 256)],
        summary: "HRNet-W32, MPII",
        parameters: 28_536_080,
        builder: |p| Ok(Box::new(PoseHrnet::new(p, &HrnetConfig::w32_mpii())?)),
    },
    Preset {
        name: "higherhrnet-w32",
        architecture: Architecture::HigherHrnet,
        family: Family::AssociativeEmbedding,
        layout: "coco17",
        num_joints: 17,
        input_sizes: &[(512, 512)],
        summary: "HigherHRNet-W32 with associative embedding, COCO (Cheng et al. 2020)",
        parameters: 28_645_331,
        builder: |p| Ok(Box::new(HigherHrnet::new(p, &HigherHrnetConfig::w32())?)),
    },
    Preset {
        name: "higherhrnet-w48",
        architecture: Architecture::HigherHrnet,
        family: Family::AssociativeEmbedding,
        layout: "coco17",
        num_joints: 17,
        input_sizes: &[(640, 640)],
        summary: "HigherHRNet-W48 with associative embedding, COCO",
        parameters: 63_827_139,
        builder: |p| Ok(Box::new(HigherHrnet::new(p, &HigherHrnetConfig::w48())?)),
    },
    Preset {
        name: "hourglass-1",
        architecture: Architecture::StackedHourglass,
        family: Family::TopDownHeatmap,
        layout: "mpii16",
        num_joints: 16,
        input_sizes: &[(256, 256)],
        summary: "Stacked Hourglass, 1 stack of 8-bottleneck residuals (bearpaw/pytorch-pose hg1), MPII",
        parameters: 24_610_704,
        builder: |p| Ok(Box::new(StackedHourglass::new(p, &StackedHourglassConfig::preset("hourglass-1")?)?)),
    },
    Preset {
        name: "hourglass-2",
        architecture: Architecture::StackedHourglass,
        family: Family::TopDownHeatmap,
        layout: "mpii16",
        num_joints: 16,
        input_sizes: &[(256, 256)],
        summary: "Stacked Hourglass, 2 stacks, 4 bottlenecks per residual (bearpaw hg2), MPII",
        parameters: 24_751_264,
        builder: |p| Ok(Box::new(StackedHourglass::new(p, &StackedHourglassConfig::preset("hourglass-2")?)?)),
    },
    Preset {
        name: "hourglass-4",
        architecture: Architecture::StackedHourglass,
        family: Family::TopDownHeatmap,
        layout: "mpii16",
        num_joints: 16,
        input_sizes: &[(256, 256)],
        summary: "Stacked Hourglass, 4 stacks, 2 bottlenecks per residual (bearpaw hg4), MPII",
        parameters: 25_032_384,
        builder: |p| Ok(Box::new(StackedHourglass::new(p, &StackedHourglassConfig::preset("hourglass-4")?)?)),
    },
    Preset {
        name: "hourglass-8",
        architecture: Architecture::StackedHourglass,
        family: Family::TopDownHeatmap,
        layout: "mpii16",
        num_joints: 16,
        input_sizes: &[(256, 256)],
        summary: "Stacked Hourglass, 8 stacks (Newell et al. 2016; bearpaw hg8), MPII",
        parameters: 25_594_624,
        builder: |p| Ok(Box::new(StackedHourglass::new(p, &StackedHourglassConfig::preset("hourglass-8")?)?)),
    },
    Preset {
        name: "hourglass52",
        architecture: Architecture::CornerNetHourglass,
        family: Family::TopDownHeatmap,
        layout: "coco17",
        num_joints: 17,
        input_sizes: &[(256, 256), (384, 384)],
        summary: "MMPose's hourglass52 (CornerNet-style HourglassNet, 1 stack); loads MMPose checkpoints",
        parameters: 94_847_889,
        builder: |p| Ok(Box::new(PoseHourglass::new(p, &HourglassConfig::hourglass52())?)),
    },
    Preset {
        name: "openpose-vgg19",
        architecture: Architecture::OpenPoseVgg,
        family: Family::PartAffinity(PafStyle::Cmu),
        layout: "cmu18",
        num_joints: 18,
        input_sizes: &[(368, 368)],
        summary: "OpenPose CPM: VGG-19 features, 6 stages of PAFs + heatmaps (Cao et al. 2017)",
        parameters: 52_311_446,
        builder: |p| Ok(Box::new(OpenPoseVgg::new(p, &OpenPoseVggConfig::vgg19_coco())?)),
    },
    Preset {
        name: "openpose-mobilenetv2",
        architecture: Architecture::OpenPoseMobileNet,
        family: Family::PartAffinity(PafStyle::TfPose),
        layout: "cmu18",
        num_joints: 18,
        input_sizes: &[(368, 432)],
        summary: "OpenPose PAF on MobileNetV2-0.5 (tf-pose-estimation mobilenet_v2_small; shipped Apache-2.0 weights)",
        parameters: 477_270,
        builder: |p| Ok(Box::new(OpenPoseMobileNetV2::new(p, &OpenPoseMobileNetConfig::mobilenet_v2_small())?)),
    },
    Preset {
        name: "spm-hourglass",
        architecture: Architecture::Spm,
        family: Family::StructuredPose,
        layout: "coco17",
        num_joints: 17,
        input_sizes: &[(512, 512)],
        summary: "SPM root heatmap + hierarchical displacements on an 8-stack hourglass (Nie et al. 2019)",
        parameters: 137_712_024,
        builder: |p| Ok(Box::new(Spm::new(p, &SpmNetConfig::preset("spm-hourglass")?)?)),
    },
    Preset {
        name: "spm-hrnet-w32",
        architecture: Architecture::Spm,
        family: Family::StructuredPose,
        layout: "coco17",
        num_joints: 17,
        input_sizes: &[(512, 512)],
        summary: "SPM root heatmap + displacements on HRNet-W32",
        parameters: 28_536_707,
        builder: |p| Ok(Box::new(Spm::new(p, &SpmNetConfig::preset("spm-hrnet-w32")?)?)),
    },
];

/// The preset that ships with posekit: its weights (tf-pose-estimation's `mobilenet_v2_small`,
/// Apache-2.0, see `models/openpose-mobilenetv2/NOTICE`) are compiled into the library, so it
/// runs on a fresh machine from any folder. It is `posekit infer`'s default model and finds the
/// people a top-down model crops when it is given no boxes.
pub const BUNDLED_PRESET: &str = "openpose-mobilenetv2";

/// 2 MB of safetensors: embedding them costs nothing at build time.
static BUNDLED_WEIGHTS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/openpose-mobilenetv2/openpose_mobilenetv2.safetensors"
));

impl Preset {
    /// The weights that ship with this preset, if any (see [`BUNDLED_PRESET`]).
    pub fn bundled_weights(&self) -> Option<&'static [u8]> {
        (self.name == BUNDLED_PRESET).then_some(BUNDLED_WEIGHTS)
    }

    /// Looks a preset up by name; the error lists the known names.
    pub fn find(name: &str) -> Result<&'static Preset> {
        PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            Error::Shape(format!(
                "unknown model preset '{name}'; known presets: {}",
                names.join(", ")
            ))
        })
    }

    pub fn default_input_size(&self) -> (i64, i64) {
        self.input_sizes[0]
    }

    /// Checks a requested input size against the preset's supported ones.
    pub fn check_input_size(&self, size: (i64, i64)) -> Result<()> {
        if self.input_sizes.contains(&size) {
            return Ok(());
        }
        let sizes: Vec<String> = self
            .input_sizes
            .iter()
            .map(|(h, w)| format!("{h}x{w}"))
            .collect();
        Err(Error::Shape(format!(
            "{} takes inputs of {} (height x width), not {}x{}",
            self.name,
            sizes.join(" or "),
            size.0,
            size.1
        )))
    }

    /// Builds the network under `p`, whose variable names are then the checkpoint's keys.
    pub fn build(&self, p: &nn::Path) -> Result<Box<dyn PoseNetwork>> {
        (self.builder)(p)
    }

    pub fn paradigm(&self) -> Paradigm {
        self.family.paradigm()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn every_preset_builds_and_names_are_unique() {
        let mut names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PRESETS.len());
        for preset in PRESETS {
            let vs = nn::VarStore::new(Device::Cpu);
            preset
                .build(&vs.root())
                .unwrap_or_else(|e| panic!("{}: {e}", preset.name));
            let built: i64 = vs
                .trainable_variables()
                .iter()
                .map(|t| t.numel() as i64)
                .sum();
            assert_eq!(
                built, preset.parameters,
                "{}: the row's parameter count",
                preset.name
            );
        }
    }

    #[test]
    fn unknown_names_and_sizes_are_clear_errors() {
        let err = Preset::find("hrnet-w64").unwrap_err().to_string();
        assert!(err.contains("hrnet-w32"), "{err}");
        let hrnet = Preset::find("hrnet-w32").unwrap();
        assert!(hrnet.check_input_size((384, 288)).is_ok());
        let err = hrnet.check_input_size((100, 100)).unwrap_err().to_string();
        assert!(err.contains("256x192"), "{err}");
    }

    #[test]
    fn hrnet_preset_outputs_quarter_resolution_heatmaps() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Preset::find("hrnet-w32")
            .unwrap()
            .build(&vs.root())
            .unwrap();
        let x = Tensor::zeros([1, 3, 256, 192], (Kind::Float, Device::Cpu));
        let out = tch::no_grad(|| net.forward_named(&x, false)).unwrap();
        assert_eq!(out[0].0, "heatmaps");
        assert_eq!(out[0].1.size(), vec![1, 17, 64, 48]);
    }
}
