//! The ONNX Runtime backend (`--backend ort`, `PoseEstimatorBuilder::backend`) against
//! libtorch through the same pipelines: the bundled OpenPose-MobileNetV2's COCO test on the
//! repository's COCO pictures (AP and AR equal to 1e-3, the bar), a top-down model's
//! crops, flip test and decoding, and the errors of a model file that is not the preset's and
//! of a missing `libonnxruntime`.
//!
//! ONNX Runtime is the library of the `onnxruntime` wheel `scripts/setup.sh` installs into
//! `.venv` (or `ORT_DYLIB_PATH`).

mod common;

use posekit::estimator::{Backend, OrtSettings};
use posekit::pipelines::bottomup_test::run_bottomup_test;
use posekit::{PersonBox, PoseEstimator};
use posekit_core::codecs::heatmap::Refinement;

use common::*;

fn bundled(backend: Backend) -> PoseEstimator {
    PoseEstimator::builder("openpose-mobilenetv2")
        .backend(backend)
        .threads(2)
        .build()
        .unwrap()
}

#[test]
fn the_coco_test_of_the_shipped_model_gives_the_same_ap_on_both_backends() {
    let gt = data("coco/test_coco.json");
    let images = data("coco");
    let torch = bundled(Backend::Torch);
    let ort = bundled(Backend::Ort);
    assert_eq!(ort.backend(), Backend::Ort);
    let a = run_bottomup_test(&torch, &gt, &images, &scratch("ort-coco-torch")).unwrap();
    let b = run_bottomup_test(&ort, &gt, &images, &scratch("ort-coco-ort")).unwrap();
    eprintln!("libtorch: {a}\nonnxruntime: {b}");
    // The pictures have people the model finds: an AP of 0 on both would prove nothing.
    assert!(a.ap > 0.1, "{a}");
    assert!((a.ap - b.ap).abs() <= 1e-3, "AP {} vs {}", a.ap, b.ap);
    assert!((a.ar - b.ar).abs() <= 1e-3, "AR {} vs {}", a.ar, b.ar);

    // Picture by picture: the same people, joints where libtorch puts them (the maps differ by
    // float rounding; a peak that moves a whole map pixel would show here).
    let image = posekit::read_image(data("coco/000000196141.jpg")).unwrap();
    let p = torch.estimate(&image, None).unwrap();
    let q = ort.estimate(&image, None).unwrap();
    assert_eq!(p.len(), q.len());
    assert!(p.len() >= 2);
    for (p, q) in p.iter().zip(&q) {
        for (k, l) in p.keypoints.iter().zip(&q.keypoints) {
            assert_eq!(k.score > 0.0, l.score > 0.0, "{k:?} vs {l:?}");
            assert!(
                (k.x - l.x).abs() < 0.5 && (k.y - l.y).abs() < 0.5,
                "{k:?} vs {l:?}"
            );
        }
    }
}

#[test]
fn a_top_down_model_crops_flips_and_decodes_alike_on_both_backends() {
    let dir = scratch("ort-top-down");
    let (config, weights) = tiny_top_down(&dir, true);
    let image = posekit::read_image(data("coco/000000196141.jpg")).unwrap();
    let boxes = [
        PersonBox::new([100.0, 50.0, 120.0, 300.0]),
        PersonBox::new([350.0, 60.0, 120.0, 300.0]),
        PersonBox::new([20.0, 20.0, 200.0, 200.0]),
    ];
    let build = |backend| {
        PoseEstimator::from_config(&config)
            .weights(&weights)
            .backend(backend)
            // The config's DARK step divides by the Hessian of a random heatmap, which can be
            // near zero: the HRNet shift compares backends without that amplifier.
            .refinement(Refinement::Shift)
            .build()
            .unwrap()
    };
    let a = build(Backend::Torch)
        .estimate_detailed(&image, Some(&boxes), true)
        .unwrap();
    let b = build(Backend::Ort)
        .estimate_detailed(&image, Some(&boxes), true)
        .unwrap();
    assert_eq!(a.boxes, b.boxes);
    let (ma, mb) = (&a.maps[0].1, &b.maps[0].1);
    let scale = ma.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = ma
        .iter()
        .zip(mb.iter())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(scale > 1e-3, "flat heatmaps prove nothing");
    assert!(
        diff / scale < 1e-4,
        "flip-merged heatmaps differ by {diff} of {scale}"
    );
    // Joints to a tenth of a picture pixel: a crop's heatmap pixel is about 6 picture pixels
    // here, and the rounding of the maps above moves a sub-pixel refinement by up to ~0.01.
    assert_eq!(a.poses.len(), b.poses.len());
    for (p, q) in a.poses.iter().zip(&b.poses) {
        for (k, l) in p.keypoints.iter().zip(&q.keypoints) {
            assert!(
                (k.x - l.x).abs() < 0.1 && (k.y - l.y).abs() < 0.1,
                "{k:?} vs {l:?}"
            );
            // A joint's score is its map's maximum: as close as the maps.
            assert!((k.score - l.score).abs() <= 1e-4 * scale, "{k:?} vs {l:?}");
        }
    }
}

