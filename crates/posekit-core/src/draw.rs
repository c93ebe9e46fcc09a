//! Drawing poses on RGB images: the skeleton as anti-aliasing-free thick lines and the joints as
//! filled discs. Kept in the core (no image crate) so that every front end — the CLI's pictures,
//! video frames, a user's own program — draws the same thing.

use ndarray::ArrayViewMut3;

use crate::{KeypointLayout, Pose};

/// How poses are drawn.
#[derive(Debug, Clone)]
pub struct DrawStyle {
    /// Keypoints at or below this score are not drawn (nor limbs touching them).
    pub min_score: f32,
    /// Limb thickness in pixels; `0` sizes each person's limbs to that person.
    pub line_width: u32,
    /// Joint disc radius in pixels; `0` sizes each person's discs to that person.
    pub radius: u32,
    /// A colour drawn one pixel wider under every limb, or `None`.
    pub outline: Option<[u8; 3]>,
}

impl Default for DrawStyle {
    fn default() -> Self {
        DrawStyle {
            min_score: 0.3,
            line_width: 0,
            radius: 0,
            outline: Some(OUTLINE),
        }
    }
}

/// Near-black limb outline. Why: a person's limbs share one palette colour, and a limb of the
/// hue of the clothes or background (a blue ski suit, a batter on grass) vanished; a dark border
/// keeps every limb visible without giving up the colours that tell people apart.
pub const OUTLINE: [u8; 3] = [24, 24, 24];

/// A palette that separates people; limbs take the colour of their person, joints are tinted
/// left/right so that a flipped prediction is visible at a glance.
const PERSON_COLOURS: [[u8; 3]; 8] = [
    [255, 64, 64],
    [64, 200, 64],
    [64, 128, 255],
    [255, 200, 0],
    [255, 0, 255],
    [0, 220, 220],
    [255, 128, 0],
    [160, 96, 255],
];

/// Draws every pose onto `image` ([H, W, 3] RGB), in place.
///
/// Automatic sizes follow each person, never beyond a picture-wide cap: one size from the
/// picture alone made the discs of a small person in the background cover her whole skeleton.
pub fn draw_poses(
    image: &mut ArrayViewMut3<u8>,
    poses: &[Pose],
    layout: &KeypointLayout,
    style: &DrawStyle,
) {
    let colours: Vec<[u8; 3]> = (0..poses.len())
        .map(|i| PERSON_COLOURS[i % PERSON_COLOURS.len()])
        .collect();
    draw_coloured(image, poses, &colours, layout, style);
}

/// Grey of a person no tracker could follow (too few joints to start a track), so that it
/// is never mistaken for a tracked person's colour.
pub const UNTRACKED: [u8; 3] = [160, 160, 160];

/// Draws video people coloured by track: the same `track_id` gives the same colour in every
/// frame, so a viewer sees who is who (and an identity switch as a colour change);
/// `track_ids[i]` is `poses[i]`'s, `None` drawn in [`UNTRACKED`] grey.
pub fn draw_tracked_poses(
    image: &mut ArrayViewMut3<u8>,
    poses: &[Pose],
    track_ids: &[Option<u64>],
    layout: &KeypointLayout,
    style: &DrawStyle,
) {
    let colours: Vec<[u8; 3]> = (0..poses.len())
        .map(|i| match track_ids.get(i).copied().flatten() {
            Some(id) => PERSON_COLOURS[(id % PERSON_COLOURS.len() as u64) as usize],
            None => UNTRACKED,
        })
        .collect();
    draw_coloured(image, poses, &colours, layout, style);
}

