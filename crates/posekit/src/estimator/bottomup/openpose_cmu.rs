//! The original OpenPose (CMU, VGG-19, 6 stages) as its PyTorch port's `body.py` runs it at one
//! scale: the picture resized (bicubic) so that its height is the box size 368, padded right
//! and down with grey 128 to a multiple of the stride 8, fed as BGR `value / 256 - 0.5`; the
//! last stage's heatmaps and PAFs upsampled 8x, the padding cut off, resized to the picture,
//! and grouped by CMU's demo rules ([`PafDecodeParams::cmu`]). People are CMU-18 in picture
//! pixels with the decoder's person score; results convert them to COCO-17.
//!
//! One difference: the port resizes the maps bicubically, here bilinearly (the core's
//! `resize_bilinear_chw`; the maps are smoothed by a sigma-3 Gaussian before peak finding, so
//! the interpolation barely moves a peak).

use crate::error::{bail, Result, ResultExt};
use ndarray::{s, Array3};
use posekit_core::codecs::paf::{PafCodec, PafDecodeParams, PafEncodeParams, PafLimbs};
use posekit_core::geometry::resize::{resize_bilinear_chw, resize_cubic_opencv};

use tch::Tensor;

use super::{first_pass, output, to_chw, BottomUpOutput, BottomUpSteps, Geometry};

/// CMU's `boxsize`: the height the picture is scaled to.
pub const BOX_SIZE: usize = 368;
/// The network's output stride.
pub const STRIDE: usize = 8;
/// Grey of the padding (`padValue`), which the input scaling turns into 0.
const PAD_VALUE: f32 = 128.0;

/// The port's resize (`fx = fy = box / height`, sizes rounded as OpenCV does) and its padding
/// to the stride (`padRightDownCorner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmuResize {
    /// `[w, h]` of the resized picture.
    pub scaled: [usize; 2],
    /// `[w, h]` of the network input: `scaled` padded right and down to multiples of 8.
    pub padded: [usize; 2],
}

impl CmuResize {
    pub fn new(width: usize, height: usize, box_size: usize) -> Result<Self> {
        if width == 0 || height == 0 || box_size == 0 {
            bail!("cannot resize a {width}x{height} picture to height {box_size}");
        }
        let factor = box_size as f64 / height as f64;
        let scaled = [
            ((width as f64 * factor).round() as usize).max(1),
            ((height as f64 * factor).round() as usize).max(1),
        ];
        let pad = |v: usize| v.div_ceil(STRIDE) * STRIDE;
        Ok(CmuResize {
            scaled,
            padded: [pad(scaled[0]), pad(scaled[1])],
        })
    }
}

/// `[3, H, W]` network input: the resized RGB picture in BGR order, `v / 256 - 0.5`, padded.
fn cmu_input(resized: &Array3<u8>, padded: [usize; 2]) -> Array3<f32> {
    let (h, w, _) = resized.dim();
    Array3::from_shape_fn((3, padded[1], padded[0]), |(c, y, x)| {
        let v = if y < h && x < w {
            resized[[y, x, 2 - c]] as f32
        } else {
            PAD_VALUE
        };
        v / 256.0 - 0.5
    })
}

/// Maps at 1/8 of the padded input -> the picture's size, as `body.py` does.
fn maps_to_image(
    maps: &Array3<f32>,
    resize: &CmuResize,
    width: usize,
    height: usize,
) -> Result<Array3<f32>> {
    let [pw, ph] = resize.padded;
    let [sw, sh] = resize.scaled;
    let up = resize_bilinear_chw(maps.view(), pw, ph, false)?;
    let cropped = up.slice(s![.., ..sh, ..sw]);
    Ok(resize_bilinear_chw(cropped, width, height, false)?)
}

/// The resized, padded picture as the network input.
pub(super) fn prepare(
    steps: &BottomUpSteps,
    image: &Array3<u8>,
) -> Result<(Array3<f32>, Geometry)> {
    let (h, w, _) = image.dim();
    let resize = CmuResize::new(w, h, steps.input_size)?;
    let resized = resize_cubic_opencv(image.view(), resize.scaled[0], resize.scaled[1])
        .context("resizing the picture to the network input")?;
    Ok((
        cmu_input(&resized, resize.padded),
        Geometry::OpenPoseCmu(resize),
    ))
}

