//! HRNet's training augmentation (`JointsDataset.__getitem__`), in its order: half-body crop,
//! random scale, random rotation, horizontal flip.
//!
//! The parameters are drawn here and applied by [`sample`](super::sample), which keeps the
//! randomness testable without images. Every draw is made whether or not its branch is taken,
//! so each parameter depends only on the sample's own stream position, never on which earlier
//! branch fired.

use ndarray::Array2;
use posekit_core::geometry::center_scale::CenterScale;
use posekit_core::layout::KeypointLayout;
use rand::Rng;

use super::config::AugmentConfig;
use super::rng::{randn, uniform};

/// The crop parameters of one training sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augmentation {
    /// Crop center in the (possibly flipped) image.
    pub center: [f64; 2],
    /// Crop scale (units of 200 px) after half-body and scale jitter.
    pub scale: [f64; 2],
    /// Rotation in degrees (positive turns the content counter-clockwise in the crop).
    pub rotation: f64,
    /// Whether the image and joints are mirrored.
    pub flip: bool,
    /// Whether the box was replaced by the half-body box.
    pub half_body: bool,
}

/// Draws one sample's augmentation. `joints` are the instance's `[K, 3]` joints in image
/// pixels and `crop` its box, `image_width` the decoded image's width (the flip mirrors the
/// center about it).
pub fn draw(
    rng: &mut impl Rng,
    cfg: &AugmentConfig,
    layout: &KeypointLayout,
    joints: &Array2<f32>,
    crop: CenterScale,
    aspect_ratio: f64,
    image_width: usize,
) -> Augmentation {
    let half_body_draw = uniform(rng);
    let upper_side_draw = randn(rng);
    let scale_draw = randn(rng);
    let rotation_gate = uniform(rng);
    let rotation_draw = randn(rng);
    let flip_draw = uniform(rng);

    let (mut center, mut scale, mut half_body) = (crop.center, crop.scale, false);
    let labeled = joints.outer_iter().filter(|j| j[2] > 0.0).count();
    if labeled > cfg.num_joints_half_body && half_body_draw < cfg.half_body_prob {
        // The official code picks the upper body when `randn() < 0.5` (about 69 % of the
        // time, not half); kept as is because the published models were trained that way.
        let prefer_upper = upper_side_draw < 0.5;
        if let Some((c, s)) = half_body_box(
            joints,
            layout,
            prefer_upper,
            aspect_ratio,
            cfg.half_body_padding,
        ) {
            (center, scale, half_body) = (c, s, true);
        }
    }

    let sf = cfg.scale_factor;
    let jitter = (scale_draw * sf + 1.0).clamp(1.0 - sf, 1.0 + sf);
    scale = scale.map(|s| s * jitter);

    let rf = cfg.rotation_factor;
    let rotation = if rotation_gate < cfg.rotation_prob {
        (rotation_draw * rf).clamp(-2.0 * rf, 2.0 * rf)
    } else {
        0.0
    };

    let flip = cfg.flip && flip_draw < cfg.flip_prob;
    if flip {
        center[0] = image_width as f64 - center[0] - 1.0;
    }
    Augmentation {
        center,
        scale,
        rotation,
        flip,
        half_body,
    }
}

