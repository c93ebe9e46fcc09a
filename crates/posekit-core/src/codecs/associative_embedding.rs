//! Associative embedding (Newell et al., 2017) as HigherHRNet uses it: per-joint heatmaps plus
//! per-joint "tag" maps whose values are similar for the joints of one person.
//!
//! [`AeCodec`] pairs the two halves, each with its own parameters:
//! * [`AeCodec::encode`] ([`encode`], [`AeEncodeParams`]) builds the training targets of
//!   HigherHRNet's `HeatmapGenerator` (Gaussian per joint, the maximum over people) and
//!   `JointsGenerator` (the pixel index of each visible joint, for the tag loss).
//! * [`AeCodec::decode`] ([`grouping`], [`AeDecodeParams`]) turns one image's (already
//!   aggregated) heatmaps and tags into poses exactly as HigherHRNet's `HeatmapParser.parse`
//!   (`lib/core/group.py`): max-pool NMS, top-k per joint, `match_by_tag`, `adjust`, optional
//!   `refine` (`refine.rs`, with its pruned arg-max search), all means in NumPy's summation
//!   order (`numpy.rs`).
//!
//! Decoding reproduces the reference number for number, including its quirks, because they
//! change which joints end up in which person:
//! * people are keyed by the first tag dimension of the joint that created them; a new
//!   person whose key equals an existing one (exact float equality) merges into it, as a
//!   Python `dict` would do;
//! * only the first `max_num_people` people take part in matching;
//! * the matching cost `round(tag distance) * 100 - score` ties very often, and the Munkres
//!   implementation's own tie-breaking decides ([`Matcher::Munkres`] reproduces it);
//! * means of tags and of scores are taken in `f32` in NumPy's summation order.
//!
//! Coordinates are heatmap pixels with HigherHRNet's conventions: with `adjust` a joint found
//! at pixel `(x, y)` is reported at `x + 0.5 ± 0.25` (the +0.5 is the code's own offset; the
//! pipeline maps these to the image), without it at `x` exactly. Joints that were not found
//! are `(0, 0)` with score 0. A person's score is the mean of its joints' scores taken *before*
//! refinement, as `HeatmapParser.parse` returns it.

pub mod encode;
pub mod grouping;
mod numpy;
mod refine;

use ndarray::{ArrayView3, ArrayView4};
use serde::{Deserialize, Serialize};

pub use encode::{AeEncodeParams, AeTargets};
pub use grouping::{joint_order_for_layout, AeDecodeParams, Matcher, COCO_JOINT_ORDER};

use crate::codecs::Codec;
use crate::error::Result;
use crate::layout::KeypointLayout;
use crate::pose::Pose;

/// HigherHRNet's `MAX_NUM_PEOPLE`, the default of both halves.
fn default_max_people() -> usize {
    30
}

fn default_true() -> bool {
    true
}

/// The associative-embedding codec: HigherHRNet's training targets and its grouping.
///
/// The two halves share no parameter: [`AeEncodeParams::heatmap_size`] sizes the targets only,
/// and decoding takes maps of any size, as HigherHRNet tests at each image's own resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AeCodec {
    /// How annotations become targets (`HeatmapGenerator` + `JointsGenerator`).
    pub encoding: AeEncodeParams,
    /// How one image's heatmaps and tags become people (`HeatmapParser`).
    pub decoding: AeDecodeParams,
}

impl AeCodec {
    pub fn new(encoding: AeEncodeParams, decoding: AeDecodeParams) -> Self {
        AeCodec { encoding, decoding }
    }

    /// HigherHRNet's COCO configuration, targets of `[W, H]` heatmap pixels.
    pub fn coco(heatmap_size: [usize; 2]) -> Self {
        Self::new(AeEncodeParams::new(heatmap_size), AeDecodeParams::coco())
    }

    /// HigherHRNet's defaults with the grouping order derived from the layout's joint names
    /// ([`joint_order_for_layout`]).
    pub fn for_layout(heatmap_size: [usize; 2], layout: &KeypointLayout) -> Self {
        Self::new(
            AeEncodeParams::new(heatmap_size),
            AeDecodeParams::for_layout(layout),
        )
    }

    /// Targets from `people`, `[N, K, 3]`: x, y in heatmap pixels and a visibility (a joint
    /// is used when visibility > 0). As in HigherHRNet, a joint is placed at the pixel
    /// `(trunc(x), trunc(y))` and skipped when that pixel is outside the map.
    pub fn encode(&self, people: ArrayView3<f32>) -> Result<AeTargets> {
        encode::encode(&self.encoding, people)
    }

    /// Groups one image's joints into people.
    ///
    /// `heatmaps` is `[K, H, W]`; `tags` is `[K, H, W, L]` with `L` tag dimensions, or
    /// `[1, H, W, L]` for a tag map shared by all joints (`TAG_PER_JOINT: False`). A `[K, H, W]`
    /// tag array becomes `[K, H, W, 1]` with `tags.insert_axis(Axis(3))`. Both must be finite.
    pub fn decode(&self, heatmaps: ArrayView3<f32>, tags: ArrayView4<f32>) -> Result<Vec<Pose>> {
        grouping::decode(&self.decoding, heatmaps, tags)
    }
}

impl Codec for AeCodec {
    /// `[N, K, 3]` people: x, y in heatmap pixels and a visibility.
    type Annotation<'a> = ArrayView3<'a, f32>;
    type Targets = AeTargets;
    /// `(heatmaps [K, H, W], tags [K or 1, H, W, L])`.
    type Outputs<'a> = (ArrayView3<'a, f32>, ArrayView4<'a, f32>);
    type Decoded = Vec<Pose>;

    fn encode(&self, people: Self::Annotation<'_>) -> Result<AeTargets> {
        AeCodec::encode(self, people)
    }

    fn decode(&self, (heatmaps, tags): Self::Outputs<'_>) -> Result<Vec<Pose>> {
        AeCodec::decode(self, heatmaps, tags)
    }
}
