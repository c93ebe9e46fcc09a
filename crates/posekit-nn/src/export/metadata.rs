//! What an exported file says about itself (`metadata_props` of the ONNX model), so that a
//! consumer needs nothing but the file: which preset, which keypoints, how to prepare the
//! input, what each output is and at which stride.
//!
//! Every key starts with `posekit.`; values are plain strings or JSON:
//!
//! | key | value |
//! |---|---|
//! | `posekit.preset` | `hrnet-w32` |
//! | `posekit.family` | `top-down-heatmap`, `associative-embedding`, `part-affinity/cmu`, `part-affinity/tf-pose`, `structured-pose` |
//! | `posekit.layout` | the keypoint layout as JSON (`name`, `keypoints`, `flip_pairs`, `skeleton`, ...) |
//! | `posekit.input` | JSON `{"name", "layout": "NCHW", "height", "width", "channel_order", "mean", "std"}`; `input = (pixel - mean) / std`, pixels 0..255 |
//! | `posekit.outputs` | JSON list of `{"name", "channels", "stride"}` in graph order |
//! | `posekit.batch_dependent` | `true` when an image's outputs depend on the other images of its batch (tf-pose's MobileNetV2: run one image per batch) |
//! | `posekit.precision` | `float32` or `float16` (the graph body; inputs and outputs are float32) |
//! | `posekit.dynamic_batch` | `true` when the batch dimension is symbolic |
//! | `posekit.version` | the posekit version that wrote the file |

use posekit_core::layout::KeypointLayout;
use posekit_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::graph::Precision;
use crate::models::normalization::InputNormalization;
use crate::models::{Family, PafStyle, Preset};

pub const KEY_PRESET: &str = "posekit.preset";
pub const KEY_FAMILY: &str = "posekit.family";
pub const KEY_LAYOUT: &str = "posekit.layout";
pub const KEY_INPUT: &str = "posekit.input";
pub const KEY_OUTPUTS: &str = "posekit.outputs";
pub const KEY_BATCH_DEPENDENT: &str = "posekit.batch_dependent";
pub const KEY_PRECISION: &str = "posekit.precision";
pub const KEY_DYNAMIC_BATCH: &str = "posekit.dynamic_batch";
pub const KEY_VERSION: &str = "posekit.version";

/// Name of the graph input, the key `posekit forward` reads its input from.
pub const INPUT_NAME: &str = "input";

/// What the caller knows about the model being exported.
#[derive(Debug, Clone)]
pub struct ExportInfo {
    pub preset: String,
    pub family: Family,
    pub layout: KeypointLayout,
    pub normalization: InputNormalization,
    /// One line for the model's doc string.
    pub summary: String,
}

impl ExportInfo {
    /// The preset's own description: its layout and its family's normalisation.
    pub fn for_preset(preset: &Preset) -> Result<Self> {
        let layout = KeypointLayout::builtin(preset.layout).ok_or_else(|| {
            Error::Shape(format!(
                "preset {} names the layout '{}', which is not built in",
                preset.name, preset.layout
            ))
        })?;
        Ok(ExportInfo {
            preset: preset.name.to_string(),
            family: preset.family,
            layout,
            normalization: preset.family.input_normalization(),
            summary: preset.summary.to_string(),
        })
    }
}

/// One output of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadInfo {
    pub name: String,
    pub channels: i64,
    /// Input pixels per output pixel (4 for HRNet's heatmaps, 8 for OpenPose's maps).
    pub stride: i64,
}

/// The input description stored under [`KEY_INPUT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputInfo {
    pub name: String,
    pub layout: String,
    pub height: i64,
    pub width: i64,
    pub channel_order: String,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// The metadata's name of a family.
pub fn family_name(family: Family) -> &'static str {
    match family {
        Family::TopDownHeatmap => "top-down-heatmap",
        Family::AssociativeEmbedding => "associative-embedding",
        Family::PartAffinity(PafStyle::Cmu) => "part-affinity/cmu",
        Family::PartAffinity(PafStyle::TfPose) => "part-affinity/tf-pose",
        Family::StructuredPose => "structured-pose",
    }
}

/// Everything the export knows, as the model's `metadata_props`.
pub(crate) struct Metadata<'a> {
    pub info: &'a ExportInfo,
    pub input_size: (i64, i64),
    pub heads: &'a [HeadInfo],
    pub precision: Precision,
    pub dynamic_batch: bool,
    pub batch_dependent: bool,
}

impl Metadata<'_> {
    pub(crate) fn props(&self) -> Result<Vec<(String, String)>> {
        let n = &self.info.normalization;
        let input = InputInfo {
            name: INPUT_NAME.to_string(),
            layout: "NCHW".to_string(),
            height: self.input_size.0,
            width: self.input_size.1,
            channel_order: n.channel_order.name().to_string(),
            mean: n.mean,
            std: n.std,
        };
        Ok(vec![
            (KEY_PRESET.into(), self.info.preset.clone()),
            (KEY_FAMILY.into(), family_name(self.info.family).into()),
            (KEY_LAYOUT.into(), to_json(&self.info.layout)?),
            (KEY_INPUT.into(), to_json(&input)?),
            (KEY_OUTPUTS.into(), to_json(self.heads)?),
            (KEY_BATCH_DEPENDENT.into(), self.batch_dependent.to_string()),
            (KEY_PRECISION.into(), self.precision.name().into()),
            (KEY_DYNAMIC_BATCH.into(), self.dynamic_batch.to_string()),
            (KEY_VERSION.into(), env!("CARGO_PKG_VERSION").into()),
        ])
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Shape(format!("ONNX metadata: cannot serialise: {e}")))
}
