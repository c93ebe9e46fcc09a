//! COCO files: person_keypoints ground truth, detection results (the person boxes a top-down
//! model crops from) and keypoint results (what `posekit infer` writes and `posekit eval coco`
//! reads).
//!
//! Loading is strict because pycocotools is not: it silently drops results of unknown
//! categories, evaluates a keypoint array of the wrong length as if it were right, and crashes
//! with a bare `KeyError` on a missing field. Here every problem is an [`Error`] that names the
//! file and the field (`results.json: [12].keypoints: expected 51 numbers (17 keypoints x 3),
//! got 48`), found before any evaluation runs.
//!
//! Parsing takes a fast typed path first; only when that fails is the file parsed again with
//! path tracking, so that a 30,000-result file costs one serde pass in the common case and
//! still gets an error that points at the field when it is broken.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{read_file, Error, Result};
pub use crate::masks::Segmentation;
use crate::pose::Pose;

/// A COCO person_keypoints annotation file (`person_keypoints_val2017.json` and the like).
///
/// `info` and `licenses` are accepted and dropped: nothing downstream reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoKeypointsGt {
    pub images: Vec<CocoImage>,
    pub annotations: Vec<CocoPersonAnnotation>,
    pub categories: Vec<CocoCategory>,
}

/// One image entry. Width and height are required because the dataset loaders need them to
/// build crops and masks without decoding the image first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoImage {
    #[serde(deserialize_with = "deserialize_id")]
    pub id: i64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

/// One annotated person (or crowd region).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoPersonAnnotation {
    #[serde(deserialize_with = "deserialize_id")]
    pub id: i64,
    #[serde(deserialize_with = "deserialize_id")]
    pub image_id: i64,
    #[serde(deserialize_with = "deserialize_id")]
    pub category_id: i64,
    /// `x, y, v` per keypoint of the category; `v` is 0 (not labelled), 1 (labelled, hidden) or
    /// 2 (labelled, visible).
    pub keypoints: Vec<f64>,
    /// Number of labelled keypoints as the file states it. pycocotools ignores a person whose
    /// `num_keypoints` is 0 even if its array has labelled points, so it is kept verbatim rather
    /// than recounted.
    pub num_keypoints: u32,
    /// `[x, y, width, height]` in pixels.
    pub bbox: [f64; 4],
    /// Segmentation area; it, not the box, decides the small/medium/large range.
    pub area: f64,
    /// A crowd region: never a true positive, and it may absorb several detections.
    #[serde(
        deserialize_with = "deserialize_flag",
        serialize_with = "serialize_flag"
    )]
    pub iscrowd: bool,
    /// Polygons or RLE; bottom-up training masks crowd and unlabelled people with it. Only the
    /// JSON types are checked on loading; [`Self::segmentation_rle`] builds the mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
}

/// A category. For keypoint evaluation it defines how many keypoints every annotation and
/// result of the category carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoCategory {
    #[serde(deserialize_with = "deserialize_id")]
    pub id: i64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supercategory: Option<String>,
    /// Keypoint names in array order. Empty when the file has none: pycocotools' keypoint
    /// evaluation never reads them (hand-made ground truth often omits them, and a second,
    /// non-keypoint category has none), so the count then comes from the annotations.
    #[serde(default)]
    pub keypoints: Vec<String>,
    /// Limbs as pairs of 1-based keypoint indices (COCO's convention).
    #[serde(default)]
    pub skeleton: Vec<[usize; 2]>,
}

/// One person box from a detector, in the COCO detection results format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoDetection {
    #[serde(deserialize_with = "deserialize_id")]
    pub image_id: i64,
    #[serde(deserialize_with = "deserialize_id")]
    pub category_id: i64,
    /// `[x, y, width, height]` in pixels.
    pub bbox: [f64; 4],
    pub score: f64,
}

