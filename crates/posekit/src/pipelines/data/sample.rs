//! From an image and a person box to what the network eats: the affine crop (the core's
//! OpenCV-exact warp), RGB normalisation to a `[3, H, W]` float array, and — for annotated
//! people — the Gaussian targets of the core's heatmap codec.
//!
//! [`TopDownTransform`] holds everything derived once from a [`DataConfig`] (layout, codec,
//! crop convention), so the per-sample work is only decoding, warping and encoding.

use std::path::PathBuf;

use ndarray::{s, Array2, Array3, ArrayView3};
use posekit_core::codecs::heatmap::HeatmapCodec;
use posekit_core::geometry::affine::{crop_transform, Affine2, AffineMode};
use posekit_core::geometry::center_scale::CenterScale;
use posekit_core::geometry::warp::warp_affine;
use posekit_core::layout::KeypointLayout;
use posekit_core::Error;

use super::augment::{self, Augmentation};
use super::config::DataConfig;
use super::dataset::LoadMode;
use super::error::DataError;
use super::instance::{crop_area, TopDownInstance};
use super::rng::{stream, Purpose};

/// One network input with its targets.
#[derive(Debug, Clone, PartialEq)]
pub struct TopDownSample {
    /// `[3, H, W]` normalised RGB crop (`(v / 255 - mean) / std`), row-major.
    pub input: Vec<f32>,
    /// `[K, h, w]` Gaussian targets; all zero for a detection box (nothing to learn from).
    pub target: Vec<f32>,
    /// `[K]` loss weights: 0 for unlabeled joints and joints whose Gaussian misses the map.
    pub target_weight: Vec<f32>,
    /// `[K, 3]` joints in crop (input) pixels after augmentation, `(x, y, vis)`; `None` for
    /// detections. Kept for drawing and debugging, as the official `meta['joints']`.
    pub joints: Option<Array2<f32>>,
    pub meta: SampleMeta,
}

/// What is needed to map a prediction on the crop back to the image and to write its result.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleMeta {
    /// Position of the instance in its dataset (0 for a crop made by [`prepare_crop`]).
    pub index: usize,
    /// COCO image id (MPII: annotation position); 0 for [`prepare_crop`], the caller knows it.
    pub image_id: i64,
    pub image_path: PathBuf,
    /// Center of the crop in the image that was cropped (mirrored when `flipped`).
    pub center: [f64; 2],
    /// Scale of the crop (units of 200 px), after any augmentation.
    pub scale: [f64; 2],
    /// Rotation of the crop in degrees (0 at test time).
    pub rotation: f64,
    /// Box score (1 for ground-truth boxes).
    pub box_score: f32,
    /// Crop area in pixels², HRNet's `area` for OKS-NMS.
    pub area: f64,
    /// Whether the training augmentation mirrored the image.
    pub flipped: bool,
}

impl SampleMeta {
    /// The crop as the core's center/scale, for `heatmap_to_image` when decoding.
    pub fn center_scale(&self) -> CenterScale {
        CenterScale {
            center: self.center,
            scale: self.scale,
        }
    }
}

/// The per-config part of sample making: layout, codec and crop convention, derived and
/// validated once.
#[derive(Debug, Clone)]
pub struct TopDownTransform {
    cfg: DataConfig,
    layout: KeypointLayout,
    codec: HeatmapCodec,
    mode: AffineMode,
    flip_index: Vec<usize>,
}

