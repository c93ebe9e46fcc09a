//! SPM, Single-stage multi-person Pose Machines (Nie et al., ICCV 2019): every person is one
//! root point plus a displacement to each joint, so decoding needs no grouping at all.
//!
//! The network predicts a root heatmap `[H, W]` and displacement maps `[2K, H, W]` (channel
//! `2j` is dx and `2j + 1` is dy of joint `j`, divided by a normaliser `Z`). Decoding finds the
//! root peaks and reads each joint's displacement at its *anchor*:
//!
//! * flat SPR: every joint is anchored at the root;
//! * hierarchical SPR (the paper's variant for long-range joints): the root anchors the torso
//!   (neck, shoulders, hips), these anchor the head, elbows and knees, which anchor the wrists
//!   and ankles. Each displacement is then short, which is what the paper found easier to
//!   learn; decoding follows the chain, reading a child's displacement at its parent's decoded
//!   position (bilinear, since parents land between pixels).
//!
//! Choices where the paper leaves room (documented so training and decoding agree):
//! * the root is the centroid of the person's labelled joints (COCO has no neck or torso
//!   joint, and the centroid exists whenever any joint is labelled); a subset of joints can be
//!   chosen instead (e.g. the torso), falling back to all labelled joints;
//! * `Z = sqrt(W² + H²)` of the heatmap by default (the paper normalises by the image
//!   diagonal), so that targets lie in [-1, 1];
//! * displacement targets fill the pixels within `radius` of the anchor (the paper's
//!   neighbourhood `|p - anchor| <= tau`); where several people's disks overlap, the target is
//!   the mean of their displacements (the paper's `D^j = (1 / M^j) sum_i D^j_i`, `M^j` the
//!   number of people whose disk holds the pixel), or, with [`SpmOverlap::Nearest`], the
//!   nearer anchor's alone (the earlier person on a tie): a mean of two people's offsets
//!   points at neither, which the paper accepts and posekit offers to avoid;
//! * a joint gets no target (weight 0) when it is unlabelled or its parent is;
//! * a decoded joint's score is its person's root peak value, the only confidence SPM has.

use ndarray::{Array2, Array3, ArrayView2, ArrayView3};
use serde::{Deserialize, Serialize};

use crate::codecs::peaks::local_maxima_above;
use crate::codecs::Codec;
use crate::error::{Error, Result};
use crate::layout::KeypointLayout;
use crate::pose::{Keypoint, Pose};

/// The SPM codec. One configuration serves both halves because they must agree on the
/// hierarchy, `Z` and the map size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpmCodec {
    /// Heatmap size `[W, H]`.
    pub heatmap_size: [usize; 2],
    /// Anchor of each joint: `None` is the root, `Some(p)` joint `p`. All `None` is flat SPR.
    pub parents: Vec<Option<usize>>,
    /// Joints whose labelled centroid is the root; empty means all joints.
    #[serde(default)]
    pub root_joints: Vec<usize>,
    /// Standard deviation of the root Gaussian, heatmap pixels.
    #[serde(default = "default_sigma")]
    pub sigma: f64,
    /// Radius of the disk around an anchor that carries displacement targets, heatmap pixels.
    #[serde(default = "default_radius")]
    pub radius: f64,
    /// Displacement normaliser `Z`; `None` means the heatmap diagonal.
    #[serde(default)]
    pub normalizer: Option<f64>,
    /// Root peaks need a value above this.
    #[serde(default = "default_threshold")]
    pub root_threshold: f32,
    /// Odd max-pool NMS kernel for root peaks.
    #[serde(default = "default_nms_kernel")]
    pub nms_kernel: usize,
    /// At most this many people (highest root peaks first).
    #[serde(default = "default_max_people")]
    pub max_people: usize,
    /// The target of a pixel inside several people's disks (encoding only).
    #[serde(default)]
    pub overlap: SpmOverlap,
}

