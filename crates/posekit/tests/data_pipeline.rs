//! The top-down data pipeline on real COCO and MPII files (`tests/data/`, see its README for
//! the licences): which people become instances, that targets sit on the augmented joints, that
//! flips swap sides, that batches do not depend on the worker count, that broken images are
//! skipped and counted, that empty boxes are rejected by name, and that test-time metadata maps
//! predictions back to the image.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array2, ArrayView2};
use posekit::pipelines::data::{
    AugmentConfig, CocoSplit, DataConfig, LoadMode, Loader, LoaderOptions, TopDownBatch,
    TopDownDataset, TopDownSample,
};
use posekit::pipelines::image_io::read_rgb;
use posekit_core::geometry::affine::{crop_transform, heatmap_to_image, AffineMode};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn coco_dir() -> PathBuf {
    data_dir().join("coco")
}

fn coco_ann() -> PathBuf {
    coco_dir().join("test_coco.json")
}

fn cfg() -> DataConfig {
    DataConfig::new([192, 256], [48, 64])
}

fn coco_train(cfg: &DataConfig) -> TopDownDataset {
    TopDownDataset::coco(coco_ann(), coco_dir(), cfg, CocoSplit::Train).unwrap()
}

/// A scratch folder unique to one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "posekit-data-pipeline-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `(x, y)` of the maximum of one `[h, w]` map.
fn argmax(map: ArrayView2<f32>) -> (usize, usize) {
    let mut best = (0, 0, f32::NEG_INFINITY);
    for ((y, x), &v) in map.indexed_iter() {
        if v > best.2 {
            best = (x, y, v);
        }
    }
    (best.0, best.1)
}

fn target_map(sample: &TopDownSample, k: usize, cfg: &DataConfig) -> Array2<f32> {
    let [w, h] = cfg.heatmap_size;
    Array2::from_shape_vec((h, w), sample.target[k * h * w..(k + 1) * h * w].to_vec()).unwrap()
}

#[test]
fn coco_instances_are_the_keypointed_people_on_cleaned_boxes() {
    let cfg = cfg();
    let train = coco_train(&cfg);
    // test_coco.json: 14 person annotations, 2 of them without any labeled joint.
    assert_eq!(train.len(), 12);
    let gt = TopDownDataset::coco(coco_ann(), coco_dir(), &cfg, CocoSplit::GtBoxes).unwrap();
    assert_eq!(gt.instances(), train.instances());
    for inst in train.instances() {
        assert!(inst.image_path.exists(), "{}", inst.image_path.display());
        assert_eq!(inst.box_score, 1.0);
        assert!(inst.num_labeled() > 0);
        let joints = inst.joints.as_ref().unwrap();
        assert!(joints.column(2).iter().all(|&v| v == 0.0 || v == 1.0));
    }
    // Annotation 442619 (image 785, 640x425): bbox [280.79, 44.73, 218.7, 346.68] is cleaned to
    // w = 217.7, h = 345.68 (1 px narrower), centred, widened to 0.75 and padded by 1.25.
    let first = &train.instances()[0];
    assert_eq!(first.image_id, 785);
    assert_eq!(first.source_index, 0);
    let (cx, cy) = (280.79 + 217.7 / 2.0, 44.73 + 345.68 / 2.0);
    assert!((first.center[0] - cx).abs() < 1e-4 && (first.center[1] - cy).abs() < 1e-4);
    let h = 345.68 / 200.0 * 1.25;
    assert!((first.scale[1] - h).abs() < 1e-5, "{:?}", first.scale);
    assert!(
        (first.scale[0] - h * 0.75).abs() < 1e-5,
        "{:?}",
        first.scale
    );
    assert!((first.area - first.scale[0] * first.scale[1] * 40000.0).abs() < 1e-6);
    // COCO's visibility 2 becomes 1; the nose of 442619 is (367, 81, 2).
    let joints = first.joints.as_ref().unwrap();
    assert_eq!(joints.row(0).to_vec(), vec![367.0, 81.0, 1.0]);
}

