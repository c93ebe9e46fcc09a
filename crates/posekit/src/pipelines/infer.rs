//! `posekit infer`: a network run on the user's own pictures and videos, with the people found
//! written as COCO keypoint results and drawn on copies of the inputs.
//!
//! What it writes to the output folder:
//! * `results.jsonl`, written and flushed picture by picture (frame by frame for a video), so
//!   that a run stopped at any moment keeps every finished one: one JSON object per line,
//!   `{"file_name", "image_id", "frame" (videos), "people": [{"keypoints", "score", "bbox"}]}`;
//! * `results.json` at the end: one COCO keypoint result per person, in input order, each with
//!   `file_name` (the input's name), `image_id`, `category_id` 1, `keypoints`, `score` and
//!   `bbox`, plus `frame` (0-based) for video frames. Keypoints are COCO-17 for COCO models
//!   (OpenPose's CMU-18 is converted), so the file is ready for `posekit eval coco`. An earlier
//!   run's `results.json` is removed when a run starts, so it never sits beside another run's
//!   pictures: a folder with `results.jsonl` and no `results.json` holds a run that did not end;
//! * `<name>`: the input with the skeletons drawn (`<name>` with `.mp4` for a video), where the
//!   name is the input's file name, with as much of its folder as tells it apart from the other
//!   inputs (`a/x.jpg`, `b/x.jpg`); results use the same name as `file_name`;
//! * with `--heatmaps`, `<name>.heatmaps.safetensors` (a video: one file per frame under
//!   `<name>.heatmaps/`) with the raw network outputs (OpenPose: `heatmaps` [19, h, w] and
//!   `pafs` [38, h, w]; top-down: `heatmaps` [people, K, h, w], flip-merged; HigherHRNet:
//!   `heatmaps` [17, H, W] and `tags` [17, H, W, passes] at the network input size, as
//!   grouped; SPM: `root` [1, h, w] and `displacements` [34, h, w]; OpenPose-VGG19: the last
//!   stage's `heatmaps` [19, h, w] and `pafs` [38, h, w]).
//!
//! Image ids are the COCO ids when `--gt` names the file, otherwise a running index over all
//! pictures and video frames (each frame its own id, so the file stays evaluable).
//!
//! Errors: every named path is checked before the first network call, and a run whose output
//! would replace one of its inputs (`--out` naming the input folder) is refused before any work.
//! A picture that turns out
//! unreadable (corrupt, truncated) or a video ffmpeg cannot decode is skipped with a warning
//! naming it, the others are still processed and written, and the run then ends with an error
//! listing the failures (a non-zero exit): one bad file in a folder of thousands should not
//! cost the user the rest, and a script must still notice it.

pub mod bottomup;
pub mod boxes;
pub mod inputs;
pub mod model;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ndarray::Array3;
use posekit_core::draw::{draw_poses, DrawStyle};
use posekit_core::formats::coco::{keypoint_results_to_string, CocoKeypointResult};
use posekit_core::layout::KeypointLayout;
use serde::Serialize;

pub use boxes::{BoxAssignment, BoxIndex, PersonBox};
pub use inputs::{expand_inputs, Input, InputKind};
pub use model::{InferModel, ModelSpec, Prediction, OPENPOSE_MOBILENET};

use super::data::read_rgb_checked;
use super::image_io::write_rgb;
use super::video::{probe, FrameReader, FrameWriter};

/// How a run writes its outputs.
#[derive(Debug, Clone, Default)]
pub struct InferOptions {
    pub out_dir: PathBuf,
    /// Person boxes for top-down models, by input (see [`BoxIndex::assign`]); `None` takes
    /// each whole picture as one person.
    pub boxes: Option<BoxAssignment>,
    /// COCO image ids by file name (from `--gt`).
    pub image_ids: Option<HashMap<String, i64>>,
    /// Also save the raw network outputs.
    pub heatmaps: bool,
    /// Keypoints at or below this score are not drawn; `None` is the model's default.
    pub min_score: Option<f32>,
    /// Show a progress bar (on several pictures or a video).
    pub progress: bool,
}

