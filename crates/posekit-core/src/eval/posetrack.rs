//! PoseTrack multi-person pose tracking: MOTA, MOTP, precision and recall per joint and in
//! total, computed as the benchmark's `poseval` tool computes them (github
//! leonid-pishchulin/poseval: `eval_helpers.load_data_dir` and `assignGTmulti`,
//! `evaluateTracking.computeMetrics`), with the CLEAR-MOT bookkeeping of the `motmetrics`
//! accumulator it calls (`MOTAccumulator.update`, version 1.4), so that a number printed by
//! posekit can be put next to a PoseTrack leaderboard number.
//!
//! Every joint kind is tracked on its own, as if it were an object: in each frame the ground
//! truth people that have that joint are the objects (identified by `track_id`), the predicted
//! people that have it are the hypotheses (identified by their `track_id`), and a pair may match
//! when the predicted joint is within half the ground-truth person's head size (0.6 x head-box
//! diagonal). The accumulator then counts misses, false positives and identity switches; MOTA =
//! 1 - (misses + switches + false positives) / objects per joint, and the totals are the plain
//! means over the joints that have objects.
//!
//! poseval's behaviour is reproduced as it is, including what surprises:
//!
//! * frames whose ground truth has no person are left out (`cleanupData`), before the ignore
//!   regions are applied;
//! * joints inside an ignore region of the ground-truth frame are removed from both ground truth
//!   and predictions, and people left without joints are removed (`removeIgnoredPointsRects`;
//!   "inside" is shapely's `contains`: strictly inside, the boundary is outside);
//! * a frame where, after that, the ground truth or the predictions hold nobody counts, for every
//!   joint, one object that is missed and one false positive (`assignGTmulti` fills such a frame
//!   with the ids `[0]`, `[0]` and no allowed pair), whatever the numbers of people;
//! * the last evaluated frame of each sequence is left out (`imgidxs[:-1]` in
//!   `computeMetrics`); a sequence with a single evaluated frame contributes nothing (poseval
//!   fails on it);
//! * MOTP sums the `D` column of *all* accumulator events (`accAll[i].events['D'].sum()`), which
//!   in motmetrics 1.4 also holds the `RAW` events (every allowed pair of the frame) and the
//!   `TRANSFER`, `ASCEND` and `MIGRATE` events, so MOTP = 100 x (1 - that sum / detections) is
//!   not the textbook MOTP; it is what poseval prints.
//!
//! Among several optimal assignments of a frame, the choice may differ from scipy's (used by
//! motmetrics); that can only matter when two assignments have exactly the same total distance.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::codecs::hungarian::min_cost_assignment;
use crate::error::{Error, Result};
use crate::formats::posetrack::{
    load_videos, PoseTrackPerson, PoseTrackVideo, POSETRACK_JOINT_NAMES, POSETRACK_NUM_JOINTS,
};

/// A predicted joint matches a ground-truth joint within this fraction of the head size
/// (`distThresh` of `evaluateTracking`).
pub const DIST_THRESHOLD: f64 = 0.5;

/// poseval refuses track ids from this value on (`MAX_TRACK_ID`).
pub const MAX_TRACK_ID: i64 = 10_000;

/// The counts of one joint's accumulator, summed over sequences (poseval's `metricsMidAll`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MotCounts {
    pub misses: u64,
    pub switches: u64,
    pub false_positives: u64,
    /// Ground-truth joints counted (`num_objects`).
    pub objects: u64,
    /// Matches that are not switches.
    pub matches: u64,
    /// Sum of the `D` column of all events (poseval's `sumD`).
    pub sum_d: f64,
}

impl MotCounts {
    /// `num_detections` of motmetrics: matches plus switches.
    pub fn detections(&self) -> u64 {
        self.matches + self.switches
    }

    fn add(&mut self, o: &MotCounts) {
        self.misses += o.misses;
        self.switches += o.switches;
        self.false_positives += o.false_positives;
        self.objects += o.objects;
        self.matches += o.matches;
        self.sum_d += o.sum_d;
    }

