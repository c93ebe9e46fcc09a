//! SPM at test time: the picture letterboxed into the square network input (aspect ratio
//! kept, centred, black bars), ImageNet normalisation, the last stack's root heatmap and
//! displacements decoded with the core's hierarchical SPR for COCO-17 (displacements normalised
//! by the heatmap diagonal, the codec's default), and the joints mapped back through the
//! heatmap stride and the inverse letterbox.
//!
//! The paper gives no test-time resize beyond its 512x512 input; a letterbox is what keeps
//! people undistorted, and it is exactly invertible. Every joint's score is its person's root
//! peak value, SPM's only confidence, which is also the person score.

use crate::error::{bail, Result, ResultExt};
use ndarray::{Array3, Axis};
use posekit_core::codecs::spm::SpmCodec;
use posekit_core::geometry::affine::Affine2;
use posekit_core::geometry::warp::warp_affine;

use tch::Tensor;

use super::{first_pass, imagenet_chw, output, to_chw, BottomUpOutput, BottomUpSteps, Geometry};

/// The picture scaled by `scale` and moved by `offset` into a `side` x `side` square.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub side: usize,
    pub scale: f64,
    pub offset: [f64; 2],
}

impl Letterbox {
    pub fn new(width: usize, height: usize, side: usize) -> Result<Self> {
        if width == 0 || height == 0 || side == 0 {
            bail!("cannot letterbox a {width}x{height} picture into {side}x{side}");
        }
        let scale = side as f64 / width.max(height) as f64;
        let offset = [
            (side as f64 - width as f64 * scale) / 2.0,
            (side as f64 - height as f64 * scale) / 2.0,
        ];
        Ok(Letterbox {
            side,
            scale,
            offset,
        })
    }

    /// Picture -> network input.
    pub fn to_input(&self) -> Affine2 {
        Affine2::new([
            [self.scale, 0.0, self.offset[0]],
            [0.0, self.scale, self.offset[1]],
        ])
    }

    /// Network input -> picture.
    pub fn to_image(&self) -> Result<Affine2> {
        Ok(self.to_input().inverse()?)
    }

    /// Heatmap pixels (`stride` input pixels each) -> picture.
    pub fn heatmap_to_image(&self, stride: f64) -> Result<Affine2> {
        Ok(Affine2::scaling(stride, stride).then(&self.to_image()?))
    }
}

/// The letterboxed picture as the network input.
pub(super) fn prepare(
    steps: &BottomUpSteps,
    image: &Array3<u8>,
) -> Result<(Array3<f32>, Geometry)> {
    let (h, w, _) = image.dim();
    let side = steps.input_size;
    let letterbox = Letterbox::new(w, h, side)?;
    let input = warp_affine(image.view(), &letterbox.to_input(), side, side)
        .context("letterboxing the picture")?;
    Ok((imagenet_chw(&input), Geometry::Spm(letterbox)))
}

/// The people in the network's outputs, mapped back through the letterbox.
pub(super) fn decode(
    net: &BottomUpSteps,
    passes: &[Vec<(String, Tensor)>],
    letterbox: &Letterbox,
    keep_maps: bool,
) -> Result<BottomUpOutput> {
    let side = letterbox.side;
    let outputs = first_pass(passes)?;
    let root = to_chw(output(outputs, "root")?, "root heatmap")?;
    let displacements = to_chw(output(outputs, "displacements")?, "displacements")?;
    let (rc, mh, mw) = root.dim();
    if rc != 1 || displacements.dim() != (2 * net.layout.keypoints.len(), mh, mw) {
        bail!(
            "SPM gave a root heatmap {:?} and displacements {:?}; expected [1, h, w] and [34, h, w]",
            root.shape(),
            displacements.shape()
        );
    }
    let codec = SpmCodec::hierarchical([mw, mh], &net.layout);
    let mut poses = codec
        .decode(root.index_axis(Axis(0), 0), displacements.view())
        .context("decoding SPM's people")?;
    let to_image = letterbox.heatmap_to_image(side as f64 / mw as f64)?;
    for pose in &mut poses {
        to_image.apply_keypoints(&mut pose.keypoints);
    }
    let maps = if keep_maps {
        vec![
            ("root".to_string(), root.into_dyn()),
            ("displacements".to_string(), displacements.into_dyn()),
        ]
    } else {
        Vec::new()
    };
    Ok(BottomUpOutput { poses, maps })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f64; 2], b: [f64; 2]) -> bool {
        (a[0] - b[0]).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9
    }

    #[test]
    fn a_landscape_picture_is_centred_with_bars_above_and_below() {
        let lb = Letterbox::new(640, 320, 512).unwrap();
        assert_eq!(lb.scale, 0.8);
        assert_eq!(lb.offset, [0.0, 128.0]);
        let t = lb.to_input();
        assert!(close(t.apply([0.0, 0.0]), [0.0, 128.0]));
        assert!(close(t.apply([640.0, 320.0]), [512.0, 384.0]));
        let portrait = Letterbox::new(100, 400, 128).unwrap();
        assert_eq!(portrait.offset, [48.0, 0.0]);
        assert!(Letterbox::new(0, 5, 128).is_err());
    }

    #[test]
    fn heatmap_points_map_back_to_the_picture() {
        let lb = Letterbox::new(640, 320, 512).unwrap();
        // Heatmap pixel (10, 40) at stride 4 is input (40, 160): picture (50, 40).
        let back = lb.heatmap_to_image(4.0).unwrap();
        assert!(close(back.apply([10.0, 40.0]), [50.0, 40.0]));
        let inv = lb.to_image().unwrap();
        let p = [123.25, 77.5];
        assert!(close(inv.apply(lb.to_input().apply(p)), p));
    }
}
