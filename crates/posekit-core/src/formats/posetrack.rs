//! PoseTrack18 files: the per-video annotation JSON of the benchmark and the tracking results
//! (the same layout, with `track_id` and keypoint `scores`), read as `poseval` reads them.
//!
//! A PoseTrack18 file is COCO-like: `categories` (one, `person`, whose `keypoints` name 15 or 17
//! landmarks), `images` (one per video frame, with `file_name`, `id` and, on labelled frames,
//! the polygons `ignore_regions_x` / `ignore_regions_y`) and `annotations` (one per person and
//! frame, with `image_id`, `track_id`, `keypoints` as x, y, v triples, `bbox_head` as x, y, w, h
//! and optionally `scores`, one per keypoint).
//!
//! What poseval's reader (`poseval/convert.py`, `Video.from_new` followed by `to_old`) does, and
//! this module reproduces:
//!
//! * Landmarks are mapped by name onto poseval's 15 joints ([`POSETRACK_JOINT_NAMES`]); names
//!   outside them (`left_ear`, `right_ear` of the 17-keypoint layout) are dropped.
//! * A landmark is absent only when it is exactly (0, 0) with visibility 0; any other triple,
//!   visibility 0 included, is an annotated (or predicted) joint.
//! * The head box becomes the corners (x, y) and (x + w, y + h).
//! * Images are grouped into videos by the folder of `file_name` (the part before the first
//!   `_`), in order of first appearance; people belong to the image whose `id` is their
//!   `image_id`. poseval evaluates only the first video of each file
//!   (`convert_videos(data)[0]` in `eval_helpers.load_data_dir`).
//!
//! [`write_results`] writes the results format (the 17-keypoint PoseTrack18 layout, ears zero).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::coco::parse_json;
use crate::error::{Error, Result};

/// poseval evaluates 15 joints.
pub const POSETRACK_NUM_JOINTS: usize = 15;

/// poseval's joint order (`eval_helpers.Joint` and `convert.POSETRACK18_LM_NAMES`); the
/// evaluation reports per joint in this order. `head_bottom` is what `Joint` calls `neck`.
pub const POSETRACK_JOINT_NAMES: [&str; POSETRACK_NUM_JOINTS] = [
    "right_ankle",
    "right_knee",
    "right_hip",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_wrist",
    "right_elbow",
    "right_shoulder",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "head_bottom",
    "nose",
    "head_top",
];

/// The 17 keypoint names of PoseTrack18 files, in file order (COCO's order with the eyes
/// replaced by head bottom and head top; the ears are never annotated).
pub const POSETRACK18_KEYPOINT_NAMES: [&str; 17] = [
    "nose",
    "head_bottom",
    "head_top",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// One annotated or predicted joint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoseTrackJoint {
    pub x: f64,
    pub y: f64,
    /// The keypoint's entry of `scores`, where the file has them.
    pub score: Option<f64>,
}

/// One person in one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct PoseTrackPerson {
    /// `track_id`: the identity across frames (required by the tracking evaluation).
    pub track_id: Option<i64>,
    /// The joints in [`POSETRACK_JOINT_NAMES`] order; `None` where absent.
    pub joints: [Option<PoseTrackJoint>; POSETRACK_NUM_JOINTS],
    /// `bbox_head` as corners `[x1, y1, x2, y2]`.
    pub head_box: Option<[f64; 4]>,
    /// Index into the file's `annotations`, for error messages.
    pub annotation_index: usize,
}

impl PoseTrackPerson {
    /// poseval's `getHeadSize`: 0.6 x the head box diagonal (`None` without a head box).
    pub fn head_size(&self) -> Option<f64> {
        let [x1, y1, x2, y2] = self.head_box?;
        Some(HEAD_SIZE_SCALE * (x2 - x1).hypot(y2 - y1))
    }

    /// Whether any joint is present.
    pub fn has_joints(&self) -> bool {
        self.joints.iter().any(Option::is_some)
    }
}

