//! The bottom-up data pipeline of HigherHRNet (HRNet/HigherHRNet-Human-Pose-Estimation,
//! `lib/dataset/COCOKeypoints.py` and `lib/dataset/transforms/transforms.py`), step by step:
//!
//! * images: every image of the file with at least one annotation (crowd ones included), in
//!   file order (`remove_images_without_annotations`);
//! * people: the annotations that are not crowd, or crowd with labelled keypoints
//!   (`obj['iscrowd'] == 0 or obj['num_keypoints'] > 0`), in file order, joints as stored
//!   (visibility 0, 1 or 2; a joint counts when it is above 0). Unlabelled people keep a row,
//!   as in the reference, so they count towards `max_people`;
//! * ignore mask (`get_mask`): the union of crowd regions and of the segmentations of people
//!   with `num_keypoints == 0`; the mask is 1 (counted) elsewhere;
//! * `RandomAffineTransform` with its own matrix convention (`_get_affine_matrix`, rebuilt for
//!   the input and for each output resolution), the mask warped as `uint8 * 255` with OpenCV's
//!   black border (padding is ignored) and thresholded at 0.5;
//! * `RandomHorizontalFlip` after the affine: pixels mirrored, joints swapped by the layout's
//!   pairs and `x -> res - x - 1` at each output resolution;
//! * targets per resolution by the core's [`AeCodec`](posekit_core::codecs::associative_embedding::AeCodec) encoder (`HeatmapGenerator` and
//!   `JointsGenerator`).
//!
//! Everything before the targets ([`BottomUpDataset::load_with`], [`BottomUpDataset::warp`])
//! is shared with SPM's dataset ([`super::spm`]), which encodes its own targets instead.

use std::path::{Path, PathBuf};

use ndarray::{s, Array2, Array3};
use posekit_core::codecs::associative_embedding::{AeEncodeParams, AeTargets};
use posekit_core::formats::coco::CocoKeypointsGt;
use posekit_core::geometry::affine::Affine2;
use posekit_core::geometry::warp::warp_affine;
use posekit_core::layout::KeypointLayout;
use posekit_core::masks::Rle;
use posekit_core::Error;
use rand::Rng;

use super::bottomup_config::{BottomUpAugmentConfig, BottomUpDataConfig, ScaleType};
use super::dataset::LoadMode;
use super::error::DataError;
use super::jpeg_check::read_rgb_checked;
use super::loader::SampleSource;
use super::rng::{stream, uniform, Purpose};
use super::sample::normalize;

/// The parts of a CrowdPose file that training reads (it has no `area` or segmentation).
#[derive(Debug, serde::Deserialize)]
struct CrowdPoseFile {
    images: Vec<CrowdPoseImage>,
    annotations: Vec<CrowdPoseAnnotation>,
    categories: Vec<CrowdPoseCategory>,
}

#[derive(Debug, serde::Deserialize)]
struct CrowdPoseImage {
    id: i64,
    file_name: String,
    width: u32,
    height: u32,
}

#[derive(Debug, serde::Deserialize)]
struct CrowdPoseAnnotation {
    id: i64,
    image_id: i64,
    keypoints: Vec<f64>,
    num_keypoints: u32,
    iscrowd: u8,
}

#[derive(Debug, serde::Deserialize)]
struct CrowdPoseCategory {
    name: String,
    keypoints: Vec<String>,
}

/// One training image: its file, its people and what to ignore.
#[derive(Debug, Clone, PartialEq)]
pub struct BottomUpImage {
    pub image_path: PathBuf,
    pub image_id: i64,
    pub width: u32,
    pub height: u32,
    /// `[N, K, 3]` joints `(x, y, v)` of the kept people in annotation order.
    pub joints: Array3<f32>,
    /// The ignored region (crowds, unlabelled people); `None` when nothing is ignored.
    pub ignore: Option<Rle>,
}

/// The random parameters of one sample, as HigherHRNet draws them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BottomUpAugmentation {
    /// `aug_scale`, multiplied into the short (or long) side / 200.
    pub scale: f64,
    /// `aug_rot` in degrees.
    pub rotation: f64,
    /// Integer shift of the crop center `(dx, dy)` in picture pixels.
    pub translate: [i64; 2],
    pub flip: bool,
}