fn draw_coloured(
    image: &mut ArrayViewMut3<u8>,
    poses: &[Pose],
    colours: &[[u8; 3]],
    layout: &KeypointLayout,
    style: &DrawStyle,
) {
    let (h, w) = (image.shape()[0], image.shape()[1]);
    let short = h.min(w) as f32;
    let max_line = (short / 150.0).round().max(2.0);
    let max_radius = (short / 110.0).round().max(3.0);
    for (pose, &colour) in poses.iter().zip(colours) {
        let extent = pose
            .bounds(style.min_score)
            .map_or(0.0, |b| (b[2] - b[0]).max(b[3] - b[1]));
        let line_width = if style.line_width > 0 {
            style.line_width as f32
        } else {
            (extent / 50.0).round().clamp(2.0, max_line)
        };
        let radius = if style.radius > 0 {
            style.radius as f32
        } else {
            (extent / 35.0).round().clamp(2.0, max_radius)
        };
        let visible = |j: usize| {
            pose.keypoints
                .get(j)
                .filter(|k| k.score > style.min_score && k.x.is_finite() && k.y.is_finite())
        };
        let limbs: Vec<_> = layout
            .skeleton
            .iter()
            .filter_map(|&[a, b]| {
                Some((
                    (visible(a)?.x, visible(a)?.y),
                    (visible(b)?.x, visible(b)?.y),
                ))
            })
            .collect();
        if let Some(outline) = style.outline {
            for &(a, b) in &limbs {
                draw_line(image, a, b, line_width + 2.0, outline);
            }
        }
        for &(a, b) in &limbs {
            draw_line(image, a, b, line_width, colour);
        }
        for (j, k) in pose.keypoints.iter().enumerate() {
            if visible(j).is_some() {
                draw_disc(image, (k.x, k.y), radius + 1.0, [255, 255, 255]);
                draw_disc(image, (k.x, k.y), radius, colour);
            }
        }
    }
}

/// A filled disc of `radius` pixels centred at `c`, clipped to the image.
pub fn draw_disc(image: &mut ArrayViewMut3<u8>, c: (f32, f32), radius: f32, colour: [u8; 3]) {
    let (h, w) = (image.shape()[0] as i64, image.shape()[1] as i64);
    let (x0, x1) = ((c.0 - radius).floor() as i64, (c.0 + radius).ceil() as i64);
    let (y0, y1) = ((c.1 - radius).floor() as i64, (c.1 + radius).ceil() as i64);
    for y in y0.max(0)..=y1.min(h - 1) {
        for x in x0.max(0)..=x1.min(w - 1) {
            let (dx, dy) = (x as f32 - c.0, y as f32 - c.1);
            if dx * dx + dy * dy <= radius * radius {
                put(image, x as usize, y as usize, colour);
            }
        }
    }
}

