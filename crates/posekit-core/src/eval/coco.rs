//! COCO keypoint AP/AR, identical to pycocotools' `COCOeval(iouType='keypoints')` followed by
//! `evaluate()`, `accumulate()` and `summarize()`.
//!
//! Published numbers are pycocotools numbers, so "close" is not good enough: a different tie
//! order or a sigma rounded differently moves AP in the fourth digit. Everything that decides a
//! match or an order is therefore reproduced, not approximated:
//! - ground truth is ignored when crowd or `num_keypoints == 0`, and per area range when its
//!   `area` is outside `[lo, hi]` (ranges all `[0, 1e10]`, medium `[32², 96²]`, large
//!   `[96², 1e10]`); ignored ground truth is tried last;
//! - detections are sorted by score with a stable sort (numpy's mergesort) and cut to 20 per
//!   image, both before OKS is computed and before matching;
//! - matching is greedy per threshold with `min(t, 1 - 1e-10)`, later ground truth winning
//!   ties, crowd regions matchable many times;
//! - an unmatched detection outside the area range is ignored, its area being what
//!   `loadRes` sets ([`result_areas`]);
//! - precision/recall are accumulated over all images in image-id order, sorted stably by
//!   score, sampled at 101 recall points; a range with no counted ground truth gives -1;
//! - the summary means use numpy's pairwise summation order.
//!
//! Unlike pycocotools this is one pass with the OKS matrix of an image computed once, so the
//! whole evaluation of 5,000 images takes milliseconds rather than seconds.

mod accumulate;
mod matching;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::error::{Error, Result};
use crate::formats::coco::{
    load_keypoint_results, result_areas, CocoKeypointResult, CocoKeypointsGt,
};
use crate::layout::KeypointLayout;
use crate::oks::{coco17_sigmas, pairwise_sum, Oks, OksGroundTruth};

use accumulate::{curve, oks_thresholds};
use matching::{match_image, MatchGt, Outcome};

/// At most this many detections per image are evaluated (pycocotools' `maxDets = [20]`).
pub const MAX_DETECTIONS: usize = 20;

/// The keypoint area ranges, in pycocotools' order: all, medium, large.
pub const AREA_RANGES: [[f64; 2]; 3] = [
    [0.0, 1e5 * 1e5],
    [32.0 * 32.0, 96.0 * 96.0],
    [96.0 * 96.0, 1e5 * 1e5],
];

const AREA_LABELS: [&str; 3] = ["all", "medium", "large"];

/// Evaluates keypoint results against one ground truth.
///
/// Indexing the ground truth (sorted image and category ids, annotations per image) is done
/// once in [`CocoEvaluator::new`], so several result files can be scored cheaply.
#[derive(Debug, Clone)]
pub struct CocoEvaluator<'a> {
    gt: &'a CocoKeypointsGt,
    oks: Oks,
    image_ids: Vec<i64>,
    image_index: HashMap<i64, usize>,
    category_ids: Vec<i64>,
    category_index: HashMap<i64, usize>,
    /// Annotation indices in file order, per `category * images + image` cell.
    gt_cells: Vec<Vec<usize>>,
}

impl<'a> CocoEvaluator<'a> {
    /// An evaluator with pycocotools' COCO-17 sigmas ([`crate::oks::coco17_sigmas`]).
    pub fn new(gt: &'a CocoKeypointsGt) -> Self {
        let mut image_ids: Vec<i64> = gt.images.iter().map(|im| im.id).collect();
        image_ids.sort_unstable();
        image_ids.dedup();
        let mut category_ids: Vec<i64> = gt.categories.iter().map(|c| c.id).collect();
        category_ids.sort_unstable();
        category_ids.dedup();
        let image_index: HashMap<i64, usize> = image_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        let category_index: HashMap<i64, usize> = category_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        let mut gt_cells = vec![Vec::new(); image_ids.len() * category_ids.len()];
        for (a, ann) in gt.annotations.iter().enumerate() {
            // Annotations of unknown images or categories are not evaluated (pycocotools
            // filters them the same way; a validated file has none).
            if let (Some(&i), Some(&k)) = (
                image_index.get(&ann.image_id),
                category_index.get(&ann.category_id),
            ) {
                gt_cells[k * image_ids.len() + i].push(a);
            }
        }
        CocoEvaluator {
            gt,
            oks: Oks::coco17(),
            image_ids,
            image_index,
            category_ids,
            category_index,
            gt_cells,
        }
    }

