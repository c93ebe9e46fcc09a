//! The `posekit` command line.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "posekit",
    version,
    about = "2D human pose estimation: train, evaluate and run pose networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score predictions against ground truth (COCO keypoint AP/AR, MPII PCKh).
    #[command(subcommand)]
    Eval(cli::eval::EvalCommand),
    /// List the model presets with their parameter counts and input sizes.
    Models,
    /// Check a checkpoint against a model and write it as safetensors.
    Convert(cli::convert::ConvertArgs),
    /// Run a network on a stored input tensor and write every output head.
    Forward(cli::forward::ForwardArgs),
    /// Measure a network's speed (images/s, ms per batch).
    Bench(cli::bench::BenchArgs),
    /// Write a network as an ONNX graph (BatchNorm folded, named heads, metadata).
    Export(cli::export::ExportArgs),
    /// Find people in pictures, folders and videos; write results.json and drawn copies.
    Infer(cli::infer::InferArgs),
    /// Train a top-down model from an experiment config (TOML).
    Train(cli::train::TrainArgs),
    /// Test a top-down model on the config's test split (COCO AP or MPII PCKh).
    Test(cli::test::TestArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval(cmd) => cli::eval::run(cmd),
        Command::Models => cli::models::run(),
        Command::Convert(args) => cli::convert::run(args),
        Command::Forward(args) => cli::forward::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Export(args) => cli::export::run(args),
        Command::Infer(args) => cli::infer::run(args),
        Command::Train(args) => cli::train::run(args),
        Command::Test(args) => cli::test::run(args),
    };
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