impl BottomUpAugmentation {
    pub const IDENTITY: Self = Self {
        scale: 1.0,
        rotation: 0.0,
        translate: [0, 0],
        flip: false,
    };

    /// Draws the parameters for a `width x height` picture in the reference's order: scale,
    /// rotation, dx, dy (the affine), then the flip.
    pub fn draw(
        rng: &mut impl Rng,
        cfg: &BottomUpAugmentConfig,
        width: usize,
        height: usize,
    ) -> Self {
        let scale = uniform(rng) * (cfg.max_scale - cfg.min_scale) + cfg.min_scale;
        let rotation = (uniform(rng) * 2.0 - 1.0) * cfg.max_rotation;
        let mut translate = [0, 0];
        if cfg.max_translate > 0.0 {
            let side = base_scale(cfg.scale_type, width, height) * scale;
            // `np.random.randint(-t * s, t * s)`: float bounds truncated, high exclusive.
            let hi = (cfg.max_translate * side).trunc() as i64;
            let lo = -hi;
            for t in &mut translate {
                *t = if hi > lo { rng.random_range(lo..hi) } else { 0 };
            }
        }
        let flip = cfg.flip_prob > 0.0 && uniform(rng) < cfg.flip_prob;
        Self {
            scale,
            rotation,
            translate,
            flip,
        }
    }
}

/// An error naming the file when a category's keypoint count is not the layout's.
fn check_categories<'a>(
    ann: &Path,
    layout: &KeypointLayout,
    categories: impl IntoIterator<Item = (&'a str, usize)>,
) -> Result<(), DataError> {
    let k = layout.num_keypoints();
    match categories.into_iter().find(|&(_, n)| n != k) {
        Some((name, n)) => Err(Error::invalid(
            ann,
            "categories",
            format!(
                "category `{name}` has {n} keypoints but layout `{}` has {k}",
                layout.name
            ),
        )
        .into()),
        None => Ok(()),
    }
}

/// Positions of the annotations of each image id, in annotation order (the order HigherHRNet
/// keeps people in).
fn indices_by_image(
    image_ids: impl Iterator<Item = i64>,
) -> std::collections::HashMap<i64, Vec<usize>> {
    let mut per_image: std::collections::HashMap<i64, Vec<usize>> = Default::default();
    for (i, id) in image_ids.enumerate() {
        per_image.entry(id).or_default().push(i);
    }
    per_image
}

/// The crop size at scale 1 in units of 200 px.
fn base_scale(kind: ScaleType, width: usize, height: usize) -> f64 {
    let (w, h) = (width as f64, height as f64);
    match kind {
        ScaleType::Short => w.min(h) / 200.0,
        ScaleType::Long => w.max(h) / 200.0,
    }
}

/// HigherHRNet's `_get_affine_matrix(center, scale, (res, res), rot)[:2]`: scale the
/// `200 * scale` window around `center` to `res` pixels, then rotate by `-rot` about the
/// output's center.
pub fn higherhrnet_affine(center: [f64; 2], scale: f64, res: usize, rot: f64) -> Affine2 {
    let h = 200.0 * scale;
    let r = res as f64;
    let t = Affine2::new([
        [r / h, 0.0, r * (-center[0] / h + 0.5)],
        [0.0, r / h, r * (-center[1] / h + 0.5)],
    ]);
    if rot == 0.0 {
        return t;
    }
    let rad = -rot * std::f64::consts::PI / 180.0;
    let (sn, cs) = rad.sin_cos();
    let rot_mat = Affine2::new([[cs, -sn, 0.0], [sn, cs, 0.0]]);
    // t_inv @ rot_mat @ t_mat @ t
    Affine2::translation(r / 2.0, r / 2.0)
        .compose(&rot_mat)
        .compose(&Affine2::translation(-r / 2.0, -r / 2.0))
        .compose(&t)
}

