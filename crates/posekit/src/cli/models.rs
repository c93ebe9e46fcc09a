//! `posekit models`: the presets, with parameter counts and input sizes.

use posekit_nn::models::{Paradigm, PRESETS};
use tch::Device;

use posekit::pipelines::model::LoadedModel;

pub fn run() -> anyhow::Result<()> {
    println!("{:<22} {:<9} {:<8} {:>7} {:>12}  {:<18} description", "preset", "kind", "layout", "joints", "parameters", "input (HxW)");
    for preset in PRESETS {
        let model = LoadedModel::new(preset.name, Device::Cpu)?;
        let sizes: Vec<String> = preset.input_sizes.iter().map(|(h, w)| format!("{h}x{w}")).collect();
        let kind = match preset.paradigm {
            Paradigm::TopDown => "top-down",
            Paradigm::BottomUp => "bottom-up",
        };
        println!(
            "{:<22} {:<9} {:<8} {:>7} {:>12}  {:<18} {}",
            preset.name,
            kind,
            preset.layout,
            preset.num_joints,
            group_thousands(model.parameter_count()),
            sizes.join(", "),
            preset.summary
        );
    }
    Ok(())
}

fn group_thousands(n: i64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