    /// poseval's final metrics of one joint, in percent; NaN where poseval has NaN.
    pub fn scores(&self) -> MotScores {
        let objects = if self.objects > 0 {
            self.objects as f64
        } else {
            f64::NAN
        };
        let fp = self.false_positives as f64;
        let det = self.detections() as f64;
        let errors = (self.misses + self.switches) as f64 + fp;
        let motp = if self.detections() == 0 || self.sum_d.is_nan() {
            0.0
        } else {
            100.0 * (1.0 - self.sum_d / det)
        };
        let total_det = if fp + det > 0.0 { fp + det } else { f64::NAN };
        MotScores {
            mota: 100.0 * (1.0 - errors / objects),
            motp,
            precision: 100.0 * det / total_det,
            recall: 100.0 * det / objects,
        }
    }
}

/// MOTA, MOTP, precision and recall in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotScores {
    pub mota: f64,
    pub motp: f64,
    pub precision: f64,
    pub recall: f64,
}

/// The result of the tracking evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct PoseTrackReport {
    /// Counts per joint, in [`POSETRACK_JOINT_NAMES`] order.
    pub counts: [MotCounts; POSETRACK_NUM_JOINTS],
    /// Scores per joint.
    pub per_joint: [MotScores; POSETRACK_NUM_JOINTS],
    /// Each score averaged over the joints where it is not NaN (poseval's "total" column).
    pub total: MotScores,
    /// Sequences read.
    pub sequences: usize,
    /// Frames that entered an accumulator.
    pub frames: usize,
}

impl PoseTrackReport {
    /// The cells of the table `poseval` prints for tracking, in its order.
    pub const NAMES: [&'static str; 11] = [
        "Head", "Shou", "Elb", "Wri", "Hip", "Knee", "Ankl", "MOTA", "MOTP", "Prec", "Rec",
    ];

    /// The printed table (`eval_helpers.getCum`): MOTA averaged per body part (head = head top,
    /// head bottom and nose; NaN if any of them is NaN, as numpy's mean), then total MOTA, MOTP,
    /// precision and recall.
    pub fn entries(&self) -> [(&'static str, f64); 11] {
        let mota = |names: &[&str]| {
            let sum: f64 = names
                .iter()
                .map(|n| self.per_joint[joint_index(n)].mota)
                .sum();
            sum / names.len() as f64
        };
        let values = [
            mota(&["head_top", "head_bottom", "nose"]),
            mota(&["right_shoulder", "left_shoulder"]),
            mota(&["right_elbow", "left_elbow"]),
            mota(&["right_wrist", "left_wrist"]),
            mota(&["right_hip", "left_hip"]),
            mota(&["right_knee", "left_knee"]),
            mota(&["right_ankle", "left_ankle"]),
            self.total.mota,
            self.total.motp,
            self.total.precision,
            self.total.recall,
        ];
        let mut out = [("", 0.0); 11];
        for (slot, (name, value)) in out.iter_mut().zip(Self::NAMES.into_iter().zip(values)) {
            *slot = (name, value);
        }
        out
    }
}

fn joint_index(name: &str) -> usize {
    POSETRACK_JOINT_NAMES
        .iter()
        .position(|n| *n == name)
        .unwrap_or(0)
}

/// The table as one JSON object (`null` for NaN), then `per_joint`: each joint's counts and
/// scores.
impl Serialize for PoseTrackReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let finite = |v: f64| v.is_finite().then_some(v);
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in self.entries() {
            map.serialize_entry(name, &finite(value))?;
        }
        let per_joint: Vec<serde_json::Value> = POSETRACK_JOINT_NAMES
            .iter()
            .zip(self.counts.iter().zip(&self.per_joint))
            .map(|(name, (c, s))| {
                serde_json::json!({
                    "joint": name,
                    "mota": finite(s.mota),
                    "motp": finite(s.motp),
                    "precision": finite(s.precision),
                    "recall": finite(s.recall),
                    "misses": c.misses,
                    "switches": c.switches,
                    "false_positives": c.false_positives,
                    "objects": c.objects,
                    "detections": c.detections(),
                })
            })
            .collect();
        map.serialize_entry("per_joint", &per_joint)?;
        map.serialize_entry("sequences", &self.sequences)?;
        map.serialize_entry("frames", &self.frames)?;
        map.end()
    }
}

/// The table poseval prints (one decimal), as markdown.
impl std::fmt::Display for PoseTrackReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.entries();
        writeln!(f, "| {} |", Self::NAMES.join(" | "))?;
        writeln!(f, "|{}", "---|".repeat(entries.len()))?;
        let values: Vec<String> = entries.iter().map(|(_, v)| format!("{v:.1}")).collect();
        write!(f, "| {} |", values.join(" | "))
    }
}

