//! Per-image greedy matching of detections to ground truth, as pycocotools' `evaluateImg` does
//! it for one image, one category and one area range, at every OKS threshold.

/// What one image contributes to one area range: per threshold, one outcome per detection (in
/// score order), and how many ground truths count for recall.
pub(super) struct ImageMatches {
    /// `outcomes[t * D + d]`.
    pub outcomes: Vec<Outcome>,
    /// Ground truths that are neither crowd, unlabelled nor outside the area range.
    pub num_counted_gt: usize,
}

/// How a detection counts at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    TruePositive,
    FalsePositive,
    /// Matched to an ignored ground truth, or unmatched and outside the area range.
    Ignored,
}

/// One ground truth as the matcher sees it.
pub(super) struct MatchGt {
    /// The annotation id. pycocotools records a match by storing this id and later tests it
    /// for non-zero, so a detection matched to an annotation with id 0 counts as unmatched;
    /// kept for exactness.
    pub id: i64,
    pub iscrowd: bool,
    /// Crowd or `num_keypoints == 0`.
    pub ignore: bool,
    pub area: f64,
}

/// Matches `num_dt` detections (sorted by score, best first) against `gts` (file order) for
/// one area range. `oks[d * gts.len() + g]` is the similarity of detection `d` and ground
/// truth `g`; `dt_areas[d]` decides whether an unmatched detection is ignored.
pub(super) fn match_image(
    gts: &[MatchGt],
    oks: &[f64],
    dt_areas: &[f64],
    area_range: [f64; 2],
    thresholds: &[f64],
) -> ImageMatches {
    let num_dt = dt_areas.len();
    let outside = |a: f64| a < area_range[0] || a > area_range[1];
    // Ground truths that do not count go last, keeping file order within each group (the
    // stable sort pycocotools does), so a detection prefers a counted match.
    let gt_ignored: Vec<bool> = gts.iter().map(|g| g.ignore || outside(g.area)).collect();
    let order: Vec<usize> = (0..gts.len())
        .filter(|&g| !gt_ignored[g])
        .chain((0..gts.len()).filter(|&g| gt_ignored[g]))
        .collect();
    let num_counted_gt = gt_ignored.iter().filter(|&&ig| !ig).count();

    let mut outcomes = Vec::with_capacity(thresholds.len() * num_dt);
    let mut gt_taken = vec![false; gts.len()];
    for &threshold in thresholds {
        gt_taken.iter_mut().for_each(|t| *t = false);
        for d in 0..num_dt {
            let row = &oks[d * gts.len()..(d + 1) * gts.len()];
            let mut best = threshold.min(1.0 - 1e-10);
            let mut matched: Option<usize> = None;
            for &g in &order {
                if gt_taken[g] && !gts[g].iscrowd {
                    continue;
                }
                // Once matched to a counted ground truth, ignored ones cannot win.
                if let Some(m) = matched {
                    if !gt_ignored[m] && gt_ignored[g] {
                        break;
                    }
                }
                if row[g] < best {
                    continue;
                }
                best = row[g];
                matched = Some(g);
            }
            let outcome = match matched {
                Some(m) => {
                    gt_taken[m] = true;
                    if gt_ignored[m] {
                        Outcome::Ignored
                    } else if gts[m].id != 0 {
                        Outcome::TruePositive
                    } else if outside(dt_areas[d]) {
                        Outcome::Ignored
                    } else {
                        Outcome::FalsePositive
                    }
                }
                None if outside(dt_areas[d]) => Outcome::Ignored,
                None => Outcome::FalsePositive,
            };
            outcomes.push(outcome);
        }
    }
    ImageMatches {
        outcomes,
        num_counted_gt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [f64; 2] = [0.0, 1e10];

    fn gt(id: i64, iscrowd: bool, ignore: bool) -> MatchGt {
        MatchGt {
            id,
            iscrowd,
            ignore,
            area: 5000.0,
        }
    }

    #[test]
    fn best_counted_match_wins_and_is_taken_once() {
        let gts = [gt(1, false, false), gt(2, false, false)];
        // Both detections prefer GT 2; the second falls back to GT 1.
        let oks = [0.6, 0.9, 0.7, 0.8];
        let m = match_image(&gts, &oks, &[100.0, 100.0], ALL, &[0.5]);
        assert_eq!(
            m.outcomes,
            vec![Outcome::TruePositive, Outcome::TruePositive]
        );
        let m = match_image(&gts, &oks, &[100.0, 100.0], ALL, &[0.75]);
        assert_eq!(
            m.outcomes,
            vec![Outcome::TruePositive, Outcome::FalsePositive]
        );
        assert_eq!(m.num_counted_gt, 2);
    }

    #[test]
    fn crowd_absorbs_many_detections_and_counted_gt_is_preferred() {
        let gts = [gt(1, true, true), gt(2, false, false)];
        let oks = [0.95, 0.6, 0.9, 0.1, 0.9, 0.0];
        let m = match_image(&gts, &oks, &[1.0; 3], ALL, &[0.5]);
        // d0 matches the counted GT (tried first) although the crowd is closer.
        assert_eq!(
            m.outcomes,
            vec![Outcome::TruePositive, Outcome::Ignored, Outcome::Ignored]
        );
        assert_eq!(m.num_counted_gt, 1);
    }

    #[test]
    fn unmatched_outside_area_range_is_ignored() {
        let gts = [gt(1, false, false)];
        let m = match_image(
            &gts,
            &[0.1, 0.1],
            &[100.0, 5000.0],
            [1024.0, 9216.0],
            &[0.5],
        );
        assert_eq!(m.outcomes, vec![Outcome::Ignored, Outcome::FalsePositive]);
    }

    #[test]
    fn annotation_id_zero_counts_as_unmatched() {
        let gts = [gt(0, false, false)];
        let m = match_image(&gts, &[0.9], &[100.0], ALL, &[0.5]);
        assert_eq!(m.outcomes, vec![Outcome::FalsePositive]);
    }
}
