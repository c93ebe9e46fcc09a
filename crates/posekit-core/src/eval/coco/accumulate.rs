//! From per-detection outcomes to precision and recall, as pycocotools' `accumulate` computes
//! them: all detections of a category (over all images) sorted by score, cumulative true and
//! false positives, precision made non-increasing from the right, then sampled at 101 recall
//! points with a left-sided search.

use super::matching::Outcome;

/// `np.linspace(.5, .95, 10)`, value for value: `i * step + .5` with the end point exact.
pub(super) fn oks_thresholds() -> [f64; 10] {
    let step = (0.95 - 0.5) / 9.0;
    std::array::from_fn(|i| if i == 9 { 0.95 } else { i as f64 * step + 0.5 })
}

/// `np.linspace(0, 1, 101)`, value for value (`i * 0.01`, end point exactly 1).
pub(super) fn recall_thresholds() -> [f64; 101] {
    let step = 1.0 / 100.0;
    std::array::from_fn(|i| if i == 100 { 1.0 } else { i as f64 * step })
}

/// Precision at each recall threshold (101 values) and the final recall, for one category, area
/// range and OKS threshold. `None` when no ground truth counts (pycocotools leaves -1 there).
pub(super) struct Curve {
    pub precision: [f64; 101],
    pub recall: f64,
}

/// `outcomes` are in the order of `sorted` (detections by score, best first, ties in image then
/// file order); `num_counted_gt` ground truths count.
pub(super) fn curve(
    outcomes: impl Iterator<Item = Outcome>,
    num_counted_gt: usize,
) -> Option<Curve> {
    if num_counted_gt == 0 {
        return None;
    }
    let npig = num_counted_gt as f64;
    let mut rc = Vec::new();
    let mut pr = Vec::new();
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    // Ignored detections stay in the sequence with unchanged counts, as in the cumsum.
    for o in outcomes {
        match o {
            Outcome::TruePositive => tp += 1.0,
            Outcome::FalsePositive => fp += 1.0,
            Outcome::Ignored => {}
        }
        rc.push(tp / npig);
        pr.push(tp / (fp + tp + f64::EPSILON));
    }
    let recall = rc.last().copied().unwrap_or(0.0);
    for i in (1..pr.len()).rev() {
        if pr[i] > pr[i - 1] {
            pr[i - 1] = pr[i];
        }
    }
    // searchsorted(rc, thr, 'left'): first index with rc >= thr; past the end precision is 0.
    let mut precision = [0.0; 101];
    let mut i = 0;
    for (q, thr) in precision.iter_mut().zip(recall_thresholds()) {
        while i < rc.len() && rc[i] < thr {
            i += 1;
        }
        if i == rc.len() {
            break;
        }
        *q = pr[i];
    }
    Some(Curve { precision, recall })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    #[test]
    fn grids_match_numpy_linspace() {
        let t = oks_thresholds();
        assert_eq!(t[0], 0.5);
        assert_eq!(t[5], 0.75);
        assert_eq!(t[8], 0.8999999999999999);
        let r = recall_thresholds();
        assert_eq!(r[7], 0.07);
        assert_eq!(r[100], 1.0);
    }

    #[test]
    fn perfect_detections_give_precision_one_until_full_recall() {
        let c = curve([TruePositive, TruePositive].into_iter(), 2).unwrap();
        assert_eq!(c.recall, 1.0);
        // tp / (tp + eps): 1 / (1 + eps) is below 1, 2 / (2 + eps) rounds to 1.
        assert_eq!(c.precision[0], 1.0);
        assert!(c.precision.iter().all(|&p| p == 1.0));
    }

    #[test]
    fn precision_is_interpolated_from_the_right() {
        // fp, tp: precision 0 then 1/2; recall 0 then 1/2 of 2 gts.
        let c = curve([FalsePositive, TruePositive, Ignored].into_iter(), 2).unwrap();
        assert_eq!(c.recall, 0.5);
        assert_eq!(c.precision[0], 0.5);
        assert_eq!(c.precision[50], 0.5);
        assert_eq!(c.precision[51], 0.0);
    }

    #[test]
    fn no_counted_gt_gives_none_and_no_detections_zero() {
        assert!(curve([TruePositive].into_iter(), 0).is_none());
        let c = curve(std::iter::empty(), 3).unwrap();
        assert_eq!(c.recall, 0.0);
        assert!(c.precision.iter().all(|&p| p == 0.0));
    }
}
