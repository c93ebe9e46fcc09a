//! `posekit-engine`: the whole command line in one process linked with libtorch (CUDA
//! included). Users run `posekit`, which hands it every command that runs a network; it can
//! also be run directly, with the same arguments.

#[path = "../cli/mod.rs"]
mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    cli::finish(cli::run(cli.command));
}