/// One predicted person in the COCO keypoint results format.
///
/// Other fields written by other tools (HRNet's `center`/`scale`, a `box`, ...) are accepted
/// and not kept, except those listed here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoKeypointResult {
    /// Python writes `1.0` for an id computed as a float; pycocotools matches it to image 1
    /// (`1.0 == 1` in a set), so an integral float is accepted here, a fractional one is not.
    #[serde(deserialize_with = "deserialize_id")]
    pub image_id: i64,
    #[serde(deserialize_with = "deserialize_id")]
    pub category_id: i64,
    /// `x, y, score` per keypoint of the category.
    pub keypoints: Vec<f64>,
    pub score: f64,
    /// Optional box. When the FIRST result of a file has a non-empty one, pycocotools takes
    /// every result's area from its box instead of from its keypoints' extent, so its presence
    /// changes the medium/large split; see [`result_areas`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<Vec<f64>>,
    /// The image file, written by `posekit infer` so a result can be traced without the GT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Crop center in pixels (HRNet writes it; useful to reproduce a crop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center: Option<Vec<f64>>,
    /// Crop scale in units of 200 px (HRNet's convention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Vec<f64>>,
}

impl CocoKeypointResult {
    /// A result from a decoded pose in image pixels.
    ///
    /// Values go through their shortest `f32` decimal form, so a keypoint at `0.1f32` is written
    /// as `0.1` rather than `0.10000000149011612`.
    pub fn from_pose(image_id: i64, category_id: i64, pose: &Pose) -> Self {
        let keypoints = pose
            .keypoints
            .iter()
            .flat_map(|k| [k.x, k.y, k.score])
            .map(f32_to_f64_shortest)
            .collect();
        CocoKeypointResult {
            image_id,
            category_id,
            keypoints,
            score: f32_to_f64_shortest(pose.score),
            bbox: None,
            file_name: None,
            center: None,
            scale: None,
        }
    }
}

fn f32_to_f64_shortest(v: f32) -> f64 {
    // Display of an f32 is its shortest round-tripping decimal, which always parses as f64.
    format!("{v}").parse::<f64>().unwrap_or(v as f64)
}

// ---------------------------------------------------------------------------------------------
// Loading