/// How [`SpmCodec::encode`] fills a pixel that lies inside the disks of several people (for
/// one joint channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpmOverlap {
    /// The paper's rule (Nie et al., section 3.2): the mean of those people's displacements.
    #[default]
    Average,
    /// The displacement of the nearest anchor (the earlier person on a tie), so that every
    /// target points at a real joint.
    Nearest,
}

fn default_sigma() -> f64 {
    2.0
}
fn default_radius() -> f64 {
    3.0
}
fn default_threshold() -> f32 {
    0.1
}
fn default_nms_kernel() -> usize {
    5
}
fn default_max_people() -> usize {
    30
}

/// Training targets for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct SpmTargets {
    /// `[H, W]` root Gaussians (peak 1), the maximum where people overlap.
    pub root_heatmap: Array2<f32>,
    /// `[2K, H, W]` normalised displacements `(joint - pixel) / Z`, channel `2j` dx, `2j + 1`
    /// dy; 0 where there is no target.
    pub displacements: Array3<f32>,
    /// `[K, H, W]` loss weights of the displacements: 1 where a target is defined, else 0.
    pub weights: Array3<f32>,
}

/// Hierarchical SPR parents derived from joint names (see the module doc): torso joints hang
/// from the root, then limbs joint by joint on the same side; face joints hang from the neck
/// (or nose) when the layout has one. Joints with unknown names hang from the root.
pub fn hierarchical_parents(layout: &KeypointLayout) -> Vec<Option<usize>> {
    let names: Vec<String> = layout
        .keypoints
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let side = |n: &str| {
        if n.contains("left") || n.starts_with("l_") {
            "left"
        } else if n.contains("right") || n.starts_with("r_") {
            "right"
        } else {
            ""
        }
    };
    let find = |part: &str, s: &str| names.iter().position(|n| n.contains(part) && side(n) == s);
    let neck = names
        .iter()
        .position(|n| n.contains("upper_neck"))
        .or_else(|| names.iter().position(|n| n.contains("neck")))
        .or_else(|| names.iter().position(|n| n.contains("thorax")));
    let nose = names.iter().position(|n| n.contains("nose"));
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let s = side(n);
            let parent = if n.contains("elbow") {
                find("shoulder", s)
            } else if n.contains("wrist") {
                find("elbow", s)
            } else if n.contains("knee") {
                find("hip", s)
            } else if n.contains("ankle") {
                find("knee", s)
            } else if n.contains("head") || n.contains("nose") {
                neck
            } else if n.contains("eye") {
                nose.or(neck)
            } else if n.contains("ear") {
                find("eye", s).or(nose).or(neck)
            } else {
                None
            };
            parent.filter(|&p| p != i)
        })
        .collect()
}

impl SpmCodec {
    fn with_parents(heatmap_size: [usize; 2], parents: Vec<Option<usize>>) -> Self {
        SpmCodec {
            heatmap_size,
            parents,
            root_joints: Vec::new(),
            sigma: default_sigma(),
            radius: default_radius(),
            normalizer: None,
            root_threshold: default_threshold(),
            nms_kernel: default_nms_kernel(),
            max_people: default_max_people(),
            overlap: SpmOverlap::default(),
        }
    }

    /// Flat SPR: every joint's displacement from the root.
    pub fn flat(heatmap_size: [usize; 2], num_joints: usize) -> Self {
        Self::with_parents(heatmap_size, vec![None; num_joints])
    }

    /// Hierarchical SPR with the parents derived from the layout's joint names.
    pub fn hierarchical(heatmap_size: [usize; 2], layout: &KeypointLayout) -> Self {
        Self::with_parents(heatmap_size, hierarchical_parents(layout))
    }

    fn num_joints(&self) -> usize {
        self.parents.len()
    }

    fn z(&self) -> f64 {
        let [w, h] = self.heatmap_size;
        self.normalizer
            .unwrap_or_else(|| ((w * w + h * h) as f64).sqrt())
    }

