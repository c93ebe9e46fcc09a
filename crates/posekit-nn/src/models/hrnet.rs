//! HRNet for top-down pose estimation (Sun et al., "Deep High-Resolution Representation
//! Learning for Human Pose Estimation", CVPR 2019), laid out exactly like the official
//! `lib/models/pose_hrnet.py` so that the official checkpoints load name for name.
//!
//! The network keeps a high-resolution branch from the stem to the head and adds one lower
//! resolution branch per stage; inside a stage, *exchange modules* run residual blocks on each
//! branch and then fuse every branch into every other one (1x1 conv + BN + nearest upsampling
//! going up, chains of stride-2 3x3 conv + BN going down). The last module of stage 4 fuses
//! only into the high-resolution branch, and a 1x1 conv maps it to K heatmaps at 1/4 of the
//! input resolution.
//!
//! Checkpoint layout (the module paths used here):
//! `conv1`, `bn1`, `conv2`, `bn2` (stem); `layer1.{0..3}` (Bottlenecks);
//! `transition{1,2,3}.{i}` (`None` entries of the official `ModuleList` keep their index, so
//! unchanged branches simply have no keys); `stage{2,3,4}.{m}.branches.{i}.{b}` and
//! `stage{2,3,4}.{m}.fuse_layers.{i}.{j}`; `final_layer`.

use std::path::Path;

use posekit_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use crate::blocks::{conv2d_bias, BlockKind, ConvBn, ConvNorm, ResidualStack};
use crate::export::{OnnxGraph, Value};

/// Channels leaving the stem and entering `layer1` (`STEM_INPLANES` in the official YAML).
const STEM_CHANNELS: i64 = 64;
/// `layer1` is four Bottlenecks of 64 planes, i.e. 256 output channels, in every official model.
const LAYER1_PLANES: i64 = 64;
const LAYER1_BLOCKS: usize = 4;

/// How branches are merged in a fuse layer. The official code only implements a sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FuseMethod {
    #[default]
    #[serde(rename = "SUM")]
    Sum,
}

/// One stage of the official YAML (`MODEL.EXTRA.STAGE2` ...), same field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub struct StageConfig {
    /// Number of exchange modules (`HighResolutionModule`) in the stage.
    pub num_modules: usize,
    pub num_branches: usize,
    pub block: BlockKind,
    /// Residual blocks per branch in each module.
    pub num_blocks: Vec<usize>,
    /// `planes` per branch; the branch width is `planes * block.expansion()`.
    pub num_channels: Vec<i64>,
    #[serde(default)]
    pub fuse_method: FuseMethod,
}

impl StageConfig {
    /// A stage of `branches` BasicBlock branches of widths `width * 2^i` (the W32/W48 pattern).
    pub fn basic(width: i64, branches: usize, modules: usize, blocks: usize) -> Self {
        StageConfig {
            num_modules: modules,
            num_branches: branches,
            block: BlockKind::Basic,
            num_blocks: vec![blocks; branches],
            num_channels: (0..branches).map(|i| width << i).collect(),
            fuse_method: FuseMethod::Sum,
        }
    }

    /// Output width of each branch.
    pub fn branch_widths(&self) -> Vec<i64> {
        self.num_channels
            .iter()
            .map(|c| c * self.block.expansion())
            .collect()
    }

    fn validate(&self, name: &str) -> std::result::Result<(), (String, String)> {
        let err = |field: &str, msg: String| Err((format!("{name}.{field}"), msg));
        if self.num_modules == 0 {
            return err("NUM_MODULES", "must be at least 1".into());
        }
        if self.num_branches == 0 {
            return err("NUM_BRANCHES", "must be at least 1".into());
        }
        if self.num_blocks.len() != self.num_branches {
            return err(
                "NUM_BLOCKS",
                format!(
                    "has {} entries but NUM_BRANCHES is {}",
                    self.num_blocks.len(),
                    self.num_branches
                ),
            );
        }
        if self.num_channels.len() != self.num_branches {
            return err(
                "NUM_CHANNELS",
                format!(
                    "has {} entries but NUM_BRANCHES is {}",
                    self.num_channels.len(),
                    self.num_branches
                ),
            );
        }
        if let Some(c) = self.num_channels.iter().find(|&&c| c <= 0) {
            return err("NUM_CHANNELS", format!("widths must be positive, got {c}"));
        }
        Ok(())
    }
}

