//! The Stacked Hourglass network of Newell et al. ("Stacked Hourglass Networks for Human Pose
//! Estimation", ECCV 2016) as the common PyTorch port builds it: bearpaw/pytorch-pose,
//! `pose/models/hourglass.py` (`HourglassNet(Bottleneck, num_stacks, num_blocks,
//! num_classes)`), so that its released checkpoints load key for key.
//!
//! The one residual module is a pre-activation bottleneck with expansion 2
//! (`bn1-relu-conv1` 1x1 to half width, `bn2-relu-conv2` 3x3, `bn3-relu-conv3` 1x1 back), every
//! convolution with a bias, and a biased 1x1 convolution `downsample.0` on the skip when the
//! widths differ. The stem is `conv1` (7x7 stride 2, biased), `bn1`, ReLU, `layer1` (64 -> 128),
//! a 2x2 max-pool, `layer2` (128 -> 256), `layer3` (256 -> 256). Each stack `s` is an order-4 hourglass
//! `hg.s` (max-pool down, nearest x2 up), `res.s` (`num_blocks` bottlenecks), `fc.s`
//! (`fc.s.0` biased 1x1 conv, `fc.s.1` BN, ReLU) and the heatmap conv `score.s`; between
//! stacks the features and heatmaps are remapped (`fc_.s`, `score_.s`, biased 1x1 convs) and
//! added to the stack's input. Every stack's heatmaps are outputs (intermediate supervision).
//!
//! Key layout of one hourglass (`Hourglass._make_hour_glass`): `hg.s.hg.{d}.{j}.{b}` where
//! `d` indexes the level from the bottom (`hg[n-1]` serves the order-`n` recursion, so `d = 3`
//! is the outermost level), `j` the residual: 0 the full-resolution skip (`up1`), 1 after the
//! max-pool (`low1`), 2 before the upsampling (`low3`), and, at the bottom level `d = 0` only,
//! 3 the innermost residual (`low2`); `b` the bottleneck within that residual.

use std::path::Path;

use posekit_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::blocks::{batch_norm, fold_into, BatchNorm, BN_EPS};
use crate::export::graph::same_pads;
use crate::export::{OnnxGraph, Value};

/// The arguments of bearpaw's `HourglassNet`, plus the widths it hard-codes (so that parity
/// fixtures can use a small network of the same structure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackedHourglassConfig {
    pub num_stacks: usize,
    /// Bottlenecks per residual (`num_blocks`; bearpaw's `hg1/hg2/hg4/hg8` used 8/4/2/1).
    pub num_blocks: usize,
    /// Heatmap channels (`num_classes`).
    pub num_joints: i64,
    /// Width of the stem conv and bottleneck width of `layer1` (bearpaw's `self.inplanes =
    /// 64`); `layer2`'s is twice that.
    #[serde(default = "default_stem_planes")]
    pub stem_planes: i64,
    /// Bottleneck width of the hourglasses (`self.num_feats = 128`; features are twice that).
    #[serde(default = "default_num_feats")]
    pub num_feats: i64,
    /// Order of each hourglass (bearpaw: 4).
    #[serde(default = "default_depth")]
    pub depth: usize,
}

fn default_stem_planes() -> i64 {
    64
}

fn default_num_feats() -> i64 {
    128
}

fn default_depth() -> usize {
    4
}

impl StackedHourglassConfig {
    /// bearpaw's MPII model with `stacks` stacks of `blocks` bottlenecks per residual.
    pub fn mpii(stacks: usize, blocks: usize) -> Self {
        StackedHourglassConfig {
            num_stacks: stacks,
            num_blocks: blocks,
            num_joints: crate::models::hrnet::MPII_JOINTS,
            stem_planes: default_stem_planes(),
            num_feats: default_num_feats(),
            depth: default_depth(),
        }
    }

