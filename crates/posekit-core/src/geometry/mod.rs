//! Geometry of the top-down crop: a person box becomes a center and a scale, the center and
//! scale become an affine transform to the network's input, and predictions go back through
//! its inverse. Conventions follow the official HRNet code (scale in units of 200 px).

pub mod affine;
pub mod center_scale;
pub mod resize;
pub mod warp;