/// The network part of the official pose HRNet YAML (`MODEL.NUM_JOINTS` and `MODEL.EXTRA`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub struct HrnetConfig {
    pub num_joints: i64,
    /// Kernel of the heatmap head: 1 in every official model (3 is accepted, padded by 1).
    #[serde(default = "default_final_conv_kernel")]
    pub final_conv_kernel: i64,
    pub stage2: StageConfig,
    pub stage3: StageConfig,
    pub stage4: StageConfig,
}

fn default_final_conv_kernel() -> i64 {
    1
}

/// COCO has 17 keypoints.
pub const COCO_JOINTS: i64 = 17;
/// MPII has 16 keypoints.
pub const MPII_JOINTS: i64 = 16;

impl HrnetConfig {
    /// The HRNet-W`width` pattern: stages of 1, `modules[1]`, `modules[2]` exchange modules
    /// (official: 1/4/3), `blocks` BasicBlocks per branch (official: 4), branch widths
    /// `width * 2^i`.
    pub fn uniform(width: i64, modules: [usize; 3], blocks: usize, num_joints: i64) -> Self {
        HrnetConfig {
            num_joints,
            final_conv_kernel: 1,
            stage2: StageConfig::basic(width, 2, modules[0], blocks),
            stage3: StageConfig::basic(width, 3, modules[1], blocks),
            stage4: StageConfig::basic(width, 4, modules[2], blocks),
        }
    }

    /// HRNet-W32 for COCO (17 joints; the official models take 256x192 or 384x288 inputs).
    pub fn w32() -> Self {
        Self::uniform(32, [1, 4, 3], 4, COCO_JOINTS)
    }

    /// HRNet-W48 for COCO (17 joints; 256x192 or 384x288 inputs).
    pub fn w48() -> Self {
        Self::uniform(48, [1, 4, 3], 4, COCO_JOINTS)
    }

    /// HRNet-W32 for MPII (16 joints, 256x256 input).
    pub fn w32_mpii() -> Self {
        Self::w32().with_num_joints(MPII_JOINTS)
    }

    /// HRNet-W48 for MPII (16 joints, 256x256 input).
    pub fn w48_mpii() -> Self {
        Self::w48().with_num_joints(MPII_JOINTS)
    }

    pub fn with_num_joints(mut self, num_joints: i64) -> Self {
        self.num_joints = num_joints;
        self
    }

    pub fn stages(&self) -> [&StageConfig; 3] {
        [&self.stage2, &self.stage3, &self.stage4]
    }

    /// Width of the high-resolution branch that feeds the heads.
    pub fn final_width(&self) -> i64 {
        self.stage4.branch_widths()[0]
    }