/// One line of `results.json`: a COCO keypoint result, plus the frame of a video.
#[derive(Debug, Clone, Serialize)]
pub struct InferRecord {
    #[serde(flatten)]
    pub result: CocoKeypointResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<u64>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct InferSummary {
    pub images: usize,
    pub frames: usize,
    pub people: usize,
    /// `path: problem` for each input that could not be processed.
    pub failures: Vec<String>,
    pub results_path: PathBuf,
    pub records: Vec<InferRecord>,
}

/// Runs `model` on `inputs` and writes everything to `opts.out_dir`.
///
/// Errors only for what stops the whole run (the output folder, results.json); a bad input is
/// recorded in [`InferSummary::failures`] instead, see the module documentation.
pub fn run_infer(
    model: &InferModel,
    inputs: &[Input],
    opts: &InferOptions,
) -> anyhow::Result<InferSummary> {
    let plans = plan_outputs(inputs, &opts.out_dir, opts.heatmaps)?;
    std::fs::create_dir_all(&opts.out_dir).with_context(|| {
        format!(
            "{}: cannot create the output folder",
            opts.out_dir.display()
        )
    })?;
    let results_path = opts.out_dir.join(RESULTS);
    remove_stale(&results_path)?;
    let stream = ResultStream::create(&opts.out_dir.join(RESULTS_STREAM))?;
    let layout = model.layout()?;
    let style = DrawStyle {
        min_score: opts.min_score.unwrap_or(model.default_min_score()),
        ..DrawStyle::default()
    };
    let mut run = Run::new(model, &layout, style, opts, stream);
    if model.is_top_down() && opts.boxes.is_none() {
        eprintln!(
            "note: no --boxes given, so this top-down model takes each whole picture (and video \
             frame) as one person"
        );
    }
    if model.is_top_down()
        && opts.boxes.is_some()
        && inputs.iter().any(|i| i.kind == InputKind::Video)
    {
        eprintln!("note: --boxes applies to pictures; each video frame is taken as one person");
    }

    let total: u64 = inputs
        .iter()
        .map(|i| match i.kind {
            InputKind::Image => 1,
            InputKind::Video => probe(&i.path).ok().and_then(|v| v.frames).unwrap_or(0),
        })
        .sum();
    let long = inputs.len() > 1 || inputs.iter().any(|i| i.kind == InputKind::Video);
    let bar = progress_bar(opts.progress && long, total);
    run.bar = bar.clone();
    let verbose = inputs.len() <= 20;
    for (index, (input, plan)) in inputs.iter().zip(&plans).enumerate() {
        let outcome = match input.kind {
            InputKind::Image => run.image(index, input, plan, verbose),
            InputKind::Video => run.video(input, plan),
        };
        match outcome {
            Ok(()) => {}
            Err(Failure::Input(err)) => {
                let line = format!("{err:#}");
                bar.suspend(|| eprintln!("warning: skipped {}: {line}", input.path.display()));
                // A decoder's message already names the file.
                let named = if line.contains(&*input.path.to_string_lossy()) {
                    line
                } else {
                    format!("{}: {line}", input.path.display())
                };
                run.summary.failures.push(named);
            }
            Err(Failure::Fatal(err)) => {
                // What was done so far is kept; the error is not about this input alone (a
                // model that does not fit its config, a full disk), so going on would only
                // repeat it for every input.
                bar.finish_and_clear();
                write_results(&results_path, &run.summary.records)?;
                return Err(err.context(format!("while processing {}", input.path.display())));
            }
        }
    }
    bar.finish_and_clear();

    write_results(&results_path, &run.summary.records)?;
    run.summary.results_path = results_path;
    Ok(run.summary)
}

/// Why an input could not be processed: its own fault (unreadable picture or video: skipped,
/// the run goes on) or not (the model, the output folder: the run stops).
enum Failure {
    Input(anyhow::Error),
    Fatal(anyhow::Error),
}

/// Any other error met while processing an input is fatal; input errors are marked where the
/// input is read.
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure::Fatal(err.into())
    }
}

/// The state of one run: the next image id, the results.
struct Run<'a> {
    model: &'a InferModel,
    layout: &'a KeypointLayout,
    style: DrawStyle,
    opts: &'a InferOptions,
    stream: ResultStream,
    next_id: i64,
    bar: indicatif::ProgressBar,
    summary: InferSummary,
}

impl<'a> Run<'a> {
    fn new(
        model: &'a InferModel,
        layout: &'a KeypointLayout,
        style: DrawStyle,
        opts: &'a InferOptions,
        stream: ResultStream,
    ) -> Self {
        // Running ids start after the ground truth's so that they never collide with its ids.
        let next_id = opts
            .image_ids
            .as_ref()
            .and_then(|m| m.values().max().map(|m| m + 1))
            .unwrap_or(0);
        Run {
            model,
            layout,
            style,
            opts,
            stream,
            next_id,
            bar: indicatif::ProgressBar::hidden(),
            summary: InferSummary::default(),
        }
    }