#[test]
fn detections_are_filtered_by_score() {
    let cfg = cfg();
    let det = coco_dir().join("test_coco_det_AP_H_56.json");
    let load = |threshold: f64| {
        TopDownDataset::coco(
            coco_ann(),
            coco_dir(),
            &cfg,
            CocoSplit::Detections {
                path: det.clone(),
                threshold,
            },
        )
        .unwrap()
    };
    let all = load(0.0);
    assert_eq!(all.len(), 118);
    assert_eq!(all.report().detections_total, 118);
    let confident = load(0.5);
    assert_eq!(confident.len(), 18);
    assert_eq!(confident.report().detections_below_threshold, 100);
    assert_eq!(load(0.3).len(), 33);
    for inst in confident.instances() {
        assert!(inst.joints.is_none());
        assert!(inst.box_score >= 0.5);
    }
    // The first detection: image 785, score 0.99997, box centred at x + w/2.
    let first = &all.instances()[0];
    assert_eq!(first.image_id, 785);
    assert!((first.box_score - 0.999_973_2).abs() < 1e-6);
    assert!((first.center[0] - (277.118_315_854 + 225.091_265_793 / 2.0)).abs() < 1e-3);
    assert!(first
        .image_path
        .ends_with(Path::new("coco/000000000785.jpg")));

    // A detection box has no joints: evaluating it gives an all-zero target, training on it is
    // an error (not a skipped sample).
    let sample = confident.load(0, LoadMode::Eval).unwrap();
    assert!(sample.target.iter().all(|&v| v == 0.0));
    assert!(sample.target_weight.iter().all(|&v| v == 0.0));
    assert!((sample.meta.box_score - confident.instances()[0].box_score).abs() < 1e-9);
    let err = confident
        .load(0, LoadMode::Train { seed: 0, epoch: 0 })
        .unwrap_err();
    assert!(!err.is_unreadable_image());
    assert!(err.to_string().contains("detection"), "{err}");
}

/// Recomputes the augmented joints of a training sample from its instance and its meta, the
/// way the official code does (flip the joints about the image, then the crop affine).
fn expected_crop_joints(dataset: &TopDownDataset, sample: &TopDownSample) -> Array2<f32> {
    let cfg = dataset.config();
    let inst = dataset.instance(sample.meta.index).unwrap();
    let mut joints = inst.joints.clone().unwrap();
    if sample.meta.flipped {
        let width = read_rgb(&inst.image_path).unwrap().shape()[1] as f32;
        let flip = dataset.layout().flip_index();
        let src = joints.clone();
        for k in 0..joints.nrows() {
            let vis = src[[flip[k], 2]];
            joints[[k, 0]] = (width - 1.0 - src[[flip[k], 0]]) * vis;
            joints[[k, 1]] = src[[flip[k], 1]] * vis;
            joints[[k, 2]] = vis;
        }
    }
    let [w, h] = cfg.input_size;
    let trans = crop_transform(
        &sample.meta.center_scale(),
        sample.meta.rotation,
        [w as f64, h as f64],
        dataset.transform().affine_mode(),
    )
    .unwrap();
    for mut j in joints.outer_iter_mut() {
        if j[2] > 0.0 {
            let [x, y] = trans.apply([j[0] as f64, j[1] as f64]);
            j[0] = x as f32;
            j[1] = y as f32;
        }
    }
    joints
}

#[test]
fn training_targets_peak_on_the_augmented_joints() {
    targets_peak_on_the_augmented_joints(cfg());
}

/// The same with UDP: pixel-centre-aligned crops and targets (stride (192 - 1) / (48 - 1)).
#[test]
fn udp_training_targets_peak_on_the_augmented_joints() {
    let mut cfg = cfg();
    cfg.codec = posekit_core::codecs::heatmap::HeatmapVariant::Udp;
    targets_peak_on_the_augmented_joints(cfg);
}

