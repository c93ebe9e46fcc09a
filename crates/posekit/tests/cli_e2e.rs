//! End-to-end tests of the `posekit` binary's evaluation and model commands: each runs the real
//! executable on files in the repo and checks what a user sees (stdout, exit code, messages).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn posekit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_posekit"))
        .args(args)
        .output()
        .expect("the posekit binary runs")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("posekit-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The JSON object has exactly these keys, in this order (serde_json's map would sort them).
fn assert_keys_in_order(json: &str, names: &[&str]) {
    let positions: Vec<usize> = names
        .iter()
        .map(|n| {
            json.find(&format!("\"{n}\":"))
                .unwrap_or_else(|| panic!("key {n} missing in {json}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys out of order in {json}"
    );
}

const COCO_DATA: &str = "crates/posekit-core/tests/data/coco_eval";

#[test]
fn eval_coco_json_equals_pycocotools_stats() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo(&format!("{COCO_DATA}/expected.json"))).unwrap(),
    )
    .unwrap();
    for case in ["coco_val2017_mmpose", "random_000", "random_007"] {
        let gt = repo(&format!("{COCO_DATA}/{case}_gt.json"));
        let results = repo(&format!("{COCO_DATA}/{case}_results.json"));
        let out = posekit(&[
            "eval",
            "coco",
            "--gt",
            gt.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
            "--json",
        ]);
        assert!(out.status.success(), "{case}: {}", stderr(&out));
        let text = stdout(&out);
        let names = [
            "AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)",
            "AR (L)",
        ];
        assert_keys_in_order(&text, &names);
        let got: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text.trim()).unwrap();
        assert_eq!(got.len(), 10, "{text}");
        let want = expected[case].as_array().unwrap();
        for (i, k) in names.iter().enumerate() {
            let (v, w) = (got[*k].as_f64().unwrap(), want[i].as_f64().unwrap());
            assert!((v - w).abs() <= 1e-9, "{case} {k}: {v} vs pycocotools {w}");
        }
    }
}

#[test]
fn eval_coco_prints_pycocotools_table() {
    let gt = repo(&format!("{COCO_DATA}/coco_val2017_mmpose_gt.json"));
    let results = repo(&format!("{COCO_DATA}/coco_val2017_mmpose_results.json"));
    let out = posekit(&[
        "eval",
        "coco",
        "--gt",
        gt.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 10, "{text}");
    assert!(
        text.lines().next().unwrap().starts_with(
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ] = "
        ),
        "{text}"
    );
}

