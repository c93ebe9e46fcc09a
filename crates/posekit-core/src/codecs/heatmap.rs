//! Gaussian heatmaps, the target of top-down pose networks (SimpleBaseline, HRNet, Stacked
//! Hourglass): one map per joint whose peak marks the joint.
//!
//! [`HeatmapCodec`] is the configuration a pipeline reads from its config file; it encodes
//! annotated joints into training targets and decodes network outputs back into joints, in the
//! heatmap's own pixels. Mapping those pixels back to the image is geometry's job, not ours.
//!
//! Every variant reproduces a reference implementation number for number, because published
//! accuracies depend on these sub-pixel details:
//!
//! | variant / refinement | reference |
//! |---|---|
//! | [`HeatmapVariant::Standard`] encode | HRNet `JointsDataset.generate_target` (`gaussian`) |
//! | [`HeatmapVariant::Unbiased`] encode | DARK / MMPose `generate_unbiased_gaussian_heatmaps` |
//! | [`HeatmapVariant::Udp`] encode | UDP / MMPose `generate_udp_gaussian_heatmaps` |
//! | [`Refinement::Shift`] | HRNet `get_max_preds` + `get_final_preds` post-processing |
//! | [`Refinement::Dark`], not UDP | DarkPose `gaussian_blur` + `taylor` |
//! | [`Refinement::Dark`], UDP | MMPose `refine_keypoints_dark_udp` |
//! | flip test | HRNet `flip_back` + `SHIFT_HEATMAP` + `(output + flipped) * 0.5` |
//!
//! `tools/fixtures/make_heatmap_fixtures.py` re-implements those references in NumPy/OpenCV and
//! `tests/heatmap_codec.rs` checks this module against its output.

pub mod dark;
pub mod flip;
pub mod maximum;
mod target;

use ndarray::{Array1, Array3, ArrayView2, ArrayView3};
use serde::{Deserialize, Serialize};

use crate::codecs::Codec;
use crate::error::{Error, Result};
use crate::pose::Keypoint;

pub use flip::{flip_back, merge_flip, shift_flipped_heatmaps};

/// How joints become Gaussian targets, which also fixes how heatmap pixels relate to input
/// pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeatmapVariant {
    /// HRNet / SimpleBaseline: stride `input / heatmap`, the Gaussian centred on the joint
    /// rounded to the nearest heatmap pixel, cut to a `6 sigma + 1` square. The quantisation
    /// error this leaves is what the quarter-pixel shift and DARK decoding try to undo.
    #[default]
    Standard,
    /// DARK's unbiased encoding: same stride as `Standard`, but the Gaussian is centred on the
    /// exact sub-pixel position and covers the whole map, so that DARK decoding (which assumes a
    /// true Gaussian) recovers the position without bias.
    Unbiased,
    /// UDP (Huang et al., 2020): stride `(input - 1) / (heatmap - 1)` so that the first and last
    /// pixels of input and heatmap coincide, and the cut Gaussian centred on the exact sub-pixel
    /// position. Flipped heatmaps need no one-pixel shift in this geometry.
    Udp,
}

/// What decoding does after taking each map's maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refinement {
    /// The integer argmax, as HRNet with `TEST.POST_PROCESS = False`.
    None,
    /// HRNet's default: move a quarter pixel toward the higher neighbour on each axis.
    #[default]
    Shift,
    /// Distribution-aware decoding: blur the map, take its log and make one Newton step with the
    /// local gradient and Hessian. With [`HeatmapVariant::Udp`] this is MMPose's UDP version
    /// (edge-padded, clipped log, every joint); otherwise DarkPose's.
    Dark,
}

/// Configuration of a Gaussian heatmap codec. Sizes are `[width, height]`, as in HRNet's and
/// MMPose's configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatmapCodec {
    /// Network input size `[w, h]` in pixels (the crop), e.g. `[192, 256]`.
    pub input_size: [usize; 2],
    /// Heatmap size `[W, H]`, e.g. `[48, 64]`.
    pub heatmap_size: [usize; 2],
    /// Standard deviation of the target Gaussian in heatmap pixels (HRNet: 2 at 64x48, 3 at
    /// 96x72).
    #[serde(default = "default_sigma")]
    pub sigma: f64,
    #[serde(default)]
    pub variant: HeatmapVariant,
    #[serde(default)]
    pub refinement: Refinement,
    /// Odd size of the blur kernel DARK applies before the Newton step (DarkPose
    /// `TEST.BLUR_KERNEL`, MMPose `blur_kernel_size`); 11 matches sigma 2, 17 sigma 3.
    #[serde(default = "default_blur_kernel")]
    pub blur_kernel: usize,
    /// Optional per-joint loss weights multiplied into the target weights (HRNet
    /// `USE_DIFFERENT_JOINTS_WEIGHT`); one per joint.
    #[serde(default)]
    pub joint_weights: Option<Vec<f32>>,
}

