//! One video through `posekit infer` as a pipeline of threads joined by bounded queues, so
//! that the network is not kept waiting by the CPU work around it:
//!
//! ```text
//! decode -> prepare -> network -> finish -> draw -> encode
//! (ffmpeg)  (resize)   (this      (group,   (skeletons, (ffmpeg)
//!                      thread)    track,    raw maps)
//!                                 smooth)
//! ```
//!
//! * **decode** reads the frames from ffmpeg ([`FrameReader`]);
//! * **prepare** makes each frame the network input ([`EstimateSteps::prepare`]: a bottom-up
//!   model's resize and normalisation);
//! * **network** runs on the calling thread, which owns the estimator (libtorch's tensors may
//!   move between threads but not be shared, so the network stays where it was loaded); for a
//!   top-down model this step is the whole estimate and the tracking, since the tracks' boxes
//!   of one frame (`--det-interval`) come from the tracker after the frame before;
//! * **finish** groups a bottom-up model's maps into people ([`EstimateSteps::finish`]),
//!   tracks them (bottom-up models) and smooths them (OneEuro);
//! * **draw** draws the people on a copy of the frame and writes the raw maps (`--heatmaps`);
//! * **encode** writes the drawn frame to ffmpeg ([`FrameWriter`]).
//!
//! Each stage is one thread and the queues are first in, first out, so frames stay in order
//! and the tracker sees them one by one in frame order. The calling thread also writes each
//! finished frame's `results.jsonl` line (and reports it) as the encode stage hands it back:
//! results.jsonl is still flushed frame by frame, a frame or two behind the network.
//!
//! Stopping: a stage that fails returns its error and drops its queues; the stage before it
//! then finds its queue closed and stops (the decode stage's ffmpeg is killed), the stage after
//! it finds its input ended and finishes what it holds. Every thread is joined before the
//! video's outcome is returned, the first error in pipeline order wins (with the frame it
//! happened in), and a thread that panicked becomes an error instead of a second panic.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TryRecvError};
use std::thread::{self, ScopedJoinHandle};

use ndarray::Array3;
use posekit_core::draw::{draw_poses, draw_tracked_poses, DrawStyle};
use posekit_core::layout::KeypointLayout;
use posekit_core::tracking::smoothing::{OneEuroSmoother, SmoothKind};
use posekit_core::tracking::{make_tracker, Tracker, TrackerKind};
use posekit_core::Pose;

use super::{create_parent, keep_people, write_maps, Failure, InferEvent, Input, OutputPlan, Run};
use crate::error::{Error, ResultExt};
use crate::estimator::proposals::box_around;
use crate::estimator::{
    BoxSource, Estimate, EstimateSteps, NetworkOutput, PersonBox, PoseEstimator, Prepared,
};
use crate::pipelines::video::{DecodeReport, FrameReader, FrameWriter};

/// Frames each queue holds: enough to absorb one stage's jitter, few enough that the frames in
/// flight (raw RGB, a few MB each at HD) stay a handful.
const QUEUE: usize = 2;

/// What the network step hands on: a bottom-up model's raw outputs, or a top-down model's
/// finished and tracked estimate.
enum Networked {
    Raw(NetworkOutput),
    Tracked(Estimate, Vec<Option<u64>>),
}

/// A frame on its way through the stages.
struct Frame<T> {
    index: u64,
    image: Array3<u8>,
    item: T,
}

/// A frame done: what the calling thread writes to the results.
struct Done {
    index: u64,
    estimate: Estimate,
    ids: Vec<Option<u64>>,
}

/// The drawing of the frames, free of the estimator so that it can run on its own thread.
#[derive(Clone)]
struct Painter {
    layout: KeypointLayout,
    style: DrawStyle,
    tracked: bool,
}

impl Painter {
    fn drawn(&self, image: &Array3<u8>, estimate: &Estimate, ids: &[Option<u64>]) -> Array3<u8> {
        let mut canvas = image.clone();
        if self.tracked {
            draw_tracked_poses(
                &mut canvas.view_mut(),
                &estimate.poses,
                ids,
                &self.layout,
                &self.style,
            );
        } else {
            draw_poses(
                &mut canvas.view_mut(),
                &estimate.poses,
                &self.layout,
                &self.style,
            );
        }
        canvas
    }
}

