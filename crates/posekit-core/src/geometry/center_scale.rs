//! A person box becomes the center and scale of the top-down crop, as in the official HRNet code
//! (`lib/dataset/coco.py`, `_box2cs` / `_xywh2cs`) and MMPose 0.x's `TopDownGetBboxCenterScale`.
//!
//! Why this exact convention: checkpoints were trained on crops cut this way, so a different
//! center (e.g. `x + (w - 1) / 2`) or padding shifts every prediction by a fraction of a pixel and
//! costs AP. The scale is in units of [`PIXEL_STD`] = 200 px because the original code divided by
//! it; we keep the unit so that centers and scales read from HRNet/MMPose result files mean the
//! same thing here.

use crate::error::{Error, Result};

/// The unit of `scale`: a scale of 1.0 is 200 pixels (HRNet's `pixel_std`).
pub const PIXEL_STD: f64 = 200.0;

/// Padding applied to the aspect-corrected box (HRNet's `scale * 1.25`).
pub const DEFAULT_PADDING: f64 = 1.25;

/// Center (pixels) and scale (units of [`PIXEL_STD`], `[width, height]`) of a top-down crop.
///
/// The values are stored as `f64` but rounded to `f32` the way the reference stores them in
/// `np.float32` arrays; that keeps crops and decoded keypoints equal to the reference to ~1e-9
/// instead of ~1e-5 px, which is what lets the fixtures compare tightly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CenterScale {
    pub center: [f64; 2],
    pub scale: [f64; 2],
}

impl CenterScale {
    /// `[x, y, w, h]` box to center/scale with the model's aspect ratio (`input_w / input_h`,
    /// e.g. 192/256) and the default 1.25 padding.
    pub fn from_xywh(bbox: [f64; 4], aspect_ratio: f64) -> Result<Self> {
        Self::from_xywh_padded(bbox, aspect_ratio, DEFAULT_PADDING)
    }

    /// As [`from_xywh`](Self::from_xywh) with an explicit padding factor.
    ///
    /// The center is `(x + w/2, y + h/2)`; the shorter side (relative to `aspect_ratio`) is grown
    /// so that the crop has the network's aspect ratio without distorting the person; the scale is
    /// `[w, h] / 200 * padding`.
    ///
    /// Errors: a non-finite value, a negative width or height, or a box with no extent at all.
    /// A box with zero width but positive height (or the reverse) is accepted: the official
    /// GT cleaning (`x2 = x1 + max(0, w - 1)`) yields exactly such boxes for 1-pixel-wide people,
    /// and the aspect-ratio correction gives them a well-defined crop.
    ///
    /// One deliberate difference from the reference: it skips the padding when `center.x == -1`
    /// (a sentinel of older code); here padding always applies, since a detection whose center is
    /// exactly at x = -1 is still a real box.
    pub fn from_xywh_padded(bbox: [f64; 4], aspect_ratio: f64, padding: f64) -> Result<Self> {
        let [x, y, mut w, mut h] = bbox;
        if bbox.iter().any(|v| !v.is_finite()) {
            return Err(Error::Shape(format!("box {bbox:?} has a non-finite value")));
        }
        if w < 0.0 || h < 0.0 {
            return Err(Error::Shape(format!(
                "box {bbox:?} has a negative width or height"
            )));
        }
        if w == 0.0 && h == 0.0 {
            return Err(Error::Shape(format!(
                "box {bbox:?} has zero width and height"
            )));
        }
        if !(aspect_ratio.is_finite() && aspect_ratio > 0.0) {
            return Err(Error::Shape(format!(
                "aspect ratio {aspect_ratio} must be positive"
            )));
        }
        if !(padding.is_finite() && padding > 0.0) {
            return Err(Error::Shape(format!("padding {padding} must be positive")));
        }
        let center = [round_f32(x + w * 0.5), round_f32(y + h * 0.5)];
        if w > aspect_ratio * h {
            h = w / aspect_ratio;
        } else if w < aspect_ratio * h {
            w = h * aspect_ratio;
        }
        // Reference: np.array([w / 200, h / 200], float32) * 1.25 -> a float32 product.
        let scale = [w, h].map(|v| ((v / PIXEL_STD) as f32 * padding as f32) as f64);
        Ok(Self { center, scale })
    }

    /// An MPII annotation's `center` (1-based MATLAB pixels) and `scale` (person height / 200)
    /// to the crop the official HRNet MPII loader uses: the center moves down by `15 * scale`
    /// pixels and the scale grows by 1.25 ("to avoid cropping limbs"), then the center becomes
    /// 0-based. Computed in f64, as that loader does.
    ///
    /// MPII marks people without a usable box with center x = -1; the reference then crops
    /// around (-2, y - 1) anyway. Here that is an error, so the caller decides what to skip.
    pub fn from_mpii(center: [f64; 2], scale: f64) -> Result<Self> {
        if !(center.iter().all(|v| v.is_finite()) && scale.is_finite() && scale > 0.0) {
            return Err(Error::Shape(format!(
                "MPII center {center:?} / scale {scale} must be finite with a positive scale"
            )));
        }
        if center[0] == -1.0 {
            return Err(Error::Shape(format!(
                "MPII person has no center ({center:?})"
            )));
        }
        let s = scale * DEFAULT_PADDING;
        Ok(Self {
            center: [center[0] - 1.0, center[1] + 15.0 * scale - 1.0],
            scale: [s, s],
        })
    }

    /// The crop's extent in image pixels, `[width, height]` (`scale * 200`).
    pub fn size_px(&self) -> [f64; 2] {
        [self.scale[0] * PIXEL_STD, self.scale[1] * PIXEL_STD]
    }