/// The people in the network's outputs: maps brought to the picture's `(h, w)`, CMU's
/// grouping.
pub(super) fn decode(
    passes: &[Vec<(String, Tensor)>],
    resize: &CmuResize,
    (h, w): (usize, usize),
    keep_maps: bool,
) -> Result<BottomUpOutput> {
    let outputs = first_pass(passes)?;
    let heatmaps = to_chw(output(outputs, "heatmaps")?, "heatmaps")?;
    let pafs = to_chw(output(outputs, "pafs")?, "PAFs")?;
    let (_, map_h, map_w) = heatmaps.dim();
    let codec = PafCodec::new(
        PafLimbs::cmu18(),
        PafEncodeParams::openpose([map_w, map_h]),
        PafDecodeParams::cmu(),
    );
    let full_heatmaps = maps_to_image(&heatmaps, resize, w, h)?;
    let full_pafs = maps_to_image(&pafs, resize, w, h)?;
    let decoding = codec
        .decode(full_heatmaps.view(), full_pafs.view())
        .context("grouping OpenPose's joints")?;
    let maps = if keep_maps {
        vec![
            ("heatmaps".to_string(), heatmaps.into_dyn()),
            ("pafs".to_string(), pafs.into_dyn()),
        ]
    } else {
        Vec::new()
    };
    Ok(BottomUpOutput {
        poses: decoding.poses(),
        maps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_height_becomes_the_box_size_and_the_input_a_multiple_of_the_stride() {
        let r = CmuResize::new(640, 480, 368).unwrap();
        // 640 * 368 / 480 = 490.67 -> 491, padded to 496.
        assert_eq!(r.scaled, [491, 368]);
        assert_eq!(r.padded, [496, 368]);
        let small = CmuResize::new(30, 100, 64).unwrap();
        assert_eq!(small.scaled, [19, 64]);
        assert_eq!(small.padded, [24, 64]);
        assert!(CmuResize::new(10, 0, 368).is_err());
    }

    #[test]
    fn input_is_bgr_scaled_and_padded_with_zero() {
        let mut img = Array3::<u8>::zeros((2, 3, 3));
        img[[0, 0, 0]] = 255; // red
        img[[0, 0, 2]] = 64; // blue
        let x = cmu_input(&img, [8, 8]);
        assert_eq!(x.dim(), (3, 8, 8));
        assert_eq!(x[[0, 0, 0]], 64.0 / 256.0 - 0.5); // channel 0 is blue
        assert_eq!(x[[2, 0, 0]], 255.0 / 256.0 - 0.5); // channel 2 is red
        assert_eq!(x[[1, 7, 7]], 0.0); // padding
    }

    /// A peak in the last map pixel ends in the picture's last pixel and nowhere near its
    /// first, through upsampling, cropping and resizing.
    #[test]
    fn maps_come_back_at_the_picture_size() {
        let r = CmuResize::new(32, 32, 16).unwrap();
        assert_eq!((r.scaled, r.padded), ([16, 16], [16, 16]));
        let mut maps = Array3::<f32>::zeros((1, 2, 2));
        maps[[0, 1, 1]] = 1.0;
        let full = maps_to_image(&maps, &r, 32, 32).unwrap();
        assert_eq!(full.dim(), (1, 32, 32));
        assert_eq!(full[[0, 31, 31]], 1.0);
        assert_eq!(full[[0, 0, 0]], 0.0);
        // Bigger padded input: the padding's maps are cut off before the resize.
        let padded = CmuResize::new(20, 16, 16).unwrap();
        assert_eq!((padded.scaled, padded.padded), ([20, 16], [24, 16]));
        let maps = Array3::from_shape_fn((1, 2, 3), |(_, _, x)| x as f32);
        let full = maps_to_image(&maps, &padded, 20, 16).unwrap();
        assert_eq!(full.dim(), (1, 16, 20));
    }
}
