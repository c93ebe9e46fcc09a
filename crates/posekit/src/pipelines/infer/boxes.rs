//! Person boxes for top-down models, read from a detector's output (`--boxes det.json`).
//!
//! Two spellings are accepted in one JSON array, because users have one or the other:
//! * COCO detection results, `{"image_id": 397133, "category_id": 1, "bbox": [x, y, w, h],
//!   "score": 0.99}`, as mmdetection and the HRNet repository's `COCO_val2017_detections_*.json`
//!   write them. The `image_id` is a COCO id, so the ground truth (`--gt`) is needed to know
//!   which file it is;
//! * a plain list, `{"file_name": "photo.jpg", "bbox": [x, y, w, h], "score": 0.9}`, for a
//!   detector run outside COCO. `score` may be left out (1).
//!
//! Entries are matched to inputs by file name (the last path component); when several inputs
//! share that name, by the longest common tail of the paths (`a/x.jpg` picks `photos/a/x.jpg`
//! over `photos/b/x.jpg`), and a name that still fits several inputs is an error. Entries whose
//! `category_id` is present and not 1 (person) are ignored, so a whole multi-class detection
//! file can be given; entries below the score threshold are dropped.
//!
//! Boxes are checked twice before any network runs: when the file is read (four finite
//! numbers, positive width and height) and when matched to the pictures (the box overlaps its
//! picture and is at most [`MAX_BOX_TO_PICTURE`] times its size), so a box that would
//! overflow the crop geometry stops the run before its first picture, not in the middle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use posekit_core::formats::coco::CocoKeypointsGt;
use posekit_core::Error;
use serde::Deserialize;

use super::inputs::{canonical, Input, InputKind};

/// Pixel values beyond this are no box of a real picture (and would overflow the geometry).
pub const MAX_COORDINATE: f64 = 1e7;

/// A box may be at most this many times its picture's width and height: larger ones are no
/// person in that picture (and `1e308` would overflow the crop's scale padding).
pub const MAX_BOX_TO_PICTURE: f64 = 10.0;

pub use crate::estimator::PersonBox;

#[derive(Debug, Deserialize)]
struct BoxEntry {
    #[serde(default)]
    image_id: Option<i64>,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    category_id: Option<i64>,
    bbox: Vec<f64>,
    #[serde(default)]
    score: Option<f64>,
}

/// One kept entry of a box file: where it came from, for error messages.
#[derive(Debug, Clone)]
struct KeptBox {
    /// Index in the file's array.
    entry: usize,
    /// The image's name as the file spells it (`file_name`, or the ground truth's).
    file_name: String,
    person: PersonBox,
}

/// The boxes of a detection file.
#[derive(Debug, Clone, Default)]
pub struct BoxIndex {
    path: PathBuf,
    boxes: Vec<KeptBox>,
    /// Entries read, and entries dropped by the score threshold (for the summary line).
    pub total: usize,
    pub below_threshold: usize,
}

/// The boxes of each input of a run, in input order (videos get none: every frame is one
/// person), and what in the file fitted no input.
#[derive(Debug, Clone, Default)]
pub struct BoxAssignment {
    by_input: Vec<Vec<PersonBox>>,
    /// The file names of boxes that match no input (each once), for a warning.
    pub unmatched_names: Vec<String>,
    /// How many kept boxes those are.
    pub unmatched_boxes: usize,
}

impl BoxAssignment {
    /// The boxes of input number `i`; empty when the detector found nobody there.
    pub fn for_input(&self, i: usize) -> &[PersonBox] {
        self.by_input.get(i).map(Vec::as_slice).unwrap_or(&[])
    }
}

impl BoxIndex {
    /// Reads `path`; `gt` maps COCO image ids to file names. A malformed entry is an error
    /// naming the file and the field, never a silently skipped person.
    pub fn load(
        path: &Path,
        gt: Option<&CocoKeypointsGt>,
        score_threshold: f64,
    ) -> posekit_core::Result<Self> {
        let bytes = posekit_core::error::read_file(path)?;
        Self::from_slice(path, &bytes, gt, score_threshold)
    }

