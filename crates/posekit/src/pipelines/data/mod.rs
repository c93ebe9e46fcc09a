//! The top-down data pipeline: person instances from COCO or MPII annotation files, the HRNet
//! training augmentation, the crop, the normalised network input and the Gaussian targets, and
//! a multi-threaded loader that hands batches to the trainer in a reproducible order.
//!
//! It reproduces the official HRNet code (`lib/dataset/JointsDataset.py`, `coco.py`, `mpii.py`
//! of leoxiaobin/deep-high-resolution-net.pytorch) step by step, because published accuracies
//! were obtained with exactly these crops and targets:
//!
//! * [`coco`] / [`mpii`]: which annotations become instances, and their center/scale;
//! * [`augment`]: half-body, random scale, rotation and flip, drawn from a per-sample RNG;
//! * [`sample`]: the crop by the core's OpenCV-exact warp, RGB normalisation, targets by the
//!   core's [`HeatmapCodec`](posekit_core::codecs::heatmap::HeatmapCodec);
//! * [`loader`]: worker threads, bounded prefetch, in-order batches, unreadable images skipped
//!   and counted.
//!
//! Randomness never comes from a global RNG: every sample's augmentation is drawn from a ChaCha
//! stream seeded by `(seed, epoch, index)` and every epoch's order from one seeded by
//! `(seed, epoch)`. A resumed run therefore replays the same augmentations, and the batches do
//! not depend on the number of worker threads or on their timing.
//!
//! [`bottomup`] is HigherHRNet's whole-image pipeline (ignore masks, its random affine, targets
//! per output resolution); it shares the loader through [`SampleSource`]. [`spm`] puts SPM's
//! targets on the same pictures and augmentation. [`paf`] is OpenPose's (CMU's crops, CMU-18
//! heatmaps, part affinity fields and ignore mask at stride 8), configured by `[bottomup.paf]`
//! ([`paf_config`]); [`paf_cmu`] is CMU's own bicubic augmentation chain, which `rules = "cmu"`
//! applies to person-framed samples.
//!
//! Geometry, codecs and file formats live in `posekit-core`; this module only wires them.

pub mod augment;
pub mod bottomup;
pub mod bottomup_config;
pub mod coco;
pub mod config;
pub mod dataset;
pub mod error;
pub mod instance;
pub mod jpeg_check;
pub mod loader;
pub mod mpii;
pub mod paf;
pub mod paf_cmu;
pub mod paf_config;
mod rng;
pub mod sample;
pub mod spm;

pub use augment::Augmentation;
pub use bottomup::{BottomUpAugmentation, BottomUpBatch, BottomUpDataset, BottomUpSample};
pub use bottomup_config::{BottomUpAugmentConfig, BottomUpDataConfig, BottomUpLossConfig};
pub use coco::CocoSplit;
pub use config::{AugmentConfig, DataConfig};
pub use dataset::{LoadMode, LoadReport, TopDownDataset};
pub use error::DataError;
pub use instance::TopDownInstance;
pub use jpeg_check::{check_jpeg_complete, read_rgb_checked};
pub use loader::{
    EpochBatches, Loader, LoaderOptions, SampleSource, Shard, SkipWarning, TopDownBatch,
};
pub use paf::{PafBatch, PafDataset, PafSample};
pub use paf_config::{PafAugmentConfig, PafDataConfig, PafFraming};
pub use sample::{flip_input, prepare_crop, SampleMeta, TopDownSample, TopDownTransform};