#[test]
fn a_model_file_that_is_not_the_presets_is_refused_with_what_differs() {
    let dir = scratch("ort-wrong-file");
    // Not ONNX at all.
    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, b"not a model").unwrap();
    let err = PoseEstimator::builder("openpose-mobilenetv2")
        .onnx_model(&junk)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("junk.onnx") && err.contains("not an ONNX model"),
        "{err}"
    );
    // The tiny top-down model's export given to the bundled model: another preset, another
    // input, other outputs; every difference is named.
    let (config, weights) = tiny_top_down(&dir, true);
    let onnx = dir.join("tiny.onnx");
    let (model, info, size) = posekit::pipelines::export::prepare_export(
        posekit::pipelines::export::ExportSource::Config(&config),
        posekit::pipelines::export::ExportWeights::File(&weights),
        None,
    )
    .unwrap();
    posekit_nn::export::export_network(
        model.net.as_ref(),
        &info,
        &posekit_nn::export::ExportOptions::new(size),
    )
    .unwrap()
    .write(&onnx)
    .unwrap();
    let err = PoseEstimator::builder("openpose-mobilenetv2")
        .onnx_model(&onnx)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tiny.onnx")
            && err.contains("is not a openpose-mobilenetv2 model")
            && err.contains("exported from preset hrnet-w32")
            && err.contains("no output `heatmaps`") | err.contains("output `heatmaps`"),
        "{err}"
    );
    // The right model file runs, and at the crop size of its config only.
    let est = PoseEstimator::from_config(&config)
        .weights(&weights)
        .onnx_model(&onnx)
        .build()
        .unwrap();
    let image = posekit::read_image(data("coco/000000196141.jpg")).unwrap();
    let people = est
        .estimate(&image, Some(&[PersonBox::new([100.0, 50.0, 120.0, 300.0])]))
        .unwrap();
    assert_eq!(people.len(), 1);
    // The ONNX backend runs on the CPU only, and a zero thread count is refused.
    let Err(err) = posekit::estimator::backend::use_onnx_runtime_for_preset(
        model,
        &OrtSettings {
            threads: Some(0),
            model: None,
        },
        None,
    ) else {
        panic!("a zero thread count was accepted");
    };
    let err = err.to_string();
    assert!(err.contains("thread count"), "{err}");
}

#[test]
fn a_missing_onnx_runtime_says_how_to_install_it() {
    let dir = scratch("ort-missing-lib");
    let o = posekit_cmd()
        .args([
            "infer",
            path_str(&data("infer/astronaut.jpg")),
            "--out",
            path_str(&dir.join("out")),
            "--backend",
            "ort",
            "--no-progress",
        ])
        .env("ORT_DYLIB_PATH", dir.join("no-such-libonnxruntime.so"))
        .output()
        .unwrap();
    assert_clean_failure(&o, "a missing libonnxruntime");
    let text = text_of(&o);
    assert!(
        text.contains("no-such-libonnxruntime.so") && text.contains("scripts/setup.sh"),
        "{text}"
    );
}

#[test]
fn infer_runs_on_onnx_runtime() {
    let dir = scratch("ort-infer");
    let out = dir.join("out");
    let o = posekit_cmd()
        .args([
            "infer",
            path_str(&data("infer/astronaut.jpg")),
            "--out",
            path_str(&out),
            "--backend",
            "ort",
            "--threads",
            "2",
            "--no-progress",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text_of(&o));
    assert_eq!(results(&out).len(), 1, "{}", text_of(&o));
}

/// `--backend auto` (the default) runs ONNX Runtime on the CPU where its library loads, and
/// libtorch where it does not (no error: the choice is the faster engine, not a requirement);
/// the start line says which ran, and both find the same person.
#[test]
fn the_default_engine_is_onnx_runtime_on_the_cpu_and_libtorch_without_it() {
    let dir = scratch("ort-auto");
    let run = |name: &str, lib: Option<std::path::PathBuf>| {
        let out = dir.join(name);
        let mut cmd = posekit_cmd();
        cmd.args([
            "infer",
            path_str(&data("infer/astronaut.jpg")),
            "--out",
            path_str(&out),
            "--no-progress",
        ]);
        if let Some(lib) = lib {
            cmd.env("ORT_DYLIB_PATH", lib);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", text_of(&o));
        (text_of(&o), results(&out))
    };
    let (with_ort, found) = run("auto", None);
    assert!(
        with_ort.contains("openpose-mobilenetv2 on ONNX Runtime"),
        "{with_ort}"
    );
    let (without, found_torch) = run("no-lib", Some(dir.join("no-such-libonnxruntime.so")));
    assert!(
        without.contains("openpose-mobilenetv2 on libtorch"),
        "{without}"
    );
    assert_eq!(found.len(), 1, "{with_ort}");
    assert_eq!(found_torch.len(), 1, "{without}");
    assert_eq!(Backend::default(), Backend::Auto);
    assert_eq!(bundled(Backend::Auto).backend(), Backend::Ort);
}