    /// Reads a JSON config (the official YAML's fields as JSON) and checks it.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = posekit_core::error::read_file(path)?;
        let cfg: HrnetConfig = serde_json::from_slice(&bytes).map_err(|e| Error::json(path, e))?;
        cfg.check_fields()
            .map_err(|(field, msg)| Error::invalid(path, field, msg))?;
        Ok(cfg)
    }

    /// Checks that the lists agree with the branch counts, so that building the network cannot
    /// panic on a bad config.
    pub fn validate(&self) -> Result<()> {
        self.check_fields()
            .map_err(|(field, msg)| Error::Shape(format!("HRNet config: {field}: {msg}")))
    }

    fn check_fields(&self) -> std::result::Result<(), (String, String)> {
        if self.num_joints <= 0 {
            return Err((
                "NUM_JOINTS".into(),
                format!("must be positive, got {}", self.num_joints),
            ));
        }
        if self.final_conv_kernel != 1 && self.final_conv_kernel != 3 {
            return Err((
                "FINAL_CONV_KERNEL".into(),
                format!("must be 1 or 3, got {}", self.final_conv_kernel),
            ));
        }
        self.stage2.validate("STAGE2")?;
        self.stage3.validate("STAGE3")?;
        self.stage4.validate("STAGE4")
    }

    /// Most branches any stage has: the input must be divisible accordingly (see
    /// [`HrnetBackbone::check_input`]).
    fn max_branches(&self) -> usize {
        self.stages()
            .iter()
            .map(|s| s.num_branches)
            .max()
            .unwrap_or(1)
    }
}

/// How one branch enters a stage from the previous stage's outputs.
// Built once per network and never moved in a hot path: boxing the larger variant would only
// add an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum TransitionBranch {
    /// The official `None`: the branch passes through unchanged (and has no keys).
    Keep,
    /// An existing branch whose width changes: 3x3 conv + BN + ReLU at `transitionK.i.{0,1}`.
    Adapt(ConvBn),
    /// A new, lower-resolution branch made from the lowest-resolution previous branch by a
    /// chain of stride-2 3x3 conv + BN + ReLU at `transitionK.i.j.{0,1}`.
    New(Vec<ConvBn>),
}

/// The official `_make_transition_layer`.
#[derive(Debug)]
struct Transition {
    branches: Vec<TransitionBranch>,
}

impl Transition {
    fn new(p: nn::Path, pre: &[i64], cur: &[i64]) -> Self {
        let branches = cur
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                if i < pre.len() {
                    if c == pre[i] {
                        TransitionBranch::Keep
                    } else {
                        TransitionBranch::Adapt(ConvBn::new(&p / i, pre[i], c, 3, 1, true))
                    }
                } else {
                    let last = pre[pre.len() - 1];
                    let steps = i + 1 - pre.len();
                    let chain = (0..steps)
                        .map(|j| {
                            let out = if j + 1 == steps { c } else { last };
                            ConvBn::new(&p / i / j, last, out, 3, 2, true)
                        })
                        .collect();
                    TransitionBranch::New(chain)
                }
            })
            .collect();
        Transition { branches }
    }

    fn fold_batch_norm(&mut self) {
        for b in &mut self.branches {
            match b {
                TransitionBranch::Keep => {}
                TransitionBranch::Adapt(c) => c.fold_batch_norm(),
                TransitionBranch::New(chain) => chain.iter_mut().for_each(ConvBn::fold_batch_norm),
            }
        }
    }

    /// The official forward feeds *new* branches from the last previous output. For an
    /// existing branch whose width changes it also passes `y_list[-1]`, which only type-checks
    /// when that branch is the last one; we pass the branch's own output, the only reading
    /// that is well defined and that agrees with the official code wherever it runs.
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Vec<Tensor> {
        let last = &xs[xs.len() - 1];
        self.branches
            .iter()
            .enumerate()
            .map(|(i, b)| match b {
                TransitionBranch::Keep => xs[i].shallow_clone(),
                TransitionBranch::Adapt(c) => c.forward_t(&xs[i], train),
                TransitionBranch::New(chain) => chain
                    .iter()
                    .fold(last.shallow_clone(), |x, c| c.forward_t(&x, train)),
            })
            .collect()
    }

    /// [`Self::forward_t`] in eval mode, as ONNX nodes.
    fn export(&self, g: &mut OnnxGraph, xs: &[Value]) -> Result<Vec<Value>> {
        let last = &xs[xs.len() - 1];
        self.branches
            .iter()
            .enumerate()
            .map(|(i, b)| match b {
                TransitionBranch::Keep => Ok(xs[i].clone()),
                TransitionBranch::Adapt(c) => c.export(g, &xs[i]),
                TransitionBranch::New(chain) => {
                    chain.iter().try_fold(last.clone(), |x, c| c.export(g, &x))
                }
            })
            .collect()
    }
}

