//! Writes what `tools/fixtures/make_onnx_fixtures.py` checks with the `onnx` and `onnxruntime`
//! PyPI packages: for every preset, its ONNX export (float32 and `--half`) of random calibrated
//! weights (`posekit_nn::export::random_weights`; the shipped weights for
//! `openpose-mobilenetv2`) and libtorch's eval-mode outputs on a random picture; and the
//! shipped OpenPose-MobileNetV2 exported for the TensorFlow comparison.
//!
//! ```sh
//! cargo run -p posekit-nn --example onnx_parity_inputs -- OUT_DIR [PRESET ...]
//! ```
//!
//! `OUT_DIR/<preset>.onnx`, `<preset>.half.onnx`, `<preset>.io.safetensors` (`input` and every
//! head), `openpose-mobilenetv2-shipped.onnx`, and `manifest.json` (what was written, and the
//! presets whose export is not supported, with the reason). Takes a few minutes and about 2 GB
//! of disk for all presets.

use std::path::{Path, PathBuf};

use posekit_nn::export::{export_network, random_weights, ExportInfo, ExportOptions, Precision};
use posekit_nn::models::{Preset, PRESETS};
use posekit_nn::weights::{load_weights, write_safetensors, RawTensor};
use serde_json::json;
use tch::{nn, Device, Kind, Tensor};

/// The shipped OpenPose-MobileNetV2 weights in the checkout.
const SHIPPED_WEIGHTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/openpose-mobilenetv2/openpose_mobilenetv2.safetensors"
);

const SEED: i64 = 0;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: onnx_parity_inputs OUT_DIR [PRESET ...]")?,
    );
    let only: Vec<String> = args.collect();
    std::fs::create_dir_all(&out)?;
    let mut written = Vec::new();
    let mut unsupported = serde_json::Map::new();
    for preset in PRESETS {
        if !only.is_empty() && !only.iter().any(|n| n == preset.name) {
            continue;
        }
        match export_preset(preset, &out) {
            Ok(size) => {
                println!("{}: exported at {}x{}", preset.name, size.0, size.1);
                written.push(json!({"preset": preset.name, "input_size": [size.0, size.1]}));
            }
            Err(e) if e.to_string().contains("has no ONNX export") => {
                println!("{}: not exported: {e}", preset.name);
                unsupported.insert(preset.name.into(), json!(e.to_string()));
            }
            Err(e) => return Err(format!("{}: {e}", preset.name).into()),
        }
    }
    if only.is_empty() || only.iter().any(|n| n == "openpose-mobilenetv2") {
        export_shipped_mobilenet(&out)?;
    }
    // Re-running some presets keeps the others' entries.
    if !only.is_empty() {
        if let Ok(text) = std::fs::read_to_string(out.join("manifest.json")) {
            let old: serde_json::Value = serde_json::from_str(&text)?;
            let redone = |e: &serde_json::Value| only.iter().any(|n| e["preset"] == n.as_str());
            for e in old["exported"].as_array().into_iter().flatten() {
                if !redone(e) {
                    written.push(e.clone());
                }
            }
            for (k, v) in old["unsupported"].as_object().into_iter().flatten() {
                if !only.contains(k) {
                    unsupported.insert(k.clone(), v.clone());
                }
            }
        }
    }
    let manifest = json!({"seed": SEED, "exported": written, "unsupported": unsupported});
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(())
}

/// The preset with random calibrated weights: both exports and the libtorch reference.
fn export_preset(preset: &Preset, out: &Path) -> Result<(i64, i64), Box<dyn std::error::Error>> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = preset.build(&vs.root())?;
    let info = ExportInfo::for_preset(preset)?;
    let size = preset.default_input_size();
    // Export first: an unsupported network fails before the costly calibration.
    export_network(net.as_ref(), &info, &ExportOptions::new(size))?;
    if preset.name == "openpose-mobilenetv2" {
        // The one preset with real weights is checked with them: through six refinement
        // stages of random weights, rounding differences grow past 1e-4 by the last stage
        // (measured 3.5e-5 at stage 1, 1.3e-4 at stage 6), which says nothing of the export.
        load_weights(&mut vs, std::path::Path::new(SHIPPED_WEIGHTS))?;
    } else {
        random_weights::randomize(&vs, net.as_ref(), &info.normalization, SEED)?;
    }
    for (precision, suffix) in [
        (Precision::Float32, "onnx"),
        (Precision::Float16, "half.onnx"),
    ] {
        let options = ExportOptions {
            precision,
            ..ExportOptions::new(size)
        };
        export_network(net.as_ref(), &info, &options)?
            .write(&out.join(format!("{}.{suffix}", preset.name)))?;
    }
    tch::manual_seed(SEED + 1);
    let pixels = Tensor::rand([1, 3, size.0, size.1], (Kind::Float, Device::Cpu)) * 255.0;
    let n = &info.normalization;
    let input = (pixels - Tensor::from_slice(&n.mean).reshape([1, 3, 1, 1]))
        / Tensor::from_slice(&n.std).reshape([1, 3, 1, 1]);
    let outputs = tch::no_grad(|| net.forward_named(&input, false))?;
    let mut tensors = vec![("input".to_string(), RawTensor::from_tch(&input)?)];
    for (name, t) in &outputs {
        tensors.push((name.clone(), RawTensor::from_tch(t)?));
    }
    write_safetensors(
        &out.join(format!("{}.io.safetensors", preset.name)),
        tensors.iter().map(|(n, t)| (n.as_str(), t)),
    )?;
    Ok(size)
}

/// The shipped weights, exported for the TensorFlow comparison (the script reads the TF
/// references from the shared fixtures).
fn export_shipped_mobilenet(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let preset = Preset::find("openpose-mobilenetv2")?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = preset.build(&vs.root())?;
    load_weights(&mut vs, std::path::Path::new(SHIPPED_WEIGHTS))?;
    let info = ExportInfo::for_preset(preset)?;
    export_network(
        net.as_ref(),
        &info,
        &ExportOptions::new(preset.default_input_size()),
    )?
    .write(&out.join("openpose-mobilenetv2-shipped.onnx"))?;
    println!("openpose-mobilenetv2: shipped weights exported");
    Ok(())
}
