//! The front door: a preset, its weights and a device in; people in a picture out.
//!
//! ```no_run
//! use posekit::{Device, PoseEstimator};
//! # fn main() -> posekit::Result<()> {
//! let est = PoseEstimator::builder("hrnet-w32").weights("w32.pth").device(Device::Cpu).build()?;
//! let mut image = posekit::read_image("photo.jpg")?;
//! let people = est.estimate(&image, None)?;
//! posekit::draw(&mut image, &people, est.layout(), &Default::default());
//! # Ok(()) }
//! ```
//!
//! Every model runs through the test pipeline of the reference its weights come from, chosen by
//! the family of its registry row (never by its name):
//! * top-down families ([`topdown`]): one crop per person box, the HRNet test (flip test,
//!   quarter-pixel shift or DARK, rescoring, OKS-NMS). With no boxes, the people that the
//!   bundled OpenPose-MobileNetV2 finds are the boxes ([`Proposals::Bundled`], MMPose's
//!   `inference_topdown(model, img, bboxes=None)` takes the whole picture instead:
//!   [`Proposals::WholeImage`]);
//! * bottom-up families ([`bottomup`]): HigherHRNet, SPM, CMU's and tf-pose's OpenPose.
//!
//! Poses come back in picture pixels, in the estimator's [`PoseEstimator::layout`]: the
//! network's own layout, except that a layout which declares a COCO-17 mapping (CMU-18, whose
//! models are trained on COCO) answers in COCO-17, so that results of every COCO model compare
//! and evaluate alike.

pub mod backend;
pub mod bottomup;
pub mod proposals;
pub mod topdown;
pub mod weights;

use std::path::{Path, PathBuf};

use ndarray::{Array3, ArrayD};
use posekit_core::codecs::heatmap::Refinement;
use posekit_core::layout::{JointMapping, KeypointLayout};
use posekit_core::pose::Pose;
use posekit_nn::export::ExportInfo;
use posekit_nn::models::{Paradigm, Preset, PRESETS};
use tch::Device;

pub use self::backend::{Backend, OrtSettings};
pub use self::bottomup::{BottomUpEngine, BottomUpPipeline};
pub use self::proposals::PROPOSAL_MARGIN;
pub use self::topdown::{PersonBox, TopDownEngine};
pub use self::weights::BUNDLED_PRESET;

use crate::error::{bail, invalid, Error, Result};
use crate::pipelines::config::ExperimentConfig;
use crate::pipelines::model::LoadedModel;

/// Where a top-down model gets its person boxes when [`PoseEstimator::estimate`] is given none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proposals {
    /// The people the bundled OpenPose-MobileNetV2 finds, each box the extent of its joints
    /// grown by [`PROPOSAL_MARGIN`] on every side (detector-like boxes, to which the HRNet
    /// crop adds its own 25%).
    #[default]
    Bundled,
    /// The whole picture as one person (MMPose's `bboxes=None`).
    WholeImage,
}

/// Which person boxes a top-down estimate used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxSource {
    /// The caller's.
    Given,
    /// The bundled model's people ([`Proposals::Bundled`]).
    Proposals,
    /// The whole picture ([`Proposals::WholeImage`]).
    WholeImage,
    /// A video's tracks, each box around the keypoints the tracker predicts for the frame
    /// (`posekit infer --det-interval`, between the frames with proposals). The estimator is
    /// given these boxes; the caller marks the estimate with this source.
    Tracks,
}

impl BoxSource {
    /// The name results and messages use: `given`, `proposals`, `whole`, `tracks`.
    pub fn name(self) -> &'static str {
        match self {
            BoxSource::Given => "given",
            BoxSource::Proposals => "proposals",
            BoxSource::WholeImage => "whole",
            BoxSource::Tracks => "tracks",
        }
    }
}

