//! Weights into a built network: a training checkpoint (restored name for name), official or
//! MMPose weights in any supported file (through posekit-nn's loader, whose error lists the
//! keys that do not fit: the message a user of the wrong checkpoint needs), or the weights that
//! ship inside the library.

use std::collections::HashMap;
use std::path::Path;

use posekit_nn::weights;

use crate::error::{bail, Result, ResultExt};
use crate::pipelines::model::LoadedModel;
use crate::pipelines::train::checkpoint;

pub use posekit_nn::models::BUNDLED_PRESET;

/// Loads `path` into `model`: one path for every command, so a file that `convert` and
/// `forward` accept (`module.` names, `{"state_dict": ...}`) is accepted everywhere.
pub fn load(model: &mut LoadedModel, path: &Path) -> Result<()> {
    if !path.is_file() {
        bail!("{}: no such weights file", path.display());
    }
    if checkpoint::is_checkpoint(path) {
        let ck = checkpoint::load(path)?;
        ck.restore_model(&model.vs)?;
    } else {
        weights::load_weights(&mut model.vs, path)
            .with_context(|| format!("loading {} into {}", path.display(), model.preset.name))?;
    }
    Ok(())
}

/// Loads the weights compiled into the library for `model`'s preset.
pub fn load_bundled(model: &mut LoadedModel) -> Result<()> {
    let preset = model.preset;
    let Some(bytes) = preset.bundled_weights() else {
        bail!("{} ships without weights", preset.name);
    };
    let origin = Path::new("<bundled openpose_mobilenetv2.safetensors>");
    let mut tensors = HashMap::new();
    for (name, raw) in weights::safetensors_io::parse_safetensors(bytes, origin)? {
        let t = raw.to_tch().map_err(|e| {
            crate::Error::Invalid(format!("{}: tensor {name}: {e}", origin.display()))
        })?;
        tensors.insert(name, t);
    }
    weights::load_into(&mut model.vs, tensors, origin)?;
    Ok(())
}
