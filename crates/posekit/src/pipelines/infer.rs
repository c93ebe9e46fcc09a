//! `posekit infer`: a network run on the user's own pictures and videos, with the people found
//! written as COCO keypoint results and drawn on copies of the inputs.
//!
//! What it writes to the output folder:
//! * `results.jsonl`, written and flushed picture by picture (frame by frame for a video), so
//!   that a run stopped at any moment keeps every finished one: one JSON object per line,
//!   `{"file_name", "image_id", "frame" (videos), "boxes" (top-down models: where the person
//!   boxes came from, `given`, `proposals`, `whole` or `tracks`), "people": [{"keypoints",
//!   "score", "bbox", "track_id" (videos)}]}`;
//! * `results.json` at the end: one COCO keypoint result per person, in input order, each with
//!   `file_name` (the input's name), `image_id`, `category_id` 1, `keypoints`, `score` and
//!   `bbox`, plus `frame` (0-based) and `track_id` for video frames. Keypoints are COCO-17 for COCO models
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
//! With [`InferOptions::to_stdout`] (`posekit infer --out -`) the `results.jsonl` lines go to
//! standard output instead, each flushed when its picture or frame is done, and nothing is
//! written to disk.
//!
//! Videos are tracked ([`InferOptions::track`], Kalman by default): every person of a frame gets
//! the `track_id` of the person it continues (none only for a pose with too few joints to
//! start a track), the drawn video colours each person by track, and the keypoints can be
//! smoothed per track ([`InferOptions::smooth`]): OneEuro online (results.jsonl, results.json
//! and the drawing all carry the smoothed keypoints) or Savitzky-Golay offline (over each
//! whole track when the video ends: results.json only, since results.jsonl and the drawing
//! are written while the video is still being read).
//!
//! A top-down model on a video crops the people the bundled model proposes; with
//! [`InferOptions::det_interval`] `N` it asks for proposals on frames 0, N, 2N, ... only, and
//! on the frames between crops each track where the tracker expects it: the box of the track's
//! predicted keypoints (the last frame's for `greedy`), grown as proposals are
//! ([`crate::estimator::proposals::box_around`]), to which the crop adds HRNet's 25%. This is
//! MMDeploy's `PoseTracker` with a detector every N frames. Between proposals nobody new is
//! found, and a track's crop whose pose the tracker does not take (too few joints: the person
//! left) is dropped until the next proposals.
//!
//! A video runs through a pipeline of threads with bounded queues (`video_pipeline`):
//! ffmpeg's decoding, the network input's preparation, the network, the grouping, tracking and
//! smoothing, the drawing and ffmpeg's encoding of different frames overlap, in frame order.
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
//! cost the user the rest, and a script must still notice it. A video with damaged frames is
//! not a failure: ffmpeg conceals what it cannot decode and goes on, every frame is processed,
//! and the damage (ffmpeg's first error messages, or that it stopped before the end) is
//! reported as an [`InferEvent::Warning`] and in [`InferSummary::warnings`].

pub mod boxes;
pub mod inputs;
mod video_pipeline;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::{Array3, ArrayD};
use posekit_core::draw::{draw_poses, DrawStyle};
use posekit_core::formats::coco::{keypoint_results_to_string, CocoKeypointResult};
use posekit_core::tracking::smoothing::{smooth_track, SmoothKind};
use posekit_core::tracking::{KalmanParams, TrackerKind};
use posekit_core::Pose;
use posekit_nn::weights::{write_safetensors, DType, RawTensor};
use serde::Serialize;

pub use boxes::{BoxAssignment, BoxIndex};
pub use inputs::{expand_inputs, Input, InputKind};

use super::data::read_rgb_checked;
use super::image_io::write_rgb;
use super::video::probe;
use crate::error::{bail, Error, Result, ResultExt};
use crate::estimator::{BoxSource, Estimate, PoseEstimator};