    /// [`BoxIndex::load`] on the bytes of a file held in memory; `path` names it in errors.
    pub fn from_slice(
        path: &Path,
        bytes: &[u8],
        gt: Option<&CocoKeypointsGt>,
        score_threshold: f64,
    ) -> posekit_core::Result<Self> {
        let entries: Vec<BoxEntry> =
            serde_json::from_slice(bytes).map_err(|e| Error::json(path, e))?;
        let names: Option<HashMap<i64, &str>> = gt.map(|gt| {
            gt.images
                .iter()
                .map(|im| (im.id, im.file_name.as_str()))
                .collect()
        });
        let mut index = BoxIndex {
            path: path.to_path_buf(),
            ..BoxIndex::default()
        };
        for (i, entry) in entries.into_iter().enumerate() {
            if entry.category_id.is_some_and(|c| c != 1) {
                continue;
            }
            let field = |name: &str| format!("[{i}].{name}");
            let bbox: [f64; 4] = entry.bbox.as_slice().try_into().map_err(|_| {
                Error::invalid(
                    path,
                    field("bbox"),
                    format!("expected [x, y, w, h], got {} numbers", entry.bbox.len()),
                )
            })?;
            if !bbox
                .iter()
                .all(|v| v.is_finite() && v.abs() <= MAX_COORDINATE)
                || bbox[2] <= 0.0
                || bbox[3] <= 0.0
            {
                return Err(Error::invalid(
                    path,
                    field("bbox"),
                    format!(
                        "{bbox:?}: a person box needs w > 0 and h > 0 and finite pixel values \
                         within {MAX_COORDINATE:e}"
                    ),
                ));
            }
            let score = entry.score.unwrap_or(1.0);
            if !score.is_finite() {
                return Err(Error::invalid(
                    path,
                    field("score"),
                    "is not a finite number",
                ));
            }
            let file_name = match (entry.file_name, entry.image_id) {
                (Some(name), _) => name,
                (None, Some(id)) => match &names {
                    Some(names) => match names.get(&id) {
                        Some(name) => name.to_string(),
                        None => {
                            return Err(Error::invalid(
                                path,
                                field("image_id"),
                                format!("image {id} is not in the ground truth (--gt)"),
                            ))
                        }
                    },
                    None => return Err(Error::invalid(
                        path,
                        field("image_id"),
                        "a COCO image id needs the ground truth that names its file: pass --gt \
                             person_keypoints_*.json, or give each entry a `file_name`",
                    )),
                },
                (None, None) => {
                    return Err(Error::invalid(
                        path,
                        format!("[{i}]"),
                        "needs a `file_name` or an `image_id`",
                    ));
                }
            };
            index.total += 1;
            if score < score_threshold {
                index.below_threshold += 1;
                continue;
            }
            index.boxes.push(KeptBox {
                entry: i,
                file_name,
                person: PersonBox {
                    bbox,
                    score: score as f32,
                },
            });
        }
        Ok(index)
    }

    /// Number of boxes kept.
    pub fn kept(&self) -> usize {
        self.boxes.len()
    }

    /// Matches the boxes to the pictures among `inputs` (see the module documentation) and
    /// checks each against its picture's size (read from the file's header). Errors: boxes
    /// that fit no input at all (a box file for other pictures would otherwise give "0 people"
    /// everywhere), a name that fits several inputs equally, a box that does not fit its
    /// picture.
    pub fn assign(&self, inputs: &[Input]) -> posekit_core::Result<BoxAssignment> {
        let pictures: Vec<(usize, Vec<String>)> = inputs
            .iter()
            .enumerate()
            .filter(|(_, input)| input.kind == InputKind::Image)
            .map(|(i, input)| (i, path_parts(&canonical(&input.path))))
            .collect();
        let mut assignment = BoxAssignment {
            by_input: vec![Vec::new(); inputs.len()],
            ..BoxAssignment::default()
        };
        let mut matched_any = false;
        let mut sizes: HashMap<usize, Option<(u32, u32)>> = HashMap::new();
        for kept in &self.boxes {
            let field = format!("[{}].file_name", kept.entry);
            let Some(i) = self.match_picture(&pictures, kept, &field)? else {
                if !assignment.unmatched_names.contains(&kept.file_name) {
                    assignment.unmatched_names.push(kept.file_name.clone());
                }
                assignment.unmatched_boxes += 1;
                continue;
            };
            matched_any = true;
            let size = *sizes
                .entry(i)
                .or_insert_with(|| image::image_dimensions(&inputs[i].path).ok());
            if let Some((w, h)) = size {
                check_fits(&self.path, kept, &inputs[i], w as f64, h as f64)?;
            }
            assignment.by_input[i].push(kept.person);
        }
        if !matched_any && !self.boxes.is_empty() {
            let names: Vec<&str> = assignment
                .unmatched_names
                .iter()
                .take(3)
                .map(String::as_str)
                .collect();
            return Err(Error::invalid(
                &self.path,
                "file_name",
                format!(
                    "none of its {} boxes names one of the input pictures (it names {}{}); \
                     give the pictures the boxes were detected on",
                    self.boxes.len(),
                    names.join(", "),
                    if assignment.unmatched_names.len() > 3 {
                        ", ..."
                    } else {
                        ""
                    }
                ),
            ));
        }
        Ok(assignment)
    }

