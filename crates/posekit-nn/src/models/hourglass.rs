//! Stacked Hourglass networks (Newell et al., "Stacked Hourglass Networks for Human Pose
//! Estimation", ECCV 2016), laid out exactly like MMPose's `HourglassNet` backbone with a
//! `TopdownHeatmapMultiStageHead` (no deconvolutions, 1x1 final convs), so that MMPose's
//! released `hourglass52_*` checkpoints load name for name once `backbone.` /
//! `keypoint_head.` are stripped (the default [`crate::weights::keymap::KeyMap`] does that).
//!
//! An hourglass module of order `n` keeps a full-resolution skip branch (`up1`), goes down one
//! resolution (`low1`), recurses (`low2`, a plain residual stack at the bottom), comes back to
//! the module's width (`low3`), upsamples by nearest-neighbour x2 and adds the skip. Stacks are
//! chained: each stack's features go through `out_convs.s` (3x3 conv-BN-ReLU) to its heatmap
//! head (intermediate supervision: every stack is trained), and the next stack's input is
//! `inters.s(relu(conv1x1s.s(input) + remap_convs.s(features)))`.
//!
//! Checkpoint layout: `stem.0.{conv,bn}` (7x7 stride 2), `stem.1.0.*` (a stride-2 BasicBlock);
//! `hourglass_modules.{s}.up1.{b}`, `.low1.{b}`, `.low2` (recursive, or `.low2.{b}` at the
//! bottom), `.low3.{b}` with `{b}` MMPose BasicBlocks (`conv1`, `bn1`, `conv2`, `bn2`,
//! `downsample.{0,1}`); `out_convs.{s}.{conv,bn}`, `conv1x1s.{s}.{conv,bn}`,
//! `remap_convs.{s}.{conv,bn}`, `inters.{s}.*`; `multi_final_layers.{s}.{weight,bias}`.
//!
//! Which architecture the preset is: MMPose's only hourglass configs
//! (`hourglass52_{coco,mpii}_{256x256,384x384}`) build `HourglassNet(num_stacks=1)` with its
//! defaults, the CornerNet-style hourglass: order 5, widths 256-256-384-384-384-512, 2
//! BasicBlocks per level (4 at the bottom), stride-2 convolutions to go down; 94.85M
//! parameters. The preset `hourglass52` is exactly that (it loads
//! `hourglass52_coco_256x256-4ec713ba`). Newell et al.'s own network (pre-activation
//! bottlenecks, the `hourglass-1/-2/-4/-8` presets) is [`crate::models::stacked_hourglass`];
//! the max-pool variant here ([`HourglassDownsample::MaxPool`]) remains as SPM's backbone.

use std::path::Path;

use posekit_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::blocks::{batch_norm, conv2d_bias, conv2d_no_bias, fold_into, BasicBlock, BatchNorm};
use crate::export::graph::same_pads;
use crate::export::{OnnxGraph, Value};
use crate::models::hrnet::COCO_JOINTS;

/// How an hourglass goes down one resolution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HourglassDownsample {
    /// MMPose: the first BasicBlock of `low1` has stride 2 (and a strided 1x1 shortcut).
    #[default]
    Conv,
    /// Newell et al.: 2x2 max-pooling, then `low1` at stride 1.
    MaxPool,
}

/// The arguments of MMPose's `HourglassNet`, same names and meanings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HourglassNetConfig {
    /// Order of each hourglass: how many times it halves the resolution.
    pub downsample_times: usize,
    pub num_stacks: usize,
    /// Width at each level, from the top (`stage_channels[0]` is the width between stacks);
    /// needs `downsample_times + 1` entries (more are ignored, as in MMPose).
    pub stage_channels: Vec<i64>,
    /// BasicBlocks per residual layer at each level; the bottom level's count is used by the
    /// innermost `low2`.
    pub stage_blocks: Vec<usize>,
    /// Width of `out_convs`, i.e. of the features the heads see.
    pub feat_channel: i64,
    /// Width of the 7x7 stem conv (MMPose hard-codes 128).
    #[serde(default = "default_stem_channels")]
    pub stem_channels: i64,
    #[serde(default)]
    pub downsample: HourglassDownsample,
}

