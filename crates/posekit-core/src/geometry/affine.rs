//! 2-D affine transforms and the two crop conventions of top-down pose estimation.
//!
//! * **Standard** (official HRNet `lib/utils/transforms.py`, MMPose 0.x without UDP): the
//!   transform is built from three point pairs (crop center, a point half a crop-width "above"
//!   it turned by the rotation, and a third point perpendicular to those), with the source extent
//!   `scale * 200`. Only the crop *width* sets the zoom; the height follows from the aspect ratio
//!   the box was given by [`super::center_scale::CenterScale`]. Predictions go back
//!   to the image through the inverse of the same construction (`transform_preds`).
//! * **UDP** (Huang et al., "The Devil is in the Details", CVPR 2020; MMPose's
//!   `get_warp_matrix`): pixel *centers* are aligned, i.e. the crop spans `output_size - 1`
//!   pixel steps instead of `output_size`, which removes a half-pixel bias between the flipped and
//!   unflipped passes and between input and heatmap resolutions.
//!
//! The reference code keeps its intermediate points in `float32`; the constructors here round at
//! the same places so that matrices agree with it to ~1e-9 (the fixture test checks this). The
//! matrices themselves are `f64`.

use crate::error::{Error, Result};
use crate::pose::Keypoint;

use super::center_scale::{CenterScale, PIXEL_STD};

/// A 2x3 affine matrix mapping `(x, y)` to `m * [x, y, 1]`, the same layout as OpenCV's
/// `warpAffine` matrices (so a matrix printed by Python can be pasted here).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine2 {
    pub m: [[f64; 3]; 2],
}

impl Affine2 {
    pub const IDENTITY: Affine2 = Affine2 {
        m: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
    };

    pub fn new(m: [[f64; 3]; 2]) -> Self {
        Self { m }
    }

    /// The six coefficients row by row (`m00 m01 m02 m10 m11 m12`), the order OpenCV's warp
    /// kernels index them in.
    pub fn coefficients(&self) -> [f64; 6] {
        let [[a, b, c], [d, e, f]] = self.m;
        [a, b, c, d, e, f]
    }

    pub fn translation(tx: f64, ty: f64) -> Self {
        Self::new([[1.0, 0.0, tx], [0.0, 1.0, ty]])
    }

    pub fn scaling(sx: f64, sy: f64) -> Self {
        Self::new([[sx, 0.0, 0.0], [0.0, sy, 0.0]])
    }

    /// Rotation about the origin by `deg` degrees, counter-clockwise *as seen on screen* (image
    /// y points down), the sense of `cv2.getRotationMatrix2D` with a positive angle.
    pub fn rotation_deg(deg: f64) -> Self {
        let (s, c) = deg.to_radians().sin_cos();
        Self::new([[c, s, 0.0], [-s, c, 0.0]])
    }

    /// The transform that maps the three `src` points onto the three `dst` points
    /// (`cv2.getAffineTransform`). Errors when the source points are collinear.
    pub fn from_points(src: [[f64; 2]; 3], dst: [[f64; 2]; 3]) -> Result<Self> {
        let u1 = [src[1][0] - src[0][0], src[1][1] - src[0][1]];
        let u2 = [src[2][0] - src[0][0], src[2][1] - src[0][1]];
        let v1 = [dst[1][0] - dst[0][0], dst[1][1] - dst[0][1]];
        let v2 = [dst[2][0] - dst[0][0], dst[2][1] - dst[0][1]];
        let det = u1[0] * u2[1] - u2[0] * u1[1];
        if det == 0.0 || !det.is_finite() {
            return Err(Error::Shape(format!(
                "affine from points: source points {src:?} are collinear or not finite"
            )));
        }
        // A [u1 u2] = [v1 v2]  =>  A = [v1 v2] [u1 u2]^-1.
        let inv = [[u2[1] / det, -u2[0] / det], [-u1[1] / det, u1[0] / det]];
        let a = [
            [
                v1[0] * inv[0][0] + v2[0] * inv[1][0],
                v1[0] * inv[0][1] + v2[0] * inv[1][1],
            ],
            [
                v1[1] * inv[0][0] + v2[1] * inv[1][0],
                v1[1] * inv[0][1] + v2[1] * inv[1][1],
            ],
        ];
        let t = [
            dst[0][0] - (a[0][0] * src[0][0] + a[0][1] * src[0][1]),
            dst[0][1] - (a[1][0] * src[0][0] + a[1][1] * src[0][1]),
        ];
        Ok(Self::new([
            [a[0][0], a[0][1], t[0]],
            [a[1][0], a[1][1], t[1]],
        ]))
    }

