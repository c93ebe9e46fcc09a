//! SPM, the Single-stage multi-person Pose Machine (Nie et al., "Single-Stage Multi-Person Pose
//! Machines", ICCV 2019): a network that predicts, at 1/4 of the input, a heatmap of every
//! person's *root joint* and, at every pixel, the displacements from the root to each of the K
//! body joints (the structured pose representation; the hierarchical variant chains the
//! displacements root -> torso -> limbs, which is the codec's business, not the network's:
//! either way the network regresses 2 numbers per joint and pixel).
//!
//! Two backbones, each with its checkpoint layout at the model's root so that a pretrained
//! backbone loads name for name (non-strictly, the heads being new):
//! the Stacked Hourglass of [`crate::models::hourglass`] (MMPose keys; one pair of heads per
//! stack, all trained) and the HRNet of [`crate::models::hrnet`] (official keys; one pair of
//! heads on the stage-4 high-resolution output).
//!
//! No public SPM checkpoint exists in these layouts, so the head keys are simply
//! `root_head.{i}.{weight,bias}` (1x1 conv to 1 channel) and
//! `displacement_head.{i}.{weight,bias}` (1x1 conv to 2K channels: x of joint k at channel 2k,
//! y at 2k + 1, in the units of `posekit_core::codecs::spm`, i.e. heatmap pixels divided by its
//! normaliser Z), `i` indexing the backbone's outputs.
//!
//! The config is called [`SpmNetConfig`] to keep it apart from the codec, `SpmCodec`.

use std::path::Path;

use posekit_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

use crate::blocks::conv2d_bias;
use crate::export::{OnnxGraph, Value};
use crate::models::hourglass::{HourglassBackbone, HourglassNetConfig};
use crate::models::hrnet::{HrnetBackbone, HrnetConfig, COCO_JOINTS};

/// Which backbone, with its own config (MMPose's `HourglassNet` arguments, or the official
/// HRNet YAML fields; the latter's `NUM_JOINTS` and `FINAL_CONV_KERNEL` are not used here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpmBackboneConfig {
    Hourglass(HourglassNetConfig),
    Hrnet(HrnetConfig),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpmNetConfig {
    pub backbone: SpmBackboneConfig,
    /// Body joints whose displacements are regressed (the root is not one of them).
    pub num_joints: i64,
}

/// Square input side of the presets (bottom-up, whole images).
pub const SPM_INPUT_SIZE: i64 = 512;

impl SpmNetConfig {
    /// `spm-hourglass`: SPM on a stacked hourglass, as in the paper; the hourglass is
    /// Newell et al.'s 8-stack table (order 4, 256 features), COCO's 17 joints, 512x512.
    pub fn hourglass() -> Self {
        SpmNetConfig {
            backbone: SpmBackboneConfig::Hourglass(HourglassNetConfig::newell(8)),
            num_joints: COCO_JOINTS,
        }
    }

    /// `spm-hrnet-w32`: SPM heads on the HRNet-W32 backbone, 17 joints, 512x512.
    pub fn hrnet_w32() -> Self {
        SpmNetConfig {
            backbone: SpmBackboneConfig::Hrnet(HrnetConfig::w32()),
            num_joints: COCO_JOINTS,
        }
    }

    /// The configs behind the command-line presets `spm-hourglass` and `spm-hrnet-w32`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "spm-hourglass" => Ok(Self::hourglass()),
            "spm-hrnet-w32" => Ok(Self::hrnet_w32()),
            other => Err(Error::Shape(format!(
                "unknown SPM preset '{other}' (spm-hourglass, spm-hrnet-w32)"
            ))),
        }
    }

    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = posekit_core::error::read_file(path)?;
        let cfg: Self = serde_json::from_slice(&bytes).map_err(|e| Error::json(path, e))?;
        cfg.check_fields()
            .map_err(|(field, msg)| Error::invalid(path, field, msg))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        self.check_fields()
            .map_err(|(f, m)| Error::Shape(format!("SPM config: {f}: {m}")))
    }

    fn check_fields(&self) -> std::result::Result<(), (String, String)> {
        if self.num_joints <= 0 {
            return Err((
                "num_joints".into(),
                format!("must be positive, got {}", self.num_joints),
            ));
        }
        match &self.backbone {
            SpmBackboneConfig::Hourglass(c) => c
                .check_fields()
                .map_err(|(f, m)| (format!("backbone.hourglass.{f}"), m)),
            SpmBackboneConfig::Hrnet(c) => c
                .validate()
                .map_err(|e| ("backbone.hrnet".to_string(), e.to_string())),
        }
    }
}