/// How a stage ended without an error of its own: its input ran out, or the next stage went
/// away (it failed; its error is the one reported).
type StageResult<T = ()> = std::result::Result<T, Failure>;

/// A panicked thread's message.
fn panic_message(stage: &str, payload: Box<dyn std::any::Any + Send>) -> Failure {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    Failure::Fatal(Error::Invalid(format!(
        "the {stage} stage of the video pipeline panicked: {what}"
    )))
}

/// The outcome of a stage's thread: what it returned, or its panic or failure to start as an
/// error.
fn joined<T>(
    stage: &str,
    handle: std::io::Result<ScopedJoinHandle<'_, StageResult<T>>>,
) -> StageResult<T> {
    match handle {
        Ok(handle) => handle
            .join()
            .unwrap_or_else(|payload| Err(panic_message(stage, payload))),
        Err(e) => Err(Failure::Fatal(Error::Invalid(format!(
            "cannot start the {stage} thread of the video pipeline: {e}"
        )))),
    }
}

/// An error of frame `index` (0-based) as the failure of its stage.
fn at_frame(index: u64) -> impl FnOnce() -> String {
    move || format!("frame {index}")
}

/// Decode stage: frames from ffmpeg until the end, or until the next stage stops taking them
/// (then `None`: the reader is dropped, which stops ffmpeg).
fn decode(
    mut reader: FrameReader,
    out: SyncSender<Frame<()>>,
) -> StageResult<Option<DecodeReport>> {
    let mut index = 0u64;
    while let Some(image) = reader
        .next_frame()
        .map_err(|e| Failure::Input(Error::from(e)))?
    {
        if out
            .send(Frame {
                index,
                image,
                item: (),
            })
            .is_err()
        {
            return Ok(None);
        }
        index += 1;
    }
    drop(out);
    reader
        .finish()
        .map(Some)
        .map_err(|e| Failure::Input(e.into()))
}

/// Prepare stage.
fn prepare(
    steps: &EstimateSteps,
    input: Receiver<Frame<()>>,
    out: SyncSender<Frame<Prepared>>,
) -> StageResult {
    for frame in input {
        let prepared = steps
            .prepare(&frame.image)
            .with_context(at_frame(frame.index))?;
        let next = Frame {
            index: frame.index,
            image: frame.image,
            item: prepared,
        };
        if out.send(next).is_err() {
            break;
        }
    }
    Ok(())
}

/// Finish stage: grouping, tracking (when the network step did not track), smoothing.
fn finish(
    steps: &EstimateSteps,
    keep_maps: bool,
    mut tracker: Option<Box<dyn Tracker>>,
    mut one_euro: Option<OneEuroSmoother>,
    input: Receiver<Frame<Networked>>,
    out: SyncSender<Frame<(Estimate, Vec<Option<u64>>)>>,
) -> StageResult {
    for frame in input {
        let index = frame.index;
        let (mut estimate, ids) = match frame.item {
            Networked::Tracked(estimate, ids) => (estimate, ids),
            Networked::Raw(output) => {
                let estimate = steps
                    .finish(output, keep_maps)
                    .with_context(at_frame(index))?;
                let ids = match tracker.as_mut() {
                    Some(t) => t.update(&estimate.poses),
                    None => vec![None; estimate.poses.len()],
                };
                (estimate, ids)
            }
        };
        if let Some(s) = one_euro.as_mut() {
            s.smooth(index, &ids, &mut estimate.poses);
        }
        let next = Frame {
            index,
            image: frame.image,
            item: (estimate, ids),
        };
        if out.send(next).is_err() {
            break;
        }
    }
    Ok(())
}