fn default_stem_channels() -> i64 {
    128
}

/// A top-down Stacked Hourglass pose model: backbone + one 1x1 heatmap conv per stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HourglassConfig {
    pub backbone: HourglassNetConfig,
    pub num_joints: i64,
}

impl HourglassNetConfig {
    /// MMPose's `HourglassNet()` defaults (CornerNet's hourglass) with `num_stacks` stacks.
    pub fn mmpose(num_stacks: usize) -> Self {
        HourglassNetConfig {
            downsample_times: 5,
            num_stacks,
            stage_channels: vec![256, 256, 384, 384, 384, 512],
            stage_blocks: vec![2, 2, 2, 2, 2, 4],
            feat_channel: 256,
            stem_channels: 128,
            downsample: HourglassDownsample::Conv,
        }
    }

    /// Newell et al.'s table: order 4, 256 features everywhere, one residual per level,
    /// max-pooling.
    pub fn newell(num_stacks: usize) -> Self {
        HourglassNetConfig {
            downsample_times: 4,
            num_stacks,
            stage_channels: vec![256; 5],
            stage_blocks: vec![1; 5],
            feat_channel: 256,
            stem_channels: 128,
            downsample: HourglassDownsample::MaxPool,
        }
    }

    /// Checks what would otherwise panic while building: list lengths and positive widths.
    pub fn check_fields(&self) -> std::result::Result<(), (String, String)> {
        let levels = self.downsample_times + 1;
        if self.downsample_times == 0 {
            return Err(("downsample_times".into(), "must be at least 1".into()));
        }
        if self.num_stacks == 0 {
            return Err(("num_stacks".into(), "must be at least 1".into()));
        }
        for (field, len) in [
            ("stage_channels", self.stage_channels.len()),
            ("stage_blocks", self.stage_blocks.len()),
        ] {
            if len < levels {
                return Err((
                    field.into(),
                    format!(
                        "has {len} entries, downsample_times {} needs {levels}",
                        self.downsample_times
                    ),
                ));
            }
        }
        if let Some(c) = self.stage_channels.iter().find(|&&c| c <= 0) {
            return Err((
                "stage_channels".into(),
                format!("widths must be positive, got {c}"),
            ));
        }
        if self.feat_channel <= 0 {
            return Err(("feat_channel".into(), "must be positive".into()));
        }
        if self.stem_channels <= 0 {
            return Err(("stem_channels".into(), "must be positive".into()));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        self.check_fields()
            .map_err(|(f, m)| Error::Shape(format!("Hourglass config: {f}: {m}")))
    }
}

impl HourglassConfig {
    /// `hourglass52`: MMPose's `hourglass52_coco` (17 joints, 256x256 or 384x384 input).
    pub fn hourglass52() -> Self {
        HourglassConfig {
            backbone: HourglassNetConfig::mmpose(1),
            num_joints: COCO_JOINTS,
        }
    }

    /// The config behind the command-line preset `hourglass52`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "hourglass52" => Ok(Self::hourglass52()),
            other => Err(Error::Shape(format!(
                "unknown MMPose Hourglass preset '{other}' (hourglass52)"
            ))),
        }
    }

    pub fn with_num_joints(mut self, num_joints: i64) -> Self {
        self.num_joints = num_joints;
        self
    }

    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = posekit_core::error::read_file(path)?;
        let cfg: Self = serde_json::from_slice(&bytes).map_err(|e| Error::json(path, e))?;
        cfg.check_fields()
            .map_err(|(field, msg)| Error::invalid(path, field, msg))?;
        Ok(cfg)
    }

    fn check_fields(&self) -> std::result::Result<(), (String, String)> {
        if self.num_joints <= 0 {
            return Err((
                "num_joints".into(),
                format!("must be positive, got {}", self.num_joints),
            ));
        }
        self.backbone
            .check_fields()
            .map_err(|(f, m)| (format!("backbone.{f}"), m))
    }

    pub fn validate(&self) -> Result<()> {
        self.check_fields()
            .map_err(|(f, m)| Error::Shape(format!("Hourglass config: {f}: {m}")))
    }
}

