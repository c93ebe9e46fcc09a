//! Convolution building blocks shared by the HRNet family (and any ResNet-style network).
//!
//! Every block registers its variables under exactly the sub-paths that the PyTorch modules of
//! torchvision's ResNet and the official HRNet code give them (`conv1`, `bn1`, ...,
//! `downsample.0`, `downsample.1`; `nn.Sequential` children numbered `0`, `1`, ...), so that a
//! checkpoint's state_dict can be copied into a [`tch::nn::VarStore`] name for name.
//!
//! All blocks implement [`ModuleT`]: the `train` flag selects batch statistics (and updates the
//! running statistics) in BatchNorm, exactly like `module.train()` / `module.eval()` in PyTorch.

use posekit_core::Result;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::export::{graph::same_pads, OnnxGraph, Value};

/// BatchNorm epsilon of PyTorch's `nn.BatchNorm2d` default, used by every official HRNet layer.
pub const BN_EPS: f64 = 1e-5;
/// BatchNorm momentum of the official code (`BN_MOMENTUM = 0.1`, also PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;
/// Standard deviation of the official HRNet initialisation of convolution weights
/// (`nn.init.normal_(m.weight, std=0.001)` in `init_weights`), so that a network trained from
/// scratch with posekit starts where the official training starts.
pub const CONV_INIT_STD: f64 = 0.001;

fn conv_init() -> nn::Init {
    nn::Init::Randn {
        mean: 0.0,
        stdev: CONV_INIT_STD,
    }
}

/// A bias-free `k x k` convolution with "same" padding (`k / 2`), as every HRNet conv is.
pub fn conv2d_no_bias(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: k / 2,
        bias: false,
        ws_init: conv_init(),
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// A `k x k` convolution with bias, for the 1x1 (or 3x3) prediction heads.
pub fn conv2d_bias(p: nn::Path, cin: i64, cout: i64, k: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride: 1,
        padding: k / 2,
        bias: true,
        ws_init: conv_init(),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// `nn.BatchNorm2d(c)` with PyTorch's initialisation (weight 1, bias 0; tch's default weight
/// init is uniform, which would make from-scratch training differ from the reference).
pub fn batch_norm(p: nn::Path, c: i64) -> BatchNorm {
    let cfg = nn::BatchNormConfig {
        eps: BN_EPS,
        momentum: BN_MOMENTUM,
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    BatchNorm {
        inner: nn::batch_norm2d(p, c, cfg),
        eps: BN_EPS,
        momentum: BN_MOMENTUM,
    }
}

/// tch's `nn::BatchNorm` (the same variables under the same keys: `weight`, `bias`,
/// `running_mean`, `running_var`), which becomes SyncBatchNorm in a training forward run
/// inside [`crate::sync_bn::with_batch_norm_sync`]; everywhere else it is the plain one.
/// Derefs to the tch module for its variables.
#[derive(Debug)]
pub struct BatchNorm {
    inner: nn::BatchNorm,
    eps: f64,
    momentum: f64,
}

impl std::ops::Deref for BatchNorm {
    type Target = nn::BatchNorm;

    fn deref(&self) -> &nn::BatchNorm {
        &self.inner
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train {
            if let Some(y) =
                crate::sync_bn::forward_in_scope(&self.inner, xs, self.eps, self.momentum)
            {
                return y;
            }
        }
        self.inner.forward_t(xs, train)
    }
}

/// A bias-free convolution followed by BatchNorm, stored under two separate paths (the
/// checkpoint's keys) and foldable into one biased convolution for inference.
///
/// Folding (`w' = w * g / sqrt(v + eps)`, `b' = beta - m * g / sqrt(v + eps)`) removes a
/// full pass over every feature map; PyTorch eager does not do it, so it is where a
/// libtorch port can be faster on the same kernels. The folded copy is a cache: the VarStore
/// keeps the original variables (saving, training and train-mode forwards use them), and
/// eval-mode forwards use the cache until [`ConvNorm::unfold`] or a new fold.
#[derive(Debug)]
pub struct ConvNorm {
    pub conv: nn::Conv2D,
    pub bn: BatchNorm,
    stride: i64,
    padding: i64,
    folded: Option<(Tensor, Tensor)>,
}

impl ConvNorm {
    pub fn new(conv: nn::Path, bn: nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> Self {
        ConvNorm {
            conv: conv2d_no_bias(conv, cin, cout, k, stride),
            bn: batch_norm(bn, cout),
            stride,
            padding: k / 2,
            folded: None,
        }
    }

    /// Computes the folded convolution from the current weights and running statistics.
    pub fn fold(&mut self) {
        self.folded = Some(fold_into(&self.conv.ws, self.conv.bs.as_ref(), &self.bn, 0));
    }

    /// Drops the folded copy (eval forwards go back to conv + BN).
    pub fn unfold(&mut self) {
        self.folded = None;
    }

    pub fn is_folded(&self) -> bool {
        self.folded.is_some()
    }

    /// The eval-mode forward as one ONNX convolution with the BatchNorm folded in.
    pub fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        let (w, b) = fold_into(&self.conv.ws, self.conv.bs.as_ref(), &self.bn, 0);
        g.conv(x, &w, Some(&b), self.stride, same_pads(self.padding), 1)
    }
}

/// Folds eval-mode BatchNorm into a convolution weight whose output channels lie along
/// `out_dim` (0 for `Conv2d`, 1 for `ConvTranspose2d`). Returns `(weight, bias)`.
pub fn fold_into(
    weight: &Tensor,
    bias: Option<&Tensor>,
    bn: &nn::BatchNorm,
    out_dim: usize,
) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let inv_std = (&bn.running_var + BN_EPS).rsqrt();
        let scale = match &bn.ws {
            Some(g) => g * &inv_std,
            None => inv_std,
        };
        let mut shape = vec![1i64; weight.dim()];
        shape[out_dim] = -1;
        let w = weight * scale.reshape(shape.as_slice());
        let conv_bias = match bias {
            Some(b) => b.shallow_clone(),
            None => bn.running_mean.zeros_like(),
        };
        let mut b = (conv_bias - &bn.running_mean) * &scale;
        if let Some(beta) = &bn.bs {
            b += beta;
        }
        (w.detach(), b.detach())
    })
}