    /// Maps one point.
    #[inline]
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        let m = &self.m;
        [
            m[0][0] * p[0] + m[0][1] * p[1] + m[0][2],
            m[1][0] * p[0] + m[1][1] * p[1] + m[1][2],
        ]
    }

    /// Maps keypoint coordinates in place (scores untouched).
    pub fn apply_keypoints(&self, keypoints: &mut [Keypoint]) {
        for k in keypoints {
            let [x, y] = self.apply([k.x as f64, k.y as f64]);
            k.x = x as f32;
            k.y = y as f32;
        }
    }

    pub fn determinant(&self) -> f64 {
        self.m[0][0] * self.m[1][1] - self.m[0][1] * self.m[1][0]
    }

    pub fn is_finite(&self) -> bool {
        self.m.iter().flatten().all(|v| v.is_finite())
    }

    /// The inverse transform. Errors for a singular or non-finite matrix (OpenCV would silently
    /// use an all-zero inverse and paint the whole crop with one source pixel).
    pub fn inverse(&self) -> Result<Self> {
        let det = self.determinant();
        if det == 0.0 || !det.is_finite() || !self.is_finite() {
            return Err(Error::Shape(format!(
                "affine matrix {:?} is not invertible",
                self.m
            )));
        }
        let m = &self.m;
        let d = 1.0 / det;
        let a11 = m[1][1] * d;
        let a12 = -m[0][1] * d;
        let a21 = -m[1][0] * d;
        let a22 = m[0][0] * d;
        Ok(Self::new([
            [a11, a12, -a11 * m[0][2] - a12 * m[1][2]],
            [a21, a22, -a21 * m[0][2] - a22 * m[1][2]],
        ]))
    }

    /// `self` followed by `next`: `(self.then(next)).apply(p) == next.apply(self.apply(p))`.
    pub fn then(&self, next: &Affine2) -> Affine2 {
        next.compose(self)
    }

    /// Mathematical composition `self ∘ first`: applies `first`, then `self`.
    pub fn compose(&self, first: &Affine2) -> Affine2 {
        let a = &self.m;
        let b = &first.m;
        let mut m = [[0.0; 3]; 2];
        for (r, row) in m.iter_mut().enumerate() {
            row[0] = a[r][0] * b[0][0] + a[r][1] * b[1][0];
            row[1] = a[r][0] * b[0][1] + a[r][1] * b[1][1];
            row[2] = a[r][0] * b[0][2] + a[r][1] * b[1][2] + a[r][2];
        }
        Affine2::new(m)
    }
}

/// Which crop convention a model was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AffineMode {
    /// Official HRNet / MMPose 0.x default: three-point construction, extent `scale * 200`.
    #[default]
    Standard,
    /// Unbiased data processing: pixel centers aligned, extent `output_size - 1` steps.
    Udp,
}

