//! The front door, [`posekit::PoseEstimator`], as a library user calls it; and the bundled
//! OpenPose-MobileNetV2 through it against tf-pose-estimation's own results on the three
//! pictures TensorFlow was run on (`crates/posekit-nn/tests/data/openpose_mobilenet/`).

mod common;

use std::collections::HashMap;

use ndarray::Array3;
use posekit::{BoxSource, Device, Error, PersonBox, PoseEstimator, Proposals};
use posekit_nn::weights::read_safetensors_tch;
use tch::Tensor;

use common::*;

fn tf_pose_io() -> HashMap<String, Tensor> {
    read_safetensors_tch(&repo(
        "crates/posekit-nn/tests/data/openpose_mobilenet/reference.safetensors",
    ))
    .unwrap()
}

/// The stored BGR network input as the RGB picture a user would pass.
fn rgb_image(io: &HashMap<String, Tensor>, img: &str) -> Array3<u8> {
    let t = io[&format!("input_{img}")]
        .squeeze_dim(0)
        .flip([2])
        .contiguous();
    let size: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let data = Vec::<u8>::try_from(&t.view([-1])).unwrap();
    Array3::from_shape_vec((size[0], size[1], size[2]), data).unwrap()
}

fn bundled() -> PoseEstimator {
    PoseEstimator::builder("openpose-mobilenetv2")
        .device(Device::Cpu)
        .build()
        .unwrap()
}

#[test]
fn the_bundled_model_finds_tf_poses_people() {
    let io = tf_pose_io();
    let est = bundled();
    let engine = est.bottom_up().expect("a bottom-up model");
    // (picture, parts found per person in tf-pose's CMU-18 order, person scores).
    let expected: [(&str, &[usize], &[f32]); 3] = [
        ("astronaut", &[9], &[1.147]),
        ("grace_hopper", &[5], &[1.324]),
        ("coco_000000196141", &[17, 12, 17], &[0.957, 0.675, 0.933]),
    ];
    for (img, parts, scores) in expected {
        let rgb = rgb_image(&io, img);
        let poses = engine.predict(&rgb, false).unwrap().poses;
        let counts: Vec<usize> = poses
            .iter()
            .map(|p| p.keypoints.iter().filter(|k| k.score > 0.0).count())
            .collect();
        assert_eq!(counts, parts, "{img}");
        for (p, e) in poses.iter().zip(scores) {
            assert!(
                (p.score - e).abs() < 2e-3,
                "{img}: score {} vs {e}",
                p.score
            );
            assert_eq!(p.keypoints.len(), 18);
            for k in p.keypoints.iter().filter(|k| k.score > 0.0) {
                assert!(k.x >= 0.0 && k.x < 432.0 && k.y >= 0.0 && k.y < 368.0);
            }
        }
        // The estimator answers in COCO-17: the same people, the neck dropped.
        let coco = est.estimate(&rgb, None).unwrap();
        assert_eq!(coco.len(), poses.len());
        for (c, p) in coco.iter().zip(&poses) {
            assert_eq!(c.keypoints.len(), 17);
            assert_eq!(c.keypoints[0], p.keypoints[0], "nose");
            assert_eq!(c.keypoints[5], p.keypoints[5], "left shoulder = CMU 5");
            assert_eq!(c.keypoints[6], p.keypoints[2], "right shoulder = CMU 2");
            assert_eq!(c.score, p.score);
        }
    }
    // The astronaut's 9 parts are tf-pose's: nose, neck, both shoulders, right elbow, eyes,
    // ears.
    let poses = engine
        .predict(&rgb_image(&io, "astronaut"), false)
        .unwrap()
        .poses;
    let found: Vec<usize> = (0..18)
        .filter(|&i| poses[0].keypoints[i].score > 0.0)
        .collect();
    assert_eq!(found, vec![0, 1, 2, 3, 5, 14, 15, 16, 17]);
    assert_eq!(est.layout().name, "coco17");
}

#[test]
fn people_come_back_in_the_pictures_own_pixels() {
    // The same picture stretched to twice the width: x coordinates double.
    let io = tf_pose_io();
    let est = bundled();
    let rgb = rgb_image(&io, "grace_hopper");
    let wide = Array3::from_shape_fn((368, 864, 3), |(y, x, c)| rgb[[y, x / 2, c]]);
    let base = est.estimate(&rgb, None).unwrap();
    let poses = est.estimate(&wide, None).unwrap();
    assert_eq!(poses.len(), 1);
    let (a, b) = (&base[0].keypoints[0], &poses[0].keypoints[0]);
    assert!(b.score > 0.0 && (b.x - 2.0 * a.x).abs() <= 8.0 && (b.y - a.y).abs() <= 4.0);
    // A batch gives what one by one gives.
    let batch = est.estimate_batch(&[rgb.clone(), wide], None).unwrap();
    assert_eq!(batch[0], base);
    assert_eq!(batch[1], poses);
}

