//! MPII PCKh, computed exactly as the HRNet / MMPose MPII evaluation computes it, so that a
//! number printed by posekit can be put next to a number from a paper.
//!
//! A joint is correct when its distance to the ground truth, divided by the person's head size
//! (0.6 x head-box diagonal), is at most the threshold (0.5 for PCKh@0.5). Joints without an
//! annotation (`jnt_missing`) are left out. Per joint, PCKh = 100 x correct / annotated. The
//! table pairs left and right joints (plain average of the two percentages, as the reference
//! does), and "Mean" averages the per-joint PCKh weighted by how many of each joint are
//! annotated, leaving out pelvis and thorax (they sit on the torso and inflate the score).
//!
//! "Mean@0.1" is the same weighted mean at threshold 0.1, as MMPose computes it. The original
//! HRNet code reads row 11 of its `np.arange(0, 0.51, 0.01)` table, which is threshold 0.11;
//! [`weighted_mean_pckh`] at 0.11 reproduces that figure where needed.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::error::{Error, Result};
use crate::formats::mpii::{MpiiGroundTruth, MpiiPredictions, MPII_NUM_JOINTS};

/// The PCKh threshold of the headline numbers.
pub const PCKH_THRESHOLD: f64 = 0.5;
/// The strict threshold of "Mean@0.1".
pub const PCKH_STRICT_THRESHOLD: f64 = 0.1;

/// Joints left out of the means: pelvis and thorax.
const UNWEIGHTED_JOINTS: [&str; 2] = ["pelv", "thor"];

/// The MPII table: PCKh@0.5 per body part, the weighted mean, and the weighted mean at 0.1.
/// A value is NaN when no joint of that kind is annotated.
#[derive(Debug, Clone, PartialEq)]
pub struct PckhTable {
    pub head: f64,
    pub shoulder: f64,
    pub elbow: f64,
    pub wrist: f64,
    pub hip: f64,
    pub knee: f64,
    pub ankle: f64,
    pub mean: f64,
    pub mean_at_0_1: f64,
    /// PCKh@0.5 of every joint, in the ground truth's `dataset_joints` order.
    pub per_joint: [f64; MPII_NUM_JOINTS],
    /// How many of each joint are annotated.
    pub joint_counts: [usize; MPII_NUM_JOINTS],
}

impl PckhTable {
    /// The names the reference evaluation prints, in its order.
    pub const NAMES: [&'static str; 9] = [
        "Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1",
    ];

    /// The nine table entries, with the names of [`PckhTable::NAMES`].
    pub fn entries(&self) -> [(&'static str, f64); 9] {
        let values = [
            self.head,
            self.shoulder,
            self.elbow,
            self.wrist,
            self.hip,
            self.knee,
            self.ankle,
            self.mean,
            self.mean_at_0_1,
        ];
        let mut out = [("", 0.0); 9];
        for (slot, (name, value)) in out.iter_mut().zip(Self::NAMES.into_iter().zip(values)) {
            *slot = (name, value);
        }
        out
    }
}

/// Serialises as one JSON object with exactly the nine table keys, in table order (what
/// `posekit eval mpii --json` prints). NaN becomes `null`, as JSON has no NaN.
impl Serialize for PckhTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(9))?;
        for (name, value) in self.entries() {
            if value.is_finite() {
                map.serialize_entry(name, &value)?;
            } else {
                map.serialize_entry(name, &Option::<f64>::None)?;
            }
        }
        map.end()
    }
}

/// A markdown table like the one HRNet logs (three decimals).
impl std::fmt::Display for PckhTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.entries();
        writeln!(f, "| {} |", Self::NAMES.join(" | "))?;
        writeln!(f, "|{}", "---|".repeat(entries.len()))?;
        let values: Vec<String> = entries.iter().map(|(_, v)| format!("{v:.3}")).collect();
        write!(f, "| {} |", values.join(" | "))
    }
}

/// Scores a prediction file against a ground-truth `.mat` file.
pub fn evaluate_files(
    gt_path: impl AsRef<std::path::Path>,
    pred_path: impl AsRef<std::path::Path>,
) -> Result<PckhTable> {
    let gt = MpiiGroundTruth::from_mat_file(gt_path)?;
    let preds = MpiiPredictions::read(pred_path)?;
    evaluate(&gt, &preds)
}

