//! The AP ceiling of HigherHRNet's single-scale test at a given test input size: what a
//! network that reproduced its training targets perfectly would score through the test path.
//!
//! For every image of a COCO keypoint file, the ground-truth joints are mapped into the test's
//! network input (`ResizeAlign`, the official `resize_align_multi_scale`) and encoded at the
//! two head resolutions (1/4 and 1/2 of the input) by the training encoder (`AeCodec`, the
//! joint at its truncated pixel as `HeatmapGenerator` does); the tags are perfect (each 1/4
//! pixel carries the index of the person whose joint is nearest). Those maps then go through
//! the test's steps: the 1/4 heatmaps upsampled to 1/2 and averaged, both maps projected to
//! the input size (bilinear, `align_corners=False`), the AE grouping with adjust and refine,
//! and the inverse resize. The `exact` row places the Gaussians at the joints' real-valued
//! positions instead, separating the encoder's pixel truncation from the resolution itself.
//! Prints a table; asserts nothing.
//!
//! ```text
//! cargo run --release -p posekit --example bottomup_ap_ceiling -- ANNOTATIONS.json [SIZES..]
//! ```
//! e.g. `crates/posekit/tests/data/coco/test_coco.json 128 256 384 512`.

use std::path::PathBuf;

use ndarray::{Array3, Array4, Axis};
use posekit::estimator::bottomup::higher_hrnet::ResizeAlign;
use posekit_core::codecs::associative_embedding::{AeCodec, AeEncodeParams};
use posekit_core::eval::coco::CocoEvaluator;
use posekit_core::formats::coco::{CocoKeypointResult, CocoKeypointsGt};
use posekit_core::geometry::resize::resize_bilinear_chw;

#[derive(Clone, Copy, PartialEq)]
enum Placement {
    /// The training encoder: the Gaussian at the truncated pixel.
    Encoder,
    /// The Gaussian at the real-valued position.
    Exact,
}

/// `[K, H, W]` heatmaps and `[K, H, W]` perfect tags of `people` (`[N, K, 3]` in map pixels).
fn head_maps(
    people: &Array3<f32>,
    w: usize,
    h: usize,
    placement: Placement,
) -> anyhow::Result<(Array3<f32>, Array3<f32>)> {
    let (n, k, _) = people.dim();
    let heatmaps = match placement {
        Placement::Encoder => {
            let mut params = AeEncodeParams::new([w, h]);
            params.max_people = n.max(1);
            AeCodec::new(
                params,
                posekit_core::codecs::associative_embedding::AeDecodeParams::coco(),
            )
            .encode(people.view())?
            .heatmaps
        }
        Placement::Exact => {
            let sigma = 2.0f32;
            Array3::from_shape_fn((k, h, w), |(j, y, x)| {
                (0..n)
                    .filter(|&p| people[[p, j, 2]] > 0.0)
                    .map(|p| {
                        let dx = x as f32 - people[[p, j, 0]];
                        let dy = y as f32 - people[[p, j, 1]];
                        (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp()
                    })
                    .fold(0.0, f32::max)
            })
        }
    };
    let tags = Array3::from_shape_fn((k, h, w), |(j, y, x)| {
        let mut best = (f32::INFINITY, 0.0f32);
        for p in 0..n {
            if people[[p, j, 2]] > 0.0 {
                let dx = x as f32 - people[[p, j, 0]];
                let dy = y as f32 - people[[p, j, 1]];
                let d = dx * dx + dy * dy;
                if d < best.0 {
                    best = (d, 3.0 * p as f32);
                }
            }
        }
        best.1
    });
    Ok((heatmaps, tags))
}

fn ceiling(
    gt: &CocoKeypointsGt,
    test_size: usize,
    placement: Placement,
) -> anyhow::Result<(f64, f64)> {
    let mut results = Vec::new();
    for im in &gt.images {
        let resize = ResizeAlign::new(im.width as usize, im.height as usize, test_size)?;
        let [in_w, in_h] = resize.size;
        let to_input = resize.to_input()?;
        let anns: Vec<_> = gt
            .annotations
            .iter()
            .filter(|a| a.image_id == im.id && !a.iscrowd && a.num_keypoints > 0)
            .collect();
        let k = 17;
        let people_at = |factor: f64| {
            Array3::from_shape_fn((anns.len(), k, 3), |(p, j, c)| {
                let kp = &anns[p].keypoints;
                let [x, y] = to_input.apply([kp[3 * j], kp[3 * j + 1]]);
                match c {
                    0 => (x * factor) as f32,
                    1 => (y * factor) as f32,
                    _ => kp[3 * j + 2] as f32,
                }
            })
        };
        let (q_w, q_h) = (in_w / 4, in_h / 4);
        let (h_w, h_h) = (in_w / 2, in_h / 2);
        let (hm_q, tags_q) = head_maps(&people_at(0.25), q_w, q_h, placement)?;
        let (hm_h, _) = head_maps(&people_at(0.5), h_w, h_h, placement)?;
        let mut heatmaps = resize_bilinear_chw(hm_q.view(), h_w, h_h, false)? + hm_h;
        heatmaps /= 2.0;
        let heatmaps = resize_bilinear_chw(heatmaps.view(), in_w, in_h, false)?;
        let tags = resize_bilinear_chw(tags_q.view(), in_w, in_h, false)?;
        let tags: Array4<f32> = tags.insert_axis(Axis(3));
        let mut poses = AeCodec::coco([in_w, in_h]).decode(heatmaps.view(), tags.view())?;
        let to_image = resize.to_image()?;
        for pose in &mut poses {
            to_image.apply_keypoints(&mut pose.keypoints);
            results.push(CocoKeypointResult::from_pose(im.id, 1, pose));
        }
    }
    let stats = CocoEvaluator::new(gt).evaluate(&results)?;
    Ok((stats.ap, stats.ap50))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(ann) = args.first().map(PathBuf::from) else {
        anyhow::bail!("usage: bottomup_ap_ceiling ANNOTATIONS.json [TEST_SIZES..]");
    };
    let sizes: Vec<usize> = if args.len() > 1 {
        args[1..]
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?
    } else {
        vec![128, 256, 384, 512]
    };
    let gt = CocoKeypointsGt::load(&ann)?;
    println!("test size  placement  AP     AP50");
    for &size in &sizes {
        for (name, placement) in [("encoder", Placement::Encoder), ("exact", Placement::Exact)] {
            let (ap, ap50) = ceiling(&gt, size, placement)?;
            println!("{size:>9}  {name:<9}  {ap:.3}  {ap50:.3}");
        }
    }
    Ok(())
}
