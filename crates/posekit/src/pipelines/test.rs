//! The evaluation loop of `posekit test` and of validation during training: every instance of
//! the test split through [`TopDownPredictor`], then the official HRNet post-processing and
//! the core's evaluators.
//!
//! COCO (official `COCODataset.evaluate`): each pose is rescored as box score x mean of its
//! keypoint scores above `in_vis_threshold` (0.2), poses of one image go through OKS-NMS at
//! `oks_threshold` (0.9) with the crop areas, and the survivors are written as a COCO results
//! file and scored by [`CocoEvaluator`] (pycocotools' numbers).
//!
//! MPII: predictions in annotation order, +1 to MATLAB's 1-based pixels, scored by PCKh
//! against `gt_valid.mat` (the MPII JSON has no head boxes, which PCKh divides by).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::bail;
use posekit_core::eval::coco::{CocoEvaluator, CocoStats};
use posekit_core::eval::mpii::{evaluate as evaluate_mpii, PckhTable};
use posekit_core::formats::coco::{write_keypoint_results, CocoKeypointResult, CocoKeypointsGt};
use posekit_core::formats::mpii::{MpiiGroundTruth, MpiiPredictions, MPII_NUM_JOINTS};
use posekit_core::nms::{hrnet_rescore, oks_nms, soft_oks_nms, SOFT_NMS_MAX_POSES};
use posekit_core::pose::Pose;
use posekit_nn::models::PoseNetwork;
use tch::Device;

use super::config::{DatasetFormat, ExperimentConfig, TestConfig};
use super::data::{LoadMode, Loader, LoaderOptions, TopDownDataset};
use super::topdown::TopDownPredictor;
use crate::progress::progress_bar;

/// How to run a test.
#[derive(Debug, Clone)]
pub struct TestOptions {
    pub test: TestConfig,
    /// Where `results.json` (COCO) or `pred.json` (MPII) is written; nothing is written when
    /// `None`.
    pub out_dir: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a test measured.
#[derive(Debug, Clone)]
pub enum TestMetrics {
    Coco(CocoStats),
    /// `None` when no `val_gt_mat` is configured (the predictions are still written).
    Mpii(Option<Box<PckhTable>>),
}

#[derive(Debug, Clone)]
pub struct TestReport {
    pub metrics: TestMetrics,
    /// Instances predicted and instances skipped for an unreadable image.
    pub predicted: usize,
    pub skipped: usize,
    /// Why each skipped instance was skipped (once per image index), for the caller to show.
    pub warnings: Vec<String>,
    pub seconds: f64,
    /// The results file written, if any.
    pub results_path: Option<PathBuf>,
}

impl TestReport {
    /// The number that selects the best checkpoint: COCO AP, or MPII mean PCKh@0.5 / 100.
    pub fn headline(&self) -> Option<f64> {
        match &self.metrics {
            TestMetrics::Coco(s) => Some(s.ap),
            TestMetrics::Mpii(t) => t.as_ref().map(|t| t.mean / 100.0),
        }
    }

