//! Codecs: each turns annotations into training targets (`encode`) and network outputs into
//! poses (`decode`), on plain arrays and independent of any network.

pub mod associative_embedding;
pub mod heatmap;
pub mod hungarian;
pub mod paf;
pub mod peaks;
pub mod spm;