    fn image(
        &mut self,
        index: usize,
        input: &Input,
        plan: &OutputPlan,
        verbose: bool,
    ) -> Result<(), Failure> {
        let image = read_rgb_checked(&input.path).map_err(|e| Failure::Input(e.into()))?;
        let (h, w, _) = image.dim();
        let boxes = match &self.opts.boxes {
            Some(assigned) => assigned.for_input(index).to_vec(),
            None => vec![PersonBox {
                bbox: [0.0, 0.0, w as f64, h as f64],
                score: 1.0,
            }],
        };
        let pred = self.model.predict(&image, &boxes, self.opts.heatmaps)?;
        create_parent(&plan.drawing)?;
        write_rgb(&plan.drawing, &self.drawn(&image, &pred))?;
        if let Some(maps) = &plan.maps {
            model::write_maps(maps, &pred.maps)?;
        }
        let image_id = self.image_id(&input.file_name());
        self.push_results(&input.name, image_id, None, &pred)?;
        self.summary.images += 1;
        self.bar.inc(1);
        if verbose {
            let n = pred.poses.len();
            self.bar.suspend(|| {
                println!(
                    "{}: {n} {} -> {}",
                    input.path.display(),
                    if n == 1 { "person" } else { "people" },
                    plan.drawing.display()
                )
            });
        }
        Ok(())
    }

    fn video(&mut self, input: &Input, plan: &OutputPlan) -> Result<(), Failure> {
        let mut reader = FrameReader::open(&input.path).map_err(|e| Failure::Input(e.into()))?;
        let info = reader.info();
        let out_path = &plan.drawing;
        if let Some(maps_dir) = &plan.maps {
            std::fs::create_dir_all(maps_dir)
                .with_context(|| format!("{}: cannot create", maps_dir.display()))?;
        }
        create_parent(out_path)?;
        let mut writer = FrameWriter::create(out_path, info.width, info.height, info.fps)?;
        let name = input.name.clone();
        let whole = [PersonBox {
            bbox: [0.0, 0.0, info.width as f64, info.height as f64],
            score: 1.0,
        }];
        let mut frame_index = 0u64;
        let mut people = 0usize;
        while let Some(frame) = reader.next_frame().map_err(|e| Failure::Input(e.into()))? {
            let pred = self.model.predict(&frame, &whole, self.opts.heatmaps)?;
            writer.write_frame(&self.drawn(&frame, &pred))?;
            if let Some(maps_dir) = &plan.maps {
                model::write_maps(
                    &maps_dir.join(format!("frame_{frame_index:06}.safetensors")),
                    &pred.maps,
                )?;
            }
            let image_id = self.next_id;
            self.next_id += 1;
            people += pred.poses.len();
            self.push_results(&name, image_id, Some(frame_index), &pred)?;
            frame_index += 1;
            self.summary.frames += 1;
            self.bar.inc(1);
        }
        if frame_index == 0 {
            let _ = writer.finish();
            let _ = std::fs::remove_file(out_path);
            return Err(Failure::Input(anyhow::anyhow!(
                "{}: the video has no frame that ffmpeg could decode",
                input.path.display()
            )));
        }
        writer.finish()?;
        self.bar.suspend(|| {
            println!(
                "{}: {frame_index} frames, {people} people in all -> {}",
                input.path.display(),
                out_path.display()
            )
        });
        Ok(())
    }

    fn drawn(&self, image: &Array3<u8>, pred: &Prediction) -> Array3<u8> {
        let mut canvas = image.clone();
        draw_poses(
            &mut canvas.view_mut(),
            &pred.poses,
            self.layout,
            &self.style,
        );
        canvas
    }

    /// Records the people of one picture or frame, and streams them to `results.jsonl`.
    fn push_results(
        &mut self,
        file_name: &str,
        image_id: i64,
        frame: Option<u64>,
        pred: &Prediction,
    ) -> anyhow::Result<()> {
        let first = self.summary.records.len();
        for (pose, bbox) in pred.poses.iter().zip(&pred.boxes) {
            let mut result =
                CocoKeypointResult::from_pose(image_id, 1, &self.model.result_pose(pose));
            result.file_name = Some(file_name.to_string());
            result.bbox = Some(bbox.iter().map(|v| (v * 100.0).round() / 100.0).collect());
            self.summary.records.push(InferRecord { result, frame });
            self.summary.people += 1;
        }
        self.stream.write(&StreamLine {
            file_name,
            image_id,
            frame,
            people: self.summary.records[first..]
                .iter()
                .map(|r| StreamPerson {
                    keypoints: &r.result.keypoints,
                    score: r.result.score,
                    bbox: r.result.bbox.as_deref(),
                })
                .collect(),
        })
    }

