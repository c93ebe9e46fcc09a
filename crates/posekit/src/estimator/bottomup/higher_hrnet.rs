//! HigherHRNet's official single-scale test (HRNet/HigherHRNet-Human-Pose-Estimation,
//! `tools/valid.py` with `TEST.SCALE_FACTOR [1]`), step by step:
//!
//! 1. `get_multi_scale_size` / `resize_align_multi_scale`: the short side becomes the input
//!    size rounded up to 64, the long side keeps the aspect ratio rounded up to 64, and the
//!    picture is warped (bilinear, black border) into that size ([`ResizeAlign`]);
//! 2. ImageNet normalisation of the RGB input;
//! 3. `get_multi_stage_outputs`: the 1/4 output is upsampled (bilinear, `align_corners=False`)
//!    to the 1/2 output's size and the heatmaps of both averaged; the tags come from the 1/4
//!    output. With the flip test the mirrored input's maps, mirrored back and with left and
//!    right joints swapped, are the second half: heatmaps averaged, tags stacked as a second
//!    tag dimension (`aggregate_results`);
//! 4. `PROJECT2IMAGE`: heatmaps and tags are upsampled to the resized input's size;
//! 5. `HeatmapParser.parse` (the core's AE grouping, with adjust and refine), and
//!    `get_final_preds`: the inverse of the step-1 transform. The person score is the parser's
//!    (mean joint score), as the official COCO results carry it.

use crate::error::{bail, Result, ResultExt};
use ndarray::{Array3, Array4, ArrayView3, Axis};
use posekit_core::codecs::associative_embedding::AeCodec;
use posekit_core::geometry::affine::{get_affine_transform, Affine2};
use posekit_core::geometry::resize::resize_bilinear_chw;
use posekit_core::geometry::warp::warp_affine;
use tch::Tensor;

use super::{first_pass, imagenet_chw, to_chw, BottomUpOutput, BottomUpSteps, Geometry};

/// The long side of the network input may be at most this many times the short side.
const MAX_SIDE_FACTOR: usize = 16;

/// The official `get_multi_scale_size(image, input_size, 1.0, 1.0)`: the network input size
/// and the center/scale of the picture's window in HRNet's `scale * 200` convention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResizeAlign {
    /// `[w, h]` of the network input, both multiples of 64.
    pub size: [usize; 2],
    pub center: [f64; 2],
    pub scale: [f64; 2],
}

impl ResizeAlign {
    pub fn new(width: usize, height: usize, input_size: usize) -> Result<Self> {
        if width == 0 || height == 0 || input_size == 0 {
            bail!("cannot resize a {width}x{height} picture to input size {input_size}");
        }
        let round64 = |v: f64| ((v + 63.0) / 64.0).floor() as usize * 64;
        let min_input = round64(input_size as f64);
        let (w, h) = (width as f64, height as f64);
        let (size, scale) = if width < height {
            let h_resized = round64(min_input as f64 / w * h);
            let scale_h = h_resized as f64 / min_input as f64 * w / 200.0;
            ([min_input, h_resized], [w / 200.0, scale_h])
        } else {
            let w_resized = round64(min_input as f64 / h * w);
            let scale_w = w_resized as f64 / min_input as f64 * h / 200.0;
            ([w_resized, min_input], [scale_w, h / 200.0])
        };
        // A long thin picture (a 10x3000 strip) would become a network input of hundreds of
        // thousands of pixels per side: refused here instead of failing to allocate.
        if size[0].max(size[1]) > MAX_SIDE_FACTOR * min_input {
            bail!(
                "a {width}x{height} picture resized to a short side of {min_input} would be a \
                 {}x{} network input; crop it or give a smaller --input-size",
                size[0],
                size[1]
            );
        }
        // The reference stores the center as integers: `int(w / 2 + 0.5)`.
        let center = [(w / 2.0 + 0.5).floor(), (h / 2.0 + 0.5).floor()];
        Ok(ResizeAlign {
            size,
            center,
            scale,
        })
    }

    /// Picture -> network input.
    pub fn to_input(&self) -> Result<Affine2> {
        self.transform(false)
    }

    /// Network input (and the maps projected to it) -> picture: `get_final_preds`.
    pub fn to_image(&self) -> Result<Affine2> {
        self.transform(true)
    }