/// How branch `j` is brought to the resolution and width of branch `i` in a fuse layer.
// Built once per network and never moved in a hot path: boxing the larger variant would only
// add an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum FuseStep {
    /// `i == j`: the official `None`, no keys.
    Identity,
    /// `j > i`: 1x1 conv + BN at `fuse_layers.i.j.{0,1}`, then nearest upsampling by `2^(j-i)`.
    Up { conv: ConvNorm, factor: i64 },
    /// `j < i`: `i - j` stride-2 3x3 conv + BN at `fuse_layers.i.j.k.{0,1}`, ReLU after all but
    /// the last (the ReLU after the sum closes the chain).
    Down(Vec<ConvBn>),
}

impl FuseStep {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            FuseStep::Identity => x.shallow_clone(),
            FuseStep::Up { conv, factor } => {
                let y = conv.forward_t(x, train);
                let size = y.size();
                let f = *factor;
                // `nn.Upsample(scale_factor=f, mode='nearest')` passes the scale to the kernel;
                // we do the same so that index rounding is identical.
                y.upsample_nearest2d([size[2] * f, size[3] * f], f as f64, f as f64)
            }
            FuseStep::Down(chain) => chain
                .iter()
                .fold(x.shallow_clone(), |y, c| c.forward_t(&y, train)),
        }
    }

    /// [`Self::forward_t`] in eval mode, as ONNX nodes (nearest upsampling by an integer
    /// factor, as `nn.Upsample` computes it).
    fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        match self {
            FuseStep::Identity => Ok(x.clone()),
            FuseStep::Up { conv, factor } => {
                let y = conv.export(g, x)?;
                Ok(g.upsample_nearest(&y, *factor))
            }
            FuseStep::Down(chain) => chain.iter().try_fold(x.clone(), |y, c| c.export(g, &y)),
        }
    }

    fn fold_batch_norm(&mut self) {
        match self {
            FuseStep::Identity => {}
            FuseStep::Up { conv, .. } => conv.fold(),
            FuseStep::Down(chain) => chain.iter_mut().for_each(ConvBn::fold_batch_norm),
        }
    }
}

/// One exchange module (the official `HighResolutionModule`).
#[derive(Debug)]
pub struct HighResolutionModule {
    branches: Vec<ResidualStack>,
    /// `fuse[i][j]`: branch `j` into output `i`. Empty when there is a single branch. Only one
    /// row when the module outputs only the high-resolution branch.
    fuse: Vec<Vec<FuseStep>>,
}