/// The official HRNet `get_affine_transform`: image -> crop of `output_size` (`[w, h]`), or
/// crop -> image when `inv` is true.
///
/// `rot_deg` positive turns the image content counter-clockwise in the crop (the source window
/// is turned clockwise). `shift` moves the window by a fraction of its own size (`scale * 200 *
/// shift`), the reference's random-shift augmentation.
pub fn get_affine_transform(
    center: [f64; 2],
    scale: [f64; 2],
    rot_deg: f64,
    output_size: [f64; 2],
    shift: [f64; 2],
    inv: bool,
) -> Result<Affine2> {
    let all = center
        .iter()
        .chain(&scale)
        .chain(&output_size)
        .chain(&shift)
        .chain([&rot_deg]);
    if !all.into_iter().all(|v| v.is_finite()) {
        return Err(Error::Shape(format!(
            "affine transform: non-finite input (center {center:?}, scale {scale:?}, rot {rot_deg}, \
             output {output_size:?}, shift {shift:?})"
        )));
    }
    if scale[0] <= 0.0 || output_size[0] <= 0.0 || output_size[1] <= 0.0 {
        return Err(Error::Shape(format!(
            "affine transform: scale {scale:?} and output size {output_size:?} must be positive"
        )));
    }
    // Reference dtypes: center/scale/shift are float32 arrays, `scale * 200.0` stays float32,
    // the rotated direction is float64, and the three points are stored in float32 arrays.
    let c = center.map(|v| v as f32);
    let scale_px = scale.map(|v| v as f32 * 200.0f32);
    let sh = [scale_px[0] * shift[0] as f32, scale_px[1] * shift[1] as f32];
    let src_w = scale_px[0] as f64;
    let rad = std::f64::consts::PI * rot_deg / 180.0;
    let (sn, cs) = rad.sin_cos();
    let half = src_w * -0.5;
    let src_dir = [0.0 * cs - half * sn, 0.0 * sn + half * cs];

    let src0 = [c[0] + sh[0], c[1] + sh[1]];
    let src1 = [
        ((c[0] as f64 + src_dir[0]) + sh[0] as f64) as f32,
        ((c[1] as f64 + src_dir[1]) + sh[1] as f64) as f32,
    ];
    let [dst_w, dst_h] = output_size;
    let dst0 = [(dst_w * 0.5) as f32, (dst_h * 0.5) as f32];
    let dst1 = [
        (dst_w * 0.5) as f32,
        (dst_h * 0.5 + (dst_w * -0.5) as f32 as f64) as f32,
    ];
    let src = [src0, src1, third_point(src0, src1)].map(|p| p.map(|v| v as f64));
    let dst = [dst0, dst1, third_point(dst0, dst1)].map(|p| p.map(|v| v as f64));
    if inv {
        Affine2::from_points(dst, src)
    } else {
        Affine2::from_points(src, dst)
    }
}

/// The reference's third point: `b` plus `a - b` turned by 90 degrees, in float32.
fn third_point(a: [f32; 2], b: [f32; 2]) -> [f32; 2] {
    let d = [a[0] - b[0], a[1] - b[1]];
    [b[0] - d[1], b[1] + d[0]]
}

/// MMPose's UDP `get_warp_matrix(theta, size_input, size_dst, size_target)`: rotates about the
/// center of `size_input` and maps a `size_target` window onto `size_dst` pixel steps. MMPose
/// stores the result in float32, so the entries are rounded to f32 here as well.
pub fn udp_warp_matrix(
    rot_deg: f64,
    size_input: [f64; 2],
    size_dst: [f64; 2],
    size_target: [f64; 2],
) -> Affine2 {
    let (s, c) = rot_deg.to_radians().sin_cos();
    let sx = size_dst[0] / size_target[0];
    let sy = size_dst[1] / size_target[1];
    let m = [
        [
            c * sx,
            -s * sx,
            sx * (-0.5 * size_input[0] * c + 0.5 * size_input[1] * s + 0.5 * size_target[0]),
        ],
        [
            s * sy,
            c * sy,
            sy * (-0.5 * size_input[0] * s - 0.5 * size_input[1] * c + 0.5 * size_target[1]),
        ],
    ];
    Affine2::new(m.map(|row| row.map(|v| v as f32 as f64)))
}

/// The image -> crop transform of either convention for a crop of `output_size` (`[w, h]`).
///
/// UDP follows MMPose 0.x's `TopDownAffine(use_udp=True)`:
/// `get_warp_matrix(rot, center * 2, output_size - 1, scale * 200)`.
pub fn crop_transform(
    cs: &CenterScale,
    rot_deg: f64,
    output_size: [f64; 2],
    mode: AffineMode,
) -> Result<Affine2> {
    match mode {
        AffineMode::Standard => {
            get_affine_transform(cs.center, cs.scale, rot_deg, output_size, [0.0, 0.0], false)
        }
        AffineMode::Udp => {
            check_udp(cs, rot_deg, output_size)?;
            Ok(udp_warp_matrix(
                rot_deg,
                [cs.center[0] * 2.0, cs.center[1] * 2.0],
                [output_size[0] - 1.0, output_size[1] - 1.0],
                cs.size_px(),
            ))
        }
    }
}