impl TopDownTransform {
    pub fn new(cfg: &DataConfig) -> Result<Self, DataError> {
        cfg.validate()?;
        let layout = cfg.keypoint_layout()?;
        Ok(Self {
            codec: cfg.codec(),
            mode: cfg.affine_mode(),
            flip_index: layout.flip_index(),
            layout,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &DataConfig {
        &self.cfg
    }

    pub fn layout(&self) -> &KeypointLayout {
        &self.layout
    }

    pub fn codec(&self) -> &HeatmapCodec {
        &self.codec
    }

    /// The crop convention (standard, or UDP with the UDP codec).
    pub fn affine_mode(&self) -> AffineMode {
        self.mode
    }

    /// The image -> crop transform of a center/scale/rotation.
    pub fn crop_transform(&self, cs: &CenterScale, rotation: f64) -> Result<Affine2, DataError> {
        let [w, h] = self.cfg.input_size;
        Ok(crop_transform(
            cs,
            rotation,
            [w as f64, h as f64],
            self.mode,
        )?)
    }

    /// Crops `image` (`[H, W, 3]` RGB) with `trans` and normalises it to `[3, h, w]`.
    pub fn crop(&self, image: ArrayView3<u8>, trans: &Affine2) -> Result<Vec<f32>, DataError> {
        check_rgb(image)?;
        let [w, h] = self.cfg.input_size;
        let crop = warp_affine(image, trans, w, h)?;
        Ok(normalize(&crop, self.cfg.mean, self.cfg.std))
    }

    /// One test-time crop of `image` around the box `[x, y, w, h]` (pixels), padded and
    /// aspect-corrected like the training boxes, for `posekit infer`. A box with zero width or
    /// height is an error rather than a crop of nothing.
    pub fn prepare_crop(
        &self,
        image: &Array3<u8>,
        bbox: [f64; 4],
    ) -> Result<(Vec<f32>, SampleMeta), DataError> {
        let has_area = bbox.iter().all(|v| v.is_finite()) && bbox[2] > 0.0 && bbox[3] > 0.0;
        if !has_area {
            return Err(Error::Shape(format!(
                "person box [x, y, w, h] = {bbox:?} has zero area; a crop needs a finite box with \
                 positive width and height"
            ))
            .into());
        }
        let cs =
            CenterScale::from_xywh_padded(bbox, self.cfg.aspect_ratio(), self.cfg.box_padding)?;
        let trans = self.crop_transform(&cs, 0.0)?;
        let input = self.crop(image.view(), &trans)?;
        let meta = SampleMeta {
            index: 0,
            image_id: 0,
            image_path: PathBuf::new(),
            center: cs.center,
            scale: cs.scale,
            rotation: 0.0,
            box_score: 1.0,
            area: crop_area(cs.scale),
            flipped: false,
        };
        Ok((input, meta))
    }

    /// Builds the sample of `instance` from its decoded image: with the training augmentation
    /// drawn from the `(seed, epoch, index)` stream in [`LoadMode::Train`], without any in
    /// [`LoadMode::Eval`].
    pub fn make_sample(
        &self,
        index: usize,
        instance: &TopDownInstance,
        image: &Array3<u8>,
        mode: LoadMode,
    ) -> Result<TopDownSample, DataError> {
        check_rgb(image.view())?;
        let box_cs = CenterScale {
            center: instance.center,
            scale: instance.scale,
        };
        match mode {
            LoadMode::Eval => self.render(index, instance, image, box_cs, 0.0, false),
            LoadMode::Train { seed, epoch } => {
                let Some(joints) = &instance.joints else {
                    return Err(Error::Shape(
                        "cannot train on a detection box: it has no joints".into(),
                    )
                    .into());
                };
                let mut rng = stream(seed, Purpose::Augment, epoch, index as u64);
                let aug = augment::draw(
                    &mut rng,
                    &self.cfg.augmentation,
                    &self.layout,
                    joints,
                    box_cs,
                    self.cfg.aspect_ratio(),
                    image.shape()[1],
                );
                self.make_sample_with(index, instance, image, &aug)
            }
        }
    }

    /// Builds a sample with given augmentation parameters (`aug.center` already mirrored when
    /// `aug.flip`), e.g. to reproduce a sample of the reference implementation exactly.
    pub fn make_sample_with(
        &self,
        index: usize,
        instance: &TopDownInstance,
        image: &Array3<u8>,
        aug: &Augmentation,
    ) -> Result<TopDownSample, DataError> {
        check_rgb(image.view())?;
        let cs = CenterScale {
            center: aug.center,
            scale: aug.scale,
        };
        self.render(index, instance, image, cs, aug.rotation, aug.flip)
    }

    /// The crop, its joints and targets for one set of crop parameters.
    fn render(
        &self,
        index: usize,
        instance: &TopDownInstance,
        image: &Array3<u8>,
        cs: CenterScale,
        rotation: f64,
        flipped: bool,
    ) -> Result<TopDownSample, DataError> {
        let joints = instance.joints.as_ref().map(|joints| {
            if flipped {
                augment::flip_joints(joints, image.shape()[1], &self.flip_index)
            } else {
                joints.clone()
            }
        });
        let trans = self.crop_transform(&cs, rotation)?;
        let input = if flipped {
            // Mirroring the pixels (rather than folding the mirror into the affine) keeps the
            // crop bit-identical to the reference, which flips the array before warping.
            self.crop(image.slice(s![.., ..;-1, ..]), &trans)?
        } else {
            self.crop(image.view(), &trans)?
        };

        let [hw, hh] = self.cfg.heatmap_size;
        let k = self.layout.num_keypoints();
        let (target, target_weight, joints) = match joints {
            Some(mut joints) => {
                if joints.dim() != (k, 3) {
                    return Err(Error::Shape(format!(
                        "instance joints are {:?}, layout `{}` needs [{k}, 3]",
                        joints.shape(),
                        self.layout.name
                    ))
                    .into());
                }
                for mut joint in joints.outer_iter_mut() {
                    if joint[2] > 0.0 {
                        let [x, y] = trans.apply([joint[0] as f64, joint[1] as f64]);
                        joint[0] = x as f32;
                        joint[1] = y as f32;
                    }
                }
                let encoded = self.codec.encode(joints.view())?;
                let (target, _) = encoded.heatmaps.into_raw_vec_and_offset();
                (target, encoded.weights.to_vec(), Some(joints))
            }
            None => (vec![0.0; k * hh * hw], vec![0.0; k], None),
        };

        Ok(TopDownSample {
            input,
            target,
            target_weight,
            joints,
            meta: SampleMeta {
                index,
                image_id: instance.image_id,
                image_path: instance.image_path.clone(),
                center: cs.center,
                scale: cs.scale,
                rotation,
                box_score: instance.box_score,
                area: crop_area(cs.scale),
                flipped,
            },
        })
    }
}

/// One test-time crop for `posekit infer`: see [`TopDownTransform::prepare_crop`]. Builds the
/// transform on each call; keep a [`TopDownTransform`] when cropping many boxes.
pub fn prepare_crop(
    image: &Array3<u8>,
    bbox: [f64; 4],
    cfg: &DataConfig,
) -> Result<(Vec<f32>, SampleMeta), DataError> {
    TopDownTransform::new(cfg)?.prepare_crop(image, bbox)
}

/// Mirrors row-major `[..., W]` data left to right: a `[3, H, W]` input or a whole `[N, 3, H,
/// W]` batch, for the flip test (equal to normalising the mirrored crop, since normalisation
/// is per pixel).
pub fn flip_input(chw: &[f32], width: usize) -> Result<Vec<f32>, DataError> {
    if width == 0 || !chw.len().is_multiple_of(width) {
        return Err(Error::Shape(format!(
            "flip_input: {} values are not rows of width {width}",
            chw.len()
        ))
        .into());
    }
    let mut out = Vec::with_capacity(chw.len());
    for row in chw.chunks_exact(width) {
        out.extend(row.iter().rev());
    }
    Ok(out)
}

/// `[h, w, 3]` u8 crop to `[3, h, w]` f32, `(v / 255 - mean) / std` per channel in f32, the
/// arithmetic of torchvision's `ToTensor` + `Normalize`. A u8 has only 256 values, so each
/// channel's results are tabulated once (same numbers, a table lookup per pixel).
pub(crate) fn normalize(crop: &Array3<u8>, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let table: [[f32; 256]; 3] =
        std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - mean[c]) / std[c]));
    let (h, w, _) = crop.dim();
    let plane = h * w;
    let mut out = vec![0.0f32; 3 * plane];
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    match crop.as_slice() {
        Some(pixels) => {
            for (i, px) in pixels.chunks_exact(3).enumerate() {
                r[i] = table[0][px[0] as usize];
                g[i] = table[1][px[1] as usize];
                b[i] = table[2][px[2] as usize];
            }
        }
        None => {
            for ((y, x, c), &v) in crop.indexed_iter() {
                let planes = [&mut *r, &mut *g, &mut *b];
                planes[c][y * w + x] = table[c][v as usize];
            }
        }
    }
    out
}