impl ModuleT for ConvNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match (&self.folded, train) {
            (Some((w, b)), false) => xs.conv2d(
                w,
                Some(b),
                [self.stride, self.stride],
                [self.padding, self.padding],
                [1, 1],
                1,
            ),
            _ => xs.apply(&self.conv).apply_t(&self.bn, train),
        }
    }
}

/// `nn.Sequential(Conv2d(bias=False), BatchNorm2d[, ReLU])`: the conv sits at `0`, the BN at
/// `1` (a ReLU has no parameters, so it takes no key).
#[derive(Debug)]
pub struct ConvBn {
    inner: ConvNorm,
    relu: bool,
}

impl ConvBn {
    pub fn new(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, relu: bool) -> Self {
        ConvBn {
            inner: ConvNorm::new(&p / 0, &p / 1, cin, cout, k, stride),
            relu,
        }
    }

    pub fn fold_batch_norm(&mut self) {
        self.inner.fold();
    }

    pub fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        let y = self.inner.export(g, x)?;
        Ok(if self.relu { g.relu(&y) } else { y })
    }
}

impl ModuleT for ConvBn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = self.inner.forward_t(xs, train);
        if self.relu {
            y.relu()
        } else {
            y
        }
    }
}

/// Which residual block a stage is made of; serialised as the official YAML spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockKind {
    #[serde(rename = "BASIC")]
    Basic,
    #[serde(rename = "BOTTLENECK")]
    Bottleneck,
}

impl BlockKind {
    /// Output channels over `planes`: 1 for BasicBlock, 4 for Bottleneck.
    pub fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// Two 3x3 conv-BN with a ReLU between them and after the residual sum.
#[derive(Debug)]
pub struct BasicBlock {
    first: ConvNorm,
    second: ConvNorm,
    downsample: Option<ConvBn>,
}

impl BasicBlock {
    /// `downsample` is needed when the residual does not have the output's shape (stride or
    /// channel change); it is then a 1x1 conv + BN at `downsample.0` / `downsample.1`.
    pub fn new(p: nn::Path, inplanes: i64, planes: i64, stride: i64) -> Self {
        let needs_downsample = stride != 1 || inplanes != planes;
        BasicBlock {
            first: ConvNorm::new(&p / "conv1", &p / "bn1", inplanes, planes, 3, stride),
            second: ConvNorm::new(&p / "conv2", &p / "bn2", planes, planes, 3, 1),
            downsample: needs_downsample
                .then(|| ConvBn::new(&p / "downsample", inplanes, planes, 1, stride, false)),
        }
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = self.first.forward_t(xs, train).relu();
        let y = self.second.forward_t(&y, train);
        let residual = match &self.downsample {
            Some(d) => d.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        (y + residual).relu()
    }
}

impl BasicBlock {
    pub fn fold_batch_norm(&mut self) {
        self.first.fold();
        self.second.fold();
        if let Some(d) = &mut self.downsample {
            d.fold_batch_norm();
        }
    }