/// The heatmap -> image transform used to decode predictions of a crop whose heatmaps are
/// `heatmap_size` (`[w, h]`). Test-time crops are never rotated, as in the reference.
///
/// Standard: the official `transform_preds` (inverse three-point construction).
/// UDP: MMPose's `transform_preds(use_udp=True)`, `x * scale*200 / (w - 1) + center - scale*100`.
pub fn heatmap_to_image(
    cs: &CenterScale,
    heatmap_size: [f64; 2],
    mode: AffineMode,
) -> Result<Affine2> {
    match mode {
        AffineMode::Standard => {
            get_affine_transform(cs.center, cs.scale, 0.0, heatmap_size, [0.0, 0.0], true)
        }
        AffineMode::Udp => {
            check_udp(cs, 0.0, heatmap_size)?;
            let [w, h] = cs.size_px();
            let sx = w / (heatmap_size[0] - 1.0);
            let sy = h / (heatmap_size[1] - 1.0);
            Ok(Affine2::new([
                [sx, 0.0, cs.center[0] - w * 0.5],
                [0.0, sy, cs.center[1] - h * 0.5],
            ]))
        }
    }
}

/// The official `transform_preds`: maps heatmap coordinates of one crop back to the image.
pub fn transform_preds(
    points: &[[f64; 2]],
    cs: &CenterScale,
    heatmap_size: [f64; 2],
) -> Result<Vec<[f64; 2]>> {
    let t = heatmap_to_image(cs, heatmap_size, AffineMode::Standard)?;
    Ok(points.iter().map(|&p| t.apply(p)).collect())
}

fn check_udp(cs: &CenterScale, rot_deg: f64, size: [f64; 2]) -> Result<()> {
    let ok = cs.center.iter().chain(&cs.scale).all(|v| v.is_finite())
        && rot_deg.is_finite()
        && cs.scale.iter().all(|&v| v > 0.0)
        && size.iter().all(|&v| v.is_finite() && v > 1.0);
    if ok {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "UDP transform: center {:?} / scale {:?} / rotation {rot_deg} must be finite, scale \
             positive and size {size:?} above 1 pixel",
            cs.center, cs.scale
        )))
    }
}

