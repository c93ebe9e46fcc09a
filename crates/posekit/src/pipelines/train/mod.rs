//! Top-down training (`posekit train`): the official HRNet recipe of JointsMSELoss with target
//! weights and Adam or RMSprop on a step schedule, with checkpoints that let a run killed at any moment
//! continue exactly where its last complete epoch ended.
//!
//! * [`schedule`]: the learning rate as a pure function of (epoch, iteration);
//! * [`checkpoint`]: verified, atomically written checkpoint files;
//! * [`trainer`]: the loop itself (data, loss, optimizer, validation, checkpoints).

pub mod checkpoint;
pub mod schedule;
pub mod trainer;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointMeta};
pub use schedule::ScheduleConfig;
pub use trainer::{train, TrainOptions, TrainSummary};