/// The MPII table for predictions already in the ground truth's order and 1-based pixels.
pub fn evaluate(gt: &MpiiGroundTruth, preds: &MpiiPredictions) -> Result<PckhTable> {
    check_rows(gt, preds)?;
    let (per_joint, joint_counts) = per_joint_pckh(gt, preds, PCKH_THRESHOLD)?;
    let strict = weighted_mean_pckh(gt, preds, PCKH_STRICT_THRESHOLD)?;
    let index = |name: &str| {
        gt.joint_index(name).ok_or_else(|| {
            Error::invalid(
                &gt.path,
                "dataset_joints",
                format!("no joint named '{name}'"),
            )
        })
    };
    let pair = |left: &str, right: &str| -> Result<f64> {
        Ok(0.5 * (per_joint[index(left)?] + per_joint[index(right)?]))
    };
    Ok(PckhTable {
        head: per_joint[index("head")?],
        shoulder: pair("lsho", "rsho")?,
        elbow: pair("lelb", "relb")?,
        wrist: pair("lwri", "rwri")?,
        hip: pair("lhip", "rhip")?,
        knee: pair("lkne", "rkne")?,
        ankle: pair("lank", "rank")?,
        mean: weighted_mean(gt, &per_joint, &joint_counts),
        mean_at_0_1: strict,
        per_joint,
        joint_counts,
    })
}

fn check_rows(gt: &MpiiGroundTruth, preds: &MpiiPredictions) -> Result<()> {
    if preds.rows.len() != gt.persons.len() {
        return Err(Error::invalid(
            &preds.path,
            "rows",
            format!(
                "{} prediction rows, but the ground truth {} has {} persons (one row per person, \
                 in its order)",
                preds.rows.len(),
                gt.path.display(),
                gt.persons.len()
            ),
        ));
    }
    Ok(())
}

/// PCKh of every joint at `threshold` (percent; NaN for a joint never annotated) and the number
/// of annotated instances of each joint.
pub fn per_joint_pckh(
    gt: &MpiiGroundTruth,
    preds: &MpiiPredictions,
    threshold: f64,
) -> Result<([f64; MPII_NUM_JOINTS], [usize; MPII_NUM_JOINTS])> {
    check_rows(gt, preds)?;
    let mut correct = [0usize; MPII_NUM_JOINTS];
    let mut counts = [0usize; MPII_NUM_JOINTS];
    for (person, pred) in gt.persons.iter().zip(&preds.rows) {
        let head_size = person.head_size();
        for j in 0..MPII_NUM_JOINTS {
            if person.missing[j] {
                continue;
            }
            counts[j] += 1;
            let dx = pred[j][0] - person.joints[j][0];
            let dy = pred[j][1] - person.joints[j][1];
            // Divide then compare, in this order, as the reference does, so that values that
            // land exactly on the threshold decide the same way.
            if (dx * dx + dy * dy).sqrt() / head_size <= threshold {
                correct[j] += 1;
            }
        }
    }
    let mut pckh = [f64::NAN; MPII_NUM_JOINTS];
    for j in 0..MPII_NUM_JOINTS {
        if counts[j] > 0 {
            pckh[j] = 100.0 * correct[j] as f64 / counts[j] as f64;
        }
    }
    Ok((pckh, counts))
}

/// The "Mean" of the table at any threshold: per-joint PCKh weighted by annotated count,
/// pelvis and thorax excluded.
pub fn weighted_mean_pckh(
    gt: &MpiiGroundTruth,
    preds: &MpiiPredictions,
    threshold: f64,
) -> Result<f64> {
    let (pckh, counts) = per_joint_pckh(gt, preds, threshold)?;
    Ok(weighted_mean(gt, &pckh, &counts))
}

