//! Limbs as data: which two joints a part affinity field joins and which two PAF channels hold
//! its x and y components. Grouping walks the limbs in table order, so the order is part of a
//! model's definition (tf-pose and CMU's OpenPose list the CMU-18 limbs from the neck outward).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::KeypointLayout;

/// One limb: a directed pair of joints and the PAF channels of the unit vector from `joint_a` to
/// `joint_b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limb {
    pub joint_a: usize,
    pub joint_b: usize,
    /// Channel of the vector's x component in the PAF array.
    pub paf_x: usize,
    /// Channel of the vector's y component in the PAF array.
    pub paf_y: usize,
    /// Whether a connection of this limb whose joints belong to nobody yet may start a new
    /// person. OpenPose's CMU-18 table ends with two redundant shoulder-to-ear limbs that only
    /// attach ears to people already found; letting them seed people would create ear-only
    /// fragments.
    #[serde(default = "default_true")]
    pub starts_person: bool,
}

fn default_true() -> bool {
    true
}

impl Limb {
    pub const fn new(joint_a: usize, joint_b: usize, paf_x: usize, paf_y: usize) -> Self {
        Limb {
            joint_a,
            joint_b,
            paf_x,
            paf_y,
            starts_person: true,
        }
    }
}

/// The limb table of a PAF model: the joints it connects and where each limb's field lives.
///
/// Built only through [`PafLimbs::new`] (also when deserialised), so every index is known to be
/// in range and the codecs can index without checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PafLimbsData", into = "PafLimbsData")]
pub struct PafLimbs {
    num_joints: usize,
    limbs: Vec<Limb>,
}

/// The unchecked serde form of [`PafLimbs`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PafLimbsData {
    num_joints: usize,
    limbs: Vec<Limb>,
}

impl TryFrom<PafLimbsData> for PafLimbs {
    type Error = Error;
    fn try_from(d: PafLimbsData) -> Result<Self> {
        PafLimbs::new(d.num_joints, d.limbs)
    }
}

impl From<PafLimbs> for PafLimbsData {
    fn from(l: PafLimbs) -> Self {
        PafLimbsData {
            num_joints: l.num_joints,
            limbs: l.limbs,
        }
    }
}

/// tf-pose's `COCOPAIRS` / `COCOPAIRS_NET` (CMU-18 joints; x and y channels into the 38 PAFs).
const CMU18_LIMBS: [(usize, usize, usize, usize); 19] = [
    (1, 2, 12, 13),
    (1, 5, 20, 21),
    (2, 3, 14, 15),
    (3, 4, 16, 17),
    (5, 6, 22, 23),
    (6, 7, 24, 25),
    (1, 8, 0, 1),
    (8, 9, 2, 3),
    (9, 10, 4, 5),
    (1, 11, 6, 7),
    (11, 12, 8, 9),
    (12, 13, 10, 11),
    (1, 0, 28, 29),
    (0, 14, 30, 31),
    (14, 16, 34, 35),
    (0, 15, 32, 33),
    (15, 17, 36, 37),
    (2, 16, 18, 19),
    (5, 17, 26, 27),
];

impl PafLimbs {
    /// Checks that every joint index is below `num_joints`, that no limb joins a joint to itself
    /// and that no PAF channel is used twice (two limbs writing one channel would corrupt each
    /// other's training targets).
    pub fn new(num_joints: usize, limbs: Vec<Limb>) -> Result<Self> {
        let mut channels = std::collections::HashSet::new();
        for (i, l) in limbs.iter().enumerate() {
            if l.joint_a >= num_joints || l.joint_b >= num_joints {
                return Err(Error::Shape(format!(
                    "PAF limb {i} joins joints {} and {}, but the layout has {num_joints} joints",
                    l.joint_a, l.joint_b
                )));
            }
            if l.joint_a == l.joint_b {
                return Err(Error::Shape(format!(
                    "PAF limb {i} joins joint {} to itself",
                    l.joint_a
                )));
            }
            for c in [l.paf_x, l.paf_y] {
                if !channels.insert(c) {
                    return Err(Error::Shape(format!("PAF limb {i} reuses PAF channel {c}")));
                }
            }
        }
        Ok(PafLimbs { num_joints, limbs })
    }

    /// The CMU-18 limb table of OpenPose as tf-pose uses it: 19 limbs over 38 PAF channels, in
    /// `COCOPAIRS` order; the last two (shoulder to ear) do not start people.
    pub fn cmu18() -> Self {
        let limbs = CMU18_LIMBS
            .iter()
            .enumerate()
            .map(|(i, &(a, b, x, y))| Limb {
                starts_person: i < 17,
                ..Limb::new(a, b, x, y)
            })
            .collect();
        PafLimbs {
            num_joints: 18,
            limbs,
        }
    }