/// The head size is this fraction of the head box diagonal (poseval's `getHeadSize`, the MPII
/// convention).
pub const HEAD_SIZE_SCALE: f64 = 0.6;

/// One frame (one entry of `images`).
#[derive(Debug, Clone, PartialEq)]
pub struct PoseTrackFrame {
    pub image_id: i64,
    pub file_name: String,
    /// Ignore polygons as (x, y) vertices; joints inside them are not evaluated.
    pub ignore_regions: Vec<Vec<[f64; 2]>>,
    pub people: Vec<PoseTrackPerson>,
}

/// One video: its frames in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct PoseTrackVideo {
    /// The file it came from, for error messages.
    pub path: PathBuf,
    /// The video key: the folder of the frames' `file_name` up to its first `_`.
    pub name: String,
    pub frames: Vec<PoseTrackFrame>,
}

#[derive(Deserialize)]
struct RawFile {
    categories: Vec<RawCategory>,
    images: Vec<RawImage>,
    #[serde(default)]
    annotations: Vec<RawAnnotation>,
}

#[derive(Deserialize)]
struct RawCategory {
    #[serde(default)]
    name: Option<String>,
    keypoints: Vec<String>,
}

#[derive(Deserialize)]
struct RawImage {
    id: i64,
    file_name: String,
    #[serde(default)]
    ignore_regions_x: Option<Vec<Vec<f64>>>,
    #[serde(default)]
    ignore_regions_y: Option<Vec<Vec<f64>>>,
}

#[derive(Deserialize)]
struct RawAnnotation {
    image_id: i64,
    #[serde(default)]
    track_id: Option<i64>,
    keypoints: Vec<f64>,
    #[serde(default)]
    scores: Option<Vec<f64>>,
    #[serde(default)]
    bbox_head: Option<Vec<f64>>,
}

/// Reads every video of a PoseTrack18 file, in order of first appearance.
pub fn load_videos(path: impl AsRef<Path>) -> Result<Vec<PoseTrackVideo>> {
    let path = path.as_ref();
    let bytes = crate::error::read_file(path)?;
    videos_from_slice(path, &bytes)
}

/// [`load_videos`] on bytes already read; `path` only names the input in errors.
pub fn videos_from_slice(path: &Path, bytes: &[u8]) -> Result<Vec<PoseTrackVideo>> {
    let probe: Value = parse_json(path, bytes)?;
    if probe.get("annolist").is_some() {
        return Err(Error::parse(
            path,
            "this is the PoseTrack17 `annolist` layout; only PoseTrack18 files (`images`, \
             `annotations`, `categories`) are read",
        ));
    }
    let raw: RawFile = serde_json::from_value(probe).or_else(|_| parse_json(path, bytes))?;
    let table = conversion_table(path, &raw.categories)?;

    let mut people_of: HashMap<i64, Vec<PoseTrackPerson>> = HashMap::new();
    for (i, a) in raw.annotations.iter().enumerate() {
        let person = person(path, i, a, &table)?;
        people_of.entry(a.image_id).or_default().push(person);
    }

    let mut videos: Vec<PoseTrackVideo> = Vec::new();
    for (i, img) in raw.images.iter().enumerate() {
        let name = video_key(&img.file_name);
        let frame = PoseTrackFrame {
            image_id: img.id,
            file_name: img.file_name.clone(),
            ignore_regions: ignore_regions(path, i, img)?,
            people: people_of.get(&img.id).cloned().unwrap_or_default(),
        };
        match videos.iter_mut().find(|v| v.name == name) {
            Some(v) => v.frames.push(frame),
            None => videos.push(PoseTrackVideo {
                path: path.to_path_buf(),
                name,
                frames: vec![frame],
            }),
        }
    }
    Ok(videos)
}

/// The video a frame belongs to: `basename(dirname(file_name)).split("_")[0]`, as in poseval's
/// `Video.from_new`.
fn video_key(file_name: &str) -> String {
    let dir = Path::new(file_name)
        .parent()
        .and_then(|d| d.file_name())
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.split('_').next().unwrap_or_default().to_string()
}