fn weighted_mean(
    gt: &MpiiGroundTruth,
    pckh: &[f64; MPII_NUM_JOINTS],
    counts: &[usize; MPII_NUM_JOINTS],
) -> f64 {
    let included: Vec<usize> = (0..MPII_NUM_JOINTS)
        .filter(|&j| !UNWEIGHTED_JOINTS.contains(&gt.joint_names[j].as_str()) && counts[j] > 0)
        .collect();
    let total: usize = included.iter().map(|&j| counts[j]).sum();
    if total == 0 {
        return f64::NAN;
    }
    // Same form as the reference (sum of PCKh x count / total), to match its rounding.
    included
        .iter()
        .map(|&j| pckh[j] * (counts[j] as f64 / total as f64))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::mpii::{MpiiGtPerson, MPII_MAT_JOINT_NAMES};
    use std::path::PathBuf;

    /// A ground truth of `n` persons with all joints at (100, 100) and head size 0.6 x 50 = 30.
    fn gt(n: usize) -> MpiiGroundTruth {
        MpiiGroundTruth {
            path: PathBuf::from("gt.mat"),
            joint_names: MPII_MAT_JOINT_NAMES.iter().map(|s| s.to_string()).collect(),
            persons: vec![
                MpiiGtPerson {
                    joints: [[100.0, 100.0]; 16],
                    missing: [false; 16],
                    head_box: [[0.0, 0.0], [30.0, 40.0]],
                };
                n
            ],
        }
    }

    fn preds(rows: Vec<[[f64; 2]; 16]>) -> MpiiPredictions {
        MpiiPredictions {
            path: PathBuf::from("p.json"),
            rows,
        }
    }

    #[test]
    fn hand_computed_table() {
        let mut gt = gt(2);
        gt.persons[1].missing[9] = true; // second head top unannotated
        let mut rows = vec![[[100.0, 100.0]; 16]; 2];
        // Person 0: head top 15 px off (= 0.5 head sizes, on the threshold: correct), right
        // ankle 16 px off (wrong), left wrist 4 px off (correct at 0.5, wrong at 0.1 = 3 px).
        rows[0][9] = [115.0, 100.0];
        rows[0][0] = [100.0, 116.0];
        rows[0][15] = [104.0, 100.0];
        // Person 1: the missing head top may be anywhere; pelvis far off (left out of the mean).
        rows[1][9] = [1e6, 1e6];
        rows[1][6] = [500.0, 500.0];
        let table = evaluate(&gt, &preds(rows)).unwrap();
        assert_eq!(table.head, 100.0);
        assert_eq!(table.joint_counts[9], 1);
        assert_eq!(table.ankle, 0.5 * (100.0 + 50.0));
        assert_eq!(table.wrist, 100.0);
        assert_eq!(table.per_joint[6], 50.0);
        // 14 joints x 2 persons minus the missing head = 27 weighted instances, 1 wrong.
        assert!((table.mean - 100.0 * 26.0 / 27.0).abs() < 1e-12);
        // At 0.1 (3 px) the head top (15 px) and the left wrist (4 px) also fail.
        assert!((table.mean_at_0_1 - 100.0 * 24.0 / 27.0).abs() < 1e-12);
        let json = serde_json::to_string(&table).unwrap();
        assert!(
            json.starts_with(r#"{"Head":100.0,"Shoulder":100.0"#),
            "{json}"
        );
        assert!(json.contains(r#""Mean@0.1":"#));
        assert!(table.to_string().contains("| Head | Shoulder |"));
    }

    #[test]
    fn unannotated_joint_kind_is_nan_and_left_out_of_the_mean() {
        let mut gt = gt(1);
        gt.persons[0].missing[0] = true;
        let table = evaluate(&gt, &preds(vec![[[100.0, 100.0]; 16]])).unwrap();
        assert!(table.per_joint[0].is_nan() && table.ankle.is_nan());
        assert_eq!(table.mean, 100.0);
        assert!(serde_json::to_string(&table)
            .unwrap()
            .contains(r#""Ankle":null"#));
    }

    #[test]
    fn row_count_mismatch_names_both_files() {
        let err = evaluate(&gt(3), &preds(vec![[[0.0; 2]; 16]; 2]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.json") && err.contains("gt.mat") && err.contains("2 prediction rows"),
            "{err}"
        );
    }
}