#[test]
fn bad_pictures_options_and_weights_are_clear_errors() {
    let est = bundled();
    assert!(est
        .estimate(&Array3::<u8>::zeros((64, 64, 1)), None)
        .is_err());
    assert!(est
        .estimate(&Array3::<u8>::zeros((0, 64, 3)), None)
        .is_err());
    // A bottom-up model takes no boxes.
    let boxes = [PersonBox::new([0.0, 0.0, 10.0, 10.0])];
    let err = est
        .estimate(&Array3::<u8>::zeros((64, 64, 3)), Some(&boxes))
        .unwrap_err();
    assert!(err.to_string().contains("bottom-up"), "{err}");
    // Unknown presets and missing weights are typed errors a caller can match.
    let err = PoseEstimator::builder("hrnet-w64").build().unwrap_err();
    assert!(matches!(err, Error::UnknownPreset { .. }), "{err}");
    assert!(err.to_string().contains("hrnet-w32"), "{err}");
    let err = PoseEstimator::builder("hrnet-w32").build().unwrap_err();
    assert!(matches!(err, Error::WeightsNeeded { .. }), "{err}");
    let err = PoseEstimator::builder("openpose-mobilenetv2")
        .input_size(370)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("multiple of 16"), "{err}");
    let err = PoseEstimator::builder("openpose-mobilenetv2")
        .flip(true)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("flip"), "{err}");
    // A weights file of another model names the file and the keys that do not fit.
    let dir = scratch("estimator-wrong-weights");
    let path = dir.join("other.safetensors");
    let t = Tensor::zeros([2, 2], (tch::Kind::Float, tch::Device::Cpu));
    let raw = posekit_nn::weights::RawTensor::from_tch(&t).unwrap();
    posekit_nn::weights::write_safetensors(&path, [("conv1.weight", &raw)]).unwrap();
    let err = PoseEstimator::builder("openpose-mobilenetv2")
        .weights(&path)
        .build()
        .unwrap_err();
    let text = format!("{:#}", anyhow::Error::from(err));
    assert!(
        text.contains("other.safetensors") && text.contains("conv1.weight"),
        "{text}"
    );
}

#[test]
fn a_top_down_model_crops_given_boxes_proposals_or_the_whole_picture() {
    let dir = scratch("estimator-top-down");
    let (config, weights) = tiny_top_down(&dir, false);
    let image = posekit::read_image(data("coco/000000196141.jpg")).unwrap();
    let est = PoseEstimator::from_config(&config)
        .weights(&weights)
        .build()
        .unwrap();
    assert_eq!(est.layout().name, "coco17");
    // Given boxes: one pose per box that survives OKS-NMS, inside the picture's frame.
    let boxes = [
        PersonBox::new([100.0, 50.0, 120.0, 300.0]),
        PersonBox::new([350.0, 60.0, 120.0, 300.0]),
    ];
    let given = est.estimate_detailed(&image, Some(&boxes), false).unwrap();
    assert_eq!(given.box_source, Some(BoxSource::Given));
    assert!(!given.poses.is_empty() && given.poses.len() <= 2);
    // No boxes: the bundled model's people (three in this picture) are the crops.
    let proposed = est.estimate_detailed(&image, None, false).unwrap();
    assert_eq!(proposed.box_source, Some(BoxSource::Proposals));
    assert!(proposed.boxes.len() >= 2, "{:?}", proposed.boxes);
    // The whole picture, on request.
    let whole = PoseEstimator::from_config(&config)
        .weights(&weights)
        .proposals(Proposals::WholeImage)
        .build()
        .unwrap();
    let out = whole.estimate_detailed(&image, None, true).unwrap();
    assert_eq!(out.box_source, Some(BoxSource::WholeImage));
    assert_eq!(out.boxes, vec![[0.0, 0.0, 640.0, 429.0]]);
    assert_eq!(out.maps[0].1.shape(), &[1, 17, 24, 16]);
    // A batch crops every picture's boxes together and gives what one by one gives (to
    // float rounding: convolution kernels sum in another order for another batch size).
    let lists = vec![boxes.to_vec(), boxes[..1].to_vec()];
    let batch = est
        .estimate_batch(&[image.clone(), image.clone()], Some(&lists))
        .unwrap();
    assert_poses_close(&batch[0], &given.poses);
    assert_poses_close(&batch[1], &est.estimate(&image, Some(&boxes[..1])).unwrap());
}

fn assert_poses_close(a: &[posekit::Pose], b: &[posekit::Pose]) {
    assert_eq!(a.len(), b.len());
    for (p, q) in a.iter().zip(b) {
        for (k, l) in p.keypoints.iter().zip(&q.keypoints) {
            assert!(
                (k.x - l.x).abs() < 1e-3 && (k.y - l.y).abs() < 1e-3,
                "{k:?} vs {l:?}"
            );
            assert!(
                (k.score - l.score).abs() <= 1e-5 * l.score.abs().max(1e-12),
                "{k:?} vs {l:?}"
            );
        }
    }
}
