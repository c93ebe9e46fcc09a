//! Part affinity fields (OpenPose): bottom-up pose estimation where a network predicts, besides a
//! heatmap per joint, a 2D vector field per limb pointing along the limb. Decoding finds joint
//! candidates, scores each candidate limb by how well the field along it agrees with its
//! direction, keeps the best non-conflicting limbs, and chains limbs that share joints into people.
//!
//! [`PafCodec`] holds the limb table and the parameters of both halves:
//! * [`PafLimbs`]: the limb table (joints and PAF channels), CMU-18 built in or from a layout.
//! * [`PafCodec::encode`] ([`encode`], [`PafEncodeParams`]): training targets (PAFs, Gaussian
//!   heatmaps with background, weights).
//! * [`PafCodec::decode`]: one implementation of the grouping, parameterised by
//!   [`PafDecodeParams`]: [`PafDecodeParams::tf_pose`] reproduces tf-pose-estimation's
//!   post-processing exactly (`TfPoseEstimator` + `pafprocess`), [`PafDecodeParams::cmu`]
//!   follows CMU's original Python demo.
//!
//! Decoding stages, all in [`PafCodec::decode`]: optional integer upsampling of the heatmaps and
//! Gaussian smoothing ([`smoothing`]), peak finding ([`peaks`]), limb scoring and greedy
//! matching ([`connect`]), assembly and filtering ([`assemble`]).

pub mod assemble;
pub mod connect;
pub mod encode;
pub mod limbs;
pub mod peaks;
pub mod smoothing;

use ndarray::{Array3, ArrayView2, ArrayView3, CowArray, Ix3};
use serde::{Deserialize, Serialize};

pub use assemble::PersonRecord;
pub use connect::Connection;
pub use encode::{PafEncodeParams, PafTargetRules, PafTargets};
pub use limbs::{Limb, PafLimbs};
pub use peaks::PeakSet;
pub use smoothing::HeatmapSmoothing;

use crate::codecs::Codec;
use crate::error::{Error, Result};
use crate::pose::{Keypoint, Pose};

/// The PAF codec (OpenPose): the limb table with the parameters of training targets and of
/// grouping. [`PafEncodeParams::heatmap_size`] sizes the targets only; decoding takes maps of
/// any size, as the network's output follows the picture's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PafCodec {
    /// Which joints each limb joins and where its field lives.
    pub limbs: PafLimbs,
    /// How annotations become targets (OpenPose's training data layer).
    pub encoding: PafEncodeParams,
    /// How one image's heatmaps and PAFs become people (tf-pose's or CMU's post-processing).
    pub decoding: PafDecodeParams,
}

impl PafCodec {
    pub fn new(limbs: PafLimbs, encoding: PafEncodeParams, decoding: PafDecodeParams) -> Self {
        PafCodec {
            limbs,
            encoding,
            decoding,
        }
    }

    /// Builds heatmap and PAF targets for `keypoints` `[N, K, 2]` (input pixels) with `visible`
    /// `[N, K]` (> 0 means labelled, COCO's v = 1 or 2); see [`encode`].
    pub fn encode(
        &self,
        keypoints: ArrayView3<f32>,
        visible: ArrayView2<f32>,
    ) -> Result<PafTargets> {
        encode::encode(&self.encoding, &self.limbs, keypoints, visible)
    }

    /// Groups joints into people from `heatmaps` `[>= K, H, W]` (extra channels such as the
    /// background are ignored) and `pafs` `[>= limbs.num_paf_channels(), H, W]`.
    ///
    /// With `upsample = r > 1`, only the joint heatmaps are materialised at `r` times the size
    /// (and smoothed); PAFs and peak scores are read from the input at `(y / r, x / r)`, which
    /// is exactly what pixel replication would give, without allocating the 38 upsampled PAF
    /// channels. Candidates of equal score keep their generation order (tf-pose's `std::sort`
    /// leaves such ties unspecified; with float scores from different pixels they practically
    /// never occur).
    pub fn decode(&self, heatmaps: ArrayView3<f32>, pafs: ArrayView3<f32>) -> Result<PafDecoding> {
        decode(heatmaps, pafs, &self.limbs, &self.decoding)
    }
}

impl Codec for PafCodec {
    /// `(keypoints [N, K, 2] in input pixels, visibility [N, K])`.
    type Annotation<'a> = (ArrayView3<'a, f32>, ArrayView2<'a, f32>);
    type Targets = PafTargets;
    /// `(heatmaps [>= K, H, W], PAFs [>= 2 * limbs, H, W])`.
    type Outputs<'a> = (ArrayView3<'a, f32>, ArrayView3<'a, f32>);
    type Decoded = PafDecoding;

