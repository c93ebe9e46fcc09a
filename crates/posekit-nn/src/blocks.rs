//! Convolution building blocks shared by the HRNet family (and any ResNet-style network).
//!
//! Every block registers its variables under exactly the sub-paths that the PyTorch modules of
//! torchvision's ResNet and the official HRNet code give them (`conv1`, `bn1`, ...,
//! `downsample.0`, `downsample.1`; `nn.Sequential` children numbered `0`, `1`, ...), so that a
//! checkpoint's state_dict can be copied into a [`tch::nn::VarStore`] name for name.
//!
//! All blocks implement [`ModuleT`]: the `train` flag selects batch statistics (and updates the
//! running statistics) in BatchNorm, exactly like `module.train()` / `module.eval()` in PyTorch.

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

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
pub fn batch_norm(p: nn::Path, c: i64) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig {
        eps: BN_EPS,
        momentum: BN_MOMENTUM,
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::batch_norm2d(p, c, cfg)
}

/// `nn.Sequential(Conv2d(bias=False), BatchNorm2d[, ReLU])`: the conv sits at `0`, the BN at
/// `1` (a ReLU has no parameters, so it takes no key).
#[derive(Debug)]
pub struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    relu: bool,
}

impl ConvBn {
    pub fn new(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, relu: bool) -> Self {
        ConvBn {
            conv: conv2d_no_bias(&p / 0, cin, cout, k, stride),
            bn: batch_norm(&p / 1, cout),
            relu,
        }
    }
}

impl ModuleT for ConvBn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = xs.apply(&self.conv).apply_t(&self.bn, train);
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
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    downsample: Option<ConvBn>,
}

impl BasicBlock {
    /// `downsample` is needed when the residual does not have the output's shape (stride or
    /// channel change); it is then a 1x1 conv + BN at `downsample.0` / `downsample.1`.
    pub fn new(p: nn::Path, inplanes: i64, planes: i64, stride: i64) -> Self {
        let needs_downsample = stride != 1 || inplanes != planes;
        BasicBlock {
            conv1: conv2d_no_bias(&p / "conv1", inplanes, planes, 3, stride),
            bn1: batch_norm(&p / "bn1", planes),
            conv2: conv2d_no_bias(&p / "conv2", planes, planes, 3, 1),
            bn2: batch_norm(&p / "bn2", planes),
            downsample: needs_downsample
                .then(|| ConvBn::new(&p / "downsample", inplanes, planes, 1, stride, false)),
        }
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train);
        let residual = match &self.downsample {
            Some(d) => d.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        (y + residual).relu()
    }
}

/// 1x1 reduce, 3x3 (carrying the stride, as in torchvision's ResNet v1.5 and HRNet), 1x1
/// expand by 4, with a ReLU after each BN but the last, which comes after the residual sum.
#[derive(Debug)]
pub struct Bottleneck {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2D,
    bn3: nn::BatchNorm,
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    pub const EXPANSION: i64 = 4;

    pub fn new(p: nn::Path, inplanes: i64, planes: i64, stride: i64) -> Self {
        let out = planes * Self::EXPANSION;
        let needs_downsample = stride != 1 || inplanes != out;
        Bottleneck {
            conv1: conv2d_no_bias(&p / "conv1", inplanes, planes, 1, 1),
            bn1: batch_norm(&p / "bn1", planes),
            conv2: conv2d_no_bias(&p / "conv2", planes, planes, 3, stride),
            bn2: batch_norm(&p / "bn2", planes),
            conv3: conv2d_no_bias(&p / "conv3", planes, out, 1, 1),
            bn3: batch_norm(&p / "bn3", out),
            downsample: needs_downsample
                .then(|| ConvBn::new(&p / "downsample", inplanes, out, 1, stride, false)),
        }
    }
}

impl ModuleT for Bottleneck {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train)
            .relu()
            .apply(&self.conv3)
            .apply_t(&self.bn3, train);
        let residual = match &self.downsample {
            Some(d) => d.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        (y + residual).relu()
    }
}

/// Either kind of residual block, so that a stage's block type can come from a config.
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
