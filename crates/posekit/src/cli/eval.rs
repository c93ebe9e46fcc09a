//! `posekit eval coco|mpii|posetrack`: score a prediction file against ground truth with the
//! core's evaluators (identical to pycocotools, to the HRNet/MMPose MPII protocol and to
//! PoseTrack's poseval; the last lives in eval_posetrack.rs).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use posekit_core::eval::{coco, mpii};

#[derive(Subcommand)]
pub enum EvalCommand {
    /// COCO keypoint AP/AR, as pycocotools' COCOeval(iouType='keypoints').
    Coco(CocoArgs),
    /// MPII PCKh@0.5 (and Mean@0.1) from a gt_valid.mat-layout file.
    Mpii(MpiiArgs),
    /// PoseTrack tracking MOTA/MOTP/precision/recall, as poseval computes them.
    Posetrack(super::eval_posetrack::PosetrackArgs),
}

#[derive(Args)]
pub struct CocoArgs {
    /// COCO person_keypoints ground truth.
    #[arg(long)]
    gt: PathBuf,
    /// COCO keypoint results (a JSON list of {image_id, category_id, keypoints, score}).
    #[arg(long)]
    results: PathBuf,
    /// Print one JSON object instead of pycocotools' table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct MpiiArgs {
    /// Ground truth in the gt_valid.mat layout (dataset_joints, jnt_missing, pos_gt_src, headboxes_src).
    #[arg(long)]
    gt: PathBuf,
    /// Predictions: one list of 16 [x, y] per ground-truth row, in the .mat's 1-based pixels.
    #[arg(long)]
    pred: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Coco(args) => {
            let stats = coco::evaluate_coco_files(&args.gt, &args.results)?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&stats).context("serialising the stats")?
                );
            } else {
                print!("{}", stats.summary());
            }
        }
        EvalCommand::Posetrack(args) => super::eval_posetrack::run(args)?,
        EvalCommand::Mpii(args) => {
            let table = mpii::evaluate_files(&args.gt, &args.pred)?;
            print_json_or_text(&table, args.json)?;
        }
    }
    Ok(())
}

/// Prints `report` as one JSON object (`--json`) or as its table.
pub(super) fn print_json_or_text(
    report: &(impl serde::Serialize + std::fmt::Display),
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).context("serialising the report")?
        );
    } else {
        println!("{report}");
    }
    Ok(())
}