impl CocoKeypointsGt {
    /// Reads and validates a person_keypoints file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let gt: CocoKeypointsGt = parse_json(path, &read_file(path)?)?;
        gt.validate(path)?;
        Ok(gt)
    }

    /// Parses and validates a person_keypoints document held in memory; `path` only names it
    /// in errors.
    pub fn from_slice(path: impl AsRef<Path>, bytes: &[u8]) -> Result<Self> {
        let path = path.as_ref();
        let gt: CocoKeypointsGt = parse_json(path, bytes)?;
        gt.validate(path)?;
        Ok(gt)
    }

    /// Reads a ground truth for keypoint evaluation only, accepting what pycocotools' `COCO`
    /// and `COCOeval(iouType='keypoints')` accept: images need only an `id` (`file_name`,
    /// `width` and `height`, which evaluation never reads, become `""` and 0), categories need
    /// no `keypoints`/`skeleton`. Such a value must not be used to load images or build masks;
    /// [`CocoKeypointsGt::load`] is the loader for that.
    pub fn load_for_eval(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_slice_for_eval(path, &read_file(path)?)
    }

    /// [`CocoKeypointsGt::load_for_eval`] on a document held in memory.
    pub fn from_slice_for_eval(path: impl AsRef<Path>, bytes: &[u8]) -> Result<Self> {
        let path = path.as_ref();
        let file: EvalGtFile = parse_json(path, bytes)?;
        let gt = CocoKeypointsGt {
            images: file
                .images
                .into_iter()
                .map(|im| CocoImage {
                    id: im.id,
                    file_name: im.file_name,
                    width: im.width,
                    height: im.height,
                })
                .collect(),
            annotations: file.annotations,
            categories: file.categories,
        };
        gt.validate(path)?;
        Ok(gt)
    }

    /// Checks what serde cannot: unique ids, references between sections, array lengths that
    /// depend on the category, and value ranges.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let mut image_ids = HashSet::with_capacity(self.images.len());
        for (i, image) in self.images.iter().enumerate() {
            if !image_ids.insert(image.id) {
                return Err(Error::invalid(
                    path,
                    format!("images[{i}].id"),
                    format!("duplicate image id {}", image.id),
                ));
            }
        }
        let mut seen = HashSet::with_capacity(self.categories.len());
        for (i, cat) in self.categories.iter().enumerate() {
            if !seen.insert(cat.id) {
                return Err(Error::invalid(
                    path,
                    format!("categories[{i}].id"),
                    format!("duplicate category id {}", cat.id),
                ));
            }
            let k = cat.keypoints.len();
            // Without names the skeleton cannot be checked; pycocotools never reads it.
            if k == 0 {
                continue;
            }
            for (j, pair) in cat.skeleton.iter().enumerate() {
                if pair.iter().any(|&p| p == 0 || p > k) {
                    return Err(Error::invalid(
                        path,
                        format!("categories[{i}].skeleton[{j}]"),
                        format!("indices are 1-based and must be in 1..={k}, got {pair:?}"),
                    ));
                }
            }
        }
        let num_keypoints = self.category_keypoints();
        let mut ann_ids = HashSet::with_capacity(self.annotations.len());
        for (i, ann) in self.annotations.iter().enumerate() {
            let field = |name: &str| format!("annotations[{i}].{name}");
            if !ann_ids.insert(ann.id) {
                return Err(Error::invalid(
                    path,
                    field("id"),
                    format!("duplicate annotation id {}", ann.id),
                ));
            }
            if !image_ids.contains(&ann.image_id) {
                return Err(Error::invalid(
                    path,
                    field("image_id"),
                    format!("{} is not the id of an entry of `images`", ann.image_id),
                ));
            }
            let Some(&k) = num_keypoints.get(&ann.category_id) else {
                return Err(Error::invalid(
                    path,
                    field("category_id"),
                    format!(
                        "{} is not the id of an entry of `categories`",
                        ann.category_id
                    ),
                ));
            };
            // A category without names has the count of its first annotation (not 0: that one
            // has at least one annotation).
            let k = k.unwrap_or(0);
            if k == 0 {
                return Err(Error::invalid(
                    path,
                    field("keypoints"),
                    "a keypoint annotation needs at least one keypoint (x, y, v)",
                ));
            }
            check_keypoint_len(path, || field("keypoints"), &ann.keypoints, k)?;
            check_finite(path, || field("keypoints"), &ann.keypoints)?;
            for (j, v) in ann.keypoints.iter().skip(2).step_by(3).enumerate() {
                if !matches!(*v, 0.0 | 1.0 | 2.0) {
                    return Err(Error::invalid(
                        path,
                        format!("annotations[{i}].keypoints[{}]", 3 * j + 2),
                        format!("visibility flag must be 0, 1 or 2, got {v}"),
                    ));
                }
            }
            if ann.num_keypoints as usize > k {
                return Err(Error::invalid(
                    path,
                    field("num_keypoints"),
                    format!(
                        "{} is more than the category's {k} keypoints",
                        ann.num_keypoints
                    ),
                ));
            }
            check_box(path, || field("bbox"), &ann.bbox)?;
            if !ann.area.is_finite() || ann.area < 0.0 {
                return Err(Error::invalid(
                    path,
                    field("area"),
                    format!("must be a finite number >= 0, got {}", ann.area),
                ));
            }
        }
        Ok(())
    }

    /// Number of keypoints of each category whose count is known, by category id: the number
    /// of its keypoint names, or for a category without names, of its first annotation's
    /// keypoints (a category with neither is absent).
    pub fn keypoints_per_category(&self) -> HashMap<i64, usize> {
        self.category_keypoints()
            .into_iter()
            .filter_map(|(id, k)| Some((id, k?)))
            .collect()
    }

    /// Every category's keypoint count (see [`Self::keypoints_per_category`]), `None` where
    /// neither names nor annotations tell it.
    fn category_keypoints(&self) -> HashMap<i64, Option<usize>> {
        let mut counts: HashMap<i64, Option<usize>> = self
            .categories
            .iter()
            .map(|c| (c.id, (!c.keypoints.is_empty()).then_some(c.keypoints.len())))
            .collect();
        for ann in &self.annotations {
            if let Some(k @ None) = counts.get_mut(&ann.category_id) {
                *k = Some(ann.keypoints.len() / 3);
            }
        }
        counts
    }
}

/// The ground truth as [`CocoKeypointsGt::load_for_eval`] reads it.
#[derive(Deserialize)]
struct EvalGtFile {
    images: Vec<EvalImage>,
    annotations: Vec<CocoPersonAnnotation>,
    categories: Vec<CocoCategory>,
}

