//! MPII Human Pose files: the PCKh ground truth (`gt_valid.mat`), the HRNet/MMPose annotation
//! JSON, and the prediction file `posekit eval mpii` scores.
//!
//! MPII coordinates are MATLAB's: 1-based pixels (the centre of the top-left pixel is (1, 1)).
//! The ground truth and the prediction file both use them, so the evaluation compares them
//! as they are. HRNet/MMPose code works in 0-based pixels and adds 1 to its predictions before
//! scoring; whoever writes a prediction file from 0-based outputs must do the same.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::mat::MatFile;
use crate::error::{Error, Result};

/// MPII has 16 joints.
pub const MPII_NUM_JOINTS: usize = 16;

/// The joint names of `dataset_joints` in the standard `gt_valid.mat`, in its order (the order
/// of the MPII-16 layout): right ankle, knee, hip, left hip, knee, ankle, pelvis, thorax, upper
/// neck, head top, right wrist, elbow, shoulder, left shoulder, elbow, wrist.
pub const MPII_MAT_JOINT_NAMES: [&str; MPII_NUM_JOINTS] = [
    "rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head", "rwri", "relb",
    "rsho", "lsho", "lelb", "lwri",
];

/// An (x, y) position in MPII's 1-based pixels.
pub type Point = [f64; 2];

/// One evaluated person of the PCKh ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct MpiiGtPerson {
    /// Joint positions in `dataset_joints` order; meaningless where `missing` is set.
    pub joints: [Point; MPII_NUM_JOINTS],
    /// Joints without an annotation; they count neither as hits nor as misses.
    pub missing: [bool; MPII_NUM_JOINTS],
    /// Two opposite corners of the annotated head rectangle.
    pub head_box: [Point; 2],
}

impl MpiiGtPerson {
    /// PCKh's normaliser: 60% of the head box diagonal (the `SC_BIAS` of the MPII toolkit,
    /// which turns the diagonal into roughly the head segment length).
    pub fn head_size(&self) -> f64 {
        let dx = self.head_box[1][0] - self.head_box[0][0];
        let dy = self.head_box[1][1] - self.head_box[0][1];
        HEAD_SIZE_SCALE * (dx * dx + dy * dy).sqrt()
    }
}

/// The `SC_BIAS` of the MPII evaluation: head size = this x head-box diagonal.
pub const HEAD_SIZE_SCALE: f64 = 0.6;

/// The PCKh ground truth of the `gt_valid.mat` layout (what HRNet and MMPose evaluate against):
/// `dataset_joints` (1x16 cell of names), `jnt_missing` (16xN), `pos_gt_src` (16x2xN) and
/// `headboxes_src` (2x2xN).
#[derive(Debug, Clone, PartialEq)]
pub struct MpiiGroundTruth {
    /// The file it came from, for error messages about how predictions fit it.
    pub path: PathBuf,
    /// `dataset_joints`: the name of each joint index.
    pub joint_names: Vec<String>,
    pub persons: Vec<MpiiGtPerson>,
}

/// The variables of `gt_valid.mat` that [`MpiiGroundTruth::from_mat`] reads.
const GT_VARIABLES: [&str; 4] = [
    "dataset_joints",
    "jnt_missing",
    "pos_gt_src",
    "headboxes_src",
];

impl MpiiGroundTruth {
    /// Reads a `gt_valid.mat`-layout file.
    pub fn from_mat_file(path: impl AsRef<Path>) -> Result<Self> {
        // Only the four variables the evaluation reads are parsed; anything else in the file is
        // skipped without being inflated (issue 7: a deflated 20000x20000 double beside them).
        Self::from_mat(&MatFile::open_variables(path, &GT_VARIABLES)?)
    }