impl HighResolutionModule {
    /// `in_widths`: widths entering each branch. `multi_scale_output == false` keeps only the
    /// fuse row of the high-resolution branch (last module of the last stage).
    pub fn new(
        p: nn::Path,
        stage: &StageConfig,
        in_widths: &[i64],
        multi_scale_output: bool,
    ) -> Self {
        let kind = stage.block;
        let branches: Vec<ResidualStack> = (0..stage.num_branches)
            .map(|i| {
                ResidualStack::new(
                    &p / "branches" / i,
                    kind,
                    in_widths[i],
                    stage.num_channels[i],
                    stage.num_blocks[i],
                    1,
                )
            })
            .collect();
        let widths = stage.branch_widths();
        let n = stage.num_branches;
        let rows = if n == 1 {
            0
        } else if multi_scale_output {
            n
        } else {
            1
        };
        let fuse = (0..rows)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        let q = &p / "fuse_layers" / i / j;
                        if j > i {
                            FuseStep::Up {
                                conv: ConvNorm::new(&q / 0, &q / 1, widths[j], widths[i], 1, 1),
                                factor: 1 << (j - i),
                            }
                        } else if j == i {
                            FuseStep::Identity
                        } else {
                            let steps = i - j;
                            FuseStep::Down(
                                (0..steps)
                                    .map(|k| {
                                        let last = k + 1 == steps;
                                        let out = if last { widths[i] } else { widths[j] };
                                        ConvBn::new(&q / k, widths[j], out, 3, 2, !last)
                                    })
                                    .collect(),
                            )
                        }
                    })
                    .collect()
            })
            .collect();
        HighResolutionModule { branches, fuse }
    }

    pub fn fold_batch_norm(&mut self) {
        self.branches
            .iter_mut()
            .for_each(ResidualStack::fold_batch_norm);
        for row in &mut self.fuse {
            row.iter_mut().for_each(FuseStep::fold_batch_norm);
        }
    }

    /// Runs the branches then the fuse layers; returns one tensor per fuse row (or the single
    /// branch's output when there is only one branch, without a ReLU, as officially).
    pub fn forward_t(&self, xs: &[Tensor], train: bool) -> Vec<Tensor> {
        let ys: Vec<Tensor> = self
            .branches
            .iter()
            .zip(xs)
            .map(|(b, x)| b.forward_t(x, train))
            .collect();
        if self.fuse.is_empty() {
            return ys;
        }
        self.fuse
            .iter()
            .map(|row| {
                let mut acc = row[0].forward_t(&ys[0], train);
                for (step, y) in row.iter().zip(&ys).skip(1) {
                    // A new tensor, not `+=`: autograd keeps the sum's inputs as they were
                    // (and the result matches PyTorch's out-of-place `y = y + ...`).
                    #[allow(clippy::assign_op_pattern)]
                    {
                        acc = acc + step.forward_t(y, train);
                    }
                }
                acc.relu()
            })
            .collect()
    }

    /// [`Self::forward_t`] in eval mode, as ONNX nodes.
    pub fn export(&self, g: &mut OnnxGraph, xs: &[Value]) -> Result<Vec<Value>> {
        let ys = self
            .branches
            .iter()
            .zip(xs)
            .map(|(b, x)| b.export(g, x))
            .collect::<Result<Vec<Value>>>()?;
        if self.fuse.is_empty() {
            return Ok(ys);
        }
        self.fuse
            .iter()
            .map(|row| {
                let mut acc = row[0].export(g, &ys[0])?;
                for (step, y) in row.iter().zip(&ys).skip(1) {
                    let term = step.export(g, y)?;
                    acc = g.add(&acc, &term);
                }
                Ok(g.relu(&acc))
            })
            .collect()
    }
}

/// Everything of HRNet up to (not including) the heads: stem, `layer1`, transitions, stages.
/// Shared by [`PoseHrnet`], HigherHRNet and SPM, whose checkpoints all put these keys at the
/// root.
#[derive(Debug)]
pub struct HrnetBackbone {
    stem1: ConvNorm,
    stem2: ConvNorm,
    layer1: ResidualStack,
    transitions: Vec<Transition>,
    stages: Vec<Vec<HighResolutionModule>>,
    max_branches: usize,
    out_widths: Vec<i64>,
}