    /// Joints ordered so that every parent comes before its children.
    fn topological_order(&self) -> Result<Vec<usize>> {
        let k = self.num_joints();
        let mut order = Vec::with_capacity(k);
        let mut state = vec![0u8; k]; // 0 new, 1 on the current path, 2 done
        for start in 0..k {
            let mut path = Vec::new();
            let mut j = start;
            loop {
                match state[j] {
                    2 => break,
                    1 => {
                        return Err(Error::Shape(format!(
                            "SPM: the joint hierarchy has a cycle through joint {j}"
                        )))
                    }
                    _ => {}
                }
                state[j] = 1;
                path.push(j);
                match self.parents[j] {
                    Some(p) => j = p,
                    None => break,
                }
            }
            for &j in path.iter().rev() {
                state[j] = 2;
                order.push(j);
            }
        }
        Ok(order)
    }

    fn validate(&self) -> Result<Vec<usize>> {
        let [w, h] = self.heatmap_size;
        if w == 0 || h == 0 {
            return Err(Error::Shape(format!(
                "SPM: empty heatmap size {:?}",
                self.heatmap_size
            )));
        }
        let k = self.num_joints();
        if let Some((j, p)) = self
            .parents
            .iter()
            .enumerate()
            .find_map(|(j, p)| p.filter(|&p| p >= k || p == j).map(|p| (j, p)))
        {
            return Err(Error::Shape(format!(
                "SPM: joint {j} has parent {p}, not another joint of the {k}"
            )));
        }
        if let Some(&j) = self.root_joints.iter().find(|&&j| j >= k) {
            return Err(Error::Shape(format!(
                "SPM: root joint {j} is not one of the {k} joints"
            )));
        }
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if !positive(self.sigma) || !positive(self.radius) || !positive(self.z()) {
            return Err(Error::Shape(format!(
                "SPM: sigma ({}), radius ({}) and normalizer ({}) must be positive",
                self.sigma,
                self.radius,
                self.z()
            )));
        }
        self.topological_order()
    }

    /// Targets from `people`, `[N, K, 3]`: x, y in heatmap pixels and a visibility (a joint is
    /// labelled when visibility > 0). People without a labelled joint are left out.
    pub fn encode(&self, people: ArrayView3<f32>) -> Result<SpmTargets> {
        self.validate()?;
        let [w, h] = self.heatmap_size;
        let k = self.num_joints();
        let (n, kk, c) = people.dim();
        if kk != k || c != 3 {
            return Err(Error::Shape(format!(
                "SPM encode: people must be [N, {k}, 3] (x, y, visibility), got {:?}",
                people.shape()
            )));
        }
        let z = self.z();
        let mut root_heatmap = Array2::<f32>::zeros((h, w));
        let mut disks = DisplacementDisks::new(self.overlap, k, h, w);
        for p in 0..n {
            let mut joints: Vec<Option<(f64, f64)>> = Vec::with_capacity(k);
            for j in 0..k {
                let (x, y, v) = (people[[p, j, 0]], people[[p, j, 1]], people[[p, j, 2]]);
                if v.is_nan() || v <= 0.0 {
                    joints.push(None);
                    continue;
                }
                if !x.is_finite() || !y.is_finite() {
                    return Err(Error::Shape(format!(
                        "SPM encode: person {p} joint {j} is labelled but at ({x}, {y})"
                    )));
                }
                joints.push(Some((x as f64, y as f64)));
            }
            let Some(root) = self.root_of(&joints) else {
                continue;
            };
            draw_gaussian_max(&mut root_heatmap, root, self.sigma);
            for j in 0..k {
                let Some(target) = joints[j] else { continue };
                let anchor = match self.parents[j] {
                    None => root,
                    Some(parent) => match joints[parent] {
                        Some(a) => a,
                        None => continue,
                    },
                };
                disks.fill(j, anchor, target, self.radius, z);
            }
        }
        let (displacements, weights) = disks.finish();
        Ok(SpmTargets {
            root_heatmap,
            displacements,
            weights,
        })
    }