/// mmcv's `ConvModule` with a BatchNorm: a bias-free conv at `conv`, the BN at `bn` (named,
/// unlike the `nn.Sequential` [`crate::blocks::ConvBn`]), then an optional ReLU.
#[derive(Debug)]
pub struct ConvModule {
    conv: nn::Conv2D,
    bn: BatchNorm,
    relu: bool,
    /// The conv's stride and padding (`k / 2`), for the export.
    stride: i64,
    padding: i64,
}

impl ConvModule {
    pub fn new(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, relu: bool) -> Self {
        ConvModule {
            conv: conv2d_no_bias(&p / "conv", cin, cout, k, stride),
            bn: batch_norm(&p / "bn", cout),
            relu,
            stride,
            padding: k / 2,
        }
    }

    /// The eval-mode forward as ONNX nodes, the BatchNorm folded into the convolution.
    pub fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        let (w, b) = fold_into(&self.conv.ws, None, &self.bn, 0);
        let y = g.conv(x, &w, Some(&b), self.stride, same_pads(self.padding), 1)?;
        Ok(if self.relu { g.relu(&y) } else { y })
    }
}

impl ModuleT for ConvModule {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = xs.apply(&self.conv).apply_t(&self.bn, train);
        if self.relu {
            y.relu()
        } else {
            y
        }
    }
}

/// MMPose's `ResLayer` of BasicBlocks at `p.{b}`. `change_first` is its `downsample_first`:
/// the stride and channel change sit in the first block (ResNet) or the last (hourglass
/// `low3`). Like MMPose, a count of 0 still builds one block: that is why a one-stack
/// checkpoint carries an unused `inters.0`, and a strict loader must find it here.
#[derive(Debug)]
struct ResLayer {
    blocks: Vec<BasicBlock>,
}

impl ResLayer {
    fn new(p: nn::Path, n: usize, cin: i64, cout: i64, stride: i64, change_first: bool) -> Self {
        let n = n.max(1);
        let blocks = (0..n)
            .map(|i| {
                let changing = if change_first { i == 0 } else { i + 1 == n };
                if changing {
                    BasicBlock::new(&p / i, cin, cout, stride)
                } else if change_first {
                    BasicBlock::new(&p / i, cout, cout, 1)
                } else {
                    BasicBlock::new(&p / i, cin, cin, 1)
                }
            })
            .collect();
        ResLayer { blocks }
    }

    fn block(&self, i: usize) -> &BasicBlock {
        &self.blocks[i]
    }

    fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        let mut y = x.clone();
        for b in &self.blocks {
            y = b.export(g, &y)?;
        }
        Ok(y)
    }
}

impl ModuleT for ResLayer {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.blocks
            .iter()
            .fold(xs.shallow_clone(), |x, b| b.forward_t(&x, train))
    }
}

/// The innermost `low2` is a residual stack, the others are hourglasses of one order less.
#[derive(Debug)]
enum Low2 {
    Inner(Box<HourglassModule>),
    Bottom(ResLayer),
}

/// One hourglass of order `depth` (MMPose's `HourglassModule`).
#[derive(Debug)]
pub struct HourglassModule {
    up1: ResLayer,
    low1: ResLayer,
    low2: Low2,
    low3: ResLayer,
    max_pool: bool,
}

impl HourglassModule {
    fn new(p: nn::Path, depth: usize, cfg: &HourglassNetConfig, level: usize) -> Self {
        let cur = cfg.stage_channels[level];
        let next = cfg.stage_channels[level + 1];
        let blocks = cfg.stage_blocks[level];
        let max_pool = cfg.downsample == HourglassDownsample::MaxPool;
        let down_stride = if max_pool { 1 } else { 2 };
        let low2 = if depth > 1 {
            Low2::Inner(Box::new(HourglassModule::new(
                &p / "low2",
                depth - 1,
                cfg,
                level + 1,
            )))
        } else {
            let n = cfg.stage_blocks[level + 1];
            Low2::Bottom(ResLayer::new(&p / "low2", n, next, next, 1, true))
        };
        HourglassModule {
            up1: ResLayer::new(&p / "up1", blocks, cur, cur, 1, true),
            low1: ResLayer::new(&p / "low1", blocks, cur, next, down_stride, true),
            low2,
            low3: ResLayer::new(&p / "low3", blocks, next, cur, 1, false),
            max_pool,
        }
    }
}

