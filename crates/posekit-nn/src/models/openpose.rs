//! OpenPose's multi-stage CPM network (Cao et al., "Realtime Multi-Person 2D Pose Estimation
//! using Part Affinity Fields", CVPR 2017), CMU's `pose_deploy` COCO model: the first ten
//! convolutions of VGG-19 (three 2x2 max-pools, so features at 1/8 of the input) reduced to
//! 128 channels by `conv4_3_CPM` / `conv4_4_CPM`; stage 1 runs two branches of 3x3 convs + two
//! 1x1 convs on those features, one predicting the 38 PAF channels (L1: 19 limbs x (x, y)),
//! the other 19 confidence maps (L2: 18 keypoints + background); stages 2..6 take
//! `concat(pafs, heatmaps, features)` (in that order, as CMU's `concat_stage{t}`) through
//! five 7x7 convs and two 1x1 convs per branch. Every stage's outputs are trained
//! (intermediate supervision); the last stage's are the prediction.
//!
//! Module paths are the popular PyTorch port's (`body_pose_model` of pytorch-openpose):
//! `model0.conv1_1` ... `model0.conv4_4_CPM`; `model1_1.conv5_{1..5}_CPM_L1`,
//! `model1_2.conv5_{1..5}_CPM_L2`; `model{t}_1.Mconv{1..7}_stage{t}_L1`,
//! `model{t}_2.Mconv{1..7}_stage{t}_L2`; each `.weight` and `.bias`. That port's released
//! `body_pose_model.pth` stores the bare layer names (`conv1_1.weight`, as converted from
//! Caffe); [`OpenPoseVgg::flat_key_map`] maps those, so both forms load.
//!
//! One deliberate difference from that port: the last conv of every branch is linear in every
//! stage. The port's `no_relu_layers` names `Mconv7_stage6_L1` twice and omits
//! `Mconv7_stage6_L2`, so it clamps the final heatmaps at 0; CMU's prototxt (and the paper's
//! L2 loss on signed outputs) has no ReLU there.

use std::path::Path;

use posekit_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

use crate::export::{OnnxGraph, Value};
use crate::weights::KeyMap;

/// Standard deviation of CMU's initialisation (`weight_filler { type: "gaussian" std: 0.01 }`,
/// biases 0), so that training from scratch starts where the original training started.
const CMU_INIT_STD: f64 = 0.01;

/// VGG-19's first ten convolutions: (layer name, index of its width in `vgg_widths`), with a
/// 2x2 max-pool after `conv1_2`, `conv2_2` and `conv3_4`.
const VGG_LAYERS: [(&str, usize, bool); 10] = [
    ("conv1_1", 0, false),
    ("conv1_2", 0, true),
    ("conv2_1", 1, false),
    ("conv2_2", 1, true),
    ("conv3_1", 2, false),
    ("conv3_2", 2, false),
    ("conv3_3", 2, false),
    ("conv3_4", 2, true),
    ("conv4_1", 3, false),
    ("conv4_2", 3, false),
];

/// Output stride of the network: three 2x2 max-pools.
pub const OPENPOSE_VGG_STRIDE: i64 = 8;

/// The paper's table; defaults are CMU's COCO model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenPoseVggConfig {
    /// Widths of VGG-19's conv1_x, conv2_x, conv3_x, conv4_x (64, 128, 256, 512).
    pub vgg_widths: [i64; 4],
    /// Widths of `conv4_3_CPM` and `conv4_4_CPM` (256, 128); the second is the feature width.
    pub cpm_widths: [i64; 2],
    /// Width of stage 1's 3x3 convs (128) and of its hidden 1x1 conv (512).
    pub stage1_width: i64,
    pub stage1_hidden: i64,
    /// Width (128) and kernel (7) of the refinement stages' convs.
    pub refine_width: i64,
    pub refine_kernel: i64,
    /// Stages in total, stage 1 included (6).
    pub num_stages: usize,
    /// PAF channels, two per limb (38 for CMU's 19 COCO limbs).
    pub num_pafs: i64,
    /// Confidence maps, keypoints + background (19 for CMU's 18 COCO keypoints).
    pub num_heatmaps: i64,
}

impl Default for OpenPoseVggConfig {
    fn default() -> Self {
        Self::vgg19_coco()
    }
}

impl OpenPoseVggConfig {
    /// `openpose-vgg19`: CMU's `pose_deploy` COCO model, 6 stages, 52.3M parameters; trained
    /// at 368x368 (any size works; outputs are at 1/8).
    pub fn vgg19_coco() -> Self {
        OpenPoseVggConfig {
            vgg_widths: [64, 128, 256, 512],
            cpm_widths: [256, 128],
            stage1_width: 128,
            stage1_hidden: 512,
            refine_width: 128,
            refine_kernel: 7,
            num_stages: 6,
            num_pafs: 38,
            num_heatmaps: 19,
        }
    }

