//! Object keypoint similarity (OKS), the "IoU" of COCO keypoint evaluation, computed exactly as
//! pycocotools' `COCOeval.computeOks` does so that matches (and therefore AP) agree to the bit.
//!
//! The details that matter for exactness:
//! - `var = (2 sigma)^2` and each term is `d^2 / var / (area + eps) / 2` in that order of
//!   operations, with `eps` = machine epsilon (`np.spacing(1)`).
//! - Only ground-truth keypoints with `v > 0` count. A ground truth with none (a crowd region or
//!   an unlabelled person, which can still absorb detections) is compared through its box
//!   doubled in each direction: a detected keypoint inside costs nothing, one outside costs its
//!   distance to that region, and every keypoint counts.
//! - The mean is a sum in numpy's pairwise order divided by the count.

/// COCO-17 sigmas as pycocotools computes them (`np.array([.26, .25, ...]) / 10.0`). Several
/// differ in the last bit from the literals `.026, .025, ...` (0.26 / 10 is
/// 0.026000000000000002), and that bit can decide a match at a threshold, so evaluation uses
/// these rather than the layout file's decimal values.
pub fn coco17_sigmas() -> [f64; 17] {
    let tenths = [
        0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87,
        0.89, 0.89,
    ];
    tenths.map(|s| s / 10.0)
}

/// OKS for a fixed set of per-keypoint sigmas; holds the derived variances so that they are
/// computed once, not per pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Oks {
    vars: Vec<f64>,
}

/// One ground-truth person as OKS sees it.
#[derive(Debug, Clone, Copy)]
pub struct OksGroundTruth<'a> {
    /// `x, y, v` per keypoint.
    pub keypoints: &'a [f64],
    /// `[x, y, w, h]`; only used when no keypoint is labelled.
    pub bbox: [f64; 4],
    /// The annotation's area (the scale term of OKS).
    pub area: f64,
}

impl Oks {
    pub fn new(sigmas: &[f64]) -> Self {
        Oks {
            vars: sigmas.iter().map(|s| (s * 2.0) * (s * 2.0)).collect(),
        }
    }

    /// pycocotools' COCO-17 sigmas.
    pub fn coco17() -> Self {
        Oks::new(&coco17_sigmas())
    }

    pub fn num_keypoints(&self) -> usize {
        self.vars.len()
    }

    /// OKS between a ground truth and a detection (`x, y, score` per keypoint; the score is not
    /// used). Both arrays must hold `3 * num_keypoints()` values.
    pub fn similarity(&self, gt: &OksGroundTruth, dt: &[f64]) -> f64 {
        let k = self.vars.len();
        debug_assert!(gt.keypoints.len() == 3 * k && dt.len() == 3 * k);
        let scale = gt.area + f64::EPSILON;
        let mut terms = [0.0f64; 64];
        let mut heap;
        let terms: &mut [f64] = if k <= terms.len() {
            &mut terms[..k]
        } else {
            heap = vec![0.0; k];
            &mut heap
        };
        let labelled = gt.keypoints.chunks_exact(3).filter(|p| p[2] > 0.0).count();
        let mut n = 0;
        if labelled > 0 {
            for (j, (g, d)) in gt
                .keypoints
                .chunks_exact(3)
                .zip(dt.chunks_exact(3))
                .enumerate()
            {
                if g[2] > 0.0 {
                    let dx = d[0] - g[0];
                    let dy = d[1] - g[1];
                    let e = (dx * dx + dy * dy) / self.vars[j] / scale / 2.0;
                    terms[n] = exp_neg(e);
                    n += 1;
                }
            }
        } else {
            let [bx, by, bw, bh] = gt.bbox;
            let (x0, x1) = (bx - bw, bx + bw * 2.0);
            let (y0, y1) = (by - bh, by + bh * 2.0);
            for (j, d) in dt.chunks_exact(3).enumerate() {
                let dx = (x0 - d[0]).max(0.0) + (d[0] - x1).max(0.0);
                let dy = (y0 - d[1]).max(0.0) + (d[1] - y1).max(0.0);
                let e = (dx * dx + dy * dy) / self.vars[j] / scale / 2.0;
                terms[n] = exp_neg(e);
                n += 1;
            }
        }
        pairwise_sum(&terms[..n]) / n as f64
    }
}