    fn root_of(&self, joints: &[Option<(f64, f64)>]) -> Option<(f64, f64)> {
        let centroid = |it: &mut dyn Iterator<Item = (f64, f64)>| {
            let (mut sx, mut sy, mut n) = (0.0, 0.0, 0usize);
            for (x, y) in it {
                sx += x;
                sy += y;
                n += 1;
            }
            (n > 0).then(|| (sx / n as f64, sy / n as f64))
        };
        if !self.root_joints.is_empty() {
            let chosen = centroid(&mut self.root_joints.iter().filter_map(|&j| joints[j]));
            if chosen.is_some() {
                return chosen;
            }
        }
        centroid(&mut joints.iter().filter_map(|j| *j))
    }

    /// Poses from a root heatmap `[H, W]` and displacements `[2K, H, W]`, in heatmap pixels,
    /// highest root first. Inputs must be finite.
    pub fn decode(
        &self,
        root_heatmap: ArrayView2<f32>,
        displacements: ArrayView3<f32>,
    ) -> Result<Vec<Pose>> {
        let order = self.validate()?;
        let [w, h] = self.heatmap_size;
        let k = self.num_joints();
        if root_heatmap.dim() != (h, w) || displacements.dim() != (2 * k, h, w) {
            return Err(Error::Shape(format!(
                "SPM decode: expected root heatmap [{h}, {w}] and displacements [{}, {h}, {w}], \
                 got {:?} and {:?}",
                2 * k,
                root_heatmap.shape(),
                displacements.shape()
            )));
        }
        if root_heatmap
            .iter()
            .chain(displacements.iter())
            .any(|v| !v.is_finite())
        {
            return Err(Error::Shape(
                "SPM decode: inputs hold a non-finite value".into(),
            ));
        }
        let z = self.z();
        let roots = local_maxima_above(
            root_heatmap,
            self.nms_kernel,
            self.root_threshold,
            self.max_people,
        )?;
        let poses = roots
            .iter()
            .map(|root| {
                let anchor_of_root = (root.x as f64, root.y as f64);
                let mut pos = vec![(0.0f64, 0.0f64); k];
                for &j in &order {
                    let anchor = match self.parents[j] {
                        None => anchor_of_root,
                        Some(p) => pos[p],
                    };
                    let dx = sample(&displacements, 2 * j, anchor);
                    let dy = sample(&displacements, 2 * j + 1, anchor);
                    pos[j] = (anchor.0 + dx * z, anchor.1 + dy * z);
                }
                let keypoints = pos
                    .iter()
                    .map(|&(x, y)| Keypoint::new(x as f32, y as f32, root.score))
                    .collect();
                Pose::new(keypoints, root.score)
            })
            .collect();
        Ok(poses)
    }
}

/// The displacement targets of one image as people are added: each person's disk of pixels
/// around a joint's anchor, merged by the codec's [`SpmOverlap`] rule.
struct DisplacementDisks {
    overlap: SpmOverlap,
    /// `[2K, H, W]` the targets (`Nearest`) or their running sums (`Average`), in f64 so that
    /// the f32 target is rounded once, after the mean.
    sums: Array3<f64>,
    /// `[K, H, W]` how many disks hold each pixel (`Average`), or the squared distance to the
    /// nearest anchor so far (`Nearest`, infinity where none).
    claims: Array3<f64>,
}

impl DisplacementDisks {
    fn new(overlap: SpmOverlap, k: usize, h: usize, w: usize) -> Self {
        let empty = match overlap {
            SpmOverlap::Average => 0.0,
            SpmOverlap::Nearest => f64::INFINITY,
        };
        Self {
            overlap,
            sums: Array3::zeros((2 * k, h, w)),
            claims: Array3::from_elem((k, h, w), empty),
        }
    }

