//! The bottom-up dataset on real CrowdPose annotations (`tests/data/crowdpose`, from MMPose's
//! test data): HigherHRNet's `CrowdPoseKeypoints` selection (every annotated image; people that
//! are not crowd or have labelled joints, in file order), the `crowdpose14` layout, and an
//! all-valid mask since the files carry no segmentation.

mod common;

use common::*;
use posekit::pipelines::data::{BottomUpDataConfig, BottomUpDataset, LoadMode};

fn config() -> BottomUpDataConfig {
    let mut cfg = BottomUpDataConfig::new(256);
    cfg.layout = "crowdpose14".into();
    cfg
}

#[test]
fn crowdpose_images_people_and_masks() {
    let ann = data("crowdpose/test_crowdpose.json");
    let ds = BottomUpDataset::crowdpose(&ann, &data("crowdpose"), &config()).unwrap();
    let gt: serde_json::Value = serde_json::from_slice(&std::fs::read(&ann).unwrap()).unwrap();
    let anns = gt["annotations"].as_array().unwrap();
    assert_eq!(ds.len(), gt["images"].as_array().unwrap().len());
    assert_eq!(ds.unannotated_images, 0);
    for (im, want) in ds.images().iter().zip(gt["images"].as_array().unwrap()) {
        assert_eq!(im.image_id, want["id"].as_i64().unwrap());
        assert!(
            im.ignore.is_none(),
            "CrowdPose has no segmentation to ignore"
        );
        let people: Vec<&serde_json::Value> = anns
            .iter()
            .filter(|a| a["image_id"] == want["id"])
            .filter(|a| a["iscrowd"] == 0 || a["num_keypoints"].as_u64().unwrap() > 0)
            .collect();
        assert_eq!(im.joints.dim(), (people.len(), 14, 3));
        for (p, a) in people.iter().enumerate() {
            let kps = a["keypoints"].as_array().unwrap();
            for j in 0..14 {
                assert_eq!(im.joints[[p, j, 0]], kps[3 * j].as_f64().unwrap() as f32);
                assert_eq!(
                    im.joints[[p, j, 2]],
                    kps[3 * j + 2].as_f64().unwrap() as f32
                );
            }
        }
    }
    // Every labelled joint inside the picture becomes a heatmap peak; nothing is masked out
    // inside the picture (the padding of the square crop is).
    for i in 0..ds.len() {
        let s = ds.load(i, LoadMode::Eval).unwrap();
        let t = &s.targets[0];
        assert_eq!(t.heatmaps.dim().0, 14);
        let labelled = s
            .people
            .iter()
            .skip(2)
            .step_by(3)
            .filter(|&&v| v > 0.0)
            .count();
        assert!(labelled > 0);
        assert!(t.heatmaps.iter().any(|&v| v == 1.0));
        let side = t.size;
        assert_eq!(t.mask[[side / 2, side / 2]], 1.0);
    }
}

#[test]
fn crowdpose_with_the_wrong_layout_is_an_error_naming_the_file() {
    let ann = data("crowdpose/test_crowdpose.json");
    let err = BottomUpDataset::crowdpose(&ann, &data("crowdpose"), &BottomUpDataConfig::new(256))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test_crowdpose.json") && err.contains("14"),
        "{err}"
    );
}