/// One training sample: the network input and the targets of every output resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct BottomUpSample {
    /// `[3, S, S]` normalised RGB.
    pub input: Vec<f32>,
    /// Per output resolution, 1/4 first.
    pub targets: Vec<ResolutionTargets>,
    /// `[N, K, 3]` joints in input pixels after the affine and flip (for drawing; no loss
    /// reads them).
    pub people: Array3<f32>,
    /// People beyond `max_people` left out of the joint targets (still in the heatmaps).
    pub dropped_people: usize,
    pub image_id: i64,
    pub augmentation: BottomUpAugmentation,
}

/// The targets at one output resolution, what the loss reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolutionTargets {
    pub size: usize,
    /// `[K, R, R]` Gaussians.
    pub heatmaps: Array3<f32>,
    /// `[R, R]` 1 where the loss counts, 0 in crowds, unlabelled people and padding.
    pub mask: Array2<f32>,
    /// `[max_people, K, 2]` `(k * R * R + y * R + x, visible)`.
    pub joints: Array3<i64>,
    /// `[N, K, 3]` joints at this resolution after the affine and flip (for drawing).
    pub people: Array3<f32>,
}

/// A dataset of whole images for bottom-up training.
#[derive(Debug, Clone)]
pub struct BottomUpDataset {
    images: Vec<BottomUpImage>,
    cfg: BottomUpDataConfig,
    layout: KeypointLayout,
    flip_index: Vec<usize>,
    /// Images of the file without any annotation (left out, as the reference does).
    pub unannotated_images: usize,
}

impl BottomUpDataset {
    /// COCO person_keypoints `ann` with its images under `images_dir`.
    pub fn coco(
        ann: &Path,
        images_dir: &Path,
        cfg: &BottomUpDataConfig,
    ) -> Result<Self, DataError> {
        cfg.validate()?;
        let layout = cfg.keypoint_layout()?;
        let gt = CocoKeypointsGt::load(ann)?;
        let k = layout.num_keypoints();
        check_categories(
            ann,
            &layout,
            gt.categories
                .iter()
                .map(|c| (c.name.as_str(), c.keypoints.len())),
        )?;
        let per_image = indices_by_image(gt.annotations.iter().map(|a| a.image_id));
        let mut images = Vec::new();
        let mut unannotated = 0;
        for im in &gt.images {
            let Some(indices) = per_image.get(&im.id) else {
                unannotated += 1;
                continue;
            };
            let mut ignore = Vec::new();
            let mut people = Vec::new();
            for &i in indices {
                let a = &gt.annotations[i];
                if a.iscrowd || a.num_keypoints == 0 {
                    if let Some(rle) = a
                        .segmentation_rle(im.height, im.width)
                        .map_err(|e| DataError::Core(e.in_file(ann)))?
                    {
                        ignore.push(rle);
                    }
                }
                if !a.iscrowd || a.num_keypoints > 0 {
                    if a.keypoints.len() != 3 * k {
                        return Err(Error::invalid(
                            ann,
                            format!("annotations[{i}].keypoints"),
                            format!(
                                "annotation {} has {} values, layout `{}` needs {}",
                                a.id,
                                a.keypoints.len(),
                                layout.name,
                                3 * k
                            ),
                        )
                        .into());
                    }
                    people.push(&a.keypoints);
                }
            }
            let joints = Array3::from_shape_fn((people.len(), k, 3), |(p, j, c)| {
                people[p][3 * j + c] as f32
            });
            let ignore = match ignore.len() {
                0 => None,
                1 => ignore.pop(),
                _ => Some(Rle::union(&ignore).map_err(|e| {
                    DataError::Core(Error::invalid(
                        ann,
                        format!("image {} segmentations", im.id),
                        e.to_string(),
                    ))
                })?),
            };
            images.push(BottomUpImage {
                image_path: images_dir.join(&im.file_name),
                image_id: im.id,
                width: im.width,
                height: im.height,
                joints,
                ignore,
            });
        }
        Ok(Self {
            images,
            flip_index: layout.flip_index(),
            layout,
            cfg: cfg.clone(),
            unannotated_images: unannotated,
        })
    }

