//! Codecs: each turns annotations into training targets (`encode`) and one image's (or one
//! instance's) network outputs into poses (`decode`), on plain arrays and independent of any
//! network. They follow MMPose's codec design: one codec type per family, one file or folder
//! per codec.
//!
//! | family | codec | encode: annotation -> targets | decode: outputs -> result |
//! |---|---|---|---|
//! | top-down heatmaps | [`heatmap::HeatmapCodec`] | `[K, 3]` crop pixels -> [`heatmap::HeatmapTarget`] | `[K, H, W]` -> keypoints |
//! | associative embedding | [`associative_embedding::AeCodec`] | `[N, K, 3]` heatmap pixels -> [`associative_embedding::AeTargets`] | heatmaps + tags -> poses |
//! | part affinity fields | [`paf::PafCodec`] | `[N, K, 2]` input pixels + `[N, K]` visibility -> [`paf::PafTargets`] | heatmaps + PAFs -> [`paf::PafDecoding`] |
//! | SPM | [`spm::SpmCodec`] | `[N, K, 3]` heatmap pixels -> [`spm::SpmTargets`] | root heatmap + displacements -> poses |
//!
//! Every codec has inherent `encode` and `decode` methods taking its arrays as separate
//! arguments, which is what callers write. The [`Codec`] trait states the same vocabulary once
//! for the compiler: all four implement it by calling those methods, with several arrays packed
//! into a tuple, so that generic code (a target builder, an evaluator) can take any codec. In
//! method-call syntax the inherent method wins; call the trait's as `Codec::decode(&codec, ..)`.
//!
//! Where a family's two halves need different settings the codec holds them apart
//! (`encoding: ...EncodeParams`, `decoding: ...DecodeParams`: AE and PAF); where both must agree
//! on one geometry the codec is a single configuration (heatmap, SPM).
//!
//! Shared pieces: [`peaks`] (the one [`peaks::Peak`] type and max-pool NMS + top-k) and
//! [`hungarian`] (the assignment solvers of AE grouping).

pub mod associative_embedding;
pub mod heatmap;
pub mod hungarian;
pub mod paf;
pub mod peaks;
pub mod spm;

use crate::error::Result;

/// The vocabulary every codec shares: `encode` annotations into training targets, `decode`
/// network outputs into a result. Input types are views borrowed for the call.
pub trait Codec {
    /// What [`Codec::encode`] takes: one image's (or one instance's) annotations, in the frame
    /// the codec documents.
    type Annotation<'a>;
    /// What [`Codec::encode`] produces: the training targets (and their weights).
    type Targets;
    /// What [`Codec::decode`] takes: the network outputs for one image (or instance), batch
    /// dimension removed.
    type Outputs<'a>;
    /// What [`Codec::decode`] produces: keypoints or poses in the codec's map frame.
    type Decoded;

    fn encode(&self, annotation: Self::Annotation<'_>) -> Result<Self::Targets>;

    fn decode(&self, outputs: Self::Outputs<'_>) -> Result<Self::Decoded>;
}

#[cfg(test)]
mod tests {
    //! The trait is a second door to the same methods: through it every codec must give what
    //! its inherent methods give, with the packed arrays in the documented order.

    use ndarray::{Array2, Array3, Array4};

    use super::associative_embedding::AeCodec;
    use super::heatmap::HeatmapCodec;
    use super::paf::{PafCodec, PafDecodeParams, PafEncodeParams, PafLimbs};
    use super::spm::SpmCodec;
    use super::Codec;

    /// Two people, `k` joints each, on a diagonal line inside a 32x32 map; all visible.
    fn people(k: usize) -> Array3<f32> {
        Array3::from_shape_fn((2, k, 3), |(p, j, c)| match c {
            0 => 4.0 + 14.0 * p as f32 + j as f32,
            1 => 3.0 + 1.5 * j as f32,
            _ => 2.0,
        })
    }

    #[test]
    fn heatmap_codec_through_the_trait() {
        let codec = HeatmapCodec::new([64, 64], [16, 16]);
        let joints = people(3).index_axis(ndarray::Axis(0), 0).to_owned();
        let targets = Codec::encode(&codec, joints.view()).unwrap();
        assert_eq!(targets, codec.encode(joints.view()).unwrap());
        let decoded = Codec::decode(&codec, targets.heatmaps.view()).unwrap();
        assert_eq!(decoded, codec.decode(targets.heatmaps.view()).unwrap());
        assert_eq!(decoded.len(), 3);
    }

    #[test]
    fn ae_codec_through_the_trait() {
        let codec = AeCodec::coco([32, 32]);
        let people = people(17);
        let targets = Codec::encode(&codec, people.view()).unwrap();
        assert_eq!(targets, codec.encode(people.view()).unwrap());
        let tags = Array4::<f32>::zeros((17, 32, 32, 1));
        let outputs = (targets.heatmaps.view(), tags.view());
        let decoded = Codec::decode(&codec, outputs).unwrap();
        assert_eq!(
            decoded,
            codec.decode(targets.heatmaps.view(), tags.view()).unwrap()
        );
        assert!(!decoded.is_empty());
    }

    #[test]
    fn paf_codec_through_the_trait() {
        let codec = PafCodec::new(
            PafLimbs::cmu18(),
            PafEncodeParams {
                stride: 1.0,
                sigma: 1.0,
                ..PafEncodeParams::openpose([32, 32])
            },
            PafDecodeParams::grouping_only(),
        );
        let people = people(18);
        let keypoints = people.slice(ndarray::s![.., .., ..2]);
        let visible = Array2::from_elem((2, 18), 2.0f32);
        let targets = Codec::encode(&codec, (keypoints, visible.view())).unwrap();
        assert_eq!(targets, codec.encode(keypoints, visible.view()).unwrap());
        let outputs = (targets.heatmaps.view(), targets.pafs.view());
        let decoded = Codec::decode(&codec, outputs).unwrap();
        assert_eq!(
            decoded,
            codec
                .decode(targets.heatmaps.view(), targets.pafs.view())
                .unwrap()
        );
        assert!(!decoded.peaks.peaks.is_empty());
    }

    #[test]
    fn spm_codec_through_the_trait() {
        let codec = SpmCodec::flat([32, 32], 5);
        let people = people(5);
        let targets = Codec::encode(&codec, people.view()).unwrap();
        assert_eq!(targets, codec.encode(people.view()).unwrap());
        let outputs = (targets.root_heatmap.view(), targets.displacements.view());
        let decoded = Codec::decode(&codec, outputs).unwrap();
        assert_eq!(
            decoded,
            codec
                .decode(targets.root_heatmap.view(), targets.displacements.view())
                .unwrap()
        );
        assert_eq!(decoded.len(), 2);
    }
}