/// An image entry of which evaluation reads only the id.
#[derive(Deserialize)]
struct EvalImage {
    #[serde(deserialize_with = "deserialize_id")]
    id: i64,
    #[serde(default)]
    file_name: String,
    #[serde(default)]
    width: u32,
    #[serde(default)]
    height: u32,
}

/// Reads a detection results file (a JSON array of `{image_id, category_id, bbox, score}`).
pub fn load_detections(path: impl AsRef<Path>) -> Result<Vec<CocoDetection>> {
    let path = path.as_ref();
    let dets: Vec<CocoDetection> = parse_json(path, &read_file(path)?)?;
    for (i, det) in dets.iter().enumerate() {
        check_box(path, || format!("[{i}].bbox"), &det.bbox)?;
        check_score(path, i, det.score)?;
    }
    Ok(dets)
}

/// Checks that every detection is on an image of the ground truth, so that a top-down run on
/// the wrong detection file fails at once instead of producing results pycocotools rejects.
pub fn check_detection_images(
    path: &Path,
    detections: &[CocoDetection],
    gt: &CocoKeypointsGt,
) -> Result<()> {
    let images: HashSet<i64> = gt.images.iter().map(|im| im.id).collect();
    match detections
        .iter()
        .position(|d| !images.contains(&d.image_id))
    {
        Some(i) => Err(Error::invalid(
            path,
            format!("[{i}].image_id"),
            format!(
                "image {} is not in the ground truth",
                detections[i].image_id
            ),
        )),
        None => Ok(()),
    }
}

/// Reads a keypoint results file and checks it against the ground truth it will be evaluated
/// on (image ids, category ids, keypoint counts).
pub fn load_keypoint_results(
    path: impl AsRef<Path>,
    gt: &CocoKeypointsGt,
) -> Result<Vec<CocoKeypointResult>> {
    let path = path.as_ref();
    let results: Vec<CocoKeypointResult> = parse_json(path, &read_file(path)?)?;
    validate_keypoint_results(path, &results, gt)?;
    Ok(results)
}

/// [`load_keypoint_results`] on a document held in memory; `path` only names it in errors.
pub fn keypoint_results_from_slice(
    path: impl AsRef<Path>,
    bytes: &[u8],
    gt: &CocoKeypointsGt,
) -> Result<Vec<CocoKeypointResult>> {
    let path = path.as_ref();
    let results: Vec<CocoKeypointResult> = parse_json(path, bytes)?;
    validate_keypoint_results(path, &results, gt)?;
    Ok(results)
}

/// Checks keypoint results held in memory against a ground truth; `path` names them in errors.
///
/// Beyond shapes and finiteness this enforces two things pycocotools enforces only by crashing:
/// every image id is in the ground truth, and when the first result has a box, every result
/// has one (pycocotools then takes areas from boxes).
pub fn validate_keypoint_results(
    path: &Path,
    results: &[CocoKeypointResult],
    gt: &CocoKeypointsGt,
) -> Result<()> {
    let images: HashSet<i64> = gt.images.iter().map(|im| im.id).collect();
    let num_keypoints = gt.category_keypoints();
    let boxed = results.first().is_some_and(has_box);
    for (i, r) in results.iter().enumerate() {
        if !images.contains(&r.image_id) {
            return Err(Error::invalid(
                path,
                format!("[{i}].image_id"),
                format!("image {} is not in the ground truth", r.image_id),
            ));
        }
        let Some(&k) = num_keypoints.get(&r.category_id) else {
            return Err(Error::invalid(
                path,
                format!("[{i}].category_id"),
                format!("{} is not a category of the ground truth", r.category_id),
            ));
        };
        match k {
            Some(k) => check_keypoint_len(path, || format!("[{i}].keypoints"), &r.keypoints, k)?,
            // A category with neither names nor annotations: the evaluator checks the count
            // against its sigmas; pycocotools needs at least one (x, y, score) for the area.
            None if r.keypoints.is_empty() || !r.keypoints.len().is_multiple_of(3) => {
                return Err(Error::invalid(
                    path,
                    format!("[{i}].keypoints"),
                    format!(
                        "expected x, y, score triples, got {} numbers",
                        r.keypoints.len()
                    ),
                ))
            }
            None => {}
        }
        check_finite(path, || format!("[{i}].keypoints"), &r.keypoints)?;
        check_score(path, i, r.score)?;
        if let Some(b) = &r.bbox {
            if !b.is_empty() || boxed {
                let field = format!("[{i}].bbox");
                let b: [f64; 4] = b.as_slice().try_into().map_err(|_| {
                    Error::invalid(path, &field, format!("expected 4 numbers, got {}", b.len()))
                })?;
                check_box(path, || field.clone(), &b)?;
            }
        } else if boxed {
            return Err(Error::invalid(
                path,
                format!("[{i}].bbox"),
                "missing, but the first result has one (pycocotools then takes every \
                 result's area from its box)",
            ));
        }
    }
    Ok(())
}