fn default_sigma() -> f64 {
    2.0
}

fn default_blur_kernel() -> usize {
    11
}

/// A training target for one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapTarget {
    /// `[K, H, W]` Gaussian maps, peak value 1.
    pub heatmaps: Array3<f32>,
    /// `[K]` loss weights: 0 for unlabeled joints and joints whose Gaussian misses the map,
    /// otherwise 1 (times the joint weight when configured).
    pub weights: Array1<f32>,
}

impl HeatmapCodec {
    /// HRNet's defaults: standard encoding, sigma 2, quarter-pixel shift on decoding.
    pub fn new(input_size: [usize; 2], heatmap_size: [usize; 2]) -> Self {
        Self {
            input_size,
            heatmap_size,
            sigma: default_sigma(),
            variant: HeatmapVariant::Standard,
            refinement: Refinement::Shift,
            blur_kernel: default_blur_kernel(),
            joint_weights: None,
        }
    }

    /// MMPose's `UDPHeatmap` defaults: UDP encoding, sigma 2, UDP-DARK decoding.
    pub fn udp(input_size: [usize; 2], heatmap_size: [usize; 2]) -> Self {
        Self {
            variant: HeatmapVariant::Udp,
            refinement: Refinement::Dark,
            ..Self::new(input_size, heatmap_size)
        }
    }

    /// Checks the configuration; `encode`, `decode` and `merge_flip` call it, so a bad config
    /// is reported before any array is touched.
    pub fn validate(&self) -> Result<()> {
        let min = if self.variant == HeatmapVariant::Udp {
            2
        } else {
            1
        };
        for (name, size) in [
            ("input_size", self.input_size),
            ("heatmap_size", self.heatmap_size),
        ] {
            if size[0] < min || size[1] < min {
                return Err(Error::Shape(format!(
                    "heatmap codec: {name} must be at least {min}x{min} for the {:?} variant, got {}x{}",
                    self.variant, size[0], size[1]
                )));
            }
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(Error::Shape(format!(
                "heatmap codec: sigma must be finite and positive, got {}",
                self.sigma
            )));
        }
        if self.blur_kernel.is_multiple_of(2) {
            return Err(Error::Shape(format!(
                "heatmap codec: blur_kernel must be odd (OpenCV's GaussianBlur), got {}",
                self.blur_kernel
            )));
        }
        if let Some(weights) = &self.joint_weights {
            if let Some((k, w)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite()) {
                return Err(Error::Shape(format!(
                    "heatmap codec: joint_weights[{k}] must be finite, got {w}"
                )));
            }
        }
        Ok(())
    }

    /// Input pixels per heatmap pixel, `[x, y]`: `input / heatmap`, or for UDP
    /// `(input - 1) / (heatmap - 1)`.
    pub fn stride(&self) -> [f64; 2] {
        let [w, h] = self.input_size.map(|v| v as f64);
        let [hw, hh] = self.heatmap_size.map(|v| v as f64);
        match self.variant {
            HeatmapVariant::Udp => [(w - 1.0) / (hw - 1.0), (h - 1.0) / (hh - 1.0)],
            _ => [w / hw, h / hh],
        }
    }