/// Both variants boxed: the backbones are large structs of very different sizes.
#[derive(Debug)]
enum SpmBackbone {
    Hourglass(Box<HourglassBackbone>),
    Hrnet(Box<HrnetBackbone>),
}

impl SpmBackbone {
    fn check_input(&self, size: &[i64]) -> Result<()> {
        match self {
            SpmBackbone::Hourglass(b) => b.check_input(size),
            SpmBackbone::Hrnet(b) => b.check_input(size),
        }
    }

    fn forward_features(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        match self {
            SpmBackbone::Hourglass(b) => b.forward_features(xs, train),
            SpmBackbone::Hrnet(b) => b.forward_features(xs, train),
        }
    }

    /// The features as ONNX nodes.
    fn export_features(&self, g: &mut OnnxGraph, x: &Value) -> Result<Vec<Value>> {
        match self {
            SpmBackbone::Hourglass(b) => b.export_features(g, x),
            SpmBackbone::Hrnet(b) => b.export_features(g, x),
        }
    }
}

/// What SPM predicts from one backbone output, at 1/4 of the input.
#[derive(Debug)]
pub struct SpmOutput {
    /// `[N, 1, H/4, W/4]`: root-joint confidence.
    pub root: Tensor,
    /// `[N, 2K, H/4, W/4]`: (x, y) displacement of joint k at channels (2k, 2k + 1).
    pub displacements: Tensor,
}

/// The SPM network.
#[derive(Debug)]
pub struct Spm {
    backbone: SpmBackbone,
    root_head: Vec<nn::Conv2D>,
    displacement_head: Vec<nn::Conv2D>,
    config: SpmNetConfig,
}