/// Scale of the standard crop relative to the source (`output_w / (scale_w * 200)`); handy
/// for mapping lengths (sigmas, limb widths) between image and crop.
pub fn crop_zoom(cs: &CenterScale, output_size: [f64; 2]) -> f64 {
    output_size[0] / (cs.scale[0] * PIXEL_STD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f64; 2], b: [f64; 2], tol: f64) -> bool {
        (a[0] - b[0]).abs() <= tol && (a[1] - b[1]).abs() <= tol
    }

    #[test]
    fn inverse_and_composition_round_trip() {
        let a = Affine2::new([[0.7, -0.2, 13.0], [0.4, 1.3, -7.5]]);
        let b = Affine2::rotation_deg(33.0).then(&Affine2::translation(4.0, -2.0));
        let p = [17.25, -3.5];
        let inv = a.inverse().unwrap();
        assert!(close(inv.apply(a.apply(p)), p, 1e-12));
        assert!(close(a.then(&b).apply(p), b.apply(a.apply(p)), 1e-12));
        assert!(close(b.compose(&a).apply(p), b.apply(a.apply(p)), 1e-12));
        assert!(Affine2::scaling(0.0, 1.0).inverse().is_err());
        assert!(Affine2::new([[f64::NAN, 0.0, 0.0], [0.0, 1.0, 0.0]])
            .inverse()
            .is_err());
    }

    #[test]
    fn from_points_recovers_a_known_transform() {
        let t = Affine2::new([[0.5, 0.1, 3.0], [-0.2, 0.8, 1.0]]);
        let src = [[0.0, 0.0], [10.0, 2.0], [-3.0, 7.0]];
        let dst = src.map(|p| t.apply(p));
        let got = Affine2::from_points(src, dst).unwrap();
        for r in 0..2 {
            for c in 0..3 {
                assert!((got.m[r][c] - t.m[r][c]).abs() < 1e-12);
            }
        }
        assert!(Affine2::from_points([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], dst).is_err());
    }

    #[test]
    fn standard_crop_maps_box_center_to_crop_center() {
        // Box 100 px wide at (300, 200): the crop is 192x256, so the zoom is 192/100 and the
        // box center lands on the crop center; rotation by 90 sends "right of center" to "up".
        let cs = CenterScale {
            center: [300.0, 200.0],
            scale: [0.5, 2.0 / 3.0],
        };
        let t = get_affine_transform(cs.center, cs.scale, 0.0, [192.0, 256.0], [0.0, 0.0], false)
            .unwrap();
        assert!(close(t.apply([300.0, 200.0]), [96.0, 128.0], 1e-9));
        assert!(close(t.apply([350.0, 200.0]), [96.0 + 96.0, 128.0], 1e-9));
        assert!((crop_zoom(&cs, [192.0, 256.0]) - 1.92).abs() < 1e-12);

        let r = get_affine_transform(cs.center, cs.scale, 90.0, [192.0, 256.0], [0.0, 0.0], false)
            .unwrap();
        assert!(close(r.apply([350.0, 200.0]), [96.0, 128.0 - 96.0], 1e-6));
        let back =
            get_affine_transform(cs.center, cs.scale, 90.0, [192.0, 256.0], [0.0, 0.0], true)
                .unwrap();
        assert!(close(
            back.apply(r.apply([311.0, 187.0])),
            [311.0, 187.0],
            1e-4
        ));

        // Shift moves the window by a fraction of its size: +0.1 of 100 px to the right.
        let s = get_affine_transform(cs.center, cs.scale, 0.0, [192.0, 256.0], [0.1, 0.0], false)
            .unwrap();
        assert!(close(s.apply([310.0, 200.0]), [96.0, 128.0], 1e-9));
    }

    #[test]
    fn invalid_inputs_are_errors() {
        assert!(
            get_affine_transform([0.0, 0.0], [0.0, 1.0], 0.0, [192.0, 256.0], [0.0; 2], false)
                .is_err()
        );
        assert!(get_affine_transform(
            [f64::NAN, 0.0],
            [1.0, 1.0],
            0.0,
            [192.0, 256.0],
            [0.0; 2],
            false
        )
        .is_err());
        let cs = CenterScale {
            center: [1.0, 1.0],
            scale: [1.0, 1.0],
        };
        assert!(crop_transform(&cs, 0.0, [1.0, 64.0], AffineMode::Udp).is_err());
        assert!(heatmap_to_image(&cs, [48.0, 0.0], AffineMode::Standard).is_err());
    }

    #[test]
    fn udp_crop_and_decode_are_inverse_and_align_pixel_centers() {
        let cs = CenterScale {
            center: [120.0, 90.0],
            scale: [0.48, 0.64],
        };
        let to_crop = crop_transform(&cs, 0.0, [192.0, 256.0], AffineMode::Udp).unwrap();
        // The window's first and last pixel centers land on the crop's first and last pixels.
        let [w, h] = cs.size_px();
        assert!(close(
            to_crop.apply([120.0 - w / 2.0, 90.0 - h / 2.0]),
            [0.0, 0.0],
            1e-4
        ));
        assert!(close(
            to_crop.apply([120.0 + w / 2.0, 90.0 + h / 2.0]),
            [191.0, 255.0],
            1e-4
        ));
        // Heatmap at quarter resolution: its corners are the window's corners too.
        let back = heatmap_to_image(&cs, [48.0, 64.0], AffineMode::Udp).unwrap();
        assert!(close(
            back.apply([47.0, 63.0]),
            [120.0 + w / 2.0, 90.0 + h / 2.0],
            1e-9
        ));
        assert!(close(
            back.apply([0.0, 0.0]),
            [120.0 - w / 2.0, 90.0 - h / 2.0],
            1e-9
        ));
    }

    #[test]
    fn keypoints_are_mapped_in_place() {
        let mut k = vec![Keypoint {
            x: 1.0,
            y: 2.0,
            score: 0.5,
        }];
        Affine2::translation(10.0, 20.0).apply_keypoints(&mut k);
        assert_eq!((k[0].x, k[0].y, k[0].score), (11.0, 22.0, 0.5));
    }
}
