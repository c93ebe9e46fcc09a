//! `posekit infer INPUT...`: run a model on pictures, folders of pictures and videos; write
//! `results.json` and the pictures with skeletons drawn. The default model is the bundled
//! OpenPose-MobileNetV2, so the command works on a fresh machine without weights.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, ValueEnum};
use posekit::estimator::BUNDLED_PRESET;
use posekit::pipelines::infer::{
    expand_inputs, plan_outputs, run_infer, BoxIndex, InferEvent, InferOptions, Input, InputKind,
};
use posekit::{BoxSource, PoseEstimator, Proposals};
use posekit_core::formats::coco::CocoKeypointsGt;
use posekit_core::tracking::smoothing::{OneEuroParams, SavgolParams, SmoothKind};
use posekit_core::tracking::{GreedyParams, KalmanParams, TrackerKind};
use posekit_nn::device::parse_device;

#[derive(Args)]
pub struct InferArgs {
    /// Pictures (JPEG/PNG), folders (their JPEG/PNG files, sorted) and videos (mp4, avi, mov,
    /// mkv, webm, ...; decoded by the system ffmpeg).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Model: openpose-mobilenetv2 (bottom-up, bundled weights; the default), a top-down
    /// preset of `posekit models` (hrnet-w32, ...; needs --weights) or one of the bottom-up
    /// presets higherhrnet-w32/w48, spm-hourglass, spm-hrnet-w32, openpose-vgg19 (need
    /// --weights).
    #[arg(long)]
    model: Option<String>,
    /// Weights of the model: a training checkpoint or an official/MMPose .pth/.safetensors
    /// (optional for openpose-mobilenetv2, whose weights are built in).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Experiment config (TOML) a top-down model was trained with: its model and crop
    /// settings replace --model's defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output folder for results.json and the drawn pictures/videos. `-`: the results.jsonl
    /// lines (one JSON object per picture or frame) go to standard output as they come, for
    /// piping, and no file is written; messages go to standard error.
    #[arg(long, default_value = "posekit-infer")]
    out: PathBuf,
    /// Person boxes for a top-down model: COCO detection results (`image_id`, with --gt) or a
    /// list of {"file_name", "bbox": [x, y, w, h], "score"}; `whole` for the whole picture as
    /// one person. Without it a top-down model crops the people the bundled
    /// openpose-mobilenetv2 finds.
    #[arg(long)]
    boxes: Option<PathBuf>,
    /// Boxes scoring below this are not used.
    #[arg(long, default_value_t = 0.5)]
    box_score_threshold: f64,
    /// COCO person_keypoints ground truth: maps --boxes' image ids to files, and makes
    /// results.json use its image ids.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Also save the raw network outputs as <name>.heatmaps.safetensors.
    #[arg(long)]
    heatmaps: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
    /// Keypoints at or below this score are not drawn (default: every joint OpenPose found;
    /// 0.3 for top-down heatmap maxima). results.json always has every joint.
    #[arg(long)]
    min_score: Option<f32>,
    /// Input size of a bottom-up preset: HigherHRNet's short side (default 512, w48 640; a
    /// multiple of 64), SPM's square side (512; a multiple of 64), OpenPose-VGG19's height
    /// (368; a multiple of 8). Smaller is faster and finds fewer small people.
    #[arg(long)]
    input_size: Option<usize>,
    /// No flip test for top-down models and HigherHRNet (faster, slightly less accurate).
    #[arg(long)]
    no_flip: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    pub(crate) engine: super::bench::EngineArgs,
    /// Video tracking: every person gets a `track_id`. kalman: keypoints predicted per track,
    /// Hungarian matching, tracks kept through short absences; greedy: MMPose's (IoU with the
    /// last frame only); none: no ids.
    #[arg(long, value_enum, default_value_t = TrackArg::Kalman)]
    track: TrackArg,
    /// kalman: frames a person may be missing and keep the id.
    #[arg(long, default_value_t = 10)]
    max_missed: u32,
    /// Top-down models on video: person proposals (the people openpose-mobilenetv2 finds)
    /// every N frames only, and on the frames between a crop where each track is expected
    /// (the box of its predicted keypoints); new people are found at the next proposals. 1:
    /// proposals on every frame (MMDeploy's PoseTracker default); larger is faster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    det_interval: u32,
    /// Keypoint smoothing per track of a video: one-euro (online: results.jsonl, results.json
    /// and the drawn video), savgol (over each whole track at the end: results.json only).
    #[arg(long, value_enum, default_value_t = SmoothArg::None)]
    smooth: SmoothArg,
    /// one-euro: cutoff frequency when still (cycles per frame; lower: less jitter).
    #[arg(long, default_value_t = OneEuroParams::default().min_cutoff)]
    one_euro_min_cutoff: f32,
    /// one-euro: cutoff raised per pixel/frame of speed (higher: less lag; MMPose uses 0.7).
    #[arg(long, default_value_t = OneEuroParams::default().beta)]
    one_euro_beta: f32,
    /// savgol: window in frames (odd).
    #[arg(long, default_value_t = SavgolParams::default().window)]
    savgol_window: usize,
    /// savgol: polynomial order (below the window).
    #[arg(long, default_value_t = SavgolParams::default().polyorder)]
    savgol_polyorder: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TrackArg {
    None,
    Greedy,
    Kalman,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SmoothArg {
    None,
    OneEuro,
    Savgol,
}

/// The tracker and smoother the flags ask for, checked before any work.
fn tracking_options(args: &InferArgs) -> anyhow::Result<(TrackerKind, KalmanParams, SmoothKind)> {
    let track = match args.track {
        TrackArg::None => TrackerKind::None,
        TrackArg::Greedy => TrackerKind::Greedy(GreedyParams::default()),
        TrackArg::Kalman => TrackerKind::Kalman,
    };
    let kalman = KalmanParams {
        max_missed: args.max_missed,
        ..KalmanParams::default()
    };
    let smooth = match args.smooth {
        SmoothArg::None => SmoothKind::None,
        SmoothArg::OneEuro => {
            let (c, b) = (args.one_euro_min_cutoff, args.one_euro_beta);
            if !(c.is_finite() && c > 0.0 && b.is_finite() && b >= 0.0) {
                bail!("--one-euro-min-cutoff must be above 0 and --one-euro-beta at least 0, got {c} and {b}");
            }
            SmoothKind::OneEuro(OneEuroParams {
                min_cutoff: c,
                beta: b,
                ..OneEuroParams::default()
            })
        }
        SmoothArg::Savgol => {
            let p = SavgolParams {
                window: args.savgol_window,
                polyorder: args.savgol_polyorder,
            };
            p.validate()
                .map_err(|e| anyhow::anyhow!("--savgol-window/--savgol-polyorder: {e}"))?;
            SmoothKind::Savgol(p)
        }
    };
    if args.track == TrackArg::None && smooth != SmoothKind::None {
        bail!("--smooth works per track: it needs --track greedy or kalman, not none");
    }
    if args.track == TrackArg::None && args.det_interval > 1 {
        bail!(
            "--det-interval {} crops the tracks' boxes between proposals: it needs --track \
             greedy or kalman, not none",
            args.det_interval
        );
    }
    Ok((track, kalman, smooth))
}

pub fn run(args: InferArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.box_score_threshold) {
        bail!(
            "--box-score-threshold must be between 0 and 1, got {}",
            args.box_score_threshold
        );
    }
    if let Some(s) = args.min_score {
        if !s.is_finite() {
            bail!("--min-score must be a number, got {s}");
        }
    }
    let whole_picture = matches!(
        args.boxes.as_deref().map(|p| p.to_str()),
        Some(Some("whole"))
    );
    let (track, kalman, smooth) = tracking_options(&args)?;
    let to_stdout = args.out.as_os_str() == "-";
    if to_stdout {
        if args.heatmaps {
            bail!(
                "--heatmaps writes files: it cannot go with --out - (results to standard output)"
            );
        }
        if args.smooth == SmoothArg::Savgol {
            bail!(
                "--smooth savgol rewrites results.json at the end of each video, which --out - \
                 does not write (its lines go out frame by frame): use --smooth one-euro"
            );
        }
    }
    // Human messages: standard output, unless the results go there.
    let say = |line: &str| {
        if to_stdout {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    // Everything the user named is checked before the model loads.
    let inputs = expand_inputs(&args.inputs)?;
    if !to_stdout {
        plan_outputs(&inputs, &args.out, args.heatmaps)?;
    }
    let gt = match &args.gt {
        Some(path) => Some(CocoKeypointsGt::load(path)?),
        None => None,
    };
    let boxes = match &args.boxes {
        Some(path) if !whole_picture => {
            let index = BoxIndex::load(path, gt.as_ref(), args.box_score_threshold)?;
            let assigned = index.assign(&inputs)?;
            if assigned.unmatched_boxes > 0 {
                let names = &assigned.unmatched_names;
                eprintln!(
                    "warning: {} of the {} boxes in {} name no input picture ({}{})",
                    assigned.unmatched_boxes,
                    index.kept(),
                    path.display(),
                    names.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                    if names.len() > 3 { ", ..." } else { "" }
                );
            }
            Some((index, assigned))
        }
        _ => None,
    };
    let device = parse_device(&args.device)?;
    let mut builder = match (&args.model, &args.config) {
        (Some(model), _) => PoseEstimator::builder(model),
        (None, Some(config)) => PoseEstimator::from_config(config),
        (None, None) => PoseEstimator::builder(BUNDLED_PRESET),
    }
    .device(device);
    if let (Some(_), Some(config)) = (&args.model, &args.config) {
        builder = builder.config(config);
    }
    if let Some(w) = &args.weights {
        builder = builder.weights(w);
    }
    if let Some(n) = args.input_size {
        builder = builder.input_size(n);
    }
    if args.no_flip {
        builder = builder.flip(false);
    }
    if whole_picture {
        builder = builder.proposals(Proposals::WholeImage);
    }
    let builder = args.engine.apply(builder, device)?;
    let estimator = builder.build().map_err(|err| match err {
        posekit::Error::WeightsNeeded { .. } => {
            anyhow::anyhow!("{err}: pass it with --weights FILE, or leave --model out for the bundled {BUNDLED_PRESET}")
        }
        other => other.into(),
    })?;
    if args.det_interval > 1 && !estimator.is_top_down() {
        bail!(
            "--det-interval is for top-down models; {} is a bottom-up model that finds the \
             people in every frame itself: leave --det-interval out, or give a top-down --model",
            estimator.preset().name
        );
    }
    if args.boxes.is_some() && !estimator.is_top_down() {
        bail!(
            "--boxes is for top-down models; {} is a bottom-up model that finds the people \
             itself: leave --boxes out, or give a top-down --model",
            estimator.preset().name
        );
    }
    say(&format!(
        "{} on {}",
        estimator.preset().name,
        match estimator.backend() {
            posekit::estimator::Backend::Ort => "ONNX Runtime",
            _ => "libtorch",
        }
    ));
    if let Some((index, _)) = &boxes {
        say(&format!(
            "{} person boxes ({} below --box-score-threshold {} left out)",
            index.kept(),
            index.below_threshold,
            args.box_score_threshold
        ));
    }
    let image_ids: Option<HashMap<String, i64>> = gt.map(|gt| {
        gt.images
            .iter()
            .map(|im| (im.file_name.clone(), im.id))
            .collect()
    });
    let mut view = ProgressView::new(!args.no_progress, &inputs, to_stdout);
    let summary = run_infer(
        &estimator,
        &inputs,
        &InferOptions {
            out_dir: args.out.clone(),
            boxes: boxes.map(|(_, assigned)| assigned),
            image_ids,
            heatmaps: args.heatmaps,
            min_score: args.min_score,
            track,
            kalman,
            smooth,
            det_interval: args.det_interval,
            to_stdout,
        },
        &mut |event| view.show(event),
    );
    view.finish();
    let summary = match summary {
        Ok(summary) => summary,
        // The reader of the stream went away (`| head`): it has what it wanted.
        Err(err) if to_stdout && is_broken_pipe(&err) => {
            eprintln!("standard output was closed by its reader: stopped");
            return Ok(());
        }
        Err(err) => return Err(err.into()),
    };
    for (source, count) in &summary.box_sources {
        let what = match source {
            BoxSource::Given => continue,
            BoxSource::Proposals => format!(
                "the people {BUNDLED_PRESET} found (pass --boxes det.json for a detector's \
                 boxes, or --boxes whole for the whole picture)"
            ),
            BoxSource::WholeImage => "the whole picture as one person".to_string(),
            BoxSource::Tracks => format!(
                "the tracks' predicted boxes (proposals every {} frames)",
                args.det_interval
            ),
        };
        say(&format!("person boxes of {count} pictures/frames: {what}"));
    }
    say(&format!(
        "{} pictures, {} video frames, {} people; results: {}",
        summary.images,
        summary.frames,
        summary.people,
        if to_stdout {
            "standard output".to_string()
        } else {
            summary.results_path.display().to_string()
        }
    ));
    if !summary.failures.is_empty() {
        bail!(
            "{} of {} inputs could not be processed{}:\n  {}",
            summary.failures.len(),
            inputs.len(),
            if summary.failures.len() < inputs.len() {
                " (the others were written)"
            } else {
                ""
            },
            summary.failures.join("\n  ")
        );
    }
    Ok(())
}

/// An error that comes from writing to a pipe nobody reads any more.
fn is_broken_pipe(err: &posekit::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// What the user sees while a run goes: a progress bar over several pictures or a video, one
/// line per picture for short runs, one line per video, a warning per skipped input.
struct ProgressView {
    bar: indicatif::ProgressBar,
    show: bool,
    lines: bool,
    /// Lines go to standard error (standard output carries the results).
    to_stderr: bool,
}

/// `what` for the drawing of an input: its path, or that none was written.
fn drawn_to(drawing: Option<&std::path::Path>) -> String {
    drawing.map_or_else(|| "(not drawn)".to_string(), |d| d.display().to_string())
}

impl ProgressView {
    fn new(show: bool, inputs: &[Input], to_stderr: bool) -> Self {
        let long = inputs.len() > 1 || inputs.iter().any(|i| i.kind == InputKind::Video);
        ProgressView {
            bar: indicatif::ProgressBar::hidden(),
            show: show && long,
            lines: inputs.len() <= 20,
            to_stderr,
        }
    }

    fn line(&self, line: String) {
        let to_stderr = self.to_stderr;
        self.bar.suspend(|| {
            if to_stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        });
    }

    fn show(&mut self, event: InferEvent) {
        match event {
            InferEvent::Started { total } => {
                if self.show {
                    self.bar = posekit::progress::progress_bar(true, total, "infer");
                }
            }
            InferEvent::Picture {
                input,
                people,
                drawing,
            } => {
                self.bar.inc(1);
                if self.lines {
                    self.line(format!(
                        "{}: {people} {} -> {}",
                        input.path.display(),
                        if people == 1 { "person" } else { "people" },
                        drawn_to(drawing)
                    ));
                }
            }
            InferEvent::Frame { .. } => self.bar.inc(1),
            InferEvent::Video {
                input,
                frames,
                people,
                drawing,
                seconds,
            } => self.line(format!(
                "{}: {frames} frames, {people} people in all, {:.2} frames/s -> {}",
                input.path.display(),
                frames as f64 / seconds.max(1e-9),
                drawn_to(drawing)
            )),
            InferEvent::Skipped { message, .. } => {
                self.bar.suspend(|| eprintln!("warning: skipped {message}"))
            }
            InferEvent::Warning { message, .. } => {
                self.bar.suspend(|| eprintln!("warning: {message}"))
            }
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