/// Evaluates results against ground truth given as two files or two folders.
///
/// Folders are read as poseval reads them: every `*.json` of the ground-truth folder is one
/// sequence (its first video), and the results file of the same name must exist in the results
/// folder. A ground-truth file may be paired with a results folder (the file of its name there).
pub fn evaluate_paths(gt: impl AsRef<Path>, results: impl AsRef<Path>) -> Result<PoseTrackReport> {
    let (gt, results) = (gt.as_ref(), results.as_ref());
    let mut files: Vec<PathBuf> = Vec::new();
    if gt.is_dir() {
        let entries = std::fs::read_dir(gt).map_err(|e| Error::io(gt, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(gt, e))?.path();
            if path.extension().is_some_and(|e| e == "json") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(Error::invalid(
                gt,
                "",
                "no .json ground-truth file in this folder",
            ));
        }
    } else {
        files.push(gt.to_path_buf());
    }
    let mut pairs = Vec::with_capacity(files.len());
    for gt_file in files {
        let res_file = if results.is_dir() {
            let name = gt_file.file_name().unwrap_or_default();
            results.join(name)
        } else if gt.is_dir() {
            return Err(Error::parse(
                results,
                "the ground truth is a folder, so the results must be a folder too",
            ));
        } else {
            results.to_path_buf()
        };
        if !res_file.is_file() {
            return Err(Error::parse(
                &res_file,
                format!("no results file for the sequence {}", gt_file.display()),
            ));
        }
        pairs.push((first_video(&gt_file)?, first_video(&res_file)?));
    }
    evaluate(&pairs)
}

/// The video poseval evaluates in a file: the first one.
fn first_video(path: &Path) -> Result<PoseTrackVideo> {
    load_videos(path)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::invalid(path, "images", "the file has no image"))
}

/// Evaluates (ground truth, results) sequence pairs; frames are paired by position, as poseval
/// pairs them.
pub fn evaluate(pairs: &[(PoseTrackVideo, PoseTrackVideo)]) -> Result<PoseTrackReport> {
    let mut counts = [MotCounts::default(); POSETRACK_NUM_JOINTS];
    let mut frames_done = 0;
    for (gt, pred) in pairs {
        let (seq_counts, n) = evaluate_sequence(gt, pred)?;
        for (c, s) in counts.iter_mut().zip(&seq_counts) {
            c.add(s);
        }
        frames_done += n;
    }
    let per_joint = counts.map(|c| c.scores());
    let mean = |f: fn(&MotScores) -> f64| {
        let vals: Vec<f64> = per_joint.iter().map(f).filter(|v| !v.is_nan()).collect();
        vals.iter().sum::<f64>() / vals.len() as f64
    };
    let total = MotScores {
        mota: mean(|s| s.mota),
        motp: mean(|s| s.motp),
        precision: mean(|s| s.precision),
        recall: mean(|s| s.recall),
    };
    Ok(PoseTrackReport {
        counts,
        per_joint,
        total,
        sequences: pairs.len(),
        frames: frames_done,
    })
}

/// One joint kind in one frame: object ids, hypothesis ids and the allowed pairs' distances
/// (`None`: may not pair), as poseval hands them to `MOTAccumulator.update`.
struct JointFrame {
    oids: Vec<i64>,
    hids: Vec<i64>,
    dist: Array2<Option<f64>>,
}

fn evaluate_sequence(
    gt: &PoseTrackVideo,
    pred: &PoseTrackVideo,
) -> Result<([MotCounts; POSETRACK_NUM_JOINTS], usize)> {
    if gt.frames.len() != pred.frames.len() {
        return Err(Error::invalid(
            &pred.path,
            "images",
            format!(
                "{} frames in video {}, but the ground truth ({}) has {}",
                pred.frames.len(),
                pred.name,
                gt.path.display(),
                gt.frames.len()
            ),
        ));
    }
    for (video, is_gt) in [(gt, true), (pred, false)] {
        check_track_ids(video, is_gt)?;
    }
    let mut frames = Vec::new();
    for (gf, pf) in gt.frames.iter().zip(&pred.frames) {
        // cleanupData: frames without ground-truth people are left out.
        if gf.people.is_empty() {
            continue;
        }
        let mut g: Vec<PoseTrackPerson> = gf.people.clone();
        let mut p: Vec<PoseTrackPerson> = pf.people.clone();
        if !gf.ignore_regions.is_empty() {
            g = drop_ignored(g, &gf.ignore_regions);
            p = drop_ignored(p, &gf.ignore_regions);
        }
        frames.push(frame_joints(gt, &g, &p)?);
    }
    let mut counts = [MotCounts::default(); POSETRACK_NUM_JOINTS];
    // computeMetrics leaves out the last frame of every sequence.
    let Some((_, used)) = frames.split_last() else {
        return Ok((counts, 0));
    };
    for (j, c) in counts.iter_mut().enumerate() {
        let mut acc = Accumulator::default();
        for frame in used {
            acc.update(&frame[j]);
        }
        *c = acc.counts;
    }
    Ok((counts, used.len()))
}

