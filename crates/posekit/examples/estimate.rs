//! The front door in a few lines: find the people in a picture and draw them.
//!
//! ```sh
//! cargo run --release -p posekit --example estimate -- examples/astronaut.jpg out.jpg
//! # a top-down model with your weights (people found by the bundled model, then cropped):
//! cargo run --release -p posekit --example estimate -- photo.jpg out.jpg hrnet-w32 pose_hrnet_w32_256x192.pth
//! ```

use posekit::{Device, PoseEstimator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, rest @ ..] = args.as_slice() else {
        return Err("usage: estimate PICTURE OUT.jpg [PRESET WEIGHTS]".into());
    };
    let est = match rest {
        [preset, weights] => PoseEstimator::builder(preset).weights(weights),
        _ => PoseEstimator::builder("openpose-mobilenetv2"),
    }
    .device(Device::Cpu)
    .build()?;
    let mut image = posekit::read_image(input)?;
    let people = est.estimate(&image, None)?;
    for (i, person) in people.iter().enumerate() {
        let found = person.keypoints.iter().filter(|k| k.score > 0.0).count();
        println!(
            "person {i}: score {:.3}, {found} of {} joints",
            person.score,
            person.keypoints.len()
        );
    }
    posekit::draw(&mut image, &people, est.layout(), &Default::default());
    posekit::write_image(output, &image)?;
    println!("{} people -> {output}", people.len());
    Ok(())
}