impl HrnetBackbone {
    /// Builds the backbone under `p` (its sub-paths are the official keys).
    pub fn new(p: &nn::Path, cfg: &HrnetConfig) -> Result<Self> {
        cfg.validate()?;
        let stem1 = ConvNorm::new(p / "conv1", p / "bn1", 3, STEM_CHANNELS, 3, 2);
        let stem2 = ConvNorm::new(p / "conv2", p / "bn2", STEM_CHANNELS, STEM_CHANNELS, 3, 2);
        let layer1 = ResidualStack::new(
            p / "layer1",
            BlockKind::Bottleneck,
            STEM_CHANNELS,
            LAYER1_PLANES,
            LAYER1_BLOCKS,
            1,
        );
        let mut pre = vec![LAYER1_PLANES * BlockKind::Bottleneck.expansion()];
        let mut transitions = Vec::new();
        let mut stages = Vec::new();
        for (k, stage) in cfg.stages().into_iter().enumerate() {
            let cur = stage.branch_widths();
            transitions.push(Transition::new(
                p / format!("transition{}", k + 1),
                &pre,
                &cur,
            ));
            let sp = p / format!("stage{}", k + 2);
            let last_stage = k == 2;
            let modules = (0..stage.num_modules)
                .map(|m| {
                    let multi = !(last_stage && m + 1 == stage.num_modules);
                    HighResolutionModule::new(&sp / m, stage, &cur, multi)
                })
                .collect();
            stages.push(modules);
            pre = cur;
        }
        let out_widths = if cfg.stage4.num_branches > 1 {
            vec![pre[0]]
        } else {
            pre.clone()
        };
        Ok(HrnetBackbone {
            stem1,
            stem2,
            layer1,
            transitions,
            stages,
            max_branches: cfg.max_branches(),
            out_widths,
        })
    }

    /// Folds every BatchNorm into the convolution before it, for eval-mode forwards (see
    /// [`ConvNorm`]): call after loading weights and after moving the VarStore to its final
    /// device and kind, and again after any change to the weights.
    pub fn fold_batch_norm(&mut self) {
        self.stem1.fold();
        self.stem2.fold();
        self.layer1.fold_batch_norm();
        self.transitions
            .iter_mut()
            .for_each(Transition::fold_batch_norm);
        for modules in &mut self.stages {
            modules
                .iter_mut()
                .for_each(HighResolutionModule::fold_batch_norm);
        }
    }

    /// Widths of the tensors [`Self::forward_features`] returns.
    pub fn out_widths(&self) -> &[i64] {
        &self.out_widths
    }

    /// Checks an input `[N, 3, H, W]` before it reaches libtorch, whose shape errors are
    /// panics: the stem halves H and W twice (rounding up) and the fuse layers need the
    /// result divisible by `2^(branches - 1)` (e.g. H and W multiples of 32 for four
    /// branches), otherwise upsampled and downsampled maps do not line up.
    pub fn check_input(&self, size: &[i64]) -> Result<()> {
        if size.len() != 4 || size[1] != 3 {
            return Err(Error::Shape(format!(
                "HRNet expects an input [N, 3, H, W], got {size:?}"
            )));
        }
        let div = 1i64 << (self.max_branches - 1);
        for (name, &s) in [("height", &size[2]), ("width", &size[3])] {
            let quarter = ((s + 1) / 2 + 1) / 2;
            if s <= 0 || quarter % div != 0 {
                return Err(Error::Shape(format!(
                    "HRNet input {name} {s}: after the stride-4 stem it is {quarter}, which must \
                     be a multiple of {div} (use a multiple of {})",
                    4 * div
                )));
            }
        }
        Ok(())
    }

    /// Checks a user-supplied input (see [`Self::check_input`]) and brings it to the device
    /// and floating-point kind of the weights, so that e.g. a float64 tensor read from a file
    /// runs on a float32 or CUDA model instead of failing inside libtorch.
    pub fn prepare_input(&self, xs: &Tensor) -> Result<Tensor> {
        self.check_input(&xs.size())?;
        if !matches!(
            xs.kind(),
            Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
        ) {
            return Err(Error::Shape(format!(
                "HRNet expects a floating-point (normalised) image tensor, got {:?}",
                xs.kind()
            )));
        }
        let w = &self.stem1.conv.ws;
        Ok(xs.to_device(w.device()).to_kind(w.kind()))
    }

