//! How a picture becomes a network input, per model family: the channel order and the mean and
//! standard deviation of each channel. The pipelines apply it; an exported ONNX file records it
//! in its metadata so that a consumer can prepare inputs without posekit.
//!
//! Values are in pixel units (0..255), as MMPose's `data_preprocessor` and mmdeploy state them:
//! `input[c] = (pixel[c] - mean[c]) / std[c]`, channels in `channel_order`.

use super::registry::{Family, PafStyle};

/// Order of the colour channels the network reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

impl ChannelOrder {
    pub fn name(self) -> &'static str {
        match self {
            ChannelOrder::Rgb => "RGB",
            ChannelOrder::Bgr => "BGR",
        }
    }
}

/// `input[c] = (pixel[c] - mean[c]) / std[c]` with pixels 0..255 in `channel_order`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputNormalization {
    pub channel_order: ChannelOrder,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl InputNormalization {
    /// torchvision's ImageNet statistics (`mean = [0.485, 0.456, 0.406] * 255`,
    /// `std = [0.229, 0.224, 0.225] * 255`), RGB: every HRNet, HigherHRNet, Hourglass and SPM
    /// checkpoint posekit loads was trained with them.
    pub const IMAGENET: InputNormalization = InputNormalization {
        channel_order: ChannelOrder::Rgb,
        mean: [123.675, 116.28, 103.53],
        std: [58.395, 57.12, 57.375],
    };

    /// CMU's Caffe OpenPose: BGR `pixel / 256 - 0.5`, i.e. mean 128 and std 256.
    pub const CMU: InputNormalization = InputNormalization {
        channel_order: ChannelOrder::Bgr,
        mean: [128.0; 3],
        std: [256.0; 3],
    };

    /// tf-pose-estimation: raw BGR 0..255, no normalisation.
    pub const TF_POSE: InputNormalization = InputNormalization {
        channel_order: ChannelOrder::Bgr,
        mean: [0.0; 3],
        std: [1.0; 3],
    };

    /// RGB statistics given on the 0..1 scale (a training config's `data.mean`/`data.std`).
    pub fn rgb_unit_scale(mean: [f32; 3], std: [f32; 3]) -> Self {
        InputNormalization {
            channel_order: ChannelOrder::Rgb,
            mean: mean.map(|m| m * 255.0),
            std: std.map(|s| s * 255.0),
        }
    }
}

impl Family {
    /// The normalisation of the reference whose weights a preset of this family loads.
    pub fn input_normalization(self) -> InputNormalization {
        match self {
            Family::TopDownHeatmap | Family::AssociativeEmbedding | Family::StructuredPose => {
                InputNormalization::IMAGENET
            }
            Family::PartAffinity(PafStyle::Cmu) => InputNormalization::CMU,
            Family::PartAffinity(PafStyle::TfPose) => InputNormalization::TF_POSE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_references_in_pixel_units() {
        // ImageNet: 0.485 * 255 and 0.229 * 255.
        let n = Family::TopDownHeatmap.input_normalization();
        assert_eq!(n.channel_order, ChannelOrder::Rgb);
        assert!(
            (n.mean[0] - 0.485 * 255.0).abs() < 1e-3 && (n.std[0] - 0.229 * 255.0).abs() < 1e-3
        );
        // CMU: (v - 128) / 256 == v / 256 - 0.5.
        let c = Family::PartAffinity(PafStyle::Cmu).input_normalization();
        assert_eq!(((200.0 - c.mean[0]) / c.std[0]), 200.0 / 256.0 - 0.5);
        assert_eq!(c.channel_order, ChannelOrder::Bgr);
        let t = Family::PartAffinity(PafStyle::TfPose).input_normalization();
        assert_eq!((t.mean, t.std), ([0.0; 3], [1.0; 3]));
        let u = InputNormalization::rgb_unit_scale([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        assert!((u.mean[2] - InputNormalization::IMAGENET.mean[2]).abs() < 1e-3);
    }
}