fn has_box(r: &CocoKeypointResult) -> bool {
    r.bbox.as_ref().is_some_and(|b| !b.is_empty())
}

/// The area of each result as pycocotools' `loadRes` sets it, which decides whether an
/// unmatched result falls in the medium or large range: `w * h` of the box when the first
/// result has a non-empty box, else the extent of all keypoints (whatever their scores).
///
/// Results must have been validated (a result without a box when the first has one counts as
/// area 0 here).
pub fn result_areas(results: &[CocoKeypointResult]) -> Vec<f64> {
    if results.first().is_some_and(has_box) {
        results
            .iter()
            .map(|r| match r.bbox.as_deref() {
                Some([_, _, w, h]) => w * h,
                _ => 0.0,
            })
            .collect()
    } else {
        results
            .iter()
            .map(|r| keypoint_extent_area(&r.keypoints))
            .collect()
    }
}

fn keypoint_extent_area(keypoints: &[f64]) -> f64 {
    let mut x0 = f64::INFINITY;
    let mut x1 = f64::NEG_INFINITY;
    let mut y0 = f64::INFINITY;
    let mut y1 = f64::NEG_INFINITY;
    for p in keypoints.chunks_exact(3) {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    if x0 > x1 {
        return 0.0;
    }
    (x1 - x0) * (y1 - y0)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Writes keypoint results as a JSON array, refusing NaN and infinite values (JSON has no
/// spelling for them and serde_json would silently write `null`).
pub fn write_keypoint_results(
    path: impl AsRef<Path>,
    results: &[CocoKeypointResult],
) -> Result<()> {
    let path = path.as_ref();
    let text = keypoint_results_to_string(path, results)?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// The JSON text [`write_keypoint_results`] writes; `path` only names the output in errors.
pub fn keypoint_results_to_string(path: &Path, results: &[CocoKeypointResult]) -> Result<String> {
    for (i, r) in results.iter().enumerate() {
        check_finite(path, || format!("[{i}].keypoints"), &r.keypoints)?;
        check_score(path, i, r.score)?;
        for (name, v) in [
            ("bbox", &r.bbox),
            ("center", &r.center),
            ("scale", &r.scale),
        ] {
            if let Some(v) = v {
                check_finite(path, || format!("[{i}].{name}"), v)?;
            }
        }
        if !r.keypoints.len().is_multiple_of(3) {
            return Err(Error::invalid(
                path,
                format!("[{i}].keypoints"),
                format!(
                    "expected x, y, score triples, got {} numbers",
                    r.keypoints.len()
                ),
            ));
        }
    }
    serde_json::to_string(results)
        .map_err(|e| Error::parse(path, format!("cannot encode JSON: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Checks shared by the loaders

/// Parses JSON into `T`; on failure parses again tracking the path, so the error names the
/// field (`[12].keypoints[4]`) and says plainly when the cause is a NaN or infinity, which
/// Python's `json.dump` writes but JSON does not allow.
pub(crate) fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(_) => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Ok(_) => return Err(Error::parse(path, "invalid JSON")),
                Err(err) => err,
            };
            let field = err.path().to_string();
            let inner = err.into_inner();
            let message = match non_finite_token(bytes, &inner) {
                Some(token) => format!(
                    "{token} is not a valid JSON number (line {}, column {}); values must be finite",
                    inner.line(),
                    inner.column()
                ),
                None => inner.to_string(),
            };
            if field == "." || field.is_empty() {
                Err(Error::parse(path, message))
            } else {
                Err(Error::invalid(path, field, message))
            }
        }
    }
}

/// The NaN/Infinity token at the position of a syntax error, if that is what broke the parse.
fn non_finite_token(bytes: &[u8], err: &serde_json::Error) -> Option<&'static str> {
    if !err.is_syntax() || err.line() == 0 {
        return None;
    }
    let line_start = if err.line() == 1 {
        0
    } else {
        let mut seen = 1;
        let mut pos = None;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                seen += 1;
                if seen == err.line() {
                    pos = Some(i + 1);
                    break;
                }
            }
        }
        pos?
    };
    // serde_json reports the column of the last byte it read; look a little around it.
    let at = line_start + err.column().saturating_sub(1);
    let lo = at.saturating_sub(9);
    let window = bytes.get(lo..(at + 9).min(bytes.len()))?;
    ["-Infinity", "Infinity", "NaN"]
        .into_iter()
        .find(|token| window.windows(token.len()).any(|w| w == token.as_bytes()))
}

fn check_keypoint_len(
    path: &Path,
    field: impl Fn() -> String,
    values: &[f64],
    k: usize,
) -> Result<()> {
    if values.len() != 3 * k {
        return Err(Error::invalid(
            path,
            field(),
            format!(
                "expected {} numbers ({k} keypoints x 3), got {}",
                3 * k,
                values.len()
            ),
        ));
    }
    Ok(())
}

fn check_finite(path: &Path, field: impl Fn() -> String, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(j) => Err(Error::invalid(
            path,
            format!("{}[{j}]", field()),
            format!("must be a finite number, got {}", values[j]),
        )),
        None => Ok(()),
    }
}

