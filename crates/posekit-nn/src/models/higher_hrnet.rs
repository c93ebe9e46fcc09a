//! HigherHRNet (Cheng et al., "HigherHRNet: Scale-Aware Representation Learning for Bottom-Up
//! Human Pose Estimation", CVPR 2020), laid out like the official
//! `lib/models/pose_higher_hrnet.py` so that its checkpoints load name for name.
//!
//! An HRNet backbone (same keys as top-down HRNet, at the root) gives a 1/4-resolution feature
//! map. `final_layers.0`, a 1x1 conv, predicts K heatmaps and the associative-embedding tags
//! (one tag map per joint) at 1/4. Each deconv stage concatenates the features with that
//! prediction, doubles the resolution with a 4x4 stride-2 transposed conv + BN + ReLU, refines
//! with BasicBlocks, and `final_layers.{i+1}` predicts K heatmaps at the new resolution. Small
//! people are found in the 1/2 heatmaps; grouping uses the 1/4 tags.
//!
//! Keys of the head (official `nn.Sequential` nesting kept):
//! `final_layers.{i}.{weight,bias}`; `deconv_layers.{i}.0.0.weight` (ConvTranspose2d, no bias),
//! `deconv_layers.{i}.0.1.*` (BN); `deconv_layers.{i}.{1..=B}.0.{conv1,bn1,conv2,bn2}.*` (each
//! BasicBlock wrapped in its own one-element `nn.Sequential`).

use std::path::Path;

use posekit_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::blocks::{batch_norm, conv2d_bias, fold_into, BasicBlock, BatchNorm, CONV_INIT_STD};
use crate::export::{OnnxGraph, Value};
use crate::models::hrnet::{HrnetBackbone, HrnetConfig, COCO_JOINTS};

/// `MODEL.EXTRA.DECONV` of the official YAML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub struct DeconvConfig {
    pub num_deconvs: usize,
    /// Output width of each deconv stage.
    pub num_channels: Vec<i64>,
    /// Transposed-conv kernel of each stage: 4 (padding 1), 3 (padding 1, output padding 1) or
    /// 2 (padding 0); all double the resolution exactly.
    pub kernel_size: Vec<i64>,
    pub num_basic_blocks: usize,
    /// Whether stage `i` concatenates the previous prediction to its input features.
    pub cat_output: Vec<bool>,
}

/// The network part of the official HigherHRNet YAML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub struct HigherHrnetConfig {
    /// Backbone stages, `NUM_JOINTS` and `FINAL_CONV_KERNEL` (the kernel of every
    /// `final_layers` conv).
    pub hrnet: HrnetConfig,
    /// One tag map per joint (`TAG_PER_JOINT: True`) or a single shared one.
    pub tag_per_joint: bool,
    /// `LOSS.WITH_AE_LOSS`, one entry per output resolution: outputs with an AE loss carry tag
    /// channels after the heatmaps. It shapes the network, hence its place here.
    pub with_ae_loss: Vec<bool>,
    pub deconv: DeconvConfig,
}

/// Square input side of the official HigherHRNet-W32 COCO model.
pub const W32_INPUT_SIZE: i64 = 512;
/// Square input side of the official HigherHRNet-W48 COCO model.
pub const W48_INPUT_SIZE: i64 = 640;

impl HigherHrnetConfig {
    /// The official head on a given backbone: one deconv stage of the backbone's width, kernel
    /// 4, 4 BasicBlocks, concatenating the 1/4 prediction; AE tags (one per joint) at 1/4 only.
    pub fn official_head(hrnet: HrnetConfig) -> Self {
        let width = hrnet.final_width();
        HigherHrnetConfig {
            hrnet,
            tag_per_joint: true,
            with_ae_loss: vec![true, false],
            deconv: DeconvConfig {
                num_deconvs: 1,
                num_channels: vec![width],
                kernel_size: vec![4],
                num_basic_blocks: 4,
                cat_output: vec![true],
            },
        }
    }

    /// HigherHRNet-W32, COCO (17 joints), trained at 512x512 (also released at 640).
    pub fn w32() -> Self {
        Self::official_head(HrnetConfig::w32().with_num_joints(COCO_JOINTS))
    }

    /// HigherHRNet-W48, COCO (17 joints), trained at 640x640.
    pub fn w48() -> Self {
        Self::official_head(HrnetConfig::w48().with_num_joints(COCO_JOINTS))
    }

    pub fn num_joints(&self) -> i64 {
        self.hrnet.num_joints
    }

    /// Channels of the tag maps of an output with AE loss.
    pub fn tag_dim(&self) -> i64 {
        if self.tag_per_joint {
            self.hrnet.num_joints
        } else {
            1
        }
    }