fn targets_peak_on_the_augmented_joints(cfg: DataConfig) {
    let dataset = coco_train(&cfg);
    let [hw, hh] = cfg.heatmap_size;
    let [sx, sy] = dataset.codec().stride().map(|v| v as f32);
    let (mut flipped, mut rotated, mut checked) = (0, 0, 0);
    for epoch in 0..4 {
        for i in 0..dataset.len() {
            let sample = dataset
                .load(i, LoadMode::Train { seed: 11, epoch })
                .unwrap();
            assert_eq!(sample.input.len(), 3 * 256 * 192);
            assert_eq!(sample.target.len(), 17 * 64 * 48);
            assert!(sample.input.iter().all(|v| v.is_finite()));
            flipped += sample.meta.flipped as usize;
            rotated += (sample.meta.rotation != 0.0) as usize;
            assert!(sample.meta.rotation.abs() <= 90.0);

            let expected = expected_crop_joints(&dataset, &sample);
            let got = sample.joints.as_ref().unwrap();
            for k in 0..17 {
                let (ex, ey, vis) = (expected[[k, 0]], expected[[k, 1]], expected[[k, 2]]);
                assert_eq!(got[[k, 2]], vis);
                if vis == 0.0 {
                    assert_eq!(
                        sample.target_weight[k], 0.0,
                        "unlabeled joint {k} has weight"
                    );
                    continue;
                }
                assert!(
                    (got[[k, 0]] - ex).abs() < 1e-3 && (got[[k, 1]] - ey).abs() < 1e-3,
                    "joint {k}: {:?} vs ({ex}, {ey})",
                    got.row(k)
                );
                let (hx, hy) = (ex / sx, ey / sy);
                let inside =
                    hx >= 0.0 && hy >= 0.0 && hx <= (hw - 1) as f32 && hy <= (hh - 1) as f32;
                if !inside {
                    continue;
                }
                assert_eq!(sample.target_weight[k], 1.0, "joint {k} inside the map");
                let (ax, ay) = argmax(target_map(&sample, k, &cfg).view());
                assert!(
                    (ax as f32 - hx).abs() <= 1.0 && (ay as f32 - hy).abs() <= 1.0,
                    "sample {i} epoch {epoch} joint {k}: peak ({ax}, {ay}) vs joint ({hx}, {hy})"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "{checked}");
    assert!(flipped > 5 && flipped < 43, "{flipped}");
    assert!(rotated > 10 && rotated < 45, "{rotated}");
}

#[test]
fn a_sample_is_a_function_of_seed_epoch_and_index() {
    let dataset = coco_train(&cfg());
    let a = dataset
        .load(3, LoadMode::Train { seed: 5, epoch: 2 })
        .unwrap();
    let b = dataset
        .load(3, LoadMode::Train { seed: 5, epoch: 2 })
        .unwrap();
    assert_eq!(a, b);
    let c = dataset
        .load(3, LoadMode::Train { seed: 5, epoch: 3 })
        .unwrap();
    let d = dataset
        .load(3, LoadMode::Train { seed: 6, epoch: 2 })
        .unwrap();
    assert_ne!(a.meta, c.meta);
    assert_ne!(a.meta, d.meta);
}

#[test]
fn flip_swaps_left_and_right_joints() {
    let mut cfg = cfg();
    cfg.augmentation = AugmentConfig {
        flip: true,
        flip_prob: 1.0,
        ..AugmentConfig::none()
    };
    let dataset = coco_train(&cfg);
    let flip = dataset.layout().flip_index();
    let [hw, _] = cfg.heatmap_size;
    let in_w = cfg.input_size[0] as f32;
    for i in 0..dataset.len() {
        let plain = dataset.load(i, LoadMode::Eval).unwrap();
        let mirrored = dataset
            .load(i, LoadMode::Train { seed: 1, epoch: 0 })
            .unwrap();
        assert!(mirrored.meta.flipped);
        assert_eq!(mirrored.meta.rotation, 0.0);
        assert_eq!(mirrored.meta.scale, plain.meta.scale);
        let (pj, mj) = (
            plain.joints.as_ref().unwrap(),
            mirrored.joints.as_ref().unwrap(),
        );
        for k in 0..17 {
            let src = flip[k];
            assert_eq!(mj[[k, 2]], pj[[src, 2]], "sample {i} joint {k}");
            assert_eq!(mirrored.target_weight[k], plain.target_weight[src]);
            if pj[[src, 2]] == 0.0 {
                continue;
            }
            // Mirroring the image about its last pixel and re-centring the crop puts the joint
            // at `w - x` in the crop (not `w - 1 - x`: the half-pixel offset the flip test's
            // heatmap shift compensates).
            assert!(
                (mj[[k, 0]] - (in_w - pj[[src, 0]])).abs() < 1e-3,
                "sample {i} joint {k}"
            );
            assert!((mj[[k, 1]] - pj[[src, 1]]).abs() < 1e-3);
            if plain.target_weight[src] > 0.0 && mirrored.target_weight[k] > 0.0 {
                let (px, py) = argmax(target_map(&plain, src, &cfg).view());
                let (mx, my) = argmax(target_map(&mirrored, k, &cfg).view());
                let mirrored_px = (hw - 1 - px) as i64;
                if (1..hw as i64 - 1).contains(&mirrored_px) {
                    assert!((mx as i64 - mirrored_px).abs() <= 1, "sample {i} joint {k}");
                    assert_eq!(my, py);
                }
            }
        }
        // The pixels are mirrored too: the flipped crop is close to the mirrored plain crop
        // (they differ by the sub-pixel offset above, i.e. by interpolation only).
        let mirrored_plain = posekit::pipelines::data::flip_input(&plain.input, 192).unwrap();
        let diff: f32 = mirrored
            .input
            .iter()
            .zip(&mirrored_plain)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / plain.input.len() as f32;
        let unrelated: f32 = mirrored
            .input
            .iter()
            .zip(&plain.input)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / plain.input.len() as f32;
        assert!(diff < 0.5 * unrelated, "sample {i}: {diff} vs {unrelated}");
    }
}

fn collect(loader: &Loader, mode: LoadMode) -> Vec<TopDownBatch> {
    loader.epoch(mode).map(|b| b.unwrap()).collect()
}

#[test]
fn batches_do_not_depend_on_the_number_of_workers() {
    let dataset = Arc::new(coco_train(&cfg()));
    let loader = |workers: usize, drop_last: bool| {
        Loader::new(
            Arc::clone(&dataset),
            LoaderOptions {
                batch_size: 5,
                num_workers: workers,
                prefetch_batches: 1,
                drop_last,
            },
        )
        .unwrap()
    };
    let mode = LoadMode::Train { seed: 7, epoch: 3 };
    let reference = collect(&loader(0, false), mode);
    assert_eq!(
        reference.iter().map(|b| b.batch_size).collect::<Vec<_>>(),
        vec![5, 5, 2]
    );
    for workers in [1, 2, 5] {
        assert_eq!(
            collect(&loader(workers, false), mode),
            reference,
            "{workers} workers"
        );
    }
    let batch = &reference[0];
    assert_eq!(batch.input_shape(), [5, 3, 256, 192]);
    assert_eq!(batch.inputs.len(), 5 * 3 * 256 * 192);
    assert_eq!(batch.target_shape(), [5, 17, 64, 48]);
    assert_eq!(batch.targets.len(), 5 * 17 * 64 * 48);
    assert_eq!(batch.target_weights.len(), 5 * 17);
    // The batch holds exactly the samples the dataset gives for those indices.
    let second = dataset.load(batch.metas[1].index, mode).unwrap();
    let n = second.input.len();
    assert_eq!(batch.inputs[n..2 * n], second.input[..]);

    // The order is a shuffle of every instance, different in another epoch.
    let order = |batches: &[TopDownBatch]| -> Vec<usize> {
        batches
            .iter()
            .flat_map(|b| b.metas.iter().map(|m| m.index))
            .collect()
    };
    let mut sorted = order(&reference);
    sorted.sort();
    assert_eq!(sorted, (0..12).collect::<Vec<_>>());
    assert_ne!(
        order(&reference),
        order(&collect(
            &loader(2, false),
            LoadMode::Train { seed: 7, epoch: 4 }
        ))
    );

    // drop_last drops the short batch in training only; resuming at batch 1 gives the rest.
    assert_eq!(collect(&loader(2, true), mode).len(), 2);
    let eval = collect(&loader(2, true), LoadMode::Eval);
    assert_eq!(order(&eval), (0..12).collect::<Vec<_>>());
    let resumed: Vec<TopDownBatch> = loader(3, false)
        .epoch_from(mode, 1)
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(resumed, reference[1..]);

    // Stopping early does not hang: dropping the epoch stops the workers.
    let mut epoch = loader(3, false).epoch(mode);
    assert!(epoch.next().is_some());
    drop(epoch);
}

#[test]
fn unreadable_images_are_skipped_and_counted() {
    let tmp = TempDir::new("unreadable");
    std::fs::copy(
        coco_dir().join("000000197388.jpg"),
        tmp.0.join("000000197388.jpg"),
    )
    .unwrap();
    // 000000040083.jpg (2 people) truncated to half: the decoder alone would fill in the
    // missing half and return a picture.
    let bytes = std::fs::read(coco_dir().join("000000040083.jpg")).unwrap();
    std::fs::write(tmp.0.join("000000040083.jpg"), &bytes[..bytes.len() / 2]).unwrap();
    // 000000000785.jpg (1 person) is not an image at all; 000000196141.jpg (4 people) missing.
    std::fs::write(
        tmp.0.join("000000000785.jpg"),
        b"<html>404 Not Found</html>",
    )
    .unwrap();
    let dataset =
        Arc::new(TopDownDataset::coco(coco_ann(), &tmp.0, &cfg(), CocoSplit::Train).unwrap());
    let bad: Vec<usize> = dataset
        .instances()
        .iter()
        .enumerate()
        .filter(|(_, inst)| inst.image_id != 197388)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(bad.len(), 7);

    for &i in &bad {
        let err = dataset.load(i, LoadMode::Eval).unwrap_err();
        assert!(err.is_unreadable_image(), "{err}");
        let inst = &dataset.instances()[i];
        let message = err.to_string();
        assert!(
            message.contains(&*inst.image_path.to_string_lossy()),
            "{message}"
        );
        if inst.image_id == 40083 {
            assert!(message.contains("truncated"), "{message}");
        }
    }

    for workers in [0, 2] {
        let warnings = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&warnings);
        let loader = Loader::new(
            Arc::clone(&dataset),
            LoaderOptions {
                batch_size: 4,
                num_workers: workers,
                prefetch_batches: 2,
                drop_last: false,
            },
        )
        .unwrap()
        .with_skip_warning(Arc::new(move |index, err| {
            assert!(err.is_unreadable_image());
            sink.lock().unwrap().push(index);
        }));
        for epoch in 0..2 {
            let mut batches = loader.epoch(LoadMode::Train { seed: 3, epoch });
            let mut loaded = Vec::new();
            let mut skipped_in_batches = 0;
            for batch in batches.by_ref() {
                let batch = batch.unwrap();
                assert_eq!(batch.inputs.len(), batch.batch_size * 3 * 256 * 192);
                skipped_in_batches += batch.skipped;
                loaded.extend(batch.metas.iter().map(|m| m.index));
            }
            assert_eq!(loaded.len(), 5);
            assert!(loaded.iter().all(|i| !bad.contains(i)));
            assert_eq!(batches.skipped(), 7);
            let mut skipped = batches.skipped_indices().to_vec();
            skipped.sort();
            assert_eq!(skipped, bad);
            // Batches that lost every sample are left out, but their skips are still counted.
            assert!(skipped_in_batches <= 7);
        }
        // Two epochs, one warning per bad sample.
        let mut warned = warnings.lock().unwrap().clone();
        warned.sort();
        assert_eq!(warned, bad);
    }
}

fn write_modified_json(src: &Path, dst: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(src).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(dst, serde_json::to_vec(&json).unwrap()).unwrap();
}

#[test]
fn zero_area_boxes_are_rejected_with_the_annotation_named() {
    let tmp = TempDir::new("zero-area");
    let ann = tmp.0.join("zero_box.json");
    write_modified_json(&coco_ann(), &ann, |json| {
        json["annotations"][2]["bbox"][2] = 0.0.into();
    });
    let err = TopDownDataset::coco(&ann, coco_dir(), &cfg(), CocoSplit::Train)
        .unwrap_err()
        .to_string();
    assert!(err.contains("zero_box.json"), "{err}");
    assert!(err.contains("annotations[2].bbox"), "{err}");
    assert!(err.contains("230195"), "{err}");
    assert!(err.contains("zero-area"), "{err}");

    // A box entirely outside its image is named too.
    let outside = tmp.0.join("outside.json");
    write_modified_json(&coco_ann(), &outside, |json| {
        json["annotations"][0]["bbox"][0] = 900.0.into();
    });
    let err = TopDownDataset::coco(&outside, coco_dir(), &cfg(), CocoSplit::Train)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("annotations[0].bbox") && err.contains("outside"),
        "{err}"
    );

    // Opting into the official behaviour drops and counts it.
    let mut lenient = cfg();
    lenient.skip_invalid_boxes = true;
    let dataset = TopDownDataset::coco(&ann, coco_dir(), &lenient, CocoSplit::Train).unwrap();
    assert_eq!(dataset.len(), 11);
    assert_eq!(dataset.report().dropped_boxes, 1);

    // Detection files: the entry is named.
    let det = tmp.0.join("det.json");
    write_modified_json(
        &coco_dir().join("test_coco_det_AP_H_56.json"),
        &det,
        |json| {
            json[4]["bbox"][3] = 0.0.into();
        },
    );
    let err = TopDownDataset::coco(
        coco_ann(),
        coco_dir(),
        &cfg(),
        CocoSplit::Detections {
            path: det.clone(),
            threshold: 0.0,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("det.json") && err.contains("[4].bbox") && err.contains("zero-area"),
        "{err}"
    );
}

#[test]
fn eval_metadata_maps_the_crop_back_to_the_image() {
    let cfg = cfg();
    let dataset = coco_train(&cfg);
    let codec = dataset.codec().clone();
    let [hw, hh] = cfg.heatmap_size;
    for i in 0..dataset.len() {
        let sample = dataset.load(i, LoadMode::Eval).unwrap();
        let inst = dataset.instance(i).unwrap();
        let meta = &sample.meta;
        assert_eq!((meta.center, meta.scale), (inst.center, inst.scale));
        assert_eq!((meta.rotation, meta.flipped), (0.0, false));
        assert_eq!(meta.image_id, inst.image_id);
        assert_eq!(meta.image_path, inst.image_path);
        assert_eq!(meta.area, inst.area);

        // The exact inverse of the crop brings the crop joints back onto the annotation.
        let [w, h] = cfg.input_size;
        let inverse = crop_transform(
            &meta.center_scale(),
            0.0,
            [w as f64, h as f64],
            AffineMode::Standard,
        )
        .unwrap()
        .inverse()
        .unwrap();
        let original = inst.joints.as_ref().unwrap();
        let crop = sample.joints.as_ref().unwrap();
        // Decoding the target and mapping heatmap pixels back with the meta lands within one
        // heatmap pixel (in image units) of the annotation.
        let decoded = codec
            .decode(ndarray::ArrayView3::from_shape((17, hh, hw), &sample.target).unwrap())
            .unwrap();
        let to_image = heatmap_to_image(
            &meta.center_scale(),
            [hw as f64, hh as f64],
            AffineMode::Standard,
        )
        .unwrap();
        let image_px_per_heatmap_px = meta.scale[0] * 200.0 / hw as f64;
        for k in 0..17 {
            if original[[k, 2]] == 0.0 {
                continue;
            }
            let [x, y] = inverse.apply([crop[[k, 0]] as f64, crop[[k, 1]] as f64]);
            assert!(
                (x - original[[k, 0]] as f64).abs() < 1e-3,
                "sample {i} joint {k}"
            );
            assert!(
                (y - original[[k, 1]] as f64).abs() < 1e-3,
                "sample {i} joint {k}"
            );
            if sample.target_weight[k] == 0.0 {
                continue;
            }
            let p = decoded[k];
            let [x, y] = to_image.apply([p.x as f64, p.y as f64]);
            let tol = 1.0 * image_px_per_heatmap_px;
            assert!(
                (x - original[[k, 0]] as f64).abs() <= tol
                    && (y - original[[k, 1]] as f64).abs() <= tol,
                "sample {i} joint {k}: decoded ({x}, {y}) vs {:?}",
                original.row(k)
            );
        }
    }
}

#[test]
fn mpii_instances_follow_the_official_conversion() {
    let mut cfg = DataConfig::new([256, 256], [64, 64]);
    cfg.layout = "mpii16".into();
    let dir = data_dir().join("mpii");
    let ann = dir.join("test_mpii.json");
    let dataset = TopDownDataset::mpii(&ann, &dir, &cfg, true).unwrap();
    assert_eq!(dataset.len(), 5);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&ann).unwrap()).unwrap();
    for (i, inst) in dataset.instances().iter().enumerate() {
        let entry = &json[i];
        let c = [
            entry["center"][0].as_f64().unwrap(),
            entry["center"][1].as_f64().unwrap(),
        ];
        let s = entry["scale"].as_f64().unwrap();
        assert_eq!(inst.image_id, i as i64);
        assert!(inst.image_path.ends_with(entry["image"].as_str().unwrap()));
        // c[1] += 15 s; s *= 1.25; then 1-based -> 0-based.
        assert!((inst.center[0] - (c[0] - 1.0)).abs() < 1e-9);
        assert!((inst.center[1] - (c[1] + 15.0 * s - 1.0)).abs() < 1e-9);
        assert!((inst.scale[0] - 1.25 * s).abs() < 1e-9 && inst.scale[0] == inst.scale[1]);
        let joints = inst.joints.as_ref().unwrap();
        for k in 0..16 {
            let jx = entry["joints"][k][0].as_f64().unwrap();
            let jy = entry["joints"][k][1].as_f64().unwrap();
            let vis = entry["joints_vis"][k].as_f64().unwrap();
            assert!((joints[[k, 0]] as f64 - (jx - 1.0)).abs() < 1e-4);
            assert!((joints[[k, 1]] as f64 - (jy - 1.0)).abs() < 1e-4);
            assert_eq!(joints[[k, 2]] as f64, vis);
        }
        let sample = dataset
            .load(i, LoadMode::Train { seed: 0, epoch: 0 })
            .unwrap();
        assert_eq!(sample.input.len(), 3 * 256 * 256);
        assert_eq!(sample.target.len(), 16 * 64 * 64);
        let eval = dataset.load(i, LoadMode::Eval).unwrap();
        assert!(eval.target_weight.iter().any(|&w| w > 0.0));
    }
    // A COCO layout cannot read MPII joints.
    let err = TopDownDataset::mpii(&ann, &dir, &DataConfig::new([256, 256], [64, 64]), true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("16 joints"), "{err}");
}