    /// Joint `joint`'s displacement `(target - pixel) / z` on the pixels within `radius` of
    /// `anchor`.
    fn fill(&mut self, joint: usize, anchor: (f64, f64), target: (f64, f64), radius: f64, z: f64) {
        let (_, h, w) = self.claims.dim();
        let x0 = (anchor.0 - radius).ceil().max(0.0);
        let x1 = (anchor.0 + radius).floor().min(w as f64 - 1.0);
        let y0 = (anchor.1 - radius).ceil().max(0.0);
        let y1 = (anchor.1 + radius).floor().min(h as f64 - 1.0);
        if x0 > x1 || y0 > y1 {
            return;
        }
        for y in y0 as usize..=y1 as usize {
            for x in x0 as usize..=x1 as usize {
                let d2 = (x as f64 - anchor.0).powi(2) + (y as f64 - anchor.1).powi(2);
                if d2 > radius * radius {
                    continue;
                }
                let dx = (target.0 - x as f64) / z;
                let dy = (target.1 - y as f64) / z;
                let claim = &mut self.claims[[joint, y, x]];
                match self.overlap {
                    SpmOverlap::Average => {
                        *claim += 1.0;
                        self.sums[[2 * joint, y, x]] += dx;
                        self.sums[[2 * joint + 1, y, x]] += dy;
                    }
                    SpmOverlap::Nearest => {
                        if d2 >= *claim {
                            continue;
                        }
                        *claim = d2;
                        self.sums[[2 * joint, y, x]] = dx;
                        self.sums[[2 * joint + 1, y, x]] = dy;
                    }
                }
            }
        }
    }

    /// The displacements `[2K, H, W]` and their weights `[K, H, W]` (1 where a disk holds the
    /// pixel).
    fn finish(self) -> (Array3<f32>, Array3<f32>) {
        let (k, h, w) = self.claims.dim();
        let mut displacements = Array3::<f32>::zeros((2 * k, h, w));
        let mut weights = Array3::<f32>::zeros((k, h, w));
        for ((j, y, x), &claim) in self.claims.indexed_iter() {
            let (held, count) = match self.overlap {
                SpmOverlap::Average => (claim > 0.0, claim),
                SpmOverlap::Nearest => (claim.is_finite(), 1.0),
            };
            if !held {
                continue;
            }
            weights[[j, y, x]] = 1.0;
            displacements[[2 * j, y, x]] = (self.sums[[2 * j, y, x]] / count) as f32;
            displacements[[2 * j + 1, y, x]] = (self.sums[[2 * j + 1, y, x]] / count) as f32;
        }
        (displacements, weights)
    }
}

impl Codec for SpmCodec {
    /// `[N, K, 3]` people: x, y in heatmap pixels and a visibility.
    type Annotation<'a> = ArrayView3<'a, f32>;
    type Targets = SpmTargets;
    /// `(root heatmap [H, W], displacements [2K, H, W])`.
    type Outputs<'a> = (ArrayView2<'a, f32>, ArrayView3<'a, f32>);
    type Decoded = Vec<Pose>;

    fn encode(&self, people: Self::Annotation<'_>) -> Result<SpmTargets> {
        SpmCodec::encode(self, people)
    }

    fn decode(&self, (root_heatmap, displacements): Self::Outputs<'_>) -> Result<Vec<Pose>> {
        SpmCodec::decode(self, root_heatmap, displacements)
    }
}

/// Bilinear sample of one channel at a sub-pixel point, clamped to the map: targets are
/// linear in the pixel position inside a disk, so bilinear reading is exact there.
fn sample(maps: &ArrayView3<f32>, channel: usize, (x, y): (f64, f64)) -> f64 {
    let (_, h, w) = maps.dim();
    let x = x.clamp(0.0, (w - 1) as f64);
    let y = y.clamp(0.0, (h - 1) as f64);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let at = |yy: usize, xx: usize| maps[[channel, yy, xx]] as f64;
    (at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx) * (1.0 - fy)
        + (at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx) * fy
}