    /// A CrowdPose annotation file (`crowdpose_{train,val,trainval,test}.json`) with its
    /// images, as HigherHRNet's `CrowdPoseKeypoints` reads it: the same image and person
    /// selection as COCO, and an all-valid mask (the files have no segmentation, and the
    /// reference's `get_mask` returns an empty ignore region). The layout must have as many
    /// joints as the file (`layout = "crowdpose14"`).
    pub fn crowdpose(
        ann: &Path,
        images_dir: &Path,
        cfg: &BottomUpDataConfig,
    ) -> Result<Self, DataError> {
        cfg.validate()?;
        let layout = cfg.keypoint_layout()?;
        let k = layout.num_keypoints();
        let text = std::fs::read_to_string(ann)
            .map_err(|e| Error::invalid(ann, "file", format!("cannot read: {e}")))?;
        let file: CrowdPoseFile =
            serde_json::from_str(&text).map_err(|e| Error::invalid(ann, "json", e.to_string()))?;
        check_categories(
            ann,
            &layout,
            file.categories
                .iter()
                .map(|c| (c.name.as_str(), c.keypoints.len())),
        )?;
        let per_image = indices_by_image(file.annotations.iter().map(|a| a.image_id));
        let mut images = Vec::new();
        let mut unannotated = 0;
        for im in &file.images {
            let Some(indices) = per_image.get(&im.id) else {
                unannotated += 1;
                continue;
            };
            let mut people = Vec::new();
            for &i in indices {
                let a = &file.annotations[i];
                if a.iscrowd == 0 || a.num_keypoints > 0 {
                    if a.keypoints.len() != 3 * k {
                        return Err(Error::invalid(
                            ann,
                            format!("annotations[{i}].keypoints"),
                            format!(
                                "annotation {} has {} values, layout `{}` needs {}",
                                a.id,
                                a.keypoints.len(),
                                layout.name,
                                3 * k
                            ),
                        )
                        .into());
                    }
                    people.push(&a.keypoints);
                }
            }
            let joints = Array3::from_shape_fn((people.len(), k, 3), |(p, j, c)| {
                people[p][3 * j + c] as f32
            });
            images.push(BottomUpImage {
                image_path: images_dir.join(&im.file_name),
                image_id: im.id,
                width: im.width,
                height: im.height,
                joints,
                ignore: None,
            });
        }
        Ok(Self {
            images,
            flip_index: layout.flip_index(),
            layout,
            cfg: cfg.clone(),
            unannotated_images: unannotated,
        })
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn images(&self) -> &[BottomUpImage] {
        &self.images
    }

    pub fn config(&self) -> &BottomUpDataConfig {
        &self.cfg
    }

    pub fn layout(&self) -> &KeypointLayout {
        &self.layout
    }

    /// Reads image `i` and makes its sample, augmented from the `(seed, epoch, i)` stream in
    /// [`LoadMode::Train`], at identity in [`LoadMode::Eval`].
    pub fn load(&self, i: usize, mode: LoadMode) -> Result<BottomUpSample, DataError> {
        self.load_with(i, mode, |im, image, aug| self.make_sample(im, image, aug))
    }

    /// Reads image `i`, draws its augmentation as [`Self::load`] does and hands both to
    /// `make`: what every bottom-up family shares before its own targets (SPM's dataset makes
    /// its samples through this, so the draws and the skipped-image errors are the same).
    pub fn load_with<S>(
        &self,
        i: usize,
        mode: LoadMode,
        make: impl FnOnce(&BottomUpImage, &Array3<u8>, &BottomUpAugmentation) -> Result<S, DataError>,
    ) -> Result<S, DataError> {
        let im = self.images.get(i).ok_or_else(|| {
            DataError::Core(Error::Shape(format!(
                "sample index {i} is out of range for {} images",
                self.images.len()
            )))
        })?;
        let image = read_rgb_checked(&im.image_path)?;
        let (h, w, _) = image.dim();
        let aug = match mode {
            LoadMode::Eval => BottomUpAugmentation::IDENTITY,
            LoadMode::Train { seed, epoch } => {
                let mut rng = stream(seed, Purpose::Augment, epoch, i as u64);
                BottomUpAugmentation::draw(&mut rng, &self.cfg.augmentation, w, h)
            }
        };
        make(im, &image, &aug).map_err(|source| DataError::Sample {
            index: i,
            image: im.image_path.clone(),
            source: Box::new(source),
        })
    }

    /// The ignore mask of `im` at picture resolution: 255 where counted, 0 where ignored.
    pub fn valid_mask(&self, im: &BottomUpImage) -> Array2<u8> {
        let (h, w) = (im.height as usize, im.width as usize);
        match &im.ignore {
            None => Array2::from_elem((h, w), 255u8),
            Some(rle) => rle.decode().mapv(|v| if v > 0 { 0 } else { 255 }),
        }
    }

    /// The sample of `im` (its decoded `[H, W, 3]` picture) with given augmentation parameters.
    pub fn make_sample(
        &self,
        im: &BottomUpImage,
        image: &Array3<u8>,
        aug: &BottomUpAugmentation,
    ) -> Result<BottomUpSample, DataError> {
        let cfg = &self.cfg;
        let warped = self.warp(im, image, aug, &cfg.output_sizes())?;
        let mut targets = Vec::new();
        let mut dropped_people = 0;
        for WarpedResolution { size, mask, people } in warped.resolutions {
            let params = AeEncodeParams {
                heatmap_size: [size, size],
                sigma: cfg.sigma,
                max_people: cfg.max_people,
                tag_per_joint: true,
            };
            let AeTargets {
                heatmaps,
                joints,
                dropped_people: dropped,
            } = posekit_core::codecs::associative_embedding::AeCodec::new(
                params,
                posekit_core::codecs::associative_embedding::AeDecodeParams::for_layout(
                    &self.layout,
                ),
            )
            .encode(people.view())?;
            dropped_people = dropped_people.max(dropped);
            targets.push(ResolutionTargets {
                size,
                heatmaps,
                mask,
                joints,
                people,
            });
        }
        Ok(BottomUpSample {
            input: warped.input,
            targets,
            people: warped.people,
            dropped_people,
            image_id: im.image_id,
            augmentation: *aug,
        })
    }

    /// What every bottom-up family's sample starts from: the network input and, at each of
    /// `output_sizes`, the ignore mask and the people after HigherHRNet's random affine and
    /// flip (the steps of the module doc before the targets).
    pub fn warp(
        &self,
        im: &BottomUpImage,
        image: &Array3<u8>,
        aug: &BottomUpAugmentation,
        output_sizes: &[usize],
    ) -> Result<WarpedSample, DataError> {
        let (h, w, c) = image.dim();
        if c != 3 || (w as u32, h as u32) != (im.width, im.height) {
            return Err(Error::Shape(format!(
                "the picture is {w}x{h}x{c} but the annotation file says {}x{} RGB",
                im.width, im.height
            ))
            .into());
        }
        let cfg = &self.cfg;
        let scale = base_scale(cfg.augmentation.scale_type, w, h) * aug.scale;
        let center = [
            w as f64 / 2.0 + aug.translate[0] as f64,
            h as f64 / 2.0 + aug.translate[1] as f64,
        ];
        let mask = self.valid_mask(im);
        let mask = mask.insert_axis(ndarray::Axis(2));
        let mut resolutions = Vec::new();
        for &res in output_sizes {
            let mat = higherhrnet_affine(center, scale, res, aug.rotation);
            let warped = warp_affine(mask.view(), &mat, res, res)?;
            // `/ 255 > 0.5`
            let mut m = warped.index_axis(ndarray::Axis(2), 0).mapv(|v| {
                if v as f32 / 255.0 > 0.5 {
                    1.0f32
                } else {
                    0.0
                }
            });
            let people = self.people_at(im, &mat, res, aug.flip);
            if aug.flip {
                m = m.slice(s![.., ..;-1]).to_owned();
            }
            resolutions.push(WarpedResolution {
                size: res,
                mask: m,
                people,
            });
        }
        let s_in = cfg.input_size;
        let mat = higherhrnet_affine(center, scale, s_in, aug.rotation);
        let mut crop = warp_affine(image.view(), &mat, s_in, s_in)?;
        if aug.flip {
            crop = crop.slice(s![.., ..;-1, ..]).to_owned();
        }
        Ok(WarpedSample {
            input: normalize(&crop, cfg.mean, cfg.std),
            people: self.people_at(im, &mat, s_in, aug.flip),
            resolutions,
        })
    }
}

/// A picture after the random affine and flip, before any family's targets.
#[derive(Debug, Clone, PartialEq)]
pub struct WarpedSample {
    /// `[3, S, S]` normalised RGB.
    pub input: Vec<f32>,
    /// `[N, K, 3]` joints in input pixels.
    pub people: Array3<f32>,
    pub resolutions: Vec<WarpedResolution>,
}

/// The ignore mask and the people at one output resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct WarpedResolution {
    pub size: usize,
    /// `[R, R]` 1 where the loss counts, 0 in crowds, unlabelled people and padding.
    pub mask: Array2<f32>,
    /// `[N, K, 3]` joints at this resolution.
    pub people: Array3<f32>,
}

