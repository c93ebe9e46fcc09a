//! Associative embedding (Newell et al., 2017) as HigherHRNet uses it: per-joint heatmaps plus
//! per-joint "tag" maps whose values are similar for the joints of one person.
//!
//! * [`AeTargetConfig::encode`] builds the training targets of HigherHRNet's
//!   `HeatmapGenerator` (Gaussian per joint, the maximum over people) and `JointsGenerator`
//!   (the pixel index of each visible joint, for the tag loss).
//! * [`AeGroupingConfig::decode`] turns one image's (already aggregated) heatmaps and tags into
//!   poses exactly as HigherHRNet's `HeatmapParser.parse` (`lib/core/group.py`): max-pool NMS,
//!   top-k per joint, `match_by_tag`, `adjust`, optional `refine`.
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

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayView4};
use serde::{Deserialize, Serialize};

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

/// Grouping parameters; the defaults are HigherHRNet's COCO test configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AeGroupingConfig {
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

fn default_max_people() -> usize {
    30
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
fn default_true() -> bool {
    true
}

/// Cost of pairing a candidate with the padding columns HigherHRNet adds when there are more
/// candidates than people: high enough that padding is only used when unavoidable.
const PADDING_COST: f64 = 1e10;

impl AeGroupingConfig {
    /// HigherHRNet's test defaults with the given joint order.
    pub fn new(joint_order: Vec<usize>) -> Self {
        AeGroupingConfig {
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

    /// Groups one image's joints into people.
    ///
    /// `heatmaps` is `[K, H, W]`; `tags` is `[K, H, W, L]` with `L` tag dimensions, or
    /// `[1, H, W, L]` for a tag map shared by all joints (`TAG_PER_JOINT: False`). A `[K, H, W]`
    /// tag array becomes `[K, H, W, 1]` with `tags.insert_axis(Axis(3))`. Both must be finite.
    pub fn decode(&self, heatmaps: ArrayView3<f32>, tags: ArrayView4<f32>) -> Result<Vec<Pose>> {
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
        self.validate(k)?;
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

        let (mut people, peaks) = self.match_by_tag(&heatmaps, &maps)?;
        if self.adjust {
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
        if self.refine {
            let mut index: Vec<Option<RefineIndex>> = vec![None; k];
            for (person, pose) in people.iter().zip(poses.iter_mut()) {
                refine(&heatmaps, &maps, &peaks, &mut index, person, pose);
            }
        }
        Ok(poses)
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
struct TagMaps<'a> {
    tags: ArrayView4<'a, f32>,
    per_joint: bool,
}

impl<'a> TagMaps<'a> {
    fn dims(&self) -> usize {
        self.tags.dim().3
    }

    /// Index of the tag plane that serves `joint`.
    fn plane(&self, joint: usize) -> usize {
        if self.per_joint {
            joint
        } else {
            0
        }
    }

    fn tag_at(
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
struct FoundJoint {
    x: usize,
    y: usize,
    score: f32,
    /// Reported position (after `adjust` when enabled).
    pos: (f32, f32),
}

struct Candidate {
    found: FoundJoint,
    tag: Vec<f32>,
}

/// One person being assembled: HigherHRNet's `joint_dict` entry plus its `tag_dict` list.
struct Person {
    /// First tag dimension of the joint that created the person (the Python dict key).
    key: f32,
    joints: Vec<Option<FoundJoint>>,
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

/// HigherHRNet's `refine` for one person: every missing joint is placed at the pixel that
/// maximises `heatmap - round(|tag - mean tag|)` over the whole map (first maximum in
/// row-major order), if the heatmap is positive there. The mean tag is taken over the joints
/// found by matching (read at their pixels), in `f32` as NumPy does.
fn refine(
    heatmaps: &ArrayView3<f32>,
    maps: &TagMaps,
    peaks: &[Vec<usize>],
    index: &mut [Option<RefineIndex>],
    person: &Person,
    pose: &mut Pose,
) {
    let dims = maps.dims();
    let mut found_tags: Vec<f32> = Vec::new();
    for (joint, slot) in person.joints.iter().enumerate() {
        if let Some(j) = slot {
            found_tags.extend(maps.tag_at(joint, j.y, j.x));
        }
    }
    if found_tags.is_empty() {
        return;
    }
    let mean = numpy_mean_rows(&found_tags, dims);
    for (joint, kp) in pose.keypoints.iter_mut().enumerate() {
        if kp.score != 0.0 {
            continue;
        }
        let map = heatmaps.index_axis(ndarray::Axis(0), joint);
        let (h, w) = map.dim();
        let plane = maps.tags.index_axis(ndarray::Axis(0), maps.plane(joint));
        let best = match (map.as_slice(), plane.as_slice(), mean.as_slice()) {
            (Some(det), Some(tag), &[m]) => {
                let order = index[joint].get_or_insert_with(|| RefineIndex::new(det, tag, w));
                refine_argmax_one_dim(det, tag, w, order, &peaks[joint], m)
            }
            _ => refine_argmax(&map, maps, joint, &mean),
        };
        let (bx, by) = (best % w, best / w);
        let val = map[[by, bx]];
        if val > 0.0 {
            let mut fx = bx as f32 + 0.5;
            let mut fy = by as f32 + 0.5;
            fx += if map[[by, (bx + 1).min(w - 1)]] > map[[by, bx.saturating_sub(1)]] {
                0.25
            } else {
                -0.25
            };
            fy += if map[[(by + 1).min(h - 1), bx]] > map[[by.saturating_sub(1), bx]] {
                0.25
            } else {
                -0.25
            };
            *kp = Keypoint::new(fx, fy, val);
        }
    }
}

/// `round` with ties to even for a non-negative `f32`, written so that it vectorises: below
/// 2^23, adding and removing 2^23 leaves the nearest integer (ties to even, the default
/// rounding mode); from 2^23 on every `f32` is already an integer.
#[inline(always)]
fn round_half_even_non_negative(x: f32) -> f32 {
    const TWO_23: f32 = 8_388_608.0;
    if x < TWO_23 {
        (x + TWO_23) - TWO_23
    } else {
        x
    }
}

/// `det - round(|tag - mean|)` in NumPy's `f32` operations (one tag dimension).
#[inline(always)]
fn score_pixel(det: f32, tag: f32, mean: f32) -> f32 {
    score_at_distance(det, (tag - mean).abs())
}

/// `det - round(sqrt(d * d))` for `a = |d|`.
#[inline(always)]
fn score_at_distance(det: f32, a: f32) -> f32 {
    // In binary floating point `sqrt(x * x) == |x|` unless `x * x` overflows (or underflows,
    // where both round to 0), so `|x|` is exact and avoids a square root per pixel. Past the
    // overflow point NumPy's square is inf, and so is the distance here.
    const SQUARE_OVERFLOWS: f32 = 1.844_674_4e19; // sqrt(f32::MAX), rounded up
    let distance = if a < SQUARE_OVERFLOWS {
        a
    } else {
        f32::INFINITY
    };
    det - round_half_even_non_negative(distance)
}

/// Pixels per segment of [`RefineIndex`]: short enough that a segment rarely mixes a
/// person's joint with a large patch of background, long enough that its bound is cheap
/// next to scanning it.
const SEGMENT: usize = 16;

/// What `refine` needs to skip most of one joint's map (one tag dimension): rows ordered by
/// their heatmap maximum, and for every row segment of [`SEGMENT`] pixels its heatmap
/// maximum and the range of its tags.
///
/// Every operation in a pixel's score is monotone (`f32` subtraction, `|.|`, rounding, the
/// overflow to inf), so `max det - round(distance from the mean to [min tag, max tag])` is
/// at least the score of every pixel in the segment. A segment whose bound is below the
/// best score found so far cannot hold the answer, and neither can any row whose heatmap
/// maximum is below it (`det - round(d) <= det`). Built once per joint and shared by every
/// person missing that joint.
#[derive(Debug, Clone)]
struct RefineIndex {
    /// Row indices, highest heatmap maximum first.
    rows: Vec<usize>,
    row_max: Vec<f32>,
    /// Segments per row (the last one of a row may be shorter than [`SEGMENT`]).
    segments_per_row: usize,
    /// Per segment, row-major: heatmap maximum, smallest and largest tag.
    segment_max: Vec<f32>,
    segment_tag_min: Vec<f32>,
    segment_tag_max: Vec<f32>,
}

impl RefineIndex {
    fn new(det: &[f32], tag: &[f32], w: usize) -> Self {
        let segments_per_row = w.div_ceil(SEGMENT);
        let h = det.len() / w;
        let n = h * segments_per_row;
        let mut segment_max = Vec::with_capacity(n);
        let mut segment_tag_min = Vec::with_capacity(n);
        let mut segment_tag_max = Vec::with_capacity(n);
        for (d, t) in det.chunks_exact(w).zip(tag.chunks_exact(w)) {
            for (ds, ts) in d.chunks(SEGMENT).zip(t.chunks(SEGMENT)) {
                segment_max.push(lane_max(ds));
                let (lo, hi) = lane_min_max(ts);
                segment_tag_min.push(lo);
                segment_tag_max.push(hi);
            }
        }
        let row_max: Vec<f32> = segment_max
            .chunks_exact(segments_per_row)
            .map(lane_max)
            .collect();
        let mut rows: Vec<usize> = (0..h).collect();
        rows.sort_by(|&a, &b| row_max[b].total_cmp(&row_max[a]));
        RefineIndex {
            rows,
            row_max,
            segments_per_row,
            segment_max,
            segment_tag_min,
            segment_tag_max,
        }
    }

    /// An upper bound of the scores in segment `s` for the mean tag `mean`.
    #[inline]
    fn segment_bound(&self, s: usize, mean: f32) -> f32 {
        let (lo, hi) = (self.segment_tag_min[s], self.segment_tag_max[s]);
        // For t >= lo > mean, fl(t - mean) >= fl(lo - mean) > 0; for t <= hi < mean,
        // |fl(t - mean)| >= fl(mean - hi) (rounding is symmetric); else the distance may be 0.
        let nearest = if mean < lo {
            lo - mean
        } else if mean > hi {
            mean - hi
        } else {
            0.0
        };
        score_at_distance(self.segment_max[s], nearest)
    }
}

/// Largest value of a short run, in four lanes so that it vectorises (`-inf` when empty).
#[inline]
fn lane_max(v: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 4];
    let chunks = v.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..4 {
            lanes[i] = if c[i] > lanes[i] { c[i] } else { lanes[i] };
        }
    }
    lanes
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// Smallest and largest value of a short run (finite values).
#[inline]
fn lane_min_max(v: &[f32]) -> (f32, f32) {
    let mut lo = [f32::INFINITY; 4];
    let mut hi = [f32::NEG_INFINITY; 4];
    let chunks = v.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..4 {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    let lo = lo
        .iter()
        .chain(rest)
        .fold(f32::INFINITY, |m, &x| if x < m { x } else { m });
    let hi = hi
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    (lo, hi)
}

/// The running arg-max of `refine`'s search with NumPy's rule: the largest score, and among
/// equal scores the lowest flat index, whatever order pixels are visited in.
#[derive(Debug, Clone, Copy)]
struct BestPixel {
    score: f32,
    at: usize,
}

impl BestPixel {
    /// Nothing visited yet. Standing for "pixel 0 at -inf" gives NumPy's answer (index 0)
    /// when every score is -inf, and any higher score replaces it.
    fn new() -> Self {
        BestPixel {
            score: f32::NEG_INFINITY,
            at: 0,
        }
    }

    #[inline]
    fn offer(&mut self, score: f32, at: usize) {
        if score > self.score || (score == self.score && at < self.at) {
            self.score = score;
            self.at = at;
        }
    }
}

/// `np.argmax(det - np.round(sqrt((tag - mean) ** 2)))` over one joint's map with a single
/// tag dimension (the common case), in the same `f32` operations: the largest score, and
/// among equal scores the lowest flat index, as NumPy's first-maximum rule. Rows are visited
/// from the highest heatmap maximum down, segments whose bound is below the best score are
/// skipped, and the search stops at the first row that cannot win; what makes `refine`
/// cheap enough for the 5 ms budget. [`refine_argmax_full_scan`] is the plain definition.
fn refine_argmax_one_dim(
    det: &[f32],
    tag: &[f32],
    w: usize,
    index: &RefineIndex,
    seeds: &[usize],
    mean: f32,
) -> usize {
    // The joint's own candidates often score near the final answer: a head start that lets
    // segments and rows be skipped from the first one on.
    let mut best = BestPixel::new();
    for &i in seeds {
        best.offer(score_pixel(det[i], tag[i], mean), i);
    }
    let spr = index.segments_per_row;
    for &y in &index.rows {
        if index.row_max[y] < best.score {
            break;
        }
        for k in 0..spr {
            let s = y * spr + k;
            if index.segment_bound(s, mean) < best.score {
                continue;
            }
            let start = y * w + k * SEGMENT;
            let end = (start + SEGMENT).min((y + 1) * w);
            segment_argmax(&det[start..end], &tag[start..end], mean, start, &mut best);
        }
    }
    best.at
}

/// Offers the best pixel of one segment (`offset` is its first flat index). Scores first,
/// then their maximum, then its first position: three loops that vectorise, where a fused
/// arg-max loop would not.
#[inline]
fn segment_argmax(det: &[f32], tag: &[f32], mean: f32, offset: usize, best: &mut BestPixel) {
    let mut scores = [0.0f32; SEGMENT];
    let scores = &mut scores[..det.len()];
    for ((s, &d), &t) in scores.iter_mut().zip(det).zip(tag) {
        *s = score_pixel(d, t, mean);
    }
    let top = lane_max(scores);
    if top < best.score {
        return;
    }
    // Every score -inf (distances overflowed) finds -inf at the first pixel, like NumPy.
    let first = scores.iter().position(|&s| s == top).unwrap_or(0);
    best.offer(top, offset + first);
}

/// The definition [`refine_argmax_one_dim`] must agree with: every pixel, row-major order,
/// first maximum kept.
#[cfg(test)]
fn refine_argmax_full_scan(det: &[f32], tag: &[f32], mean: f32) -> usize {
    let mut best = BestPixel::new();
    for (i, (&d, &t)) in det.iter().zip(tag).enumerate() {
        best.offer(score_pixel(d, t, mean), i);
    }
    best.at
}

/// The general form of [`refine_argmax_one_dim`] for several tag dimensions or non-contiguous
/// arrays: first maximum in row-major order. `det - round(d) <= det`, so pixels whose heatmap
/// value is not above the best score so far cannot win and are skipped.
fn refine_argmax(map: &ArrayView2<f32>, maps: &TagMaps, joint: usize, mean: &[f32]) -> usize {
    let (h, w) = map.dim();
    let score = |y: usize, x: usize| -> f32 {
        let sq = maps
            .tag_at(joint, y, x)
            .zip(mean)
            .fold(0.0f32, |acc, (t, &m)| {
                let d = t - m;
                acc + d * d
            });
        map[[y, x]] - round_half_even_non_negative(sq.sqrt())
    };
    let mut best = score(0, 0);
    let mut best_at = 0;
    for y in 0..h {
        let row = map.row(y);
        for x in 0..w {
            if row[x] > best {
                let s = score(y, x);
                if s > best {
                    best = s;
                    best_at = y * w + x;
                }
            }
        }
    }
    best_at
}

/// `np.mean(rows, axis=0)` for a list of `float32` vectors of length `dims`, stored flat.
/// NumPy sums a single column as one contiguous run (pairwise summation) and several columns
/// row by row; the mean is the `f32` sum divided by the count.
fn numpy_mean_rows(flat: &[f32], dims: usize) -> Vec<f32> {
    let n = flat.len() / dims;
    if dims == 1 {
        return vec![numpy_sum_f32(flat) / n as f32];
    }
    let mut sums = vec![0.0f32; dims];
    for row in flat.chunks(dims) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
    sums.into_iter().map(|s| s / n as f32).collect()
}

/// NumPy's `add.reduce` of a contiguous `float32` run: 0 plus the pairwise sum, which for
/// runs of at most 128 values is eight interleaved partial sums combined in a fixed tree.
fn numpy_sum_f32(values: &[f32]) -> f32 {
    0.0f32 + pairwise_sum_f32(values)
}

fn pairwise_sum_f32(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0f32;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f32; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut half = n / 2;
        half -= half % 8;
        pairwise_sum_f32(&a[..half]) + pairwise_sum_f32(&a[half..])
    }
}

/// Training-target parameters; the defaults are HigherHRNet's (sigma 2, 30 people, one tag
/// map per joint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AeTargetConfig {
    /// Heatmap size `[W, H]`.
    pub heatmap_size: [usize; 2],
    /// Gaussian standard deviation in heatmap pixels (HigherHRNet: `output_res / 64`, i.e. 2
    /// at 128 px).
    #[serde(default = "default_sigma")]
    pub sigma: f64,
    /// Rows of the `joints` target (`MAX_NUM_PEOPLE`).
    #[serde(default = "default_max_people")]
    pub max_people: usize,
    /// One tag map per joint (indices address the flattened `[K, H, W]` tags) or one shared
    /// map (indices address `[H, W]`), as `MODEL.TAG_PER_JOINT`.
    #[serde(default = "default_true")]
    pub tag_per_joint: bool,
}

fn default_sigma() -> f64 {
    2.0
}

/// Targets for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct AeTargets {
    /// `[K, H, W]`: a Gaussian (peak 1) at every visible joint, the maximum where people
    /// overlap (a sum would merge close people into one blob).
    pub heatmaps: Array3<f32>,
    /// `[max_people, K, 2]` rows of `(index, flag)` for the tag loss, HigherHRNet's
    /// `JointsGenerator` layout: row `i` is person `i`; its visible in-map joints are packed
    /// into the first slots in joint order (slot `t` is the `t`-th visible joint, not joint
    /// `t`), with `index = joint * H * W + y * W + x` (or `y * W + x` without per-joint tags)
    /// and `flag = 1`; unused slots are `(0, 0)`. The loss only needs, per person, the set of
    /// tag values to pull together, which is why the slots are packed.
    pub joints: Array3<i64>,
    /// People beyond `max_people` that are in the heatmaps but have no `joints` row
    /// (HigherHRNet would fail on them; here the caller can see how many were left out).
    pub dropped_people: usize,
}

impl AeTargetConfig {
    /// HigherHRNet's defaults for a `[W, H]` heatmap.
    pub fn new(heatmap_size: [usize; 2]) -> Self {
        AeTargetConfig {
            heatmap_size,
            sigma: default_sigma(),
            max_people: default_max_people(),
            tag_per_joint: true,
        }
    }

    /// Targets from `people`, `[N, K, 3]`: x, y in heatmap pixels and a visibility (a joint
    /// is used when visibility > 0). As in HigherHRNet, a joint is placed at the pixel
    /// `(trunc(x), trunc(y))` and skipped when that pixel is outside the map.
    pub fn encode(&self, people: ArrayView3<f32>) -> Result<AeTargets> {
        let [w, h] = self.heatmap_size;
        if w == 0 || h == 0 {
            return Err(Error::Shape(format!(
                "AE encode: empty heatmap size {:?}",
                self.heatmap_size
            )));
        }
        if !(self.sigma > 0.0 && self.sigma.is_finite()) {
            return Err(Error::Shape(format!(
                "AE encode: sigma must be positive, got {}",
                self.sigma
            )));
        }
        let (n, k, c) = people.dim();
        if c != 3 {
            return Err(Error::Shape(format!(
                "AE encode: people must be [N, K, 3] (x, y, visibility), got {:?}",
                people.shape()
            )));
        }
        let mut heatmaps = Array3::<f32>::zeros((k, h, w));
        let mut joints = Array3::<i64>::zeros((self.max_people, k, 2));
        let gaussian = GaussianPatch::new(self.sigma);
        for p in 0..n {
            let mut slot = 0;
            for j in 0..k {
                let (x, y, v) = (people[[p, j, 0]], people[[p, j, 1]], people[[p, j, 2]]);
                // NaN visibility counts as unlabelled, as `pt[2] > 0` is false for it.
                if v.is_nan() || v <= 0.0 {
                    continue;
                }
                if !x.is_finite() || !y.is_finite() {
                    return Err(Error::Shape(format!(
                        "AE encode: person {p} joint {j} is visible but at ({x}, {y})"
                    )));
                }
                // Python's int(): truncation towards zero, so -0.5 lands on pixel 0.
                let (xt, yt) = (x.trunc() as f64, y.trunc() as f64);
                if xt < 0.0 || yt < 0.0 || xt >= w as f64 || yt >= h as f64 {
                    continue;
                }
                let (xi, yi) = (xt as usize, yt as usize);
                gaussian.draw_max(heatmaps.index_axis_mut(ndarray::Axis(0), j), xi, yi);
                if p < self.max_people {
                    let index = if self.tag_per_joint {
                        (j * h * w + yi * w + xi) as i64
                    } else {
                        (yi * w + xi) as i64
                    };
                    joints[[p, slot, 0]] = index;
                    joints[[p, slot, 1]] = 1;
                    slot += 1;
                }
            }
        }
        Ok(AeTargets {
            heatmaps,
            joints,
            dropped_people: n.saturating_sub(self.max_people),
        })
    }
}

/// HigherHRNet's precomputed Gaussian patch: `ceil(6σ + 3)` pixels wide, centred at `3σ + 1`,
/// placed with its corner at `round(x - 3σ - 1)`.
struct GaussianPatch {
    sigma: f64,
    size: usize,
    patch: Vec<f32>,
}

impl GaussianPatch {
    fn new(sigma: f64) -> Self {
        let size = (6.0 * sigma + 3.0).ceil() as usize;
        let centre = 3.0 * sigma + 1.0;
        let mut patch = vec![0.0f32; size * size];
        for r in 0..size {
            for c in 0..size {
                let (dx, dy) = (c as f64 - centre, r as f64 - centre);
                patch[r * size + c] = (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp() as f32;
            }
        }
        GaussianPatch { sigma, size, patch }
    }

    fn draw_max(&self, mut map: ndarray::ArrayViewMut2<f32>, x: usize, y: usize) {
        let (h, w) = map.dim();
        let s = self.sigma;
        let ul_x = (x as f64 - 3.0 * s - 1.0).round_ties_even() as i64;
        let ul_y = (y as f64 - 3.0 * s - 1.0).round_ties_even() as i64;
        let br_x = (x as f64 + 3.0 * s + 2.0).round_ties_even() as i64;
        let br_y = (y as f64 + 3.0 * s + 2.0).round_ties_even() as i64;
        for py in ul_y.max(0)..br_y.min(h as i64) {
            let r = (py - ul_y) as usize;
            if r >= self.size {
                break;
            }
            for px in ul_x.max(0)..br_x.min(w as i64) {
                let c = (px - ul_x) as usize;
                if c >= self.size {
                    break;
                }
                let cell = &mut map[[py as usize, px as usize]];
                *cell = cell.max(self.patch[r * self.size + c]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array4, Axis};

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
        let poses = AeGroupingConfig::coco()
            .decode(hm.view(), tags.view())
            .unwrap();
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
        let cfg = AeGroupingConfig::coco();
        assert!(cfg.decode(hm.view(), shared.view()).is_ok());
        let mut two_dim = Array4::<f32>::zeros((17, 40, 40, 2));
        two_dim
            .slice_mut(ndarray::s![.., .., .., 0..1])
            .assign(&tags);
        let poses = cfg.decode(hm.view(), two_dim.view()).unwrap();
        assert_eq!(poses.len(), 2);
    }

    #[test]
    fn rejects_bad_shapes_orders_and_values() {
        let (hm, tags) = two_people();
        let cfg = AeGroupingConfig::coco();
        let wrong = Array4::<f32>::zeros((17, 39, 40, 1));
        assert!(matches!(
            cfg.decode(hm.view(), wrong.view()),
            Err(Error::Shape(_))
        ));
        let mut bad_order = AeGroupingConfig::coco();
        bad_order.joint_order[3] = 0;
        assert!(bad_order.decode(hm.view(), tags.view()).is_err());
        let mut nan = hm.clone();
        nan[[2, 3, 4]] = f32::NAN;
        assert!(cfg.decode(nan.view(), tags.view()).is_err());
        let mut even = AeGroupingConfig::coco();
        even.nms_kernel = 4;
        assert!(even.decode(hm.view(), tags.view()).is_err());
    }

    #[test]
    fn strided_views_decode_like_standard_arrays() {
        let (hm, tags) = two_people();
        let mut cfg = AeGroupingConfig::coco();
        // Push a joint of person 0 below the detection threshold so that refine finds it.
        let mut hm = hm;
        hm.slice_mut(ndarray::s![9, .., ..20])
            .mapv_inplace(|v| v * 0.1);
        let want = cfg.decode(hm.view(), tags.view()).unwrap();
        let hm_t = hm.view().reversed_axes().to_owned();
        let tags_t = tags.view().reversed_axes().to_owned();
        let got = cfg
            .decode(hm_t.view().reversed_axes(), tags_t.view().reversed_axes())
            .unwrap();
        assert_eq!(got, want);
        cfg.refine = false;
        assert_ne!(
            cfg.decode(hm.view(), tags.view()).unwrap(),
            want,
            "refine filled a joint"
        );
    }

    #[test]
    fn empty_heatmaps_give_no_people() {
        let hm = Array3::<f32>::zeros((17, 16, 16));
        let tags = Array4::<f32>::zeros((17, 16, 16, 1));
        assert!(AeGroupingConfig::coco()
            .decode(hm.view(), tags.view())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn coco_order_from_names() {
        let layout = KeypointLayout::builtin("coco17").expect("built-in layout");
        assert_eq!(joint_order_for_layout(&layout), COCO_JOINT_ORDER.to_vec());
    }

    #[test]
    fn absolute_value_equals_numpy_distance() {
        // score_pixel uses |d| for NumPy's sqrt(d ** 2); check that shortcut bit for bit on
        // random values of every magnitude, the rounding boundaries and the overflow edge.
        let mut s = 99u64;
        let mut values: Vec<f32> = (0..200_000)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                f32::from_bits((s >> 32) as u32 & 0x7fff_ffff)
            })
            .filter(|v| v.is_finite())
            .collect();
        values.extend([
            0.5,
            1.5,
            2.5,
            0.49999997,
            0.50000006,
            1.8446743e19,
            1.8446744e19,
            3e19,
        ]);
        for d in values {
            let numpy = round_half_even_non_negative((d * d).sqrt());
            let ours = 0.0 - score_pixel(0.0, d, 0.0);
            assert!(
                numpy == ours || (numpy.is_infinite() && ours.is_infinite()),
                "{d}: {numpy} vs {ours}"
            );
        }
    }

    #[test]
    fn pruned_refine_search_equals_full_scan_with_ties() {
        // Heatmap values and tags on coarse grids so that equal scores are everywhere (and
        // rounding ties at .5 distances too); widths that are and are not multiples of the
        // segment length; means on and off the grid, far outside the tags, and huge.
        let mut s = 7u64;
        let mut next = |n: u64| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) % n
        };
        for case in 0..300 {
            let w = [1, 5, 16, 17, 33, 40][case % 6];
            let h = 1 + next(24) as usize;
            let levels = 1.0 + next(6) as f32;
            let det: Vec<f32> = (0..w * h)
                .map(|_| next(levels as u64 + 1) as f32 / levels - 0.25)
                .collect();
            let tag: Vec<f32> = (0..w * h).map(|_| next(13) as f32 * 0.5 - 3.0).collect();
            let index = RefineIndex::new(&det, &tag, w);
            let seeds: Vec<usize> = (0..next(4))
                .map(|_| next((w * h) as u64) as usize)
                .collect();
            let means = [
                next(13) as f32 * 0.5 - 3.0,
                next(1000) as f32 / 97.0 - 5.0,
                40.0,
                -17.5,
                3e19,
            ];
            for mean in means {
                assert_eq!(
                    refine_argmax_one_dim(&det, &tag, w, &index, &seeds, mean),
                    refine_argmax_full_scan(&det, &tag, mean),
                    "case {case}, {w}x{h}, mean {mean}"
                );
            }
        }
    }

    #[test]
    fn pairwise_sum_matches_numpy_tree() {
        // 17 values: eight partial sums over 16, then the 17th added last.
        let v: Vec<f32> = (0..17).map(|i| 0.1 * i as f32).collect();
        let mut r = [0.0f32; 8];
        for j in 0..8 {
            r[j] = v[j] + v[8 + j];
        }
        let expected = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])) + v[16];
        assert_eq!(numpy_sum_f32(&v), expected);
    }

    #[test]
    fn encode_matches_higher_hrnet_generators() {
        let mut people = Array3::<f32>::zeros((2, 3, 3));
        // person 0: joint 0 at (10.7, 5.2), joint 1 invisible, joint 2 at (-0.5, 3) -> pixel 0.
        people
            .slice_mut(ndarray::s![0, 0, ..])
            .assign(&ndarray::arr1(&[10.7, 5.2, 2.0]));
        people
            .slice_mut(ndarray::s![0, 1, ..])
            .assign(&ndarray::arr1(&[3.0, 3.0, 0.0]));
        people
            .slice_mut(ndarray::s![0, 2, ..])
            .assign(&ndarray::arr1(&[-0.5, 3.0, 1.0]));
        // person 1: joint 1 out of the map, joint 2 at (2, 2).
        people
            .slice_mut(ndarray::s![1, 1, ..])
            .assign(&ndarray::arr1(&[20.0, 3.0, 1.0]));
        people
            .slice_mut(ndarray::s![1, 2, ..])
            .assign(&ndarray::arr1(&[2.0, 2.0, 1.0]));
        let mut cfg = AeTargetConfig::new([16, 12]);
        cfg.max_people = 4;
        let t = cfg.encode(people.view()).unwrap();
        assert_eq!(t.heatmaps.shape(), &[3, 12, 16]);
        assert_eq!(t.joints.shape(), &[4, 3, 2]);
        assert_eq!(t.heatmaps[[0, 5, 10]], 1.0);
        assert!((t.heatmaps[[0, 5, 12]] - (-0.5f64).exp() as f32).abs() < 1e-7);
        assert_eq!(t.heatmaps[[1, 3, 3]], 0.0, "invisible joint");
        // Joint 2 of both people: maximum, not sum.
        assert_eq!(t.heatmaps[[2, 3, 0]], 1.0);
        assert_eq!(t.heatmaps[[2, 2, 2]], 1.0);
        assert_eq!(t.joints[[0, 0, 0]], (5 * 16 + 10) as i64);
        assert_eq!(t.joints[[0, 1, 0]], (2 * 12 * 16 + 3 * 16) as i64);
        assert_eq!(t.joints[[0, 1, 1]], 1);
        assert_eq!(t.joints[[0, 2, 1]], 0);
        assert_eq!(t.joints[[1, 0, 0]], (2 * 12 * 16 + 2 * 16 + 2) as i64);
        assert_eq!(t.joints[[1, 1, 1]], 0);
        assert_eq!(t.dropped_people, 0);

        cfg.tag_per_joint = false;
        cfg.max_people = 1;
        let t = cfg.encode(people.view()).unwrap();
        assert_eq!(t.joints[[0, 1, 0]], (3 * 16) as i64);
        assert_eq!(t.dropped_people, 1);
        assert_eq!(
            t.heatmaps[[2, 2, 2]],
            1.0,
            "dropped people still have heatmaps"
        );
    }

    #[test]
    fn encode_rejects_bad_input() {
        let cfg = AeTargetConfig::new([8, 8]);
        assert!(cfg.encode(Array3::<f32>::zeros((1, 2, 2)).view()).is_err());
        let mut p = Array3::<f32>::zeros((1, 1, 3));
        p[[0, 0, 0]] = f32::NAN;
        p[[0, 0, 2]] = 1.0;
        assert!(cfg.encode(p.view()).is_err());
        p[[0, 0, 2]] = 0.0;
        assert!(
            cfg.encode(p.view()).is_ok(),
            "invisible joints may hold anything"
        );
    }
}