/// A Gaussian of peak 1 centred at a sub-pixel point, cut at 3 sigma, merged by maximum.
fn draw_gaussian_max(map: &mut Array2<f32>, (cx, cy): (f64, f64), sigma: f64) {
    let (h, w) = map.dim();
    let reach = 3.0 * sigma + 1.0;
    let x0 = (cx - reach).floor().max(0.0);
    let x1 = (cx + reach).ceil().min(w as f64 - 1.0);
    let y0 = (cy - reach).floor().max(0.0);
    let y1 = (cy + reach).ceil().min(h as f64 - 1.0);
    if x0 > x1 || y0 > y1 {
        return;
    }
    for y in y0 as usize..=y1 as usize {
        for x in x0 as usize..=x1 as usize {
            let d2 = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2);
            let v = (-d2 / (2.0 * sigma * sigma)).exp() as f32;
            let cell = &mut map[[y, x]];
            *cell = cell.max(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coco_layout() -> KeypointLayout {
        KeypointLayout::builtin("coco17").expect("built-in layout")
    }

    /// A standing person of height ~`scale` pixels centred at (cx, cy), COCO order.
    fn person(cx: f32, cy: f32, scale: f32) -> Vec<(f32, f32)> {
        let t = [
            (0.0, -0.42),
            (-0.03, -0.45),
            (0.03, -0.45),
            (-0.07, -0.43),
            (0.07, -0.43),
            (-0.13, -0.3),
            (0.13, -0.3),
            (-0.18, -0.12),
            (0.18, -0.12),
            (-0.2, 0.03),
            (0.2, 0.03),
            (-0.08, 0.05),
            (0.08, 0.05),
            (-0.09, 0.28),
            (0.09, 0.28),
            (-0.1, 0.5),
            (0.1, 0.5),
        ];
        t.iter()
            .map(|&(x, y)| (cx + x * scale, cy + y * scale))
            .collect()
    }

    fn people_array(people: &[Vec<(f32, f32)>], missing: &[(usize, usize)]) -> Array3<f32> {
        let mut a = Array3::<f32>::zeros((people.len(), 17, 3));
        for (p, joints) in people.iter().enumerate() {
            for (j, &(x, y)) in joints.iter().enumerate() {
                a[[p, j, 0]] = x;
                a[[p, j, 1]] = y;
                a[[p, j, 2]] = if missing.contains(&(p, j)) { 0.0 } else { 2.0 };
            }
        }
        a
    }

    fn round_trip(cfg: &SpmCodec, people: &[Vec<(f32, f32)>]) -> Vec<Pose> {
        let a = people_array(people, &[]);
        let t = cfg.encode(a.view()).unwrap();
        cfg.decode(t.root_heatmap.view(), t.displacements.view())
            .unwrap()
    }

    fn assert_recovered(poses: &[Pose], people: &[Vec<(f32, f32)>], tol: f32) {
        assert_eq!(poses.len(), people.len());
        for truth in people {
            // Match by nearest nose, independent of the peak order.
            let pose = poses
                .iter()
                .min_by(|a, b| {
                    let d = |p: &Pose| {
                        (p.keypoints[0].x - truth[0].0).abs()
                            + (p.keypoints[0].y - truth[0].1).abs()
                    };
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            for (j, (kp, &(x, y))) in pose.keypoints.iter().zip(truth).enumerate() {
                assert!(
                    (kp.x - x).abs() < tol && (kp.y - y).abs() < tol,
                    "joint {j}: got ({}, {}), want ({x}, {y})",
                    kp.x,
                    kp.y
                );
            }
        }
    }

    #[test]
    fn hierarchy_from_coco_names() {
        let parents = hierarchical_parents(&coco_layout());
        assert_eq!(parents[5], None, "shoulders hang from the root");
        assert_eq!(parents[11], None, "hips hang from the root");
        assert_eq!(parents[7], Some(5), "left elbow from left shoulder");
        assert_eq!(parents[10], Some(8), "right wrist from right elbow");
        assert_eq!(parents[14], Some(12), "right knee from right hip");
        assert_eq!(parents[15], Some(13), "left ankle from left knee");
        assert_eq!(parents[0], None, "COCO has no neck: nose from the root");
        assert_eq!(parents[1], Some(0), "eyes from the nose");
        assert_eq!(parents[4], Some(2), "right ear from right eye");
    }

    #[test]
    fn flat_and_hierarchical_round_trips_recover_people() {
        let people = vec![
            person(20.0, 30.0, 40.0),
            person(60.3, 34.7, 44.0),
            person(44.6, 60.2, 30.0),
        ];
        let flat = SpmCodec::flat([96, 80], 17);
        assert_recovered(&round_trip(&flat, &people), &people, 1e-3);
        let hier = SpmCodec::hierarchical([96, 80], &coco_layout());
        assert_recovered(&round_trip(&hier, &people), &people, 1e-3);
    }

    #[test]
    fn close_people_keep_their_own_root_pixels_under_either_overlap_rule() {
        // Roots 6 px apart: the disks (radius 3) overlap at one column, yet each root pixel
        // still reads its own person's displacements.
        let people = vec![person(30.0, 30.0, 40.0), person(36.0, 30.0, 40.0)];
        for overlap in [SpmOverlap::Average, SpmOverlap::Nearest] {
            let cfg = SpmCodec {
                overlap,
                ..SpmCodec::flat([64, 64], 17)
            };
            assert_recovered(&round_trip(&cfg, &people), &people, 1e-3);
        }
    }

    #[test]
    fn overlapping_disks_average_by_default_or_go_to_the_nearer_anchor() {
        // Roots (the joints' centroids) at x = 30 and 34.5 on the same row: pixel column 32
        // is in both disks (radius 3), 2 px from the first root and 2.5 px from the second.
        let people = vec![person(30.0, 30.0, 40.0), person(34.5, 30.0, 40.0)];
        let a = people_array(&people, &[]);
        let root_y = people[0].iter().map(|p| p.1 as f64).sum::<f64>() / 17.0;
        let (x, y, j) = (32usize, root_y.round() as usize, 10usize);
        let own = |p: usize, cfg: &SpmCodec| {
            let z = cfg.z();
            (
                (people[p][j].0 as f64 - x as f64) / z,
                (people[p][j].1 as f64 - y as f64) / z,
            )
        };
        let average = SpmCodec::flat([64, 64], 17);
        assert_eq!(
            average.overlap,
            SpmOverlap::Average,
            "the paper's rule is the default"
        );
        let t = average.encode(a.view()).unwrap();
        let (a0, a1) = (own(0, &average), own(1, &average));
        assert!((t.displacements[[2 * j, y, x]] as f64 - (a0.0 + a1.0) / 2.0).abs() < 1e-6);
        assert!((t.displacements[[2 * j + 1, y, x]] as f64 - (a0.1 + a1.1) / 2.0).abs() < 1e-6);
        assert_eq!(t.weights[[j, y, x]], 1.0);
        // A pixel in one disk only keeps that person's displacement unchanged.
        assert!(
            (t.displacements[[2 * j, y, 28]] as f64 - (people[0][j].0 as f64 - 28.0) / average.z())
                .abs()
                < 1e-6
        );

        let nearest = SpmCodec {
            overlap: SpmOverlap::Nearest,
            ..SpmCodec::flat([64, 64], 17)
        };
        let t = nearest.encode(a.view()).unwrap();
        let b = own(0, &nearest);
        assert!((t.displacements[[2 * j, y, x]] as f64 - b.0).abs() < 1e-6);
        assert!((t.displacements[[2 * j + 1, y, x]] as f64 - b.1).abs() < 1e-6);
        assert_eq!(t.weights[[j, y, x]], 1.0);
    }

    #[test]
    fn overlap_rule_reads_from_config_text() {
        let cfg: SpmCodec = serde_json::from_str(
            r#"{"heatmap_size": [8, 8], "parents": [null], "overlap": "nearest"}"#,
        )
        .unwrap();
        assert_eq!(cfg.overlap, SpmOverlap::Nearest);
        let cfg: SpmCodec =
            serde_json::from_str(r#"{"heatmap_size": [8, 8], "parents": [null]}"#).unwrap();
        assert_eq!(cfg.overlap, SpmOverlap::Average);
        assert!(serde_json::from_str::<SpmCodec>(
            r#"{"heatmap_size": [8, 8], "parents": [null], "overlap": "max"}"#
        )
        .is_err());
    }

    #[test]
    fn missing_joints_have_no_target_and_orphans_are_masked() {
        let people = vec![person(30.0, 30.0, 40.0)];
        let a = people_array(&people, &[(0, 7)]); // left elbow missing
        let cfg = SpmCodec::hierarchical([64, 64], &coco_layout());
        let t = cfg.encode(a.view()).unwrap();
        assert_eq!(t.weights.index_axis(ndarray::Axis(0), 7).sum(), 0.0);
        // The left wrist hangs from the missing elbow: no anchor, so no target either.
        assert_eq!(t.weights.index_axis(ndarray::Axis(0), 9).sum(), 0.0);
        assert!(t.weights.index_axis(ndarray::Axis(0), 8).sum() > 0.0);
        // The root moved (centroid of 16 joints) but decoding still finds the other joints.
        let poses = cfg
            .decode(t.root_heatmap.view(), t.displacements.view())
            .unwrap();
        assert_eq!(poses.len(), 1);
        let kp = poses[0].keypoints[10];
        assert!((kp.x - people[0][10].0).abs() < 1e-3 && (kp.y - people[0][10].1).abs() < 1e-3);
    }

    #[test]
    fn people_near_the_border_and_without_joints() {
        // Root near the corner: targets are clipped to the map but the root pixel keeps its own.
        let people = vec![person(3.0, 20.5, 30.0)];
        let mut a = people_array(&people, &[]);
        let cfg = SpmCodec::flat([48, 48], 17);
        assert_recovered(&round_trip(&cfg, &people), &people, 1e-3);
        // A person with nothing labelled adds nothing.
        a.slice_mut(ndarray::s![0, .., 2]).fill(0.0);
        let t = cfg.encode(a.view()).unwrap();
        assert_eq!(t.root_heatmap.sum(), 0.0);
        assert!(cfg
            .decode(t.root_heatmap.view(), t.displacements.view())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn targets_are_normalised_by_the_diagonal() {
        let people = vec![person(30.0, 30.0, 40.0)];
        let cfg = SpmCodec::flat([40, 30], 17);
        let t = cfg.encode(people_array(&people, &[]).view()).unwrap();
        let (ry, rx) = {
            let mut best = (0, 0);
            for ((y, x), &v) in t.root_heatmap.indexed_iter() {
                if v > t.root_heatmap[best] {
                    best = (y, x);
                }
            }
            best
        };
        let dx = t.displacements[[0, ry, rx]] as f64 * 50.0;
        assert!((rx as f64 + dx - people[0][0].0 as f64).abs() < 1e-4);
    }

    #[test]
    fn bad_configs_and_shapes_are_errors() {
        let mut cfg = SpmCodec::flat([32, 32], 3);
        cfg.parents = vec![Some(1), Some(2), Some(0)];
        assert!(
            cfg.encode(Array3::<f32>::zeros((1, 3, 3)).view()).is_err(),
            "cycle"
        );
        let cfg = SpmCodec::flat([32, 32], 3);
        assert!(cfg.encode(Array3::<f32>::zeros((1, 4, 3)).view()).is_err());
        let root = Array2::<f32>::zeros((32, 31));
        let disp = Array3::<f32>::zeros((6, 32, 32));
        assert!(cfg.decode(root.view(), disp.view()).is_err());
        let mut nan = Array2::<f32>::zeros((32, 32));
        nan[[1, 1]] = f32::NAN;
        assert!(cfg.decode(nan.view(), disp.view()).is_err());
        let mut p = Array3::<f32>::zeros((1, 3, 3));
        p[[0, 1, 0]] = f32::INFINITY;
        p[[0, 1, 2]] = 1.0;
        assert!(cfg.encode(p.view()).is_err());
    }
}