impl BottomUpDataset {
    /// The joints of `im` through `mat` into a `res`-sized square, mirrored (pairs swapped,
    /// `x -> res - x - 1`) when `flip`: `RandomHorizontalFlip` after the affine.
    fn people_at(&self, im: &BottomUpImage, mat: &Affine2, res: usize, flip: bool) -> Array3<f32> {
        let mut people = im.joints.clone();
        for mut person in people.outer_iter_mut() {
            for mut joint in person.outer_iter_mut() {
                let [x, y] = mat.apply([joint[0] as f64, joint[1] as f64]);
                joint[0] = x as f32;
                joint[1] = y as f32;
            }
        }
        if flip {
            people = people.select(ndarray::Axis(1), &self.flip_index);
            people
                .slice_mut(s![.., .., 0])
                .mapv_inplace(|x| res as f32 - x - 1.0);
        }
        people
    }
}

/// A batch of bottom-up samples, row-major, ready to become tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct BottomUpBatch {
    pub index: usize,
    pub batch_size: usize,
    /// `[N, 3, S, S]`.
    pub inputs: Vec<f32>,
    pub input_size: usize,
    /// Per resolution: side, `[N, K, R, R]` heatmaps, `[N, R, R]` masks, `[N, P, K, 2]` joints.
    pub resolutions: Vec<BatchResolution>,
    pub num_joints: usize,
    pub max_people: usize,
    /// Images whose people beyond `max_people` were left out of the joint targets.
    pub overflowing_images: usize,
    pub image_ids: Vec<i64>,
    pub skipped: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchResolution {
    pub size: usize,
    pub heatmaps: Vec<f32>,
    pub masks: Vec<f32>,
    pub joints: Vec<i64>,
}