    /// Training target for one instance. `joints` is `[K, 3]`: x, y in input (crop) pixels and
    /// a visibility flag. A joint counts as labeled when its visibility is above 0.5, so COCO's
    /// 1 and 2 are both labeled, as in HRNet (which clips them to 1 and draws when `v > 0.5`).
    pub fn encode(&self, joints: ArrayView2<f32>) -> Result<HeatmapTarget> {
        self.validate()?;
        if joints.ncols() != 3 {
            return Err(Error::Shape(format!(
                "heatmap encode: joints must be [K, 3] (x, y, visibility), got {:?}",
                joints.shape()
            )));
        }
        let num_joints = joints.nrows();
        if let Some(weights) = &self.joint_weights {
            if weights.len() != num_joints {
                return Err(Error::Shape(format!(
                    "heatmap encode: joint_weights has {} entries for {num_joints} joints",
                    weights.len()
                )));
            }
        }

        let [width, height] = self.heatmap_size;
        let mut heatmaps = Array3::<f32>::zeros((num_joints, height, width));
        let mut weights = Array1::<f32>::zeros(num_joints);
        let stride = self.stride();
        for (k, joint) in joints.outer_iter().enumerate() {
            let (x, y, visibility) = (joint[0], joint[1], joint[2]);
            if visibility.is_nan() {
                return Err(Error::Shape(format!(
                    "heatmap encode: joint {k} has a NaN visibility"
                )));
            }
            if visibility <= 0.5 {
                continue;
            }
            if !(x.is_finite() && y.is_finite()) {
                return Err(Error::Shape(format!(
                    "heatmap encode: labeled joint {k} has non-finite coordinates ({x}, {y})"
                )));
            }
            let centre = [x as f64 / stride[0], y as f64 / stride[1]];
            let mut map = heatmaps.index_axis_mut(ndarray::Axis(0), k);
            let drawn = match self.variant {
                HeatmapVariant::Standard => {
                    target::draw_truncated(&mut map, centre, self.sigma, false)
                }
                HeatmapVariant::Udp => target::draw_truncated(&mut map, centre, self.sigma, true),
                HeatmapVariant::Unbiased => target::draw_unbiased(&mut map, centre, self.sigma),
            };
            if drawn {
                weights[k] = self.joint_weights.as_ref().map_or(1.0, |w| w[k]);
            }
        }
        Ok(HeatmapTarget { heatmaps, weights })
    }

    /// Decodes one instance's `[K, H, W]` heatmaps into K keypoints in heatmap pixels, with
    /// each map's maximum as score. A map whose maximum is not positive gives `(0, 0)` and that
    /// maximum as score, as HRNet's `get_max_preds` masks it; such joints are never refined.
    pub fn decode(&self, heatmaps: ArrayView3<f32>) -> Result<Vec<Keypoint>> {
        self.validate()?;
        self.check_heatmaps("heatmap decode", heatmaps)?;
        let keypoints = heatmaps
            .outer_iter()
            .map(|map| self.decode_map(map))
            .collect();
        Ok(keypoints)
    }

    fn decode_map(&self, map: ArrayView2<f32>) -> Keypoint {
        let peak = maximum::heatmap_maximum(map);
        let (mut x, mut y) = (peak.x as f32, peak.y as f32);
        if peak.score > 0.0 {
            (x, y) = match (self.refinement, self.variant) {
                (Refinement::None, _) => (x, y),
                (Refinement::Shift, _) => maximum::quarter_pixel_shift(map, x, y),
                (Refinement::Dark, HeatmapVariant::Udp) => {
                    let log_map = dark::udp_log_map(map, self.blur_kernel);
                    dark::refine_dark_udp(log_map.view(), x, y)
                }
                (Refinement::Dark, _) => {
                    let log_map = dark::dark_log_map(map, self.blur_kernel);
                    dark::refine_dark(log_map.view(), x, y)
                }
            };
        }
        Keypoint {
            x,
            y,
            score: peak.score,
        }
    }

    /// Whether the flip test shifts the flipped-back heatmaps one pixel right. With stride
    /// `s = input / heatmap`, mirroring the crop (`x -> w - 1 - x`) and flipping the heatmap back
    /// puts a joint `1 - 1/s` heatmap pixels (0.75 at stride 4) left of where the normal output
    /// has it; HRNet's `SHIFT_HEATMAP` compensates that approximately. UDP's geometry mirrors
    /// exactly, so MMPose turns the shift off there.
    pub fn shifts_flipped_heatmaps(&self) -> bool {
        self.variant != HeatmapVariant::Udp
    }

    /// The flip test: flips back the heatmaps of the mirrored input, swaps left/right joints,
    /// shifts them when this variant needs it and averages with the normal output.
    pub fn merge_flip(
        &self,
        output: ArrayView3<f32>,
        flipped_output: ArrayView3<f32>,
        flip_pairs: &[[usize; 2]],
    ) -> Result<Array3<f32>> {
        self.validate()?;
        self.check_heatmaps("heatmap flip test", output)?;
        merge_flip(
            output,
            flipped_output,
            flip_pairs,
            self.shifts_flipped_heatmaps(),
        )
    }

