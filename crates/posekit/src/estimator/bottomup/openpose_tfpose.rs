//! tf-pose-estimation's inference path (`TfPoseEstimator.inference` with `--resize 432x368
//! --resize-out-ratio 4`), which the shipped OpenPose-MobileNetV2 weights were trained and
//! evaluated with, so that they see the inputs they were trained on and the people found match
//! tf-pose's:
//!
//! 1. RGB -> BGR (tf-pose reads pictures with `cv2.imread`), values kept 0..255;
//! 2. a plain stretch to the network size (432x368 by default) with OpenCV's `INTER_CUBIC`,
//!    bit-exact through [`resize_cubic_opencv`]; skipped when the picture already has that
//!    size;
//! 3. the network, **one picture per batch**: its backbone BatchNorms use the statistics of
//!    the batch, so batching pictures would change every picture's output;
//! 4. [`PafCodec::decode`] with [`PafDecodeParams::tf_pose`] (x4
//!    upsampling, 25x25 smoothing, 3x3 NMS, PAF scoring, assembly and filters);
//! 5. coordinates normalised by the upsampled map size, times the picture's size.

use ndarray::{s, Array3};
use posekit_core::codecs::paf::{PafCodec, PafDecodeParams, PafEncodeParams, PafLimbs};
use posekit_core::geometry::resize::resize_cubic_opencv;
use posekit_core::Keypoint;

use tch::Tensor;

use super::{first_pass, output, to_chw, BottomUpOutput, BottomUpSteps, Geometry};
use crate::error::{Result, ResultExt};

/// tf-pose's network height for `--resize 432x368`; the width keeps its 432:368 ratio.
pub const DEFAULT_HEIGHT: usize = 368;
const DEFAULT_WIDTH: usize = 432;
/// Input sides must be multiples of this (tf-pose's `networks.py` requires it): the output is
/// then exactly 1/8 of the input and the resize inside the network exactly 2x.
pub const INPUT_MULTIPLE: usize = 16;

/// The network input `(height, width)` for an input height: the reference 368x432, or the
/// same aspect at another height (width rounded to the input multiple).
pub fn input_hw(height: usize) -> (usize, usize) {
    if height == DEFAULT_HEIGHT {
        return (DEFAULT_HEIGHT, DEFAULT_WIDTH);
    }
    let width =
        (height as f64 * DEFAULT_WIDTH as f64 / DEFAULT_HEIGHT as f64 / INPUT_MULTIPLE as f64)
            .round()
            .max(1.0) as usize
            * INPUT_MULTIPLE;
    (height, width)
}

/// The picture as the network's `[3, h, w]` BGR 0..255 input.
fn tf_pose_input(image: &Array3<u8>, (th, tw): (usize, usize)) -> Result<Array3<f32>> {
    let (h, w, _) = image.dim();
    let bgr = image.slice(s![.., .., ..;-1]);
    let resized: Array3<u8> = if (h, w) == (th, tw) {
        bgr.as_standard_layout().into_owned()
    } else {
        resize_cubic_opencv(bgr, tw, th).context("resizing the picture to the network input")?
    };
    Ok(Array3::from_shape_fn((3, th, tw), |(c, y, x)| {
        resized[[y, x, c]] as f32
    }))
}

/// Steps 1-2: the network input.
pub(super) fn prepare(
    steps: &BottomUpSteps,
    image: &Array3<u8>,
) -> Result<(Array3<f32>, Geometry)> {
    Ok((
        tf_pose_input(image, input_hw(steps.input_size))?,
        Geometry::OpenPoseTfPose,
    ))
}

/// Steps 4-5: the people in the outputs of the network, for a picture of `(h, w)`.
pub(super) fn decode(
    passes: &[Vec<(String, Tensor)>],
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
        PafDecodeParams::tf_pose(),
    );
    let decoding = codec
        .decode(heatmaps.view(), pafs.view())
        .context("grouping OpenPose's joints")?;
    let mut poses = decoding.normalized_poses();
    let (sx, sy) = (w as f32, h as f32);
    for k in poses.iter_mut().flat_map(|p| p.keypoints.iter_mut()) {
        *k = Keypoint::new(k.x * sx, k.y * sy, k.score);
    }
    let maps = if keep_maps {
        vec![
            ("heatmaps".to_string(), heatmaps.into_dyn()),
            ("pafs".to_string(), pafs.into_dyn()),
        ]
    } else {
        Vec::new()
    };
    Ok(BottomUpOutput { poses, maps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_size_and_other_heights_keep_tf_poses_aspect() {
        assert_eq!(input_hw(368), (368, 432));
        assert_eq!(input_hw(256), (256, 304));
        assert_eq!(input_hw(736), (736, 864));
    }

    #[test]
    fn the_input_is_bgr_and_unscaled() {
        let mut image = Array3::<u8>::zeros((4, 4, 3));
        image[[0, 0, 0]] = 200; // red
        image[[0, 0, 2]] = 10; // blue
        let x = tf_pose_input(&image, (4, 4)).unwrap();
        assert_eq!((x[[0, 0, 0]], x[[2, 0, 0]]), (10.0, 200.0));
    }
}