    fn encode(&self, (keypoints, visible): Self::Annotation<'_>) -> Result<PafTargets> {
        PafCodec::encode(self, keypoints, visible)
    }

    fn decode(&self, (heatmaps, pafs): Self::Outputs<'_>) -> Result<PafDecoding> {
        PafCodec::decode(self, heatmaps, pafs)
    }
}

/// Parameters of [`PafCodec::decode`]. The defaults are tf-pose's (`pafprocess.h` and `estimator.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PafDecodeParams {
    /// Integer ratio by which heatmaps are upsampled (pixel replication) before peak finding;
    /// peaks, limb lengths and output coordinates are in the upsampled frame. tf-pose: 4.
    pub upsample: usize,
    /// Smoothing of the (upsampled) heatmaps used to find peaks; peak scores always come from
    /// the unsmoothed heatmaps. tf-pose: 25x25 CDF Gaussian, nsig 3.
    pub smoothing: HeatmapSmoothing,
    /// Side of the max-pool window of the peak test (odd). tf-pose: 3.
    pub nms_window: usize,
    /// A peak must exceed this on the map it was found on (`THRESH_HEAT`, 0.05).
    pub peak_threshold: f32,
    /// PAF samples per candidate limb (`STEP_PAF`, 10).
    pub paf_samples: usize,
    /// Whether the samples include joint B (CMU: `linspace(A, B, n)`) or stop one step short of
    /// it (tf-pose: `A + i (B - A) / n`, i < n).
    pub sample_end: bool,
    /// A sample counts as agreeing when its dot product with the limb direction exceeds this
    /// (`THRESH_VECTOR_SCORE`, 0.05).
    pub sample_threshold: f32,
    /// A candidate needs more than this many agreeing samples (`THRESH_VECTOR_CNT1`, 6).
    pub min_positive_samples: usize,
    /// Limbs longer than `distance_prior * map height` are penalised by
    /// `distance_prior * height / length - 1` (0.5); `None` disables the penalty.
    pub distance_prior: Option<f32>,
    /// People with fewer joints are dropped (`THRESH_PART_CNT`, 4).
    pub min_parts: usize,
    /// People whose score (sum / joint count) is below this are dropped (`THRESH_HUMAN_SCORE`, 0.3).
    pub min_person_score: f32,
    /// Reproduce tf-pose's merge test, which treats peak id 0 as absent (`> 0` instead of
    /// `>= 0`). Only changes results when the very first peak is involved in a merge.
    pub tfpose_peak_zero_quirk: bool,
}

impl Default for PafDecodeParams {
    fn default() -> Self {
        Self::tf_pose()
    }
}

impl PafDecodeParams {
    /// tf-pose-estimation's post-processing with `--resize-out-ratio 4`.
    pub fn tf_pose() -> Self {
        PafDecodeParams {
            upsample: 4,
            smoothing: HeatmapSmoothing::CdfGaussian {
                size: 25,
                nsig: 3.0,
            },
            nms_window: 3,
            peak_threshold: 0.05,
            paf_samples: 10,
            sample_end: false,
            sample_threshold: 0.05,
            min_positive_samples: 6,
            distance_prior: Some(0.5),
            min_parts: 4,
            min_person_score: 0.3,
            tfpose_peak_zero_quirk: true,
        }
    }

    /// CMU's original Python demo (`Realtime_Multi-Person_Pose_Estimation`): heatmaps and PAFs
    /// already resized to the image by the caller, Gaussian sigma 3 before peak finding,
    /// threshold 0.1, 10 samples including B, more than 8 agreeing, person score 0.4.
    /// Differences that remain: the demo's peak test is strict against the four direct
    /// neighbours and its Gaussian filter reflects at the border.
    pub fn cmu() -> Self {
        PafDecodeParams {
            upsample: 1,
            smoothing: HeatmapSmoothing::Gaussian { sigma: 3.0 },
            peak_threshold: 0.1,
            sample_end: true,
            min_positive_samples: 8,
            min_person_score: 0.4,
            tfpose_peak_zero_quirk: false,
            ..Self::tf_pose()
        }
    }

