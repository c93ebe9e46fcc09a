//! `posekit infer` with the bottom-up presets that need the user's weights, end to end through
//! the library: random weights saved as a .safetensors (the format a user converts official
//! weights to), loaded as a user's file would be, run on a small picture at a small input size.
//! With random weights nobody can say where the people are, so the checks are that the run
//! completes, writes a valid results.json whose every keypoint is finite and inside a sane
//! range, and draws the picture; the geometry is checked by the unit tests next to the code.

use std::path::{Path, PathBuf};

use posekit::pipelines::infer::{expand_inputs, run_infer, InferModel, InferOptions, ModelSpec};
use posekit::pipelines::model::LoadedModel;
use tch::Device;

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("posekit-infer-bu-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 96x72 picture with some structure (a bright figure on a gradient).
fn picture(dir: &Path) -> PathBuf {
    let img = image::RgbImage::from_fn(96, 72, |x, y| {
        let figure = (40..56).contains(&x) && (10..66).contains(&y);
        if figure {
            image::Rgb([230, 200, 180])
        } else {
            image::Rgb([(x * 2) as u8, (y * 3) as u8, 90])
        }
    });
    let path = dir.join("people.png");
    img.save(&path).unwrap();
    path
}

fn random_weights(preset: &str, dir: &Path) -> PathBuf {
    tch::manual_seed(7);
    let model = LoadedModel::new(preset, Device::Cpu).unwrap();
    let path = dir.join(format!("{preset}.safetensors"));
    model.vs.save(&path).unwrap();
    path
}

fn run_preset(preset: &str, input_size: usize, flip: bool) -> serde_json::Value {
    let dir = workdir(preset);
    let pic = picture(&dir);
    let weights = random_weights(preset, &dir);
    let model = InferModel::load(&ModelSpec {
        preset: Some(preset.to_string()),
        weights: Some(weights.clone()),
        config: None,
        device: Device::Cpu,
        flip,
        input_size: Some(input_size),
    })
    .unwrap();
    assert!(!model.is_top_down());
    let out = dir.join("out");
    let inputs = expand_inputs(std::slice::from_ref(&pic)).unwrap();
    let summary = run_infer(
        &model,
        &inputs,
        &InferOptions {
            out_dir: out.clone(),
            heatmaps: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(summary.images, 1);
    assert!(summary.failures.is_empty(), "{:?}", summary.failures);
    assert!(out.join("people.png").is_file());
    assert!(out.join("people.heatmaps.safetensors").is_file());
    let text = std::fs::read_to_string(out.join("results.json")).unwrap();
    let results: serde_json::Value = serde_json::from_str(&text).unwrap();
    let list = results.as_array().expect("results.json is a list");
    assert_eq!(list.len(), summary.people);
    for r in list {
        assert_eq!(r["file_name"], "people.png");
        let kps = r["keypoints"].as_array().unwrap();
        assert_eq!(kps.len(), 51, "COCO-17 keypoints");
        for v in kps {
            let v = v.as_f64().unwrap();
            // Grouped joints stay near the picture (refinement and displacements can reach a
            // little outside it, never far).
            assert!(v.is_finite() && v.abs() < 10_000.0, "{v}");
        }
        assert!(r["score"].as_f64().unwrap().is_finite());
        assert_eq!(r["bbox"].as_array().unwrap().len(), 4);
    }
    std::fs::remove_dir_all(&dir).ok();
    results
}

#[test]
fn higherhrnet_w32_runs_end_to_end_with_flip_test() {
    run_preset("higherhrnet-w32", 128, true);
}

#[test]
fn spm_hrnet_w32_runs_end_to_end() {
    run_preset("spm-hrnet-w32", 128, false);
}

#[test]
fn spm_hourglass_runs_end_to_end() {
    run_preset("spm-hourglass", 128, false);
}

#[test]
fn openpose_vgg19_runs_end_to_end() {
    run_preset("openpose-vgg19", 64, false);
}

#[test]
fn bottom_up_presets_need_weights_and_a_valid_input_size() {
    let spec = |preset: &str, weights: Option<PathBuf>, input_size| ModelSpec {
        preset: Some(preset.to_string()),
        weights,
        config: None,
        device: Device::Cpu,
        flip: false,
        input_size,
    };
    let err = InferModel::load(&spec("higherhrnet-w32", None, None))
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("needs --weights"), "{err:#}");
    let err = InferModel::load(&spec("spm-hrnet-w32", Some("/nowhere/w.pth".into()), None))
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("/nowhere/w.pth"), "{err:#}");

    let dir = workdir("size");
    let weights = random_weights("openpose-vgg19", &dir);
    let err = InferModel::load(&spec("openpose-vgg19", Some(weights.clone()), Some(60)))
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("multiple of 8"), "{err:#}");
    // Weights of another model are refused with the loader's key report.
    let err = InferModel::load(&spec("spm-hrnet-w32", Some(weights), None))
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("spm-hrnet-w32"), "{err:#}");
    let err = InferModel::load(&ModelSpec {
        input_size: Some(128),
        ..spec("hrnet-w32", Some("/nowhere/w.pth".into()), None)
    })
    .err()
    .unwrap();
    assert!(format!("{err:#}").contains("--input-size"), "{err:#}");
    std::fs::remove_dir_all(&dir).ok();
}
