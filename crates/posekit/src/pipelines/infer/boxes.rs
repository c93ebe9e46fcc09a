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
//! Entries are matched to inputs by file name (the last path component). Entries whose
//! `category_id` is present and not 1 (person) are ignored, so a whole multi-class detection
//! file can be given; entries below the score threshold are dropped.

use std::collections::HashMap;
use std::path::Path;

use posekit_core::formats::coco::CocoKeypointsGt;
use posekit_core::Error;
use serde::Deserialize;

/// One person box in image pixels, `[x, y, w, h]`, with its detector score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PersonBox {
    pub bbox: [f64; 4],
    pub score: f32,
}

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

/// The boxes of a detection file, by image file name.
#[derive(Debug, Clone, Default)]
pub struct BoxIndex {
    by_file: HashMap<String, Vec<PersonBox>>,
    /// Entries read, and entries dropped by the score threshold (for the summary line).
    pub total: usize,
    pub below_threshold: usize,
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
        let entries: Vec<BoxEntry> =
            serde_json::from_slice(&bytes).map_err(|e| Error::json(path, e))?;
        let names: Option<HashMap<i64, &str>> = gt.map(|gt| {
            gt.images
                .iter()
                .map(|im| (im.id, im.file_name.as_str()))
                .collect()
        });
        let mut index = BoxIndex::default();
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
            if !bbox.iter().all(|v| v.is_finite()) || bbox[2] <= 0.0 || bbox[3] <= 0.0 {
                return Err(Error::invalid(
                    path,
                    field("bbox"),
                    format!("{bbox:?} has zero or negative area (or a non-finite value); a person box needs w > 0 and h > 0"),
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
                (Some(name), _) => name_only(&name),
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
            index.by_file.entry(file_name).or_default().push(PersonBox {
                bbox,
                score: score as f32,
            });
        }
        Ok(index)
    }

    /// The boxes of the image at `path` (matched by file name); empty when the detector found
    /// nobody there.
    pub fn for_image(&self, path: &Path) -> &[PersonBox] {
        let name = super::inputs::file_name_of(path);
        self.by_file.get(&name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Number of boxes kept.
    pub fn kept(&self) -> usize {
        self.by_file.values().map(Vec::len).sum()
    }
}

/// `dir/photo.jpg` and `photo.jpg` name the same input: matching is by the last component.
fn name_only(name: &str) -> String {
    super::inputs::file_name_of(Path::new(name))
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

    #[test]
    fn file_name_lists_and_coco_ids_with_gt() {
        let p = write(
            "plain.json",
            r#"[{"file_name": "imgs/a.jpg", "bbox": [1, 2, 30, 40], "score": 0.9},
                {"file_name": "a.jpg", "bbox": [5, 5, 10, 10], "score": 0.1},
                {"file_name": "b.png", "bbox": [0, 0, 5, 5]},
                {"file_name": "b.png", "bbox": [0, 0, 5, 5], "category_id": 3}]"#,
        );
        let index = BoxIndex::load(&p, None, 0.5).unwrap();
        assert_eq!(
            index.for_image(Path::new("/x/a.jpg")),
            &[PersonBox {
                bbox: [1.0, 2.0, 30.0, 40.0],
                score: 0.9
            }]
        );
        assert_eq!(index.for_image(Path::new("b.png")).len(), 1);
        assert!(index.for_image(Path::new("c.jpg")).is_empty());
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
            r#"{"images": [{"id": 7, "file_name": "seven.jpg", "width": 10, "height": 10}],
                "annotations": [], "categories": [{"id": 1, "name": "person", "keypoints": [], "skeleton": []}]}"#,
        )
        .unwrap();
        let index = BoxIndex::load(&coco, Some(&gt), 0.0).unwrap();
        assert_eq!(index.for_image(Path::new("seven.jpg")).len(), 1);
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
        let p = write("anon.json", r#"[{"bbox": [1, 2, 3, 4]}]"#);
        let err = BoxIndex::load(&p, None, 0.0).unwrap_err().to_string();
        assert!(err.contains("file_name"), "{err}");
    }
}