    /// The command-line presets: `hourglass-S` is bearpaw's `hgS` factory (before its
    /// `hg(num_stacks, num_blocks)` generalisation): 1/2/4/8 stacks with 8/4/2/1 bottlenecks
    /// per residual, so that every preset has about the same depth of residuals.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "hourglass-1" => Ok(Self::mpii(1, 8)),
            "hourglass-2" => Ok(Self::mpii(2, 4)),
            "hourglass-4" => Ok(Self::mpii(4, 2)),
            "hourglass-8" => Ok(Self::mpii(8, 1)),
            other => Err(Error::Shape(format!(
                "unknown Stacked Hourglass preset '{other}' (hourglass-1, -2, -4, -8)"
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

    /// What would otherwise panic while building.
    fn check_fields(&self) -> std::result::Result<(), (String, String)> {
        let positive = [
            ("num_stacks", self.num_stacks as i64),
            ("num_blocks", self.num_blocks as i64),
            ("num_joints", self.num_joints),
            ("stem_planes", self.stem_planes),
            ("num_feats", self.num_feats),
            ("depth", self.depth as i64),
        ];
        for (field, v) in positive {
            if v <= 0 {
                return Err((field.into(), format!("must be at least 1, got {v}")));
            }
        }
        if self.depth > 16 {
            return Err((
                "depth".into(),
                format!("{} is not a sane order", self.depth),
            ));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        self.check_fields()
            .map_err(|(f, m)| Error::Shape(format!("Stacked Hourglass config: {f}: {m}")))
    }
}

/// `nn.Conv2d(cin, cout, k, stride, padding=k/2, bias=True)` with PyTorch's default
/// initialisation (`kaiming_uniform_(a=sqrt(5))` for the weight, `U(-1/sqrt(fan_in), ..)` for
/// the bias, i.e. both uniform in +-1/sqrt(fan_in)): bearpaw trains from that initialisation.
fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> nn::Conv2D {
    let bound = 1.0 / ((cin * k * k) as f64).sqrt();
    let init = nn::Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let cfg = nn::ConvConfig {
        stride,
        padding: k / 2,
        bias: true,
        ws_init: init,
        bs_init: init,
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// bearpaw's pre-activation `Bottleneck` (expansion 2): `inplanes -> planes -> planes ->
/// 2 * planes`, stride 1 (the port never strides one).
#[derive(Debug)]
struct Bottleneck {
    bn1: BatchNorm,
    conv1: nn::Conv2D,
    bn2: BatchNorm,
    conv2: nn::Conv2D,
    bn3: BatchNorm,
    conv3: nn::Conv2D,
    /// `downsample.0`: only where `inplanes != 2 * planes` (`_make_residual`'s test).
    downsample: Option<nn::Conv2D>,
}

impl Bottleneck {
    fn new(p: nn::Path, inplanes: i64, planes: i64) -> Self {
        let downsample = (inplanes != 2 * planes)
            .then(|| conv(&p / "downsample" / 0, inplanes, 2 * planes, 1, 1));
        Bottleneck {
            bn1: batch_norm(&p / "bn1", inplanes),
            conv1: conv(&p / "conv1", inplanes, planes, 1, 1),
            bn2: batch_norm(&p / "bn2", planes),
            conv2: conv(&p / "conv2", planes, planes, 3, 1),
            bn3: batch_norm(&p / "bn3", planes),
            conv3: conv(&p / "conv3", planes, 2 * planes, 1, 1),
            downsample,
        }
    }
}

impl ModuleT for Bottleneck {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let out = x
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv1)
            .apply_t(&self.bn2, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn3, train)
            .relu()
            .apply(&self.conv3);
        // The skip is the block's input before `bn1` (the port's `residual = x`).
        match &self.downsample {
            Some(d) => out + x.apply(d),
            None => out + x,
        }
    }
}

impl Bottleneck {
    /// The eval-mode forward as ONNX nodes. `bn1` opens the block after the previous residual
    /// sum, so no convolution precedes it: it becomes a per-channel scale and shift
    /// ([`OnnxGraph::channel_affine`]); `bn2` and `bn3` follow `conv1` and `conv2` directly and
    /// are folded into them.
    fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        let y = bn_affine(g, x, &self.bn1)?;
        let y = g.relu(&y);
        let (w, b) = fold_into(&self.conv1.ws, self.conv1.bs.as_ref(), &self.bn2, 0);
        let y = g.conv(&y, &w, Some(&b), 1, same_pads(0), 1)?;
        let y = g.relu(&y);
        let (w, b) = fold_into(&self.conv2.ws, self.conv2.bs.as_ref(), &self.bn3, 0);
        let y = g.conv(&y, &w, Some(&b), 1, same_pads(1), 1)?;
        let y = g.relu(&y);
        let y = g.conv_same(&y, &self.conv3.ws, self.conv3.bs.as_ref())?;
        let skip = match &self.downsample {
            Some(d) => g.conv_same(x, &d.ws, d.bs.as_ref())?,
            None => x.clone(),
        };
        Ok(g.add(&y, &skip))
    }
}

/// An eval-mode BatchNorm as `x * scale + shift`, `scale = gamma / sqrt(var + eps)` and
/// `shift = beta - mean * scale` (PyTorch's inference formula).
fn bn_affine(g: &mut OnnxGraph, x: &Value, bn: &nn::BatchNorm) -> Result<Value> {
    let (scale, shift) = tch::no_grad(|| {
        let inv_std = (&bn.running_var + BN_EPS).rsqrt();
        let scale = match &bn.ws {
            Some(gamma) => gamma * &inv_std,
            None => inv_std,
        };
        let shift = match &bn.bs {
            Some(beta) => beta - &bn.running_mean * &scale,
            None => -(&bn.running_mean * &scale),
        };
        (scale.detach(), shift.detach())
    });
    g.channel_affine(x, &scale, &shift)
}

/// An `nn.Sequential` of bottlenecks at `p.{b}`: the first maps `inplanes` to `2 * planes`,
/// the others keep `2 * planes` (`HourglassNet._make_residual` and
/// `Hourglass._make_residual` alike).
#[derive(Debug)]
struct Residual {
    blocks: Vec<Bottleneck>,
}

impl Residual {
    fn new(p: nn::Path, inplanes: i64, planes: i64, n: usize) -> Self {
        let blocks = (0..n)
            .map(|b| {
                let cin = if b == 0 { inplanes } else { 2 * planes };
                Bottleneck::new(&p / b, cin, planes)
            })
            .collect();
        Residual { blocks }
    }
}

impl Residual {
    fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        let mut y = x.clone();
        for b in &self.blocks {
            y = b.export(g, &y)?;
        }
        Ok(y)
    }
}

impl ModuleT for Residual {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.blocks
            .iter()
            .fold(x.shallow_clone(), |y, b| b.forward_t(&y, train))
    }
}

/// bearpaw's `Hourglass`: `levels[d]` are the residuals of `hg.{d}` (see the module docs).
#[derive(Debug)]
struct Hourglass {
    levels: Vec<Vec<Residual>>,
}

impl Hourglass {
    fn new(p: nn::Path, planes: i64, blocks: usize, depth: usize) -> Self {
        let hg = &p / "hg";
        let levels = (0..depth)
            .map(|d| {
                let count = if d == 0 { 4 } else { 3 };
                (0..count)
                    .map(|j| Residual::new(&hg / d / j, 2 * planes, planes, blocks))
                    .collect()
            })
            .collect();
        Hourglass { levels }
    }