/// `exp(-e)` for `e >= 0`. Far-apart pairs are the common case and give huge `e`; beyond 746
/// the result is exactly 0.0 (the smallest subnormal is exp(-745.13)), so skipping libm's slow
/// underflow path changes nothing but the time.
#[inline]
fn exp_neg(e: f64) -> f64 {
    if e > 746.0 {
        0.0
    } else {
        (-e).exp()
    }
}

/// numpy's summation order for a contiguous float64 array (`np.sum`, and so `np.mean`): blocks of
/// at most 128 values summed with eight interleaved accumulators, larger arrays split in two
/// halves (rounded to a multiple of 8) recursively. Matching it keeps OKS values and the
/// summary means bit-identical to pycocotools' instead of merely close.
pub(crate) fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = -0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let mut i = 8;
        while i < n - n % 8 {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[i..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(offset: f64) -> Vec<f64> {
        (0..17)
            .flat_map(|j| [10.0 + j as f64 * 3.0 + offset, 20.0 + j as f64 * 5.0, 2.0])
            .collect()
    }

    #[test]
    fn identical_pose_has_oks_one() {
        let g = person(0.0);
        let gt = OksGroundTruth {
            keypoints: &g,
            bbox: [0.0, 0.0, 60.0, 100.0],
            area: 3000.0,
        };
        assert_eq!(Oks::coco17().similarity(&gt, &g), 1.0);
    }

    #[test]
    fn matches_closed_form_for_a_shift() {
        let g = person(0.0);
        let d = person(2.0);
        let gt = OksGroundTruth {
            keypoints: &g,
            bbox: [0.0, 0.0, 60.0, 100.0],
            area: 3000.0,
        };
        let oks = Oks::coco17().similarity(&gt, &d);
        let expected: f64 = coco17_sigmas()
            .iter()
            .map(|s| (-(4.0 / (4.0 * s * s) / (3000.0 + f64::EPSILON) / 2.0)).exp())
            .sum::<f64>()
            / 17.0;
        assert!((oks - expected).abs() < 1e-15, "{oks} vs {expected}");
    }

    #[test]
    fn only_labelled_keypoints_count() {
        let mut g = person(0.0);
        let mut d = person(0.0);
        for j in 1..17 {
            g[3 * j + 2] = 0.0;
            d[3 * j] += 50.0; // far off, but unlabelled in the GT
        }
        let gt = OksGroundTruth {
            keypoints: &g,
            bbox: [0.0, 0.0, 60.0, 100.0],
            area: 3000.0,
        };
        assert_eq!(Oks::coco17().similarity(&gt, &d), 1.0);
    }

    #[test]
    fn unlabelled_gt_uses_the_doubled_box() {
        let g = vec![0.0; 51];
        let gt = OksGroundTruth {
            keypoints: &g,
            bbox: [100.0, 100.0, 50.0, 20.0],
            area: 1000.0,
        };
        // The region is x in [50, 200], y in [80, 140]: any point inside scores 1.
        let inside: Vec<f64> = (0..17)
            .flat_map(|j| [60.0 + j as f64 * 8.0, 90.0, 0.1])
            .collect();
        assert_eq!(Oks::coco17().similarity(&gt, &inside), 1.0);
        let mut outside = inside.clone();
        outside[0] = 40.0; // 10 px left of the region
        let s = coco17_sigmas()[0];
        let e = 100.0 / (4.0 * s * s) / (1000.0 + f64::EPSILON) / 2.0;
        let expected = ((-e).exp() + 16.0) / 17.0;
        let got = Oks::coco17().similarity(&gt, &outside);
        assert!((got - expected).abs() < 1e-15, "{got} vs {expected}");
    }

    #[test]
    fn pairwise_sum_follows_numpy_order() {
        // 1e16 + 1 + ... loses the ones when added left to right; numpy's blocks keep some.
        let mut a = vec![1.0; 300];
        a[0] = 1e16;
        let sequential: f64 = a.iter().sum();
        assert_eq!(sequential, 1e16);
        assert_eq!(pairwise_sum(&a), 1.000000000000029e16); // np.sum(a)
        assert_eq!(pairwise_sum(&[]), 0.0);
        assert_eq!(pairwise_sum(&[1.5, 2.0]), 3.5);
    }

    #[test]
    fn pycocotools_sigmas_differ_from_literals_in_the_last_bit() {
        assert_eq!(coco17_sigmas()[0], 0.026000000000000002);
        assert_eq!(coco17_sigmas()[1], 0.025);
    }
}