fn check_rgb(image: ArrayView3<u8>) -> Result<(), DataError> {
    let (h, w, c) = image.dim();
    if c != 3 || h == 0 || w == 0 {
        return Err(Error::Shape(format!(
            "expected an [H, W, 3] RGB image, got {:?}",
            image.shape()
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient_image(w: usize, h: usize) -> Array3<u8> {
        Array3::from_shape_fn((h, w, 3), |(y, x, c)| {
            ((x * 3 + y * 5 + c * 40) % 256) as u8
        })
    }

    #[test]
    fn normalisation_is_imagenet_per_channel_in_chw_order() {
        let crop = Array3::from_shape_fn((2, 3, 3), |(y, x, c)| (y * 100 + x * 10 + c) as u8);
        let out = normalize(&crop, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        assert_eq!(out.len(), 18);
        // Channel 1 (green), row 1, column 2: value 121.
        let v = out[6 + 3 + 2];
        assert!((v - (121.0 / 255.0 - 0.456) / 0.224).abs() < 1e-6);
    }

    #[test]
    fn flip_input_reverses_every_row() {
        let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let flipped = flip_input(&data, 3).unwrap();
        assert_eq!(flipped[..6], [2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
        assert_eq!(flip_input(&flipped, 3).unwrap(), data);
        assert!(flip_input(&data, 5).is_err());
        assert!(flip_input(&data, 0).is_err());
    }

    #[test]
    fn prepare_crop_matches_the_box_convention_and_rejects_empty_boxes() {
        let cfg = DataConfig::new([48, 64], [12, 16]);
        let image = gradient_image(120, 90);
        let (input, meta) = prepare_crop(&image, [10.0, 20.0, 30.0, 40.0], &cfg).unwrap();
        assert_eq!(input.len(), 3 * 48 * 64);
        assert_eq!(meta.center, [25.0, 40.0]);
        // 30x40 already has the 0.75 aspect; padded by 1.25.
        assert!((meta.scale[0] - 30.0 / 200.0 * 1.25).abs() < 1e-6);
        assert!((meta.area - 37.5 * 50.0).abs() < 1e-3);
        for bad in [
            [10.0, 20.0, 0.0, 40.0],
            [10.0, 20.0, 30.0, 0.0],
            [10.0, 20.0, -3.0, 40.0],
            [f64::NAN, 0.0, 5.0, 5.0],
        ] {
            let err = prepare_crop(&image, bad, &cfg).unwrap_err().to_string();
            assert!(err.contains("zero area"), "{err}");
        }
    }

    #[test]
    fn crop_of_a_uniform_image_is_uniform_inside_and_zero_padded_outside() {
        let cfg = DataConfig::new([48, 64], [12, 16]);
        let t = TopDownTransform::new(&cfg).unwrap();
        let image = Array3::from_elem((50, 50, 3), 200u8);
        // A box hanging over the right edge: the right part of the crop is the black border.
        let (input, _) = t.prepare_crop(&image, [30.0, 0.0, 40.0, 50.0]).unwrap();
        let inside = (200.0 / 255.0 - 0.485) / 0.229;
        let border = (0.0 - 0.485) / 0.229;
        let row = 32 * 48;
        assert!((input[row + 2] - inside).abs() < 1e-5);
        assert!((input[row + 47] - border).abs() < 1e-5);
    }
}