/// poseval's checks on track ids (`load_data_dir`, plus uniqueness for the ground truth): every
/// person has one, below [`MAX_TRACK_ID`], and no two people of a frame share one.
fn check_track_ids(video: &PoseTrackVideo, is_gt: bool) -> Result<()> {
    for frame in &video.frames {
        let mut seen = HashSet::new();
        for p in &frame.people {
            let field = format!("annotations[{}].track_id", p.annotation_index);
            let Some(id) = p.track_id else {
                return Err(Error::invalid(&video.path, field, "missing"));
            };
            if id >= MAX_TRACK_ID {
                return Err(Error::invalid(
                    &video.path,
                    field,
                    format!("{id} is not below {MAX_TRACK_ID}, which poseval requires"),
                ));
            }
            if !seen.insert(id) {
                let what = if is_gt { "ground truth" } else { "prediction" };
                return Err(Error::invalid(
                    &video.path,
                    field,
                    format!(
                        "{what} track id {id} appears twice in frame {}",
                        frame.file_name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `removeIgnoredPointsRects`: joints inside any region go, then people without joints.
fn drop_ignored(people: Vec<PoseTrackPerson>, regions: &[Vec<[f64; 2]>]) -> Vec<PoseTrackPerson> {
    people
        .into_iter()
        .filter_map(|mut p| {
            for slot in p.joints.iter_mut() {
                if let Some(j) = slot {
                    if regions.iter().any(|r| strictly_inside(r, j.x, j.y)) {
                        *slot = None;
                    }
                }
            }
            p.has_joints().then_some(p)
        })
        .collect()
}

/// Whether (x, y) lies in the interior of the polygon (the ring closes itself): even-odd ray
/// crossing, with points on an edge outside, which is what shapely's `Polygon.contains` answers
/// for the simple polygons ignore regions are. Fewer than three vertices enclose nothing.
fn strictly_inside(ring: &[[f64; 2]], x: f64, y: f64) -> bool {
    let n = ring.len();
    if n < 3 {
        return false;
    }
    let mut inside = false;
    for i in 0..n {
        let [x1, y1] = ring[i];
        let [x2, y2] = ring[(i + 1) % n];
        // on this edge: collinear and within its bounding box
        let cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1);
        if cross == 0.0 && x >= x1.min(x2) && x <= x1.max(x2) && y >= y1.min(y2) && y <= y1.max(y2)
        {
            return false;
        }
        if (y1 > y) != (y2 > y) {
            let xc = x1 + (y - y1) * (x2 - x1) / (y2 - y1);
            if x < xc {
                inside = !inside;
            }
        }
    }
    inside
}

/// The per-joint accumulator input of one frame (`assignGTmulti`, the `motAll` part).
fn frame_joints(
    gt: &PoseTrackVideo,
    g: &[PoseTrackPerson],
    p: &[PoseTrackPerson],
) -> Result<Vec<JointFrame>> {
    if g.is_empty() || p.is_empty() {
        // poseval's placeholder: one object 0 and one hypothesis 0 that may not pair.
        return Ok((0..POSETRACK_NUM_JOINTS)
            .map(|_| JointFrame {
                oids: vec![0],
                hids: vec![0],
                dist: Array2::from_elem((1, 1), None),
            })
            .collect());
    }
    let mut head_sizes = Vec::with_capacity(g.len());
    for person in g {
        let Some(hs) = person.head_size() else {
            return Err(Error::invalid(
                &gt.path,
                format!("annotations[{}].bbox_head", person.annotation_index),
                "missing; the head box gives the matching distance",
            ));
        };
        head_sizes.push(hs);
    }
    let mut out = Vec::with_capacity(POSETRACK_NUM_JOINTS);
    for j in 0..POSETRACK_NUM_JOINTS {
        let gi: Vec<usize> = (0..g.len()).filter(|&i| g[i].joints[j].is_some()).collect();
        let pi: Vec<usize> = (0..p.len()).filter(|&i| p[i].joints[j].is_some()).collect();
        let mut dist = Array2::from_elem((gi.len(), pi.len()), None);
        for (a, &ig) in gi.iter().enumerate() {
            for (b, &ip) in pi.iter().enumerate() {
                let (Some(jg), Some(jp)) = (g[ig].joints[j], p[ip].joints[j]) else {
                    continue;
                };
                // np.linalg.norm of the difference, divided by the head size
                let (dx, dy) = (jg.x - jp.x, jg.y - jp.y);
                let d = (dx * dx + dy * dy).sqrt() / head_sizes[ig];
                if d <= DIST_THRESHOLD {
                    dist[[a, b]] = Some(d);
                }
            }
        }
        out.push(JointFrame {
            oids: gi.iter().map(|&i| g[i].track_id.unwrap_or(0)).collect(),
            hids: pi.iter().map(|&i| p[i].track_id.unwrap_or(0)).collect(),
            dist,
        });
    }
    Ok(out)
}

/// The state of a motmetrics `MOTAccumulator` that its counts depend on.
#[derive(Default)]
struct Accumulator {
    /// Object -> the hypothesis it was last matched to (`m`).
    matched: HashMap<i64, i64>,
    /// Hypothesis -> the object it was last matched to in step 2 (`res_m`).
    reverse: HashMap<i64, i64>,
    /// Objects matched at least once (`last_match`).
    ever_matched_objects: HashSet<i64>,
    /// Hypotheses matched at least once (`hypHistory`).
    ever_matched_hyps: HashSet<i64>,
    counts: MotCounts,
}

impl Accumulator {
    /// `MOTAccumulator.update` (motmetrics 1.4), keeping only the counts and the sum of `D`.
    fn update(&mut self, f: &JointFrame) {
        let (no, nh) = (f.oids.len(), f.hids.len());
        // 0. RAW events: every allowed pair's distance.
        self.counts.sum_d += f.dist.iter().flatten().sum::<f64>();
        self.counts.objects += no as u64;
        let mut o_done = vec![false; no];
        let mut h_done = vec![false; nh];
        if no > 0 && nh > 0 {
            // 1. Carry established correspondences forward.
            for (i, &o) in f.oids.iter().enumerate() {
                let Some(&h_prev) = self.matched.get(&o) else {
                    continue;
                };
                let Some(j) = (0..nh).find(|&j| !h_done[j] && f.hids[j] == h_prev) else {
                    continue;
                };
                if let Some(d) = f.dist[[i, j]] {
                    o_done[i] = true;
                    h_done[j] = true;
                    self.matched.insert(o, h_prev);
                    self.ever_matched_objects.insert(o);
                    self.ever_matched_hyps.insert(h_prev);
                    self.counts.matches += 1;
                    self.counts.sum_d += d;
                }
            }
            // 2. Minimum total distance over the rest.
            for (i, j, d) in self.assign(f, &o_done, &h_done) {
                let (o, h) = (f.oids[i], f.hids[j]);
                let switch = self.matched.get(&o).is_some_and(|&prev| prev != h);
                if switch && !self.ever_matched_hyps.contains(&h) {
                    self.counts.sum_d += d; // ASCEND
                }
                let transfer = self.reverse.get(&h).is_some_and(|&prev| prev != o);
                if transfer {
                    if !self.ever_matched_objects.contains(&o) {
                        self.counts.sum_d += d; // MIGRATE
                    }
                    self.counts.sum_d += d; // TRANSFER
                }
                self.ever_matched_hyps.insert(h);
                self.ever_matched_objects.insert(o);
                self.counts.sum_d += d; // SWITCH or MATCH
                if switch {
                    self.counts.switches += 1;
                } else {
                    self.counts.matches += 1;
                }
                o_done[i] = true;
                h_done[j] = true;
                self.matched.insert(o, h);
                self.reverse.insert(h, o);
            }
        }
        // 3. and 4. What is left is missed or false.
        self.counts.misses += o_done.iter().filter(|d| !**d).count() as u64;
        self.counts.false_positives += h_done.iter().filter(|d| !**d).count() as u64;
    }

    /// motmetrics' `linear_sum_assignment` with the scipy solver: pairs that may not match cost
    /// a constant larger than any set of allowed pairs (`add_expensive_edges`), and are dropped
    /// from the optimum. So the most pairs are made, with the least total distance.
    fn assign(&self, f: &JointFrame, o_done: &[bool], h_done: &[bool]) -> Vec<(usize, usize, f64)> {
        let allowed = |i: usize, j: usize| {
            if o_done[i] || h_done[j] {
                None
            } else {
                f.dist[[i, j]]
            }
        };
        let (no, nh) = f.dist.dim();
        let mut max_abs: Option<f64> = None;
        for i in 0..no {
            for j in 0..nh {
                if let Some(d) = allowed(i, j) {
                    max_abs = Some(max_abs.map_or(d.abs(), |m: f64| m.max(d.abs())));
                }
            }
        }
        let Some(max_abs) = max_abs else {
            return Vec::new();
        };
        let r = no.min(nh) as f64;
        let large = 2.0 * r * (max_abs + 1.0) + 1.0;
        let cost = Array2::from_shape_fn((no, nh), |(i, j)| allowed(i, j).unwrap_or(large));
        let Ok(solution) = min_cost_assignment(cost.view()) else {
            return Vec::new(); // unreachable: every cost is finite
        };
        solution
            .pairs()
            .into_iter()
            .filter_map(|(i, j)| allowed(i, j).map(|d| (i, j, d)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(oids: &[i64], hids: &[i64], d: &[&[Option<f64>]]) -> JointFrame {
        let dist = Array2::from_shape_fn((oids.len(), hids.len()), |(i, j)| d[i][j]);
        JointFrame {
            oids: oids.to_vec(),
            hids: hids.to_vec(),
            dist,
        }
    }

    #[test]
    fn switches_like_motmetrics() {
        // The CLEAR-MOT example of motmetrics' README: objects 1, 2; hypotheses 1, 2, 3.
        let mut acc = Accumulator::default();
        acc.update(&frame(
            &[1, 2],
            &[1, 2, 3],
            &[
                &[Some(0.1), None, Some(0.3)],
                &[Some(0.5), Some(0.2), Some(0.3)],
            ],
        ));
        acc.update(&frame(&[1, 2], &[1], &[&[Some(0.4)], &[None]]));
        acc.update(&frame(
            &[1, 2],
            &[1, 3],
            &[&[Some(0.6), Some(0.2)], &[Some(0.1), Some(0.6)]],
        ));
        let c = acc.counts;
        assert_eq!(
            (
                c.matches,
                c.switches,
                c.misses,
                c.false_positives,
                c.objects
            ),
            (4, 1, 1, 1, 6)
        );
        // motmetrics: events['D'].sum() is 5.8 (RAW, MATCH, ASCEND and SWITCH distances)
        assert!((c.sum_d - 5.8).abs() < 1e-12, "{}", c.sum_d);
    }

    #[test]
    fn polygon_interior_excludes_the_boundary() {
        let square = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];
        assert!(strictly_inside(&square, 5.0, 5.0));
        assert!(!strictly_inside(&square, 10.0, 5.0));
        assert!(!strictly_inside(&square, 0.0, 0.0));
        assert!(!strictly_inside(&square, 11.0, 5.0));
        assert!(!strictly_inside(&square[..2], 5.0, 0.0));
    }

    #[test]
    fn ignore_regions_agree_with_shapely() {
        // The real PoseTrack18 ignore polygons of the samples; vertices, edge midpoints and
        // random points, with shapely's Polygon.contains (tools/fixtures/posetrack_mota.py).
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/posetrack/ignore_points.json");
        let cases: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let nums = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let mut checked = 0;
        for case in cases.as_array().unwrap() {
            let ring: Vec<[f64; 2]> = nums(&case["x"])
                .into_iter()
                .zip(nums(&case["y"]))
                .map(|(x, y)| [x, y])
                .collect();
            for (p, inside) in case["points"]
                .as_array()
                .unwrap()
                .iter()
                .zip(case["inside"].as_array().unwrap())
            {
                let p = nums(p);
                let want = inside.as_bool().unwrap();
                assert_eq!(
                    strictly_inside(&ring, p[0], p[1]),
                    want,
                    "{} region {} at {p:?}",
                    case["video"],
                    case["region"]
                );
                checked += 1;
            }
        }
        assert!(checked > 800);
    }
}
