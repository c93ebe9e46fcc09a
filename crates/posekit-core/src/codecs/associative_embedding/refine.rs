//! HigherHRNet's `refine` (`HeatmapParser.refine`): a person's missing joints are searched
//! over the whole heatmap, scored by `heatmap - round(|tag - mean tag|)`. The search gives
//! NumPy's `argmax` exactly (first maximum in row-major order) while skipping most of the map:
//! [`RefineIndex`] bounds whole row segments for the common one-dimensional tag.

use ndarray::{ArrayView2, ArrayView3};

use super::grouping::{Person, TagMaps};
use super::numpy::numpy_mean_rows;
use crate::pose::{Keypoint, Pose};

/// HigherHRNet's `refine` for one person: every missing joint is placed at the pixel that
/// maximises `heatmap - round(|tag - mean tag|)` over the whole map (first maximum in
/// row-major order), if the heatmap is positive there. The mean tag is taken over the joints
/// found by matching (read at their pixels), in `f32` as NumPy does.
pub(super) fn refine(
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
pub(super) struct RefineIndex {
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
    pub(super) fn new(det: &[f32], tag: &[f32], w: usize) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