    /// The table to print: pycocotools' summary or the MPII PCKh table.
    pub fn table(&self) -> String {
        match &self.metrics {
            TestMetrics::Coco(s) => s.summary(),
            TestMetrics::Mpii(Some(t)) => format!("{t}\n"),
            TestMetrics::Mpii(None) => "PCKh not computed: set dataset.val_gt_mat to MPII's \
                                        gt_valid.mat (PCKh needs its head boxes)\n"
                .into(),
        }
    }
}

/// The test split of a config (ground-truth boxes or detections for COCO).
pub fn test_dataset(cfg: &ExperimentConfig) -> crate::Result<TopDownDataset> {
    let d = &cfg.dataset;
    let ds = match d.format {
        DatasetFormat::Coco => {
            let split = cfg.data.coco_test_split(d.val_detections.as_deref())?;
            TopDownDataset::coco(&d.val_annotations, &d.val_images, &cfg.data, split)?
        }
        DatasetFormat::Mpii => {
            TopDownDataset::mpii(&d.val_annotations, &d.val_images, &cfg.data, false)?
        }
        DatasetFormat::Crowdpose => {
            bail!("dataset.format: CrowdPose is read by bottom-up configs only for now")
        }
    };
    if ds.is_empty() {
        bail!(
            "{}: the test split has no person to test on",
            d.val_annotations.display()
        );
    }
    Ok(ds)
}

/// The ground truth the metrics need, loaded once (training validates many times).
pub enum GroundTruth {
    Coco(CocoKeypointsGt),
    Mpii(Option<MpiiGroundTruth>),
}

impl GroundTruth {
    pub fn load(cfg: &ExperimentConfig) -> crate::Result<Self> {
        let d = &cfg.dataset;
        Ok(match d.format {
            DatasetFormat::Coco => GroundTruth::Coco(CocoKeypointsGt::load(&d.val_annotations)?),
            DatasetFormat::Mpii => GroundTruth::Mpii(match &d.val_gt_mat {
                Some(p) => Some(MpiiGroundTruth::from_mat_file(p)?),
                None => None,
            }),
            DatasetFormat::Crowdpose => {
                bail!("dataset.format: CrowdPose is read by bottom-up configs only for now")
            }
        })
    }
}

/// Runs `net` over `dataset` and scores it.
pub fn run_test(
    net: &dyn PoseNetwork,
    device: Device,
    cfg: &ExperimentConfig,
    dataset: &Arc<TopDownDataset>,
    gt: &GroundTruth,
    opts: &TestOptions,
) -> crate::Result<TestReport> {
    let start = Instant::now();
    let layout = dataset.layout().clone();
    let predictor = TopDownPredictor {
        net,
        device,
        codec: dataset.codec().clone(),
        affine_mode: cfg.data.affine_mode(),
        flip_pairs: layout.flip_pairs.clone(),
        flip: opts.test.flip,
    };
    let warnings: Arc<Mutex<Vec<String>>> = Arc::default();
    let loader = Loader::new(
        Arc::clone(dataset),
        LoaderOptions {
            batch_size: opts.test.batch_size,
            num_workers: opts.test.workers,
            prefetch_batches: 2,
            drop_last: false,
        },
    )?
    .with_skip_warning({
        let warnings = Arc::clone(&warnings);
        Arc::new(move |index, err| {
            if let Ok(mut w) = warnings.lock() {
                w.push(format!("skipping sample {index}: {err}"));
            }
        })
    });
    let bar = progress_bar(opts.progress, dataset.len() as u64, "test");
    // Per dataset index: the pose (image pixels, raw keypoint scores), box score, crop.
    let mut predictions: Vec<Option<Prediction>> = vec![None; dataset.len()];
    let mut batches = loader.epoch(LoadMode::Eval);
    for batch in &mut batches {
        let batch = batch?;
        let crops: Vec<_> = batch.metas.iter().map(|m| m.center_scale()).collect();
        let preds = predictor.predict(&batch.inputs, &crops)?;
        for (meta, pred) in batch.metas.iter().zip(preds) {
            predictions[meta.index] = Some(Prediction {
                keypoints: pred.keypoints,
                meta: meta.clone(),
            });
        }
        bar.inc((batch.batch_size + batch.skipped) as u64);
    }
    let skipped = batches.skipped();
    drop(batches);
    bar.finish_and_clear();
    let predicted = predictions.iter().filter(|p| p.is_some()).count();

    let (metrics, results_path) = match gt {
        GroundTruth::Coco(gt) => {
            let results = coco_results(gt, &layout, &predictions, &opts.test)?;
            let path = match &opts.out_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| crate::Error::io(dir, "cannot create", e))?;
                    let path = dir.join("results.json");
                    write_keypoint_results(&path, &results)?;
                    Some(path)
                }
                None => None,
            };
            let evaluator = CocoEvaluator::for_layout(gt, &layout)?;
            (TestMetrics::Coco(evaluator.evaluate(&results)?), path)
        }
        GroundTruth::Mpii(gt) => {
            let rows = mpii_rows(&predictions)?;
            let path = match &opts.out_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| crate::Error::io(dir, "cannot create", e))?;
                    let path = dir.join("pred.json");
                    let text = serde_json::to_string(&rows)?;
                    std::fs::write(&path, text)
                        .map_err(|e| crate::Error::io(&path, "cannot write", e))?;
                    Some(path)
                }
                None => None,
            };
            let table = match gt {
                Some(gt) => {
                    let preds = MpiiPredictions {
                        path: path
                            .clone()
                            .unwrap_or_else(|| PathBuf::from("<predictions>")),
                        rows,
                    };
                    Some(Box::new(evaluate_mpii(gt, &preds)?))
                }
                None => None,
            };
            (TestMetrics::Mpii(table), path)
        }
    };
    let warnings = warnings.lock().map(|w| w.clone()).unwrap_or_default();
    Ok(TestReport {
        metrics,
        predicted,
        skipped,
        warnings,
        seconds: start.elapsed().as_secs_f64(),
        results_path,
    })
}

