//! `posekit eval coco|mpii`.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum EvalCommand {}

pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {}
}