    pub fn feature_width(&self) -> i64 {
        self.cpm_widths[1]
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
            .map_err(|(f, m)| Error::Shape(format!("OpenPose config: {f}: {m}")))
    }

    fn check_fields(&self) -> std::result::Result<(), (String, String)> {
        let positive = [
            (
                "vgg_widths",
                self.vgg_widths.iter().copied().min().unwrap_or(0),
            ),
            (
                "cpm_widths",
                self.cpm_widths.iter().copied().min().unwrap_or(0),
            ),
            ("stage1_width", self.stage1_width),
            ("stage1_hidden", self.stage1_hidden),
            ("refine_width", self.refine_width),
            ("num_pafs", self.num_pafs),
            ("num_heatmaps", self.num_heatmaps),
        ];
        if let Some((field, v)) = positive.iter().find(|(_, v)| *v <= 0) {
            return Err((field.to_string(), format!("must be positive, got {v}")));
        }
        if self.refine_kernel <= 0 || self.refine_kernel % 2 == 0 {
            return Err((
                "refine_kernel".into(),
                format!(
                    "must be odd and positive (same padding), got {}",
                    self.refine_kernel
                ),
            ));
        }
        if self.num_stages == 0 {
            return Err(("num_stages".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

/// A chain of convs (with bias, "same" padding), ReLU after each but the last unless
/// `relu_last`, with optional 2x2 max-pools after some.
#[derive(Debug)]
struct ConvChain {
    layers: Vec<(nn::Conv2D, bool, bool)>,
}

impl ConvChain {
    /// `specs`: (name, cin, cout, kernel, relu, pool after).
    fn new(p: &nn::Path, specs: &[(String, i64, i64, i64, bool, bool)]) -> Self {
        let layers = specs
            .iter()
            .map(|(name, cin, cout, k, relu, pool)| {
                let cfg = nn::ConvConfig {
                    padding: k / 2,
                    ws_init: nn::Init::Randn {
                        mean: 0.0,
                        stdev: CMU_INIT_STD,
                    },
                    bs_init: nn::Init::Const(0.0),
                    ..Default::default()
                };
                (
                    nn::conv2d(p / name.as_str(), *cin, *cout, *k, cfg),
                    *relu,
                    *pool,
                )
            })
            .collect();
        ConvChain { layers }
    }
}

impl ConvChain {
    /// [`Module::forward`] as ONNX nodes (every conv here is stride 1 with "same" padding).
    fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        self.layers
            .iter()
            .try_fold(x.clone(), |x, (conv, relu, pool)| {
                let y = g.conv_same(&x, &conv.ws, conv.bs.as_ref())?;
                let y = if *relu { g.relu(&y) } else { y };
                Ok(if *pool { g.max_pool(&y, 2, 2) } else { y })
            })
    }
}

impl Module for ConvChain {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.layers
            .iter()
            .fold(xs.shallow_clone(), |x, (conv, relu, pool)| {
                let y = x.apply(conv);
                let y = if *relu { y.relu() } else { y };
                if *pool {
                    y.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
                } else {
                    y
                }
            })
    }
}

/// One stage: the PAF branch (`L1`) and the confidence-map branch (`L2`).
#[derive(Debug)]
struct Stage {
    pafs: ConvChain,
    heatmaps: ConvChain,
}

/// What one stage predicts, both at 1/8 of the input.
#[derive(Debug)]
pub struct OpenPoseStageOutput {
    /// `[N, num_pafs, H/8, W/8]`: x and y of each limb's unit vector field, interleaved.
    pub pafs: Tensor,
    /// `[N, num_heatmaps, H/8, W/8]`: keypoint confidence maps, background last.
    pub heatmaps: Tensor,
}

/// The OpenPose VGG-19 CPM network.
#[derive(Debug)]
pub struct OpenPoseVgg {
    model0: ConvChain,
    stages: Vec<Stage>,
    config: OpenPoseVggConfig,
}

impl OpenPoseVgg {
    pub fn new(p: &nn::Path, cfg: &OpenPoseVggConfig) -> Result<Self> {
        cfg.validate()?;
        let mut specs = Vec::new();
        let mut cin = 3;
        for (name, block, pool) in VGG_LAYERS {
            let cout = cfg.vgg_widths[block];
            specs.push((name.to_string(), cin, cout, 3, true, pool));
            cin = cout;
        }
        specs.push(("conv4_3_CPM".into(), cin, cfg.cpm_widths[0], 3, true, false));
        specs.push((
            "conv4_4_CPM".into(),
            cfg.cpm_widths[0],
            cfg.cpm_widths[1],
            3,
            true,
            false,
        ));
        let model0 = ConvChain::new(&(p / "model0"), &specs);

        let feat = cfg.feature_width();
        let branches = [(1, cfg.num_pafs), (2, cfg.num_heatmaps)];
        let stage1 = branches.map(|(b, out)| {
            let (w, h) = (cfg.stage1_width, cfg.stage1_hidden);
            let name = |i: usize| format!("conv5_{i}_CPM_L{b}");
            ConvChain::new(
                &(p / format!("model1_{b}")),
                &[
                    (name(1), feat, w, 3, true, false),
                    (name(2), w, w, 3, true, false),
                    (name(3), w, w, 3, true, false),
                    (name(4), w, h, 1, true, false),
                    (name(5), h, out, 1, false, false),
                ],
            )
        });
        let [pafs, heatmaps] = stage1;
        let mut stages = vec![Stage { pafs, heatmaps }];
        let cin = feat + cfg.num_pafs + cfg.num_heatmaps;
        for t in 2..=cfg.num_stages {
            let [pafs, heatmaps] = branches.map(|(b, out)| {
                let (w, k) = (cfg.refine_width, cfg.refine_kernel);
                let name = |i: usize| format!("Mconv{i}_stage{t}_L{b}");
                ConvChain::new(
                    &(p / format!("model{t}_{b}")),
                    &[
                        (name(1), cin, w, k, true, false),
                        (name(2), w, w, k, true, false),
                        (name(3), w, w, k, true, false),
                        (name(4), w, w, k, true, false),
                        (name(5), w, w, k, true, false),
                        (name(6), w, w, 1, true, false),
                        (name(7), w, out, 1, false, false),
                    ],
                )
            });
            stages.push(Stage { pafs, heatmaps });
        }
        Ok(OpenPoseVgg {
            model0,
            stages,
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &OpenPoseVggConfig {
        &self.config
    }

    /// The key map for checkpoints that store bare Caffe layer names (`conv1_1.weight`, as the
    /// PyTorch port's `body_pose_model.pth` does) on top of the usual wrappers: each layer name
    /// is unique in the network, so it is moved under its `model*` module.
    pub fn flat_key_map(cfg: &OpenPoseVggConfig) -> KeyMap {
        let mut map = KeyMap::default();
        let mut add = |module: String, layer: String| {
            map = std::mem::take(&mut map)
                .with_rule(&format!("{layer}."), &format!("{module}.{layer}."));
        };
        for (name, _, _) in VGG_LAYERS {
            add("model0".into(), name.into());
        }
        add("model0".into(), "conv4_3_CPM".into());
        add("model0".into(), "conv4_4_CPM".into());
        for b in 1..=2 {
            for i in 1..=5 {
                add(format!("model1_{b}"), format!("conv5_{i}_CPM_L{b}"));
            }
            for t in 2..=cfg.num_stages {
                for i in 1..=7 {
                    add(format!("model{t}_{b}"), format!("Mconv{i}_stage{t}_L{b}"));
                }
            }
        }
        map
    }

    /// Checks an input `[N, 3, H, W]` before libtorch sees it: H and W of at least 8, so that
    /// the three max-pools leave at least one pixel (other sizes are floored by the pools,
    /// as in PyTorch and Caffe's VALID pooling on the padded inputs OpenPose feeds).
    pub fn check_input(&self, size: &[i64]) -> Result<()> {
        if size.len() != 4 || size[1] != 3 {
            return Err(Error::Shape(format!(
                "OpenPose expects an input [N, 3, H, W], got {size:?}"
            )));
        }
        if size[2] < OPENPOSE_VGG_STRIDE || size[3] < OPENPOSE_VGG_STRIDE {
            return Err(Error::Shape(format!(
                "OpenPose input {}x{} is smaller than its stride of {OPENPOSE_VGG_STRIDE}",
                size[2], size[3]
            )));
        }
        Ok(())
    }

    /// The VGG + CPM features `[N, 128, H/8, W/8]`, without input check.
    pub fn features(&self, xs: &Tensor) -> Tensor {
        self.model0.forward(xs)
    }

    /// Every stage's outputs, stage 1 first, without input check. There is no BatchNorm, so
    /// training and evaluation compute the same function.
    pub fn forward_stages(&self, xs: &Tensor) -> Vec<OpenPoseStageOutput> {
        let feat = self.features(xs);
        let mut input = feat.shallow_clone();
        let mut outs = Vec::with_capacity(self.stages.len());
        for (t, stage) in self.stages.iter().enumerate() {
            let pafs = stage.pafs.forward(&input);
            let heatmaps = stage.heatmaps.forward(&input);
            if t + 1 < self.stages.len() {
                input = Tensor::cat(&[&pafs, &heatmaps, &feat], 1);
            }
            outs.push(OpenPoseStageOutput { pafs, heatmaps });
        }
        outs
    }

    /// [`Self::forward_stages`] after checking the input (use this for user data).
    pub fn stages(&self, xs: &Tensor) -> Result<Vec<OpenPoseStageOutput>> {
        self.check_input(&xs.size())?;
        Ok(self.forward_stages(xs))
    }

    /// Every output head by name for the `forward` command: `stage{t}.pafs` and
    /// `stage{t}.heatmaps`, `t` from 1 as in CMU's layer names; the last stage is the
    /// prediction. `train` is accepted for the common interface and changes nothing.
    pub fn forward_named(&self, xs: &Tensor, _train: bool) -> Result<Vec<(String, Tensor)>> {
        Ok(self
            .stages(xs)?
            .into_iter()
            .enumerate()
            .flat_map(|(i, o)| {
                let t = i + 1;
                [
                    (format!("stage{t}.pafs"), o.pafs),
                    (format!("stage{t}.heatmaps"), o.heatmaps),
                ]
            })
            .collect())
    }

    /// [`Self::forward_named`] as ONNX nodes.
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &Value) -> Result<Vec<(String, Value)>> {
        let feat = self.model0.export(g, x)?;
        let mut input = feat.clone();
        let mut named = Vec::with_capacity(2 * self.stages.len());
        for (i, stage) in self.stages.iter().enumerate() {
            let pafs = stage.pafs.export(g, &input)?;
            let heatmaps = stage.heatmaps.export(g, &input)?;
            if i + 1 < self.stages.len() {
                input = g.concat(&[&pafs, &heatmaps, &feat], 1);
            }
            named.push((format!("stage{}.pafs", i + 1), pafs));
            named.push((format!("stage{}.heatmaps", i + 1), heatmaps));
        }
        Ok(named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::KeyAction;
    use tch::{Device, Kind};

    fn tiny() -> OpenPoseVggConfig {
        OpenPoseVggConfig {
            vgg_widths: [4, 6, 8, 8],
            cpm_widths: [8, 6],
            stage1_width: 6,
            stage1_hidden: 10,
            refine_width: 6,
            refine_kernel: 7,
            num_stages: 3,
            num_pafs: 4,
            num_heatmaps: 3,
        }
    }

    #[test]
    fn stages_output_pafs_and_heatmaps_at_one_eighth() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = OpenPoseVgg::new(&vs.root(), &tiny()).unwrap();
        let x = Tensor::randn([1, 3, 48, 64], (Kind::Float, Device::Cpu));
        let named = net.forward_named(&x, false).unwrap();
        assert_eq!(named.len(), 6);
        assert_eq!(named[0].0, "stage1.pafs");
        assert_eq!(named[5].0, "stage3.heatmaps");
        assert_eq!(named[4].1.size(), vec![1, 4, 6, 8]);
        assert_eq!(named[5].1.size(), vec![1, 3, 6, 8]);
    }

    #[test]
    fn flat_caffe_names_map_to_the_nested_modules() {
        let map = OpenPoseVgg::flat_key_map(&OpenPoseVggConfig::vgg19_coco());
        let keep = |s: &str| KeyAction::Keep(s.to_string());
        assert_eq!(map.map_key("conv1_1.weight"), keep("model0.conv1_1.weight"));
        assert_eq!(
            map.map_key("Mconv7_stage6_L2.bias"),
            keep("model6_2.Mconv7_stage6_L2.bias")
        );
        assert_eq!(
            map.map_key("module.conv5_5_CPM_L1.weight"),
            keep("model1_1.conv5_5_CPM_L1.weight")
        );
        // Already nested names are left alone by `resolve` when the model has them.
        assert_eq!(
            map.resolve("model0.conv1_1.weight", |k| k == "model0.conv1_1.weight"),
            keep("model0.conv1_1.weight")
        );
    }

    #[test]
    fn bad_inputs_and_configs_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = OpenPoseVgg::new(&vs.root(), &tiny()).unwrap();
        let x = Tensor::zeros([1, 3, 4, 64], (Kind::Float, Device::Cpu));
        assert!(net.stages(&x).is_err());
        let x = Tensor::zeros([3, 48, 64], (Kind::Float, Device::Cpu));
        assert!(net.forward_named(&x, false).is_err());
        let mut cfg = tiny();
        cfg.refine_kernel = 4;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("refine_kernel"), "{err}");
        let json = serde_json::to_string(&OpenPoseVggConfig::vgg19_coco()).unwrap();
        let back: OpenPoseVggConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, OpenPoseVggConfig::vgg19_coco());
    }
}