    /// Scales keypoints from heatmap pixels to input (crop) pixels with [`Self::stride`]; the
    /// crop-to-image affine step is geometry's.
    pub fn to_input_pixels(&self, keypoints: &[Keypoint]) -> Vec<Keypoint> {
        let [sx, sy] = self.stride();
        keypoints
            .iter()
            .map(|k| Keypoint {
                x: (k.x as f64 * sx) as f32,
                y: (k.y as f64 * sy) as f32,
                score: k.score,
            })
            .collect()
    }

    fn check_heatmaps(&self, what: &str, heatmaps: ArrayView3<f32>) -> Result<()> {
        let [width, height] = self.heatmap_size;
        let (_, h, w) = heatmaps.dim();
        if (w, h) != (width, height) {
            return Err(Error::Shape(format!(
                "{what}: heatmaps are {w}x{h} (WxH) but the codec's heatmap_size is {width}x{height}"
            )));
        }
        Ok(())
    }
}

impl Codec for HeatmapCodec {
    /// `[K, 3]`: x, y in input (crop) pixels and a visibility.
    type Annotation<'a> = ArrayView2<'a, f32>;
    type Targets = HeatmapTarget;
    /// `[K, H, W]` heatmaps of one instance.
    type Outputs<'a> = ArrayView3<'a, f32>;
    /// K keypoints in heatmap pixels.
    type Decoded = Vec<Keypoint>;

    fn encode(&self, joints: Self::Annotation<'_>) -> Result<HeatmapTarget> {
        HeatmapCodec::encode(self, joints)
    }