/// How a run writes its outputs.
#[derive(Debug, Clone, Default)]
pub struct InferOptions {
    pub out_dir: PathBuf,
    /// Person boxes for top-down models, by input (see [`BoxIndex::assign`]); `None` leaves
    /// them to the estimator's proposals.
    pub boxes: Option<BoxAssignment>,
    /// COCO image ids by file name (from `--gt`).
    pub image_ids: Option<HashMap<String, i64>>,
    /// Also save the raw network outputs.
    pub heatmaps: bool,
    /// Keypoints at or below this score are not drawn; `None` is the model's default. The
    /// trackers and smoothers count a keypoint as found above the same score.
    pub min_score: Option<f32>,
    /// The tracker of video frames (pictures are never tracked).
    pub track: TrackerKind,
    /// Parameters of [`TrackerKind::Kalman`].
    pub kalman: KalmanParams,
    /// Keypoint smoothing per track (needs a tracker).
    pub smooth: SmoothKind,
    /// Top-down models on video: person proposals on every `det_interval`-th frame (0, N,
    /// 2N, ...), the tracks' predicted boxes on the frames between (needs a tracker). 0 and 1
    /// both mean proposals on every frame.
    pub det_interval: u32,
    /// Stream the `results.jsonl` lines to standard output instead, and write no file at all
    /// (`out_dir` is not used: no drawings, no `results.json`): for piping. Raw outputs
    /// (`heatmaps`) and Savitzky-Golay smoothing (results.json only) are refused with it.
    pub to_stdout: bool,
}

/// One line of `results.json`: a COCO keypoint result, plus the frame of a video.
#[derive(Debug, Clone, Serialize)]
pub struct InferRecord {
    #[serde(flatten)]
    pub result: CocoKeypointResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<u64>,
    /// The person's track in its video.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct InferSummary {
    pub images: usize,
    pub frames: usize,
    pub people: usize,
    /// `path: problem` for each input that could not be processed.
    pub failures: Vec<String>,
    /// `path: problem` for each input processed in spite of a problem (a video with damaged
    /// frames: the frames after them were processed too).
    pub warnings: Vec<String>,
    /// `results.json`; `-` when the results went to standard output
    /// ([`InferOptions::to_stdout`]).
    pub results_path: PathBuf,
    pub records: Vec<InferRecord>,
    /// Top-down models: how many pictures and frames used each kind of person box.
    pub box_sources: Vec<(BoxSource, usize)>,
}

