//! Scoring a bottom-up predictor on a COCO keypoint ground truth, the way tf-pose-estimation's
//! `eval.py` scores OpenPose: every image of the ground truth (with or without people; an image
//! where the model sees someone nobody annotated costs precision, as it should) through the
//! predictor, each person written as a COCO-17 result with the predictor's person score, and
//! the file scored by the core's [`CocoEvaluator`] (pycocotools' numbers).
//!
//! Results carry no `bbox` (tf-pose writes none), so pycocotools takes each result's area from
//! its keypoints' extent, exactly as for tf-pose's published 0.173 on COCO 2014 val.

use std::path::{Path, PathBuf};

use crate::error::{bail, ResultExt};
use ndarray::Array3;
use posekit_core::eval::coco::{CocoEvaluator, CocoStats};
use posekit_core::formats::coco::{
    validate_keypoint_results, write_keypoint_results, CocoKeypointResult, CocoKeypointsGt,
};
use posekit_core::pose::Pose;

use crate::estimator::bottomup::BottomUpEngine;
use crate::estimator::PoseEstimator;

use super::config::ExperimentConfig;
use super::model::LoadedModel;

use super::data::read_rgb_checked;

/// A model that finds every person of a whole image, in COCO-17 order and image pixels, each
/// with its person score (the ranking score of the COCO evaluation).
pub trait BottomUpPredictor {
    fn predict_coco17(&self, image_rgb: &Array3<u8>) -> crate::Result<Vec<Pose>>;
}

impl BottomUpPredictor for PoseEstimator {
    /// The estimator's people, whose layout is COCO-17 for every COCO model (CMU-18 models
    /// are mapped, their neck dropped), with the reference's person score.
    fn predict_coco17(&self, image_rgb: &Array3<u8>) -> crate::Result<Vec<Pose>> {
        if self.layout().name != "coco17" {
            bail!(
                "{} answers in the {} layout; the COCO test needs COCO-17",
                self.preset().name,
                self.layout().name
            );
        }
        self.estimate(image_rgb, None)
    }
}

/// A bottom-up network built from an experiment config (e.g. the one being trained) with its
/// reference test pipeline. Its layout must be COCO-17 for the COCO test.
/// A network whose layout declares a mapping to COCO-17 (OpenPose's CMU-18) answers through
/// it, as `PoseEstimator` does (the neck dropped).
impl BottomUpPredictor for BottomUpEngine {
    fn predict_coco17(&self, image_rgb: &Array3<u8>) -> crate::Result<Vec<Pose>> {
        let poses = self.predict(image_rgb, false)?.poses;
        if self.layout.name == "coco17" {
            return Ok(poses);
        }
        let coco = posekit_core::layout::KeypointLayout::builtin("coco17")
            .ok_or_else(|| crate::error::invalid!("the built-in coco17 layout is missing"))?;
        if !self.layout.mappings.contains_key("coco17") {
            bail!(
                "{} answers in the {} layout, which has no mapping to COCO-17; the COCO test \
                 needs COCO-17",
                self.model.preset.name,
                self.layout.name
            );
        }
        let mapping = self.layout.mapping_to(&coco)?;
        Ok(poses
            .iter()
            .map(|p| mapping.apply(p))
            .collect::<Result<Vec<_>, _>>()?)
    }
}

/// Tests a bottom-up config's model (`model`, its weights already in place) on the config's
/// `val_*` split with the config's flip setting, writing `out_dir/results.json`, pictures resized to `[bottomup].test_input_size` (default
/// `input_size`). The model is handed back (training goes on with it); batch norm
/// is not folded, so its variables are untouched.
pub fn test_config_model(
    model: LoadedModel,
    cfg: &ExperimentConfig,
    device: tch::Device,
    out_dir: &Path,
    progress: bool,
) -> crate::Result<(LoadedModel, BottomUpReport)> {
    let Some(bu) = &cfg.bottomup else {
        bail!("the config has no [bottomup] section: not a bottom-up model");
    };
    let engine = BottomUpEngine::new(model, Some(bu.test_size()), cfg.test.flip, device)?;
    let report = bottomup_test(
        &engine,
        &cfg.dataset.val_annotations,
        &cfg.dataset.val_images,
        out_dir,
        progress,
    );
    Ok((engine.model, report?))
}

/// A bottom-up report as `posekit test` and validation show it: pycocotools' table and a
/// summary line.
pub fn bottomup_report_text(report: &BottomUpReport) -> String {
    let mut text = report.stats.summary();
    text += &format!(
        "{} images, {} people predicted in {:.1} s ({:.1} images/s); results: {}\n",
        report.images,
        report.people,
        report.seconds,
        report.images as f64 / report.seconds.max(1e-9),
        report.results_path.display()
    );
    text
}

/// What a bottom-up test measured.
#[derive(Debug, Clone)]
pub struct BottomUpReport {
    pub stats: CocoStats,
    pub images: usize,
    pub people: usize,
    pub seconds: f64,
    pub results_path: PathBuf,
}

