//! COCO masks against pycocotools, bit for bit.
//!
//! `tests/data/masks/` (made by `tools/fixtures/make_mask_fixtures.py`) holds, for every
//! annotation of the real COCO-format files (coco-mini val/train 2017, mmpose's test_coco and
//! OCHuman), pycocotools' `annToRLE` string, `area` and decoded pixel moments, the RLE of each
//! polygon of multi-polygon annotations, ignore masks and intersections of a few images, and
//! synthetic polygons, boxes, merges and encodings that reach the corners of `maskApi.c`.
//! Comparing compressed strings compares the counts one to one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array2, Zip};
use posekit_core::formats::coco::CocoKeypointsGt;
use posekit_core::masks::{MaskError, Rle, Segmentation};
use serde::Deserialize;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Fixture shapes

#[derive(Deserialize)]
struct Expected {
    files: BTreeMap<String, FileExpected>,
    image_masks: Vec<ImageMask>,
}

#[derive(Deserialize)]
struct FileExpected {
    annotations: Vec<AnnotationExpected>,
    /// Annotation id -> `frPyObjects` string of each of its polygons.
    polygons: BTreeMap<i64, Vec<String>>,
}

#[derive(Deserialize)]
struct AnnotationExpected {
    id: i64,
    image_id: i64,
    size: [u32; 2],
    counts: String,
    area: u64,
    row_sum: u64,
    col_sum: u64,
}

#[derive(Deserialize)]
struct ImageMask {
    file: String,
    image_id: i64,
    op: String,
    ids: Vec<i64>,
    counts: String,
    area: u64,
}

/// The parts of a COCO file masks need, read with the library's `Segmentation` but without
/// the keypoint loader's checks, so that these tests judge the masks only.
#[derive(Deserialize)]
struct CocoFile {
    images: Vec<Image>,
    annotations: Vec<Annotation>,
}

#[derive(Deserialize)]
struct Image {
    id: i64,
    height: u32,
    width: u32,
}

#[derive(Deserialize)]
struct Annotation {
    id: i64,
    image_id: i64,
    segmentation: Option<Segmentation>,
}

struct Dataset {
    sizes: BTreeMap<i64, (u32, u32)>,
    annotations: BTreeMap<i64, Annotation>,
}

impl Dataset {
    fn load(name: &str) -> Dataset {
        let file: CocoFile = read_json(&data_dir().join(name));
        Dataset {
            sizes: file
                .images
                .iter()
                .map(|im| (im.id, (im.height, im.width)))
                .collect(),
            annotations: file.annotations.into_iter().map(|a| (a.id, a)).collect(),
        }
    }

    /// `annToRLE`.
    fn rle(&self, id: i64) -> Rle {
        let ann = &self.annotations[&id];
        let (h, w) = self.sizes[&ann.image_id];
        let segmentation = ann.segmentation.as_ref().expect("has a segmentation");
        segmentation
            .to_rle(h, w)
            .unwrap_or_else(|e| panic!("annotation {id}: {e}"))
    }
}

fn expected() -> Expected {
    read_json(&data_dir().join("masks/expected.json"))
}

