//! Keypoint layouts as data: the names of a dataset's joints, which pairs swap under a
//! horizontal flip, the skeleton to draw, the OKS sigmas, the upper-body joints used by the
//! half-body augmentation, and how its joints map onto other layouts (CMU-18 to COCO-17 for
//! evaluating OpenPose). The four built-in layouts are JSON files in `layouts/` compiled into the
//! binary; a user adds one by writing another such file and passing its path.
//!
//! Everything downstream (flip-test merging, OKS, drawing, half-body) trusts these indices, so a
//! layout is validated once when it is loaded: an index out of range or a joint that appears in
//! two flip pairs would otherwise surface much later as a silently wrong heatmap swap.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{read_file, Error, Result};
use crate::pose::{Keypoint, Pose};

/// A keypoint layout, exactly as stored in its JSON file.
///
/// ```json
/// { "name": "coco17", "keypoints": ["nose", ...], "flip_pairs": [[1, 2], ...],
///   "skeleton": [[15, 13], ...], "sigmas": [0.026, ...], "upper_body": [0, 1, ...],
///   "mappings": {"mpii16": [...]} }
/// ```
/// All indices are 0-based positions in `keypoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeypointLayout {
    /// Short name used on the command line (`coco17`, `mpii16`, `cmu18`, `crowdpose14`).
    pub name: String,
    /// Joint names in the order the network outputs them.
    pub keypoints: Vec<String>,
    /// Pairs of joint indices that swap under a horizontal flip (left/right).
    pub flip_pairs: Vec<[usize; 2]>,
    /// Pairs of joint indices joined by a line when drawing.
    pub skeleton: Vec<[usize; 2]>,
    /// Per-joint OKS sigmas (COCO's convention); absent for layouts evaluated otherwise (MPII).
    #[serde(default)]
    pub sigmas: Option<Vec<f64>>,
    /// Joints of the upper body (half-body augmentation picks upper or lower body).
    #[serde(default)]
    pub upper_body: Vec<usize>,
    /// How poses of this layout become poses of other layouts, by the other layout's name:
    /// joint `i` of layout `t` is joint `mappings[t][i]` of this one, `null` where this layout
    /// has no such joint (it then gets score 0). See [`KeypointLayout::map_pose`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mappings: BTreeMap<String, Vec<Option<usize>>>,
}

/// The built-in layouts: (name, JSON text). Compiled in so that the CLI works from any directory
/// and a release binary needs no data files next to it.
const BUILTINS: [(&str, &str); 4] = [
    ("coco17", include_str!("../layouts/coco17.json")),
    ("mpii16", include_str!("../layouts/mpii16.json")),
    ("cmu18", include_str!("../layouts/cmu18.json")),
    ("crowdpose14", include_str!("../layouts/crowdpose14.json")),
];