    fn transform(&self, inv: bool) -> Result<Affine2> {
        let out = [self.size[0] as f64, self.size[1] as f64];
        Ok(get_affine_transform(
            self.center,
            self.scale,
            0.0,
            out,
            [0.0, 0.0],
            inv,
        )?)
    }
}

/// The picture resized and aligned as the network input.
pub(super) fn prepare(
    steps: &BottomUpSteps,
    image: &Array3<u8>,
) -> Result<(Array3<f32>, Geometry)> {
    let (h, w, _) = image.dim();
    let resize = ResizeAlign::new(w, h, steps.input_size)?;
    let [in_w, in_h] = resize.size;
    let input = warp_affine(image.view(), &resize.to_input()?, in_w, in_h)
        .context("resizing the picture to the network input")?;
    Ok((imagenet_chw(&input), Geometry::HigherHrnet(resize)))
}

/// The people in the outputs of the plain pass and (flip test) the mirrored one: heads
/// aggregated, flipped joints swapped back, heatmaps averaged, tags stacked, AE grouping.
pub(super) fn decode(
    net: &BottomUpSteps,
    outputs: &[Vec<(String, Tensor)>],
    resize: &ResizeAlign,
    keep_maps: bool,
) -> Result<BottomUpOutput> {
    let [in_w, in_h] = resize.size;
    first_pass(outputs)?;
    let mut passes = Vec::with_capacity(outputs.len());
    for (i, pass) in outputs.iter().enumerate() {
        let (mut heatmaps, mut tags) = aggregate_heads(pass, in_w, in_h)?;
        if i > 0 {
            // The mirrored pass: left and right joints trade places.
            let flip_index = net.layout.flip_index();
            heatmaps = swap_joints(heatmaps.view(), &flip_index)?;
            tags = swap_joints(tags.view(), &flip_index)?;
        }
        passes.push((heatmaps, tags));
    }
    let mut heatmaps = passes[0].0.clone();
    for (other, _) in &passes[1..] {
        heatmaps += other;
    }
    heatmaps /= passes.len() as f32;
    let tag_views: Vec<ArrayView3<f32>> = passes.iter().map(|(_, t)| t.view()).collect();
    let tags: Array4<f32> = ndarray::stack(Axis(3), &tag_views)?;

    let (_, map_h, map_w) = heatmaps.dim();
    let mut poses = AeCodec::coco([map_w, map_h])
        .decode(heatmaps.view(), tags.view())
        .context("grouping HigherHRNet's joints")?;
    let to_image = resize.to_image()?;
    for pose in &mut poses {
        to_image.apply_keypoints(&mut pose.keypoints);
    }
    let maps = if keep_maps {
        vec![
            ("heatmaps".to_string(), heatmaps.into_dyn()),
            ("tags".to_string(), tags.into_dyn()),
        ]
    } else {
        Vec::new()
    };
    Ok(BottomUpOutput { poses, maps })
}

/// One pass's heatmaps (averaged over every head) and tags (of the heads that have them, the
/// 1/4 head for the official configs), at the finest head's resolution and then projected to
/// the input size, as `get_multi_stage_outputs` with `project2image` computes them.
fn aggregate_heads(
    outputs: &[(String, Tensor)],
    in_w: usize,
    in_h: usize,
) -> Result<(Array3<f32>, Array3<f32>)> {
    let heads: Vec<(&str, Array3<f32>)> = outputs
        .iter()
        .filter(|(n, _)| n.starts_with("heatmaps") || n.starts_with("tags"))
        .map(|(n, t)| Ok((n.as_str(), to_chw(t, n)?)))
        .collect::<Result<_>>()?;
    // The last output is the finest: the size every head is brought to.
    let Some((_, finest)) = heads.iter().rev().find(|(n, _)| n.starts_with("heatmaps")) else {
        bail!("HigherHRNet gave no heatmaps");
    };
    let (_, fh, fw) = finest.dim();
    let at_finest = |a: &Array3<f32>| -> Result<Array3<f32>> {
        let (_, h, w) = a.dim();
        if (h, w) == (fh, fw) {
            Ok(a.clone())
        } else {
            Ok(resize_bilinear_chw(a.view(), fw, fh, false)?)
        }
    };
    let mut heatmaps: Option<Array3<f32>> = None;
    let mut count = 0usize;
    let mut tags: Option<Array3<f32>> = None;
    for (name, a) in &heads {
        let a = at_finest(a)?;
        if name.starts_with("heatmaps") {
            count += 1;
            heatmaps = Some(match heatmaps {
                Some(sum) => sum + a,
                None => a,
            });
        } else if tags.is_none() {
            tags = Some(a);
        }
    }
    let (Some(mut heatmaps), Some(tags)) = (heatmaps, tags) else {
        bail!("HigherHRNet gave no associative embedding tags");
    };
    heatmaps /= count as f32;
    let heatmaps = resize_bilinear_chw(heatmaps.view(), in_w, in_h, false)?;
    let tags = resize_bilinear_chw(tags.view(), in_w, in_h, false)?;
    Ok((heatmaps, tags))
}