impl HourglassModule {
    /// The eval-mode forward as ONNX nodes.
    fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        let up1 = self.up1.export(g, x)?;
        let down = if self.max_pool {
            g.max_pool(x, 2, 2)
        } else {
            x.clone()
        };
        let low1 = self.low1.export(g, &down)?;
        let low2 = match &self.low2 {
            Low2::Inner(m) => m.export(g, &low1)?,
            Low2::Bottom(r) => r.export(g, &low1)?,
        };
        let low3 = self.low3.export(g, &low2)?;
        let up2 = g.upsample_nearest(&low3, 2);
        Ok(g.add(&up1, &up2))
    }
}

impl ModuleT for HourglassModule {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let up1 = self.up1.forward_t(xs, train);
        let down = if self.max_pool {
            xs.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
        } else {
            xs.shallow_clone()
        };
        let low1 = self.low1.forward_t(&down, train);
        let low2 = match &self.low2 {
            Low2::Inner(m) => m.forward_t(&low1, train),
            Low2::Bottom(r) => r.forward_t(&low1, train),
        };
        let low3 = self.low3.forward_t(&low2, train);
        let size = low3.size();
        // `nn.Upsample(scale_factor=2)`: the scale is passed to the kernel, as PyTorch does.
        up1 + low3.upsample_nearest2d([size[2] * 2, size[3] * 2], 2.0, 2.0)
    }
}

/// MMPose's `HourglassNet`: the stem and the chained stacks; returns every stack's features.
#[derive(Debug)]
pub struct HourglassBackbone {
    stem_conv: ConvModule,
    stem_block: ResLayer,
    hourglass_modules: Vec<HourglassModule>,
    inters: ResLayer,
    conv1x1s: Vec<ConvModule>,
    out_convs: Vec<ConvModule>,
    remap_convs: Vec<ConvModule>,
    downsample_times: usize,
    feat_channel: i64,
}

impl HourglassBackbone {
    pub fn new(p: &nn::Path, cfg: &HourglassNetConfig) -> Result<Self> {
        cfg.validate()?;
        let cur = cfg.stage_channels[0];
        let feat = cfg.feat_channel;
        let stacks = cfg.num_stacks;
        let stem = p / "stem";
        Ok(HourglassBackbone {
            stem_conv: ConvModule::new(&stem / 0, 3, cfg.stem_channels, 7, 2, true),
            stem_block: ResLayer::new(&stem / 1, 1, cfg.stem_channels, cur, 2, true),
            hourglass_modules: (0..stacks)
                .map(|s| {
                    HourglassModule::new(p / "hourglass_modules" / s, cfg.downsample_times, cfg, 0)
                })
                .collect(),
            inters: ResLayer::new(p / "inters", stacks - 1, cur, cur, 1, true),
            conv1x1s: (0..stacks - 1)
                .map(|s| ConvModule::new(p / "conv1x1s" / s, cur, cur, 1, 1, false))
                .collect(),
            out_convs: (0..stacks)
                .map(|s| ConvModule::new(p / "out_convs" / s, cur, feat, 3, 1, true))
                .collect(),
            remap_convs: (0..stacks - 1)
                .map(|s| ConvModule::new(p / "remap_convs" / s, feat, cur, 1, 1, false))
                .collect(),
            downsample_times: cfg.downsample_times,
            feat_channel: feat,
        })
    }

    /// Width of each stack's output features.
    pub fn feat_channel(&self) -> i64 {
        self.feat_channel
    }

    pub fn num_stacks(&self) -> usize {
        self.hourglass_modules.len()
    }

    /// Checks an input `[N, 3, H, W]` before libtorch sees it (its shape errors are panics):
    /// the stem divides H and W by 4 (rounding up) and each hourglass level halves them, so
    /// that quarter size must divide by `2^downsample_times` for the upsampled maps to line up
    /// with the skips (H and W multiples of 128 for order 5, 64 for order 4).
    pub fn check_input(&self, size: &[i64]) -> Result<()> {
        if size.len() != 4 || size[1] != 3 {
            return Err(Error::Shape(format!(
                "Hourglass expects an input [N, 3, H, W], got {size:?}"
            )));
        }
        let div = 1i64 << self.downsample_times;
        for (name, &s) in [("height", &size[2]), ("width", &size[3])] {
            let quarter = ((s + 1) / 2 + 1) / 2;
            if s <= 0 || quarter % div != 0 {
                return Err(Error::Shape(format!(
                    "Hourglass input {name} {s}: after the stride-4 stem it is {quarter}, which \
                     must be a multiple of {div} (use a multiple of {})",
                    4 * div
                )));
            }
        }
        Ok(())
    }