/// Runs `model` on every image of `gt_path` (files under `images_dir`), writes
/// `out_dir/results.json` and returns the stats ([`bottomup_test`] returns the whole report,
/// with a progress bar if asked).
///
/// An unreadable image stops the test with an error naming it: skipping it would report an AP
/// for a different image set than the one named.
pub fn run_bottomup_test(
    model: &dyn BottomUpPredictor,
    gt_path: &Path,
    images_dir: &Path,
    out_dir: &Path,
) -> crate::Result<CocoStats> {
    Ok(bottomup_test(model, gt_path, images_dir, out_dir, false)?.stats)
}

/// The bottom-up test, with its timing and where the results went.
pub fn bottomup_test(
    model: &dyn BottomUpPredictor,
    gt_path: &Path,
    images_dir: &Path,
    out_dir: &Path,
    progress: bool,
) -> crate::Result<BottomUpReport> {
    let gt = CocoKeypointsGt::load(gt_path)?;
    if gt.images.is_empty() {
        bail!("{}: the ground truth has no images", gt_path.display());
    }
    if gt.categories.iter().any(|c| c.keypoints.len() != 17) {
        bail!(
            "{}: a bottom-up COCO test needs COCO-17 keypoint categories",
            gt_path.display()
        );
    }
    let category_id = gt.categories.first().map(|c| c.id).unwrap_or(1);
    std::fs::create_dir_all(out_dir)
        .map_err(|e| crate::Error::io(out_dir, "cannot create the output folder", e))?;
    let mut images: Vec<_> = gt.images.iter().collect();
    images.sort_by_key(|im| im.id);

    let bar = crate::progress::progress_bar(progress, images.len() as u64, "test");
    let start = std::time::Instant::now();
    let mut results = Vec::new();
    for im in &images {
        let path = images_dir.join(&im.file_name);
        let image = read_rgb_checked(&path)?;
        let (h, w, _) = image.dim();
        if (w as u32, h as u32) != (im.width, im.height) {
            bail!(
                "{}: the image is {w}x{h} but the ground truth says {}x{} (image id {}): wrong images folder?",
                path.display(),
                im.width,
                im.height,
                im.id
            );
        }
        let poses = model
            .predict_coco17(&image)
            .with_context(|| format!("predicting {}", path.display()))?;
        for pose in &poses {
            results.push(CocoKeypointResult::from_pose(im.id, category_id, pose));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();

    let results_path = out_dir.join("results.json");
    validate_keypoint_results(&results_path, &results, &gt)?;
    write_keypoint_results(&results_path, &results)?;
    let stats = CocoEvaluator::new(&gt).evaluate(&results)?;
    Ok(BottomUpReport {
        stats,
        images: images.len(),
        people: results.len(),
        seconds,
        results_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use posekit_core::pose::Keypoint;

    /// Predicts the ground truth of one image back (from a table), so the test checks the
    /// plumbing: image order, ids, results file and the evaluator's perfect score.
    struct Oracle(Vec<Pose>);

    impl BottomUpPredictor for Oracle {
        fn predict_coco17(&self, _image: &Array3<u8>) -> crate::Result<Vec<Pose>> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn an_oracle_scores_one_and_bad_folders_are_named() {
        let dir = std::env::temp_dir().join(format!("posekit-bottomup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = image::RgbImage::from_pixel(64, 48, image::Rgb([90, 90, 90]));
        img.save(dir.join("a.png")).unwrap();
        let kps: Vec<f64> = (0..17)
            .flat_map(|j| [10.0 + j as f64 * 2.0, 5.0 + j as f64 * 2.0, 2.0])
            .collect();
        let gt = serde_json::json!({
            "images": [{"id": 3, "file_name": "a.png", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 3, "category_id": 1, "keypoints": kps,
                             "num_keypoints": 17, "bbox": [10, 5, 34, 34], "area": 1000.0, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person", "keypoints": (0..17).map(|j| format!("k{j}")).collect::<Vec<_>>(),
                            "skeleton": []}]
        });
        let gt_path = dir.join("gt.json");
        std::fs::write(&gt_path, gt.to_string()).unwrap();
        let pose = Pose::new(
            kps.chunks(3)
                .map(|c| Keypoint::new(c[0] as f32, c[1] as f32, 1.0))
                .collect(),
            0.9,
        );
        let report =
            bottomup_test(&Oracle(vec![pose]), &gt_path, &dir, &dir.join("out"), false).unwrap();
        assert!((report.stats.ap - 1.0).abs() < 1e-9, "{}", report.stats);
        assert_eq!((report.images, report.people), (1, 1));
        let written = posekit_core::formats::coco::load_keypoint_results(
            &report.results_path,
            &CocoKeypointsGt::load(&gt_path).unwrap(),
        )
        .unwrap();
        assert_eq!(written[0].image_id, 3);

        let err = bottomup_test(
            &Oracle(vec![]),
            &gt_path,
            &dir.join("nowhere"),
            &dir.join("out"),
            false,
        )
        .unwrap_err();
        assert!(err.report().contains("a.png"), "{}", err.report());
        std::fs::remove_dir_all(&dir).ok();
    }
}