#[test]
fn eval_coco_bad_results_are_one_line_errors_naming_file_and_field() {
    let dir = temp_dir("bad-results");
    let gt = repo(&format!("{COCO_DATA}/coco_val2017_mmpose_gt.json"));
    let gt_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&gt).unwrap()).unwrap();
    let image_id = gt_json["images"][0]["id"].as_i64().unwrap();
    let kps = |n: usize| vec![1.0f64; n];
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed.json", "[{\"image_id\": 1,".to_string(), "malformed.json"),
        ("short.json", serde_json::json!([{"image_id": image_id, "category_id": 1, "keypoints": kps(48), "score": 0.9}]).to_string(), "keypoints"),
        ("missing.json", serde_json::json!([{"image_id": image_id, "category_id": 1, "score": 0.9}]).to_string(), "keypoints"),
        ("nan.json", format!("[{{\"image_id\": {image_id}, \"category_id\": 1, \"keypoints\": {:?}, \"score\": NaN}}]", kps(51)), "score"),
        ("unknown_image.json", serde_json::json!([{"image_id": 987654321, "category_id": 1, "keypoints": kps(51), "score": 0.9}]).to_string(), "987654321"),
    ];
    for (name, body, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let out = posekit(&[
            "eval",
            "coco",
            "--gt",
            gt.to_str().unwrap(),
            "--results",
            path.to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{name} was accepted");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
        assert!(err.contains(name) && err.contains(needle), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    let out = posekit(&[
        "eval",
        "coco",
        "--gt",
        "/nonexistent/gt.json",
        "--results",
        gt.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/gt.json"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eval_mpii_matches_the_fixture_table() {
    let dir = "crates/posekit-core/tests/data/mpii";
    let gt = repo(&format!("{dir}/gt_valid_subset.mat"));
    let pred = repo(&format!("{dir}/preds.json"));
    let out = posekit(&[
        "eval",
        "mpii",
        "--gt",
        gt.to_str().unwrap(),
        "--pred",
        pred.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_keys_in_order(
        &text,
        &[
            "Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1",
        ],
    );
    let got: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text.trim()).unwrap();
    assert_eq!(got.len(), 9, "{text}");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo(&format!("{dir}/expected.json"))).unwrap(),
    )
    .unwrap();
    let table = &expected["table"];
    for (k, v) in &got {
        let w = table[k]
            .as_f64()
            .unwrap_or_else(|| panic!("expected.json has no {k}"));
        assert!((v.as_f64().unwrap() - w).abs() < 1e-6, "{k}: {v} vs {w}");
    }
    // A truncated .mat and a prediction file of the wrong length are clear errors.
    let bytes = std::fs::read(&gt).unwrap();
    let tmp = temp_dir("mpii");
    let cut = tmp.join("cut.mat");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = posekit(&[
        "eval",
        "mpii",
        "--gt",
        cut.to_str().unwrap(),
        "--pred",
        pred.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cut.mat"), "{}", stderr(&out));
    let short = tmp.join("short.json");
    std::fs::write(&short, "[[[1.0, 2.0]]]").unwrap();
    let out = posekit(&[
        "eval",
        "mpii",
        "--gt",
        gt.to_str().unwrap(),
        "--pred",
        short.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("short.json"), "{}", stderr(&out));
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn convert_checks_the_file_against_the_model() {
    let dir = temp_dir("convert");
    let weights = repo("models/openpose-mobilenetv2/openpose_mobilenetv2.safetensors");
    let out_path = dir.join("op.safetensors");
    let out = posekit(&[
        "convert",
        weights.to_str().unwrap(),
        "--model",
        "openpose-mobilenetv2",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("477 tensors"), "{}", stdout(&out));
    assert!(out_path.metadata().unwrap().len() > 1_000_000);

    // Weights of another model: one error listing the differences, nothing written.
    let wrong = repo("crates/posekit-nn/tests/data/hrnet/hrnet_tiny_weights.safetensors");
    let bad_out = dir.join("never.safetensors");
    let out = posekit(&[
        "convert",
        wrong.to_str().unwrap(),
        "--model",
        "hrnet-w32",
        "-o",
        bad_out.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("hrnet_tiny_weights.safetensors"), "{err}");
    assert!(err.contains("shape") || err.contains("missing"), "{err}");
    assert!(!bad_out.exists());

    // A pickle that would run code is refused and nothing runs.
    let evil = repo("crates/posekit-nn/tests/data/pth/malicious_zip.pth");
    let out = posekit(&[
        "convert",
        evil.to_str().unwrap(),
        "--model",
        "hrnet-w32",
        "-o",
        bad_out.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("malicious_zip.pth"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `posekit forward` on the real OpenPose-MobileNetV2 weights and a stored TensorFlow input
/// reproduces TensorFlow's output: the command a user runs to check a port.
#[test]
fn forward_reproduces_tensorflow_output() {
    use safetensors::{tensor::TensorView, Dtype, SafeTensors};
    let reference = std::fs::read(repo(
        "crates/posekit-nn/tests/data/openpose_mobilenet/reference.safetensors",
    ))
    .unwrap();
    let st = SafeTensors::deserialize(&reference).unwrap();
    let input = st.tensor("input_grace_hopper").unwrap();
    let (h, w) = (input.shape()[1], input.shape()[2]);
    // NHWC uint8 -> NCHW float32, the network's input layout.
    let mut nchw = vec![0f32; 3 * h * w];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                nchw[c * h * w + y * w + x] = input.data()[(y * w + x) * 3 + c] as f32;
            }
        }
    }
    let bytes: Vec<u8> = nchw.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![1, 3, h, w], &bytes).unwrap();
    let dir = temp_dir("forward");
    let in_path = dir.join("in.safetensors");
    std::fs::write(
        &in_path,
        safetensors::serialize([("input", view)], None).unwrap(),
    )
    .unwrap();
    let out_path = dir.join("out.safetensors");
    let weights = repo("models/openpose-mobilenetv2/openpose_mobilenetv2.safetensors");
    let out = posekit(&[
        "forward",
        "--model",
        "openpose-mobilenetv2",
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        in_path.to_str().unwrap(),
        "--output",
        out_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let produced = std::fs::read(&out_path).unwrap();
    let produced = SafeTensors::deserialize(&produced).unwrap();
    let floats = |t: &TensorView| -> Vec<f32> {
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let expected = floats(&st.tensor("output_grace_hopper").unwrap()); // [1, h/8, w/8, 57]
    let heatmaps = floats(&produced.tensor("heatmaps").unwrap()); // [1, 19, h/8, w/8]
    let pafs = floats(&produced.tensor("pafs").unwrap()); // [1, 38, h/8, w/8]
    let (oh, ow) = (h / 8, w / 8);
    let mut max_diff = 0f32;
    for y in 0..oh {
        for x in 0..ow {
            for c in 0..57 {
                let ours = if c < 19 {
                    heatmaps[c * oh * ow + y * ow + x]
                } else {
                    pafs[(c - 19) * oh * ow + y * ow + x]
                };
                max_diff = max_diff.max((ours - expected[(y * ow + x) * 57 + c]).abs());
            }
        }
    }
    assert!(max_diff < 1e-3, "max abs diff to TensorFlow {max_diff}");
    assert!(
        produced.names().len() > 2,
        "every stage's heads are written too"
    );

    // The input file must hold a tensor named `input`.
    let out = posekit(&[
        "forward",
        "--model",
        "openpose-mobilenetv2",
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        out_path.to_str().unwrap(),
        "--output",
        dir.join("x.safetensors").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("'input'"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn models_lists_every_preset_of_the_issue() {
    let out = posekit(&["models"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for name in [
        "hrnet-w32",
        "hrnet-w48",
        "hrnet-w32-mpii",
        "hourglass-1",
        "hourglass-2",
        "hourglass-4",
        "hourglass-8",
        "hourglass52",
        "higherhrnet-w32",
        "higherhrnet-w48",
        "openpose-vgg19",
        "openpose-mobilenetv2",
        "spm-hourglass",
        "spm-hrnet-w32",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{text}"
        );
    }
    assert!(
        text.contains("28,536,113"),
        "HRNet-W32's official parameter count:\n{text}"
    );
}

#[test]
fn bench_runs_and_unknown_preset_or_device_is_a_clear_error() {
    let out = posekit(&[
        "bench",
        "--model",
        "openpose-mobilenetv2",
        "--batch",
        "1",
        "--warmup",
        "1",
        "--iters",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("images/s"), "{}", stdout(&out));
    let out = posekit(&["bench", "--model", "hrnet-w64"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("hrnet-w32"),
        "the error lists known presets: {}",
        stderr(&out)
    );
    if !tch::Cuda::is_available() {
        let out = posekit(&[
            "bench",
            "--model",
            "openpose-mobilenetv2",
            "--device",
            "cuda",
        ]);
        assert!(
            !out.status.success(),
            "asking for a missing GPU must fail, not fall back to the CPU"
        );
    }
}

/// `posekit test --model openpose-mobilenetv2` scores the bundled model on a COCO ground truth:
/// every image through the model, results.json written, pycocotools' table printed, and the
/// same AP as `posekit eval coco` gives on that results.json.
#[test]
fn test_bottom_up_model_on_coco_ground_truth() {
    let dir = temp_dir("bottomup-test");
    let gt = repo("crates/posekit/tests/data/coco/test_coco.json");
    let images = repo("crates/posekit/tests/data/coco");
    let out = posekit(&[
        "test",
        "--model",
        "openpose-mobilenetv2",
        "--gt",
        gt.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let ap_line = text
        .lines()
        .find(|l| l.contains("(AP) @[ IoU=0.50:0.95 | area=   all"))
        .expect("AP line");
    let ap: f64 = ap_line.rsplit('=').next().unwrap().trim().parse().unwrap();
    assert!(
        ap > 0.0,
        "the real model finds some of the 12 people: {text}"
    );
    let results = dir.join("results.json");
    let eval = posekit(&[
        "eval",
        "coco",
        "--gt",
        gt.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
        "--json",
    ]);
    assert!(eval.status.success(), "{}", stderr(&eval));
    let stats: serde_json::Value = serde_json::from_str(stdout(&eval).trim()).unwrap();
    assert!(
        (stats["AP"].as_f64().unwrap() - ap).abs() < 5e-4,
        "{ap} vs {}",
        stats["AP"]
    );

    // A top-down preset cannot be tested without its config (which supplies the boxes).
    let out = posekit(&[
        "test",
        "--model",
        "hrnet-w32",
        "--weights",
        gt.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    std::fs::remove_dir_all(&dir).ok();
}