/// For each keypoint of the file, its index among poseval's 15 joints (`None`: not evaluated).
fn conversion_table(path: &Path, categories: &[RawCategory]) -> Result<Vec<Option<usize>>> {
    let [category] = categories else {
        return Err(Error::invalid(
            path,
            "categories",
            format!(
                "expected exactly one category (person), found {}",
                categories.len()
            ),
        ));
    };
    if let Some(name) = &category.name {
        if name != "person" {
            return Err(Error::invalid(
                path,
                "categories[0].name",
                format!("expected \"person\", found {name:?}"),
            ));
        }
    }
    let n = category.keypoints.len();
    if n != 15 && n != 17 {
        return Err(Error::invalid(
            path,
            "categories[0].keypoints",
            format!("expected 15 or 17 keypoint names, found {n}"),
        ));
    }
    let table: Vec<Option<usize>> = category
        .keypoints
        .iter()
        .map(|k| POSETRACK_JOINT_NAMES.iter().position(|j| j == k))
        .collect();
    for (j, name) in POSETRACK_JOINT_NAMES.iter().enumerate() {
        if !table.contains(&Some(j)) {
            return Err(Error::invalid(
                path,
                "categories[0].keypoints",
                format!("the landmark {name:?} is missing"),
            ));
        }
    }
    Ok(table)
}

fn person(
    path: &Path,
    i: usize,
    a: &RawAnnotation,
    table: &[Option<usize>],
) -> Result<PoseTrackPerson> {
    let k = table.len();
    if a.keypoints.len() != 3 * k {
        return Err(Error::invalid(
            path,
            format!("annotations[{i}].keypoints"),
            format!(
                "expected {} numbers (x, y, v for {k} keypoints), found {}",
                3 * k,
                a.keypoints.len()
            ),
        ));
    }
    // poseval uses the scores only when the list is not empty, and then needs one per keypoint.
    let scores = match &a.scores {
        Some(s) if !s.is_empty() => {
            if s.len() != k {
                return Err(Error::invalid(
                    path,
                    format!("annotations[{i}].scores"),
                    format!("expected {k} scores (one per keypoint), found {}", s.len()),
                ));
            }
            Some(s)
        }
        _ => None,
    };
    let head_box = match &a.bbox_head {
        None => None,
        Some(b) => {
            let &[x, y, w, h] = b.as_slice() else {
                return Err(Error::invalid(
                    path,
                    format!("annotations[{i}].bbox_head"),
                    format!("expected [x, y, w, h], found {} numbers", b.len()),
                ));
            };
            Some([x, y, x + w, y + h])
        }
    };
    let mut joints = [None; POSETRACK_NUM_JOINTS];
    for (kp, slot) in table.iter().enumerate() {
        let Some(j) = *slot else { continue };
        let (x, y, v) = (
            a.keypoints[3 * kp],
            a.keypoints[3 * kp + 1],
            a.keypoints[3 * kp + 2],
        );
        // convert.Person.to_old: only (0, 0) with visibility 0 means "not annotated".
        if x == 0.0 && y == 0.0 && v == 0.0 {
            continue;
        }
        joints[j] = Some(PoseTrackJoint {
            x,
            y,
            score: scores.map(|s| s[kp]),
        });
    }
    Ok(PoseTrackPerson {
        track_id: a.track_id,
        joints,
        head_box,
        annotation_index: i,
    })
}