/// What a run reports as it goes, for the caller to show (the CLI prints lines and a progress
/// bar; a library user may ignore them).
#[derive(Debug)]
pub enum InferEvent<'a> {
    /// The run starts: pictures plus video frames (0 when ffprobe could not count them).
    Started { total: u64 },
    /// A picture was done (`drawing`: where it was drawn; `None` when writing no files).
    Picture {
        input: &'a Input,
        people: usize,
        drawing: Option<&'a Path>,
    },
    /// A video frame was done.
    Frame { input: &'a Input, frame: u64 },
    /// A video was done.
    Video {
        input: &'a Input,
        frames: u64,
        people: usize,
        drawing: Option<&'a Path>,
        /// From opening the video to its last frame written: `frames / seconds` is the
        /// end-to-end frame rate.
        seconds: f64,
    },
    /// An input could not be processed and was skipped (`message` names it).
    Skipped { input: &'a Input, message: String },
    /// An input was processed, but something in it was wrong: a video with damaged frames,
    /// which ffmpeg decoded as well as it could (`message` names it).
    Warning { input: &'a Input, message: String },
}

/// Runs `estimator` on `inputs` and writes everything to `opts.out_dir`, reporting progress
/// to `on_event`.
///
/// Errors only for what stops the whole run (the output folder, results.json, a model that
/// cannot run); a bad input is recorded in [`InferSummary::failures`] instead, see the module
/// documentation.
pub fn run_infer(
    estimator: &PoseEstimator,
    inputs: &[Input],
    opts: &InferOptions,
    on_event: &mut dyn FnMut(InferEvent),
) -> Result<InferSummary> {
    if opts.det_interval > 1 {
        if matches!(opts.track, TrackerKind::None) {
            bail!(
                "a detection interval of {} crops the tracks' boxes between proposals: it \
                 needs a tracker (greedy or kalman)",
                opts.det_interval
            );
        }
        if !estimator.is_top_down() {
            bail!(
                "a detection interval is for top-down models; {} is a bottom-up model that \
                 finds the people in every frame itself",
                estimator.preset().name
            );
        }
    }
    let (plans, stream, results_path) = if opts.to_stdout {
        if opts.heatmaps {
            bail!("raw network outputs are files: they cannot go with results streamed to standard output");
        }
        if matches!(opts.smooth, SmoothKind::Savgol(_)) {
            bail!(
                "Savitzky-Golay smoothing rewrites results.json at the end of each video; \
                 results streamed to standard output are written frame by frame: use one-euro"
            );
        }
        (vec![None; inputs.len()], ResultStream::stdout(), None)
    } else {
        let plans = plan_outputs(inputs, &opts.out_dir, opts.heatmaps)?;
        std::fs::create_dir_all(&opts.out_dir)
            .map_err(|e| Error::io(&opts.out_dir, "cannot create the output folder", e))?;
        let results_path = opts.out_dir.join(RESULTS);
        remove_stale(&results_path)?;
        let stream = ResultStream::create(&opts.out_dir.join(RESULTS_STREAM))?;
        (
            plans.into_iter().map(Some).collect(),
            stream,
            Some(results_path),
        )
    };
    let style = DrawStyle {
        min_score: opts.min_score.unwrap_or(estimator.default_min_score()),
        ..DrawStyle::default()
    };
    let mut run = Run {
        estimator,
        style,
        opts,
        stream,
        next_id: first_free_id(opts),
        summary: InferSummary::default(),
    };
    let total: u64 = inputs
        .iter()
        .map(|i| match i.kind {
            InputKind::Image => 1,
            InputKind::Video => probe(&i.path).ok().and_then(|v| v.frames).unwrap_or(0),
        })
        .sum();
    on_event(InferEvent::Started { total });
    for (index, (input, plan)) in inputs.iter().zip(&plans).enumerate() {
        let plan = plan.as_ref();
        let outcome = match input.kind {
            InputKind::Image => run.image(index, input, plan, on_event),
            InputKind::Video => run.video(input, plan, on_event),
        };
        match outcome {
            Ok(()) => {}
            Err(Failure::Input(err)) => {
                let line = format!("{}", ErrorChain(&err));
                // A decoder's message already names the file.
                let named = if line.contains(&*input.path.to_string_lossy()) {
                    line
                } else {
                    format!("{}: {line}", input.path.display())
                };
                on_event(InferEvent::Skipped {
                    input,
                    message: named.clone(),
                });
                run.summary.failures.push(named);
            }
            Err(Failure::Fatal(err)) => {
                // What was done so far is kept; the error is not about this input alone (a
                // model that does not fit its config, a full disk), so going on would only
                // repeat it for every input.
                if let Some(path) = &results_path {
                    write_results(path, &run.summary.records)?;
                }
                return Err(err)
                    .with_context(|| format!("while processing {}", input.path.display()));
            }
        }
    }
    match results_path {
        Some(path) => {
            write_results(&path, &run.summary.records)?;
            run.summary.results_path = path;
        }
        None => run.summary.results_path = PathBuf::from("-"),
    }
    Ok(run.summary)
}

/// Running image ids start after the ground truth's, so that they never collide with its ids.
fn first_free_id(opts: &InferOptions) -> i64 {
    opts.image_ids
        .as_ref()
        .and_then(|m| m.values().max().map(|m| m + 1))
        .unwrap_or(0)
}

/// An error with its causes on one line (`a: b: c`).
struct ErrorChain<'a>(&'a Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = std::error::Error::source(self.0);
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

/// Why an input could not be processed: its own fault (unreadable picture or video: skipped,
/// the run goes on) or not (the model, the output folder: the run stops).
enum Failure {
    Input(Error),
    Fatal(Error),
}

/// Any other error met while processing an input is fatal; input errors are marked where the
/// input is read.
impl<E: Into<Error>> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure::Fatal(err.into())
    }
}

/// The state of one run: the next image id, the results.
struct Run<'a> {
    estimator: &'a PoseEstimator,
    style: DrawStyle,
    opts: &'a InferOptions,
    stream: ResultStream,
    next_id: i64,
    summary: InferSummary,
}

