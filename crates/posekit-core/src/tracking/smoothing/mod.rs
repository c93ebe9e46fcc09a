//! Keypoint smoothing per track: [`one_euro`] online (each frame as it comes, for streamed
//! results and drawn videos) and [`savgol`] offline (a whole track at once, for results.json).
//!
//! Smoothing acts on the keypoints a person was found with (score above a threshold); a joint
//! not found in a frame is left as it is and does not disturb its filter.

pub mod one_euro;
pub mod savgol;

pub use one_euro::{OneEuroParams, OneEuroSmoother};
pub use savgol::{savgol_coefficients, savgol_filter, smooth_track, SavgolParams};

/// Which smoothing a run applies.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum SmoothKind {
    #[default]
    None,
    OneEuro(OneEuroParams),
    Savgol(SavgolParams),
}