    /// Interprets a parsed MAT file, checking every shape and value; errors name the variable.
    pub fn from_mat(mat: &MatFile) -> Result<Self> {
        let path = mat.path();
        let invalid = |var: &str, message: String| Error::invalid(path, var, message);

        let joint_names = mat.require_strings("dataset_joints")?;
        if joint_names.len() != MPII_NUM_JOINTS {
            return Err(invalid(
                "dataset_joints",
                format!(
                    "expected {MPII_NUM_JOINTS} joint names, found {}",
                    joint_names.len()
                ),
            ));
        }
        // The evaluation finds joints by name, as the reference code does, so every standard
        // name must be present exactly once (any order).
        for name in MPII_MAT_JOINT_NAMES {
            let count = joint_names.iter().filter(|n| *n == name).count();
            if count != 1 {
                return Err(invalid(
                    "dataset_joints",
                    format!(
                        "joint name '{name}' appears {count} times (expected once; the names are \
                         {joint_names:?})"
                    ),
                ));
            }
        }

        let (missing_dims, missing) = numeric_with_shape(mat, "jnt_missing", &[Some(16), None])?;
        let n = missing_dims[1];
        if n == 0 {
            return Err(invalid(
                "jnt_missing",
                "the ground truth has no persons (16x0)".into(),
            ));
        }
        let (_, joints) = numeric_with_shape(mat, "pos_gt_src", &[Some(16), Some(2), Some(n)])?;
        let (_, boxes) = numeric_with_shape(mat, "headboxes_src", &[Some(2), Some(2), Some(n)])?;

        let mut persons = Vec::with_capacity(n);
        for p in 0..n {
            let mut person = MpiiGtPerson {
                joints: [[0.0; 2]; MPII_NUM_JOINTS],
                missing: [false; MPII_NUM_JOINTS],
                head_box: [[0.0; 2]; 2],
            };
            for j in 0..MPII_NUM_JOINTS {
                // jnt_missing(j, p), pos_gt_src(j, c, p), column-major, reported 1-based as in
                // MATLAB.
                let flag = missing[j + 16 * p];
                person.missing[j] = match flag {
                    0.0 => false,
                    1.0 => true,
                    other => {
                        return Err(invalid(
                            "jnt_missing",
                            format!("element ({}, {}) is {other}, expected 0 or 1", j + 1, p + 1),
                        ))
                    }
                };
                for c in 0..2 {
                    person.joints[j][c] = joints[j + 16 * (c + 2 * p)];
                }
                if !person.missing[j] && !person.joints[j].iter().all(|v| v.is_finite()) {
                    return Err(invalid(
                        "pos_gt_src",
                        format!(
                            "joint ({}, :, {}) is annotated but not finite: {:?}",
                            j + 1,
                            p + 1,
                            person.joints[j]
                        ),
                    ));
                }
            }
            for corner in 0..2 {
                for c in 0..2 {
                    person.head_box[corner][c] = boxes[corner + 2 * (c + 2 * p)];
                }
            }
            // A person with annotated joints needs a usable head size, or every joint would be
            // a silent miss (division by zero in the reference code).
            if person.missing.iter().any(|m| !m) {
                let size = person.head_size();
                if !(size.is_finite() && size > 0.0) {
                    return Err(invalid(
                        "headboxes_src",
                        format!(
                            "head box (:, :, {}) = {:?} gives head size {size}; it must be finite \
                             and positive",
                            p + 1,
                            person.head_box
                        ),
                    ));
                }
            }
            persons.push(person);
        }
        Ok(MpiiGroundTruth {
            path: path.to_path_buf(),
            joint_names,
            persons,
        })
    }

    /// The index of a joint by its `dataset_joints` name.
    pub fn joint_index(&self, name: &str) -> Option<usize> {
        self.joint_names.iter().position(|n| n == name)
    }
}

/// A numeric variable whose dimensions (trailing singletons ignored) match `expected`
/// (`None` = any); returns the dimensions and the column-major values.
fn numeric_with_shape<'m>(
    mat: &'m MatFile,
    name: &str,
    expected: &[Option<usize>],
) -> Result<(Vec<usize>, &'m [f64])> {
    let (_, data) = mat.require_numeric(name)?;
    let array = mat.require(name)?;
    let dims = array.dims_as(expected.len());
    let fits = dims.as_ref().is_some_and(|d| {
        d.iter()
            .zip(expected)
            .all(|(&got, want)| want.is_none_or(|w| w == got))
    });
    match dims {
        Some(dims) if fits => Ok((dims, &data.real)),
        _ => {
            let want: Vec<String> = expected
                .iter()
                .map(|w| w.map_or("N".to_string(), |w| w.to_string()))
                .collect();
            Err(Error::invalid(
                mat.path(),
                name,
                format!(
                    "expected dimensions {} (N persons, the same in every variable), found {}",
                    want.join("x"),
                    array
                        .dims
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("x")
                ),
            ))
        }
    }
}