/// The crop, joints and target weights of one real COCO person against a NumPy/OpenCV
/// re-implementation of the official HRNet pipeline (`tests/data/pipeline/`), at test time
/// and for a training crop with fixed parameters (scale x1.1, 30 degrees, flipped).
#[test]
fn crops_match_the_reference_pipeline() {
    use posekit::pipelines::data::Augmentation;

    let dir = data_dir().join("pipeline");
    let fixture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pipeline_fixture.json")).unwrap()).unwrap();
    let cfg = cfg();
    let dataset = coco_train(&cfg);
    let index = dataset
        .instances()
        .iter()
        .position(|inst| inst.source_index == 0)
        .unwrap();
    assert_eq!(fixture["annotation_id"], 442619);
    let inst = dataset.instance(index).unwrap();
    let image = read_rgb(&inst.image_path).unwrap();
    let pair = |v: &serde_json::Value| [v[0].as_f64().unwrap(), v[1].as_f64().unwrap()];

    for name in ["eval", "aug"] {
        let case = &fixture["cases"][name];
        let (center, scale) = (pair(&case["center"]), pair(&case["scale"]));
        let sample = if name == "eval" {
            // The instance's own center/scale are the reference's `_xywh2cs` of the cleaned box.
            assert!(
                (inst.center[0] - center[0]).abs() < 1e-9,
                "{:?} vs {center:?}",
                inst.center
            );
            assert!((inst.center[1] - center[1]).abs() < 1e-9);
            assert!(
                (inst.scale[0] - scale[0]).abs() < 1e-9,
                "{:?} vs {scale:?}",
                inst.scale
            );
            assert!((inst.scale[1] - scale[1]).abs() < 1e-9);
            dataset.load(index, LoadMode::Eval).unwrap()
        } else {
            let aug = Augmentation {
                center,
                scale,
                rotation: case["rotation"].as_f64().unwrap(),
                flip: case["flip"].as_bool().unwrap(),
                half_body: false,
            };
            dataset
                .transform()
                .make_sample_with(index, inst, &image, &aug)
                .unwrap()
        };

        let joints = sample.joints.as_ref().unwrap();
        for k in 0..17 {
            let want = &case["joints"][k];
            for (c, tol) in [(0, 1e-3), (1, 1e-3), (2, 0.0)] {
                let w = want[c].as_f64().unwrap();
                assert!(
                    (joints[[k, c]] as f64 - w).abs() <= tol,
                    "{name} joint {k}[{c}]: {} vs {w}",
                    joints[[k, c]]
                );
            }
            assert_eq!(
                sample.target_weight[k] as f64,
                case["target_weight"][k].as_f64().unwrap(),
                "{name} weight {k}"
            );
        }

        // The reference decoded the JPEG with libjpeg-turbo, posekit with zune-jpeg; their
        // pixels differ by a grey level here and there, so the crops are compared loosely
        // (a crop one pixel off or mirrored differs by tens of levels on average).
        let want = read_rgb(&dir.join(case["crop_png"].as_str().unwrap())).unwrap();
        let (h, w) = (256, 192);
        let mut total = 0.0f64;
        let mut far = 0;
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let v = sample.input[c * h * w + y * w + x];
                    let level = (v * cfg.std[c] + cfg.mean[c]) * 255.0;
                    let diff = (level - want[[y, x, c]] as f32).abs() as f64;
                    total += diff;
                    far += (diff > 3.0) as usize;
                }
            }
        }
        let mean = total / (3 * h * w) as f64;
        assert!(mean < 0.1, "{name}: mean difference {mean} grey levels");
        assert!(
            far < 3 * h * w / 1000,
            "{name}: {far} values differ by more than 3 levels"
        );
        eprintln!("{name}: mean |diff| {mean:.3} grey levels, {far} values beyond 3");
    }
}
