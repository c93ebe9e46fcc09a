//! Person proposals for top-down models from the bundled bottom-up model: each person it finds
//! becomes a box around their joints, grown to look like a detector's box.
//!
//! A detector's person box (what the HRNet test crops, padded by its own 25%) reaches past the
//! joints: above the eyes to the top of the head, below the ankles to the soles, past the
//! wrists to the fingers. The joints' extent is grown by [`PROPOSAL_MARGIN`] of its size on
//! every side to cover that; the figure was chosen by the recall of these boxes against the
//! COCO ground-truth boxes of coco-mini val2017 (BENCHMARKS.md, "Person proposals").

use posekit_core::pose::Pose;

use super::topdown::PersonBox;

/// How much of the joints' extent is added on each side.
pub const PROPOSAL_MARGIN: f64 = 0.15;

/// A proposal needs this many found joints: one or two joints (a lone wrist) give no box a
/// person fits in, and the top-down model would invent a whole skeleton around them.
const MIN_JOINTS: usize = 3;

/// The proposal boxes of `people` in a `width x height` picture, clipped to it. Their score is
/// 1: the bundled model's person scores are sums of joint and limb scores, not probabilities,
/// and the top-down model's rescoring (joint confidence) then ranks the people.
pub fn boxes_of(people: &[Pose], width: usize, height: usize) -> Vec<PersonBox> {
    boxes_with_margin(people, width, height, PROPOSAL_MARGIN)
}

/// [`boxes_of`] with another margin (for measuring which margin to ship).
pub fn boxes_with_margin(
    people: &[Pose],
    width: usize,
    height: usize,
    margin: f64,
) -> Vec<PersonBox> {
    people
        .iter()
        .filter(|p| p.keypoints.iter().filter(|k| k.score > 0.0).count() >= MIN_JOINTS)
        .filter_map(|p| p.bounds(0.0))
        .filter_map(|b| grown(b.map(f64::from), width, height, margin))
        .collect()
}

/// The person box of joints spanning `[x0, y0, x1, y1]`, grown and clipped as the proposals
/// are: the box a video's track is cropped with between proposals (`posekit infer
/// --det-interval`), so a person's crop keeps one size whether it came from the bundled
/// model or from the track. `None` when nothing of it is inside the picture.
pub fn box_around(extent: [f64; 4], width: usize, height: usize) -> Option<PersonBox> {
    grown(extent, width, height, PROPOSAL_MARGIN)
}

fn grown(
    [x0, y0, x1, y1]: [f64; 4],
    width: usize,
    height: usize,
    margin: f64,
) -> Option<PersonBox> {
    if ![x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
        return None;
    }
    let (w, h) = (width as f64, height as f64);
    let (mx, my) = ((x1 - x0) * margin, (y1 - y0) * margin);
    let left = (x0 - mx).max(0.0);
    let top = (y0 - my).max(0.0);
    let right = (x1 + mx).min(w);
    let bottom = (y1 + my).min(h);
    (right > left && bottom > top).then(|| PersonBox::new([left, top, right - left, bottom - top]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use posekit_core::Keypoint;

    #[test]
    fn joints_extent_grows_by_the_margin_and_stays_in_the_picture() {
        let person = Pose::new(
            vec![
                Keypoint::new(100.0, 50.0, 0.9),
                Keypoint::new(200.0, 250.0, 0.8),
                Keypoint::new(150.0, 150.0, 0.7),
                Keypoint::new(0.0, 0.0, 0.0),
            ],
            3.0,
        );
        let boxes = boxes_of(&[person], 640, 480);
        assert_eq!(boxes.len(), 1);
        let [x, y, w, h] = boxes[0].bbox;
        assert!(
            (x - 85.0).abs() < 1e-9 && (y - 20.0).abs() < 1e-9,
            "{:?}",
            boxes[0]
        );
        assert!(
            (w - 130.0).abs() < 1e-9 && (h - 260.0).abs() < 1e-9,
            "{:?}",
            boxes[0]
        );
        assert_eq!(boxes[0].score, 1.0);
        // Clipped at the border; too few joints give no box.
        let edge = Pose::new(
            vec![
                Keypoint::new(5.0, 5.0, 0.9),
                Keypoint::new(600.0, 470.0, 0.9),
                Keypoint::new(300.0, 200.0, 0.9),
            ],
            1.0,
        );
        let lone = Pose::new(
            vec![Keypoint::new(5.0, 5.0, 0.9), Keypoint::new(9.0, 9.0, 0.9)],
            1.0,
        );
        let boxes = boxes_of(&[edge, lone], 640, 480);
        assert_eq!(boxes.len(), 1);
        assert_eq!(boxes[0].bbox, [0.0, 0.0, 640.0, 480.0]);
    }
}
