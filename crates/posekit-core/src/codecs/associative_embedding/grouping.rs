//! Decoding: HigherHRNet's `HeatmapParser.parse` (`lib/core/group.py`) on one image's
//! aggregated heatmaps and tags. Per joint in [`AeDecodeParams::joint_order`]: max-pool NMS
//! and top-k candidates ([`local_maxima_above`]), `match_by_tag` against the people found so
//! far (Munkres on `round(distance) * 100 - score`), then `adjust` (quarter-pixel shift) and,
//! when enabled, `refine` (in `refine.rs`).

use ndarray::{Array2, ArrayView2, ArrayView3, ArrayView4};
use serde::{Deserialize, Serialize};

use super::numpy::{numpy_mean_rows, numpy_sum_f32};
use super::refine::{refine, RefineIndex};
use super::{default_max_people, default_true};
use crate::codecs::hungarian::{min_cost_assignment, munkres_assignment};
use crate::codecs::peaks::local_maxima_above;
use crate::error::{Error, Result};
use crate::layout::KeypointLayout;
use crate::pose::{Keypoint, Pose};

/// HigherHRNet's joint order for COCO-17 (`Params.joint_order`): head, shoulders, hips, then
/// elbows, wrists, knees and ankles. Torso joints go first because their tags are the most
/// reliable, so people are seeded from them.
pub const COCO_JOINT_ORDER: [usize; 17] =
    [0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16];

/// The order in which a layout's joints are grouped: HigherHRNet's COCO order generalised by
/// joint names — head and neck, shoulders, hips (and pelvis), elbows, wrists, knees, ankles,
/// then any other joint; layout order within each group. For COCO-17 this is exactly
/// [`COCO_JOINT_ORDER`].
pub fn joint_order_for_layout(layout: &KeypointLayout) -> Vec<usize> {
    fn tier(name: &str) -> u8 {
        let n = name.to_ascii_lowercase();
        let has = |s: &str| n.contains(s);
        if has("shoulder") {
            1
        } else if has("hip") || has("pelvis") {
            2
        } else if has("elbow") {
            3
        } else if has("wrist") {
            4
        } else if has("knee") {
            5
        } else if has("ankle") {
            6
        } else if [
            "nose", "eye", "ear", "head", "neck", "thorax", "mouth", "top",
        ]
        .iter()
        .any(|s| has(s))
        {
            0
        } else {
            7
        }
    }
    let mut order: Vec<usize> = (0..layout.keypoints.len()).collect();
    order.sort_by_key(|&i| tier(&layout.keypoints[i]));
    order
}

/// Which assignment solver matches a joint's candidates to the people found so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Matcher {
    /// Step-for-step Python `munkres` (what HigherHRNet calls): same optimum, same ties.
    #[default]
    Munkres,
    /// The O(n³) shortest-augmenting-path solver: an optimum as well, but ties may be broken
    /// differently from HigherHRNet. Faster on large, tie-heavy matrices.
    ShortestPath,
}

/// Parameters of decoding (grouping); the defaults are HigherHRNet's COCO test configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AeDecodeParams {
    /// Joint indices in grouping order; must be a permutation of `0..K`.
    pub joint_order: Vec<usize>,
    /// Candidates kept per joint and people taking part in matching (`MAX_NUM_PEOPLE`).
    #[serde(default = "default_max_people")]
    pub max_num_people: usize,
    /// Candidates need a heatmap value above this (`DETECTION_THRESHOLD`).
    #[serde(default = "default_detection_threshold")]
    pub detection_threshold: f32,
    /// A candidate joins a person only if their tag distance is below this (`TAG_THRESHOLD`).
    #[serde(default = "default_tag_threshold")]
    pub tag_threshold: f64,
    /// Cost `round(distance) * 100 - score` instead of the raw distance (`USE_DETECTION_VAL`).
    #[serde(default = "default_true")]
    pub use_detection_val: bool,
    /// Skip a joint entirely once `max_num_people` people exist (`IGNORE_TOO_MUCH`).
    #[serde(default)]
    pub ignore_too_much: bool,
    /// Odd max-pool NMS kernel (`NMS_KERNEL`; padding is `(k - 1) / 2`).
    #[serde(default = "default_nms_kernel")]
    pub nms_kernel: usize,
    /// Quarter-pixel shift towards the higher neighbour plus the +0.5 offset (`TEST.ADJUST`).
    #[serde(default = "default_true")]
    pub adjust: bool,
    /// Fill missing joints from the whole heatmap using the person's mean tag (`TEST.REFINE`).
    #[serde(default = "default_true")]
    pub refine: bool,
    #[serde(default)]
    pub matcher: Matcher,
}