    /// The stage-4 outputs, highest resolution first (1/4 of the input). With the official
    /// configs the last module fuses only into the high-resolution branch, so this is one
    /// tensor; the list form keeps the door open for multi-resolution heads.
    pub fn forward_features(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        let x = self.stem1.forward_t(xs, train).relu();
        let x = self.stem2.forward_t(&x, train).relu();
        let x = self.layer1.forward_t(&x, train);
        let mut ys = vec![x];
        for (transition, modules) in self.transitions.iter().zip(&self.stages) {
            let mut branch_inputs = transition.forward_t(&ys, train);
            for module in modules {
                branch_inputs = module.forward_t(&branch_inputs, train);
            }
            ys = branch_inputs;
        }
        ys
    }

    /// [`Self::forward_features`] in eval mode, as ONNX nodes.
    pub fn export_features(&self, g: &mut OnnxGraph, x: &Value) -> Result<Vec<Value>> {
        let y = self.stem1.export(g, x)?;
        let y = g.relu(&y);
        let y = self.stem2.export(g, &y)?;
        let y = g.relu(&y);
        let mut ys = vec![self.layer1.export(g, &y)?];
        for (transition, modules) in self.transitions.iter().zip(&self.stages) {
            let mut branch_inputs = transition.export(g, &ys)?;
            for module in modules {
                branch_inputs = module.export(g, &branch_inputs)?;
            }
            ys = branch_inputs;
        }
        Ok(ys)
    }
}

/// Top-down pose HRNet (`PoseHighResolutionNet`): backbone + 1x1 heatmap head at `final_layer`.
#[derive(Debug)]
pub struct PoseHrnet {
    backbone: HrnetBackbone,
    final_layer: nn::Conv2D,
    config: HrnetConfig,
}

impl PoseHrnet {
    pub fn new(p: &nn::Path, cfg: &HrnetConfig) -> Result<Self> {
        let backbone = HrnetBackbone::new(p, cfg)?;
        let final_layer = conv2d_bias(
            p / "final_layer",
            cfg.final_width(),
            cfg.num_joints,
            cfg.final_conv_kernel,
        );
        Ok(PoseHrnet {
            backbone,
            final_layer,
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &HrnetConfig {
        &self.config
    }

    pub fn backbone(&self) -> &HrnetBackbone {
        &self.backbone
    }

    /// Folds BatchNorm into the convolutions for inference (eval-mode forwards only; the
    /// VarStore is unchanged). Call after loading weights and after moving the VarStore
    /// to its final device and kind (`set_device`, `half`...): the folded copy does not follow.
    pub fn fold_batch_norm(&mut self) {
        self.backbone.fold_batch_norm();
    }

    /// Heatmaps `[N, K, H/4, W/4]` after checking the input shape (use this for user data; the
    /// [`ModuleT`] impl panics inside libtorch on a bad shape).
    pub fn heatmaps(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let xs = self.backbone.prepare_input(xs)?;
        Ok(self.forward_t(&xs, train))
    }

    /// Every output head by name, for the `forward` command: here only `heatmaps`.
    pub fn forward_named(&self, xs: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        Ok(vec![("heatmaps".to_string(), self.heatmaps(xs, train)?)])
    }

    /// [`Self::forward_named`] in eval mode as ONNX nodes (see [`crate::export`]).
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &Value) -> Result<Vec<(String, Value)>> {
        let features = self.backbone.export_features(g, x)?;
        let heatmaps = g.conv_same(
            &features[0],
            &self.final_layer.ws,
            self.final_layer.bs.as_ref(),
        )?;
        Ok(vec![("heatmaps".to_string(), heatmaps)])
    }
}

impl ModuleT for PoseHrnet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let features = self.backbone.forward_features(xs, train);
        features[0].apply(&self.final_layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn param_count(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }

    #[test]
    fn official_parameter_counts() {
        // Numbers of the official models (pose_hrnet_w32_256x192: 28.5M, w48: 63.6M).
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = PoseHrnet::new(&vs.root(), &HrnetConfig::w32()).unwrap();
        assert_eq!(param_count(&vs), 28_536_113);
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = PoseHrnet::new(&vs.root(), &HrnetConfig::w48()).unwrap();
        assert_eq!(param_count(&vs), 63_595_745);
    }

    #[test]
    fn output_is_quarter_resolution() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = PoseHrnet::new(&vs.root(), &HrnetConfig::uniform(4, [1, 1, 1], 1, 5)).unwrap();
        let x = Tensor::randn([1, 3, 64, 96], (Kind::Float, Device::Cpu));
        let y = net.heatmaps(&x, false).unwrap();
        assert_eq!(y.size(), vec![1, 5, 16, 24]);
        let named = net.forward_named(&x, false).unwrap();
        assert_eq!(named[0].0, "heatmaps");
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = PoseHrnet::new(&vs.root(), &HrnetConfig::uniform(4, [1, 1, 1], 1, 5)).unwrap();
        let x = Tensor::zeros([1, 3, 60, 64], (Kind::Float, Device::Cpu));
        let err = net.heatmaps(&x, false).unwrap_err().to_string();
        assert!(err.contains("height 60"), "{err}");
        let x = Tensor::zeros([1, 1, 64, 64], (Kind::Float, Device::Cpu));
        assert!(net.heatmaps(&x, false).is_err());
        let x = Tensor::zeros([1, 3, 64, 64], (Kind::Uint8, Device::Cpu));
        assert!(net.heatmaps(&x, false).is_err());
        // A float64 input runs on the float32 model.
        let x = Tensor::zeros([1, 3, 64, 64], (Kind::Double, Device::Cpu));
        assert_eq!(net.heatmaps(&x, false).unwrap().kind(), Kind::Float);
    }

    #[test]
    fn config_round_trips_through_official_field_names() {
        let json = serde_json::to_string(&HrnetConfig::w32()).unwrap();
        assert!(json.contains("\"NUM_MODULES\":4"));
        assert!(json.contains("\"BLOCK\":\"BASIC\""));
        assert!(json.contains("\"FUSE_METHOD\":\"SUM\""));
        let back: HrnetConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, HrnetConfig::w32());
    }

