//! A network ready to run: the preset, its variables (on a device) and the module. Every command
//! that runs a network (`forward`, `bench`, `train`, `test`, `infer`) builds it here, so weight
//! loading and its errors are the same everywhere.

use std::path::Path;

use crate::error::ResultExt;
use posekit_nn::models::{PoseNetwork, Preset};
use posekit_nn::weights;
use tch::{nn, Device};

pub struct LoadedModel {
    pub preset: &'static Preset,
    pub vs: nn::VarStore,
    pub net: Box<dyn PoseNetwork>,
}

impl LoadedModel {
    /// Builds `preset` on `device` with random initial weights (for training from scratch and
    /// for benchmarks).
    pub fn new(preset_name: &str, device: Device) -> crate::Result<Self> {
        let preset = Preset::find(preset_name)?;
        let vs = nn::VarStore::new(device);
        let net = preset.build(&vs.root())?;
        Ok(LoadedModel { preset, vs, net })
    }

    /// Builds `preset` and loads `weights` (.pth, .pt, .pth.tar or .safetensors; official, MMPose
    /// or DataParallel names). Missing, unexpected and mis-shaped keys are one error.
    pub fn load(preset_name: &str, weights_path: &Path, device: Device) -> crate::Result<Self> {
        let mut model = Self::new(preset_name, device)?;
        weights::load_weights(&mut model.vs, weights_path)
            .with_context(|| format!("loading weights into {}", model.preset.name))?;
        Ok(model)
    }

    /// Folds BatchNorm into the convolutions (inference only); see
    /// [`PoseNetwork::fold_batchnorm`].
    pub fn fold_batchnorm(&mut self) -> crate::Result<bool> {
        Ok(tch::no_grad(|| self.net.fold_batchnorm())?)
    }

    /// Number of trainable parameters.
    pub fn parameter_count(&self) -> i64 {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }
}