    /// The input whose picture `kept` names, `None` when no picture has its file name.
    fn match_picture(
        &self,
        pictures: &[(usize, Vec<String>)],
        kept: &KeptBox,
        field: &str,
    ) -> posekit_core::Result<Option<usize>> {
        let wanted = path_parts(Path::new(&kept.file_name));
        let Some(base) = wanted.last() else {
            return Ok(None);
        };
        let common_tail = |parts: &[String]| {
            parts
                .iter()
                .rev()
                .zip(wanted.iter().rev())
                .take_while(|(a, b)| a == b)
                .count()
        };
        let candidates: Vec<(usize, usize)> = pictures
            .iter()
            .filter(|(_, parts)| parts.last() == Some(base))
            .map(|(i, parts)| (*i, common_tail(parts)))
            .collect();
        let Some(best) = candidates.iter().map(|c| c.1).max() else {
            return Ok(None);
        };
        let best_inputs: Vec<usize> = candidates
            .iter()
            .filter(|c| c.1 == best)
            .map(|c| c.0)
            .collect();
        if best_inputs.len() > 1 {
            return Err(Error::invalid(
                &self.path,
                field,
                format!(
                    "`{}` fits {} input pictures equally; give the boxes' file_name with the \
                     folder that tells them apart",
                    kept.file_name,
                    best_inputs.len()
                ),
            ));
        }
        Ok(best_inputs.first().copied())
    }
}

/// The named components of a path, separated by slashes or backslashes (detector files come
/// from any system).
fn path_parts(path: &Path) -> Vec<String> {
    path.to_string_lossy()
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
        .map(str::to_string)
        .collect()
}

