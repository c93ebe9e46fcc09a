//! `posekit export` and `posekit bench --backend ort` as a user runs them: the files written,
//! what is printed, and the errors for what cannot work (no weights, an unsupported opset, an
//! output over an input, no ONNX Runtime library).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use posekit_nn::export::proto::{Message, ModelProto};

fn posekit(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_posekit"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the posekit binary runs")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("posekit-export-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn metadata(path: &Path) -> std::collections::HashMap<String, String> {
    let model = ModelProto::parse_from_bytes(&std::fs::read(path).unwrap()).unwrap();
    model
        .metadata_props
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect()
}

#[test]
fn the_shipped_model_exports_without_weights_and_runs_on_onnx_runtime() {
    let dir = temp_dir("shipped");
    let out = dir.join("openpose.onnx");
    let o = posekit(
        &[
            "export",
            "--model",
            "openpose-mobilenetv2",
            "-o",
            out.to_str().unwrap(),
            "--dynamic-batch",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let printed = text(&o);
    assert!(
        printed.contains("openpose-mobilenetv2 at 368x432, batch N, opset 17, float32"),
        "{printed}"
    );
    assert!(
        printed.contains("output heatmaps: [N, 19, 46, 54] (stride 8)"),
        "{printed}"
    );
    let meta = metadata(&out);
    assert_eq!(meta["posekit.preset"], "openpose-mobilenetv2");
    assert_eq!(meta["posekit.batch_dependent"], "true");
    assert!(meta["posekit.input"].contains("\"channel_order\":\"BGR\""));

    let o = posekit(
        &[
            "bench",
            "--model",
            "openpose-mobilenetv2",
            "--backend",
            "ort",
            "--threads",
            "1",
            "--warmup",
            "0",
            "--iters",
            "1",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("onnxruntime batch 1 input 368x432 fp32"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_trained_config_exports_its_crop_size_and_normalisation() {
    let dir = temp_dir("config");
    let out = dir.join("tiny.onnx");
    let config = repo("configs/tiny_hrnet_coco_test.toml");
    let o = posekit(
        &[
            "export",
            config.to_str().unwrap(),
            "--random-weights",
            "-o",
            out.to_str().unwrap(),
            "--half",
            "--opset",
            "18",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("hrnet-w32 at 96x64, batch 1, opset 18, float16, RANDOM weights"),
        "{}",
        text(&o)
    );
    let meta = metadata(&out);
    let input: serde_json::Value = serde_json::from_str(&meta["posekit.input"]).unwrap();
    assert_eq!(
        (input["height"].as_i64(), input["width"].as_i64()),
        (Some(96), Some(64))
    );
    assert!(
        (input["mean"][0].as_f64().unwrap() - 123.675).abs() < 1e-3,
        "{input}"
    );
    assert_eq!(meta["posekit.precision"], "float16");
    // A config fixes the crop size.
    let o = posekit(
        &[
            "export",
            config.to_str().unwrap(),
            "--random-weights",
            "-o",
            out.to_str().unwrap(),
            "--input-size",
            "256x192",
        ],
        &[],
    );
    assert!(
        !o.status.success() && text(&o).contains("fixes the crop size"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn what_cannot_be_exported_is_a_clear_error() {
    let dir = temp_dir("errors");
    let out = dir.join("m.onnx");
    let o = posekit(
        &[
            "export",
            "--model",
            "hrnet-w32",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("needs --weights") && text(&o).contains("--random-weights"),
        "{}",
        text(&o)
    );
    let o = posekit(
        &[
            "export",
            "--model",
            "openpose-mobilenetv2",
            "-o",
            out.to_str().unwrap(),
            "--opset",
            "9",
        ],
        &[],
    );
    assert!(
        !o.status.success() && text(&o).contains("opset 9 is not supported"),
        "{}",
        text(&o)
    );
    let o = posekit(
        &[
            "export",
            "--model",
            "openpose-mobilenetv2",
            "-o",
            out.to_str().unwrap(),
            "--input-size",
            "8x8",
        ],
        &[],
    );
    assert!(
        !o.status.success() && text(&o).contains("smaller than its backbone stride"),
        "{}",
        text(&o)
    );
    assert!(!out.exists(), "a failed export leaves no file");
    // -o over the weights file: refused, the weights untouched.
    let weights = dir.join("w.safetensors");
    std::fs::copy(
        repo("models/openpose-mobilenetv2/openpose_mobilenetv2.safetensors"),
        &weights,
    )
    .unwrap();
    let before = std::fs::read(&weights).unwrap();
    let o = posekit(
        &[
            "export",
            "--model",
            "openpose-mobilenetv2",
            "--weights",
            weights.to_str().unwrap(),
            "-o",
            weights.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !o.status.success() && text(&o).contains("choose another output"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read(&weights).unwrap(), before);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_onnx_runtime_says_how_to_install_it() {
    let dir = temp_dir("nolib");
    let not_a_library = dir.join("libonnxruntime.so");
    std::fs::write(&not_a_library, b"not a shared library").unwrap();
    for (path, expect) in [
        ("/nonexistent/libonnxruntime.so", "is not a file"),
        (not_a_library.to_str().unwrap(), "cannot load ONNX Runtime"),
    ] {
        let o = posekit(
            &[
                "bench",
                "--model",
                "openpose-mobilenetv2",
                "--backend",
                "ort",
                "--warmup",
                "0",
                "--iters",
                "1",
            ],
            &[("ORT_DYLIB_PATH", path)],
        );
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(
            t.contains(expect)
                && t.contains("bash scripts/setup.sh")
                && t.contains("pip install onnxruntime=="),
            "{t}"
        );
        assert!(!t.contains("panicked"), "{t}");
    }
    let o = posekit(
        &[
            "bench",
            "--model",
            "hrnet-w32",
            "--backend",
            "ort",
            "--train",
        ],
        &[],
    );
    assert!(
        !o.status.success() && text(&o).contains("inference only"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}