    /// Every stack's features `[N, feat_channel, H/4, W/4]`, first stack first. No input
    /// check: see [`Self::check_input`].
    pub fn forward_features(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        let x = self.stem_conv.forward_t(xs, train);
        let mut inter = self.stem_block.forward_t(&x, train);
        let stacks = self.hourglass_modules.len();
        let mut outs = Vec::with_capacity(stacks);
        for s in 0..stacks {
            let hg = self.hourglass_modules[s].forward_t(&inter, train);
            let out = self.out_convs[s].forward_t(&hg, train);
            if s + 1 < stacks {
                let merged = self.conv1x1s[s].forward_t(&inter, train)
                    + self.remap_convs[s].forward_t(&out, train);
                inter = self.inters.block(s).forward_t(&merged.relu(), train);
            }
            outs.push(out);
        }
        outs
    }
}

impl HourglassBackbone {
    /// [`Self::forward_features`] in eval mode as ONNX nodes, every BatchNorm folded into the
    /// convolution before it.
    pub fn export_features(&self, g: &mut OnnxGraph, x: &Value) -> Result<Vec<Value>> {
        let y = self.stem_conv.export(g, x)?;
        let mut inter = self.stem_block.export(g, &y)?;
        let stacks = self.hourglass_modules.len();
        let mut outs = Vec::with_capacity(stacks);
        for s in 0..stacks {
            let hg = self.hourglass_modules[s].export(g, &inter)?;
            let out = self.out_convs[s].export(g, &hg)?;
            if s + 1 < stacks {
                let a = self.conv1x1s[s].export(g, &inter)?;
                let b = self.remap_convs[s].export(g, &out)?;
                let merged = g.add(&a, &b);
                let merged = g.relu(&merged);
                inter = self.inters.block(s).export(g, &merged)?;
            }
            outs.push(out);
        }
        Ok(outs)
    }
}

/// The top-down Stacked Hourglass model (MMPose `TopDown` with `HourglassNet` and
/// `TopdownHeatmapMultiStageHead`).
#[derive(Debug)]
pub struct PoseHourglass {
    backbone: HourglassBackbone,
    multi_final_layers: Vec<nn::Conv2D>,
    config: HourglassConfig,
}