    /// An evaluator with a layout's OKS sigmas (CrowdPose-14, a custom layout).
    ///
    /// Sigmas equal to COCO-17's are replaced by pycocotools' own values: the layout file's
    /// decimals (`0.026`) and pycocotools' `0.26 / 10` differ in the last bit, and COCO scores
    /// must stay identical to pycocotools'.
    pub fn for_layout(gt: &'a CocoKeypointsGt, layout: &KeypointLayout) -> Result<Self> {
        let Some(sigmas) = &layout.sigmas else {
            return Err(Error::Shape(format!(
                "layout `{}` has no OKS sigmas, so it cannot be scored with COCO keypoint AP",
                layout.name
            )));
        };
        let coco = coco17_sigmas();
        let is_coco = sigmas.len() == coco.len()
            && sigmas.iter().zip(coco).all(|(a, b)| (a - b).abs() < 1e-12);
        let evaluator = CocoEvaluator::new(gt);
        Ok(if is_coco {
            evaluator
        } else {
            evaluator.with_sigmas(sigmas)
        })
    }

    /// Uses other per-keypoint sigmas (CrowdPose, a custom layout). One sigma per keypoint of
    /// every category.
    pub fn with_sigmas(mut self, sigmas: &[f64]) -> Self {
        self.oks = Oks::new(sigmas);
        self
    }

    /// Scores `results` (validated against this ground truth, e.g. by
    /// [`load_keypoint_results`]).
    ///
    /// Results of categories absent from the ground truth are skipped, as pycocotools skips
    /// them. An empty result list scores 0 wherever there is ground truth (pycocotools crashes
    /// on it).
    pub fn evaluate(&self, results: &[CocoKeypointResult]) -> Result<CocoStats> {
        let k = self.oks.num_keypoints();
        for (c, cat) in self.gt.categories.iter().enumerate() {
            // A category without keypoint names (pycocotools never reads them) is checked
            // through its annotations below.
            if !cat.keypoints.is_empty() && cat.keypoints.len() != k {
                return Err(Error::Shape(format!(
                    "categories[{c}] has {} keypoints but the evaluator has {k} OKS sigmas",
                    cat.keypoints.len()
                )));
            }
        }
        if let Some((a, ann)) = self
            .gt
            .annotations
            .iter()
            .enumerate()
            .find(|(_, ann)| ann.keypoints.len() != 3 * k)
        {
            return Err(Error::Shape(format!(
                "annotations[{a}] has {} keypoint values but the evaluator has {k} OKS sigmas \
                 ({} values)",
                ann.keypoints.len(),
                3 * k
            )));
        }
        let num_images = self.image_ids.len();
        let mut dt_cells = vec![Vec::new(); self.gt_cells.len()];
        for (j, r) in results.iter().enumerate() {
            let Some(&i) = self.image_index.get(&r.image_id) else {
                return Err(Error::Shape(format!(
                    "result {j}: image {} is not in the ground truth",
                    r.image_id
                )));
            };
            let Some(&c) = self.category_index.get(&r.category_id) else {
                continue;
            };
            if r.keypoints.len() != 3 * k {
                return Err(Error::Shape(format!(
                    "result {j}: expected {} keypoint values ({k} keypoints x 3), got {}",
                    3 * k,
                    r.keypoints.len()
                )));
            }
            if !r.score.is_finite() {
                return Err(Error::Shape(format!("result {j}: score is {}", r.score)));
            }
            dt_cells[c * num_images + i].push(j);
        }
        let dt_areas = result_areas(results);
        let thresholds = oks_thresholds();
        let num_t = thresholds.len();

        let mut sums = StatsAccumulator::new(self.category_ids.len());
        for c in 0..self.category_ids.len() {
            let mut scores = Vec::new();
            // Per area range: outcomes `[t][detection]`, and the counted ground truth.
            let mut outcomes: [Vec<Vec<Outcome>>; 3] =
                std::array::from_fn(|_| vec![Vec::new(); num_t]);
            let mut counted = [0usize; 3];
            let mut any = false;
            for i in 0..num_images {
                let cell = c * num_images + i;
                let gts = &self.gt_cells[cell];
                let mut dts = std::mem::take(&mut dt_cells[cell]);
                if gts.is_empty() && dts.is_empty() {
                    continue;
                }
                any = true;
                // Stable, best first: numpy's argsort(-score, kind='mergesort').
                dts.sort_by(|&a, &b| descending(results[a].score, results[b].score));
                dts.truncate(MAX_DETECTIONS);
                let oks = self.oks_matrix(gts, &dts, results);
                let match_gts: Vec<MatchGt> = gts
                    .iter()
                    .map(|&g| {
                        let ann = &self.gt.annotations[g];
                        MatchGt {
                            id: ann.id,
                            iscrowd: ann.iscrowd,
                            ignore: ann.iscrowd || ann.num_keypoints == 0,
                            area: ann.area,
                        }
                    })
                    .collect();
                let areas: Vec<f64> = dts.iter().map(|&d| dt_areas[d]).collect();
                scores.extend(dts.iter().map(|&d| results[d].score));
                for (a, range) in AREA_RANGES.iter().enumerate() {
                    let m = match_image(&match_gts, &oks, &areas, *range, &thresholds);
                    counted[a] += m.num_counted_gt;
                    for (t, per_t) in outcomes[a].iter_mut().enumerate() {
                        per_t.extend_from_slice(&m.outcomes[t * dts.len()..(t + 1) * dts.len()]);
                    }
                }
            }
            if !any {
                continue;
            }
            // Across images: stable by score, ties in image order then per-image order.
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| descending(scores[a], scores[b]));
            for a in 0..AREA_RANGES.len() {
                for (t, per_t) in outcomes[a].iter().enumerate() {
                    if let Some(curve) = curve(order.iter().map(|&o| per_t[o]), counted[a]) {
                        sums.set(a, t, c, curve.precision, curve.recall);
                    }
                }
            }
        }
        Ok(sums.stats())
    }

    /// OKS of every (detection, ground truth) pair, `[d * G + g]`, ground truth in file order.
    fn oks_matrix(&self, gts: &[usize], dts: &[usize], results: &[CocoKeypointResult]) -> Vec<f64> {
        let mut oks = Vec::with_capacity(gts.len() * dts.len());
        if gts.is_empty() {
            return oks;
        }
        let gts: Vec<OksGroundTruth> = gts
            .iter()
            .map(|&g| {
                let ann = &self.gt.annotations[g];
                OksGroundTruth {
                    keypoints: &ann.keypoints,
                    bbox: ann.bbox,
                    area: ann.area,
                }
            })
            .collect();
        for &d in dts {
            for gt in &gts {
                oks.push(self.oks.similarity(gt, &results[d].keypoints));
            }
        }
        oks
    }
}

