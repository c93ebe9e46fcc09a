//! `posekit infer` with the bottom-up presets that need the user's weights, end to end through
//! the library: random weights saved as a .safetensors (the format a user converts official
//! weights to), loaded as a user's file would be, run on a small picture at a small input size.
//! With random weights nobody can say where the people are, so the checks are that the run
//! completes, writes a valid results.json whose every keypoint is finite and inside a sane
//! range, and draws the picture; the geometry is checked by the unit tests next to the code.

use std::path::{Path, PathBuf};

use posekit::pipelines::infer::{expand_inputs, run_infer, InferOptions};
use posekit::pipelines::model::LoadedModel;
use posekit::PoseEstimator;
use tch::Device;

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("posekit-infer-bu-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `w`x`h` picture with some structure (a bright figure on a gradient).
fn picture(dir: &Path, w: u32, h: u32) -> PathBuf {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let figure = (w * 2 / 5..w * 3 / 5).contains(&x) && (h / 8..h * 7 / 8).contains(&y);
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

/// Random weights, except that the biases of the heads the decoder thresholds are raised:
/// untrained heads output values near 0, below every detection threshold, and a test whose
/// decoder never sees a candidate would check nothing past the forward pass. With raised
/// biases the noise of the random weights makes many local maxima above threshold, so
/// peak finding, grouping and the back-mapping all run on real candidates.
fn random_weights(preset: &str, dir: &Path) -> PathBuf {
    tch::manual_seed(7);
    let model = LoadedModel::new(preset, Device::Cpu).unwrap();
    // (key, channels from, channels to, value)
    let raise: &[(&str, i64, i64, f64)] = match preset {
        // Heatmap channels of both heads; the tags (channels 17.. of head 0) stay random.
        "higherhrnet-w32" => &[
            ("final_layers.0.bias", 0, 17, 1.0),
            ("final_layers.1.bias", 0, 17, 1.0),
        ],
        "spm-hrnet-w32" => &[("root_head.0.bias", 0, 1, 1.0)],
        "spm-hourglass" => &[("root_head.7.bias", 0, 1, 1.0)],
        // Last stage: joint heatmaps up, and every PAF pointing down-right, so that joints
        // below-right of each other connect into people.
        "openpose-vgg19" => &[
            ("model6_2.Mconv7_stage6_L2.bias", 0, 18, 0.5),
            ("model6_1.Mconv7_stage6_L1.bias", 0, 38, 0.7),
        ],
        _ => &[],
    };
    let vars = model.vs.variables();
    for &(key, from, to, value) in raise {
        let t = vars
            .get(key)
            .unwrap_or_else(|| panic!("{preset} has no {key}"));
        tch::no_grad(|| {
            let _ = t.narrow(0, from, to - from).fill_(value);
        });
    }
    let path = dir.join(format!("{preset}.safetensors"));
    model.vs.save(&path).unwrap();
    path
}

fn run_preset(preset: &str, input_size: usize, flip: bool, [w, h]: [u32; 2]) -> serde_json::Value {
    let dir = workdir(preset);
    let pic = picture(&dir, w, h);
    let weights = random_weights(preset, &dir);
    let model = PoseEstimator::builder(preset)
        .weights(&weights)
        .device(Device::Cpu)
        .flip(flip)
        .input_size(input_size)
        .build()
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
        &mut |_| {},
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
    assert!(
        !list.is_empty(),
        "{preset}: the decoder found nobody, so nothing past the forward pass was checked"
    );
    for r in list {
        assert_eq!(r["file_name"], "people.png");
        let kps = r["keypoints"].as_array().unwrap();
        assert_eq!(kps.len(), 51, "COCO-17 keypoints");
        // Joints come back in picture pixels: near the picture (refinement, displacements
        // and the bars of the resize can reach a little outside it), never in input or
        // heatmap pixels of another scale.
        let reach = w.max(h) as f64;
        for xyv in kps.chunks(3) {
            let [x, y, v] = [0, 1, 2].map(|i| xyv[i].as_f64().unwrap());
            assert!(
                (-reach..2.0 * reach).contains(&x),
                "x {x} for a {w}x{h} picture"
            );
            assert!(
                (-reach..2.0 * reach).contains(&y),
                "y {y} for a {w}x{h} picture"
            );
            assert!(v.is_finite());
        }
        assert!(r["score"].as_f64().unwrap().is_finite());
        assert_eq!(r["bbox"].as_array().unwrap().len(), 4);
    }
    std::fs::remove_dir_all(&dir).ok();
    results
}

#[test]
fn higherhrnet_w32_runs_end_to_end_with_flip_test() {
    run_preset("higherhrnet-w32", 128, true, [96, 72]);
}

#[test]
fn spm_hrnet_w32_runs_end_to_end() {
    run_preset("spm-hrnet-w32", 128, false, [96, 72]);
}

#[test]
fn spm_hourglass_runs_end_to_end() {
    run_preset("spm-hourglass", 128, false, [96, 72]);
}

#[test]
fn openpose_vgg19_runs_end_to_end() {
    // OpenPose decodes maps resized to the picture: a small picture keeps the number of
    // candidate people of the shaped random maps small, and the test fast.
    run_preset("openpose-vgg19", 64, false, [32, 24]);
}

#[test]
fn bottom_up_presets_need_weights_and_a_valid_input_size() {
    let build = |preset: &str, weights: Option<PathBuf>, input_size: Option<usize>| {
        let mut b = PoseEstimator::builder(preset).device(Device::Cpu);
        if let Some(w) = weights {
            b = b.weights(w);
        }
        if let Some(n) = input_size {
            b = b.input_size(n);
        }
        b.build().expect_err("refused")
    };
    let err = build("higherhrnet-w32", None, None);
    assert!(matches!(err, posekit::Error::WeightsNeeded { .. }), "{err}");
    let err = build("spm-hrnet-w32", Some("/nowhere/w.pth".into()), None);
    assert!(err.report().contains("/nowhere/w.pth"), "{}", err.report());

    let dir = workdir("size");
    let weights = random_weights("openpose-vgg19", &dir);
    let err = build("openpose-vgg19", Some(weights.clone()), Some(60));
    assert!(err.report().contains("multiple of 8"), "{}", err.report());
    // Weights of another model are refused with the loader's key report.
    let err = build("spm-hrnet-w32", Some(weights), None);
    assert!(err.report().contains("spm-hrnet-w32"), "{}", err.report());
    let err = build("hrnet-w32", Some("/nowhere/w.pth".into()), Some(128));
    assert!(err.report().contains("input size"), "{}", err.report());
    std::fs::remove_dir_all(&dir).ok();
}

/// The command line: `--model`, `--weights` and `--input-size` reach the pipeline, and a bad
/// `--input-size` is refused with the reason.
#[test]
fn the_cli_runs_a_bottom_up_preset_with_its_input_size() {
    let dir = workdir("cli");
    let pic = picture(&dir, 32, 24);
    let weights = random_weights("openpose-vgg19", &dir);
    let out = dir.join("out");
    let run = |size: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_posekit"))
            .args(["infer", pic.to_str().unwrap(), "--model", "openpose-vgg19"])
            .args(["--weights", weights.to_str().unwrap(), "--input-size", size])
            .args(["--out", out.to_str().unwrap(), "--no-progress"])
            .output()
            .unwrap()
    };
    let ok = run("64");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(ok.status.success(), "{text}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(!results.as_array().unwrap().is_empty(), "{text}");

    let bad = run("60");
    let err = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert!(
        !bad.status.success() && err.contains("multiple of 8"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