fn default_detection_threshold() -> f32 {
    0.1
}
fn default_tag_threshold() -> f64 {
    1.0
}
fn default_nms_kernel() -> usize {
    5
}

/// Cost of pairing a candidate with the padding columns HigherHRNet adds when there are more
/// candidates than people: high enough that padding is only used when unavoidable.
const PADDING_COST: f64 = 1e10;

impl AeDecodeParams {
    /// HigherHRNet's test defaults with the given joint order.
    pub fn new(joint_order: Vec<usize>) -> Self {
        AeDecodeParams {
            joint_order,
            max_num_people: default_max_people(),
            detection_threshold: default_detection_threshold(),
            tag_threshold: default_tag_threshold(),
            use_detection_val: true,
            ignore_too_much: false,
            nms_kernel: default_nms_kernel(),
            adjust: true,
            refine: true,
            matcher: Matcher::Munkres,
        }
    }

    /// HigherHRNet's COCO configuration.
    pub fn coco() -> Self {
        Self::new(COCO_JOINT_ORDER.to_vec())
    }

    /// Defaults with the joint order derived from the layout ([`joint_order_for_layout`]).
    pub fn for_layout(layout: &KeypointLayout) -> Self {
        Self::new(joint_order_for_layout(layout))
    }

    fn validate(&self, num_joints: usize) -> Result<()> {
        let mut seen = vec![false; num_joints];
        let permutation = self.joint_order.len() == num_joints
            && self
                .joint_order
                .iter()
                .all(|&j| j < num_joints && !std::mem::replace(&mut seen[j], true));
        if !permutation {
            return Err(Error::Shape(format!(
                "AE grouping: joint_order {:?} is not a permutation of 0..{num_joints} (the \
                 heatmaps have {num_joints} joints)",
                self.joint_order
            )));
        }
        if self.max_num_people == 0 {
            return Err(Error::Shape(
                "AE grouping: max_num_people must be at least 1".into(),
            ));
        }
        if !(self.detection_threshold >= 0.0 && self.detection_threshold.is_finite()) {
            return Err(Error::Shape(format!(
                "AE grouping: detection_threshold must be finite and >= 0, got {}",
                self.detection_threshold
            )));
        }
        if !self.tag_threshold.is_finite() {
            return Err(Error::Shape(format!(
                "AE grouping: tag_threshold must be finite, got {}",
                self.tag_threshold
            )));
        }
        if self.nms_kernel == 0 || self.nms_kernel.is_multiple_of(2) {
            return Err(Error::Shape(format!(
                "AE grouping: nms_kernel must be odd, got {}",
                self.nms_kernel
            )));
        }
        Ok(())
    }

    /// HigherHRNet's `match_by_tag` on the NMS'd top-k candidates of every joint.
    /// Also returns every joint's candidate pixels, which seed `refine`'s search.
    fn match_by_tag(
        &self,
        heatmaps: &ArrayView3<f32>,
        maps: &TagMaps,
    ) -> Result<(Vec<Person>, Vec<Vec<usize>>)> {
        let num_joints = heatmaps.dim().0;
        let dims = maps.dims();
        let mut people: Vec<Person> = Vec::new();
        let mut peak_pixels: Vec<Vec<usize>> = vec![Vec::new(); num_joints];
        for (step, &joint) in self.joint_order.iter().enumerate() {
            let peaks = local_maxima_above(
                heatmaps.index_axis(ndarray::Axis(0), joint),
                self.nms_kernel,
                self.detection_threshold,
                self.max_num_people,
            )?;
            let w = heatmaps.dim().2;
            peak_pixels[joint] = peaks.iter().map(|p| p.y * w + p.x).collect();
            if peaks.is_empty() {
                continue;
            }
            let candidates: Vec<Candidate> = peaks
                .iter()
                .map(|p| Candidate {
                    found: FoundJoint {
                        x: p.x,
                        y: p.y,
                        score: p.score,
                        pos: (p.x as f32, p.y as f32),
                    },
                    tag: maps.tag_at(joint, p.y, p.x).collect(),
                })
                .collect();

            if step == 0 || people.is_empty() {
                for cand in &candidates {
                    start_or_reset(&mut people, num_joints, joint, cand);
                }
                continue;
            }

            let num_grouped = people.len().min(self.max_num_people);
            if self.ignore_too_much && num_grouped == self.max_num_people {
                continue;
            }
            let means: Vec<Vec<f32>> = people[..num_grouped]
                .iter()
                .map(|p| p.mean_tag(dims))
                .collect();
            let num_added = candidates.len();
            // HigherHRNet pads with expensive columns only when candidates outnumber people;
            // with fewer candidates the matrix stays wide (Munkres pads rows internally).
            let cols = num_grouped.max(num_added);
            let mut distance = Array2::<f64>::zeros((num_added, num_grouped));
            let mut cost = Array2::<f64>::from_elem((num_added, cols), PADDING_COST);
            for (r, cand) in candidates.iter().enumerate() {
                for (c, mean) in means.iter().enumerate() {
                    // NumPy: float64 difference of the float32 tag and float32 mean, then
                    // sqrt of the sum of squares.
                    let sq: f64 = cand.tag.iter().zip(mean).fold(0.0, |acc, (&t, &m)| {
                        let d = t as f64 - m as f64;
                        acc + d * d
                    });
                    let d = sq.sqrt();
                    distance[[r, c]] = d;
                    cost[[r, c]] = if self.use_detection_val {
                        d.round_ties_even() * 100.0 - cand.found.score as f64
                    } else {
                        d
                    };
                }
            }
            let pairs = match self.matcher {
                Matcher::Munkres => munkres_assignment(cost.view())?,
                Matcher::ShortestPath => min_cost_assignment(cost.view())?.pairs(),
            };
            for (row, col) in pairs {
                let cand = &candidates[row];
                if col < num_grouped && distance[[row, col]] < self.tag_threshold {
                    let person = &mut people[col];
                    person.joints[joint] = Some(cand.found);
                    person.tags.extend_from_slice(&cand.tag);
                } else {
                    start_or_reset(&mut people, num_joints, joint, cand);
                }
            }
        }
        Ok((people, peak_pixels))
    }
}