    /// `_hour_glass_forward(n, x)`.
    fn forward_order(&self, n: usize, x: &Tensor, train: bool) -> Tensor {
        let level = &self.levels[n - 1];
        let up1 = level[0].forward_t(x, train);
        let low1 = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        let low1 = level[1].forward_t(&low1, train);
        let low2 = if n > 1 {
            self.forward_order(n - 1, &low1, train)
        } else {
            level[3].forward_t(&low1, train)
        };
        let low3 = level[2].forward_t(&low2, train);
        let size = low3.size();
        // `F.interpolate(low3, scale_factor=2)` (nearest): the scale goes to the kernel too.
        up1 + low3.upsample_nearest2d([size[2] * 2, size[3] * 2], 2.0, 2.0)
    }

    /// [`Self::forward_order`] in eval mode, as ONNX nodes.
    fn export_order(&self, g: &mut OnnxGraph, n: usize, x: &Value) -> Result<Value> {
        let level = &self.levels[n - 1];
        let up1 = level[0].export(g, x)?;
        let low1 = g.max_pool(x, 2, 2);
        let low1 = level[1].export(g, &low1)?;
        let low2 = if n > 1 {
            self.export_order(g, n - 1, &low1)?
        } else {
            level[3].export(g, &low1)?
        };
        let low3 = level[2].export(g, &low2)?;
        let up2 = g.upsample_nearest(&low3, 2);
        Ok(g.add(&up1, &up2))
    }
}

/// bearpaw's `HourglassNet`: a top-down pose model whose outputs are every stack's heatmaps.
#[derive(Debug)]
pub struct StackedHourglass {
    conv1: nn::Conv2D,
    bn1: BatchNorm,
    layer1: Residual,
    layer2: Residual,
    layer3: Residual,
    hg: Vec<Hourglass>,
    res: Vec<Residual>,
    fc: Vec<(nn::Conv2D, BatchNorm)>,
    score: Vec<nn::Conv2D>,
    fc_: Vec<nn::Conv2D>,
    score_: Vec<nn::Conv2D>,
    config: StackedHourglassConfig,
}

impl StackedHourglass {
    pub fn new(p: &nn::Path, cfg: &StackedHourglassConfig) -> Result<Self> {
        cfg.validate()?;
        let stem = cfg.stem_planes;
        let planes = cfg.num_feats;
        let ch = 2 * planes;
        let k = cfg.num_joints;
        let stacks = cfg.num_stacks;
        Ok(StackedHourglass {
            conv1: conv(p / "conv1", 3, stem, 7, 2),
            bn1: batch_norm(p / "bn1", stem),
            layer1: Residual::new(p / "layer1", stem, stem, 1),
            // The port builds layer2 as `_make_residual(block, self.inplanes, 1)` after layer1
            // has set `inplanes` to 2 * 64: 128 -> 256 with a skip conv; layer3 then maps
            // 256 to 2 * num_feats (no skip conv at the real widths).
            layer2: Residual::new(p / "layer2", 2 * stem, 2 * stem, 1),
            layer3: Residual::new(p / "layer3", 4 * stem, planes, 1),
            hg: (0..stacks)
                .map(|s| Hourglass::new(p / "hg" / s, planes, cfg.num_blocks, cfg.depth))
                .collect(),
            res: (0..stacks)
                .map(|s| Residual::new(p / "res" / s, ch, planes, cfg.num_blocks))
                .collect(),
            fc: (0..stacks)
                .map(|s| {
                    let fc = p / "fc" / s;
                    (conv(&fc / 0, ch, ch, 1, 1), batch_norm(&fc / 1, ch))
                })
                .collect(),
            score: (0..stacks)
                .map(|s| conv(p / "score" / s, ch, k, 1, 1))
                .collect(),
            fc_: (0..stacks - 1)
                .map(|s| conv(p / "fc_" / s, ch, ch, 1, 1))
                .collect(),
            score_: (0..stacks - 1)
                .map(|s| conv(p / "score_" / s, k, ch, 1, 1))
                .collect(),
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &StackedHourglassConfig {
        &self.config
    }

    /// Checks an input `[N, 3, H, W]` before libtorch sees it (its shape errors are panics):
    /// the stem gives `floor(ceil(H / 2) / 2)` rows, which every hourglass level halves, so that
    /// size must divide by `2^depth` for the upsampled maps to line up with the skips (H and W
    /// multiples of 64 for bearpaw's order 4).
    pub fn check_input(&self, size: &[i64]) -> Result<()> {
        if size.len() != 4 || size[1] != 3 {
            return Err(Error::Shape(format!(
                "Stacked Hourglass expects an input [N, 3, H, W], got {size:?}"
            )));
        }
        let div = 1i64 << self.config.depth;
        for (name, &s) in [("height", &size[2]), ("width", &size[3])] {
            let quarter = ((s + 1) / 2) / 2;
            if quarter <= 0 || quarter % div != 0 {
                return Err(Error::Shape(format!(
                    "Stacked Hourglass input {name} {s}: after the stride-4 stem it is \
                     {quarter}, which must be a positive multiple of {div} (use a multiple \
                     of {})",
                    4 * div
                )));
            }
        }
        Ok(())
    }

    /// Every stack's heatmaps `[N, K, H/4, W/4]`, first stack first (`HourglassNet.forward`).
    /// No input check: see [`Self::check_input`].
    pub fn forward_stacks(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let x = x.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        let x = self.layer1.forward_t(&x, train);
        let x = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        let x = self.layer2.forward_t(&x, train);
        let mut x = self.layer3.forward_t(&x, train);
        let stacks = self.hg.len();
        let mut out = Vec::with_capacity(stacks);
        for s in 0..stacks {
            let y = self.hg[s].forward_order(self.config.depth, &x, train);
            let y = self.res[s].forward_t(&y, train);
            let (fc, bn) = &self.fc[s];
            let y = y.apply(fc).apply_t(bn, train).relu();
            let score = y.apply(&self.score[s]);
            if s + 1 < stacks {
                x = x + y.apply(&self.fc_[s]) + score.apply(&self.score_[s]);
            }
            out.push(score);
        }
        out
    }

    /// The network as ONNX nodes after `x`: [`Self::forward_named`] in eval mode, every BatchNorm
    /// that follows a convolution folded into it (see `Bottleneck::export` for the others).
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &Value) -> Result<Vec<(String, Value)>> {
        let (w, b) = fold_into(&self.conv1.ws, self.conv1.bs.as_ref(), &self.bn1, 0);
        let y = g.conv(x, &w, Some(&b), 2, same_pads(3), 1)?;
        let y = g.relu(&y);
        let y = self.layer1.export(g, &y)?;
        let y = g.max_pool(&y, 2, 2);
        let y = self.layer2.export(g, &y)?;
        let mut x = self.layer3.export(g, &y)?;
        let stacks = self.hg.len();
        let mut out = Vec::with_capacity(stacks);
        for s in 0..stacks {
            let y = self.hg[s].export_order(g, self.config.depth, &x)?;
            let y = self.res[s].export(g, &y)?;
            let (fc, bn) = &self.fc[s];
            let (w, b) = fold_into(&fc.ws, fc.bs.as_ref(), bn, 0);
            let y = g.conv(&y, &w, Some(&b), 1, same_pads(0), 1)?;
            let y = g.relu(&y);
            let score = g.conv_same(&y, &self.score[s].ws, self.score[s].bs.as_ref())?;
            if s + 1 < stacks {
                let fc_ = &self.fc_[s];
                let score_ = &self.score_[s];
                let a = g.conv_same(&y, &fc_.ws, fc_.bs.as_ref())?;
                let b = g.conv_same(&score, &score_.ws, score_.bs.as_ref())?;
                let sum = g.add(&x, &a);
                x = g.add(&sum, &b);
            }
            out.push((format!("stack{s}.heatmaps"), score));
        }
        Ok(out)
    }

    /// [`Self::forward_stacks`] after checking the input shape (use this for user data).
    pub fn heatmaps(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        self.check_input(&x.size())?;
        Ok(self.forward_stacks(x, train))
    }

    /// Every stack's heatmaps by name, `stack{s}.heatmaps` with `s` from 0 (the naming of the
    /// other multi-stack models); the last stack's are the prediction.
    pub fn forward_named(&self, x: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        Ok(self
            .heatmaps(x, train)?
            .into_iter()
            .enumerate()
            .map(|(s, t)| (format!("stack{s}.heatmaps"), t))
            .collect())
    }
}

impl ModuleT for StackedHourglass {
    /// The last stack's heatmaps (the prediction).
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut stacks = self.forward_stacks(x, train);
        // `num_stacks >= 1` is validated, so there is always a last stack.
        stacks
            .pop()
            .unwrap_or_else(|| Tensor::zeros([0], (x.kind(), x.device())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn tiny() -> StackedHourglassConfig {
        StackedHourglassConfig {
            num_stacks: 2,
            num_blocks: 2,
            num_joints: 3,
            stem_planes: 4,
            num_feats: 6,
            depth: 2,
        }
    }

    #[test]
    fn every_stack_outputs_quarter_resolution_heatmaps() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = StackedHourglass::new(&vs.root(), &tiny()).unwrap();
        let x = Tensor::randn([1, 3, 32, 48], (Kind::Float, Device::Cpu));
        let named = net.forward_named(&x, false).unwrap();
        let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["stack0.heatmaps", "stack1.heatmaps"]);
        for (_, t) in &named {
            assert_eq!(t.size(), vec![1, 3, 8, 12]);
        }
    }

    #[test]
    fn keys_follow_the_port() {
        let vs = nn::VarStore::new(Device::Cpu);
        StackedHourglass::new(&vs.root(), &tiny()).unwrap();
        let names: Vec<String> = vs.variables().into_keys().collect();
        let has = |k: &str| names.iter().any(|n| n == k);
        // widths differ in layer1 (4 -> 8), layer2 (8 -> 16), layer3 (16 -> 12): biased 1x1
        // skips; none inside the hourglasses
        assert!(has("layer1.0.downsample.0.bias"));
        assert!(has("layer2.0.downsample.0.weight"));
        assert!(has("layer3.0.downsample.0.weight"));
        assert!(!names
            .iter()
            .any(|n| n.starts_with("hg.") && n.contains("downsample")));
        // the bottom level has the 4th residual, the others 3
        assert!(has("hg.1.hg.0.3.1.conv3.bias"));
        assert!(!has("hg.1.hg.1.3.0.conv1.weight"));
        assert!(has("fc.0.0.bias") && has("fc.0.1.running_var"));
        assert!(has("fc_.0.weight") && has("score_.0.bias") && !has("fc_.1.weight"));
    }

    #[test]
    fn bad_inputs_and_configs_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = StackedHourglass::new(&vs.root(), &tiny()).unwrap();
        let x = Tensor::zeros([1, 3, 36, 32], (Kind::Float, Device::Cpu));
        let err = net.heatmaps(&x, false).unwrap_err().to_string();
        assert!(err.contains("height 36"), "{err}");
        let x = Tensor::zeros([1, 4, 32, 32], (Kind::Float, Device::Cpu));
        assert!(net.heatmaps(&x, false).is_err());

        let mut cfg = tiny();
        cfg.num_blocks = 0;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("num_blocks"), "{err}");
        let vs = nn::VarStore::new(Device::Cpu);
        assert!(StackedHourglass::new(&vs.root(), &cfg).is_err());
        assert!(StackedHourglassConfig::preset("hourglass-3").is_err());
    }

    #[test]
    fn config_file_errors_name_the_file_and_field() {
        let dir = std::env::temp_dir().join(format!("posekit-shg-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shg.json");
        std::fs::write(
            &path,
            r#"{"num_stacks": 0, "num_blocks": 1, "num_joints": 16}"#,
        )
        .unwrap();
        let err = StackedHourglassConfig::from_json_file(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("shg.json") && err.contains("num_stacks"),
            "{err}"
        );
        std::fs::write(
            &path,
            r#"{"num_stacks": 2, "num_blocks": 1, "num_joints": 16}"#,
        )
        .unwrap();
        let cfg = StackedHourglassConfig::from_json_file(&path).unwrap();
        assert_eq!(cfg, StackedHourglassConfig::mpii(2, 1));
        std::fs::remove_dir_all(&dir).ok();
    }
}