    /// The crop as an `[x, y, w, h]` box in image pixels (padding included).
    pub fn to_xywh(&self) -> [f64; 4] {
        let [w, h] = self.size_px();
        [self.center[0] - w * 0.5, self.center[1] - h * 0.5, w, h]
    }

    /// Area of the crop in pixels², what HRNet stores as the result's `area` for OKS-NMS.
    pub fn area(&self) -> f64 {
        let [w, h] = self.size_px();
        w * h
    }
}

/// Clips a COCO ground-truth box to the image the way the official loader does before
/// [`CenterScale::from_xywh`]: `x1 = max(0, x)`, `x2 = min(width - 1, x1 + max(0, w - 1))`
/// (same for y), kept only if `area > 0` and `x2 >= x1`, `y2 >= y1`. Returns `None` for the
/// boxes the loader drops, so training sees the same set of people.
pub fn clean_coco_box(
    bbox: [f64; 4],
    area: f64,
    image_width: f64,
    image_height: f64,
) -> Option<[f64; 4]> {
    let [x, y, w, h] = bbox;
    if !bbox
        .iter()
        .chain([&area, &image_width, &image_height])
        .all(|v| v.is_finite())
    {
        return None;
    }
    let x1 = x.max(0.0);
    let y1 = y.max(0.0);
    let x2 = (image_width - 1.0).min(x1 + (w - 1.0).max(0.0));
    let y2 = (image_height - 1.0).min(y1 + (h - 1.0).max(0.0));
    (area > 0.0 && x2 >= x1 && y2 >= y1).then_some([x1, y1, x2 - x1, y2 - y1])
}

fn round_f32(v: f64) -> f64 {
    v as f32 as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tall_box_is_widened_to_the_model_aspect() {
        let cs = CenterScale::from_xywh([10.0, 20.0, 30.0, 80.0], 192.0 / 256.0).unwrap();
        assert_eq!(cs.center, [25.0, 60.0]);
        // w grows to 80 * 0.75 = 60; scale = [60, 80] / 200 * 1.25.
        assert!((cs.scale[0] - 0.375).abs() < 1e-7);
        assert!((cs.scale[1] - 0.5).abs() < 1e-7);
        assert_eq!(cs.size_px(), [75.0, 100.0]);
        assert_eq!(cs.to_xywh(), [25.0 - 37.5, 60.0 - 50.0, 75.0, 100.0]);
    }

    #[test]
    fn wide_box_is_heightened() {
        let cs = CenterScale::from_xywh([0.0, 0.0, 120.0, 40.0], 0.75).unwrap();
        assert_eq!(cs.center, [60.0, 20.0]);
        assert!((cs.scale[0] - 0.75).abs() < 1e-7);
        assert!((cs.scale[1] - 1.0).abs() < 1e-7);
    }

    #[test]
    fn degenerate_boxes_are_errors_not_garbage() {
        for b in [
            [0.0, 0.0, 0.0, 0.0],
            [1.0, 2.0, -3.0, 4.0],
            [f64::NAN, 0.0, 10.0, 10.0],
            [0.0, 0.0, f64::INFINITY, 10.0],
        ] {
            assert!(
                matches!(CenterScale::from_xywh(b, 0.75), Err(Error::Shape(_))),
                "{b:?}"
            );
        }
        assert!(CenterScale::from_xywh([0.0, 0.0, 10.0, 10.0], 0.0).is_err());
        assert!(CenterScale::from_xywh_padded([0.0, 0.0, 10.0, 10.0], 1.0, f64::NAN).is_err());
        // A zero-width box is a line; the aspect fix still makes a crop of it.
        let cs = CenterScale::from_xywh([5.0, 5.0, 0.0, 40.0], 0.75).unwrap();
        assert!((cs.scale[0] - 0.1875).abs() < 1e-7);
    }

    #[test]
    fn mpii_center_moves_down_and_becomes_zero_based() {
        let cs = CenterScale::from_mpii([601.0, 380.0], 3.021046).unwrap();
        assert_eq!(cs.center[0], 600.0);
        assert!((cs.center[1] - (380.0 + 15.0 * 3.021046 - 1.0)).abs() < 1e-12);
        assert!((cs.scale[0] - 3.021046 * 1.25).abs() < 1e-12);
        assert_eq!(cs.scale[0], cs.scale[1]);
        assert!(CenterScale::from_mpii([-1.0, -1.0], 1.0).is_err());
        assert!(CenterScale::from_mpii([10.0, 10.0], 0.0).is_err());
    }

    #[test]
    fn coco_cleaning_matches_the_official_loader() {
        assert_eq!(
            clean_coco_box([-5.0, 3.0, 20.0, 10.0], 50.0, 640.0, 480.0),
            Some([0.0, 3.0, 19.0, 9.0])
        );
        assert_eq!(
            clean_coco_box([630.0, 3.0, 20.0, 10.0], 50.0, 640.0, 480.0),
            Some([630.0, 3.0, 9.0, 9.0])
        );
        assert_eq!(
            clean_coco_box([10.0, 10.0, 1.0, 1.0], 1.0, 640.0, 480.0),
            Some([10.0, 10.0, 0.0, 0.0])
        );
        assert_eq!(
            clean_coco_box([10.0, 10.0, 5.0, 5.0], 0.0, 640.0, 480.0),
            None
        );
        assert_eq!(
            clean_coco_box([700.0, 10.0, 5.0, 5.0], 9.0, 640.0, 480.0),
            None
        );
    }
}