    /// Peaks + limb scoring + assembly directly on the maps, with tf-pose's thresholds: what a
    /// model whose heatmaps are already at the working resolution needs.
    pub fn grouping_only() -> Self {
        PafDecodeParams {
            upsample: 1,
            smoothing: HeatmapSmoothing::None,
            ..Self::tf_pose()
        }
    }

    fn validate(&self) -> Result<()> {
        if self.upsample == 0 {
            return Err(Error::Shape(
                "PAF decode: upsample must be at least 1".into(),
            ));
        }
        if self.nms_window.is_multiple_of(2) {
            return Err(Error::Shape(format!(
                "PAF decode: nms_window must be odd, got {}",
                self.nms_window
            )));
        }
        if self.paf_samples == 0 || (self.sample_end && self.paf_samples < 2) {
            return Err(Error::Shape(format!(
                "PAF decode: paf_samples must be at least 1 (2 with sample_end), got {}",
                self.paf_samples
            )));
        }
        for (name, v) in [
            ("peak_threshold", self.peak_threshold),
            ("sample_threshold", self.sample_threshold),
            ("min_person_score", self.min_person_score),
            ("distance_prior", self.distance_prior.unwrap_or(0.0)),
        ] {
            if !v.is_finite() {
                return Err(Error::Shape(format!(
                    "PAF decode: {name} must be finite, got {v}"
                )));
            }
        }
        Ok(())
    }
}

/// Everything [`PafCodec::decode`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct PafDecoding {
    /// All joint candidates, in the frame of the (upsampled) peak map.
    pub peaks: PeakSet,
    /// Surviving people in assembly order.
    pub people: Vec<PersonRecord>,
    /// Size of the peak map (`W * upsample`, `H * upsample`): the frame of the coordinates.
    pub width: usize,
    pub height: usize,
}

impl PafDecoding {
    /// One pose per person, joints in layout order, in peak-map pixels; a missing joint is
    /// (0, 0) with score 0. The pose score is tf-pose's `score_sum / part_count`.
    pub fn poses(&self) -> Vec<Pose> {
        self.people
            .iter()
            .map(|person| {
                let keypoints = person
                    .parts
                    .iter()
                    .map(|id| match id.and_then(|i| self.peaks.peaks.get(i)) {
                        Some(p) => Keypoint::new(p.x as f32, p.y as f32, p.score),
                        None => Keypoint::default(),
                    })
                    .collect();
                Pose::new(keypoints, person.score())
            })
            .collect()
    }

    /// [`Self::poses`] divided by the peak map's width and height, as tf-pose reports them.
    pub fn normalized_poses(&self) -> Vec<Pose> {
        let mut poses = self.poses();
        normalize_poses(&mut poses, self.width, self.height);
        poses
    }
}

/// Divides coordinates by the map size so that they lie in [0, 1) whatever the resolution; scale
/// by the image size to get image pixels (tf-pose's convention).
pub fn normalize_poses(poses: &mut [Pose], width: usize, height: usize) {
    let (sx, sy) = (1.0 / width.max(1) as f32, 1.0 / height.max(1) as f32);
    for k in poses.iter_mut().flat_map(|p| p.keypoints.iter_mut()) {
        k.x *= sx;
        k.y *= sy;
    }
}