impl KeypointLayout {
    /// Names accepted by [`KeypointLayout::builtin`], in a stable order (for help texts).
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTINS.iter().map(|(name, _)| *name).collect()
    }

    /// One of the built-in layouts (`coco17`, `mpii16`, `cmu18`, `crowdpose14`), or `None`.
    pub fn builtin(name: &str) -> Option<Self> {
        let (_, text) = BUILTINS.iter().find(|(n, _)| *n == name)?;
        // The built-in files are part of the source tree and checked by the unit tests below, so
        // a failure here is a build defect, not bad user input.
        let layout = Self::from_json_str(text, builtin_origin(name))
            .unwrap_or_else(|e| panic!("built-in layout {name} is broken: {e}"));
        Some(layout)
    }

    /// Reads and validates a user-written layout file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| Error::parse(path, format!("not UTF-8 text: {e}")))?;
        Self::from_json_str(text, path)
    }

    /// Parses and validates layout JSON; `origin` is the file named in errors.
    pub fn from_json_str(text: &str, origin: impl AsRef<Path>) -> Result<Self> {
        let origin = origin.as_ref();
        let layout: Self = serde_json::from_str(text).map_err(|e| Error::json(origin, e))?;
        layout.validate_at(origin)?;
        Ok(layout)
    }

    /// What a `--layout` argument means: a built-in name if it is one, otherwise a path to a
    /// layout JSON file. Built-in names win so that a stray file called `coco17` in the working
    /// directory cannot change what `--layout coco17` means.
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        if let Some(layout) = Self::builtin(name_or_path) {
            return Ok(layout);
        }
        let path = Path::new(name_or_path);
        if path.exists() {
            return Self::from_file(path);
        }
        Err(Error::invalid(
            path,
            "layout",
            format!(
                "neither a built-in layout ({}) nor an existing layout file",
                Self::builtin_names().join(", ")
            ),
        ))
    }

    /// Checks the invariants the rest of posekit relies on; errors name the layout.
    pub fn validate(&self) -> Result<()> {
        self.validate_at(PathBuf::from(format!("layout `{}`", self.name)))
    }

    /// Like [`validate`](Self::validate), naming `origin` (the layout's file) in errors.
    pub fn validate_at(&self, origin: impl AsRef<Path>) -> Result<()> {
        let origin = origin.as_ref();
        let bad = |field: String, message: String| Err(Error::invalid(origin, field, message));
        let k = self.keypoints.len();

        if self.name.trim().is_empty() {
            return bad("name".into(), "must not be empty".into());
        }
        if k == 0 {
            return bad("keypoints".into(), "must list at least one joint".into());
        }
        let mut seen_names: HashMap<&str, usize> = HashMap::new();
        for (i, name) in self.keypoints.iter().enumerate() {
            if name.trim().is_empty() {
                return bad(
                    format!("keypoints[{i}]"),
                    "joint name must not be empty".into(),
                );
            }
            if let Some(first) = seen_names.insert(name.as_str(), i) {
                return bad(
                    format!("keypoints[{i}]"),
                    format!("joint name `{name}` repeats keypoints[{first}]"),
                );
            }
        }

        // Flip pairs must form an involution: each joint swaps with at most one partner,
        // otherwise flip-test merging would depend on the order the pairs are applied in.
        let mut partner: Vec<Option<usize>> = vec![None; k];
        for (p, &[a, b]) in self.flip_pairs.iter().enumerate() {
            let field = format!("flip_pairs[{p}]");
            for idx in [a, b] {
                if idx >= k {
                    return bad(field, format!("index {idx} out of range for {k} keypoints"));
                }
            }
            if a == b {
                return bad(field, format!("joint {a} cannot be paired with itself"));
            }
            for idx in [a, b] {
                if partner[idx].is_some() {
                    return bad(
                        field,
                        format!(
                            "joint {idx} (`{}`) is already in another flip pair",
                            self.keypoints[idx]
                        ),
                    );
                }
            }
            partner[a] = Some(b);
            partner[b] = Some(a);
        }

        let mut seen_limbs: HashMap<(usize, usize), usize> = HashMap::new();
        for (l, &[a, b]) in self.skeleton.iter().enumerate() {
            let field = format!("skeleton[{l}]");
            for idx in [a, b] {
                if idx >= k {
                    return bad(field, format!("index {idx} out of range for {k} keypoints"));
                }
            }
            if a == b {
                return bad(field, format!("limb joins joint {a} to itself"));
            }
            if let Some(first) = seen_limbs.insert((a.min(b), a.max(b)), l) {
                return bad(field, format!("limb [{a}, {b}] repeats skeleton[{first}]"));
            }
        }

        if let Some(sigmas) = &self.sigmas {
            if sigmas.len() != k {
                return bad(
                    "sigmas".into(),
                    format!("has {} values but there are {k} keypoints", sigmas.len()),
                );
            }
            for (i, &s) in sigmas.iter().enumerate() {
                if !(s.is_finite() && s > 0.0) {
                    return bad(
                        format!("sigmas[{i}]"),
                        format!("must be a positive number, got {s}"),
                    );
                }
            }
        }

        let mut in_upper = vec![false; k];
        for (i, &idx) in self.upper_body.iter().enumerate() {
            let field = format!("upper_body[{i}]");
            if idx >= k {
                return bad(field, format!("index {idx} out of range for {k} keypoints"));
            }
            if in_upper[idx] {
                return bad(field, format!("joint {idx} is listed twice"));
            }
            in_upper[idx] = true;
        }

        // Only the source side can be checked here; the length is checked against the target
        // layout when the mapping is used.
        for (target, from) in &self.mappings {
            let field = format!("mappings.{target}");
            if target.trim().is_empty() {
                return bad(
                    "mappings".into(),
                    "a mapping needs the target layout's name".into(),
                );
            }
            if from.is_empty() {
                return bad(
                    field,
                    "must give the source joint (or null) of every target joint".into(),
                );
            }
            if let Some((i, idx)) = from
                .iter()
                .enumerate()
                .find_map(|(i, idx)| idx.filter(|&idx| idx >= k).map(|idx| (i, idx)))
            {
                return bad(
                    format!("{field}[{i}]"),
                    format!("index {idx} out of range for {k} keypoints"),
                );
            }
        }
        Ok(())
    }

    /// Number of joints.
    pub fn num_keypoints(&self) -> usize {
        self.keypoints.len()
    }

    /// Position of a joint by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.keypoints.iter().position(|n| n == name)
    }

    /// For each joint, the joint it becomes under a horizontal flip (itself if unpaired). This is
    /// the permutation flip-test merging and flip augmentation apply to heatmap channels.
    pub fn flip_index(&self) -> Vec<usize> {
        let mut index: Vec<usize> = (0..self.keypoints.len()).collect();
        for &[a, b] in &self.flip_pairs {
            if a < index.len() && b < index.len() {
                index[a] = b;
                index[b] = a;
            }
        }
        index
    }

    /// Joints not in `upper_body`, in index order (the half-body augmentation's other half).
    pub fn lower_body(&self) -> Vec<usize> {
        (0..self.keypoints.len())
            .filter(|i| !self.upper_body.contains(i))
            .collect()
    }

    /// How poses of this layout become poses of `target`: the identity when both list the
    /// same joints in the same order, otherwise this layout's `mappings` entry named after
    /// `target`. An undefined mapping, or one whose length is not `target`'s joint count, is
    /// an error naming both layouts.
    pub fn mapping_to(&self, target: &KeypointLayout) -> Result<JointMapping> {
        let origin = PathBuf::from(format!("layout `{}`", self.name));
        let from: Vec<Option<usize>> = if self.keypoints == target.keypoints {
            (0..self.keypoints.len()).map(Some).collect()
        } else {
            let from = self.mappings.get(&target.name).ok_or_else(|| {
                Error::invalid(
                    &origin,
                    "mappings",
                    format!(
                        "no mapping to layout `{}` (add \"mappings\": {{\"{}\": [...]}} with \
                         the `{}` joint, or null, of each of its {} joints)",
                        target.name,
                        target.name,
                        self.name,
                        target.num_keypoints()
                    ),
                )
            })?;
            if from.len() != target.num_keypoints() {
                return Err(Error::invalid(
                    &origin,
                    format!("mappings.{}", target.name),
                    format!(
                        "has {} entries but layout `{}` has {} joints",
                        from.len(),
                        target.name,
                        target.num_keypoints()
                    ),
                ));
            }
            from.clone()
        };
        Ok(JointMapping {
            source: self.name.clone(),
            target: target.name.clone(),
            source_joints: self.num_keypoints(),
            from,
        })
    }

    /// `pose` (this layout's joints) as a pose of `target`: see [`Self::mapping_to`] and
    /// [`JointMapping::apply`]. To map many poses, resolve the mapping once with
    /// [`Self::mapping_to`].
    pub fn map_pose(&self, pose: &Pose, target: &KeypointLayout) -> Result<Pose> {
        self.mapping_to(target)?.apply(pose)
    }
}

