//! Weights in and out: a restricted reader of PyTorch `.pth` files that never runs pickle code,
//! safetensors, and the key maps between official, MMPose and DataParallel names.
//!
//! The usual entry points are [`load_weights`] (any supported file into a model),
//! [`convert_checkpoint`] (`.pth` to safetensors, checked against a model) and
//! [`save_safetensors`] (a model out).

pub mod error;
pub mod keymap;
pub mod load;
mod pickle;
pub mod pth;
pub mod safetensors_io;
pub mod tensor;

pub use error::{KeyMismatch, ShapeMismatch, WeightsError};
pub use keymap::{KeyAction, KeyMap, PrefixRule};
pub use load::{
    check_against, convert_checkpoint, convert_checkpoint_with, load_into, load_into_with,
    load_weights, load_weights_with, read_weights, save_safetensors, ConvertReport, LoadOptions,
    LoadReport, WeightsFile, WeightsFormat,
};
pub use pth::{
    parse_pth, parse_pth_selected, read_pth, read_pth_selected, Checkpoint, Item, PthFormat,
    Selector,
};
pub use safetensors_io::{read_safetensors, read_safetensors_tch, write_safetensors};
pub use tensor::{DType, RawTensor};