impl Run<'_> {
    fn image(
        &mut self,
        index: usize,
        input: &Input,
        plan: Option<&OutputPlan>,
        on_event: &mut dyn FnMut(InferEvent),
    ) -> Result<(), Failure> {
        let image = read_rgb_checked(&input.path).map_err(|e| Failure::Input(e.into()))?;
        let boxes = match (&self.opts.boxes, self.estimator.is_top_down()) {
            (Some(assigned), true) => Some(assigned.for_input(index)),
            _ => None,
        };
        let estimate = self
            .estimator
            .estimate_detailed(&image, boxes, self.opts.heatmaps)?;
        if let Some(plan) = plan {
            create_parent(&plan.drawing)?;
            write_rgb(&plan.drawing, &self.drawn(&image, &estimate))?;
            if let Some(maps) = &plan.maps {
                write_maps(maps, &estimate.maps)?;
            }
        }
        let image_id = self.image_id(&input.file_name());
        self.push_results(&input.name, image_id, None, &estimate, &[])?;
        self.summary.images += 1;
        on_event(InferEvent::Picture {
            input,
            people: estimate.poses.len(),
            drawing: plan.map(|p| p.drawing.as_path()),
        });
        Ok(())
    }

    /// Savitzky-Golay over each whole track of the video whose records start at `first`:
    /// `tracked` holds (record index, track id, pose) in frame order.
    fn savgol(
        &mut self,
        first: usize,
        tracked: Vec<(usize, u64, Pose)>,
        params: &posekit_core::tracking::smoothing::SavgolParams,
        min_score: f32,
    ) -> Result<()> {
        let mut by_track: HashMap<u64, (Vec<usize>, Vec<Pose>)> = HashMap::new();
        for (record, id, pose) in tracked {
            let entry = by_track.entry(id).or_default();
            entry.0.push(record);
            entry.1.push(pose);
        }
        for (records, mut poses) in by_track.into_values() {
            smooth_track(&mut poses, params, min_score)
                .map_err(|e| Error::Invalid(format!("--smooth savgol: {e}")))?;
            for (r, pose) in records.into_iter().zip(&poses) {
                debug_assert!(r >= first);
                let record = &mut self.summary.records[r].result;
                record.keypoints = CocoKeypointResult::from_pose(0, 1, pose).keypoints;
            }
        }
        Ok(())
    }

    fn drawn(&self, image: &Array3<u8>, estimate: &Estimate) -> Array3<u8> {
        let mut canvas = image.clone();
        draw_poses(
            &mut canvas.view_mut(),
            &estimate.poses,
            self.estimator.layout(),
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
        estimate: &Estimate,
        track_ids: &[Option<u64>],
    ) -> Result<()> {
        if let Some(source) = estimate.box_source {
            match self
                .summary
                .box_sources
                .iter_mut()
                .find(|(s, _)| *s == source)
            {
                Some((_, n)) => *n += 1,
                None => self.summary.box_sources.push((source, 1)),
            }
        }
        let first = self.summary.records.len();
        for (n, (pose, bbox)) in estimate.poses.iter().zip(&estimate.boxes).enumerate() {
            let mut result = CocoKeypointResult::from_pose(image_id, 1, pose);
            result.file_name = Some(file_name.to_string());
            result.bbox = Some(bbox.iter().map(|v| (v * 100.0).round() / 100.0).collect());
            let track_id = track_ids.get(n).copied().flatten();
            self.summary.records.push(InferRecord {
                result,
                frame,
                track_id,
            });
            self.summary.people += 1;
        }
        self.stream.write(&StreamLine {
            file_name,
            image_id,
            frame,
            boxes: estimate.box_source.map(BoxSource::name),
            people: self.summary.records[first..]
                .iter()
                .map(|r| StreamPerson {
                    keypoints: &r.result.keypoints,
                    score: r.result.score,
                    bbox: r.result.bbox.as_deref(),
                    track_id: r.track_id,
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
pub fn plan_outputs(inputs: &[Input], out_dir: &Path, heatmaps: bool) -> Result<Vec<OutputPlan>> {
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

/// Keeps the people of `estimate` (poses, boxes, the rows of a top-down model's heatmaps) whose
/// track id passes `keep`, and their ids.
fn keep_people(
    estimate: &mut Estimate,
    ids: &mut Vec<Option<u64>>,
    keep: impl Fn(Option<u64>) -> bool,
) -> Result<()> {
    let kept: Vec<usize> = (0..ids.len()).filter(|&i| keep(ids[i])).collect();
    if kept.len() == ids.len() {
        return Ok(());
    }
    let people = ids.len();
    if estimate.poses.len() != people || estimate.boxes.len() != people {
        bail!(
            "{} poses and {} boxes for {people} tracked people",
            estimate.poses.len(),
            estimate.boxes.len()
        );
    }
    *ids = kept.iter().map(|&i| ids[i]).collect();
    if estimate.crops.len() == people {
        estimate.crops = kept.iter().map(|&i| estimate.crops[i]).collect();
    }
    estimate.poses = kept.iter().map(|&i| estimate.poses[i].clone()).collect();
    estimate.boxes = kept.iter().map(|&i| estimate.boxes[i]).collect();
    estimate.maps.retain_mut(|(_, map)| {
        if map.shape().first() != Some(&people) {
            return true;
        }
        *map = map.select(ndarray::Axis(0), &kept);
        !kept.is_empty()
    });
    Ok(())
}

/// Removes an earlier run's `results.json`, which would otherwise sit beside this run's
/// pictures if this run were stopped before writing its own.
fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            path,
            "cannot remove the earlier run's results",
            e,
        )),
    }
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(parent, "cannot create the folder", e))?;
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
    /// Top-down models: where the person boxes came from ([`BoxSource::name`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    boxes: Option<&'static str>,
    people: Vec<StreamPerson<'a>>,
}

#[derive(Serialize)]
struct StreamPerson<'a> {
    keypoints: &'a [f64],
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bbox: Option<&'a [f64]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    track_id: Option<u64>,
}

/// `results.jsonl`, created empty when the run starts and flushed after every line, so a run
/// killed at any moment leaves every finished picture in it (at worst a torn last line); or
/// standard output, flushed the same way.
struct ResultStream {
    path: PathBuf,
    file: Box<dyn Write>,
}

impl ResultStream {
    fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, "cannot create", e))?;
        Ok(ResultStream {
            path: path.to_path_buf(),
            file: Box::new(std::io::BufWriter::new(file)),
        })
    }

    /// The lines to standard output, where a pipe reads them as they come.
    fn stdout() -> Self {
        ResultStream {
            path: PathBuf::from("<standard output>"),
            file: Box::new(std::io::stdout()),
        }
    }

    fn write(&mut self, line: &StreamLine) -> Result<()> {
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
            .map_err(|e| Error::io(&self.path, "cannot write", e.into()))?;
        self.file
            .write_all(b"\n")
            .and_then(|()| self.file.flush())
            .map_err(|e| Error::io(&self.path, "cannot write", e))
    }
}

/// Writes the records (checked for NaN and infinity, which JSON cannot spell) through a
/// temporary file, so an interrupted run never leaves a half-written results.json.
fn write_results(path: &Path, records: &[InferRecord]) -> Result<()> {
    let plain: Vec<CocoKeypointResult> = records.iter().map(|r| r.result.clone()).collect();
    keypoint_results_to_string(path, &plain)?;
    let text = serde_json::to_string(records)
        .map_err(|e| Error::io(path, "cannot serialise", e.into()))?;
    crate::files::write_atomic(path, text.as_bytes())
}

/// `maps` as a safetensors file (f32, the arrays' shapes), for `--heatmaps`.
pub fn write_maps(path: &Path, maps: &[(String, ArrayD<f32>)]) -> Result<()> {
    let tensors = maps
        .iter()
        .map(|(name, a)| {
            let data: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
            RawTensor::new(DType::F32, a.shape().to_vec(), data)
                .map(|t| (name.clone(), t))
                .map_err(|e| Error::Invalid(format!("{}: {name}: {e}", path.display())))
        })
        .collect::<Result<Vec<_>>>()?;
    write_safetensors(path, tensors.iter().map(|(n, t)| (n.as_str(), t)))?;
    Ok(())
}
