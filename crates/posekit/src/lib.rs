//! posekit: 2D human pose estimation — find the keypoints (nose, eyes, shoulders, wrists,
//! knees, ankles, ...) of every person in a picture, with HRNet, Stacked Hourglass,
//! HigherHRNet, OpenPose and SPM.
//!
//! The front door is [`PoseEstimator`]: a preset, its weights and a device in, people out.
//!
//! ```
//! use posekit::{Device, PoseEstimator};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let photo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/astronaut.jpg");
//! // The bundled OpenPose-MobileNetV2 needs no weights file; other presets take `.weights(path)`.
//! let est = PoseEstimator::builder("openpose-mobilenetv2").device(Device::Cpu).build()?;
//! let mut image = posekit::read_image(photo)?;
//! let people = est.estimate(&image, None)?; // or Some(&boxes) for a top-down model
//! assert_eq!(people.len(), 1);
//! let nose = people[0].keypoints[0]; // COCO-17 order: nose, eyes, ears, shoulders, ...
//! assert!(nose.score > 0.0);
//! posekit::draw(&mut image, &people, est.layout(), &Default::default());
//! # Ok(()) }
//! ```
//!
//! The rest of the library is what the `posekit` command line is made of: datasets and
//! loaders, the trainer, the test protocols, inference over files and videos
//! ([`pipelines`]). It joins the framework-free core (`posekit-core`: layouts, geometry,
//! codecs, evaluation) with the networks (`posekit-nn`, on libtorch) and owns no maths of its
//! own.

pub mod error;
pub mod estimator;
pub mod files;
pub mod pipelines;
pub mod progress;

use std::path::Path;

pub use error::{Error, Result};
pub use estimator::{
    BoxSource, Estimate, PersonBox, PoseEstimator, PoseEstimatorBuilder, Proposals,
};
pub use posekit_core::draw::DrawStyle;
pub use posekit_core::{Keypoint, KeypointLayout, Pose};
pub use tch::Device;

/// A picture: `[H, W, 3]` RGB bytes, row-major.
pub type Image = ndarray::Array3<u8>;

/// Reads a JPEG or PNG file as RGB. A truncated or corrupt file is an error naming it, never a
/// partly grey picture.
pub fn read_image(path: impl AsRef<Path>) -> Result<Image> {
    Ok(pipelines::data::read_rgb_checked(path.as_ref())?)
}

/// Writes a picture as PNG or JPEG (by the extension).
pub fn write_image(path: impl AsRef<Path>, image: &Image) -> Result<()> {
    Ok(pipelines::image_io::write_rgb(path.as_ref(), image)?)
}

/// Draws `poses` (in `layout`, e.g. [`PoseEstimator::layout`]) on `image`: joints above
/// `style.min_score` and the layout's limbs between them, one colour per person.
pub fn draw(image: &mut Image, poses: &[Pose], layout: &KeypointLayout, style: &DrawStyle) {
    posekit_core::draw::draw_poses(&mut image.view_mut(), poses, layout, style);
}