    /// [`ModuleT::forward_t`] in eval mode, as ONNX nodes.
    pub fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        let y = self.first.export(g, x)?;
        let y = g.relu(&y);
        let y = self.second.export(g, &y)?;
        let residual = match &self.downsample {
            Some(d) => d.export(g, x)?,
            None => x.clone(),
        };
        let sum = g.add(&y, &residual);
        Ok(g.relu(&sum))
    }
}

/// 1x1 reduce, 3x3 (carrying the stride, as in torchvision's ResNet v1.5 and HRNet), 1x1
/// expand by 4, with a ReLU after each BN but the last, which comes after the residual sum.
#[derive(Debug)]
pub struct Bottleneck {
    reduce: ConvNorm,
    spatial: ConvNorm,
    expand: ConvNorm,
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    pub const EXPANSION: i64 = 4;

    pub fn new(p: nn::Path, inplanes: i64, planes: i64, stride: i64) -> Self {
        let out = planes * Self::EXPANSION;
        let needs_downsample = stride != 1 || inplanes != out;
        Bottleneck {
            reduce: ConvNorm::new(&p / "conv1", &p / "bn1", inplanes, planes, 1, 1),
            spatial: ConvNorm::new(&p / "conv2", &p / "bn2", planes, planes, 3, stride),
            expand: ConvNorm::new(&p / "conv3", &p / "bn3", planes, out, 1, 1),
            downsample: needs_downsample
                .then(|| ConvBn::new(&p / "downsample", inplanes, out, 1, stride, false)),
        }
    }
}

impl ModuleT for Bottleneck {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = self.reduce.forward_t(xs, train).relu();
        let y = self.spatial.forward_t(&y, train).relu();
        let y = self.expand.forward_t(&y, train);
        let residual = match &self.downsample {
            Some(d) => d.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        (y + residual).relu()
    }
}

impl Bottleneck {
    pub fn fold_batch_norm(&mut self) {
        self.reduce.fold();
        self.spatial.fold();
        self.expand.fold();
        if let Some(d) = &mut self.downsample {
            d.fold_batch_norm();
        }
    }

    /// [`ModuleT::forward_t`] in eval mode, as ONNX nodes.
    pub fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        let y = self.reduce.export(g, x)?;
        let y = g.relu(&y);
        let y = self.spatial.export(g, &y)?;
        let y = g.relu(&y);
        let y = self.expand.export(g, &y)?;
        let residual = match &self.downsample {
            Some(d) => d.export(g, x)?,
            None => x.clone(),
        };
        let sum = g.add(&y, &residual);
        Ok(g.relu(&sum))
    }
}

/// Either kind of residual block, so that a stage's block type can come from a config.
// Built once per network and never moved in a hot path: boxing the larger variant would only
// add an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ResidualBlock {
    Basic(BasicBlock),
    Bottleneck(Bottleneck),
}

impl ResidualBlock {
    pub fn new(p: nn::Path, kind: BlockKind, inplanes: i64, planes: i64, stride: i64) -> Self {
        match kind {
            BlockKind::Basic => ResidualBlock::Basic(BasicBlock::new(p, inplanes, planes, stride)),
            BlockKind::Bottleneck => {
                ResidualBlock::Bottleneck(Bottleneck::new(p, inplanes, planes, stride))
            }
        }
    }
}

impl ResidualBlock {
    pub fn fold_batch_norm(&mut self) {
        match self {
            ResidualBlock::Basic(b) => b.fold_batch_norm(),
            ResidualBlock::Bottleneck(b) => b.fold_batch_norm(),
        }
    }

    pub fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        match self {
            ResidualBlock::Basic(b) => b.export(g, x),
            ResidualBlock::Bottleneck(b) => b.export(g, x),
        }
    }
}

impl ModuleT for ResidualBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            ResidualBlock::Basic(b) => b.forward_t(xs, train),
            ResidualBlock::Bottleneck(b) => b.forward_t(xs, train),
        }
    }
}

/// An `nn.Sequential` of residual blocks as built by ResNet's `_make_layer`: the first block
/// carries the stride and any channel change (hence the only possible `downsample`), the others
/// map `planes * expansion` to itself. Blocks sit at `0`, `1`, ...
#[derive(Debug)]
pub struct ResidualStack {
    blocks: Vec<ResidualBlock>,
}

