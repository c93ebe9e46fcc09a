//! The command line, shared by the two binaries: `posekit` (src/main.rs), which runs the
//! commands that need no network itself and hands the rest to `posekit-engine`
//! (src/bin/posekit-engine.rs). One file per subcommand; each parses its arguments and calls
//! the library.

// The argument doc comments are clap's `--help` texts, written for a terminal (`<name>`,
// `<output dir>`), not HTML.
#![allow(rustdoc::invalid_html_tags)]

use clap::{Parser, Subcommand};

pub mod bench;
pub mod browse;
pub mod convert;
pub mod eval;
pub mod eval_posetrack;
pub mod export;
pub mod forward;
pub mod infer;
pub mod models;
pub mod test;
pub mod train;

#[derive(Parser)]
#[command(
    name = "posekit",
    version,
    about = "2D human pose estimation: train, evaluate and run pose networks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Score predictions against ground truth (COCO keypoint AP/AR, MPII PCKh).
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// List the model presets with their parameter counts and input sizes.
    Models,
    /// Check a checkpoint against a model and write it as safetensors.
    Convert(convert::ConvertArgs),
    /// Run a network on a stored input tensor and write every output head.
    Forward(forward::ForwardArgs),
    /// Measure a network's speed (images/s, ms per batch).
    Bench(bench::BenchArgs),
    /// Write a network as an ONNX graph (BatchNorm folded, named heads, metadata).
    Export(export::ExportArgs),
    /// Find people in pictures, folders and videos; write results.json and drawn copies.
    Infer(infer::InferArgs),
    /// Train a model from an experiment config (TOML): top-down or HigherHRNet.
    Train(train::TrainArgs),
    /// Test a model on its config's test split (COCO AP or MPII PCKh), or a bottom-up preset
    /// on a COCO ground truth.
    Test(test::TestArgs),
    /// Draw the first training samples of a config (augmented inputs, joints, heatmaps, masks)
    /// and optionally write the tensors the loss reads.
    Browse(browse::BrowseArgs),
}

impl Command {
    /// Whether the command runs its network on ONNX Runtime: the front then asks OpenMP to wait
    /// passively (see `main.rs`). The engine binary, which compiles the same module, never asks.
    #[allow(dead_code)]
    pub fn runs_onnx_runtime(&self) -> bool {
        match self {
            Command::Infer(args) => args.engine.uses_onnx_runtime(&args.device),
            Command::Test(args) => args.engine.uses_onnx_runtime(&args.device),
            Command::Bench(args) => args.runs_onnx_runtime(),
            _ => false,
        }
    }
}

/// Runs any command in this process.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Eval(cmd) => eval::run(cmd),
        Command::Models => models::run(),
        Command::Convert(args) => convert::run(args),
        Command::Forward(args) => forward::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Export(args) => export::run(args),
        Command::Infer(args) => infer::run(args),
        Command::Train(args) => train::run(args),
        Command::Test(args) => test::run(args),
        Command::Browse(args) => browse::run(args),
    }
}

/// Prints the error chain on one line and exits 1, or returns on success.
pub fn finish(result: anyhow::Result<()>) {
    if let Err(err) = result {
        eprintln!("error: {}", chain_text(&err));
        std::process::exit(1);
    }
}

/// The error and its causes joined with `: ` (what `{:#}` prints), each said once. Several
/// typed errors (core and weights `Io`, image and checkpoint errors) write their cause into
/// their own message *and* return it as `source()`, so the plain chain printed the OS message
/// twice (`No such file or directory (os error 2): No such file or directory (os error 2)`,
/// issue 7); a cause whose text the previous message already contains is left out.
fn chain_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut previous = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if !previous.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        previous = part;
    }
    text
}