/// Everything one picture gave, for callers that want more than the poses.
#[derive(Debug, Clone, Default)]
pub struct Estimate {
    /// People in [`PoseEstimator::layout`], picture pixels.
    pub poses: Vec<Pose>,
    /// Each person's box `[x, y, w, h]`: the box a top-down model cropped, or the extent of
    /// the found joints for a bottom-up model.
    pub boxes: Vec<[f64; 4]>,
    /// Raw network outputs by name (asked for with `keep_maps`).
    pub maps: Vec<(String, ArrayD<f32>)>,
    /// Top-down models: where the boxes came from. `None` for bottom-up models.
    pub box_source: Option<BoxSource>,
    /// Top-down models: for each person, the index of the box it was cropped from in the
    /// boxes given or proposed (HRNet's OKS-NMS drops and reorders people), so that a video
    /// can tell which track's box a person was found in. Empty for bottom-up models.
    pub crops: Vec<usize>,
}

/// A network with its reference pre- and post-processing.
enum Engine {
    TopDown(Box<TopDownEngine>),
    BottomUp(Box<BottomUpEngine>),
}

/// A pose model ready to run; see the module documentation.
pub struct PoseEstimator {
    preset: &'static Preset,
    engine: Engine,
    /// The layout of the returned poses.
    layout: KeypointLayout,
    /// The network's layout to [`Self::layout`] when they differ (CMU-18 -> COCO-17).
    to_output: Option<JointMapping>,
    proposals: Proposals,
    /// The bundled model, for top-down proposals (loaded once, when first needed).
    proposer: std::sync::OnceLock<Result<Box<PoseEstimator>, String>>,
    /// The engine, and ONNX Runtime's threads: the proposer runs on the same.
    backend: Backend,
    ort_threads: Option<usize>,
}

/// Configures a [`PoseEstimator`]; every setting has the reference protocol's default.
#[derive(Debug, Clone)]
pub struct PoseEstimatorBuilder {
    preset: Option<String>,
    config: Option<PathBuf>,
    weights: Option<PathBuf>,
    device: Device,
    flip: Option<bool>,
    refinement: Option<Refinement>,
    input_size: Option<usize>,
    proposals: Proposals,
    backend: Backend,
    ort: OrtSettings,
}

impl PoseEstimator {
    /// A builder for the preset `name` (see `posekit models`; `openpose-mobilenetv2` needs no
    /// weights, it ships inside the library).
    pub fn builder(name: &str) -> PoseEstimatorBuilder {
        PoseEstimatorBuilder {
            preset: Some(name.to_string()),
            ..PoseEstimatorBuilder::empty()
        }
    }

    /// A builder for a model trained with an experiment config (TOML): its `[model]` and
    /// `[data]` sections say what network it is and how its crops were made.
    pub fn from_config(config: impl AsRef<Path>) -> PoseEstimatorBuilder {
        PoseEstimatorBuilder {
            config: Some(config.as_ref().to_path_buf()),
            ..PoseEstimatorBuilder::empty()
        }
    }