/// [`PafCodec::decode`]: the stages listed in the module documentation.
fn decode(
    heatmaps: ArrayView3<f32>,
    pafs: ArrayView3<f32>,
    limbs: &PafLimbs,
    params: &PafDecodeParams,
) -> Result<PafDecoding> {
    params.validate()?;
    let k = limbs.num_joints();
    let (hc, h, w) = heatmaps.dim();
    let (pc, ph, pw) = pafs.dim();
    if hc < k {
        return Err(Error::Shape(format!(
            "PAF decode: heatmaps have {hc} channels, the limb table needs {k}"
        )));
    }
    if pc < limbs.num_paf_channels() {
        return Err(Error::Shape(format!(
            "PAF decode: PAFs have {pc} channels, the limb table needs {}",
            limbs.num_paf_channels()
        )));
    }
    if (ph, pw) != (h, w) {
        return Err(Error::Shape(format!(
            "PAF decode: heatmaps are {h}x{w} but PAFs are {ph}x{pw} (HxW)"
        )));
    }
    let r = params.upsample;
    let parts = heatmaps.slice(ndarray::s![..k, .., ..]);
    let kernel = params.smoothing.kernel_1d()?;
    // The map peaks are searched on: the heatmaps themselves when neither upsampled nor
    // smoothed, else an upsampled (and smoothed) copy of the joint channels only.
    let detect: CowArray<f32, Ix3> = if r == 1 && kernel.is_none() {
        CowArray::from(parts)
    } else {
        let up: Array3<f32> = match &kernel {
            Some(g) => smoothing::upsample_and_smooth(parts, r, g)?,
            None => smoothing::upsample_replicate(parts, r)?,
        };
        CowArray::from(up)
    };
    let peaks = peaks::find_peaks(
        detect.view(),
        parts,
        r,
        k,
        params.nms_window,
        params.peak_threshold,
    );

    let pafs = pafs.as_standard_layout();
    // Standard layout was just ensured, so the slice exists.
    let paf_data = pafs
        .as_slice()
        .ok_or_else(|| Error::Shape("PAF decode: PAF array is not contiguous".into()))?;
    let plane = h * w;
    let rule = connect::ScoringRule {
        samples: params.paf_samples,
        sample_end: params.sample_end,
        sample_threshold: params.sample_threshold,
        min_positive_samples: params.min_positive_samples,
        distance_prior: params.distance_prior,
        map_height: h * r,
    };
    let connections: Vec<Vec<Connection>> = limbs
        .limbs()
        .iter()
        .map(|limb| {
            let planes = connect::PafPlanes {
                x: &paf_data[limb.paf_x * plane..(limb.paf_x + 1) * plane],
                y: &paf_data[limb.paf_y * plane..(limb.paf_y + 1) * plane],
                width: w,
                ratio: r,
            };
            connect::connect_limb(&peaks, limb.joint_a, limb.joint_b, &planes, &rule)
        })
        .collect();
    let scores: Vec<f32> = peaks.peaks.iter().map(|p| p.score).collect();
    let people = assemble::assemble(
        &connections,
        limbs,
        &scores,
        &assemble::AssemblyRule {
            min_parts: params.min_parts,
            min_person_score: params.min_person_score,
            tfpose_peak_zero_quirk: params.tfpose_peak_zero_quirk,
        },
    );
    Ok(PafDecoding {
        peaks,
        people,
        width: w * r,
        height: h * r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn shape_mismatches_are_errors() {
        let limbs = PafLimbs::cmu18();
        let hm = Array3::<f32>::zeros((19, 8, 8));
        let paf = Array3::<f32>::zeros((38, 8, 8));
        let p = PafDecodeParams::default();
        assert!(decode(hm.view(), paf.view(), &limbs, &p).is_ok());
        let small = Array3::<f32>::zeros((17, 8, 8));
        assert!(matches!(
            decode(small.view(), paf.view(), &limbs, &p),
            Err(Error::Shape(_))
        ));
        let few = Array3::<f32>::zeros((30, 8, 8));
        assert!(matches!(
            decode(hm.view(), few.view(), &limbs, &p),
            Err(Error::Shape(_))
        ));
        let other = Array3::<f32>::zeros((38, 8, 9));
        assert!(matches!(
            decode(hm.view(), other.view(), &limbs, &p),
            Err(Error::Shape(_))
        ));
        let bad = PafDecodeParams {
            nms_window: 2,
            ..p.clone()
        };
        assert!(decode(hm.view(), paf.view(), &limbs, &bad).is_err());
        let bad = PafDecodeParams { upsample: 0, ..p };
        assert!(decode(hm.view(), paf.view(), &limbs, &bad).is_err());
    }

    #[test]
    fn params_round_trip_through_json_with_defaults() {
        let p: PafDecodeParams = serde_json::from_str(r#"{"upsample": 2}"#).unwrap();
        assert_eq!(
            p,
            PafDecodeParams {
                upsample: 2,
                ..PafDecodeParams::tf_pose()
            }
        );
        let s = serde_json::to_string(&PafDecodeParams::cmu()).unwrap();
        assert_eq!(
            serde_json::from_str::<PafDecodeParams>(&s).unwrap(),
            PafDecodeParams::cmu()
        );
        assert!(serde_json::from_str::<PafDecodeParams>(r#"{"upsampel": 2}"#).is_err());
    }

    #[test]
    fn normalising_divides_by_map_size() {
        let mut poses = vec![Pose::new(vec![Keypoint::new(54.0, 46.0, 0.5)], 1.0)];
        normalize_poses(&mut poses, 216, 184);
        assert_eq!(poses[0].keypoints[0].x, 0.25);
        assert_eq!(poses[0].keypoints[0].y, 0.25);
    }
}