    #[test]
    fn inconsistent_config_is_rejected() {
        let mut cfg = HrnetConfig::w32();
        cfg.stage3.num_channels.pop();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("STAGE3.NUM_CHANNELS"), "{err}");
        let vs = nn::VarStore::new(Device::Cpu);
        assert!(PoseHrnet::new(&vs.root(), &cfg).is_err());
    }

    #[test]
    fn config_file_errors_name_the_file_and_field() {
        let dir = std::env::temp_dir().join(format!("posekit-hrnet-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.json");
        let mut cfg = HrnetConfig::w32();
        cfg.stage2.num_blocks = vec![4];
        std::fs::write(&path, serde_json::to_string(&cfg).unwrap()).unwrap();
        let err = HrnetConfig::from_json_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.json") && err.contains("STAGE2.NUM_BLOCKS"),
            "{err}"
        );
        std::fs::write(&path, "{\"NUM_JOINTS\": 17}").unwrap();
        assert!(HrnetConfig::from_json_file(&path).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bottleneck_stages_and_width_changes_build_and_run() {
        // Not an official config, but legal in the official code: Bottleneck branches and an
        // existing branch whose width changes between stages (an `Adapt` transition).
        let mut cfg = HrnetConfig::uniform(4, [1, 1, 1], 1, 3);
        cfg.stage3.block = BlockKind::Bottleneck;
        cfg.stage4.num_channels[1] = 12;
        let vs = nn::VarStore::new(Device::Cpu);
        let net = PoseHrnet::new(&vs.root(), &cfg).unwrap();
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert!(
            names.iter().any(|n| n.starts_with("transition3.1.0.")),
            "{names:?}"
        );
        assert!(
            names.iter().any(|n| n.starts_with("transition2.0.0.")),
            "{names:?}"
        );
        let x = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        assert_eq!(net.heatmaps(&x, true).unwrap().size(), vec![1, 3, 16, 16]);
    }
}
