//! Random weights that make a network compute something worth comparing: for checking an
//! export against its forward, and for benchmarks of exported graphs.
//!
//! A freshly built network is a poor witness. Its BatchNorms hold the identity statistics
//! (mean 0, variance 1, scale 1, shift 0), so folding them changes nothing and a wrong fold
//! would pass; and HRNet's official initialisation (std 0.001) shrinks activations layer after
//! layer until every output is nearly zero, where a relative comparison says nothing. So:
//! convolutions get He-normal weights, BatchNorm scales and shifts random values, biases small
//! random values, and then the running statistics are calibrated by training-mode forwards on
//! random pictures, the way a trained network's statistics come from its data. Activations
//! stay of order one from the stem to the heads, and every fold has non-trivial statistics.

use std::collections::HashSet;

use posekit_core::Result;
use tch::{nn, Device, Kind, Tensor};

use crate::models::normalization::InputNormalization;
use crate::models::PoseNetwork;

/// Training-mode forwards that calibrate the running statistics: each moves them 10% of the
/// way (BatchNorm momentum 0.1), so 40 leave about 1.5% of the initial values.
const CALIBRATION_STEPS: usize = 40;
/// Size of the calibration pictures: small, since the statistics hardly depend on it.
const CALIBRATION_SIZE: i64 = 64;
const CALIBRATION_BATCH: i64 = 2;

/// Re-initialises every variable of `vs` (which holds `net`) from `seed` as the module
/// documentation says; `normalization` is the network's input normalisation, so that the
/// calibration pictures look like its inputs.
pub fn randomize(
    vs: &nn::VarStore,
    net: &dyn PoseNetwork,
    normalization: &InputNormalization,
    seed: i64,
) -> Result<()> {
    tch::manual_seed(seed);
    let vars = vs.variables();
    let normalised: HashSet<&str> = vars
        .keys()
        .filter_map(|k| k.strip_suffix(".running_var"))
        .collect();
    tch::no_grad(|| {
        for (name, var) in &vars {
            let mut var = var.shallow_clone();
            let size = var.size();
            if name.ends_with("running_mean") || name.ends_with("running_var") {
                continue;
            }
            match size.len() {
                4 => {
                    let fan_in = size[1] * size[2] * size[3];
                    let std = (2.0 / fan_in.max(1) as f64).sqrt();
                    let _ = var.normal_(0.0, std);
                }
                1 if is_norm_scale(name, &normalised) => {
                    let _ = var.uniform_(0.5, 1.5);
                }
                _ => {
                    let _ = var.uniform_(-0.2, 0.2);
                }
            }
        }
    });
    let device = vs.device();
    let size = calibration_size(net, device)?;
    for _ in 0..CALIBRATION_STEPS {
        let pixels = Tensor::rand(
            [CALIBRATION_BATCH, 3, size, size],
            (Kind::Float, Device::Cpu),
        ) * 255.0;
        let mean = Tensor::from_slice(&normalization.mean).reshape([1, 3, 1, 1]);
        let std = Tensor::from_slice(&normalization.std).reshape([1, 3, 1, 1]);
        let input = ((pixels - mean) / std).to_device(device);
        tch::no_grad(|| net.forward_named(&input, true))?;
    }
    Ok(())
}

/// The smallest of [`CALIBRATION_SIZE`] and its doublings that the network takes (MMPose's
/// five-level Hourglass needs a multiple of 128), asked of the network's own input check with
/// a one-picture eval forward.
fn calibration_size(net: &dyn PoseNetwork, device: Device) -> Result<i64> {
    let mut size = CALIBRATION_SIZE;
    loop {
        let probe = Tensor::zeros([1, 3, size, size], (Kind::Float, device));
        match tch::no_grad(|| net.forward_named(&probe, false)) {
            Ok(_) => return Ok(size),
            Err(_) if size < 8 * CALIBRATION_SIZE => size *= 2,
            Err(e) => return Err(e),
        }
    }
}

/// Whether a 1-D `*.weight` is a normalisation's scale: its layer has running statistics
/// (`normalised`), or is a `bn*` (the MobileNetV2 backbone's BatchNorms have none).
fn is_norm_scale(name: &str, normalised: &HashSet<&str>) -> bool {
    let Some(stem) = name.strip_suffix(".weight") else {
        return false;
    };
    normalised.contains(stem) || stem.split('.').any(|part| part.starts_with("bn"))
}
