//! What every decoder produces and every consumer (NMS, evaluation, drawing, JSON) reads.

use serde::{Deserialize, Serialize};

/// One keypoint in some pixel frame (heatmap, crop or image: the producer says which).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Keypoint {
    pub x: f32,
    pub y: f32,
    /// Confidence, usually the heatmap value at the peak; 0 for a joint that was not found.
    pub score: f32,
}

impl Keypoint {
    pub const fn new(x: f32, y: f32, score: f32) -> Self {
        Keypoint { x, y, score }
    }
}

/// One person: a keypoint per joint of the layout, in layout order, and an instance score.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Pose {
    pub keypoints: Vec<Keypoint>,
    pub score: f32,
}

impl Pose {
    pub fn new(keypoints: Vec<Keypoint>, score: f32) -> Self {
        Pose { keypoints, score }
    }

    /// Tight box (x0, y0, x1, y1) around the keypoints whose score is above `min_score`.
    pub fn bounds(&self, min_score: f32) -> Option<[f32; 4]> {
        let mut it = self.keypoints.iter().filter(|k| k.score > min_score);
        let first = it.next()?;
        let mut b = [first.x, first.y, first.x, first.y];
        for k in it {
            b[0] = b[0].min(k.x);
            b[1] = b[1].min(k.y);
            b[2] = b[2].max(k.x);
            b[3] = b[3].max(k.y);
        }
        Some(b)
    }
}
