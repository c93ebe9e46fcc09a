//! posekit's distributed training layer: c10d process groups through libtorch's C++ API.
//!
//! A small C++ shim (`csrc/`, compiled by build.rs against the torch wheel's headers, as
//! torch-sys compiles tch's own C++) creates libtorch's `TCPStore`, `ProcessGroupGloo` and,
//! where the headers allow, `ProcessGroupNCCL`; every C++ exception is caught there and comes
//! back as an error string. On top of it:
//!
//! * [`DistEnv`]: this process's rank, from torchrun's variables (or [`spawn_local`]'s);
//! * [`ProcessGroup`]: rendezvous, broadcast, bucketed all-reduce, all-gather, barrier, with
//!   failures that name the rank that is gone (a heartbeat per rank in the store);
//! * [`GradAverager`] and [`broadcast_var_store`]: what DistributedDataParallel does for a
//!   model, on a tch `VarStore`;
//! * [`spawn_local`]: start N ranks on this machine (`--nproc N`), pass signals on, and stop
//!   them all when one fails.
//!
//! # Using it in a trainer
//!
//! The plan for `posekit train` (one rank per process, torchrun or `--nproc`):
//!
//! ```text
//! // main: `--nproc N` without RANK in the environment -> be the launcher.
//! if let Some(n) = args.nproc {
//!     let rest = args_without_nproc();                      // same command, minus --nproc
//!     return spawn_local(n, &SpawnOptions::current_exe(rest)?);   // error names the failed rank
//! }
//! let env = DistEnv::from_env()?;                           // None: single process, as today
//! let device = match &env { Some(e) if cuda => Device::Cuda(e.local_rank), _ => device };
//! let group = env.as_ref().map(|e| ProcessGroup::init(e, &GroupOptions {
//!     backend: Backend::for_device(device)?, ..GroupOptions::default() })).transpose()?;
//!
//! // Build the model and optimizer on every rank with the same config and seed, then:
//! if let Some(g) = &group {
//!     broadcast_var_store(g, &vs, 0)?;                      // rank 0's weights and buffers
//! }
//! let averager = group.as_ref().map(|g| GradAverager::new(g, &vs)).transpose()?;
//! // (on --resume: every rank loads the same checkpoint; the broadcast then changes nothing)
//!
//! // Each step, on this rank's shard of the epoch's permutation (the sampler: rank r takes
//! // batches r, r + W, r + 2W, ... of the single-process order, with the global batch split
//! // into W per-rank batches of batch_size / W):
//! adam.zero_grad();
//! loss.backward();
//! if let (Some(g), Some(a)) = (&group, &averager) { a.average(g)?; }   // mean over ranks
//! adam.step(lr);                                            // identical on every rank
//!
//! // Skipped samples, losses, metrics: agree on them with all_gather_f64 / all_gather_i64.
//! // One writer: only env.is_writer() writes checkpoints, logs, validation and the bar;
//! // the others wait meanwhile with group.barrier_within(long_timeout).
//! // End: group.barrier()?; group.shutdown();
//! // On an error of its own, a rank calls group.leave(&err.to_string()) before exiting, so
//! // the others report that error rather than "rank N is lost".
//! ```
//!
//! BatchNorm stays per rank by default (each rank normalises with its own batch statistics, as
//! the official HRNet/MMPose trainings do); rank 0's running statistics are the ones saved.
//! SyncBatchNorm is built on [`ProcessGroup::all_reduce_sum_autograd`], a differentiable sum
//! across ranks, by posekit-nn's `sync_bn` (which the trainer hands the group).
//!
//! Faults: a rank killed mid-step makes the others' next collective fail at once (Gloo sees
//! the connection close), and after about three heartbeat intervals the error names the rank
//! ([`DistError::PeerLost`]); a rank that hangs is caught by the collective timeout. The
//! trainer then exits non-zero, and `--resume` continues from the last checkpoint rank 0
//! completed.

mod bucket;
mod env;
mod error;
mod ffi;
mod grads;
mod group;
mod heartbeat;
mod launch;
mod store;

pub use bucket::{plan as plan_buckets, Bucket, DEFAULT_BUCKET_BYTES};
pub use env::{DistEnv, StoreHost, REQUIRED_VARS};
pub use error::{DistError, Loss, LostRank, Result};
pub use grads::{broadcast_var_store, GradAverager};
pub use group::{Backend, GlooDevice, GroupOptions, ProcessGroup, ReduceOp};
pub use launch::{free_port, spawn_local, SpawnOptions, SPAWNED_VAR};