/// Order for a stable sort by descending score. Scores are finite (checked above); 0.0 and -0.0
/// compare equal, as they do for numpy.
fn descending(a: f64, b: f64) -> std::cmp::Ordering {
    b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal)
}

/// Loads a ground truth and a result file and evaluates them: what `posekit eval coco` does.
pub fn evaluate_coco_files(
    gt_path: impl AsRef<Path>,
    results_path: impl AsRef<Path>,
) -> Result<CocoStats> {
    let gt = CocoKeypointsGt::load_for_eval(gt_path)?;
    let results = load_keypoint_results(results_path, &gt)?;
    CocoEvaluator::new(&gt).evaluate(&results)
}

/// The precision and recall arrays pycocotools' `accumulate` builds (only maxDets 20), laid out
/// so that the summary means see values in numpy's C order (threshold, recall point, category).
struct StatsAccumulator {
    num_categories: usize,
    /// `[a][(t * 101 + r) * K + k]`, -1 where absent.
    precision: [Vec<f64>; 3],
    /// `[a][t * K + k]`, -1 where absent.
    recall: [Vec<f64>; 3],
}

impl StatsAccumulator {
    fn new(num_categories: usize) -> Self {
        let k = num_categories;
        StatsAccumulator {
            num_categories,
            precision: std::array::from_fn(|_| vec![-1.0; 10 * 101 * k]),
            recall: std::array::from_fn(|_| vec![-1.0; 10 * k]),
        }
    }

    fn set(&mut self, a: usize, t: usize, c: usize, precision: [f64; 101], recall: f64) {
        let k = self.num_categories;
        for (r, p) in precision.into_iter().enumerate() {
            self.precision[a][(t * 101 + r) * k + c] = p;
        }
        self.recall[a][t * k + c] = recall;
    }