    fn decode(&self, heatmaps: Self::Outputs<'_>) -> Result<Vec<Keypoint>> {
        HeatmapCodec::decode(self, heatmaps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn joints(rows: &[[f32; 3]]) -> Array2<f32> {
        Array2::from_shape_vec((rows.len(), 3), rows.iter().flatten().copied().collect()).unwrap()
    }

    #[test]
    fn standard_target_peaks_at_the_rounded_joint() {
        let codec = HeatmapCodec::new([192, 256], [48, 64]);
        let target = codec.encode(joints(&[[101.0, 57.0, 2.0]]).view()).unwrap();
        // 101 / 4 + 0.5 = 25.75 -> 25; 57 / 4 + 0.5 = 14.75 -> 14.
        assert_eq!(target.heatmaps[[0, 14, 25]], 1.0);
        assert_eq!(target.weights[0], 1.0);
        let expected = (-1.0f32 / 8.0).exp();
        assert!((target.heatmaps[[0, 14, 26]] - expected).abs() < 1e-7);
        // The cut square is 13 pixels wide: nothing beyond 6 pixels from the centre.
        assert_eq!(target.heatmaps[[0, 14, 32]], 0.0);
        assert!(target.heatmaps[[0, 14, 31]] > 0.0);
        let nonzero = target.heatmaps.iter().filter(|v| **v > 0.0).count();
        assert_eq!(nonzero, 13 * 13);
    }

    #[test]
    fn round_trip_recovers_joints_within_the_quantisation() {
        let joint_list = [
            [37.3f32, 201.9, 1.0],
            [150.2, 20.6, 2.0],
            [96.0, 128.0, 1.0],
        ];
        for variant in [
            HeatmapVariant::Standard,
            HeatmapVariant::Unbiased,
            HeatmapVariant::Udp,
        ] {
            for refinement in [Refinement::None, Refinement::Shift, Refinement::Dark] {
                let codec = HeatmapCodec {
                    variant,
                    refinement,
                    ..HeatmapCodec::new([192, 256], [48, 64])
                };
                let target = codec.encode(joints(&joint_list).view()).unwrap();
                let decoded = codec.decode(target.heatmaps.view()).unwrap();
                let in_input = codec.to_input_pixels(&decoded);
                // Quantisation of the standard target is half a heatmap pixel (2 input pixels);
                // the shift can add a quarter. Sub-pixel encodings decoded by DARK are exact.
                let tolerance = match (variant, refinement) {
                    (HeatmapVariant::Standard, _) => 0.75 * 4.0,
                    (_, Refinement::Dark) => 0.05,
                    _ => 0.75 * 4.0,
                };
                for (j, k) in joint_list.iter().zip(&in_input) {
                    assert!(
                        (j[0] - k.x).abs() <= tolerance && (j[1] - k.y).abs() <= tolerance,
                        "{variant:?}/{refinement:?}: {j:?} decoded as {k:?}"
                    );
                    assert!(k.score > 0.5);
                }
            }
        }
    }

    #[test]
    fn udp_targets_flip_back_without_a_shift() {
        // Why UDP turns SHIFT_HEATMAP off: mirroring the crop (x -> w - 1 - x) mirrors UDP
        // heatmap pixels exactly (i -> W - 1 - i), so flip_back of the mirrored target is the
        // target itself.
        let codec = HeatmapCodec::udp([192, 256], [48, 64]);
        let original = joints(&[[40.3, 100.2, 1.0], [150.9, 30.7, 1.0], [90.0, 200.0, 1.0]]);
        let mut mirrored = original.clone();
        for mut row in mirrored.rows_mut() {
            row[0] = 191.0 - row[0];
        }
        // Joints 0 and 1 are a left/right pair: swap them as the dataset's flip does.
        let mirrored = joints(&[
            [mirrored[[1, 0]], mirrored[[1, 1]], 1.0],
            [mirrored[[0, 0]], mirrored[[0, 1]], 1.0],
            [mirrored[[2, 0]], mirrored[[2, 1]], 1.0],
        ]);
        let target = codec.encode(original.view()).unwrap();
        let flipped_target = codec.encode(mirrored.view()).unwrap();
        let back = flip_back(flipped_target.heatmaps.view(), &[[0, 1]]).unwrap();
        let max_err = (&back - &target.heatmaps)
            .mapv(f32::abs)
            .fold(0.0f32, |a, &b| a.max(b));
        assert!(max_err < 1e-5, "max difference {max_err}");
    }

    #[test]
    fn unlabeled_and_out_of_range_joints_get_weight_zero() {
        let codec = HeatmapCodec::new([192, 256], [48, 64]);
        let target = codec
            .encode(
                joints(&[
                    [50.0, 50.0, 0.0],    // unlabeled
                    [-40.0, 50.0, 2.0],   // mu_x = int(-9.5) = -9, br = -2 < 0
                    [250.0, 50.0, 1.0],   // mu_x = 63, ul = 57 >= 48
                    [-22.0, 50.0, 1.0],   // mu_x = -5, br = 2: partly inside (row 13)
                    [f32::NAN, 0.0, 0.0], // unlabeled joints may hold anything
                ])
                .view(),
            )
            .unwrap();
        assert_eq!(target.weights.to_vec(), vec![0.0, 0.0, 0.0, 1.0, 0.0]);
        for k in [0, 1, 2, 4] {
            assert!(target
                .heatmaps
                .index_axis(ndarray::Axis(0), k)
                .iter()
                .all(|v| *v == 0.0));
        }
        // Partly inside: columns 0 and 1 hold the right tail of the Gaussian centred at -5.
        let expected = (-25.0f32 / 8.0).exp();
        assert!((target.heatmaps[[3, 13, 0]] - expected).abs() < 1e-7);
        assert_eq!(target.heatmaps[[3, 13, 2]], 0.0);
    }

    #[test]
    fn joint_on_the_border_is_cut_not_dropped() {
        let codec = HeatmapCodec::new([192, 256], [48, 64]);
        let target = codec
            .encode(joints(&[[0.0, 0.0, 1.0], [191.0, 255.0, 1.0]]).view())
            .unwrap();
        assert_eq!(target.weights.to_vec(), vec![1.0, 1.0]);
        assert_eq!(target.heatmaps[[0, 0, 0]], 1.0);
        // 191 / 4 + 0.5 = 48.25 -> 48, one past the last column: the peak falls outside and
        // only the Gaussian's left flank is on the map, exactly as HRNet draws it.
        // 255 / 4 + 0.5 = 64.25 -> 64, one past the last row as well.
        assert!((target.heatmaps[[1, 63, 47]] - (-2.0f32 / 8.0).exp()).abs() < 1e-7);
    }

    #[test]
    fn joint_weights_multiply_target_weights() {
        let codec = HeatmapCodec {
            joint_weights: Some(vec![1.5, 2.0]),
            ..HeatmapCodec::new([192, 256], [48, 64])
        };
        let target = codec
            .encode(joints(&[[10.0, 10.0, 1.0], [10.0, 10.0, 0.0]]).view())
            .unwrap();
        assert_eq!(target.weights.to_vec(), vec![1.5, 0.0]);
        let wrong = codec.encode(joints(&[[10.0, 10.0, 1.0]]).view());
        assert!(matches!(wrong, Err(Error::Shape(_))));
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let codec = HeatmapCodec::new([192, 256], [48, 64]);
        assert!(matches!(
            codec.encode(Array2::zeros((17, 2)).view()),
            Err(Error::Shape(_))
        ));
        let nan = codec.encode(joints(&[[f32::NAN, 3.0, 1.0]]).view());
        assert!(matches!(nan, Err(Error::Shape(m)) if m.contains("joint 0")));
        let nan_vis = codec.encode(joints(&[[1.0, 3.0, f32::NAN]]).view());
        assert!(matches!(nan_vis, Err(Error::Shape(_))));
        let wrong_size = codec.decode(Array3::zeros((17, 48, 64)).view());
        assert!(matches!(wrong_size, Err(Error::Shape(m)) if m.contains("64x48")));
        let bad_sigma = HeatmapCodec {
            sigma: 0.0,
            ..codec.clone()
        };
        assert!(bad_sigma.validate().is_err());
        let bad_kernel = HeatmapCodec {
            blur_kernel: 10,
            ..codec.clone()
        };
        assert!(bad_kernel.validate().is_err());
        let tiny_udp = HeatmapCodec::udp([192, 256], [1, 64]);
        assert!(tiny_udp.validate().is_err());
        assert!(codec
            .merge_flip(
                Array3::zeros((2, 64, 48)).view(),
                Array3::zeros((2, 64, 48)).view(),
                &[[0, 2]]
            )
            .is_err());
    }

    #[test]
    fn all_zero_and_negative_maps_score_their_maximum_at_the_origin() {
        for refinement in [Refinement::None, Refinement::Shift, Refinement::Dark] {
            for variant in [HeatmapVariant::Standard, HeatmapVariant::Udp] {
                let codec = HeatmapCodec {
                    refinement,
                    variant,
                    ..HeatmapCodec::new([32, 32], [8, 8])
                };
                let mut maps = Array3::<f32>::zeros((2, 8, 8));
                maps.index_axis_mut(ndarray::Axis(0), 1).fill(-0.5);
                maps[[1, 5, 5]] = -0.1;
                let decoded = codec.decode(maps.view()).unwrap();
                assert_eq!(
                    decoded[0],
                    Keypoint {
                        x: 0.0,
                        y: 0.0,
                        score: 0.0
                    }
                );
                assert_eq!(
                    decoded[1],
                    Keypoint {
                        x: 0.0,
                        y: 0.0,
                        score: -0.1
                    }
                );
            }
        }
    }

    #[test]
    fn quarter_shift_follows_the_official_bounds() {
        let codec = HeatmapCodec::new([32, 32], [8, 8]);
        let mut map = Array3::<f32>::zeros((3, 8, 8));
        // Interior: shifts toward the higher right and lower neighbours.
        map[[0, 4, 4]] = 1.0;
        map[[0, 4, 5]] = 0.5;
        map[[0, 5, 4]] = 0.3;
        // px = 1 is not refined (HRNet tests 1 < px, not 0 < px).
        map[[1, 4, 1]] = 1.0;
        map[[1, 4, 2]] = 0.5;
        // px = W - 1 is not refined either.
        map[[2, 3, 7]] = 1.0;
        map[[2, 3, 6]] = 0.5;
        let decoded = codec.decode(map.view()).unwrap();
        assert_eq!((decoded[0].x, decoded[0].y), (4.25, 4.25));
        assert_eq!((decoded[1].x, decoded[1].y), (1.0, 4.0));
        assert_eq!((decoded[2].x, decoded[2].y), (7.0, 3.0));
    }

    #[test]
    fn config_reads_from_json_with_defaults() {
        let codec: HeatmapCodec =
            serde_json::from_str(r#"{"input_size": [192, 256], "heatmap_size": [48, 64], "variant": "udp", "refinement": "dark"}"#)
                .unwrap();
        assert_eq!(codec, HeatmapCodec::udp([192, 256], [48, 64]));
        let unknown = serde_json::from_str::<HeatmapCodec>(
            r#"{"input_size": [1, 1], "heatmap_size": [1, 1], "sigmaa": 2}"#,
        );
        assert!(unknown.is_err());
    }
}
