//! Training (`posekit train`) of top-down models (the official HRNet recipe of JointsMSELoss
//! with target weights, summed over the stacks of a Stacked Hourglass) and of HigherHRNet (its
//! `MultiLossFactory`), with Adam, RMSprop or SGD on a step schedule and checkpoints that let a
//! run killed at any moment continue exactly where its last complete epoch ended.
//!
//! * [`schedule`]: the learning rate as a pure function of (epoch, iteration);
//! * [`checkpoint`]: verified, atomically written checkpoint files;
//! * [`task`]: what differs per family (dataset, loss, validation); [`spm_task`] is SPM's;
//! * [`trainer`]: the loop itself (data, loss, optimizer, validation, checkpoints).

pub mod checkpoint;
pub mod paf_task;
pub mod schedule;
pub mod spm_task;
pub mod task;
pub mod trainer;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointMeta};
pub use schedule::ScheduleConfig;
pub use trainer::{train, train_in_group, TrainOptions, TrainSummary};
