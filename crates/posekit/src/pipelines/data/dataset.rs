//! A top-down dataset: the list of person instances plus the transform that turns one into a
//! sample. Loading a sample is a pure function of `(index, mode)` — it reads the image and draws
//! its augmentation from its own seeded stream — so any thread may load any sample in any order.

use std::fmt;
use std::path::Path;

use posekit_core::codecs::heatmap::HeatmapCodec;
use posekit_core::layout::KeypointLayout;

use super::coco::{load_coco_instances, CocoSplit};
use super::config::DataConfig;
use super::error::DataError;
use super::instance::TopDownInstance;
use super::jpeg_check::read_rgb_checked;
use super::mpii::load_mpii_instances;
use super::sample::{TopDownSample, TopDownTransform};

/// How a sample is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// With the training augmentation, drawn from the stream of `(seed, epoch, index)`: the same
    /// triple always gives the same sample, so a resumed run replays the same augmentations.
    Train { seed: u64, epoch: u64 },
    /// Without augmentation (validation and testing).
    Eval,
}

/// What loading left out, for the log. Nothing here is an error; the counts let a user see
/// that a threshold or a mini split did what they expected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Annotations or detections dropped for an empty box (only with `skip_invalid_boxes`).
    pub dropped_boxes: usize,
    /// Entries of the detection file.
    pub detections_total: usize,
    /// Detections of another category than person.
    pub detections_not_person: usize,
    /// Detections scoring below `det_score_threshold`.
    pub detections_below_threshold: usize,
    /// Detections on images the ground truth does not list (e.g. a full-val2017 detection file
    /// with a mini split).
    pub detections_unknown_image: usize,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.detections_total > 0 {
            parts.push(format!(
                "{} detections: {} below the score threshold, {} not persons, {} on images \
                 outside the annotation file",
                self.detections_total,
                self.detections_below_threshold,
                self.detections_not_person,
                self.detections_unknown_image
            ));
        }
        if self.dropped_boxes > 0 {
            parts.push(format!("{} empty boxes dropped", self.dropped_boxes));
        }
        if parts.is_empty() {
            write!(f, "nothing left out")
        } else {
            write!(f, "{}", parts.join("; "))
        }
    }
}

/// Person instances of one split with the transform that makes their samples.
#[derive(Debug, Clone)]
pub struct TopDownDataset {
    instances: Vec<TopDownInstance>,
    transform: TopDownTransform,
    report: LoadReport,
}

impl TopDownDataset {
    /// COCO person_keypoints: `ann` is the annotation file, `images_dir` the folder its
    /// `file_name`s live in. See [`CocoSplit`] for which people are kept.
    pub fn coco(
        ann: impl AsRef<Path>,
        images_dir: impl AsRef<Path>,
        cfg: &DataConfig,
        split: CocoSplit,
    ) -> Result<Self, DataError> {
        let transform = TopDownTransform::new(cfg)?;
        let (instances, report) = load_coco_instances(
            ann.as_ref(),
            images_dir.as_ref(),
            cfg,
            transform.layout(),
            &split,
        )?;
        Ok(Self {
            instances,
            transform,
            report,
        })
    }

    /// MPII from the HRNet/MMPose annotation JSON; `train` requires joints on every entry.
    pub fn mpii(
        ann: impl AsRef<Path>,
        images_dir: impl AsRef<Path>,
        cfg: &DataConfig,
        train: bool,
    ) -> Result<Self, DataError> {
        let transform = TopDownTransform::new(cfg)?;
        let (instances, report) = load_mpii_instances(
            ann.as_ref(),
            images_dir.as_ref(),
            cfg,
            transform.layout(),
            train,
        )?;
        Ok(Self {
            instances,
            transform,
            report,
        })
    }

    /// A dataset of instances built elsewhere (another format, a hand-made list).
    pub fn from_instances(
        instances: Vec<TopDownInstance>,
        cfg: &DataConfig,
    ) -> Result<Self, DataError> {
        Ok(Self {
            instances,
            transform: TopDownTransform::new(cfg)?,
            report: LoadReport::default(),
        })
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The `i`-th instance, `None` past the end.
    pub fn instance(&self, i: usize) -> Option<&TopDownInstance> {
        self.instances.get(i)
    }

    pub fn instances(&self) -> &[TopDownInstance] {
        &self.instances
    }

    /// What loading left out (detections below the threshold, dropped boxes).
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    pub fn config(&self) -> &DataConfig {
        self.transform.config()
    }

    pub fn layout(&self) -> &KeypointLayout {
        self.transform.layout()
    }

    pub fn codec(&self) -> &HeatmapCodec {
        self.transform.codec()
    }

    pub fn transform(&self) -> &TopDownTransform {
        &self.transform
    }

    /// Reads the image of instance `i` and makes its sample. Errors say which sample failed;
    /// [`DataError::is_unreadable_image`] tells a missing or corrupt image (which training
    /// skips) from everything else.
    pub fn load(&self, i: usize, mode: LoadMode) -> Result<TopDownSample, DataError> {
        let instance = self.instances.get(i).ok_or_else(|| {
            DataError::Core(posekit_core::Error::Shape(format!(
                "sample index {i} is out of range for a dataset of {} instances",
                self.instances.len()
            )))
        })?;
        let wrap = |source: DataError| DataError::Sample {
            index: i,
            image: instance.image_path.clone(),
            source: Box::new(source),
        };
        // Image errors already name the file; they stay unwrapped so that a skipped-sample
        // warning does not repeat it.
        let image = read_rgb_checked(&instance.image_path)?;
        self.transform
            .make_sample(i, instance, &image, mode)
            .map_err(wrap)
    }
}