    /// Channels of output `i`: K heatmaps, plus the tags where the AE loss is on.
    pub fn output_channels(&self, i: usize) -> i64 {
        let k = self.hrnet.num_joints;
        if self.with_ae_loss.get(i).copied().unwrap_or(false) {
            k + self.tag_dim()
        } else {
            k
        }
    }

    /// Stride of output `i` relative to the input (4, 2, 1, ...).
    pub fn output_stride(&self, i: usize) -> i64 {
        4 >> i.min(2)
    }

    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = posekit_core::error::read_file(path)?;
        let cfg: Self = serde_json::from_slice(&bytes).map_err(|e| Error::json(path, e))?;
        cfg.validate()
            .map_err(|e| Error::invalid(path, "MODEL", e.to_string()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        self.hrnet.validate()?;
        let d = &self.deconv;
        let err = |m: String| Err(Error::Shape(format!("HigherHRNet config: {m}")));
        if d.num_deconvs > 2 {
            // Output strides 4, 2, 1: a third deconv would need a stride of 1/2.
            return err(format!(
                "DECONV.NUM_DECONVS is {}, at most 2 are supported",
                d.num_deconvs
            ));
        }
        for (name, len) in [
            ("DECONV.NUM_CHANNELS", d.num_channels.len()),
            ("DECONV.KERNEL_SIZE", d.kernel_size.len()),
            ("DECONV.CAT_OUTPUT", d.cat_output.len()),
        ] {
            if len != d.num_deconvs {
                return err(format!(
                    "{name} has {len} entries but NUM_DECONVS is {}",
                    d.num_deconvs
                ));
            }
        }
        if self.with_ae_loss.len() != d.num_deconvs + 1 {
            return err(format!(
                "LOSS.WITH_AE_LOSS has {} entries but there are {} outputs (NUM_DECONVS + 1)",
                self.with_ae_loss.len(),
                d.num_deconvs + 1
            ));
        }
        if let Some(k) = d.kernel_size.iter().find(|&&k| deconv_padding(k).is_none()) {
            return err(format!("DECONV.KERNEL_SIZE {k} is not one of 2, 3, 4"));
        }
        if let Some(c) = d.num_channels.iter().find(|&&c| c <= 0) {
            return err(format!("DECONV.NUM_CHANNELS must be positive, got {c}"));
        }
        Ok(())
    }
}

/// `(padding, output_padding)` that make a stride-2 transposed conv of kernel `k` double the
/// size exactly (the official `_get_deconv_cfg`).
fn deconv_padding(k: i64) -> Option<(i64, i64)> {
    match k {
        4 => Some((1, 0)),
        3 => Some((1, 1)),
        2 => Some((0, 0)),
        _ => None,
    }
}

/// One deconv stage: transposed conv + BN + ReLU, then BasicBlocks.
#[derive(Debug)]
struct DeconvStage {
    deconv: nn::ConvTranspose2D,
    bn: BatchNorm,
    padding: i64,
    output_padding: i64,
    /// BatchNorm folded into the transposed conv, for eval forwards (see `ConvNorm`).
    folded: Option<(Tensor, Tensor)>,
    blocks: Vec<BasicBlock>,
    cat_output: bool,
}

impl DeconvStage {
    fn fold_batch_norm(&mut self) {
        // ConvTranspose2d weights are [in, out, k, k]: output channels along dim 1.
        self.folded = Some(fold_into(
            &self.deconv.ws,
            self.deconv.bs.as_ref(),
            &self.bn,
            1,
        ));
        self.blocks.iter_mut().for_each(BasicBlock::fold_batch_norm);
    }