/// One entry of the HRNet/MMPose MPII annotation JSON (`train.json`, `valid.json`,
/// `test.json`): a person in an image, with the person's rough centre and scale, and (except in
/// the test split) the 16 joints in 1-based pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct MpiiAnnotation {
    pub image: String,
    /// Rough person centre; MPII writes -1 where it is unknown.
    pub center: Point,
    /// Person height / 200 px (MPII's convention).
    pub scale: f64,
    /// Joints and their visibility flags; absent in the test split, which has no labels.
    pub joints: Option<[Point; MPII_NUM_JOINTS]>,
    /// 1 = labelled, 0 = not labelled.
    pub joints_vis: Option<[bool; MPII_NUM_JOINTS]>,
}

/// The raw JSON shape. Numbers are read as JSON values and checked by hand so that an error
/// says which entry and which joint is wrong.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnnotation {
    image: String,
    center: Vec<Value>,
    scale: Value,
    #[serde(default)]
    joints: Option<Vec<Value>>,
    #[serde(default)]
    joints_vis: Option<Vec<Value>>,
}

/// Reads an MPII annotation JSON file.
pub fn read_mpii_annotations(path: impl AsRef<Path>) -> Result<Vec<MpiiAnnotation>> {
    let path = path.as_ref();
    let bytes = crate::error::read_file(path)?;
    parse_mpii_annotations(path, &bytes)
}

/// Parses MPII annotation JSON; `path` names the file in errors.
pub fn parse_mpii_annotations(path: &Path, bytes: &[u8]) -> Result<Vec<MpiiAnnotation>> {
    let raw: Vec<RawAnnotation> =
        serde_json::from_slice(bytes).map_err(|e| Error::json(path, e))?;
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let field = |name: &str| format!("[{i}].{name}");
            let invalid = |name: &str, message: String| Error::invalid(path, field(name), message);
            if r.image.is_empty() {
                return Err(invalid("image", "empty image name".into()));
            }
            let center = point(&r.center).map_err(|m| invalid("center", m))?;
            let scale = finite(&r.scale).map_err(|m| invalid("scale", m))?;
            if scale <= 0.0 {
                return Err(invalid("scale", format!("{scale} is not positive")));
            }
            let (joints, joints_vis) = match (r.joints, r.joints_vis) {
                (None, None) => (None, None),
                (Some(joints), Some(vis)) => {
                    if joints.len() != MPII_NUM_JOINTS {
                        return Err(invalid(
                            "joints",
                            format!("expected {MPII_NUM_JOINTS} joints, found {}", joints.len()),
                        ));
                    }
                    if vis.len() != MPII_NUM_JOINTS {
                        return Err(invalid(
                            "joints_vis",
                            format!("expected {MPII_NUM_JOINTS} flags, found {}", vis.len()),
                        ));
                    }
                    let mut points = [[0.0; 2]; MPII_NUM_JOINTS];
                    let mut flags = [false; MPII_NUM_JOINTS];
                    for j in 0..MPII_NUM_JOINTS {
                        let name = format!("joints[{j}]");
                        let Value::Array(xy) = &joints[j] else {
                            return Err(invalid(&name, "expected [x, y]".into()));
                        };
                        points[j] = point(xy).map_err(|m| invalid(&name, m))?;
                        let name = format!("joints_vis[{j}]");
                        flags[j] = match finite(&vis[j]).map_err(|m| invalid(&name, m))? {
                            0.0 => false,
                            1.0 => true,
                            other => return Err(invalid(&name, format!("{other} is not 0 or 1"))),
                        };
                    }
                    (Some(points), Some(flags))
                }
                (Some(_), None) => {
                    return Err(invalid(
                        "joints_vis",
                        "missing while joints is present".into(),
                    ))
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "joints",
                        "missing while joints_vis is present".into(),
                    ))
                }
            };
            Ok(MpiiAnnotation {
                image: r.image,
                center,
                scale,
                joints,
                joints_vis,
            })
        })
        .collect()
}