    /// The preset names the builder knows.
    pub fn presets() -> Vec<&'static str> {
        PRESETS.iter().map(|p| p.name).collect()
    }

    /// The registry row of the model.
    pub fn preset(&self) -> &'static Preset {
        self.preset
    }

    /// The layout of the returned poses (what to draw and evaluate them with).
    pub fn layout(&self) -> &KeypointLayout {
        &self.layout
    }

    /// The engine that runs the network ([`Backend::Torch`] or [`Backend::Ort`]: an
    /// [`Backend::Auto`] of the builder is resolved when the model is built).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn paradigm(&self) -> Paradigm {
        self.preset.paradigm()
    }

    pub fn is_top_down(&self) -> bool {
        matches!(self.engine, Engine::TopDown(_))
    }

    pub fn device(&self) -> Device {
        match &self.engine {
            Engine::TopDown(e) => e.device,
            Engine::BottomUp(e) => e.device,
        }
    }

    /// The top-down engine, for callers that feed it prepared crops (`posekit test`); `None`
    /// for bottom-up models.
    pub fn top_down(&self) -> Option<&TopDownEngine> {
        match &self.engine {
            Engine::TopDown(e) => Some(e),
            Engine::BottomUp(_) => None,
        }
    }

    /// The bottom-up engine (its people in the network's own layout, before any mapping);
    /// `None` for top-down models.
    pub fn bottom_up(&self) -> Option<&BottomUpEngine> {
        match &self.engine {
            Engine::BottomUp(e) => Some(e),
            Engine::TopDown(_) => None,
        }
    }

    /// Joint scores at or below this are not worth drawing: heatmap maxima below 0.3 mean
    /// "not visible" for top-down models; see [`BottomUpPipeline::default_min_score`].
    pub fn default_min_score(&self) -> f32 {
        match &self.engine {
            Engine::TopDown(_) => 0.3,
            Engine::BottomUp(e) => e.pipeline.default_min_score(),
        }
    }

    /// The people in `image` (`[H, W, 3]` RGB). A top-down model crops `boxes` (`[x, y, w, h]`
    /// in picture pixels); with `None` it uses the builder's [`Proposals`]. A bottom-up model
    /// finds the people itself and refuses boxes.
    pub fn estimate(&self, image: &Array3<u8>, boxes: Option<&[PersonBox]>) -> Result<Vec<Pose>> {
        Ok(self.estimate_detailed(image, boxes, false)?.poses)
    }

    /// [`Self::estimate`] for many pictures: a top-down model batches the crops of all of
    /// them; a bottom-up model runs them one by one (its reference resizes every picture to
    /// its own input size). `boxes`, when given, has one entry per picture.
    pub fn estimate_batch(
        &self,
        images: &[Array3<u8>],
        boxes: Option<&[Vec<PersonBox>]>,
    ) -> Result<Vec<Vec<Pose>>> {
        if let Some(b) = boxes {
            if b.len() != images.len() {
                bail!("{} box lists for {} pictures", b.len(), images.len());
            }
        }
        match &self.engine {
            Engine::TopDown(engine) => {
                let mut all = Vec::with_capacity(images.len());
                for (i, image) in images.iter().enumerate() {
                    let (person_boxes, _) = self.person_boxes(image, boxes.map(|b| &b[i][..]))?;
                    all.push(person_boxes);
                }
                let outs = engine.predict_many(images, &all, false)?;
                outs.into_iter()
                    .map(|o| self.to_output_layout(o.poses))
                    .collect()
            }
            Engine::BottomUp(_) => images
                .iter()
                .map(|image| self.estimate(image, None))
                .collect(),
        }
    }

    /// [`Self::estimate`] with the boxes used and, with `keep_maps`, the raw network outputs.
    pub fn estimate_detailed(
        &self,
        image: &Array3<u8>,
        boxes: Option<&[PersonBox]>,
        keep_maps: bool,
    ) -> Result<Estimate> {
        let (h, w, c) = image.dim();
        if c != 3 || h == 0 || w == 0 {
            bail!("a picture must be [H, W, 3] RGB with H, W > 0, got [{h}, {w}, {c}]");
        }
        match &self.engine {
            Engine::TopDown(engine) => {
                let (person_boxes, source) = self.person_boxes(image, boxes)?;
                let mut out = engine
                    .predict_many(std::slice::from_ref(image), &[person_boxes], keep_maps)?
                    .pop()
                    .ok_or_else(|| invalid!("the top-down engine returned no picture"))?;
                out.poses = self.to_output_layout(out.poses)?;
                out.box_source = Some(source);
                Ok(out)
            }
            Engine::BottomUp(_) => {
                if boxes.is_some() {
                    bail!(
                        "{} is a bottom-up model: it finds the people itself and takes no \
                         person boxes",
                        self.preset.name
                    );
                }
                let steps = self.steps();
                let prepared = steps.prepare(image)?;
                let raw = self.run_network(image, prepared, None, keep_maps)?;
                steps.finish(raw, keep_maps)
            }
        }
    }

    /// The CPU steps of [`Self::estimate_detailed`] before and after the network, for a
    /// pipeline that runs them on other threads than the network's (a video:
    /// [`crate::pipelines::infer`]): `steps.prepare`, then [`Self::run_network`] on the
    /// estimator's thread, then `steps.finish` give what `estimate_detailed` gives.
    pub fn steps(&self) -> EstimateSteps {
        EstimateSteps {
            bottom_up: self.bottom_up().map(BottomUpEngine::steps),
            to_output: self.to_output.clone(),
        }
    }

    /// The network step: a bottom-up model's network on the prepared input; a top-down
    /// model's whole estimate (proposals, crops, network and decoding: its crops depend on
    /// `boxes`, which a video's tracker gives only once the frame before is done).
    pub fn run_network(
        &self,
        image: &Array3<u8>,
        prepared: Prepared,
        boxes: Option<&[PersonBox]>,
        keep_maps: bool,
    ) -> Result<NetworkOutput> {
        match (&self.engine, prepared.0) {
            (Engine::BottomUp(engine), PreparedKind::BottomUp(input)) => {
                if boxes.is_some() {
                    bail!(
                        "{} is a bottom-up model: it finds the people itself and takes no \
                         person boxes",
                        self.preset.name
                    );
                }
                Ok(NetworkOutput(OutputKind::BottomUp(
                    engine.run_network(input)?,
                )))
            }
            (Engine::TopDown(_), PreparedKind::Picture) => Ok(NetworkOutput(OutputKind::Done(
                self.estimate_detailed(image, boxes, keep_maps)?,
            ))),
            _ => bail!(
                "a picture prepared for another model was given to {}",
                self.preset.name
            ),
        }
    }

    /// The boxes a top-down model crops in `image`.
    fn person_boxes(
        &self,
        image: &Array3<u8>,
        boxes: Option<&[PersonBox]>,
    ) -> Result<(Vec<PersonBox>, BoxSource)> {
        if let Some(boxes) = boxes {
            return Ok((boxes.to_vec(), BoxSource::Given));
        }
        let (h, w, _) = image.dim();
        match self.proposals {
            Proposals::WholeImage => Ok((
                vec![PersonBox {
                    bbox: [0.0, 0.0, w as f64, h as f64],
                    score: 1.0,
                }],
                BoxSource::WholeImage,
            )),
            Proposals::Bundled => {
                let proposer = self
                    .proposer
                    .get_or_init(|| {
                        let mut builder = PoseEstimator::builder(BUNDLED_PRESET)
                            .device(self.device())
                            .backend(self.backend);
                        builder.ort.threads = self.ort_threads;
                        builder.build().map(Box::new).map_err(|e| format!("{e}"))
                    })
                    .as_ref()
                    .map_err(|e| invalid!("loading the bundled model for person proposals: {e}"))?;
                let people = proposer.estimate(image, None)?;
                Ok((proposals::boxes_of(&people, w, h), BoxSource::Proposals))
            }
        }
    }

    fn to_output_layout(&self, poses: Vec<Pose>) -> Result<Vec<Pose>> {
        match &self.to_output {
            None => Ok(poses),
            Some(mapping) => Ok(poses
                .iter()
                .map(|p| mapping.apply(p))
                .collect::<posekit_core::Result<_>>()?),
        }
    }
}

