//! Weights in and out: a restricted reader of PyTorch `.pth` files that never runs pickle code,
//! safetensors, and the key maps between official, MMPose and DataParallel names.

pub mod keymap;
pub mod load;
pub mod pth;
pub mod safetensors_io;