/// Field names are built only on failure: formatting one per annotation would cost more than
/// the checks themselves on a 30,000-result file.
fn check_box(path: &Path, field: impl Fn() -> String, b: &[f64; 4]) -> Result<()> {
    check_finite(path, &field, b)?;
    if b[2] < 0.0 || b[3] < 0.0 {
        return Err(Error::invalid(
            path,
            field(),
            format!("width and height must be >= 0, got {} x {}", b[2], b[3]),
        ));
    }
    Ok(())
}

fn check_score(path: &Path, i: usize, score: f64) -> Result<()> {
    if !score.is_finite() {
        return Err(Error::invalid(
            path,
            format!("[{i}].score"),
            format!("must be a finite number, got {score}"),
        ));
    }
    Ok(())
}

/// COCO writes `iscrowd` as 0/1; some converters write booleans. Anything else is an error
/// rather than a guess.
fn deserialize_flag<'de, D: Deserializer<'de>>(de: D) -> std::result::Result<bool, D::Error> {
    struct Flag;
    impl serde::de::Visitor<'_> for Flag {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("0, 1, true or false")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> std::result::Result<bool, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
            }
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
            }
        }
    }
    de.deserialize_any(Flag)
}

/// An id: an integer, or a float with an integral value (`1.0`), which Python code writes when
/// an id went through a float and pycocotools accepts (`1.0 == 1`). `1.5`, strings and
/// integers beyond 64 bits are errors: pycocotools cannot match them to an image.
fn deserialize_id<'de, D: Deserializer<'de>>(de: D) -> std::result::Result<i64, D::Error> {
    struct Id;
    impl serde::de::Visitor<'_> for Id {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer id")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<i64, E> {
            i64::try_from(v)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<i64, E> {
            // 2^63 is exactly representable; every integral f64 below it converts exactly.
            if v.fract() == 0.0 && v >= -(2f64.powi(63)) && v < 2f64.powi(63) {
                Ok(v as i64)
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
            }
        }
    }
    de.deserialize_any(Id)
}