fn finite(v: &Value) -> std::result::Result<f64, String> {
    match v.as_f64() {
        Some(x) if x.is_finite() => Ok(x),
        Some(x) => Err(format!("{x} is not finite")),
        None => Err(format!("expected a number, found {v}")),
    }
}

fn point(values: &[Value]) -> std::result::Result<Point, String> {
    if values.len() != 2 {
        return Err(format!("expected [x, y], found {} numbers", values.len()));
    }
    Ok([finite(&values[0])?, finite(&values[1])?])
}

/// Predictions for `posekit eval mpii`: one list of 16 [x, y] per ground-truth person, in the
/// ground truth's order and 1-based pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct MpiiPredictions {
    /// The file they came from, so that a row-count mismatch can name it.
    pub path: PathBuf,
    pub rows: Vec<[Point; MPII_NUM_JOINTS]>,
}

impl MpiiPredictions {
    /// Reads a prediction file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::error::read_file(path)?;
        Self::parse(path, &bytes)
    }

    /// Parses prediction JSON. Python's `json.dump` writes NaN and infinities as the bare words
    /// `NaN` / `Infinity`, which are not JSON; they are read as "not a number" so that the
    /// error names the row and joint instead of a column in the file.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Error::parse(path, format!("not UTF-8 text: {e}")))?;
        let text = non_finite_words_to_null(text);
        let rows: Vec<Value> = serde_json::from_str(&text).map_err(|e| Error::json(path, e))?;
        let rows = rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                let invalid = |field: String, message: String| Error::invalid(path, field, message);
                let Value::Array(joints) = row else {
                    return Err(invalid(
                        format!("[{r}]"),
                        format!(
                            "expected a list of {MPII_NUM_JOINTS} [x, y], found {}",
                            kind(row)
                        ),
                    ));
                };
                if joints.len() != MPII_NUM_JOINTS {
                    return Err(invalid(
                        format!("[{r}]"),
                        format!("expected {MPII_NUM_JOINTS} joints, found {}", joints.len()),
                    ));
                }
                let mut points = [[0.0; 2]; MPII_NUM_JOINTS];
                for (j, joint) in joints.iter().enumerate() {
                    let field = format!("[{r}][{j}]");
                    let Value::Array(xy) = joint else {
                        return Err(invalid(
                            field,
                            format!("expected [x, y], found {}", kind(joint)),
                        ));
                    };
                    if xy.len() != 2 {
                        return Err(invalid(
                            field,
                            format!("expected [x, y], found {} values", xy.len()),
                        ));
                    }
                    for c in 0..2 {
                        points[j][c] = match &xy[c] {
                            Value::Null => {
                                return Err(invalid(
                                    field,
                                    format!(
                                        "{} is not a finite number (NaN, Infinity or null)",
                                        ["x", "y"][c]
                                    ),
                                ))
                            }
                            v => finite(v).map_err(|m| invalid(field.clone(), m))?,
                        };
                    }
                }
                Ok(points)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(MpiiPredictions {
            path: path.to_path_buf(),
            rows,
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Replaces the bare words `NaN`, `Infinity` and `-Infinity` outside strings with `null`.
fn non_finite_words_to_null(text: &str) -> std::borrow::Cow<'_, str> {
    if !(text.contains("NaN") || text.contains("Infinity")) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut in_string = false;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if c == '\\' {
                let escaped: String = rest.chars().take(2).collect();
                out.push_str(&escaped);
                rest = &rest[escaped.len()..];
                continue;
            }
            if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else {
            let word = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|w| rest.starts_with(w));
            if let Some(word) = word {
                out.push_str("null");
                rest = &rest[word.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preds_json(rows: usize) -> String {
        let row: Vec<String> = (0..16).map(|j| format!("[{}.5, {}]", j, j * 2)).collect();
        let row = format!("[{}]", row.join(", "));
        format!("[{}]", vec![row; rows].join(",\n"))
    }

    #[test]
    fn predictions_parse_in_order() {
        let p = MpiiPredictions::parse(Path::new("p.json"), preds_json(3).as_bytes()).unwrap();
        assert_eq!(p.rows.len(), 3);
        assert_eq!(p.rows[2][5], [5.5, 10.0]);
    }

    #[test]
    fn prediction_errors_name_file_row_and_joint() {
        let good = preds_json(2);
        let cases = [
            (
                good.replacen("[3.5, 6]", "[NaN, 6]", 1),
                "[0][3]",
                "x is not a finite",
            ),
            (
                good.replacen("[3.5, 6]", "[3.5, -Infinity]", 1),
                "[0][3]",
                "y is not a finite",
            ),
            (good.replacen("[3.5, 6]", "[3.5]", 1), "[0][3]", "[x, y]"),
            (good.replacen(", [15.5, 30]", "", 1), "[0]", "found 15"),
            (
                good.replacen("[3.5, 6]", "[\"a\", 6]", 1),
                "[0][3]",
                "expected a number",
            ),
            ("[1]".to_string(), "[0]", "found a number"),
        ];
        for (text, field, needle) in cases {
            let err = MpiiPredictions::parse(Path::new("p.json"), text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("p.json") && err.contains(field) && err.contains(needle),
                "{err}"
            );
        }
        let err = MpiiPredictions::parse(Path::new("p.json"), b"[[")
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.json") && err.contains("JSON"), "{err}");
    }

    #[test]
    fn non_finite_words_inside_strings_are_left_alone() {
        assert_eq!(
            non_finite_words_to_null(r#"["NaN", NaN, "a\"NaN", -Infinity]"#),
            r#"["NaN", null, "a\"NaN", null]"#
        );
    }

    fn annotation(joints: &str, vis: &str) -> String {
        format!(r#"[{{"image": "a.jpg", "center": [10, 20.5], "scale": 1.5{joints}{vis}}}]"#)
    }

    #[test]
    fn annotations_with_and_without_joints() {
        let joints: Vec<String> = (0..16).map(|j| format!("[{j}, {}]", j + 1)).collect();
        let joints = format!(r#", "joints": [{}]"#, joints.join(","));
        let vis = format!(r#", "joints_vis": [{}]"#, vec!["1"; 15].join(",") + ",0");
        let a = parse_mpii_annotations(Path::new("a.json"), annotation(&joints, &vis).as_bytes())
            .unwrap();
        assert_eq!(a[0].center, [10.0, 20.5]);
        assert_eq!(a[0].joints.unwrap()[3], [3.0, 4.0]);
        assert!(!a[0].joints_vis.unwrap()[15]);
        let test_split =
            parse_mpii_annotations(Path::new("a.json"), annotation("", "").as_bytes()).unwrap();
        assert_eq!(test_split[0].joints, None);

        let cases = [
            (annotation(&joints, ""), "[0].joints_vis", "missing"),
            (
                annotation(&joints, &vis.replacen("1", "2", 1)),
                "[0].joints_vis[0]",
                "not 0 or 1",
            ),
            (
                annotation(&joints.replacen("[0, 1]", "[0]", 1), &vis),
                "[0].joints[0]",
                "[x, y]",
            ),
            (
                annotation(&joints.replacen("[0, 1],", "", 1), &vis),
                "[0].joints",
                "found 15",
            ),
            (
                annotation(&joints, &vis).replace("1.5", "-1"),
                "[0].scale",
                "not positive",
            ),
            (
                annotation("", "").replace("[10, 20.5]", "[10]"),
                "[0].center",
                "[x, y]",
            ),
            (annotation("", ", \"extra\": 1"), "unknown field", "extra"),
            (
                annotation("", "").replace("\"image\": \"a.jpg\", ", ""),
                "missing field",
                "image",
            ),
        ];
        for (text, field, needle) in cases {
            let err = parse_mpii_annotations(Path::new("a.json"), text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("a.json") && err.contains(field) && err.contains(needle),
                "{err}"
            );
        }
    }
}
