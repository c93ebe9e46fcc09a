//! How many of a COCO ground truth's people the top-down person proposals cover: the bundled
//! OpenPose-MobileNetV2 runs on every image, each person it finds becomes a box (the joints'
//! extent grown by a margin), and a ground-truth person counts as found when a proposal
//! overlaps their box with IoU >= 0.5 (one proposal per person, best IoU first).
//!
//! ```sh
//! cargo run --release -p posekit --example proposal_recall -- \
//!     ../shared/data/coco-mini/annotations/person_keypoints_val2017.json \
//!     ../shared/data/coco-mini/val2017 [INPUT_HEIGHT]
//! ```
//!
//! `INPUT_HEIGHT` is the bundled model's network height (default 368, tf-pose's).

use std::path::Path;

use posekit::estimator::proposals::{boxes_with_margin, PROPOSAL_MARGIN};
use posekit::PoseEstimator;
use posekit_core::formats::coco::CocoKeypointsGt;

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let x0 = a[0].max(b[0]);
    let y0 = a[1].max(b[1]);
    let x1 = (a[0] + a[2]).min(b[0] + b[2]);
    let y1 = (a[1] + a[3]).min(b[1] + b[3]);
    let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

/// Greedy one-to-one matching at IoU >= 0.5: how many of `truth` a proposal covers.
fn matched(truth: &[[f64; 4]], proposals: &[[f64; 4]]) -> usize {
    let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
    for (i, t) in truth.iter().enumerate() {
        for (j, p) in proposals.iter().enumerate() {
            let v = iou(*t, *p);
            if v >= 0.5 {
                pairs.push((v, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut used_t, mut used_p) = (vec![false; truth.len()], vec![false; proposals.len()]);
    let mut n = 0;
    for (_, i, j) in pairs {
        if !used_t[i] && !used_p[j] {
            used_t[i] = true;
            used_p[j] = true;
            n += 1;
        }
    }
    n
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(gt_path), Some(images)) = (args.get(1), args.get(2)) else {
        return Err("usage: proposal_recall GT.json IMAGES_DIR".into());
    };
    let gt = CocoKeypointsGt::load(gt_path)?;
    let mut builder = PoseEstimator::builder("openpose-mobilenetv2");
    if let Some(height) = args.get(3) {
        builder = builder.input_size(height.parse()?);
    }
    let est = builder.build()?;
    let margins = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3];
    // (keypointed people found, all non-crowd people found) per margin.
    let mut found = vec![(0usize, 0usize); margins.len()];
    let (mut keypointed, mut people, mut proposals) = (0usize, 0usize, 0usize);
    for image in &gt.images {
        let picture = posekit::read_image(Path::new(images).join(&image.file_name))?;
        let (h, w, _) = picture.dim();
        let poses = est.estimate(&picture, None)?;
        let anns: Vec<_> = gt
            .annotations
            .iter()
            .filter(|a| a.image_id == image.id && !a.iscrowd)
            .collect();
        let all: Vec<[f64; 4]> = anns.iter().map(|a| a.bbox).collect();
        let with_kps: Vec<[f64; 4]> = anns
            .iter()
            .filter(|a| a.num_keypoints > 0)
            .map(|a| a.bbox)
            .collect();
        people += all.len();
        keypointed += with_kps.len();
        proposals += boxes_with_margin(&poses, w, h, PROPOSAL_MARGIN).len();
        for (k, &m) in margins.iter().enumerate() {
            let boxes: Vec<[f64; 4]> = boxes_with_margin(&poses, w, h, m)
                .iter()
                .map(|b| b.bbox)
                .collect();
            found[k].0 += matched(&with_kps, &boxes);
            found[k].1 += matched(&all, &boxes);
        }
    }
    println!(
        "{} images, {people} people ({keypointed} with keypoints), {proposals} proposals at the shipped margin {PROPOSAL_MARGIN}",
        gt.images.len()
    );
    println!("margin  recall@IoU0.5 (keypointed)  recall@IoU0.5 (all people)");
    for (k, m) in margins.iter().enumerate() {
        println!(
            "{m:6.2}  {:>26.3}  {:>26.3}",
            found[k].0 as f64 / keypointed.max(1) as f64,
            found[k].1 as f64 / people.max(1) as f64
        );
    }
    Ok(())
}