/// The CPU steps of an estimate around the network ([`PoseEstimator::steps`]): no network, so
/// they can run on other threads.
#[derive(Debug, Clone)]
pub struct EstimateSteps {
    bottom_up: Option<bottomup::BottomUpSteps>,
    to_output: Option<JointMapping>,
}

/// A picture made ready for [`PoseEstimator::run_network`].
pub struct Prepared(PreparedKind);

enum PreparedKind {
    BottomUp(bottomup::BottomUpInput),
    /// Top-down models prepare their crops in the network step.
    Picture,
}

/// What [`PoseEstimator::run_network`] gives, for [`EstimateSteps::finish`].
pub struct NetworkOutput(OutputKind);

enum OutputKind {
    BottomUp(bottomup::BottomUpRaw),
    /// A top-down model's estimate, complete.
    Done(Estimate),
}

impl EstimateSteps {
    /// The CPU work before the network: a bottom-up model's resized, normalised input.
    pub fn prepare(&self, image: &Array3<u8>) -> Result<Prepared> {
        let (h, w, c) = image.dim();
        if c != 3 || h == 0 || w == 0 {
            bail!("a picture must be [H, W, 3] RGB with H, W > 0, got [{h}, {w}, {c}]");
        }
        Ok(Prepared(match &self.bottom_up {
            Some(steps) => PreparedKind::BottomUp(steps.prepare(image)?),
            None => PreparedKind::Picture,
        }))
    }