/// The official `half_body_transform`: the box around the labeled joints of the upper or the
/// lower body (whichever is chosen and has more than 2 joints), aspect-corrected and padded by
/// `padding` (1.5). `None` when fewer than 2 joints are available, and — unlike the reference,
/// which would crop a zero-size window — when the chosen joints all coincide.
pub fn half_body_box(
    joints: &Array2<f32>,
    layout: &KeypointLayout,
    prefer_upper: bool,
    aspect_ratio: f64,
    padding: f64,
) -> Option<([f64; 2], [f64; 2])> {
    let mut upper = Vec::new();
    let mut lower = Vec::new();
    for (k, joint) in joints.outer_iter().enumerate() {
        if joint[2] > 0.0 {
            let point = [joint[0], joint[1]];
            if layout.upper_body.contains(&k) {
                upper.push(point);
            } else {
                lower.push(point);
            }
        }
    }
    let selected = if prefer_upper && upper.len() > 2 {
        upper
    } else if lower.len() > 2 {
        lower
    } else {
        upper
    };
    if selected.len() < 2 {
        return None;
    }
    // The reference holds the joints in a float32 array: mean, min and max are float32.
    let n = selected.len() as f32;
    let center = [
        selected.iter().map(|p| p[0]).sum::<f32>() / n,
        selected.iter().map(|p| p[1]).sum::<f32>() / n,
    ];
    let min_x = selected.iter().map(|p| p[0]).fold(f32::INFINITY, f32::min);
    let max_x = selected
        .iter()
        .map(|p| p[0])
        .fold(f32::NEG_INFINITY, f32::max);
    let min_y = selected.iter().map(|p| p[1]).fold(f32::INFINITY, f32::min);
    let max_y = selected
        .iter()
        .map(|p| p[1])
        .fold(f32::NEG_INFINITY, f32::max);
    let (mut w, mut h) = ((max_x - min_x) as f64, (max_y - min_y) as f64);
    if w > aspect_ratio * h {
        h = w / aspect_ratio;
    } else if w < aspect_ratio * h {
        w = h * aspect_ratio;
    }
    if !(w > 0.0 && h > 0.0 && w.is_finite() && h.is_finite()) {
        return None;
    }
    let pixel_std = posekit_core::geometry::center_scale::PIXEL_STD;
    let scale = [w, h].map(|v| ((v / pixel_std) as f32 * padding as f32) as f64);
    Some((center.map(|v| v as f64), scale))
}

