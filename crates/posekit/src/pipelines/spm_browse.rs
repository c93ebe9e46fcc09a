//! `posekit browse` for SPM's training data ([`Browsable`] over [`SpmDataset`]): per sample
//!
//! * `NAME_input.png`: the network input with every person's labelled joints;
//! * `NAME_root.png`: the root-joint map over the input, the ignore mask tinted blue;
//! * `NAME_displacements.png`: what the displacement targets encode, read back with the same
//!   codec the test decodes with: a line from each anchor (the root, then the parent joint in
//!   the hierarchy) to the joint its displacement points at, over the disks where targets are
//!   defined (their weights, colour-mapped); the roots as white discs. A wrong displacement
//!   shows as a line that misses its joint in the input picture;
//! * with `--tensors`, exactly what the loss reads: `input`, `root`, `mask`, `displacements`,
//!   `weights`.

use ndarray::{Array3, Axis};
use posekit_core::codecs::peaks::local_maxima_above;
use posekit_core::draw::{draw_disc, draw_line};

use super::browse::{
    denormalize, draw_joints, heatmap_overlay, people_to_poses, Browsable, BrowseSplit,
    NamedTensor, TensorData,
};
use super::config::ExperimentConfig;
use super::data::spm::{SpmDataset, SpmSample, SPM_STRIDE};
use super::data::{DataError, LoadMode};
use crate::error::bail;

/// SPM's training data as `posekit browse` shows it.
pub struct SpmBrowse {
    data: SpmDataset,
}

impl SpmBrowse {
    pub fn new(cfg: &ExperimentConfig, split: BrowseSplit) -> crate::Result<Self> {
        let Some(bu) = &cfg.bottomup else {
            bail!("the config has no [bottomup] section");
        };
        let base = super::browse::BottomUpBrowse::dataset(cfg, split)?;
        Ok(Self {
            data: SpmDataset::new(base, bu.spm.clone().unwrap_or_default())?,
        })
    }
}

impl Browsable for SpmBrowse {
    type Sample = SpmSample;

    fn sample_count(&self) -> usize {
        self.data.len()
    }

    fn sample(&self, index: usize, seed: Option<u64>) -> Result<SpmSample, DataError> {
        match seed {
            Some(seed) => self.data.load(index, LoadMode::Train { seed, epoch: 0 }),
            None => self.data.load(index, LoadMode::Eval),
        }
    }

    fn name(&self, sample: &SpmSample) -> String {
        sample.image_id.to_string()
    }

    fn pictures(&self, s: &SpmSample) -> crate::Result<Vec<(String, Array3<u8>)>> {
        let cfg = self.data.config();
        let side = cfg.input_size;
        let layout = self.data.base().layout();
        let input = denormalize(&s.input, side, side, cfg.mean, cfg.std)?;
        let mut drawn = input.clone();
        draw_joints(&mut drawn, &people_to_poses(s.people_input.view()), layout);
        let root_map = s.targets.root_heatmap.view().insert_axis(Axis(0));
        let root = heatmap_overlay(&input, root_map, Some(s.mask.view()));

        let mut disp = heatmap_overlay(&input, s.targets.weights.view(), None);
        let codec = self.data.codec();
        let roots = local_maxima_above(
            s.targets.root_heatmap.view(),
            codec.nms_kernel,
            codec.root_threshold,
            codec.max_people,
        )?;
        let poses = codec.decode(
            s.targets.root_heatmap.view(),
            s.targets.displacements.view(),
        )?;
        // The affine that made the maps is the input's scaled by 1/4 (both around the same
        // window), so heatmap point `p` is input point `4p`.
        let st = SPM_STRIDE as f32;
        let to_input = |(x, y): (f32, f32)| (x * st, y * st);
        let mut view = disp.view_mut();
        for (root, pose) in roots.iter().zip(&poses) {
            let r = to_input((root.x as f32, root.y as f32));
            for (j, kp) in pose.keypoints.iter().enumerate() {
                let anchor = match codec.parents[j] {
                    None => r,
                    Some(p) => to_input((pose.keypoints[p].x, pose.keypoints[p].y)),
                };
                let colour = if codec.parents[j].is_none() {
                    [255, 255, 0]
                } else {
                    [0, 255, 0]
                };
                draw_line(&mut view, anchor, to_input((kp.x, kp.y)), 1.0, colour);
            }
        }
        for root in &roots {
            draw_disc(
                &mut view,
                to_input((root.x as f32, root.y as f32)),
                2.0,
                [255, 255, 255],
            );
        }
        Ok(vec![
            ("input".into(), drawn),
            ("root".into(), root),
            ("displacements".into(), disp),
        ])
    }

    fn tensors(&self, s: &SpmSample) -> Vec<NamedTensor> {
        let side = self.data.config().input_size;
        let f32s = |name: &str, shape: &[usize], v: Vec<f32>| NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: TensorData::F32(v),
        };
        let t = &s.targets;
        let r = s.size;
        vec![
            f32s("input", &[3, side, side], s.input.clone()),
            f32s("root", &[1, r, r], t.root_heatmap.iter().copied().collect()),
            f32s("mask", &[r, r], s.mask.iter().copied().collect()),
            f32s(
                "displacements",
                t.displacements.shape(),
                t.displacements.iter().copied().collect(),
            ),
            f32s(
                "weights",
                t.weights.shape(),
                t.weights.iter().copied().collect(),
            ),
        ]
    }
}