/// Channels reordered by the flip index (left <-> right), as `output[:, flip_index]`; a
/// single shared tag map (`TAG_PER_JOINT: False`) is kept as it is.
fn swap_joints(maps: ArrayView3<f32>, flip_index: &[usize]) -> Result<Array3<f32>> {
    let k = maps.dim().0;
    if k == 1 {
        return Ok(maps.to_owned());
    }
    if k != flip_index.len() {
        bail!(
            "HigherHRNet gave {k} joint channels, the COCO flip index has {}",
            flip_index.len()
        );
    }
    Ok(maps.select(Axis(0), flip_index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f64; 2], b: [f64; 2]) -> bool {
        (a[0] - b[0]).abs() < 1e-3 && (a[1] - b[1]).abs() < 1e-3
    }

    /// The official sizes for a landscape and a portrait COCO-sized picture (values worked out
    /// from `get_multi_scale_size`), and a transform that scales evenly.
    #[test]
    fn resize_align_matches_the_official_sizes() {
        let r = ResizeAlign::new(640, 480, 512).unwrap();
        // 512 / 480 * 640 = 682.7 -> 704; scale_w = 704 / 512 * 480 / 200.
        assert_eq!(r.size, [704, 512]);
        assert_eq!(r.center, [320.0, 240.0]);
        assert!((r.scale[0] - 3.3).abs() < 1e-12 && (r.scale[1] - 2.4).abs() < 1e-12);
        let t = r.to_input().unwrap();
        assert!(close(t.apply([320.0, 240.0]), [352.0, 256.0]));
        // Uniform zoom 512 / 480 on both axes.
        let z = 512.0 / 480.0;
        assert!(close(
            t.apply([420.0, 340.0]),
            [352.0 + 100.0 * z, 256.0 + 100.0 * z]
        ));

        let p = ResizeAlign::new(427, 640, 512).unwrap();
        // Portrait: width 512, 512 / 427 * 640 = 767.4 -> 768.
        assert_eq!(p.size, [512, 768]);
        assert_eq!(p.center, [214.0, 320.0]);
        // Input size is rounded up to 64 first (HigherHRNet-W48 uses 640).
        assert_eq!(ResizeAlign::new(100, 100, 600).unwrap().size, [640, 640]);
        assert!(ResizeAlign::new(0, 10, 512).is_err());
        let strip = ResizeAlign::new(10, 3000, 512).unwrap_err();
        assert!(format!("{strip}").contains("10x3000"), "{strip}");
    }

    /// `get_final_preds` undoes the resize: a point of the picture comes back where it was.
    #[test]
    fn to_image_inverts_to_input() {
        for (w, h, s) in [(640, 480, 512), (427, 640, 512), (97, 61, 128)] {
            let r = ResizeAlign::new(w, h, s).unwrap();
            let (fwd, back) = (r.to_input().unwrap(), r.to_image().unwrap());
            for p in [[0.0, 0.0], [10.5, 20.25], [w as f64 - 1.0, h as f64 - 1.0]] {
                assert!(close(back.apply(fwd.apply(p)), p), "{w}x{h}: {p:?}");
            }
        }
    }

    #[test]
    fn flipped_channels_swap_left_and_right() {
        let maps = Array3::from_shape_fn((3, 1, 1), |(c, _, _)| c as f32);
        let swapped = swap_joints(maps.view(), &[0, 2, 1]).unwrap();
        assert_eq!(
            swapped.iter().copied().collect::<Vec<_>>(),
            vec![0.0, 2.0, 1.0]
        );
        assert!(swap_joints(maps.view(), &[0, 1]).is_err());
        let shared = Array3::<f32>::zeros((1, 2, 2));
        assert_eq!(swap_joints(shared.view(), &[0, 2, 1]).unwrap(), shared);
    }
}