    /// One limb per skeleton edge of `layout`, edge `i` on channels `2i` and `2i + 1`: the table
    /// for training a new PAF model on any layout.
    ///
    /// Assembly only ever adds a limb's joint B to a person that already holds its joint A, so
    /// it needs limbs ordered from the torso outward and pointing away from it (tf-pose's table
    /// is written that way by hand). Layout skeletons are drawing lists in no such order (COCO's
    /// starts at the ankles), so the limbs are ordered and oriented by a breadth-first walk from
    /// the joint with the most edges (lowest index on ties; one walk per connected part).
    /// Edges that close a cycle (COCO's shoulder-to-shoulder, eye-to-eye, ...) come last and do
    /// not start people, like tf-pose's shoulder-to-ear limbs. Channels stay tied to the
    /// skeleton index, so `limbs()` is in processing order, not skeleton order.
    pub fn from_skeleton(layout: &KeypointLayout) -> Result<Self> {
        let k = layout.keypoints.len();
        let err = |m: String| Error::Shape(format!("layout {}: {m}", layout.name));
        for (i, &[a, b]) in layout.skeleton.iter().enumerate() {
            if a >= k || b >= k || a == b {
                return Err(err(format!(
                    "skeleton edge {i} [{a}, {b}] is not a pair of distinct joints below {k}"
                )));
            }
        }
        let mut degree = vec![0usize; k];
        for &[a, b] in &layout.skeleton {
            degree[a] += 1;
            degree[b] += 1;
        }
        let mut reached = vec![false; k];
        let mut edge_done = vec![false; layout.skeleton.len()];
        let (mut tree, mut closing) = (Vec::new(), Vec::new());
        loop {
            // Root of the next connected part: the unreached joint with the most edges.
            let root = (0..k)
                .filter(|&j| !reached[j] && degree[j] > 0)
                .max_by_key(|&j| (degree[j], std::cmp::Reverse(j)));
            let Some(root) = root else { break };
            reached[root] = true;
            let mut queue = std::collections::VecDeque::from([root]);
            while let Some(j) = queue.pop_front() {
                for (i, &[a, b]) in layout.skeleton.iter().enumerate() {
                    if edge_done[i] || (a != j && b != j) {
                        continue;
                    }
                    edge_done[i] = true;
                    let other = if a == j { b } else { a };
                    if reached[other] {
                        closing.push(Limb {
                            starts_person: false,
                            ..Limb::new(a, b, 2 * i, 2 * i + 1)
                        });
                    } else {
                        reached[other] = true;
                        queue.push_back(other);
                        tree.push(Limb::new(j, other, 2 * i, 2 * i + 1));
                    }
                }
            }
        }
        tree.extend(closing);
        Self::new(k, tree).map_err(|e| err(e.to_string()))
    }

    pub fn num_joints(&self) -> usize {
        self.num_joints
    }

    pub fn limbs(&self) -> &[Limb] {
        &self.limbs
    }

    pub fn len(&self) -> usize {
        self.limbs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limbs.is_empty()
    }

    /// How many PAF channels a network output needs to hold every limb (highest channel + 1).
    pub fn num_paf_channels(&self) -> usize {
        self.limbs
            .iter()
            .map(|l| l.paf_x.max(l.paf_y) + 1)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmu18_table_uses_every_channel_once() {
        let l = PafLimbs::cmu18();
        assert_eq!(l.len(), 19);
        assert_eq!(l.num_paf_channels(), 38);
        // Re-validating proves in-range joints and unique channels.
        PafLimbs::new(18, l.limbs().to_vec()).unwrap();
        assert_eq!(l.limbs().iter().filter(|l| l.starts_person).count(), 17);
        assert_eq!(l.limbs()[12], Limb::new(1, 0, 28, 29));
    }

    #[test]
    fn rejects_bad_tables() {
        assert!(PafLimbs::new(3, vec![Limb::new(0, 3, 0, 1)]).is_err());
        assert!(PafLimbs::new(3, vec![Limb::new(1, 1, 0, 1)]).is_err());
        assert!(PafLimbs::new(3, vec![Limb::new(0, 1, 0, 1), Limb::new(1, 2, 1, 2)]).is_err());
    }

    #[test]
    fn from_skeleton_numbers_channels_by_edge() {
        let layout = KeypointLayout {
            name: "tiny".into(),
            keypoints: vec!["a".into(), "b".into(), "c".into()],
            flip_pairs: vec![],
            skeleton: vec![[0, 1], [1, 2]],
            sigmas: None,
            upper_body: vec![],
            mappings: Default::default(),
        };
        let l = PafLimbs::from_skeleton(&layout).unwrap();
        // Joint 1 has the most edges: both limbs start there.
        assert_eq!(l.limbs(), &[Limb::new(1, 0, 0, 1), Limb::new(1, 2, 2, 3)]);
        assert_eq!(l.num_paf_channels(), 4);
    }

    #[test]
    fn from_skeleton_walks_coco_from_the_torso() {
        let coco = KeypointLayout::builtin("coco17").unwrap();
        let l = PafLimbs::from_skeleton(&coco).unwrap();
        assert_eq!(l.len(), coco.skeleton.len());
        // Every skeleton edge appears once, on its own channels.
        for (i, &[a, b]) in coco.skeleton.iter().enumerate() {
            let limb = l.limbs().iter().find(|l| l.paf_x == 2 * i).unwrap();
            assert_eq!(limb.paf_y, 2 * i + 1);
            assert!(
                [limb.joint_a, limb.joint_b] == [a, b] || [limb.joint_a, limb.joint_b] == [b, a]
            );
        }
        // Tree limbs first, each leaving a joint an earlier limb (or the root) reached.
        let root = l.limbs()[0].joint_a;
        let mut reached = vec![root];
        for limb in l.limbs().iter().take_while(|l| l.starts_person) {
            assert!(reached.contains(&limb.joint_a), "{limb:?}");
            assert!(!reached.contains(&limb.joint_b), "{limb:?}");
            reached.push(limb.joint_b);
        }
        assert_eq!(reached.len(), 17);
        assert!(l.limbs().iter().skip(16).all(|l| !l.starts_person));
    }

    #[test]
    fn serde_round_trip_validates() {
        let l = PafLimbs::cmu18();
        let s = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<PafLimbs>(&s).unwrap(), l);
        let bad =
            r#"{"num_joints": 2, "limbs": [{"joint_a": 0, "joint_b": 5, "paf_x": 0, "paf_y": 1}]}"#;
        assert!(serde_json::from_str::<PafLimbs>(bad).is_err());
    }
}