    /// pycocotools' `_summarize`: the mean of the values above -1, or -1 if there are none.
    fn stats(&self) -> CocoStats {
        let k = self.num_categories;
        let mean = |values: &mut dyn Iterator<Item = f64>| {
            let kept: Vec<f64> = values.filter(|&v| v > -1.0).collect();
            if kept.is_empty() {
                -1.0
            } else {
                pairwise_sum(&kept) / kept.len() as f64
            }
        };
        let ap = |a: usize, t: Option<usize>| {
            let p = &self.precision[a];
            match t {
                None => mean(&mut p.iter().copied()),
                Some(t) => mean(&mut p[t * 101 * k..(t + 1) * 101 * k].iter().copied()),
            }
        };
        let ar = |a: usize, t: Option<usize>| {
            let r = &self.recall[a];
            match t {
                None => mean(&mut r.iter().copied()),
                Some(t) => mean(&mut r[t * k..(t + 1) * k].iter().copied()),
            }
        };
        // Thresholds .5 and .75 are entries 0 and 5 of the grid.
        CocoStats {
            ap: ap(0, None),
            ap50: ap(0, Some(0)),
            ap75: ap(0, Some(5)),
            ap_medium: ap(1, None),
            ap_large: ap(2, None),
            ar: ar(0, None),
            ar50: ar(0, Some(0)),
            ar75: ar(0, Some(5)),
            ar_medium: ar(1, None),
            ar_large: ar(2, None),
        }
    }
}

/// The ten numbers pycocotools' `summarize()` prints for keypoints, in its order. -1 means the
/// range had no ground truth that counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CocoStats {
    pub ap: f64,
    pub ap50: f64,
    pub ap75: f64,
    pub ap_medium: f64,
    pub ap_large: f64,
    pub ar: f64,
    pub ar50: f64,
    pub ar75: f64,
    pub ar_medium: f64,
    pub ar_large: f64,
}

impl CocoStats {
    /// Short names in pycocotools' order; also the keys of the JSON form.
    pub const fn names() -> [&'static str; 10] {
        [
            "AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)",
            "AR (L)",
        ]
    }

    /// The values in pycocotools' `stats` order.
    pub fn values(&self) -> [f64; 10] {
        [
            self.ap,
            self.ap50,
            self.ap75,
            self.ap_medium,
            self.ap_large,
            self.ar,
            self.ar50,
            self.ar75,
            self.ar_medium,
            self.ar_large,
        ]
    }

    /// Builds stats from pycocotools' `stats` array order.
    pub fn from_values(v: [f64; 10]) -> Self {
        CocoStats {
            ap: v[0],
            ap50: v[1],
            ap75: v[2],
            ap_medium: v[3],
            ap_large: v[4],
            ar: v[5],
            ar50: v[6],
            ar75: v[7],
            ar_medium: v[8],
            ar_large: v[9],
        }
    }

    /// `(name, value)` pairs in order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, f64)> {
        Self::names().into_iter().zip(self.values())
    }

    /// The ten lines pycocotools prints, character for character, so logs can be compared with
    /// diff.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (i, v) in self.values().into_iter().enumerate() {
            let (title, kind) = if i < 5 {
                ("Average Precision", "(AP)")
            } else {
                ("Average Recall", "(AR)")
            };
            let iou = match i % 5 {
                1 => "0.50",
                2 => "0.75",
                _ => "0.50:0.95",
            };
            let area = match i % 5 {
                3 => AREA_LABELS[1],
                4 => AREA_LABELS[2],
                _ => AREA_LABELS[0],
            };
            out.push_str(&format!(
                " {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6} | maxDets={MAX_DETECTIONS:>3} ] = {v:.3}\n"
            ));
        }
        out
    }
}