    fn image_id(&mut self, file_name: &str) -> i64 {
        if let Some(id) = self.opts.image_ids.as_ref().and_then(|m| m.get(file_name)) {
            return *id;
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// The COCO results of a finished run.
pub const RESULTS: &str = "results.json";
/// The per-picture (per-frame) stream of a run, flushed as it goes.
pub const RESULTS_STREAM: &str = "results.jsonl";

/// Where one input's outputs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    /// The drawn picture, or the drawn video (`.mp4`).
    pub drawing: PathBuf,
    /// `--heatmaps`: the safetensors file of a picture, the folder of a video's frames.
    pub maps: Option<PathBuf>,
}

/// The output paths of every input, decided before any work: the input's name inside
/// `out_dir` (a video's with `.mp4`), made unique where two videos would share one
/// (`clip.avi`, `clip.mp4`). Refuses a plan that would write over one of the inputs (an output
/// folder that is the input folder), naming both: the user's pictures are never replaced.
pub fn plan_outputs(
    inputs: &[Input],
    out_dir: &Path,
    heatmaps: bool,
) -> anyhow::Result<Vec<OutputPlan>> {
    let mut taken: HashSet<PathBuf> = [RESULTS, RESULTS_STREAM]
        .iter()
        .map(|name| out_dir.join(name))
        .collect();
    let mut plans = Vec::with_capacity(inputs.len());
    for input in inputs {
        let drawing = match input.kind {
            InputKind::Image => out_dir.join(&input.name),
            InputKind::Video => {
                let base = Path::new(&input.name).with_extension("");
                let base = base.to_string_lossy();
                let mut candidate = out_dir.join(format!("{base}.mp4"));
                let mut k = 1;
                while taken.contains(&candidate) {
                    candidate = out_dir.join(format!("{base}_{k}.mp4"));
                    k += 1;
                }
                candidate
            }
        };
        taken.insert(drawing.clone());
        let maps = heatmaps.then(|| {
            let stem = drawing.with_extension("");
            match input.kind {
                InputKind::Image => {
                    PathBuf::from(format!("{}.heatmaps.safetensors", stem.display()))
                }
                InputKind::Video => PathBuf::from(format!("{}.heatmaps", stem.display())),
            }
        });
        plans.push(OutputPlan { drawing, maps });
    }
    let input_files: HashMap<PathBuf, &Input> = inputs
        .iter()
        .map(|input| (inputs::canonical(&input.path), input))
        .collect();
    let results = [out_dir.join(RESULTS), out_dir.join(RESULTS_STREAM)];
    let outputs = plans
        .iter()
        .flat_map(|p| std::iter::once(&p.drawing).chain(p.maps.as_ref()))
        .chain(&results);
    for output in outputs {
        // Only a path that exists can be an input; resolving it follows links too.
        let Ok(resolved) = std::fs::canonicalize(output) else {
            continue;
        };
        if let Some(input) = input_files.get(&resolved) {
            bail!(
                "{} would be written over the input {}: choose an output folder (--out) that \
                 holds none of the inputs; nothing was written",
                output.display(),
                input.path.display()
            );
        }
    }
    Ok(plans)
}

/// Removes an earlier run's `results.json`, which would otherwise sit beside this run's
/// pictures if this run were stopped before writing its own.
fn remove_stale(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "{}: cannot remove the earlier run's results: {e}",
            path.display()
        )),
    }
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create the folder", parent.display()))?;
    }
    Ok(())
}

/// One line of `results.jsonl`: a picture or a video frame with its people.
#[derive(Serialize)]
struct StreamLine<'a> {
    file_name: &'a str,
    image_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    frame: Option<u64>,
    people: Vec<StreamPerson<'a>>,
}

#[derive(Serialize)]
struct StreamPerson<'a> {
    keypoints: &'a [f64],
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bbox: Option<&'a [f64]>,
}

/// `results.jsonl`, created empty when the run starts and flushed after every line, so a run
/// killed at any moment leaves every finished picture in it (at worst a torn last line).
struct ResultStream {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl ResultStream {
    fn create(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        Ok(ResultStream {
            path: path.to_path_buf(),
            file: std::io::BufWriter::new(file),
        })
    }

    fn write(&mut self, line: &StreamLine) -> anyhow::Result<()> {
        for person in &line.people {
            if !person
                .keypoints
                .iter()
                .chain([&person.score])
                .all(|v| v.is_finite())
            {
                bail!(
                    "{}: the model gave a non-finite keypoint or score for {}",
                    self.path.display(),
                    line.file_name
                );
            }
        }
        serde_json::to_writer(&mut self.file, line)
            .with_context(|| format!("{}: cannot write", self.path.display()))?;
        self.file
            .write_all(b"\n")
            .and_then(|()| self.file.flush())
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

/// Writes the records (checked for NaN and infinity, which JSON cannot spell) through a
/// temporary file, so an interrupted run never leaves a half-written results.json.
fn write_results(path: &Path, records: &[InferRecord]) -> anyhow::Result<()> {
    let plain: Vec<CocoKeypointResult> = records.iter().map(|r| r.result.clone()).collect();
    keypoint_results_to_string(path, &plain)?;
    let text = serde_json::to_string(records)
        .with_context(|| format!("{}: cannot serialise", path.display()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

fn progress_bar(show: bool, len: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let style =
        indicatif::ProgressStyle::with_template("infer [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar
}