/// [`AeCodec::decode`](super::AeCodec::decode): HigherHRNet's `HeatmapParser.parse` on one
/// image, see the module documentation of [`super`].
pub(super) fn decode(
    params: &AeDecodeParams,
    heatmaps: ArrayView3<f32>,
    tags: ArrayView4<f32>,
) -> Result<Vec<Pose>> {
    let (k, h, w) = heatmaps.dim();
    let (kt, th, tw, dims) = tags.dim();
    if h == 0 || w == 0 {
        return Err(Error::Shape(format!(
            "AE grouping: empty heatmaps {:?}",
            heatmaps.shape()
        )));
    }
    if (kt != k && kt != 1) || th != h || tw != w || dims == 0 {
        return Err(Error::Shape(format!(
            "AE grouping: tags {:?} do not fit heatmaps {:?} (expected [{k} or 1, {h}, {w}, L>=1])",
            tags.shape(),
            heatmaps.shape()
        )));
    }
    params.validate(k)?;
    // Contiguous copies only when the caller passed strided views: the refine search runs
    // on plain slices.
    let heatmaps = heatmaps.as_standard_layout();
    let heatmaps = heatmaps.view();
    let tags = tags.as_standard_layout();
    let tags = tags.view();
    // Standard layout, so slice positions are logical flat indices.
    if let Some(pos) = heatmaps.as_slice().map_or_else(
        || heatmaps.iter().position(|v| !v.is_finite()),
        first_non_finite,
    ) {
        return Err(Error::Shape(format!(
            "AE grouping: heatmaps hold a non-finite value at flat index {pos}"
        )));
    }
    if let Some(pos) = tags.as_slice().map_or_else(
        || tags.iter().position(|v| !v.is_finite()),
        first_non_finite,
    ) {
        return Err(Error::Shape(format!(
            "AE grouping: tags hold a non-finite value at flat index {pos}"
        )));
    }
    let maps = TagMaps {
        tags,
        per_joint: kt == k,
    };

    let (mut people, peaks) = params.match_by_tag(&heatmaps, &maps)?;
    if params.adjust {
        for person in &mut people {
            for (joint, slot) in person.joints.iter_mut().enumerate() {
                if let Some(found) = slot {
                    let (x, y) = quarter_shift(
                        &heatmaps.index_axis(ndarray::Axis(0), joint),
                        found.x,
                        found.y,
                    );
                    found.pos = (x, y);
                }
            }
        }
    }
    let mut poses: Vec<Pose> = people
        .iter()
        .map(|person| {
            let keypoints: Vec<Keypoint> = person
                .joints
                .iter()
                .map(|slot| match slot {
                    Some(j) => Keypoint::new(j.pos.0, j.pos.1, j.score),
                    None => Keypoint::default(),
                })
                .collect();
            let scores: Vec<f32> = keypoints.iter().map(|kp| kp.score).collect();
            let score = numpy_sum_f32(&scores) / k as f32;
            Pose::new(keypoints, score)
        })
        .collect();
    if params.refine {
        let mut index: Vec<Option<RefineIndex>> = vec![None; k];
        for (person, pose) in people.iter().zip(poses.iter_mut()) {
            refine(&heatmaps, &maps, &peaks, &mut index, person, pose);
        }
    }
    Ok(poses)
}

