//! `posekit eval posetrack`: PoseTrack multi-person pose tracking (MOTA, MOTP, precision,
//! recall) as the benchmark's `poseval` tool computes them, from PoseTrack18 ground truth and
//! tracking results (a file each, or a folder each with one file per video of the same name).

use std::path::PathBuf;

use clap::Args;
use posekit_core::eval::posetrack;

#[derive(Args)]
pub struct PosetrackArgs {
    /// PoseTrack18 ground truth: one video's annotation JSON, or a folder of them.
    #[arg(long)]
    gt: PathBuf,
    /// Tracking results in PoseTrack18's format (`track_id`, `keypoints`, `scores` per person):
    /// a file, or a folder holding a file named like each ground-truth file.
    #[arg(long)]
    results: PathBuf,
    /// Print one JSON object (the table, then per-joint counts and scores) instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: PosetrackArgs) -> anyhow::Result<()> {
    let report = posetrack::evaluate_paths(&args.gt, &args.results)?;
    super::eval::print_json_or_text(&report, args.json)
}
