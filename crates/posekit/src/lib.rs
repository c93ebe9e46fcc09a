//! posekit's pipelines: they join the core (geometry, codecs, evaluation) with the networks
//! and own no maths of their own. The `posekit` binary (`main.rs`, `cli/`) is a thin layer over
//! this library.

pub mod files;
pub mod pipelines;
