//! Limb candidates: every pair of peaks of a limb's two joints is scored by sampling the limb's
//! PAF along the segment between them, and a greedy pass keeps the best-scoring pairs so that
//! each peak takes part in at most one connection per limb.
//!
//! The arithmetic follows tf-pose's `pafprocess.cpp` step for step (float32 sums, the sample
//! rounding `(int)(v + 0.5)`, the distance penalty computed in double), because the order of
//! candidates decides the greedy result and ties of nearly equal scores must break the same way.

use super::peaks::PeakSet;

/// A kept connection of one limb between two peaks (ids into the [`PeakSet`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Connection {
    pub peak_a: usize,
    pub peak_b: usize,
    /// The limb score (`criterion2`): mean PAF alignment plus the length penalty.
    pub score: f32,
}

/// How a limb candidate is scored; see [`super::PafDecodeParams`] for the meaning of each field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScoringRule {
    pub samples: usize,
    pub sample_end: bool,
    pub sample_threshold: f32,
    pub min_positive_samples: usize,
    pub distance_prior: Option<f32>,
    /// Height of the peak map (the distance penalty is relative to it).
    pub map_height: usize,
}

/// One limb's PAF components as contiguous low-resolution planes, read at `(y / ratio, x / ratio)`.
pub(crate) struct PafPlanes<'a> {
    pub x: &'a [f32],
    pub y: &'a [f32],
    pub width: usize,
    pub ratio: usize,
}

/// Scores every (A peak, B peak) pair and returns the greedy, non-overlapping connections.
pub(crate) fn connect_limb(
    peaks: &PeakSet,
    part_a: usize,
    part_b: usize,
    paf: &PafPlanes,
    rule: &ScoringRule,
) -> Vec<Connection> {
    let (ids_a, ids_b) = (peaks.ids_of(part_a), peaks.ids_of(part_b));
    if ids_a.is_empty() || ids_b.is_empty() {
        return Vec::new();
    }
    let n = rule.samples;
    let denom = if rule.sample_end { (n - 1).max(1) } else { n } as f32;
    let mut candidates: Vec<Connection> = Vec::new();
    for ia in ids_a.clone() {
        let a = peaks.peaks[ia];
        for ib in ids_b.clone() {
            let b = peaks.peaks[ib];
            let dx = b.x as f32 - a.x as f32;
            let dy = b.y as f32 - a.y as f32;
            let norm = ((dx * dx + dy * dy) as f64).sqrt() as f32;
            if norm < 1e-12 {
                continue;
            }
            let (ux, uy) = (dx / norm, dy / norm);
            let (step_x, step_y) = (dx / denom, dy / denom);
            let mut sum = 0f32;
            let mut positive = 0usize;
            let mut hopeless = false;
            for i in 0..n {
                // Most pairs join joints of different people; stop sampling once even all
                // remaining samples agreeing could not reach the count (same result, less work).
                if positive + (n - i) <= rule.min_positive_samples {
                    hopeless = true;
                    break;
                }
                let sx = (a.x as f32 + i as f32 * step_x + 0.5) as usize;
                let sy = (a.y as f32 + i as f32 * step_y + 0.5) as usize;
                let at = (sy / paf.ratio) * paf.width + sx / paf.ratio;
                let dot = ux * paf.x[at] + uy * paf.y[at];
                sum += dot;
                if dot > rule.sample_threshold {
                    positive += 1;
                }
            }
            if hopeless {
                continue;
            }
            let penalty = match rule.distance_prior {
                Some(p) => (p as f64 * rule.map_height as f64 / norm as f64 - 1.0).min(0.0),
                None => 0.0,
            };
            let score = ((sum / n as f32) as f64 + penalty) as f32;
            if positive > rule.min_positive_samples && score > 0.0 {
                candidates.push(Connection {
                    peak_a: ia,
                    peak_b: ib,
                    score,
                });
            }
        }
    }
    // Best first; a stable sort keeps equal scores in generation order (A-major).
    candidates.sort_by(|p, q| q.score.total_cmp(&p.score));
    let max_connections = ids_a.len().min(ids_b.len());
    let mut used_a = vec![false; ids_a.len()];
    let mut used_b = vec![false; ids_b.len()];
    let mut kept = Vec::with_capacity(max_connections);
    for c in candidates {
        let (la, lb) = (c.peak_a - ids_a.start, c.peak_b - ids_b.start);
        if used_a[la] || used_b[lb] {
            continue;
        }
        used_a[la] = true;
        used_b[lb] = true;
        kept.push(c);
        if kept.len() == max_connections {
            break;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codecs::peaks::Peak;

    fn peak(x: usize, y: usize) -> Peak {
        Peak { x, y, score: 0.5 }
    }

    /// Two people side by side, each with a horizontal limb: the field points right along both
    /// rows, so the straight pairs win and the crossed pairs (diagonal, poorly aligned) lose.
    #[test]
    fn greedy_picks_aligned_pairs() {
        let (w, h) = (20, 10);
        let mut fx = vec![0f32; w * h];
        let fy = vec![0f32; w * h];
        for y in [2, 7] {
            for x in 2..=12 {
                fx[y * w + x] = 1.0;
            }
        }
        let peaks = PeakSet {
            peaks: vec![peak(2, 2), peak(2, 7), peak(12, 2), peak(12, 7)],
            part_start: vec![0, 2, 4],
        };
        let rule = ScoringRule {
            samples: 10,
            sample_end: false,
            sample_threshold: 0.05,
            min_positive_samples: 6,
            distance_prior: Some(0.5),
            map_height: h,
        };
        let paf = PafPlanes {
            x: &fx,
            y: &fy,
            width: w,
            ratio: 1,
        };
        let mut c = connect_limb(&peaks, 0, 1, &paf, &rule);
        c.sort_by_key(|c| c.peak_a);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].peak_a, c[0].peak_b), (0, 2));
        assert_eq!((c[1].peak_a, c[1].peak_b), (1, 3));
        // Length 10 in a map 10 high: penalty 0.5*10/10 - 1 = -0.5 on a mean alignment of 1.
        assert!((c[0].score - 0.5).abs() < 1e-6);
    }
}