/// A resolved mapping from one layout's joints to another's (see
/// [`KeypointLayout::mapping_to`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JointMapping {
    source: String,
    target: String,
    source_joints: usize,
    from: Vec<Option<usize>>,
}

impl JointMapping {
    /// For each target joint, the source joint it is taken from (`None`: the source has none).
    pub fn source_joints(&self) -> &[Option<usize>] {
        &self.from
    }

    /// The pose with the target's joints: each taken from its source joint, `(0, 0)` with
    /// score 0 where the source has none (COCO's evaluation ignores such joints). The person
    /// score is kept. A pose whose joint count is not the source layout's is an error.
    pub fn apply(&self, pose: &Pose) -> Result<Pose> {
        if pose.keypoints.len() != self.source_joints {
            return Err(Error::Shape(format!(
                "mapping layout `{}` to `{}`: the pose has {} keypoints, layout `{}` has {}",
                self.source,
                self.target,
                pose.keypoints.len(),
                self.source,
                self.source_joints
            )));
        }
        let keypoints = self
            .from
            .iter()
            .map(|from| from.map_or_else(Keypoint::default, |i| pose.keypoints[i]))
            .collect();
        Ok(Pose::new(keypoints, pose.score))
    }
}

fn builtin_origin(name: &str) -> PathBuf {
    PathBuf::from(format!("layouts/{name}.json (built-in)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COCO_SIGMAS: [f64; 17] = [
        0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
        0.087, 0.087, 0.089, 0.089,
    ];

    #[test]
    fn every_builtin_loads_and_validates() {
        for name in KeypointLayout::builtin_names() {
            let layout = KeypointLayout::builtin(name).unwrap();
            assert_eq!(layout.name, name);
            layout.validate().unwrap();
            assert!(!layout.upper_body.is_empty(), "{name} has no upper body");
            assert!(!layout.lower_body().is_empty(), "{name} has no lower body");
        }
        assert!(KeypointLayout::builtin("coco18").is_none());
    }

    #[test]
    fn coco17_matches_the_coco_definition() {
        let l = KeypointLayout::builtin("coco17").unwrap();
        assert_eq!(l.num_keypoints(), 17);
        assert_eq!(l.sigmas.as_deref(), Some(&COCO_SIGMAS[..]));
        assert_eq!(
            l.flip_pairs,
            vec![
                [1, 2],
                [3, 4],
                [5, 6],
                [7, 8],
                [9, 10],
                [11, 12],
                [13, 14],
                [15, 16]
            ]
        );
        // COCO's annotation file lists the skeleton 1-based; ours is the same list 0-based.
        let coco_1based = [
            [16, 14],
            [14, 12],
            [17, 15],
            [15, 13],
            [12, 13],
            [6, 12],
            [7, 13],
            [6, 7],
            [6, 8],
            [7, 9],
            [8, 10],
            [9, 11],
            [2, 3],
            [1, 2],
            [1, 3],
            [2, 4],
            [3, 5],
            [4, 6],
            [5, 7],
        ];
        let expected: Vec<[usize; 2]> = coco_1based.iter().map(|&[a, b]| [a - 1, b - 1]).collect();
        assert_eq!(l.skeleton, expected);
        assert_eq!(l.upper_body, (0..=10).collect::<Vec<_>>());
        // Every flip pair really is a left/right pair of the same joint.
        for &[a, b] in &l.flip_pairs {
            assert_eq!(
                l.keypoints[a].replace("left_", ""),
                l.keypoints[b].replace("right_", "")
            );
        }
    }

    #[test]
    fn mpii16_uses_the_standard_order() {
        let l = KeypointLayout::builtin("mpii16").unwrap();
        let names = [
            "right_ankle",
            "right_knee",
            "right_hip",
            "left_hip",
            "left_knee",
            "left_ankle",
            "pelvis",
            "thorax",
            "upper_neck",
            "head_top",
            "right_wrist",
            "right_elbow",
            "right_shoulder",
            "left_shoulder",
            "left_elbow",
            "left_wrist",
        ];
        assert_eq!(l.keypoints, names);
        assert!(l.sigmas.is_none());
        assert_eq!(
            l.flip_index(),
            vec![5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10]
        );
    }

    #[test]
    fn cmu18_uses_openpose_order_and_its_19_limbs() {
        let l = KeypointLayout::builtin("cmu18").unwrap();
        assert_eq!(l.index_of("neck"), Some(1));
        assert_eq!(l.index_of("right_wrist"), Some(4));
        assert_eq!(l.index_of("left_ankle"), Some(13));
        assert_eq!(l.index_of("left_ear"), Some(17));
        assert_eq!(l.skeleton.len(), 19);
        assert_eq!(l.skeleton[0], [1, 2]);
        assert_eq!(l.skeleton[12], [1, 0]);
        assert_eq!(l.skeleton[18], [5, 17]);
        for &[a, b] in &l.flip_pairs {
            assert_eq!(
                l.keypoints[a].replace("right_", ""),
                l.keypoints[b].replace("left_", "")
            );
        }
    }

    #[test]
    fn crowdpose14_sigmas_and_pairs() {
        let l = KeypointLayout::builtin("crowdpose14").unwrap();
        assert_eq!(l.keypoints[12], "top_head");
        assert_eq!(l.keypoints[13], "neck");
        let s = l.sigmas.as_ref().unwrap();
        assert_eq!(s.len(), 14);
        assert_eq!(s[..12], COCO_SIGMAS[5..]);
        assert_eq!(s[12..], [0.079, 0.079]);
        assert_eq!(l.flip_index()[0], 1);
        assert_eq!(l.flip_index()[12], 12);
    }

    fn tiny() -> KeypointLayout {
        KeypointLayout {
            name: "tiny".into(),
            keypoints: vec!["head".into(), "left_hand".into(), "right_hand".into()],
            flip_pairs: vec![[1, 2]],
            skeleton: vec![[0, 1], [0, 2]],
            sigmas: Some(vec![0.1, 0.2, 0.2]),
            upper_body: vec![0],
            mappings: BTreeMap::new(),
        }
    }

    fn field_of(err: Error) -> String {
        match err {
            Error::Invalid { field, .. } => field,
            other => panic!("expected Error::Invalid, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_offending_field() {
        tiny().validate().unwrap();

        let mut l = tiny();
        l.flip_pairs.push([0, 3]);
        assert_eq!(field_of(l.validate().unwrap_err()), "flip_pairs[1]");

        let mut l = tiny();
        l.flip_pairs.push([2, 0]);
        let err = l.validate().unwrap_err().to_string();
        assert!(
            err.contains("flip_pairs[1]") && err.contains("already"),
            "{err}"
        );

        let mut l = tiny();
        l.flip_pairs = vec![[1, 1]];
        assert_eq!(field_of(l.validate().unwrap_err()), "flip_pairs[0]");

        let mut l = tiny();
        l.skeleton.push([1, 0]);
        assert_eq!(field_of(l.validate().unwrap_err()), "skeleton[2]");

        let mut l = tiny();
        l.skeleton.push([0, 9]);
        assert_eq!(field_of(l.validate().unwrap_err()), "skeleton[2]");

        let mut l = tiny();
        l.sigmas = Some(vec![0.1, 0.2]);
        assert_eq!(field_of(l.validate().unwrap_err()), "sigmas");

        let mut l = tiny();
        l.sigmas = Some(vec![0.1, f64::NAN, 0.2]);
        assert_eq!(field_of(l.validate().unwrap_err()), "sigmas[1]");

        let mut l = tiny();
        l.keypoints[2] = "head".into();
        assert_eq!(field_of(l.validate().unwrap_err()), "keypoints[2]");

        let mut l = tiny();
        l.upper_body = vec![0, 0];
        assert_eq!(field_of(l.validate().unwrap_err()), "upper_body[1]");

        let mut l = tiny();
        l.keypoints.clear();
        l.flip_pairs.clear();
        l.skeleton.clear();
        assert_eq!(field_of(l.validate().unwrap_err()), "keypoints");

        let mut l = tiny();
        l.mappings
            .insert("coco17".into(), vec![Some(0), None, Some(3)]);
        assert_eq!(field_of(l.validate().unwrap_err()), "mappings.coco17[2]");

        let mut l = tiny();
        l.mappings.insert("coco17".into(), vec![]);
        assert_eq!(field_of(l.validate().unwrap_err()), "mappings.coco17");

        let mut l = tiny();
        l.mappings.insert(" ".into(), vec![Some(0)]);
        assert_eq!(field_of(l.validate().unwrap_err()), "mappings");
    }

    #[test]
    fn cmu18_maps_to_coco17_dropping_the_neck() {
        let cmu = KeypointLayout::builtin("cmu18").unwrap();
        let coco = KeypointLayout::builtin("coco17").unwrap();
        let pose = Pose::new(
            (0..18)
                .map(|i| Keypoint::new(i as f32, 0.5 * i as f32, 0.9))
                .collect(),
            0.7,
        );
        let mapped = cmu.map_pose(&pose, &coco).unwrap();
        assert_eq!(mapped.score, 0.7);
        let from: Vec<usize> = mapped.keypoints.iter().map(|k| k.x as usize).collect();
        assert_eq!(
            from,
            vec![0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]
        );
        // Every COCO joint comes from the CMU joint of the same name.
        for (i, &j) in from.iter().enumerate() {
            assert_eq!(coco.keypoints[i], cmu.keypoints[j]);
            assert_eq!(mapped.keypoints[i], pose.keypoints[j]);
        }
        assert!(!from.contains(&1), "the neck has no COCO joint");
    }

    #[test]
    fn same_joints_map_by_identity() {
        let coco = KeypointLayout::builtin("coco17").unwrap();
        let pose = Pose::new(
            (0..17).map(|i| Keypoint::new(i as f32, 1.0, 0.5)).collect(),
            0.3,
        );
        assert_eq!(coco.map_pose(&pose, &coco).unwrap(), pose);
        let mut renamed = coco.clone();
        renamed.name = "my_coco".into();
        assert_eq!(renamed.map_pose(&pose, &coco).unwrap(), pose);
    }

    #[test]
    fn missing_joints_get_score_zero() {
        let mut l = tiny();
        let target = KeypointLayout {
            name: "hands_and_feet".into(),
            keypoints: vec!["left_hand".into(), "right_hand".into(), "left_foot".into()],
            flip_pairs: vec![],
            skeleton: vec![],
            sigmas: None,
            upper_body: vec![],
            mappings: BTreeMap::new(),
        };
        l.mappings
            .insert("hands_and_feet".into(), vec![Some(1), Some(2), None]);
        l.validate().unwrap();
        let pose = Pose::new(
            vec![
                Keypoint::new(1.0, 2.0, 0.9),
                Keypoint::new(3.0, 4.0, 0.8),
                Keypoint::new(5.0, 6.0, 0.7),
            ],
            0.6,
        );
        let mapped = l.map_pose(&pose, &target).unwrap();
        assert_eq!(
            mapped,
            Pose::new(
                vec![
                    Keypoint::new(3.0, 4.0, 0.8),
                    Keypoint::new(5.0, 6.0, 0.7),
                    Keypoint::default(),
                ],
                0.6
            )
        );
        let mapping = l.mapping_to(&target).unwrap();
        assert_eq!(mapping.source_joints(), &[Some(1), Some(2), None]);
    }

    #[test]
    fn undefined_or_mismatched_mappings_are_errors_naming_both_layouts() {
        let cmu = KeypointLayout::builtin("cmu18").unwrap();
        let mpii = KeypointLayout::builtin("mpii16").unwrap();
        let err = cmu.mapping_to(&mpii).unwrap_err().to_string();
        assert!(err.contains("`cmu18`") && err.contains("`mpii16`"), "{err}");

        let mut short = cmu.clone();
        short.mappings.insert("mpii16".into(), vec![Some(0); 15]);
        let err = short.mapping_to(&mpii).unwrap_err().to_string();
        assert!(
            err.contains("`cmu18`") && err.contains("`mpii16`") && err.contains("15"),
            "{err}"
        );

        let coco = KeypointLayout::builtin("coco17").unwrap();
        let wrong = Pose::new(vec![Keypoint::default(); 17], 1.0);
        let err = cmu.map_pose(&wrong, &coco).unwrap_err();
        assert!(matches!(err, Error::Shape(_)), "{err:?}");
        assert!(err.to_string().contains("17 keypoints"), "{err}");
    }

    #[test]
    fn mappings_round_trip_through_user_files() {
        let mut l = tiny();
        l.mappings
            .insert("hands".into(), vec![Some(1), Some(2), None]);
        let text = serde_json::to_string(&l).unwrap();
        assert!(
            text.contains(r#""mappings":{"hands":[1,2,null]}"#),
            "{text}"
        );
        assert_eq!(KeypointLayout::from_json_str(&text, "x.json").unwrap(), l);
        // Layouts without mappings keep writing the file format they always had.
        assert!(!serde_json::to_string(&tiny()).unwrap().contains("mappings"));
    }

    #[test]
    fn user_files_load_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("posekit-layout-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        let good = dir.join("tiny.json");
        std::fs::write(&good, serde_json::to_string_pretty(&tiny()).unwrap()).unwrap();
        assert_eq!(KeypointLayout::from_file(&good).unwrap(), tiny());
        assert_eq!(
            KeypointLayout::resolve(good.to_str().unwrap()).unwrap(),
            tiny()
        );

        let bad_index = dir.join("bad_index.json");
        let mut l = tiny();
        l.skeleton.push([0, 7]);
        std::fs::write(&bad_index, serde_json::to_string(&l).unwrap()).unwrap();
        let err = KeypointLayout::from_file(&bad_index)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad_index.json") && err.contains("skeleton[2]"),
            "{err}"
        );

        let unknown = dir.join("unknown_field.json");
        std::fs::write(
            &unknown,
            r#"{"name":"x","keypoints":["a"],"flip_pairs":[],"skeleton":[],"colour":1}"#,
        )
        .unwrap();
        let err = KeypointLayout::from_file(&unknown).unwrap_err().to_string();
        assert!(
            err.contains("unknown_field.json") && err.contains("colour"),
            "{err}"
        );

        let malformed = dir.join("malformed.json");
        std::fs::write(&malformed, "{\"name\": ").unwrap();
        let err = KeypointLayout::from_file(&malformed).unwrap_err();
        assert!(matches!(err, Error::Parse { .. }), "{err:?}");

        let missing = dir.join("missing.json");
        assert!(matches!(
            KeypointLayout::from_file(&missing),
            Err(Error::Io { .. })
        ));
        let err = KeypointLayout::resolve(missing.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("coco17") && err.contains("missing.json"),
            "{err}"
        );

        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resolve_prefers_builtins() {
        assert_eq!(
            KeypointLayout::resolve("mpii16").unwrap().num_keypoints(),
            16
        );
        assert_eq!(
            KeypointLayout::resolve("coco17").unwrap().lower_body(),
            (11..17).collect::<Vec<_>>()
        );
    }
}