fn serialize_flag<S: serde::Serializer>(v: &bool, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u8(u8::from(*v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt_json() -> String {
        let kps: Vec<String> = (0..17).map(|i| format!("\"k{i}\"")).collect();
        let ann_kps = ["10", "20", "2"].repeat(17).join(",");
        format!(
            r#"{{"info": {{}}, "images": [{{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}}],
              "annotations": [{{"id": 5, "image_id": 1, "category_id": 1, "keypoints": [{ann_kps}],
                "num_keypoints": 17, "bbox": [1, 2, 30, 40], "area": 1000.5, "iscrowd": 0,
                "segmentation": [[1, 2, 3, 4, 5, 6]]}}],
              "categories": [{{"id": 1, "name": "person", "keypoints": [{}], "skeleton": [[1, 2]]}}]}}"#,
            kps.join(",")
        )
    }

    fn gt() -> CocoKeypointsGt {
        CocoKeypointsGt::from_slice("gt.json", gt_json().as_bytes()).unwrap()
    }

    fn result_json(body: &str) -> String {
        format!("[{body}]")
    }

    fn load_results(text: &str) -> Result<Vec<CocoKeypointResult>> {
        let path = Path::new("results.json");
        let results: Vec<CocoKeypointResult> = parse_json(path, text.as_bytes())?;
        validate_keypoint_results(path, &results, &gt())?;
        Ok(results)
    }

    fn kps(n: usize) -> String {
        vec!["1.5"; n].join(",")
    }

    #[test]
    fn parses_ground_truth() {
        let gt = gt();
        assert_eq!(gt.annotations[0].keypoints.len(), 51);
        assert!(!gt.annotations[0].iscrowd);
        assert!(matches!(
            gt.annotations[0].segmentation,
            Some(Segmentation::Polygons(_))
        ));
    }

    #[test]
    fn parses_crowd_rle() {
        let text = gt_json().replace(
            r#""iscrowd": 0,
                "segmentation": [[1, 2, 3, 4, 5, 6]]"#,
            r#""iscrowd": 1, "segmentation": {"counts": [3, 4, 5], "size": [480, 640]}"#,
        );
        let gt = CocoKeypointsGt::from_slice("gt.json", text.as_bytes()).unwrap();
        assert!(gt.annotations[0].iscrowd);
        assert!(matches!(
            gt.annotations[0].segmentation,
            Some(Segmentation::UncompressedRle { .. })
        ));
    }

    #[test]
    fn wrong_keypoint_count_names_field() {
        let text = result_json(&format!(
            r#"{{"image_id": 1, "category_id": 1, "keypoints": [{}], "score": 0.5}}"#,
            kps(48)
        ));
        let err = load_results(&text).unwrap_err().to_string();
        assert_eq!(
            err,
            "results.json: [0].keypoints: expected 51 numbers (17 keypoints x 3), got 48"
        );
    }

    #[test]
    fn missing_field_names_result() {
        let text = result_json(&format!(
            r#"{{"image_id": 1, "category_id": 1, "keypoints": [{}]}}"#,
            kps(51)
        ));
        let err = load_results(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("results.json: [0]: missing field `score`"),
            "{err}"
        );
    }

    #[test]
    fn nan_is_reported_with_its_field() {
        let text = result_json(&format!(
            r#"{{"image_id": 1, "category_id": 1, "keypoints": [1, NaN, {}], "score": 0.5}}"#,
            kps(49)
        ));
        let err = load_results(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("results.json: [0].keypoints[1]: NaN is not a valid JSON number"),
            "{err}"
        );
        let text = result_json(&format!(
            r#"{{"image_id": 1, "category_id": 1, "keypoints": [{}], "score": -Infinity}}"#,
            kps(51)
        ));
        let err = load_results(&text).unwrap_err().to_string();
        assert!(
            err.contains("[0].score: -Infinity is not a valid JSON number"),
            "{err}"
        );
    }

    #[test]
    fn unknown_image_is_an_error() {
        let text = result_json(&format!(
            r#"{{"image_id": 7, "category_id": 1, "keypoints": [{}], "score": 0.5}}"#,
            kps(51)
        ));
        let err = load_results(&text).unwrap_err().to_string();
        assert_eq!(
            err,
            "results.json: [0].image_id: image 7 is not in the ground truth"
        );
    }

    #[test]
    fn malformed_json_is_a_parse_error() {
        let err = load_results("[{\"image_id\": 1,").unwrap_err();
        assert!(
            matches!(err, Error::Parse { .. } | Error::Invalid { .. }),
            "{err}"
        );
        let err = load_results("{}").unwrap_err().to_string();
        assert!(err.starts_with("results.json: invalid type: map"), "{err}");
    }

    #[test]
    fn missing_box_after_boxed_first_result() {
        let one = |bbox: &str| {
            format!(
                r#"{{"image_id": 1, "category_id": 1, "keypoints": [{}], "score": 0.5{bbox}}}"#,
                kps(51)
            )
        };
        let text = result_json(&format!("{},{}", one(r#", "bbox": [0, 0, 2, 3]"#), one("")));
        let err = load_results(&text).unwrap_err().to_string();
        assert!(err.starts_with("results.json: [1].bbox: missing"), "{err}");
        let text = result_json(&format!(
            "{},{}",
            one(r#", "bbox": [0, 0, 2, 3]"#),
            one(r#", "bbox": [0, 0, 4, 5]"#)
        ));
        let results = load_results(&text).unwrap();
        assert_eq!(result_areas(&results), vec![6.0, 20.0]);
    }

    #[test]
    fn keypoint_area_is_the_extent() {
        let mut k = vec![0.0; 51];
        k[0] = 2.0; // x of the first point
        k[4] = 5.0; // y of the second point
        k[3] = -1.0;
        assert_eq!(keypoint_extent_area(&k), 3.0 * 5.0);
    }

    #[test]
    fn gt_validation_names_annotation_fields() {
        let text = gt_json().replace("\"num_keypoints\": 17", "\"num_keypoints\": 18");
        let err = CocoKeypointsGt::from_slice("gt.json", text.as_bytes())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "gt.json: annotations[0].num_keypoints: 18 is more than the category's 17 keypoints"
        );
        let text = gt_json().replace("\"image_id\": 1", "\"image_id\": 3");
        let err = CocoKeypointsGt::from_slice("gt.json", text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("annotations[0].image_id"), "{err}");
        let text = gt_json().replace("\"iscrowd\": 0", "\"iscrowd\": 2");
        let err = CocoKeypointsGt::from_slice("gt.json", text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("gt.json: annotations[0].iscrowd: invalid value"),
            "{err}"
        );
        let text = gt_json().replace("\"area\": 1000.5,", "");
        let err = CocoKeypointsGt::from_slice("gt.json", text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("gt.json: annotations[0]: missing field `area`"),
            "{err}"
        );
    }

    #[test]
    fn writer_round_trips_and_refuses_nan() {
        let pose = Pose::new(vec![crate::Keypoint::new(0.1, 2.0, 0.9); 17], 0.75);
        let mut r = CocoKeypointResult::from_pose(1, 1, &pose);
        r.file_name = Some("a.jpg".into());
        let text = keypoint_results_to_string(Path::new("out.json"), &[r.clone()]).unwrap();
        assert!(text.contains("[0.1,2.0,0.9,"), "{text}");
        let back = load_results(&text).unwrap();
        assert_eq!(back, vec![r.clone()]);
        r.keypoints[4] = f64::NAN;
        let err = keypoint_results_to_string(Path::new("out.json"), &[r])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "out.json: [0].keypoints[4]: must be a finite number, got NaN"
        );
    }

    #[test]
    fn detections_load_and_check_boxes() {
        let dir = std::env::temp_dir().join(format!("posekit-coco-det-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dets.json");
        std::fs::write(
            &path,
            r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}]"#,
        )
        .unwrap();
        assert_eq!(
            load_detections(&path).unwrap()[0].bbox,
            [1.0, 2.0, 3.0, 4.0]
        );
        std::fs::write(
            &path,
            r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, -3, 4], "score": 0.9}]"#,
        )
        .unwrap();
        let err = load_detections(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("dets.json: [0].bbox: width and height must be >= 0, got -3 x 4"),
            "{err}"
        );
        std::fs::write(
            &path,
            r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3], "score": 0.9}]"#,
        )
        .unwrap();
        let err = load_detections(&path).unwrap_err().to_string();
        assert!(
            err.contains("dets.json: [0].bbox: invalid length 3"),
            "{err}"
        );
        let dets = vec![CocoDetection {
            image_id: 2,
            category_id: 1,
            bbox: [0.0; 4],
            score: 0.5,
        }];
        let err = check_detection_images(&path, &dets, &gt())
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("dets.json: [0].image_id: image 2 is not in the ground truth"),
            "{err}"
        );
        let err = load_detections(dir.join("missing.json")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