impl fmt::Display for CocoStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// One JSON object with the keys of [`CocoStats::names`], in that order.
impl Serialize for CocoStats {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(10))?;
        for (name, value) in self.named() {
            map.serialize_entry(name, &value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::coco::{CocoCategory, CocoImage, CocoPersonAnnotation};

    fn person(id: i64, image_id: i64, x: f64, y: f64, size: f64) -> CocoPersonAnnotation {
        let keypoints = (0..17)
            .flat_map(|j| {
                [
                    x + (j % 4) as f64 * size / 4.0,
                    y + j as f64 * size / 17.0,
                    2.0,
                ]
            })
            .collect();
        CocoPersonAnnotation {
            id,
            image_id,
            category_id: 1,
            keypoints,
            num_keypoints: 17,
            bbox: [x, y, size, size],
            area: size * size * 0.6,
            iscrowd: false,
            segmentation: None,
        }
    }

    fn gt() -> CocoKeypointsGt {
        CocoKeypointsGt {
            images: (1..=3)
                .map(|id| CocoImage {
                    id,
                    file_name: format!("{id}.jpg"),
                    width: 640,
                    height: 480,
                })
                .collect(),
            annotations: vec![
                person(1, 1, 10.0, 10.0, 200.0),
                person(2, 1, 300.0, 10.0, 80.0),
                person(3, 2, 50.0, 50.0, 150.0),
            ],
            categories: vec![CocoCategory {
                id: 1,
                name: "person".into(),
                supercategory: None,
                keypoints: (0..17).map(|j| format!("k{j}")).collect(),
                skeleton: vec![],
            }],
        }
    }

    fn result_for(ann: &CocoPersonAnnotation, shift: f64, score: f64) -> CocoKeypointResult {
        CocoKeypointResult {
            image_id: ann.image_id,
            category_id: 1,
            keypoints: ann
                .keypoints
                .chunks(3)
                .flat_map(|p| [p[0] + shift, p[1], 0.9])
                .collect(),
            score,
            bbox: None,
            file_name: None,
            center: None,
            scale: None,
        }
    }

    #[test]
    fn perfect_results_score_one() {
        let gt = gt();
        let results: Vec<_> = gt
            .annotations
            .iter()
            .map(|a| result_for(a, 0.0, 0.9))
            .collect();
        let stats = CocoEvaluator::new(&gt).evaluate(&results).unwrap();
        for (name, v) in stats.named() {
            assert!(v > 1.0 - 1e-15 && v <= 1.0, "{name}: {v}");
        }
        // One true positive alone has precision 1 / (1 + eps), as in pycocotools.
        assert_eq!(stats.ap_medium, 1.0 / (1.0 + f64::EPSILON));
    }

    #[test]
    fn missing_range_is_minus_one_and_no_results_zero() {
        let mut gt = gt();
        gt.annotations.retain(|a| a.id != 2); // no medium person left
        let stats = CocoEvaluator::new(&gt).evaluate(&[]).unwrap();
        assert_eq!(stats.ap, 0.0);
        assert_eq!(stats.ap_medium, -1.0);
        assert_eq!(stats.ar_medium, -1.0);
        assert_eq!(stats.ar_large, 0.0);
    }

    #[test]
    fn a_false_positive_above_a_true_one_halves_precision_at_start() {
        let gt = gt();
        let mut results = vec![result_for(&gt.annotations[0], 0.0, 0.5)];
        // A confident detection on image 3, which has no person.
        let mut fp = result_for(&gt.annotations[0], 0.0, 0.9);
        fp.image_id = 3;
        results.push(fp);
        let stats = CocoEvaluator::new(&gt).evaluate(&results).unwrap();
        // Recall reaches 1/3 with precision 1/2.
        let expected = (34.0 * 0.5) / 101.0;
        assert!((stats.ap - expected).abs() < 1e-12, "{}", stats.ap);
        assert!((stats.ar - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn summary_matches_pycocotools_layout() {
        let s = CocoStats::from_values([0.5, 0.75, 0.5, -1.0, 0.25, 0.5, 0.75, 0.5, -1.0, 0.25]);
        let summary = s.summary();
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(
            lines[0],
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ] = 0.500"
        );
        assert_eq!(
            lines[3],
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets= 20 ] = -1.000"
        );
        assert_eq!(
            lines[7],
            " Average Recall     (AR) @[ IoU=0.75      | area=   all | maxDets= 20 ] = 0.500"
        );
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.starts_with(r#"{"AP":0.5,"AP .5":0.75,"AP .75":0.5,"AP (M)":-1.0,"#),
            "{json}"
        );
    }

    #[test]
    fn layout_sigmas_select_the_oks() {
        let gt = gt();
        let mut layout = KeypointLayout {
            name: "coco17".into(),
            keypoints: (0..17).map(|j| format!("k{j}")).collect(),
            flip_pairs: vec![],
            skeleton: vec![],
            sigmas: Some(vec![
                0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107,
                0.107, 0.087, 0.087, 0.089, 0.089,
            ]),
            upper_body: vec![],
            mappings: Default::default(),
        };
        let e = CocoEvaluator::for_layout(&gt, &layout).unwrap();
        assert_eq!(e.oks, Oks::coco17());
        layout.sigmas.as_mut().unwrap()[0] = 0.05;
        let e = CocoEvaluator::for_layout(&gt, &layout).unwrap();
        assert_ne!(e.oks, Oks::coco17());
        layout.sigmas = None;
        assert!(CocoEvaluator::for_layout(&gt, &layout).is_err());
    }

    #[test]
    fn wrong_sigma_count_is_an_error() {
        let gt = gt();
        let err = CocoEvaluator::new(&gt)
            .with_sigmas(&[0.1; 14])
            .evaluate(&[])
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("17 keypoints but the evaluator has 14"));
    }
}