fn ignore_regions(path: &Path, i: usize, img: &RawImage) -> Result<Vec<Vec<[f64; 2]>>> {
    let (xs, ys) = match (&img.ignore_regions_x, &img.ignore_regions_y) {
        (None, None) => return Ok(Vec::new()),
        (Some(xs), Some(ys)) => (xs, ys),
        _ => {
            return Err(Error::invalid(
                path,
                format!("images[{i}]"),
                "ignore_regions_x and ignore_regions_y must come together",
            ))
        }
    };
    if xs.len() != ys.len() {
        return Err(Error::invalid(
            path,
            format!("images[{i}].ignore_regions_y"),
            format!(
                "{} polygons, but ignore_regions_x has {}",
                ys.len(),
                xs.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(xs.len());
    for (r, (px, py)) in xs.iter().zip(ys).enumerate() {
        if px.len() != py.len() {
            return Err(Error::invalid(
                path,
                format!("images[{i}].ignore_regions_y[{r}]"),
                format!(
                    "{} y values, but ignore_regions_x[{r}] has {} x values",
                    py.len(),
                    px.len()
                ),
            ));
        }
        out.push(px.iter().zip(py).map(|(&x, &y)| [x, y]).collect());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Writing

#[derive(Serialize)]
struct OutFile<'a> {
    images: Vec<OutImage<'a>>,
    annotations: Vec<OutAnnotation>,
    categories: [OutCategory; 1],
}

#[derive(Serialize)]
struct OutImage<'a> {
    id: i64,
    file_name: &'a str,
    is_labeled: bool,
}

#[derive(Serialize)]
struct OutAnnotation {
    id: usize,
    image_id: i64,
    category_id: u32,
    track_id: i64,
    keypoints: Vec<f64>,
    scores: Vec<f64>,
}

#[derive(Serialize)]
struct OutCategory {
    id: u32,
    name: &'static str,
    supercategory: &'static str,
    keypoints: [&'static str; 17],
}

/// The PoseTrack18 results JSON of one video: every frame in `images`, every person with a
/// `track_id` in `annotations` (17 keypoints in [`POSETRACK18_KEYPOINT_NAMES`] order, absent
/// joints and the ears as 0, 0, 0, present joints with visibility 1; `scores` one per keypoint,
/// 0 where a joint has none). `path` only names the output in errors.
pub fn results_to_string(path: &Path, video: &PoseTrackVideo) -> Result<String> {
    let mut annotations = Vec::new();
    for (f, frame) in video.frames.iter().enumerate() {
        for (p, person) in frame.people.iter().enumerate() {
            let field = || format!("frames[{f}].people[{p}]");
            let Some(track_id) = person.track_id else {
                return Err(Error::invalid(
                    path,
                    field(),
                    "a tracking result needs a track_id",
                ));
            };
            let mut keypoints = Vec::with_capacity(51);
            let mut scores = Vec::with_capacity(17);
            for name in POSETRACK18_KEYPOINT_NAMES {
                let joint = POSETRACK_JOINT_NAMES
                    .iter()
                    .position(|j| *j == name)
                    .and_then(|j| person.joints[j]);
                match joint {
                    Some(j) => {
                        let score = j.score.unwrap_or(0.0);
                        if !(j.x.is_finite() && j.y.is_finite() && score.is_finite()) {
                            return Err(Error::invalid(
                                path,
                                field(),
                                format!("{name} is not finite; JSON cannot hold it"),
                            ));
                        }
                        keypoints.extend([j.x, j.y, 1.0]);
                        scores.push(score);
                    }
                    None => {
                        keypoints.extend([0.0, 0.0, 0.0]);
                        scores.push(0.0);
                    }
                }
            }
            annotations.push(OutAnnotation {
                id: annotations.len(),
                image_id: frame.image_id,
                category_id: 1,
                track_id,
                keypoints,
                scores,
            });
        }
    }
    let out = OutFile {
        images: video
            .frames
            .iter()
            .map(|f| OutImage {
                id: f.image_id,
                file_name: &f.file_name,
                is_labeled: !f.people.is_empty(),
            })
            .collect(),
        annotations,
        categories: [OutCategory {
            id: 1,
            name: "person",
            supercategory: "person",
            keypoints: POSETRACK18_KEYPOINT_NAMES,
        }],
    };
    serde_json::to_string(&out).map_err(|e| Error::parse(path, format!("cannot encode JSON: {e}")))
}

/// Writes [`results_to_string`] to `path`, atomically (never seen half-written).
pub fn write_results(path: impl AsRef<Path>, video: &PoseTrackVideo) -> Result<()> {
    let path = path.as_ref();
    let text = results_to_string(path, video)?;
    crate::files::write_atomic(path, text.as_bytes())
        .map_err(|e| Error::io(path, std::io::Error::new(e.source.kind(), e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"categories":[{"name":"person","keypoints":
        ["nose","head_bottom","head_top","left_ear","right_ear","left_shoulder","right_shoulder",
         "left_elbow","right_elbow","left_wrist","right_wrist","left_hip","right_hip","left_knee",
         "right_knee","left_ankle","right_ankle"]}],
        "images":[{"id":7,"file_name":"images/val/000001_mpii_test/000000.jpg",
                   "ignore_regions_x":[[0,10,10]],"ignore_regions_y":[[0,0,10]]}],
        "annotations":[{"image_id":7,"track_id":3,"bbox_head":[10,20,30,40],
          "keypoints":[1,2,1, 0,0,0, 5,6,0, 9,9,1, 0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
                       0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}"#;

    #[test]
    fn reads_the_poseval_conventions() {
        let videos = videos_from_slice(Path::new("m.json"), MINIMAL.as_bytes()).unwrap();
        assert_eq!(videos.len(), 1);
        assert_eq!(videos[0].name, "000001");
        let p = &videos[0].frames[0].people[0];
        assert_eq!(p.track_id, Some(3));
        assert_eq!(p.head_box, Some([10.0, 20.0, 40.0, 60.0]));
        assert!((p.head_size().unwrap() - 0.6 * 50.0).abs() < 1e-12);
        let nose = POSETRACK_JOINT_NAMES
            .iter()
            .position(|n| *n == "nose")
            .unwrap();
        let top = POSETRACK_JOINT_NAMES
            .iter()
            .position(|n| *n == "head_top")
            .unwrap();
        let bottom = POSETRACK_JOINT_NAMES
            .iter()
            .position(|n| *n == "head_bottom")
            .unwrap();
        assert_eq!(p.joints[nose].map(|j| (j.x, j.y)), Some((1.0, 2.0)));
        // visibility 0 away from the origin still counts as annotated
        assert_eq!(p.joints[top].map(|j| (j.x, j.y)), Some((5.0, 6.0)));
        assert!(p.joints[bottom].is_none());
        assert_eq!(p.joints.iter().flatten().count(), 2);
        assert_eq!(videos[0].frames[0].ignore_regions.len(), 1);
    }

    #[test]
    fn errors_name_the_field() {
        let bad = MINIMAL.replace("[10,20,30,40]", "[10,20,30]");
        let err = videos_from_slice(Path::new("m.json"), bad.as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("m.json") && msg.contains("annotations[0].bbox_head"),
            "{msg}"
        );

        let bad = MINIMAL.replace("\"track_id\":3", "\"track_id\":\"x\"");
        let msg = videos_from_slice(Path::new("m.json"), bad.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("annotations[0].track_id"), "{msg}");

        let bad = MINIMAL.replace("[[0,0,10]]", "[[0,0]]");
        let msg = videos_from_slice(Path::new("m.json"), bad.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("images[0].ignore_regions_y[0]"), "{msg}");

        let msg = videos_from_slice(Path::new("m.json"), br#"{"annolist":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("PoseTrack17"), "{msg}");
    }

    #[test]
    fn results_round_trip() {
        let videos = videos_from_slice(Path::new("m.json"), MINIMAL.as_bytes()).unwrap();
        let text = results_to_string(Path::new("out.json"), &videos[0]).unwrap();
        let back = videos_from_slice(Path::new("out.json"), text.as_bytes()).unwrap();
        let (a, b) = (&videos[0].frames[0].people[0], &back[0].frames[0].people[0]);
        assert_eq!(a.track_id, b.track_id);
        for (ja, jb) in a.joints.iter().zip(&b.joints) {
            assert_eq!(ja.map(|j| (j.x, j.y)), jb.map(|j| (j.x, j.y)));
        }
    }
}