impl SampleSource for BottomUpDataset {
    type Sample = BottomUpSample;
    type Batch = BottomUpBatch;

    fn len(&self) -> usize {
        self.images.len()
    }

    fn load(&self, index: usize, mode: LoadMode) -> Result<BottomUpSample, DataError> {
        BottomUpDataset::load(self, index, mode)
    }

    fn collate(&self, index: usize, samples: Vec<BottomUpSample>, skipped: usize) -> BottomUpBatch {
        let sizes = self.cfg.output_sizes();
        let mut batch = BottomUpBatch {
            index,
            batch_size: samples.len(),
            inputs: Vec::new(),
            input_size: self.cfg.input_size,
            resolutions: sizes
                .iter()
                .map(|&size| BatchResolution {
                    size,
                    ..Default::default()
                })
                .collect(),
            num_joints: self.layout.num_keypoints(),
            max_people: self.cfg.max_people,
            overflowing_images: 0,
            image_ids: Vec::with_capacity(samples.len()),
            skipped,
        };
        for sample in samples {
            batch.inputs.extend_from_slice(&sample.input);
            for (r, t) in batch.resolutions.iter_mut().zip(&sample.targets) {
                r.heatmaps.extend(t.heatmaps.iter());
                r.masks.extend(t.mask.iter());
                r.joints.extend(t.joints.iter());
            }
            if sample.dropped_people > 0 {
                batch.overflowing_images += 1;
            }
            batch.image_ids.push(sample.image_id);
        }
        batch
    }

    fn batch_len(batch: &BottomUpBatch) -> usize {
        batch.batch_size
    }

    fn batch_skipped(batch: &BottomUpBatch) -> usize {
        batch.skipped
    }
}
