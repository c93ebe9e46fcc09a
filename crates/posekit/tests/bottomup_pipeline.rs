//! The bottom-up training sample against a NumPy/OpenCV/pycocotools re-implementation of
//! HigherHRNet's pipeline (`tools/fixtures/make_bottomup_pipeline_fixtures.py`) at fixed
//! augmentation parameters: ignore masks, joint-index targets, heatmaps and (for the repo
//! image) the network input, at both output resolutions.
//!
//! Two coco-mini images (a crowd; people without labelled keypoints) come with their
//! annotations copied next to the fixture; their masks and targets depend on the annotations
//! and the picture size only, so a blank picture of the right size stands in for the JPEG.

use std::path::{Path, PathBuf};

use ndarray::Array3;
use posekit::pipelines::data::bottomup_config::ScaleType;
use posekit::pipelines::data::{
    read_rgb_checked, BottomUpAugmentation, BottomUpDataConfig, BottomUpDataset, LoadMode,
    SampleSource,
};
use serde_json::Value;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn fixture() -> Value {
    let text = std::fs::read_to_string(data("bottomup/higherhrnet_pipeline.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn config(fx: &Value, scale_type: ScaleType) -> BottomUpDataConfig {
    let mut cfg = BottomUpDataConfig::new(fx["input_size"].as_u64().unwrap() as usize);
    cfg.sigma = fx["sigma"].as_f64().unwrap();
    cfg.max_people = fx["max_people"].as_u64().unwrap() as usize;
    cfg.augmentation.scale_type = scale_type;
    assert_eq!(
        cfg.output_sizes(),
        fx["output_sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect::<Vec<_>>()
    );
    cfg
}

/// Run lengths of a flat 0/1 sequence, starting with a (possibly empty) run of zeros.
fn runs(bits: impl Iterator<Item = u8>) -> Vec<u64> {
    let (mut out, mut cur, mut n) = (Vec::new(), 0u8, 0u64);
    for v in bits {
        if v == cur {
            n += 1;
        } else {
            out.push(n);
            cur = v;
            n = 1;
        }
    }
    out.push(n);
    out
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn samples_equal_the_reference_pipeline() {
    let fx = fixture();
    for case in fx["cases"].as_array().unwrap() {
        let id = case["image_id"].as_i64().unwrap();
        let scale_type = match case["scale_type"].as_str().unwrap() {
            "short" => ScaleType::Short,
            _ => ScaleType::Long,
        };
        let cfg = config(&fx, scale_type);
        let repo = case["source"] == "repo";
        let ds = if repo {
            BottomUpDataset::coco(&data("coco/test_coco.json"), &data("coco"), &cfg)
        } else {
            BottomUpDataset::coco(
                &data("bottomup/coco_mini_subset.json"),
                Path::new("coco-mini-images-not-needed"),
                &cfg,
            )
        }
        .unwrap();
        let im = ds.images().iter().find(|im| im.image_id == id).unwrap();
        let ignored = ds.valid_mask(im).iter().filter(|&&v| v == 0).count() as u64;
        assert_eq!(
            ignored,
            case["ignored_pixels"].as_u64().unwrap(),
            "image {id}"
        );
        let image = if repo {
            read_rgb_checked(&im.image_path).unwrap()
        } else {
            Array3::zeros((im.height as usize, im.width as usize, 3))
        };
        let translate = case["translate"].as_array().unwrap();
        let aug = BottomUpAugmentation {
            scale: case["scale"].as_f64().unwrap(),
            rotation: case["rotation"].as_f64().unwrap(),
            translate: [
                translate[0].as_i64().unwrap(),
                translate[1].as_i64().unwrap(),
            ],
            flip: case["flip"].as_bool().unwrap(),
        };
        let sample = ds.make_sample(im, &image, &aug).unwrap();

        for (r, (got, want)) in sample
            .targets
            .iter()
            .zip(case["resolutions"].as_array().unwrap())
            .enumerate()
        {
            let what = format!("image {id} resolution {r} ({} px)", got.size);
            assert_eq!(got.size as u64, want["size"].as_u64().unwrap());
            // Mask: bit for bit.
            let mask_runs = runs(got.mask.iter().map(|&v| (v > 0.5) as u8));
            assert!(got.mask.iter().all(|&v| v == 0.0 || v == 1.0), "{what}");
            assert_eq!(mask_runs, u64s(&want["mask_runs"]), "{what}: mask");
            // Joint indices: exactly.
            let joints: Vec<i64> = got.joints.iter().copied().collect();
            let want_joints: Vec<i64> = want["joints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(joints, want_joints, "{what}: joint targets");
            // Joints after the affine and flip (float64 there, float32 here).
            let xy: Vec<f32> = got
                .people
                .outer_iter()
                .flat_map(|p| {
                    p.outer_iter()
                        .flat_map(|j| [j[0], j[1]])
                        .collect::<Vec<_>>()
                })
                .collect();
            for (a, b) in xy.iter().zip(f64s(&want["people_xy"])) {
                assert!(
                    (*a as f64 - b).abs() < 1e-3 * (1.0 + b.abs()),
                    "{what}: {a} vs {b}"
                );
            }
            // Heatmaps: per-joint sums and sampled values.
            let k = got.heatmaps.shape()[0];
            for (j, s) in f64s(&want["heatmap_sums"]).iter().enumerate().take(k) {
                let sum: f64 = got
                    .heatmaps
                    .index_axis(ndarray::Axis(0), j)
                    .iter()
                    .map(|&v| v as f64)
                    .sum();
                assert!(
                    (sum - s).abs() < 1e-4 * (1.0 + s),
                    "{what}: joint {j} sum {sum} vs {s}"
                );
            }
            let flat: Vec<f32> = got.heatmaps.iter().copied().collect();
            for (p, v) in u64s(&want["heatmap_positions"])
                .iter()
                .zip(f64s(&want["heatmap_values"]))
            {
                assert!(
                    (flat[*p as usize] as f64 - v).abs() < 1e-6,
                    "{what}: at {p}"
                );
            }
        }
        // The network input (repo image only): OpenCV's warp rounds to u8, so equal values
        // but for a rare +-1 grey level at a rounding tie.
        let positions = u64s(&case["input_positions"]);
        let values = f64s(&case["input_values"]);
        assert_eq!(positions.is_empty(), !repo);
        let mut off_by_one = 0;
        for (p, v) in positions.iter().zip(values) {
            let d = (sample.input[*p as usize] as f64 - v).abs();
            assert!(
                d < 1.0 / 255.0 / 0.224 + 1e-5,
                "image {id}: input at {p}: {d}"
            );
            off_by_one += (d > 1e-5) as usize;
        }
        assert!(
            off_by_one <= positions.len() / 50,
            "{off_by_one} inputs differ"
        );
    }
}

#[test]
fn batches_have_the_loss_layout_and_training_draws_are_reproducible() {
    let fx = fixture();
    let mut cfg = config(&fx, ScaleType::Short);
    cfg.max_people = 2;
    let ds = BottomUpDataset::coco(&data("coco/test_coco.json"), &data("coco"), &cfg).unwrap();
    // Every image of the file has annotations; unlabelled people keep their row.
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.unannotated_images, 0);
    let people: Vec<usize> = ds.images().iter().map(|im| im.joints.shape()[0]).collect();
    assert_eq!(people, [1, 3, 5, 5]);
    let mode = LoadMode::Train { seed: 3, epoch: 7 };
    let a = ds.load(2, mode).unwrap();
    let b = ds.load(2, mode).unwrap();
    assert_eq!(a, b, "a sample is a pure function of (seed, epoch, index)");
    let c = ds.load(2, LoadMode::Train { seed: 3, epoch: 8 }).unwrap();
    assert_ne!(a.augmentation, c.augmentation);
    // 5 people with max_people 2: the first 2 are kept for the tag loss.
    assert_eq!(a.dropped_people, 3);
    let samples = vec![a, ds.load(0, LoadMode::Eval).unwrap()];
    let batch = ds.collate(5, samples, 1);
    assert_eq!((batch.index, batch.batch_size, batch.skipped), (5, 2, 1));
    assert_eq!(batch.overflowing_images, 1);
    assert_eq!(batch.inputs.len(), 2 * 3 * 256 * 256);
    for r in &batch.resolutions {
        let s = r.size;
        assert_eq!(r.heatmaps.len(), 2 * 17 * s * s);
        assert_eq!(r.masks.len(), 2 * s * s);
        assert_eq!(r.joints.len(), 2 * 2 * 17 * 2);
        // Every visible index addresses the [K, s, s] tag map of its image.
        for j in r.joints.chunks_exact(2).filter(|j| j[1] > 0) {
            assert!(j[0] >= 0 && (j[0] as usize) < 17 * s * s);
        }
    }
}
