//! Building an OpenPose network from a config: the preset's table, resized by
//! `[model.openpose]` (fewer stages or narrower layers, for tests and quick experiments), and
//! checked against the data's layout, which must convert to the network's CMU-18 joints.

use posekit_core::layout::KeypointLayout;
use posekit_nn::models::openpose::{OpenPoseVgg, OpenPoseVggConfig};
use posekit_nn::models::openpose_mobilenet::{OpenPoseMobileNetConfig, OpenPoseMobileNetV2};
use posekit_nn::models::{Architecture, PoseNetwork, Preset};
use serde::{Deserialize, Serialize};
use tch::nn;

use super::data::paf::Cmu18Conversion;
use crate::error::bail;

/// `[model.openpose]`: what differs from the preset's table; every key optional. Checkpoints of
/// such a model only fit a model built from the same table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenPoseOverride {
    /// Stages in all, stage 1 included (6 in both presets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_stages: Option<usize>,
    /// Width of the refinement stages' layers (VGG 128, MobileNetV2 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine_width: Option<i64>,
    /// Width of stage 1's wide layer (VGG 512, MobileNetV2 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage1_hidden: Option<i64>,
    /// VGG only: widths of conv1..conv4 (64, 128, 256, 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vgg_widths: Option<[i64; 4]>,
    /// VGG only: widths of `conv4_3_CPM`, `conv4_4_CPM` (256, 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpm_widths: Option<[i64; 2]>,
    /// VGG only: width of stage 1's 3x3 layers (128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage1_width: Option<i64>,
    /// VGG only: kernel of the refinement stages (7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine_kernel: Option<i64>,
}

