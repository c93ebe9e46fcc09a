//! Joint candidates: local maxima of each joint's (possibly smoothed) heatmap.
//!
//! A pixel is a peak when no pixel in the `window x window` neighbourhood around it is larger,
//! which is what comparing a map with its max-pooled self (tf-pose) computes: every pixel of a
//! plateau is kept. The peak's score comes from a separate map (tf-pose detects on the smoothed
//! map but reports the unsmoothed value), possibly at a lower resolution.

use ndarray::ArrayView3;

use crate::codecs::peaks::Peak;

/// All candidates of an image, in the pixel frame of the map peaks were found on (a peak's
/// score is read from the score map). Ids are indices into `peaks`, assigned joint by joint
/// and, within a joint, row-major (y, then x), as tf-pose numbers them; grouping refers to
/// peaks by id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeakSet {
    pub peaks: Vec<Peak>,
    /// `peaks[part_start[k]..part_start[k + 1]]` are the peaks of joint `k` (length joints + 1).
    pub part_start: Vec<usize>,
}

impl PeakSet {
    /// The ids of joint `part`'s peaks.
    pub fn ids_of(&self, part: usize) -> std::ops::Range<usize> {
        self.part_start[part]..self.part_start[part + 1]
    }

    /// The joint (heatmap channel) peak `id` belongs to, `None` for an id past the last peak.
    pub fn part_of(&self, id: usize) -> Option<usize> {
        if id >= self.peaks.len() {
            return None;
        }
        // The last start at or before `id`; joints without peaks share a start with the next
        // joint, so take the last of equal starts.
        Some(self.part_start.partition_point(|&start| start <= id) - 1)
    }
}

/// Finds the peaks of the first `num_parts` channels of `detect` whose detection value is above
/// `threshold`; each peak's score is `score[part, y / ratio, x / ratio]`.
///
/// The caller guarantees `num_parts` channels in both maps, `detect` `ratio` times the size of
/// `score`, and an odd `window`.
pub(crate) fn find_peaks(
    detect: ArrayView3<f32>,
    score: ArrayView3<f32>,
    ratio: usize,
    num_parts: usize,
    window: usize,
    threshold: f32,
) -> PeakSet {
    let (_, h, w) = detect.dim();
    let r = window / 2;
    let mut set = PeakSet {
        peaks: Vec::new(),
        part_start: Vec::with_capacity(num_parts + 1),
    };
    for part in 0..num_parts {
        set.part_start.push(set.peaks.len());
        let plane = detect.index_axis(ndarray::Axis(0), part);
        let plane = plane.as_standard_layout();
        // Standard layout was just ensured, so the slice exists.
        let Some(m) = plane.as_slice() else { continue };
        for y in 0..h {
            let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(h));
            for x in 0..w {
                let v = m[y * w + x];
                let above = v > threshold; // false for NaN
                if !above {
                    continue;
                }
                let (x0, x1) = (x.saturating_sub(r), (x + r + 1).min(w));
                let is_max = (y0..y1).all(|yy| {
                    m[yy * w + x0..yy * w + x1]
                        .iter()
                        .all(|&n| n <= v || n.is_nan())
                });
                if is_max {
                    set.peaks.push(Peak {
                        x,
                        y,
                        score: score[[part, y / ratio, x / ratio]],
                    });
                }
            }
        }
    }
    set.part_start.push(set.peaks.len());
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn keeps_plateaus_and_numbers_row_major() {
        let mut m = Array3::<f32>::zeros((2, 5, 5));
        m[[0, 1, 1]] = 0.5;
        m[[0, 1, 2]] = 0.5; // plateau: both kept
        m[[0, 3, 3]] = 0.9;
        m[[0, 4, 4]] = 0.2; // next to a larger value: not a peak
        m[[1, 0, 4]] = 0.04; // below threshold
        m[[1, 4, 0]] = 0.3; // corner peak (window clipped at the border)
        let s = find_peaks(m.view(), m.view(), 1, 2, 3, 0.05);
        let got: Vec<_> = (0..s.peaks.len())
            .map(|id| (s.part_of(id).unwrap(), s.peaks[id].y, s.peaks[id].x))
            .collect();
        assert_eq!(got, vec![(0, 1, 1), (0, 1, 2), (0, 3, 3), (1, 4, 0)]);
        assert_eq!(s.part_start, vec![0, 3, 4]);
        assert_eq!(s.ids_of(1), 3..4);
        assert_eq!(s.part_of(4), None);
    }

    #[test]
    fn score_comes_from_the_low_resolution_map() {
        let mut detect = Array3::<f32>::zeros((1, 4, 4));
        detect[[0, 3, 2]] = 1.0;
        let score = Array3::from_shape_vec((1, 2, 2), vec![0.1, 0.2, 0.3, 0.4]).unwrap();
        let s = find_peaks(detect.view(), score.view(), 2, 1, 3, 0.05);
        assert_eq!(s.peaks[0].score, 0.4);
    }
}