    /// The CPU work after the network: a bottom-up model's grouping, poses in the output
    /// layout, each person's box the extent of its joints.
    pub fn finish(&self, output: NetworkOutput, keep_maps: bool) -> Result<Estimate> {
        match (output.0, &self.bottom_up) {
            (OutputKind::Done(estimate), _) => Ok(estimate),
            (OutputKind::BottomUp(raw), Some(steps)) => {
                let (h, w) = raw.image_hw();
                let out = steps.decode(raw, keep_maps)?;
                let poses = match &self.to_output {
                    None => out.poses,
                    Some(mapping) => out
                        .poses
                        .iter()
                        .map(|p| mapping.apply(p))
                        .collect::<posekit_core::Result<_>>()?,
                };
                let boxes = poses.iter().map(|p| joint_extent(p, w, h)).collect();
                Ok(Estimate {
                    poses,
                    boxes,
                    maps: out.maps,
                    box_source: None,
                    crops: Vec::new(),
                })
            }
            (OutputKind::BottomUp(_), None) => {
                bail!("network outputs of a bottom-up model given to a top-down model's steps")
            }
        }
    }
}

impl std::fmt::Debug for PoseEstimator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoseEstimator")
            .field("preset", &self.preset.name)
            .field("layout", &self.layout.name)
            .field("device", &self.device())
            .field("proposals", &self.proposals)
            .finish()
    }
}

impl PoseEstimatorBuilder {
    fn empty() -> Self {
        PoseEstimatorBuilder {
            preset: None,
            config: None,
            weights: None,
            device: Device::Cpu,
            flip: None,
            refinement: None,
            input_size: None,
            proposals: Proposals::default(),
            backend: Backend::default(),
            ort: OrtSettings::default(),
        }
    }

    /// The weights: a training checkpoint, an official or MMPose `.pth`, or a `.safetensors`
    /// (DataParallel `module.` names and `{"state_dict": ...}` wrappers are understood).
    /// Needed for every preset but the bundled one.
    pub fn weights(mut self, path: impl AsRef<Path>) -> Self {
        self.weights = Some(path.as_ref().to_path_buf());
        self
    }

    /// An experiment config a top-down model was trained with (its `[model]` and `[data]`).
    pub fn config(mut self, path: impl AsRef<Path>) -> Self {
        self.config = Some(path.as_ref().to_path_buf());
        self
    }