/// Draw stage: the drawn frame (when there is a drawing to write) and the raw maps.
fn draw(
    painter: &Painter,
    drawing: bool,
    maps_dir: Option<&std::path::Path>,
    input: Receiver<Frame<(Estimate, Vec<Option<u64>>)>>,
    out: SyncSender<(Option<Array3<u8>>, Done)>,
) -> StageResult {
    for frame in input {
        let (mut estimate, ids) = frame.item;
        let drawn = drawing.then(|| painter.drawn(&frame.image, &estimate, &ids));
        if let Some(maps_dir) = maps_dir {
            write_maps(
                &maps_dir.join(format!("frame_{:06}.safetensors", frame.index)),
                &estimate.maps,
            )
            .with_context(at_frame(frame.index))?;
        }
        estimate.maps = Vec::new();
        let done = Done {
            index: frame.index,
            estimate,
            ids,
        };
        if out.send((drawn, done)).is_err() {
            break;
        }
    }
    Ok(())
}

/// Encode stage: drawn frames to ffmpeg, then every frame back to the calling thread. The
/// writer is finished (the video closed) when the frames end, also after a failure upstream,
/// so that the frames done so far make a playable video, as results.jsonl keeps them.
fn encode(
    mut writer: Option<FrameWriter>,
    input: Receiver<(Option<Array3<u8>>, Done)>,
    out: Sender<Done>,
) -> StageResult {
    let mut written = 0u64;
    for (drawn, done) in input {
        if let (Some(writer), Some(drawn)) = (writer.as_mut(), drawn.as_ref()) {
            writer
                .write_frame(drawn)
                .with_context(at_frame(done.index))?;
            written += 1;
        }
        if out.send(done).is_err() {
            break;
        }
    }
    match writer {
        Some(writer) if written > 0 => writer.finish()?,
        // No frame: ffmpeg's complaint is not the problem (the caller reports the video
        // empty and removes the file).
        Some(writer) => {
            let _ = writer.finish();
        }
        None => {}
    }
    Ok(())
}

/// The tracker of the network step (top-down models) and its `--det-interval`.
struct TopDownTracking {
    tracker: Option<Box<dyn Tracker>>,
    det_interval: u64,
}

impl TopDownTracking {
    /// Between proposals, the tracks' predicted boxes (with their ids), as MMDeploy's
    /// PoseTracker crops them; `None` on the frames with proposals.
    fn track_boxes(&self, index: u64, image: &Array3<u8>) -> Option<Vec<(u64, PersonBox)>> {
        let tracker = self.tracker.as_ref()?;
        if index.is_multiple_of(self.det_interval) {
            return None;
        }
        let (h, w, _) = image.dim();
        Some(
            tracker
                .predicted_boxes()
                .into_iter()
                .filter_map(|(id, b)| Some((id, box_around(b.map(f64::from), w, h)?)))
                .collect(),
        )
    }

    /// Track ids for `estimate`; a person found in a track's box continues that track.
    fn track(
        &mut self,
        estimate: &mut Estimate,
        from_tracks: Option<&[(u64, PersonBox)]>,
    ) -> crate::Result<Vec<Option<u64>>> {
        let Some(tracker) = self.tracker.as_mut() else {
            return Ok(vec![None; estimate.poses.len()]);
        };
        let Some(from_tracks) = from_tracks else {
            return Ok(tracker.update(&estimate.poses));
        };
        let crops: Vec<Option<u64>> = estimate
            .crops
            .iter()
            .map(|&j| from_tracks.get(j).map(|(id, _)| *id))
            .collect();
        let mut ids = tracker.update_with_crops(&estimate.poses, &crops);
        estimate.box_source = Some(BoxSource::Tracks);
        // A track's crop whose pose the tracker does not take (too few joints found: the
        // person left or is hidden) holds nobody until the next proposals.
        keep_people(estimate, &mut ids, |id| id.is_some())?;
        Ok(ids)
    }
}

/// The network step of one frame, on the calling thread.
fn network(
    estimator: &PoseEstimator,
    frame: Frame<Prepared>,
    keep_maps: bool,
    tracking: &mut Option<TopDownTracking>,
) -> crate::Result<Frame<Networked>> {
    let index = frame.index;
    let item = match tracking.as_mut() {
        None => Networked::Raw(estimator.run_network(&frame.image, frame.item, None, keep_maps)?),
        Some(tracking) => {
            let from_tracks = tracking.track_boxes(index, &frame.image);
            let boxes: Option<Vec<PersonBox>> = from_tracks
                .as_ref()
                .map(|b| b.iter().map(|(_, b)| *b).collect());
            let output =
                estimator.run_network(&frame.image, frame.item, boxes.as_deref(), keep_maps)?;
            let mut estimate = estimator.steps().finish(output, keep_maps)?;
            let ids = tracking.track(&mut estimate, from_tracks.as_deref())?;
            Networked::Tracked(estimate, ids)
        }
    };
    Ok(Frame {
        index,
        image: frame.image,
        item,
    })
}