impl PoseHourglass {
    pub fn new(p: &nn::Path, cfg: &HourglassConfig) -> Result<Self> {
        cfg.validate()?;
        let backbone = HourglassBackbone::new(p, &cfg.backbone)?;
        let multi_final_layers = (0..cfg.backbone.num_stacks)
            .map(|s| {
                conv2d_bias(
                    p / "multi_final_layers" / s,
                    cfg.backbone.feat_channel,
                    cfg.num_joints,
                    1,
                )
            })
            .collect();
        Ok(PoseHourglass {
            backbone,
            multi_final_layers,
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &HourglassConfig {
        &self.config
    }

    pub fn backbone(&self) -> &HourglassBackbone {
        &self.backbone
    }

    /// Every stack's heatmaps `[N, K, H/4, W/4]` (train all of them: intermediate supervision;
    /// predict with the last), without input check.
    pub fn forward_stacks(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        self.backbone
            .forward_features(xs, train)
            .iter()
            .zip(&self.multi_final_layers)
            .map(|(f, head)| f.apply(head))
            .collect()
    }

    /// [`Self::forward_stacks`] after checking the input shape (use this for user data).
    pub fn heatmaps(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        self.backbone.check_input(&xs.size())?;
        Ok(self.forward_stacks(xs, train))
    }

    /// [`Self::forward_named`] as ONNX nodes (see [`HourglassBackbone::export_features`]).
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &Value) -> Result<Vec<(String, Value)>> {
        let features = self.backbone.export_features(g, x)?;
        let mut named = Vec::with_capacity(features.len());
        for (s, (f, head)) in features.iter().zip(&self.multi_final_layers).enumerate() {
            let heatmaps = g.conv_same(f, &head.ws, head.bs.as_ref())?;
            named.push((format!("stack{s}.heatmaps"), heatmaps));
        }
        Ok(named)
    }

    /// Every output head by name for the `forward` command: `stack{s}.heatmaps`, `s` from 0;
    /// the last stack's are the prediction.
    pub fn forward_named(&self, xs: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        Ok(self
            .heatmaps(xs, train)?
            .into_iter()
            .enumerate()
            .map(|(s, t)| (format!("stack{s}.heatmaps"), t))
            .collect())
    }
}

impl ModuleT for PoseHourglass {
    /// The last stack's heatmaps (the prediction).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut stacks = self.forward_stacks(xs, train);
        // `num_stacks >= 1` is validated, so there is always a last stack.
        stacks
            .pop()
            .unwrap_or_else(|| Tensor::zeros([0], (xs.kind(), xs.device())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn tiny() -> HourglassConfig {
        HourglassConfig {
            backbone: HourglassNetConfig {
                downsample_times: 2,
                num_stacks: 2,
                stage_channels: vec![6, 8, 10],
                stage_blocks: vec![1, 1, 2],
                feat_channel: 6,
                stem_channels: 4,
                downsample: HourglassDownsample::Conv,
            },
            num_joints: 3,
        }
    }

    #[test]
    fn every_stack_outputs_quarter_resolution_heatmaps() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = PoseHourglass::new(&vs.root(), &tiny()).unwrap();
        let x = Tensor::randn([1, 3, 32, 48], (Kind::Float, Device::Cpu));
        let named = net.forward_named(&x, false).unwrap();
        let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["stack0.heatmaps", "stack1.heatmaps"]);
        for (_, t) in &named {
            assert_eq!(t.size(), vec![1, 3, 8, 12]);
        }
    }

    #[test]
    fn one_stack_keeps_mmposes_unused_inters_block() {
        let mut cfg = tiny();
        cfg.backbone.num_stacks = 1;
        let vs = nn::VarStore::new(Device::Cpu);
        PoseHourglass::new(&vs.root(), &cfg).unwrap();
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert!(names.iter().any(|n| n == "inters.0.conv1.weight"));
        assert!(!names.iter().any(|n| n.starts_with("conv1x1s.")));
        assert!(!names.iter().any(|n| n.starts_with("inters.1.")));
    }

    #[test]
    fn bad_inputs_and_configs_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = PoseHourglass::new(&vs.root(), &tiny()).unwrap();
        let x = Tensor::zeros([1, 3, 36, 32], (Kind::Float, Device::Cpu));
        let err = net.heatmaps(&x, false).unwrap_err().to_string();
        assert!(err.contains("height 36"), "{err}");
        let x = Tensor::zeros([1, 4, 32, 32], (Kind::Float, Device::Cpu));
        assert!(net.heatmaps(&x, false).is_err());

        let mut cfg = tiny();
        cfg.backbone.stage_blocks.pop();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("stage_blocks"), "{err}");
        let vs = nn::VarStore::new(Device::Cpu);
        assert!(PoseHourglass::new(&vs.root(), &cfg).is_err());
        assert!(HourglassConfig::preset("hourglass-8").is_err());
        assert!(HourglassConfig::preset("hourglass52").is_ok());
    }

    #[test]
    fn config_round_trips_and_file_errors_name_the_field() {
        let cfg = HourglassConfig {
            backbone: HourglassNetConfig::newell(8),
            num_joints: crate::models::hrnet::MPII_JOINTS,
        };
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains("\"downsample\":\"max_pool\""), "{json}");
        let back: HourglassConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg);

        let dir = std::env::temp_dir().join(format!("posekit-hg-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hg.json");
        let mut bad = tiny();
        bad.backbone.num_stacks = 0;
        std::fs::write(&path, serde_json::to_string(&bad).unwrap()).unwrap();
        let err = HourglassConfig::from_json_file(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hg.json") && err.contains("backbone.num_stacks"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