    /// Where the network runs (default: the CPU). A GPU libtorch cannot see is an error, never
    /// a silent fall-back to the CPU.
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The flip test (top-down models and HigherHRNet; on by default, as their references
    /// test). Asking for it on a model whose reference has none is an error.
    pub fn flip(mut self, flip: bool) -> Self {
        self.flip = Some(flip);
        self
    }

    /// How top-down heatmaps are decoded (default: the config's, else the quarter-pixel
    /// shift of the HRNet test).
    pub fn refinement(mut self, refinement: Refinement) -> Self {
        self.refinement = Some(refinement);
        self
    }

    /// The input size of a bottom-up model: HigherHRNet's short side (a multiple of 64), SPM's
    /// square side (64), CMU OpenPose's height (8), tf-pose OpenPose's height (16; the width
    /// keeps 432:368). Top-down crop sizes come from the config.
    pub fn input_size(mut self, size: usize) -> Self {
        self.input_size = Some(size);
        self
    }

    /// Person boxes of a top-down model when `estimate` gets none (default: the bundled
    /// model's people).
    pub fn proposals(mut self, proposals: Proposals) -> Self {
        self.proposals = proposals;
        self
    }

    /// The engine that runs the network (default [`Backend::Auto`]: ONNX Runtime on the CPU
    /// when its library is installed, libtorch otherwise). [`Backend::Ort`] runs the same
    /// pipeline on ONNX Runtime, on the CPU, with the network exported in memory (see
    /// [`backend`]) or the file given to [`Self::onnx_model`].
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// ONNX Runtime's intra-op threads (default: its own choice, one per physical core).
    /// libtorch's thread count is process-wide: set it with `tch::set_num_threads`.
    pub fn threads(mut self, threads: usize) -> Self {
        self.ort.threads = Some(threads);
        self
    }

    /// Run this `.onnx` file (written by `posekit export` or any exporter with the same input
    /// and output names and shapes) instead of exporting the network in memory; implies
    /// [`Backend::Ort`]. The file is checked against the preset when the model is built. The
    /// weights are still needed: they are the reference the file is checked against, and
    /// what the person proposals of a top-down model run on.
    pub fn onnx_model(mut self, path: impl AsRef<Path>) -> Self {
        self.ort.model = Some(path.as_ref().to_path_buf());
        self.backend = Backend::Ort;
        self
    }

    /// Loads the model. Every way this can go wrong (an unknown name, missing weights, weights
    /// of another model, an option the model cannot take) is an error that says what to do.
    pub fn build(mut self) -> Result<PoseEstimator> {
        posekit_nn::device::check_device(self.device)?;
        self.backend = self.backend.resolve(self.device);
        if self.backend == Backend::Ort {
            if self.device != Device::Cpu {
                bail!(
                    "the ONNX Runtime backend runs on the CPU; leave out the device or use the \
                     torch backend on {:?}",
                    self.device
                );
            }
            // Before loading any weights: a missing library is said at once.
            posekit_nn::ort_engine::library::environment()?;
        }
        let config = match &self.config {
            Some(path) => Some(ExperimentConfig::load(path)?.config),
            None => None,
        };
        let name = match (&self.preset, &config) {
            (Some(name), Some(cfg)) if *name != cfg.model.preset => bail!(
                "the preset {name} disagrees with the config's model.preset `{}`; give one of \
                 them",
                cfg.model.preset
            ),
            (_, Some(cfg)) => cfg.model.preset.clone(),
            (Some(name), None) => name.clone(),
            (None, None) => bail!("name a preset or a config"),
        };
        let preset = Preset::find(&name).map_err(|_| Error::UnknownPreset {
            name: name.clone(),
            known: PoseEstimator::presets().join(", "),
        })?;
        let network_layout = KeypointLayout::builtin(preset.layout).ok_or_else(|| {
            invalid!(
                "{}: layout `{}` is not built in",
                preset.name,
                preset.layout
            )
        })?;
        let engine = match preset.paradigm() {
            Paradigm::TopDown => Engine::TopDown(Box::new(self.top_down(preset, config)?)),
            Paradigm::BottomUp => Engine::BottomUp(Box::new(self.bottom_up(preset, config)?)),
        };
        let (layout, to_output) = match &engine {
            Engine::TopDown(e) => (e.layout.clone(), None),
            Engine::BottomUp(_) => output_layout(&network_layout)?,
        };
        Ok(PoseEstimator {
            preset,
            engine,
            layout,
            to_output,
            proposals: self.proposals,
            proposer: std::sync::OnceLock::new(),
            backend: self.backend,
            ort_threads: self.ort.threads,
        })
    }

    fn top_down(
        &self,
        preset: &'static Preset,
        config: Option<ExperimentConfig>,
    ) -> Result<TopDownEngine> {
        if self.input_size.is_some() {
            bail!(
                "an input size is for bottom-up models; a top-down model's crop size comes from \
                 its config"
            );
        }
        let Some(weights) = &self.weights else {
            return Err(Error::WeightsNeeded {
                preset: preset.name.to_string(),
                hint: "a training checkpoint, or an official/MMPose .pth or .safetensors of that \
                       model; only openpose-mobilenetv2 ships with weights"
                    .into(),
            });
        };
        let (mut model, mut data) = match &config {
            Some(cfg) => {
                let layout = cfg.layout()?;
                let model = cfg.model.build(&layout, self.device)?;
                (model, cfg.data.clone())
            }
            None => (
                LoadedModel::new(preset.name, self.device)?,
                topdown::preset_data_config(preset),
            ),
        };
        if let Some(r) = self.refinement {
            data.refinement = r;
        }
        weights::load(&mut model, weights)?;
        model.fold_batchnorm()?;
        if self.backend == Backend::Ort {
            let info = match &config {
                Some(cfg) => backend::config_export_info(cfg, self.config.as_deref())?,
                None => ExportInfo::for_preset(preset)?,
            };
            let [w, h] = data.input_size;
            let crop = Some((h as i64, w as i64));
            model = backend::use_onnx_runtime(model, info, &self.ort, crop)?;
        }
        TopDownEngine::new(model, data, self.flip.unwrap_or(true), self.device)
    }

    fn bottom_up(
        &self,
        preset: &'static Preset,
        config: Option<ExperimentConfig>,
    ) -> Result<BottomUpEngine> {
        if config.is_some() {
            bail!(
                "{} is a bottom-up model; configs describe top-down models here",
                preset.name
            );
        }
        if self.refinement.is_some() {
            bail!(
                "{} is a bottom-up model: heatmap refinement is for top-down models",
                preset.name
            );
        }
        let mut model = LoadedModel::new(preset.name, self.device)?;
        match &self.weights {
            Some(path) => weights::load(&mut model, path)?,
            None if preset.bundled_weights().is_some() => weights::load_bundled(&mut model)?,
            None => {
                return Err(Error::WeightsNeeded {
                    preset: preset.name.to_string(),
                    hint: format!(
                        "its official .pth, an MMPose checkpoint or a .safetensors of that model; \
                         none is shipped; {BUNDLED_PRESET} needs none"
                    ),
                })
            }
        }
        model.fold_batchnorm()?;
        if self.backend == Backend::Ort {
            model = backend::use_onnx_runtime_for_preset(model, &self.ort, None)?;
        }
        let pipeline = BottomUpPipeline::of_family(preset.family)
            .ok_or_else(|| invalid!("{} is not a bottom-up model", preset.name))?;
        let flip = self.flip.unwrap_or(pipeline.has_flip_test());
        BottomUpEngine::new(model, self.input_size, flip, self.device)
    }
}

/// The layout results are reported in: a network whose layout declares a mapping to COCO-17
/// (CMU-18: its models are trained on COCO) answers in COCO-17 through that mapping, so that
/// every COCO model's results compare and evaluate alike; any other network in its own.
fn output_layout(network: &KeypointLayout) -> Result<(KeypointLayout, Option<JointMapping>)> {
    const COCO17: &str = "coco17";
    if network.name == COCO17 || !network.mappings.contains_key(COCO17) {
        return Ok((network.clone(), None));
    }
    let coco = KeypointLayout::builtin(COCO17)
        .ok_or_else(|| invalid!("the built-in {COCO17} layout is missing"))?;
    let mapping = network.mapping_to(&coco)?;
    Ok((coco, Some(mapping)))
}

/// `[x, y, w, h]` around a pose's found joints, clipped to the picture; a zero-size box for a
/// pose with none.
pub(crate) fn joint_extent(pose: &Pose, width: usize, height: usize) -> [f64; 4] {
    match pose.bounds(0.0) {
        Some([x0, y0, x1, y1]) => {
            let x0 = (x0 as f64).clamp(0.0, width as f64);
            let y0 = (y0 as f64).clamp(0.0, height as f64);
            let x1 = (x1 as f64).clamp(0.0, width as f64);
            let y1 = (y1 as f64).clamp(0.0, height as f64);
            [x0, y0, x1 - x0, y1 - y0]
        }
        None => [0.0; 4],
    }
}