#[derive(Debug, Clone)]
struct Prediction {
    keypoints: Vec<posekit_core::pose::Keypoint>,
    meta: super::data::SampleMeta,
}

/// Rescoring, per-image OKS-NMS and the COCO result records, as HRNet's `evaluate` does.
fn coco_results(
    gt: &CocoKeypointsGt,
    layout: &posekit_core::layout::KeypointLayout,
    predictions: &[Option<Prediction>],
    test: &TestConfig,
) -> crate::Result<Vec<CocoKeypointResult>> {
    let sigmas = layout.sigmas.clone().ok_or_else(|| {
        crate::error::invalid!(
            "layout `{}` has no OKS sigmas for OKS-NMS and COCO AP",
            layout.name
        )
    })?;
    let category_id = person_category(gt);
    // Images in id order, poses in dataset order within an image (the official dict order).
    let mut per_image: BTreeMap<i64, Vec<&Prediction>> = BTreeMap::new();
    for p in predictions.iter().flatten() {
        per_image.entry(p.meta.image_id).or_default().push(p);
    }
    let mut results = Vec::new();
    for (image_id, preds) in per_image {
        let poses: Vec<Pose> = preds
            .iter()
            .map(|p| {
                let score = hrnet_rescore(p.meta.box_score, &p.keypoints, test.in_vis_threshold);
                Pose::new(p.keypoints.clone(), score)
            })
            .collect();
        let areas: Vec<f64> = preds.iter().map(|p| p.meta.area).collect();
        // The official call passes no visibility threshold to the NMS itself.
        let mut keep = if test.soft_nms {
            soft_oks_nms(
                &poses,
                &areas,
                test.oks_threshold,
                &sigmas,
                None,
                SOFT_NMS_MAX_POSES,
            )?
        } else {
            oks_nms(&poses, &areas, test.oks_threshold, &sigmas, None)?
        };
        if keep.is_empty() {
            keep = (0..poses.len()).collect();
        }
        for i in keep {
            let mut r = CocoKeypointResult::from_pose(image_id, category_id, &poses[i]);
            r.center = Some(preds[i].meta.center.to_vec());
            r.scale = Some(preds[i].meta.scale.to_vec());
            results.push(r);
        }
    }
    Ok(results)
}

fn person_category(gt: &CocoKeypointsGt) -> i64 {
    gt.categories
        .iter()
        .find(|c| c.name == "person")
        .or(gt.categories.first())
        .map_or(1, |c| c.id)
}

/// One row of 16 `[x, y]` per MPII instance in annotation order, in 1-based pixels.
fn mpii_rows(
    predictions: &[Option<Prediction>],
) -> crate::Result<Vec<[[f64; 2]; MPII_NUM_JOINTS]>> {
    let mut rows = Vec::with_capacity(predictions.len());
    for p in predictions {
        let mut row = [[0.0; 2]; MPII_NUM_JOINTS];
        match p {
            Some(p) => {
                if p.keypoints.len() != MPII_NUM_JOINTS {
                    bail!(
                        "MPII needs 16 joints per prediction, got {}",
                        p.keypoints.len()
                    );
                }
                for (j, k) in p.keypoints.iter().enumerate() {
                    row[j] = [k.x as f64 + 1.0, k.y as f64 + 1.0];
                }
            }
            // An unreadable image: a prediction far away, so every joint counts as missed.
            None => row = [[-1e6, -1e6]; MPII_NUM_JOINTS],
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The report as `posekit test` and validation show it: a summary line, a warning for
/// instances whose image could not be read, the metric table and where the results went.
pub fn report_text(report: &TestReport, what: &Path) -> String {
    let mut text = format!(
        "tested {} ({} instances{}) in {:.1} s\n",
        what.display(),
        report.predicted,
        if report.skipped > 0 {
            format!(", {} unreadable", report.skipped)
        } else {
            String::new()
        },
        report.seconds
    );
    if report.skipped > 0 {
        text += &format!(
            "warning: {} test instance(s) have no prediction because their image could not be \
             read; the metrics below count them as missed\n",
            report.skipped
        );
    }
    text += &report.table();
    if let Some(p) = &report.results_path {
        text += &format!("results written to {}\n", p.display());
    }
    text
}