/// The network of an OpenPose `preset`, resized by `over`, for data in `layout`.
pub fn build_openpose(
    preset: &'static Preset,
    over: Option<&OpenPoseOverride>,
    layout: &KeypointLayout,
    vs: &nn::VarStore,
) -> crate::Result<Box<dyn PoseNetwork>> {
    if layout.name != "cmu18" {
        // Checked here so that a config on, say, MPII data fails before any file is read.
        Cmu18Conversion::new(layout)
            .map_err(|e| crate::error::invalid!("model.preset `{}`: {e}", preset.name))?;
    }
    let o = over.cloned().unwrap_or_default();
    Ok(match preset.architecture {
        Architecture::OpenPoseVgg => {
            let mut c = OpenPoseVggConfig::vgg19_coco();
            c.num_stages = o.num_stages.unwrap_or(c.num_stages);
            c.refine_width = o.refine_width.unwrap_or(c.refine_width);
            c.stage1_hidden = o.stage1_hidden.unwrap_or(c.stage1_hidden);
            c.vgg_widths = o.vgg_widths.unwrap_or(c.vgg_widths);
            c.cpm_widths = o.cpm_widths.unwrap_or(c.cpm_widths);
            c.stage1_width = o.stage1_width.unwrap_or(c.stage1_width);
            c.refine_kernel = o.refine_kernel.unwrap_or(c.refine_kernel);
            c.validate()
                .map_err(|e| crate::error::invalid!("model.openpose: {e}"))?;
            Box::new(OpenPoseVgg::new(&vs.root(), &c)?)
        }
        Architecture::OpenPoseMobileNet => {
            let vgg_only = [
                ("vgg_widths", o.vgg_widths.is_some()),
                ("cpm_widths", o.cpm_widths.is_some()),
                ("stage1_width", o.stage1_width.is_some()),
                ("refine_kernel", o.refine_kernel.is_some()),
            ];
            if let Some((k, _)) = vgg_only.iter().find(|(_, set)| *set) {
                bail!(
                    "model.openpose.{k} resizes the VGG-19 OpenPose, not `{}`",
                    preset.name
                );
            }
            let mut c = OpenPoseMobileNetConfig::mobilenet_v2_small();
            c.num_stages = o.num_stages.unwrap_or(c.num_stages);
            c.refine_width = o.refine_width.unwrap_or(c.refine_width);
            c.stage1_hidden = o.stage1_hidden.unwrap_or(c.stage1_hidden);
            Box::new(OpenPoseMobileNetV2::new(&vs.root(), &c)?)
        }
        _ => bail!("`{}` is not an OpenPose preset", preset.name),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::pipelines::config::ExperimentConfig;

    const OPENPOSE: &str = r#"
[model]
preset = "openpose-mobilenetv2"
[dataset]
format = "coco"
train_annotations = "a.json"
train_images = "im"
val_annotations = "a.json"
val_images = "im"
[bottomup]
input_size = 368
[bottomup.paf]
crop_width = 432
"#;

    fn parse(text: &str) -> Result<ExperimentConfig, String> {
        ExperimentConfig::from_toml_str(text, Path::new("op.toml"), Path::new("/c"))
            .map_err(|e| e.report())
    }

    #[test]
    fn paf_section_defaults_and_refusals() {
        let cfg = parse(OPENPOSE).unwrap();
        let paf = cfg.bottomup.as_ref().unwrap().paf.as_ref().unwrap();
        assert_eq!(paf.crop_size(368), [432, 368]);
        assert_eq!((paf.sigma, paf.limb_width), (7.0, 1.0));
        assert_eq!(paf.augmentation.max_rotate, 40.0);
        // Configs written before `rules` keep posekit's targets; "cmu" selects CMU's.
        use posekit_core::codecs::paf::PafTargetRules;
        assert_eq!(paf.rules, PafTargetRules::Posekit);
        let cmu = parse(&OPENPOSE.replace("crop_width = 432", "crop_width = 432\nrules = \"cmu\""))
            .unwrap();
        let paf = cmu.bottomup.as_ref().unwrap().paf.as_ref().unwrap();
        assert_eq!(paf.rules, PafTargetRules::Cmu);
        let bad =
            parse(&OPENPOSE.replace("crop_width = 432", "crop_width = 432\nrules = \"caffe\""))
                .unwrap_err();
        assert!(bad.contains("rules") || bad.contains("caffe"), "{bad}");
        for (text, needle) in [
            // HigherHRNet's keys beside [bottomup.paf] would be ignored: refused.
            (
                OPENPOSE.replace("[bottomup.paf]", "sigma = 2.0\n[bottomup.paf]"),
                "bottomup.sigma",
            ),
            // An OpenPose preset needs [bottomup.paf]; another preset refuses it.
            (
                OPENPOSE.replace("[bottomup.paf]\ncrop_width = 432\n", ""),
                "[bottomup.paf]",
            ),
            (
                OPENPOSE.replace("openpose-mobilenetv2", "higherhrnet-w32"),
                "not an OpenPose model",
            ),
            (format!("{OPENPOSE}unknown = 1\n"), "unknown"),
            (
                OPENPOSE.replace("crop_width = 432", "crop_width = 430"),
                "crop_width",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn openpose_override_resizes_and_is_refused_elsewhere() {
        let text = OPENPOSE.replace(
            "[dataset]",
            "[model.openpose]\nnum_stages = 2\nrefine_width = 8\n[dataset]",
        );
        let cfg = parse(&text).unwrap();
        let layout = cfg.layout().unwrap();
        let model = cfg.model.build(&layout, tch::Device::Cpu).unwrap();
        let x = tch::Tensor::zeros([1, 3, 64, 64], (tch::Kind::Float, tch::Device::Cpu));
        let named = model.net.forward_named(&x, false).unwrap();
        assert_eq!(named.len(), 4, "two stages of PAFs and heatmaps");
        let vgg_key = text.replace("refine_width = 8", "refine_width = 8\nrefine_kernel = 3");
        let err = parse(&vgg_key)
            .unwrap()
            .model
            .build(&layout, tch::Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("refine_kernel"), "{err}");
        let vgg = text.replace("openpose-mobilenetv2", "openpose-vgg19");
        assert!(parse(&vgg)
            .unwrap()
            .model
            .build(&layout, tch::Device::Cpu)
            .is_ok());
    }
}
