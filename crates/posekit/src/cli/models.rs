//! `posekit models`: the presets, with parameter counts and input sizes. The counts are the
//! registry's, so no network is built (building all of them took 4 s and 1.3 GB).

use posekit_nn::models::{Paradigm, PRESETS};

pub fn run() -> anyhow::Result<()> {
    println!(
        "{:<22} {:<9} {:<8} {:>7} {:>12}  {:<18} description",
        "preset", "kind", "layout", "joints", "parameters", "input (HxW)"
    );
    for preset in PRESETS {
        let sizes: Vec<String> = preset
            .input_sizes
            .iter()
            .map(|(h, w)| format!("{h}x{w}"))
            .collect();
        let kind = match preset.paradigm() {
            Paradigm::TopDown => "top-down",
            Paradigm::BottomUp => "bottom-up",
        };
        println!(
            "{:<22} {:<9} {:<8} {:>7} {:>12}  {:<18} {}",
            preset.name,
            kind,
            preset.layout,
            preset.num_joints,
            group_thousands(preset.parameters),
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
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