/// Pixel count and sums of the row and column indices of the set pixels (the fixture's
/// `area`, `row_sum`, `col_sum` from pycocotools' `decode`).
fn moments(mask: &Array2<u8>) -> (u64, u64, u64) {
    let mut m = (0, 0, 0);
    for ((r, c), &v) in mask.indexed_iter() {
        if v != 0 {
            m.0 += 1;
            m.1 += r as u64;
            m.2 += c as u64;
        }
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Real annotations

#[test]
fn every_real_annotation_matches_pycocotools() {
    let expected = expected();
    let mut checked = 0;
    let mut kinds = BTreeMap::new();
    for (name, file) in &expected.files {
        let data = Dataset::load(name);
        assert_eq!(
            file.annotations.len(),
            data.annotations.len(),
            "{name}: every annotation has a segmentation"
        );
        for want in &file.annotations {
            let ann = &data.annotations[&want.id];
            assert_eq!(ann.image_id, want.image_id);
            let kind = match ann.segmentation.as_ref().unwrap() {
                Segmentation::Polygons(_) => "polygons",
                Segmentation::UncompressedRle { .. } => "uncompressed RLE",
                Segmentation::CompressedRle { .. } => "compressed RLE",
            };
            *kinds.entry(kind).or_insert(0) += 1;
            let rle = data.rle(want.id);
            let context = format!("{name} annotation {}", want.id);
            assert_eq!([rle.height(), rle.width()], want.size, "{context}");
            assert_eq!(rle.to_compressed(), want.counts, "{context}");
            assert_eq!(rle.area(), want.area, "{context}");
            // The expected string decodes to the same counts (the reader, checked on its own).
            let theirs = Rle::from_compressed(want.size[0], want.size[1], &want.counts).unwrap();
            assert_eq!(theirs.counts(), rle.counts(), "{context}");
            assert_eq!(
                moments(&rle.decode()),
                (want.area, want.row_sum, want.col_sum),
                "{context}: decoded mask"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 309);
    // All three spellings occur in the real files.
    assert_eq!(kinds.len(), 3, "{kinds:?}");
}

#[test]
fn each_polygon_of_multi_part_people_matches() {
    let expected = expected();
    let mut checked = 0;
    for (name, file) in &expected.files {
        let data = Dataset::load(name);
        for (id, want) in &file.polygons {
            let ann = &data.annotations[id];
            let (h, w) = data.sizes[&ann.image_id];
            let rles = ann.segmentation.as_ref().unwrap().to_rles(h, w).unwrap();
            let got: Vec<String> = rles.iter().map(Rle::to_compressed).collect();
            assert_eq!(&got, want, "{name} annotation {id}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} multi-polygon annotations");
}

#[test]
fn ignore_masks_and_intersections_match() {
    let expected = expected();
    let mut datasets = BTreeMap::new();
    let (mut unions, mut intersections) = (0, 0);
    for want in &expected.image_masks {
        let data = datasets
            .entry(want.file.clone())
            .or_insert_with(|| Dataset::load(&want.file));
        let rles: Vec<Rle> = want.ids.iter().map(|&id| data.rle(id)).collect();
        let got = match want.op.as_str() {
            "union" => {
                unions += 1;
                Rle::union(&rles).unwrap()
            }
            "intersection" => {
                intersections += 1;
                Rle::intersection(&rles).unwrap()
            }
            other => panic!("unknown op {other}"),
        };
        let context = format!(
            "{} image {} {} of {:?}",
            want.file, want.image_id, want.op, want.ids
        );
        assert_eq!(got.to_compressed(), want.counts, "{context}");
        assert_eq!(got.area(), want.area, "{context}");
    }
    assert!(
        unions >= 4 && intersections >= 4,
        "{unions} unions, {intersections} intersections"
    );
}

#[test]
fn annotations_loaded_as_ground_truth_give_the_same_masks() {
    let name = "masks/coco_mini_person_keypoints_val2017.json";
    let gt = CocoKeypointsGt::load(data_dir().join(name)).unwrap();
    let sizes: BTreeMap<i64, (u32, u32)> = gt
        .images
        .iter()
        .map(|im| (im.id, (im.height, im.width)))
        .collect();
    let expected = expected();
    let want: BTreeMap<i64, &AnnotationExpected> = expected.files[name]
        .annotations
        .iter()
        .map(|a| (a.id, a))
        .collect();
    let mut crowds = 0;
    for ann in &gt.annotations {
        let (h, w) = sizes[&ann.image_id];
        let rle = ann
            .segmentation_rle(h, w)
            .unwrap()
            .expect("has a segmentation");
        assert_eq!(
            rle.to_compressed(),
            want[&ann.id].counts,
            "annotation {}",
            ann.id
        );
        crowds += usize::from(ann.iscrowd);
    }
    assert_eq!(gt.annotations.len(), 118);
    assert_eq!(crowds, 1);
}

// ---------------------------------------------------------------------------------------------
// Malformed segmentations in a real file

/// coco-mini val with one annotation's segmentation replaced, loaded as ground truth, and the
/// error of its mask.
fn mask_error_after(edit: impl Fn(&mut serde_json::Value)) -> (i64, String) {
    let path = data_dir().join("masks/coco_mini_person_keypoints_val2017.json");
    let mut doc: serde_json::Value = read_json(&path);
    let ann = &mut doc["annotations"][3];
    edit(ann);
    let id = ann["id"].as_i64().unwrap();
    let gt = CocoKeypointsGt::from_slice("val.json", doc.to_string().as_bytes()).unwrap();
    let ann = gt.annotations.iter().find(|a| a.id == id).unwrap();
    let image = gt.images.iter().find(|im| im.id == ann.image_id).unwrap();
    let err = ann.segmentation_rle(image.height, image.width).unwrap_err();
    assert_eq!(err.annotation_id, id);
    (id, err.in_file("val.json").to_string())
}

#[test]
fn malformed_segmentations_name_the_annotation() {
    use serde_json::json;
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(Edit, &str)> =
        vec![
        (
            Box::new(|a| a["segmentation"][0].as_array_mut().unwrap().push(json!(3.5))),
            "coordinates, an odd number (x, y pairs expected; pycocotools would drop the last one)",
        ),
        (
            Box::new(|a| a["segmentation"] = json!([[1, 2, 3, 4]])),
            "polygon 0: has 2 point(s); a polygon needs at least 3",
        ),
        (Box::new(|a| a["segmentation"] = json!([])), "no polygons"),
        (
            Box::new(|a| a["segmentation"] = json!({"size": [480, 640], "counts": [5, 7]})),
            "but the image is",
        ),
        (
            Box::new(|a| a["segmentation"] = json!({"size": [1, 1], "counts": [-1, 2]})),
            "RLE size is 1x1",
        ),
        (
            Box::new(|a| a["segmentation"] = json!({"size": [1, 1], "counts": "1"})),
            "RLE size is 1x1",
        ),
    ];
    for (edit, message) in cases {
        let (id, err) = mask_error_after(edit);
        assert!(
            err.starts_with(&format!("val.json: annotation {id} segmentation: ")),
            "{err}"
        );
        assert!(err.contains(message), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
    // RLEs of the image's size whose counts are wrong.
    let path = data_dir().join("masks/coco_mini_person_keypoints_val2017.json");
    let doc: serde_json::Value = read_json(&path);
    let image_id = &doc["annotations"][3]["image_id"];
    let image = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|im| &im["id"] == image_id)
        .unwrap();
    let (h, w) = (
        image["height"].as_u64().unwrap(),
        image["width"].as_u64().unwrap(),
    );
    let rle = |counts: serde_json::Value| {
        move |a: &mut serde_json::Value| {
            a["segmentation"] = json!({"size": [h, w], "counts": counts.clone()});
        }
    };
    let ends_with = |counts: serde_json::Value, message: String| {
        let (id, err) = mask_error_after(rle(counts));
        assert_eq!(
            err,
            format!("val.json: annotation {id} segmentation: {message}")
        );
    };
    ends_with(
        json!([3, -4, h * w + 1]),
        "RLE count 1 is -4; counts are run lengths and cannot be negative".into(),
    );
    ends_with(
        json!([3, 4]),
        format!(
            "RLE counts add up to 7 pixels, but a {h}x{w} mask has {}",
            h * w
        ),
    );
    ends_with(
        json!("0i 0"),
        "compressed RLE: byte 2 is ' ', not one of the characters '0' to 'o' COCO writes".into(),
    );
    ends_with(
        json!("0i\u{7f}"),
        "compressed RLE: byte 2 is '\\u{7f}', not one of the characters '0' to 'o' COCO writes"
            .into(),
    );
    ends_with(
        json!("00P"),
        "compressed RLE: the string ends in the middle of count 2".into(),
    );
}

#[test]
fn wrong_json_types_in_a_segmentation_stop_the_load_naming_the_field() {
    let path = data_dir().join("masks/coco_mini_person_keypoints_val2017.json");
    let mut doc: serde_json::Value = read_json(&path);
    doc["annotations"][5]["segmentation"] = serde_json::json!([[1, "x", 3]]);
    let err = CocoKeypointsGt::from_slice("val.json", doc.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("val.json: annotations[5].segmentation"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Synthetic cases

#[derive(Deserialize)]
struct Synthetic {
    polygons: Vec<PolygonCase>,
    boxes: Vec<BoxCase>,
    merges: Vec<MergeCase>,
    encodes: Vec<EncodeCase>,
}

#[derive(Deserialize)]
struct PolygonCase {
    height: u32,
    width: u32,
    polygons: Vec<Vec<f64>>,
    rles: Vec<String>,
    merged: String,
    area: u64,
}

#[derive(Deserialize)]
struct BoxCase {
    height: u32,
    width: u32,
    bbox: [f64; 4],
    counts: String,
}

#[derive(Deserialize)]
struct MergeCase {
    height: u32,
    width: u32,
    inputs: Vec<Vec<u32>>,
    inputs_compressed: Vec<String>,
    /// `None` where pycocotools' own merge is unsound for these inputs.
    union: Option<String>,
    intersection: Option<String>,
}

#[derive(Deserialize)]
struct EncodeCase {
    rows: Vec<String>,
    counts: String,
}

fn synthetic() -> Synthetic {
    read_json(&data_dir().join("masks/synthetic.json"))
}

#[test]
fn synthetic_polygons_match_pycocotools() {
    let cases = synthetic().polygons;
    assert!(cases.len() >= 400);
    for (i, case) in cases.iter().enumerate() {
        let seg = Segmentation::Polygons(case.polygons.clone());
        let rles = seg.to_rles(case.height, case.width).unwrap();
        let got: Vec<String> = rles.iter().map(Rle::to_compressed).collect();
        assert_eq!(
            got, case.rles,
            "case {i}: {}x{} {:?}",
            case.height, case.width, case.polygons
        );
        let merged = seg.to_rle(case.height, case.width).unwrap();
        assert_eq!(merged.to_compressed(), case.merged, "case {i}");
        assert_eq!(merged.area(), case.area, "case {i}");
    }
}

#[test]
fn synthetic_boxes_match_pycocotools() {
    for case in synthetic().boxes {
        let rle = Rle::from_bbox(case.bbox, case.height, case.width).unwrap();
        assert_eq!(rle.to_compressed(), case.counts, "{:?}", case.bbox);
    }
}

#[test]
fn synthetic_merges_match_pycocotools_where_it_is_sound() {
    let (mut exact, mut pixelwise) = (0, 0);
    for (i, case) in synthetic().merges.iter().enumerate() {
        let rles: Vec<Rle> = case
            .inputs
            .iter()
            .map(|c| Rle::new(case.height, case.width, c.clone()).unwrap())
            .collect();
        let compressed: Vec<String> = rles.iter().map(Rle::to_compressed).collect();
        assert_eq!(compressed, case.inputs_compressed, "case {i}");
        let decoded: Vec<Array2<u8>> = rles.iter().map(Rle::decode).collect();
        for (op, want, got, combine) in [
            (
                "union",
                &case.union,
                Rle::union(&rles).unwrap(),
                (|a, b| a | b) as fn(u8, u8) -> u8,
            ),
            (
                "intersection",
                &case.intersection,
                Rle::intersection(&rles).unwrap(),
                |a, b| a & b,
            ),
        ] {
            match want {
                Some(want) => {
                    assert_eq!(&got.to_compressed(), want, "case {i} {op}");
                    exact += 1;
                }
                None => {
                    let mut pixels = decoded[0].clone();
                    for d in &decoded[1..] {
                        Zip::from(&mut pixels)
                            .and(d)
                            .for_each(|p, &q| *p = combine(*p, q));
                    }
                    assert_eq!(got.decode(), pixels, "case {i} {op}");
                    pixelwise += 1;
                }
            }
        }
    }
    assert!(
        exact >= 150 && pixelwise >= 20,
        "{exact} exact, {pixelwise} pixelwise"
    );
}

#[test]
fn synthetic_encodes_match_pycocotools() {
    for case in synthetic().encodes {
        let (h, w) = (case.rows.len(), case.rows[0].len());
        let mask = Array2::from_shape_fn((h, w), |(r, c)| case.rows[r].as_bytes()[c] - b'0');
        let rle = Rle::encode(mask.view()).unwrap();
        assert_eq!(rle.to_compressed(), case.counts, "{:?}", case.rows);
        assert_eq!(rle.decode(), mask);
    }
}

#[test]
fn mask_errors_convert_to_core_errors() {
    let err: posekit_core::Error = MaskError::MergeEmpty.into();
    assert_eq!(err.to_string(), "cannot merge an empty list of masks");
}
