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