impl ResidualStack {
    pub fn new(
        p: nn::Path,
        kind: BlockKind,
        inplanes: i64,
        planes: i64,
        num_blocks: usize,
        stride: i64,
    ) -> Self {
        let out = planes * kind.expansion();
        let blocks = (0..num_blocks)
            .map(|i| {
                let (cin, s) = if i == 0 { (inplanes, stride) } else { (out, 1) };
                ResidualBlock::new(&p / i, kind, cin, planes, s)
            })
            .collect();
        ResidualStack { blocks }
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn fold_batch_norm(&mut self) {
        self.blocks
            .iter_mut()
            .for_each(ResidualBlock::fold_batch_norm);
    }

    pub fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        self.blocks
            .iter()
            .try_fold(x.clone(), |y, b| b.export(g, &y))
    }
}

impl ModuleT for ResidualStack {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.blocks
            .iter()
            .fold(xs.shallow_clone(), |x, b| b.forward_t(&x, train))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn keys(vs: &nn::VarStore) -> Vec<(String, Vec<i64>)> {
        let mut k: Vec<_> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.size()))
            .collect();
        k.sort();
        k
    }

    #[test]
    fn bottleneck_keys_follow_torchvision() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = Bottleneck::new(vs.root() / "layer1" / 0, 64, 64, 1);
        let names: Vec<String> = keys(&vs).into_iter().map(|(n, _)| n).collect();
        for expected in [
            "layer1.0.conv1.weight",
            "layer1.0.bn1.running_var",
            "layer1.0.conv3.weight",
            "layer1.0.bn3.bias",
            "layer1.0.downsample.0.weight",
            "layer1.0.downsample.1.running_mean",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing in {names:?}"
            );
        }
        // 3 convs + 3 BN (4 tensors each) + downsample conv + BN
        assert_eq!(names.len(), 3 + 12 + 1 + 4);
    }

    #[test]
    fn basic_block_without_shape_change_has_no_downsample() {
        let vs = nn::VarStore::new(Device::Cpu);
        let b = BasicBlock::new(vs.root(), 16, 16, 1);
        assert!(b.downsample.is_none());
        let x = Tensor::randn([2, 16, 8, 8], (Kind::Float, Device::Cpu));
        assert_eq!(b.forward_t(&x, false).size(), vec![2, 16, 8, 8]);
        let b2 = BasicBlock::new(vs.root() / "s2", 16, 32, 2);
        assert_eq!(b2.forward_t(&x, false).size(), vec![2, 32, 4, 4]);
    }

    #[test]
    fn folded_blocks_match_conv_then_batch_norm_in_eval() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut stack = ResidualStack::new(vs.root(), BlockKind::Bottleneck, 8, 4, 2, 2);
        let mut basic = BasicBlock::new(vs.root() / "b", 16, 16, 1);
        // Non-trivial statistics and affine parameters.
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                let r = t.rand_like();
                if name.ends_with("running_var") || (name.ends_with("weight") && t.dim() == 1) {
                    t.copy_(&(r + 0.5));
                } else if t.dim() == 1 {
                    t.copy_(&(r - 0.5));
                }
            }
        });
        let x = Tensor::randn([2, 8, 12, 10], (Kind::Float, Device::Cpu));
        let before = stack.forward_t(&x, false);
        let x2 = Tensor::randn([2, 16, 6, 5], (Kind::Float, Device::Cpu));
        let before2 = basic.forward_t(&x2, false);
        stack.fold_batch_norm();
        basic.fold_batch_norm();
        let after = stack.forward_t(&x, false);
        let after2 = basic.forward_t(&x2, false);
        assert!(after.allclose(&before, 1e-4, 1e-5, false));
        assert!(after2.allclose(&before2, 1e-4, 1e-5, false));
        // Train-mode forwards ignore the folded copy.
        let t1 = stack.forward_t(&x, true);
        assert_eq!(t1.size(), before.size());
    }

    #[test]
    fn residual_output_is_relu_of_sum() {
        // With zero conv weights the block output is relu(bn2(0) + x) = relu(bias + x) = relu(x).
        let vs = nn::VarStore::new(Device::Cpu);
        let b = BasicBlock::new(vs.root(), 4, 4, 1);
        tch::no_grad(|| {
            for (_, mut t) in vs.variables() {
                if t.dim() == 4 {
                    let _ = t.zero_();
                }
            }
        });
        let x = Tensor::randn([1, 4, 5, 5], (Kind::Float, Device::Cpu));
        let y = b.forward_t(&x, false);
        assert!(y.allclose(&x.relu(), 1e-6, 1e-6, false));
    }
}
