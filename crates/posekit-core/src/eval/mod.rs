//! Benchmarks' own metrics: COCO keypoint AP/AR (as pycocotools computes it) and MPII PCKh.

pub mod coco;
pub mod mpii;
pub mod posetrack;