/// The official `fliplr_joints`: mirrors x about the image (`width - 1 - x`), swaps the
/// layout's left/right joints, and zeroes the coordinates of unlabeled joints.
pub fn flip_joints(joints: &Array2<f32>, image_width: usize, flip_index: &[usize]) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros(joints.raw_dim());
    let last = image_width as f32 - 1.0;
    for (k, &src) in flip_index.iter().enumerate().take(joints.nrows()) {
        let vis = joints[[src, 2]];
        out[[k, 0]] = (last - joints[[src, 0]]) * vis;
        out[[k, 1]] = joints[[src, 1]] * vis;
        out[[k, 2]] = vis;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::rng::{stream, Purpose};
    use super::*;

    fn coco() -> KeypointLayout {
        KeypointLayout::builtin("coco17").unwrap()
    }

    /// A standing person: head at the top, feet at the bottom, all 17 joints labeled.
    fn person() -> Array2<f32> {
        let mut j = Array2::<f32>::zeros((17, 3));
        for k in 0..17 {
            let side = if k == 0 {
                0.0
            } else if k % 2 == 1 {
                -1.0
            } else {
                1.0
            };
            j[[k, 0]] = 100.0 + 10.0 * side;
            j[[k, 1]] = 50.0 + 10.0 * k as f32;
            j[[k, 2]] = 1.0;
        }
        j
    }

    #[test]
    fn draws_follow_the_official_distributions() {
        let cfg = AugmentConfig::default();
        let joints = person();
        let n = 20_000;
        let (mut rotated, mut flipped, mut halved) = (0, 0, 0);
        for i in 0..n {
            let mut rng = stream(3, Purpose::Augment, 0, i);
            let a = draw(
                &mut rng,
                &cfg,
                &coco(),
                &joints,
                CenterScale {
                    center: [100.0, 130.0],
                    scale: [1.0, 4.0 / 3.0],
                },
                0.75,
                640,
            );
            if a.rotation != 0.0 {
                rotated += 1;
                assert!(a.rotation.abs() <= 90.0);
            }
            if a.flip {
                flipped += 1;
                if !a.half_body {
                    assert_eq!(a.center[0], 640.0 - 1.0 - 100.0);
                }
            }
            if a.half_body {
                halved += 1;
            } else {
                let jitter = a.scale[0];
                assert!((0.65 - 1e-12..=1.35 + 1e-12).contains(&jitter), "{jitter}");
            }
        }
        let frac = |c: i32| c as f64 / n as f64;
        assert!((frac(rotated) - 0.6).abs() < 0.02, "{}", frac(rotated));
        assert!((frac(flipped) - 0.5).abs() < 0.02, "{}", frac(flipped));
        assert!((frac(halved) - 0.3).abs() < 0.02, "{}", frac(halved));
    }

    fn cs() -> CenterScale {
        CenterScale {
            center: [1.0, 2.0],
            scale: [1.0, 1.0],
        }
    }

    #[test]
    fn no_half_body_with_too_few_labeled_joints() {
        let cfg = AugmentConfig {
            half_body_prob: 1.0,
            ..AugmentConfig::none()
        };
        let mut joints = person();
        for k in 8..17 {
            joints[[k, 2]] = 0.0; // 8 labeled: not more than 8
        }
        let mut rng = stream(0, Purpose::Augment, 0, 0);
        let a = draw(&mut rng, &cfg, &coco(), &joints, cs(), 0.75, 10);
        assert!(!a.half_body);
        assert_eq!(
            (a.center, a.scale, a.rotation, a.flip),
            ([1.0, 2.0], [1.0, 1.0], 0.0, false)
        );
        joints[[8, 2]] = 1.0; // 9 labeled
        let a = draw(&mut rng, &cfg, &coco(), &joints, cs(), 0.75, 10);
        assert!(a.half_body);
    }

    #[test]
    fn half_body_box_matches_the_reference_formula() {
        let joints = person();
        // Upper body of COCO: joints 0..=10 -> x in 90..=110, y in 50..=150.
        let (c, s) = half_body_box(&joints, &coco(), true, 0.75, 1.5).unwrap();
        let ys: Vec<f32> = (0..11).map(|k| 50.0 + 10.0 * k as f32).collect();
        let xs: Vec<f32> = (0..11).map(|k| joints[[k, 0]]).collect();
        let mean_x = xs.iter().sum::<f32>() / 11.0;
        assert!((c[0] - mean_x as f64).abs() < 1e-5);
        assert!((c[1] - (ys.iter().sum::<f32>() / 11.0) as f64).abs() < 1e-5);
        // w = 20 < 0.75 * 100, so w becomes 75; scale = [75, 100] / 200 * 1.5.
        assert!((s[0] - 75.0 / 200.0 * 1.5).abs() < 1e-6);
        assert!((s[1] - 100.0 / 200.0 * 1.5).abs() < 1e-6);
        // The lower body (11..=16): y in 160..=210.
        let (c, _) = half_body_box(&joints, &coco(), false, 0.75, 1.5).unwrap();
        assert!((c[1] - 185.0).abs() < 1e-4);
        // Coinciding joints give no box instead of a zero-size crop.
        let mut same = joints.clone();
        for k in 0..17 {
            same[[k, 0]] = 5.0;
            same[[k, 1]] = 5.0;
        }
        assert!(half_body_box(&same, &coco(), true, 0.75, 1.5).is_none());
    }

    #[test]
    fn flip_mirrors_and_swaps_left_and_right() {
        let layout = coco();
        let joints = person();
        let mut partial = joints.clone();
        partial[[3, 2]] = 0.0; // left ear unlabeled
        let flipped = flip_joints(&partial, 640, &layout.flip_index());
        // right_eye (2) takes left_eye (1) mirrored.
        assert_eq!(flipped[[2, 0]], 639.0 - joints[[1, 0]]);
        assert_eq!(flipped[[2, 1]], joints[[1, 1]]);
        assert_eq!(flipped[[0, 0]], 639.0 - joints[[0, 0]]);
        // The unlabeled left ear becomes an unlabeled right ear at (0, 0).
        assert_eq!(flipped.row(4).to_vec(), vec![0.0, 0.0, 0.0]);
        // Flipping twice is the identity on labeled joints.
        let twice = flip_joints(
            &flip_joints(&joints, 640, &layout.flip_index()),
            640,
            &layout.flip_index(),
        );
        assert_eq!(twice, joints);
    }
}