/// A line of `width` pixels from `a` to `b`: every pixel whose centre lies within width/2 of
/// the segment, clipped to the image.
pub fn draw_line(
    image: &mut ArrayViewMut3<u8>,
    a: (f32, f32),
    b: (f32, f32),
    width: f32,
    colour: [u8; 3],
) {
    let (h, w) = (image.shape()[0] as i64, image.shape()[1] as i64);
    let half = width * 0.5;
    let x0 = (a.0.min(b.0) - half).floor().max(0.0) as i64;
    let x1 = ((a.0.max(b.0) + half).ceil() as i64).min(w - 1);
    let y0 = (a.1.min(b.1) - half).floor().max(0.0) as i64;
    let y1 = ((a.1.max(b.1) + half).ceil() as i64).min(h - 1);
    let (vx, vy) = (b.0 - a.0, b.1 - a.1);
    let len2 = vx * vx + vy * vy;
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (px, py) = (x as f32 - a.0, y as f32 - a.1);
            let t = if len2 > 0.0 {
                ((px * vx + py * vy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let (dx, dy) = (px - t * vx, py - t * vy);
            if dx * dx + dy * dy <= half * half {
                put(image, x as usize, y as usize, colour);
            }
        }
    }
}

fn put(image: &mut ArrayViewMut3<u8>, x: usize, y: usize, colour: [u8; 3]) {
    for (c, v) in colour.iter().enumerate() {
        image[[y, x, c]] = *v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypoint;
    use ndarray::Array3;

    fn two_joint_layout() -> KeypointLayout {
        KeypointLayout {
            name: "two".into(),
            keypoints: vec!["a".into(), "b".into()],
            flip_pairs: vec![],
            skeleton: vec![[0, 1]],
            sigmas: None,
            upper_body: vec![],
            mappings: Default::default(),
        }
    }

    #[test]
    fn a_track_keeps_its_colour_whatever_its_place_in_the_frame() {
        let layout = two_joint_layout();
        let style = DrawStyle {
            outline: None,
            ..DrawStyle::default()
        };
        let person = |x: f32| {
            Pose::new(
                vec![Keypoint::new(x, 10.0, 0.9), Keypoint::new(x, 30.0, 0.9)],
                0.9,
            )
        };
        let limb_colour = |poses: &[Pose], ids: &[Option<u64>], x: usize| {
            let mut img = Array3::<u8>::zeros((40, 60, 3));
            draw_tracked_poses(&mut img.view_mut(), poses, ids, &layout, &style);
            [img[[20, x, 0]], img[[20, x, 1]], img[[20, x, 2]]]
        };
        // Track 5 first in one frame, second in the next: the same colour both times.
        let a = limb_colour(&[person(10.0), person(45.0)], &[Some(5), Some(2)], 10);
        let b = limb_colour(&[person(45.0), person(10.0)], &[Some(2), Some(5)], 10);
        assert_eq!(a, b);
        assert_eq!(a, PERSON_COLOURS[5]);
        assert_eq!(limb_colour(&[person(10.0)], &[None], 10), UNTRACKED);
    }

    #[test]
    fn draws_limb_between_confident_joints_only() {
        let layout = two_joint_layout();
        let style = DrawStyle {
            min_score: 0.3,
            line_width: 2,
            radius: 2,
            outline: Some(OUTLINE),
        };
        let mut img = Array3::<u8>::zeros((40, 40, 3));
        let pose = Pose::new(
            vec![
                Keypoint::new(5.0, 20.0, 0.9),
                Keypoint::new(35.0, 20.0, 0.9),
            ],
            0.9,
        );
        draw_poses(&mut img.view_mut(), &[pose], &layout, &style);
        // The middle of the limb is painted in the first person's colour.
        assert_eq!(
            [img[[20, 20, 0]], img[[20, 20, 1]], img[[20, 20, 2]]],
            PERSON_COLOURS[0]
        );
        // Just outside the limb lies its dark outline; far from it nothing changes.
        assert_eq!(
            [img[[22, 20, 0]], img[[22, 20, 1]], img[[22, 20, 2]]],
            OUTLINE
        );
        assert_eq!(img[[5, 20, 0]], 0);

        let mut img2 = Array3::<u8>::zeros((40, 40, 3));
        let weak = Pose::new(
            vec![
                Keypoint::new(5.0, 20.0, 0.9),
                Keypoint::new(35.0, 20.0, 0.1),
            ],
            0.5,
        );
        draw_poses(&mut img2.view_mut(), &[weak], &layout, &style);
        assert_eq!(
            img2[[20, 20, 0]],
            0,
            "a limb to a low-score joint is not drawn"
        );
        assert_ne!(img2[[20, 5, 0]], 0, "the confident joint is still drawn");
    }

    #[test]
    fn clips_to_image_and_ignores_non_finite() {
        let layout = two_joint_layout();
        let mut img = Array3::<u8>::zeros((10, 10, 3));
        let pose = Pose::new(
            vec![
                Keypoint::new(-50.0, 5.0, 1.0),
                Keypoint::new(f32::NAN, 5.0, 1.0),
            ],
            1.0,
        );
        draw_poses(&mut img.view_mut(), &[pose], &layout, &DrawStyle::default());
        let pose = Pose::new(
            vec![Keypoint::new(-5.0, 5.0, 1.0), Keypoint::new(50.0, 5.0, 1.0)],
            1.0,
        );
        draw_poses(&mut img.view_mut(), &[pose], &layout, &DrawStyle::default());
        assert_ne!(img[[5, 5, 0]], 0);
    }
}
