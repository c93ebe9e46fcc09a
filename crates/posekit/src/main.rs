//! The `posekit` command line.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "posekit", version, about = "2D human pose estimation: train, evaluate and run pose networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score predictions against ground truth (COCO keypoint AP/AR, MPII PCKh).
    #[command(subcommand)]
    Eval(cli::eval::EvalCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval(cmd) => cli::eval::run(cmd),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