impl Spm {
    pub fn new(p: &nn::Path, cfg: &SpmNetConfig) -> Result<Self> {
        cfg.validate()?;
        let (backbone, widths) = match &cfg.backbone {
            SpmBackboneConfig::Hourglass(c) => {
                let b = HourglassBackbone::new(p, c)?;
                let widths = vec![b.feat_channel(); b.num_stacks()];
                (SpmBackbone::Hourglass(Box::new(b)), widths)
            }
            SpmBackboneConfig::Hrnet(c) => {
                let b = HrnetBackbone::new(p, c)?;
                let widths = b.out_widths().to_vec();
                (SpmBackbone::Hrnet(Box::new(b)), widths)
            }
        };
        let root_head = widths
            .iter()
            .enumerate()
            .map(|(i, &w)| conv2d_bias(p / "root_head" / i, w, 1, 1))
            .collect();
        let displacement_head = widths
            .iter()
            .enumerate()
            .map(|(i, &w)| conv2d_bias(p / "displacement_head" / i, w, 2 * cfg.num_joints, 1))
            .collect();
        Ok(Spm {
            backbone,
            root_head,
            displacement_head,
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &SpmNetConfig {
        &self.config
    }

    /// One output per backbone output (per stack for the hourglass; the last is the
    /// prediction), without input check.
    pub fn forward_outputs(&self, xs: &Tensor, train: bool) -> Vec<SpmOutput> {
        self.backbone
            .forward_features(xs, train)
            .iter()
            .zip(self.root_head.iter().zip(&self.displacement_head))
            .map(|(f, (root, disp))| SpmOutput {
                root: f.apply(root),
                displacements: f.apply(disp),
            })
            .collect()
    }

    /// [`Self::forward_outputs`] after checking the input shape (use this for user data).
    pub fn outputs(&self, xs: &Tensor, train: bool) -> Result<Vec<SpmOutput>> {
        self.backbone.check_input(&xs.size())?;
        Ok(self.forward_outputs(xs, train))
    }

    /// Every head by name for the `forward` command: `root` and `displacements` when the
    /// backbone has one output (HRNet), `stack{i}.root` and `stack{i}.displacements` per
    /// hourglass stack otherwise (the same naming as the hourglass pose model).
    pub fn forward_named(&self, xs: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        let outs = self.outputs(xs, train)?;
        let single = outs.len() == 1;
        Ok(outs
            .into_iter()
            .enumerate()
            .flat_map(|(i, o)| {
                let prefix = if single {
                    String::new()
                } else {
                    format!("stack{i}.")
                };
                [
                    (format!("{prefix}root"), o.root),
                    (format!("{prefix}displacements"), o.displacements),
                ]
            })
            .collect())
    }

    /// [`Self::forward_named`] in eval mode as ONNX nodes.
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &Value) -> Result<Vec<(String, Value)>> {
        let features = self.backbone.export_features(g, x)?;
        let single = features.len() == 1;
        let mut named = Vec::with_capacity(2 * features.len());
        for (i, (f, (root, disp))) in features
            .iter()
            .zip(self.root_head.iter().zip(&self.displacement_head))
            .enumerate()
        {
            let prefix = if single {
                String::new()
            } else {
                format!("stack{i}.")
            };
            let r = g.conv_same(f, &root.ws, root.bs.as_ref())?;
            let d = g.conv_same(f, &disp.ws, disp.bs.as_ref())?;
            named.push((format!("{prefix}root"), r));
            named.push((format!("{prefix}displacements"), d));
        }
        Ok(named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::hourglass::HourglassDownsample;
    use tch::{Device, Kind};

    fn tiny_hourglass() -> SpmNetConfig {
        SpmNetConfig {
            backbone: SpmBackboneConfig::Hourglass(HourglassNetConfig {
                downsample_times: 2,
                num_stacks: 2,
                stage_channels: vec![6, 8, 10],
                stage_blocks: vec![1, 1, 2],
                feat_channel: 6,
                stem_channels: 4,
                downsample: HourglassDownsample::Conv,
            }),
            num_joints: 5,
        }
    }

    #[test]
    fn heads_have_one_root_and_two_channels_per_joint() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Spm::new(&vs.root(), &tiny_hourglass()).unwrap();
        let x = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        let named = net.forward_named(&x, false).unwrap();
        let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "stack0.root",
                "stack0.displacements",
                "stack1.root",
                "stack1.displacements"
            ]
        );
        assert_eq!(named[2].1.size(), vec![1, 1, 8, 8]);
        assert_eq!(named[3].1.size(), vec![1, 10, 8, 8]);

        let cfg = SpmNetConfig {
            backbone: SpmBackboneConfig::Hrnet(HrnetConfig::uniform(4, [1, 1, 1], 1, 1)),
            num_joints: 5,
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Spm::new(&vs.root(), &cfg).unwrap();
        let named = net.forward_named(&x, false).unwrap();
        assert_eq!(named[0].0, "root");
        assert_eq!(named[1].0, "displacements");
        assert_eq!(named[1].1.size(), vec![1, 10, 8, 8]);
    }

    #[test]
    fn bad_inputs_and_configs_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Spm::new(&vs.root(), &tiny_hourglass()).unwrap();
        let x = Tensor::zeros([1, 3, 36, 32], (Kind::Float, Device::Cpu));
        assert!(net.outputs(&x, false).is_err());
        let mut cfg = tiny_hourglass();
        cfg.num_joints = 0;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("num_joints"));
        assert!(SpmNetConfig::preset("spm-resnet").is_err());

        let dir = std::env::temp_dir().join(format!("posekit-spm-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spm.json");
        let mut bad = tiny_hourglass();
        if let SpmBackboneConfig::Hourglass(c) = &mut bad.backbone {
            c.stage_channels = vec![6, 8];
        }
        std::fs::write(&path, serde_json::to_string(&bad).unwrap()).unwrap();
        let err = SpmNetConfig::from_json_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("spm.json") && err.contains("backbone.hourglass.stage_channels"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn config_round_trips() {
        for cfg in [SpmNetConfig::hourglass(), SpmNetConfig::hrnet_w32()] {
            let json = serde_json::to_string(&cfg).unwrap();
            let back: SpmNetConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back, cfg);
        }
    }
}