/// What the calling thread keeps of a video while its frames come back.
struct VideoTally {
    frames: u64,
    people: usize,
    /// (record index, track id, pose) for Savitzky-Golay at the end.
    tracked: Vec<(usize, u64, Pose)>,
}

impl Run<'_> {
    pub(super) fn video(
        &mut self,
        input: &Input,
        plan: Option<&OutputPlan>,
        on_event: &mut dyn FnMut(InferEvent),
    ) -> Result<(), Failure> {
        let started = std::time::Instant::now();
        let reader = FrameReader::open(&input.path).map_err(|e| Failure::Input(e.into()))?;
        let info = reader.info();
        let out_path = plan.map(|p| p.drawing.as_path());
        let maps_dir = plan.and_then(|p| p.maps.as_deref());
        if let Some(maps_dir) = maps_dir {
            std::fs::create_dir_all(maps_dir)
                .map_err(|e| Error::io(maps_dir, "cannot create", e))?;
        }
        let writer = match out_path {
            Some(out_path) => {
                create_parent(out_path)?;
                Some(FrameWriter::create(
                    out_path,
                    info.width,
                    info.height,
                    info.fps,
                )?)
            }
            None => None,
        };
        // A tracker and smoother per video: ids start again at 0 in every video.
        let min_score = self.style.min_score;
        let tracker = make_tracker(&self.opts.track, &self.opts.kalman, min_score);
        let one_euro = match (&self.opts.smooth, &tracker) {
            (SmoothKind::OneEuro(p), Some(_)) => Some(OneEuroSmoother::new(*p, min_score)),
            _ => None,
        };
        let top_down = self.estimator.is_top_down();
        let (mut td_tracking, finish_tracker) = if top_down {
            let tracking = TopDownTracking {
                tracker,
                det_interval: u64::from(self.opts.det_interval.max(1)),
            };
            (Some(tracking), None)
        } else {
            (None, tracker)
        };
        let steps = self.estimator.steps();
        let painter = Painter {
            layout: self.estimator.layout().clone(),
            style: self.style.clone(),
            tracked: !matches!(self.opts.track, TrackerKind::None),
        };
        let keep_maps = self.opts.heatmaps;
        let drawing = writer.is_some();
        let first_record = self.summary.records.len();
        let mut tally = VideoTally {
            frames: 0,
            people: 0,
            tracked: Vec::new(),
        };

        let (decoded_tx, decoded_rx) = sync_channel(QUEUE);
        let (prepared_tx, prepared_rx) = sync_channel(QUEUE);
        let (networked_tx, networked_rx) = sync_channel(QUEUE);
        let (finished_tx, finished_rx) = sync_channel(QUEUE);
        let (drawn_tx, drawn_rx) = sync_channel(QUEUE);
        // Unbounded on purpose: the calling thread both feeds the network (blocking when the
        // finish stage is full) and empties this queue; were it bounded, a full one would
        // stop the encode stage, then the draw and finish stages, then the calling thread,
        // which would never come to empty it. Its frames are few anyway: each comes after the
        // network step, the slowest, and the calling thread takes them after every frame.
        let (done_tx, done_rx) = channel::<Done>();

        let (decoding, own, stages) = thread::scope(|scope| {
            let h_decode = thread::Builder::new()
                .name("posekit-decode".into())
                .spawn_scoped(scope, move || decode(reader, decoded_tx));
            let steps_ref = &steps;
            let h_prepare = thread::Builder::new()
                .name("posekit-prepare".into())
                .spawn_scoped(scope, move || prepare(steps_ref, decoded_rx, prepared_tx));
            let h_finish = thread::Builder::new()
                .name("posekit-finish".into())
                .spawn_scoped(scope, move || {
                    finish(
                        steps_ref,
                        keep_maps,
                        finish_tracker,
                        one_euro,
                        networked_rx,
                        finished_tx,
                    )
                });
            let painter_ref = &painter;
            let h_draw = thread::Builder::new()
                .name("posekit-draw".into())
                .spawn_scoped(scope, move || {
                    draw(painter_ref, drawing, maps_dir, finished_rx, drawn_tx)
                });
            let h_encode = thread::Builder::new()
                .name("posekit-encode".into())
                .spawn_scoped(scope, move || encode(writer, drawn_rx, done_tx));

            // The network step, and the frames coming back done.
            let own: StageResult = (|| {
                let mut take_done = |block: bool, run: &mut Run<'_>| -> StageResult<bool> {
                    loop {
                        let done = if block {
                            match done_rx.recv() {
                                Ok(d) => d,
                                Err(_) => return Ok(false),
                            }
                        } else {
                            match done_rx.try_recv() {
                                Ok(d) => d,
                                Err(TryRecvError::Empty) => return Ok(true),
                                Err(TryRecvError::Disconnected) => return Ok(false),
                            }
                        };
                        run.frame_done(input, done, &mut tally, on_event)?;
                    }
                };
                for frame in prepared_rx.iter() {
                    let index = frame.index;
                    let networked = network(self.estimator, frame, keep_maps, &mut td_tracking)
                        .with_context(at_frame(index))?;
                    if networked_tx.send(networked).is_err() {
                        break;
                    }
                    take_done(false, self)?;
                }
                drop(prepared_rx);
                drop(networked_tx);
                take_done(true, self)?;
                Ok(())
            })();
            // On an error of its own the calling thread has dropped its queues by now (the
            // closure above owned them), which stops the stages before it and ends those
            // after it: every join below returns.
            let stages = [
                joined("prepare", h_prepare),
                joined("finish", h_finish),
                joined("draw", h_draw),
                joined("encode", h_encode),
            ];
            (joined("decode", h_decode), own, stages)
        });
        // The first failure in pipeline order: those after it are its consequences.
        let decoding = decoding?;
        let [prepared, finished, drawn, encoded] = stages;
        prepared?;
        own?;
        finished?;
        drawn?;
        encoded?;
        let frames = tally.frames;
        // The frames after a damaged one were processed; the damage is reported.
        if let Some(problem) = decoding.and_then(|d| d.problem()).filter(|_| frames > 0) {
            let message = format!("{}: {problem}", input.path.display());
            on_event(InferEvent::Warning {
                input,
                message: message.clone(),
            });
            self.summary.warnings.push(message);
        }
        if frames == 0 {
            if let Some(out_path) = out_path {
                let _ = std::fs::remove_file(out_path);
            }
            return Err(Failure::Input(Error::Invalid(format!(
                "{}: the video has no frame that ffmpeg could decode",
                input.path.display()
            ))));
        }
        if let SmoothKind::Savgol(params) = &self.opts.smooth {
            self.savgol(first_record, tally.tracked, params, min_score)?;
        }
        on_event(InferEvent::Video {
            input,
            frames,
            people: tally.people,
            drawing: out_path,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    /// A frame back from the pipeline: its results written (results.jsonl flushed) and
    /// reported.
    fn frame_done(
        &mut self,
        input: &Input,
        done: Done,
        tally: &mut VideoTally,
        on_event: &mut dyn FnMut(InferEvent),
    ) -> StageResult {
        let Done {
            index,
            estimate,
            ids,
        } = done;
        let image_id = self.next_id;
        self.next_id += 1;
        tally.people += estimate.poses.len();
        if matches!(self.opts.smooth, SmoothKind::Savgol(_)) {
            let first = self.summary.records.len();
            for (n, (id, pose)) in ids.iter().zip(&estimate.poses).enumerate() {
                if let Some(id) = id {
                    tally.tracked.push((first + n, *id, pose.clone()));
                }
            }
        }
        self.push_results(&input.name, image_id, Some(index), &estimate, &ids)?;
        self.summary.frames += 1;
        tally.frames += 1;
        on_event(InferEvent::Frame {
            input,
            frame: index,
        });
        Ok(())
    }
}