    /// The eval-mode forward as ONNX nodes: the BatchNorm folded into the transposed conv
    /// (output channels along dim 1 of its weight), ReLU, the BasicBlocks.
    fn export(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value> {
        let (w, b) = fold_into(&self.deconv.ws, self.deconv.bs.as_ref(), &self.bn, 1);
        let y = g.conv_transpose(x, &w, Some(&b), 2, self.padding, self.output_padding)?;
        let y = g.relu(&y);
        self.blocks.iter().try_fold(y, |x, b| b.export(g, &x))
    }
}

impl ModuleT for DeconvStage {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = match (&self.folded, train) {
            (Some((w, b)), false) => xs.conv_transpose2d(
                w,
                Some(b),
                [2, 2],
                [self.padding, self.padding],
                [self.output_padding, self.output_padding],
                1,
                [1, 1],
            ),
            _ => xs.apply(&self.deconv).apply_t(&self.bn, train),
        };
        self.blocks
            .iter()
            .fold(y.relu(), |x, b| b.forward_t(&x, train))
    }
}

/// One output of the network at one resolution.
#[derive(Debug)]
pub struct HigherHrnetOutput {
    /// Stride relative to the input (4 for the first output, 2 for the next).
    pub stride: i64,
    /// `[N, K, H/stride, W/stride]`.
    pub heatmaps: Tensor,
    /// `[N, K or 1, H/stride, W/stride]` where the output carries AE tags.
    pub tags: Option<Tensor>,
}

/// The official `PoseHigherResolutionNet`.
#[derive(Debug)]
pub struct HigherHrnet {
    backbone: HrnetBackbone,
    final_layers: Vec<nn::Conv2D>,
    deconv_layers: Vec<DeconvStage>,
    config: HigherHrnetConfig,
}

impl HigherHrnet {
    pub fn new(p: &nn::Path, cfg: &HigherHrnetConfig) -> Result<Self> {
        cfg.validate()?;
        let backbone = HrnetBackbone::new(p, &cfg.hrnet)?;
        let kernel = cfg.hrnet.final_conv_kernel;
        let width = cfg.hrnet.final_width();
        let mut final_layers = vec![conv2d_bias(
            p / "final_layers" / 0,
            width,
            cfg.output_channels(0),
            kernel,
        )];
        let mut deconv_layers = Vec::new();
        let mut in_channels = width;
        let d = &cfg.deconv;
        for i in 0..d.num_deconvs {
            if d.cat_output[i] {
                in_channels += cfg.output_channels(i);
            }
            let out = d.num_channels[i];
            let (padding, output_padding) = deconv_padding(d.kernel_size[i])
                .ok_or_else(|| Error::Shape(format!("bad deconv kernel {}", d.kernel_size[i])))?;
            let q = p / "deconv_layers" / i;
            let deconv = nn::conv_transpose2d(
                &q / 0 / 0,
                in_channels,
                out,
                d.kernel_size[i],
                nn::ConvTransposeConfig {
                    stride: 2,
                    padding,
                    output_padding,
                    bias: false,
                    ws_init: nn::Init::Randn {
                        mean: 0.0,
                        stdev: CONV_INIT_STD,
                    },
                    ..Default::default()
                },
            );
            let bn = batch_norm(&q / 0 / 1, out);
            let blocks = (0..d.num_basic_blocks)
                .map(|b| BasicBlock::new(&q / (b + 1) / 0, out, out, 1))
                .collect();
            deconv_layers.push(DeconvStage {
                deconv,
                bn,
                padding,
                output_padding,
                folded: None,
                blocks,
                cat_output: d.cat_output[i],
            });
            final_layers.push(conv2d_bias(
                p / "final_layers" / (i + 1),
                out,
                cfg.output_channels(i + 1),
                kernel,
            ));
            in_channels = out;
        }
        Ok(HigherHrnet {
            backbone,
            final_layers,
            deconv_layers,
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &HigherHrnetConfig {
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
        self.deconv_layers
            .iter_mut()
            .for_each(DeconvStage::fold_batch_norm);
    }

    /// The raw outputs, as the official forward returns them: one tensor per resolution,
    /// heatmaps then (where present) tags along the channels. No input check: see
    /// [`Self::forward_outputs`].
    pub fn forward_raw(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        let features = self.backbone.forward_features(xs, train);
        let mut x = features[0].shallow_clone();
        let mut y = x.apply(&self.final_layers[0]);
        let mut outputs = Vec::with_capacity(self.final_layers.len());
        for (stage, head) in self.deconv_layers.iter().zip(&self.final_layers[1..]) {
            if stage.cat_output {
                x = Tensor::cat(&[&x, &y], 1);
            }
            x = stage.forward_t(&x, train);
            outputs.push(y);
            y = x.apply(head);
        }
        outputs.push(y);
        outputs
    }

    /// Checks the input and splits each output into heatmaps and tags.
    pub fn forward_outputs(&self, xs: &Tensor, train: bool) -> Result<Vec<HigherHrnetOutput>> {
        let xs = self.backbone.prepare_input(xs)?;
        let k = self.config.num_joints();
        Ok(self
            .forward_raw(&xs, train)
            .into_iter()
            .enumerate()
            .map(|(i, out)| {
                let channels = out.size()[1];
                let tags = (channels > k).then(|| out.narrow(1, k, channels - k));
                HigherHrnetOutput {
                    stride: self.config.output_stride(i),
                    heatmaps: out.narrow(1, 0, k),
                    tags,
                }
            })
            .collect())
    }

    /// Every head by name for the `forward` command: `heatmaps_s4`, `tags_s4`, `heatmaps_s2`
    /// (`s` = stride relative to the input).
    pub fn forward_named(&self, xs: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        let mut named = Vec::new();
        for out in self.forward_outputs(xs, train)? {
            named.push((format!("heatmaps_s{}", out.stride), out.heatmaps));
            if let Some(tags) = out.tags {
                named.push((format!("tags_s{}", out.stride), tags));
            }
        }
        Ok(named)
    }

    /// [`Self::forward_named`] in eval mode as ONNX nodes: [`Self::forward_raw`]'s outputs,
    /// each split into heatmaps and tags as [`Self::forward_outputs`] does.
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &Value) -> Result<Vec<(String, Value)>> {
        let features = self.backbone.export_features(g, x)?;
        let head = |g: &mut OnnxGraph, conv: &nn::Conv2D, x: &Value| {
            g.conv_same(x, &conv.ws, conv.bs.as_ref())
        };
        let mut x = features[0].clone();
        let mut y = head(g, &self.final_layers[0], &x)?;
        let mut raw = Vec::with_capacity(self.final_layers.len());
        for (stage, conv) in self.deconv_layers.iter().zip(&self.final_layers[1..]) {
            if stage.cat_output {
                x = g.concat(&[&x, &y], 1);
            }
            x = stage.export(g, &x)?;
            raw.push(y);
            y = head(g, conv, &x)?;
        }
        raw.push(y);
        let k = self.config.num_joints();
        let mut named = Vec::new();
        for (i, out) in raw.iter().enumerate() {
            let stride = self.config.output_stride(i);
            let channels = self.config.output_channels(i);
            named.push((format!("heatmaps_s{stride}"), g.narrow(out, 1, 0, k)));
            if channels > k {
                named.push((format!("tags_s{stride}"), g.narrow(out, 1, k, channels - k)));
            }
        }
        Ok(named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn official_key_layout_and_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = HigherHrnet::new(&vs.root(), &HigherHrnetConfig::w32()).unwrap();
        let vars = vs.variables();
        let shape = |k: &str| vars.get(k).map(|t| t.size());
        assert_eq!(shape("final_layers.0.weight"), Some(vec![34, 32, 1, 1]));
        assert_eq!(shape("final_layers.1.weight"), Some(vec![17, 32, 1, 1]));
        assert_eq!(
            shape("deconv_layers.0.0.0.weight"),
            Some(vec![66, 32, 4, 4])
        );
        assert_eq!(shape("deconv_layers.0.0.1.running_var"), Some(vec![32]));
        assert_eq!(
            shape("deconv_layers.0.4.0.conv2.weight"),
            Some(vec![32, 32, 3, 3])
        );
        assert!(shape("deconv_layers.0.5.0.conv1.weight").is_none());
        assert!(vars.keys().all(|k| !k.starts_with("final_layer.")));
        // Parameter counts of the official models (from the official model definition, see
        // tools/fixtures/make_higher_hrnet_fixtures.py).
        let params: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(params, 28_645_331);
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = HigherHrnet::new(&vs.root(), &HigherHrnetConfig::w48()).unwrap();
        let params: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(params, 63_827_139);
    }

    #[test]
    fn outputs_at_quarter_and_half_resolution() {
        let mut hr = HrnetConfig::uniform(4, [1, 1, 1], 1, 3);
        hr.final_conv_kernel = 1;
        let mut cfg = HigherHrnetConfig::official_head(hr);
        cfg.deconv.num_basic_blocks = 1;
        let vs = nn::VarStore::new(Device::Cpu);
        let net = HigherHrnet::new(&vs.root(), &cfg).unwrap();
        let x = Tensor::randn([2, 3, 64, 96], (Kind::Float, Device::Cpu));
        let named = net.forward_named(&x, false).unwrap();
        let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["heatmaps_s4", "tags_s4", "heatmaps_s2"]);
        assert_eq!(named[0].1.size(), vec![2, 3, 16, 24]);
        assert_eq!(named[1].1.size(), vec![2, 3, 16, 24]);
        assert_eq!(named[2].1.size(), vec![2, 3, 32, 48]);
        assert!(net.forward_named(&x.narrow(2, 0, 50), false).is_err());
    }

    #[test]
    fn bad_head_config_is_an_error() {
        let mut cfg = HigherHrnetConfig::w32();
        cfg.deconv.kernel_size = vec![5];
        assert!(cfg.validate().is_err());
        let mut cfg = HigherHrnetConfig::w32();
        cfg.with_ae_loss = vec![true];
        let vs = nn::VarStore::new(Device::Cpu);
        assert!(HigherHrnet::new(&vs.root(), &cfg).is_err());
    }
}