/// Flat index of the first NaN or infinity. The all-finite test has no early exit so that
/// it vectorises; only an input that fails it pays for finding the position.
fn first_non_finite(values: &[f32]) -> Option<usize> {
    let all_finite = values
        .chunks(1024)
        .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()));
    if all_finite {
        None
    } else {
        values.iter().position(|v| !v.is_finite())
    }
}

/// Read access to `[K or 1, H, W, L]` tags, hiding whether they are shared by all joints.
pub(super) struct TagMaps<'a> {
    pub(super) tags: ArrayView4<'a, f32>,
    per_joint: bool,
}

impl<'a> TagMaps<'a> {
    pub(super) fn dims(&self) -> usize {
        self.tags.dim().3
    }

    /// Index of the tag plane that serves `joint`.
    pub(super) fn plane(&self, joint: usize) -> usize {
        if self.per_joint {
            joint
        } else {
            0
        }
    }

    pub(super) fn tag_at(
        &self,
        joint: usize,
        y: usize,
        x: usize,
    ) -> impl Iterator<Item = f32> + '_ + use<'_, 'a> {
        let j = self.plane(joint);
        (0..self.dims()).map(move |l| self.tags[[j, y, x, l]])
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct FoundJoint {
    pub(super) x: usize,
    pub(super) y: usize,
    score: f32,
    /// Reported position (after `adjust` when enabled).
    pos: (f32, f32),
}

struct Candidate {
    found: FoundJoint,
    tag: Vec<f32>,
}

/// One person being assembled: HigherHRNet's `joint_dict` entry plus its `tag_dict` list.
pub(super) struct Person {
    /// First tag dimension of the joint that created the person (the Python dict key).
    key: f32,
    pub(super) joints: Vec<Option<FoundJoint>>,
    /// Tags of the grouped joints, flattened `n × L`.
    tags: Vec<f32>,
}

impl Person {
    fn mean_tag(&self, dims: usize) -> Vec<f32> {
        numpy_mean_rows(&self.tags, dims)
    }
}

/// `joint_dict.setdefault(tag[0], empty)[joint] = candidate; tag_dict[tag[0]] = [tag]`:
/// starts a person, or — when a person with an equal key exists — overwrites that person's
/// joint and resets its tag list.
fn start_or_reset(people: &mut Vec<Person>, num_joints: usize, joint: usize, cand: &Candidate) {
    let key = cand.tag[0];
    let index = match people.iter().position(|p| p.key == key) {
        Some(i) => i,
        None => {
            people.push(Person {
                key,
                joints: vec![None; num_joints],
                tags: Vec::new(),
            });
            people.len() - 1
        }
    };
    let person = &mut people[index];
    person.joints[joint] = Some(cand.found);
    person.tags.clear();
    person.tags.extend_from_slice(&cand.tag);
}

/// HigherHRNet's `adjust`: move a quarter pixel towards the higher horizontal and vertical
/// neighbour (down/left on equality) and add the code's +0.5 offset.
fn quarter_shift(map: &ArrayView2<f32>, x: usize, y: usize) -> (f32, f32) {
    let (h, w) = map.dim();
    let mut fx = x as f32;
    let mut fy = y as f32;
    if map[[y, (x + 1).min(w - 1)]] > map[[y, x.saturating_sub(1)]] {
        fx += 0.25;
    } else {
        fx -= 0.25;
    }
    if map[[(y + 1).min(h - 1), x]] > map[[y.saturating_sub(1), x]] {
        fy += 0.25;
    } else {
        fy -= 0.25;
    }
    (fx + 0.5, fy + 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, Array4, Axis};

    fn blob(map: &mut ndarray::ArrayViewMut2<f32>, x: usize, y: usize, peak: f32) {
        let (h, w) = map.dim();
        for yy in 0..h {
            for xx in 0..w {
                let d2 = (xx as f32 - x as f32).powi(2) + (yy as f32 - y as f32).powi(2);
                let v = peak * (-d2 / 8.0).exp();
                map[[yy, xx]] = map[[yy, xx]].max(v);
            }
        }
    }

    /// Two well-separated people with distinct tags; all COCO joints present.
    fn two_people() -> (Array3<f32>, Array4<f32>) {
        let (k, h, w) = (17, 40, 40);
        let mut hm = Array3::<f32>::zeros((k, h, w));
        let mut tags = Array4::<f32>::zeros((k, h, w, 1));
        for j in 0..k {
            for (p, (bx, tag)) in [(5usize, -1.0f32), (25, 2.0)].iter().enumerate() {
                let x = bx + j % 6;
                let y = 3 + 2 * j;
                blob(
                    &mut hm.index_axis_mut(Axis(0), j),
                    x,
                    y,
                    0.9 - 0.1 * p as f32,
                );
                for yy in y.saturating_sub(3)..(y + 4).min(h) {
                    for xx in x.saturating_sub(3)..(x + 4).min(w) {
                        tags[[j, yy, xx, 0]] = *tag + 0.01 * j as f32;
                    }
                }
            }
        }
        (hm, tags)
    }

    #[test]
    fn groups_two_people_by_tag() {
        let (hm, tags) = two_people();
        let poses = decode(&AeDecodeParams::coco(), hm.view(), tags.view()).unwrap();
        assert_eq!(poses.len(), 2);
        for (p, pose) in poses.iter().enumerate() {
            let bx = [5.0, 25.0][p];
            for (j, kp) in pose.keypoints.iter().enumerate() {
                let x = bx + (j % 6) as f32;
                let y = (3 + 2 * j) as f32;
                assert!(
                    (kp.x - (x + 0.5)).abs() <= 0.25 && (kp.y - (y + 0.5)).abs() <= 0.25,
                    "{p} {j} {kp:?}"
                );
            }
            assert!((pose.score - [0.9, 0.8][p]).abs() < 1e-6);
        }
    }

    #[test]
    fn shared_tag_map_and_multi_dim_tags_are_accepted() {
        let (hm, tags) = two_people();
        let shared = tags.index_axis(Axis(0), 0).insert_axis(Axis(0)).to_owned();
        let cfg = AeDecodeParams::coco();
        assert!(decode(&cfg, hm.view(), shared.view()).is_ok());
        let mut two_dim = Array4::<f32>::zeros((17, 40, 40, 2));
        two_dim
            .slice_mut(ndarray::s![.., .., .., 0..1])
            .assign(&tags);
        let poses = decode(&cfg, hm.view(), two_dim.view()).unwrap();
        assert_eq!(poses.len(), 2);
    }

    #[test]
    fn rejects_bad_shapes_orders_and_values() {
        let (hm, tags) = two_people();
        let cfg = AeDecodeParams::coco();
        let wrong = Array4::<f32>::zeros((17, 39, 40, 1));
        assert!(matches!(
            decode(&cfg, hm.view(), wrong.view()),
            Err(Error::Shape(_))
        ));
        let mut bad_order = AeDecodeParams::coco();
        bad_order.joint_order[3] = 0;
        assert!(decode(&bad_order, hm.view(), tags.view()).is_err());
        let mut nan = hm.clone();
        nan[[2, 3, 4]] = f32::NAN;
        assert!(decode(&cfg, nan.view(), tags.view()).is_err());
        let mut even = AeDecodeParams::coco();
        even.nms_kernel = 4;
        assert!(decode(&even, hm.view(), tags.view()).is_err());
    }

    #[test]
    fn strided_views_decode_like_standard_arrays() {
        let (hm, tags) = two_people();
        let mut cfg = AeDecodeParams::coco();
        // Push a joint of person 0 below the detection threshold so that refine finds it.
        let mut hm = hm;
        hm.slice_mut(ndarray::s![9, .., ..20])
            .mapv_inplace(|v| v * 0.1);
        let want = decode(&cfg, hm.view(), tags.view()).unwrap();
        let hm_t = hm.view().reversed_axes().to_owned();
        let tags_t = tags.view().reversed_axes().to_owned();
        let got = decode(
            &cfg,
            hm_t.view().reversed_axes(),
            tags_t.view().reversed_axes(),
        )
        .unwrap();
        assert_eq!(got, want);
        cfg.refine = false;
        assert_ne!(
            decode(&cfg, hm.view(), tags.view()).unwrap(),
            want,
            "refine filled a joint"
        );
    }

    #[test]
    fn empty_heatmaps_give_no_people() {
        let hm = Array3::<f32>::zeros((17, 16, 16));
        let tags = Array4::<f32>::zeros((17, 16, 16, 1));
        assert!(decode(&AeDecodeParams::coco(), hm.view(), tags.view())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn coco_order_from_names() {
        let layout = KeypointLayout::builtin("coco17").expect("built-in layout");
        assert_eq!(joint_order_for_layout(&layout), COCO_JOINT_ORDER.to_vec());
    }
}