/// A person box must overlap its picture and be at most [`MAX_BOX_TO_PICTURE`] times its
/// size.
fn check_fits(
    file: &Path,
    kept: &KeptBox,
    input: &Input,
    width: f64,
    height: f64,
) -> posekit_core::Result<()> {
    let [x, y, w, h] = kept.person.bbox;
    let overlaps = x < width && y < height && x + w > 0.0 && y + h > 0.0;
    let sane = w <= MAX_BOX_TO_PICTURE * width && h <= MAX_BOX_TO_PICTURE * height;
    if overlaps && sane {
        return Ok(());
    }
    Err(Error::invalid(
        file,
        format!("[{}].bbox", kept.entry),
        format!(
            "{:?} does not fit {} ({width}x{height}): a person box must overlap its picture and \
             be at most {MAX_BOX_TO_PICTURE} times its size",
            kept.person.bbox,
            input.path.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("posekit-infer-boxes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Real pictures of the given sizes under a scratch folder, expanded as a run's inputs.
    fn pictures(files: &[(&str, u32, u32)]) -> Vec<Input> {
        let dir =
            std::env::temp_dir().join(format!("posekit-infer-boxes-pics-{}", std::process::id()));
        let mut paths = Vec::new();
        for (name, w, h) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            image::RgbImage::new(*w, *h).save(&path).unwrap();
            paths.push(path);
        }
        super::super::inputs::expand_inputs(&paths).unwrap()
    }

    #[test]
    fn file_name_lists_and_coco_ids_with_gt() {
        let inputs = pictures(&[
            ("m/a.png", 100, 80),
            ("m/b.png", 50, 50),
            ("m/c.png", 50, 50),
        ]);
        let p = write(
            "plain.json",
            r#"[{"file_name": "imgs/a.png", "bbox": [1, 2, 30, 40], "score": 0.9},
                {"file_name": "a.png", "bbox": [5, 5, 10, 10], "score": 0.1},
                {"file_name": "b.png", "bbox": [0, 0, 5, 5]},
                {"file_name": "b.png", "bbox": [0, 0, 5, 5], "category_id": 3}]"#,
        );
        let index = BoxIndex::load(&p, None, 0.5).unwrap();
        let assigned = index.assign(&inputs).unwrap();
        assert_eq!(
            assigned.for_input(0),
            &[PersonBox {
                bbox: [1.0, 2.0, 30.0, 40.0],
                score: 0.9
            }]
        );
        assert_eq!(assigned.for_input(1).len(), 1);
        assert!(assigned.for_input(2).is_empty());
        assert_eq!(
            (index.total, index.below_threshold, index.kept()),
            (3, 1, 2)
        );

        let coco = write(
            "coco.json",
            r#"[{"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.8}]"#,
        );
        let err = BoxIndex::load(&coco, None, 0.0).unwrap_err().to_string();
        assert!(
            err.contains("[0].image_id") && err.contains("--gt"),
            "{err}"
        );
        let gt: CocoKeypointsGt = serde_json::from_str(
            r#"{"images": [{"id": 7, "file_name": "c.png", "width": 50, "height": 50}],
                "annotations": [], "categories": [{"id": 1, "name": "person", "keypoints": [], "skeleton": []}]}"#,
        )
        .unwrap();
        let index = BoxIndex::load(&coco, Some(&gt), 0.0).unwrap();
        assert_eq!(index.assign(&inputs).unwrap().for_input(2).len(), 1);
    }

    #[test]
    fn boxes_that_name_no_input_or_several_or_do_not_fit_are_errors() {
        let inputs = pictures(&[
            ("n/A/x.png", 100, 80),
            ("n/B/x.png", 100, 80),
            ("n/y.png", 64, 48),
        ]);
        // Some boxes for other pictures: kept aside for a warning.
        let p = write(
            "partly.json",
            r#"[{"file_name": "y.png", "bbox": [1, 2, 30, 40]},
                {"file_name": "other.jpg", "bbox": [1, 2, 3, 4]}]"#,
        );
        let assigned = BoxIndex::load(&p, None, 0.0)
            .unwrap()
            .assign(&inputs)
            .unwrap();
        assert_eq!(assigned.for_input(2).len(), 1);
        assert_eq!(assigned.unmatched_names, ["other.jpg"]);
        assert_eq!(assigned.unmatched_boxes, 1);
        // Only boxes for other pictures: an error, not "0 people".
        let p = write(
            "nobody.json",
            r#"[{"file_name": "nobody.jpg", "bbox": [10, 10, 100, 200]}]"#,
        );
        let err = BoxIndex::load(&p, None, 0.0)
            .unwrap()
            .assign(&inputs)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nobody.json") && err.contains("nobody.jpg"),
            "{err}"
        );
        // `x.png` fits both folders; `A/x.png` only one.
        let p = write(
            "ambiguous.json",
            r#"[{"file_name": "x.png", "bbox": [1, 1, 5, 5]}]"#,
        );
        let err = BoxIndex::load(&p, None, 0.0)
            .unwrap()
            .assign(&inputs)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[0].file_name") && err.contains("2 input pictures"),
            "{err}"
        );
        let p = write(
            "qualified.json",
            r#"[{"file_name": "A/x.png", "bbox": [1, 1, 5, 5]}]"#,
        );
        let assigned = BoxIndex::load(&p, None, 0.0)
            .unwrap()
            .assign(&inputs)
            .unwrap();
        assert_eq!(
            (assigned.for_input(0).len(), assigned.for_input(1).len()),
            (1, 0)
        );
        // A box far larger than its picture, or beside it, stops the run before any work.
        for (name, bbox) in [
            ("huge.json", "[0, 0, 5000, 5000]"),
            ("beside.json", "[500, 10, 20, 20]"),
        ] {
            let p = write(
                name,
                &format!(r#"[{{"file_name": "y.png", "bbox": {bbox}}}]"#),
            );
            let err = BoxIndex::load(&p, None, 0.0)
                .unwrap()
                .assign(&inputs)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(name) && err.contains("[0].bbox") && err.contains("64x48"),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_boxes_are_errors_naming_the_field() {
        let p = write(
            "zero.json",
            r#"[{"file_name": "a.jpg", "bbox": [1, 2, 0, 40]}]"#,
        );
        let err = BoxIndex::load(&p, None, 0.0).unwrap_err().to_string();
        assert!(
            err.contains("zero.json") && err.contains("[0].bbox") && err.contains("zero"),
            "{err}"
        );
        let p = write(
            "short.json",
            r#"[{"file_name": "a.jpg", "bbox": [1, 2, 3]}]"#,
        );
        let err = BoxIndex::load(&p, None, 0.0).unwrap_err().to_string();
        assert!(err.contains("[0].bbox"), "{err}");
        let p = write("broken.json", r#"[{"file_name": "a.jpg", "bbox": [1, 2"#);
        let err = BoxIndex::load(&p, None, 0.0).unwrap_err().to_string();
        assert!(err.contains("broken.json"), "{err}");
        // 1e308 is finite, but its far corner is not.
        let p = write(
            "overflow.json",
            r#"[{"file_name": "a.jpg", "bbox": [100, 50, 1e308, 1e308]}]"#,
        );
        let err = BoxIndex::load(&p, None, 0.0).unwrap_err().to_string();
        assert!(
            err.contains("overflow.json") && err.contains("[0].bbox"),
            "{err}"
        );
        let p = write("anon.json", r#"[{"bbox": [1, 2, 3, 4]}]"#);
        let err = BoxIndex::load(&p, None, 0.0).unwrap_err().to_string();
        assert!(err.contains("file_name"), "{err}");
    }
}
