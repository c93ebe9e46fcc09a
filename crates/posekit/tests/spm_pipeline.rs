//! SPM's training sample against an independent NumPy re-implementation
//! (`tools/fixtures/make_spm_pipeline_fixtures.py`) at fixed augmentation: the ignore mask, the
//! root map, the hierarchical displacements and their weights on real COCO pictures and
//! annotations (crowds, unlabelled people, flips); an unreadable image skipped and counted by
//! the loader; batches in the loss's layout; a layout that is not the model's refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array3, Axis};
use posekit::pipelines::config::ExperimentConfig;
use posekit::pipelines::data::bottomup_config::ScaleType;
use posekit::pipelines::data::spm::{SpmDataset, SpmTrainConfig};
use posekit::pipelines::data::{
    read_rgb_checked, BottomUpAugmentation, BottomUpDataConfig, BottomUpDataset, LoadMode, Loader,
    LoaderOptions, SampleSource,
};
use posekit_core::codecs::spm::SpmOverlap;
use serde_json::Value;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn fixture() -> Value {
    let text = std::fs::read_to_string(data("bottomup/spm_pipeline.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn runs(bits: impl Iterator<Item = u8>) -> Vec<u64> {
    let (mut out, mut cur, mut n) = (Vec::new(), 0u8, 0u64);
    for v in bits {
        if v == cur {
            n += 1;
        } else {
            out.push(n);
            cur = v;
            n = 1;
        }
    }
    out.push(n);
    out
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn targets_and_masks_equal_the_numpy_reference() {
    let fx = fixture();
    let input_size = fx["input_size"].as_u64().unwrap() as usize;
    let mut shared_pixels_checked = 0;
    for case in fx["cases"].as_array().unwrap() {
        let id = case["image_id"].as_i64().unwrap();
        let mut cfg = BottomUpDataConfig::new(input_size);
        cfg.augmentation.scale_type = match case["scale_type"].as_str().unwrap() {
            "short" => ScaleType::Short,
            _ => ScaleType::Long,
        };
        let spm = SpmTrainConfig {
            root_joints: u64s(&case["root_joints"])
                .into_iter()
                .map(|j| j as usize)
                .collect(),
            overlap: match case["overlap"].as_str().unwrap() {
                "average" => SpmOverlap::Average,
                _ => SpmOverlap::Nearest,
            },
            ..SpmTrainConfig::default()
        };
        // The fixture uses the paper's defaults.
        assert!((spm.root_sigma - fx["root_sigma"].as_f64().unwrap()).abs() < 1e-12);
        assert_eq!(spm.radius, fx["radius"].as_f64().unwrap());
        let repo = case["source"] == "repo";
        let base = if repo {
            BottomUpDataset::coco(&data("coco/test_coco.json"), &data("coco"), &cfg)
        } else {
            // Masks and targets depend on the annotations and the picture size only.
            BottomUpDataset::coco(
                &data("bottomup/coco_mini_subset.json"),
                Path::new("coco-mini-images-not-needed"),
                &cfg,
            )
        }
        .unwrap();
        let ds = SpmDataset::new(base, spm).unwrap();
        assert_eq!(ds.output_size() as u64, fx["output_size"].as_u64().unwrap());
        let im = ds
            .base()
            .images()
            .iter()
            .find(|im| im.image_id == id)
            .unwrap();
        let image = if repo {
            read_rgb_checked(&im.image_path).unwrap()
        } else {
            Array3::zeros((im.height as usize, im.width as usize, 3))
        };
        let t = f64s(&case["translate"]);
        let aug = BottomUpAugmentation {
            scale: case["scale"].as_f64().unwrap(),
            rotation: case["rotation"].as_f64().unwrap(),
            translate: [t[0] as i64, t[1] as i64],
            flip: case["flip"].as_bool().unwrap(),
        };
        let sample = ds.make_sample(im, &image, &aug).unwrap();
        let what = format!("image {id}");

        // Mask and every joint's weights: bit for bit.
        let mask_runs = runs(sample.mask.iter().map(|&v| (v > 0.5) as u8));
        assert_eq!(mask_runs, u64s(&case["mask_runs"]), "{what}: mask");
        let w = &sample.targets.weights;
        for (j, want) in case["weight_runs"].as_array().unwrap().iter().enumerate() {
            let got = runs(w.index_axis(Axis(0), j).iter().map(|&v| (v > 0.5) as u8));
            assert_eq!(got, u64s(want), "{what}: weights of joint {j}");
        }
        assert!(w.iter().all(|&v| v == 0.0 || v == 1.0));

        // Root map: sum and sampled values.
        let root = &sample.targets.root_heatmap;
        let sum: f64 = root.iter().map(|&v| v as f64).sum();
        let want_sum = case["root_sum"].as_f64().unwrap();
        assert!(
            (sum - want_sum).abs() < 1e-4 * (1.0 + want_sum),
            "{what}: root sum {sum} vs {want_sum}"
        );
        let flat: Vec<f32> = root.iter().copied().collect();
        for (p, v) in u64s(&case["root_positions"])
            .iter()
            .zip(f64s(&case["root_values"]))
        {
            assert!(
                (flat[*p as usize] as f64 - v).abs() < 1e-6,
                "{what}: root at {p}"
            );
        }

        // Displacements: per-channel sums and sampled values where defined.
        let d = &sample.targets.displacements;
        for (c, s) in f64s(&case["displacement_sums"]).iter().enumerate() {
            let got: f64 = d.index_axis(Axis(0), c).iter().map(|&v| v as f64).sum();
            assert!(
                (got - s).abs() < 1e-4 * (1.0 + s.abs()),
                "{what}: displacement channel {c} sum {got} vs {s}"
            );
        }
        let flat: Vec<f32> = d.iter().copied().collect();
        let positions = u64s(&case["displacement_positions"]);
        assert!(!positions.is_empty());
        for (p, v) in positions.iter().zip(f64s(&case["displacement_values"])) {
            assert!(
                (flat[*p as usize] as f64 - v).abs() < 1e-6,
                "{what}: displacement at {p}: {} vs {v}",
                flat[*p as usize]
            );
        }
        // Pixels that several people's disks share, where the overlap rule decides.
        let shared = u64s(&case["shared_positions"]);
        assert_eq!(shared.is_empty(), case["shared_pixels"] == 0);
        for (p, v) in shared.iter().zip(f64s(&case["shared_values"])) {
            assert!(
                (flat[*p as usize] as f64 - v).abs() < 1e-6,
                "{what}: shared pixel {p}: {} vs {v}",
                flat[*p as usize]
            );
        }
        shared_pixels_checked += shared.len();
    }
    // Both overlap rules were exercised on shared pixels (the crowded picture has thousands).
    assert!(shared_pixels_checked >= 400);
}

fn tiny_dataset(images: &Path, spm: SpmTrainConfig) -> SpmDataset {
    let cfg = BottomUpDataConfig::new(128);
    let base = BottomUpDataset::coco(&data("coco/test_coco.json"), images, &cfg).unwrap();
    SpmDataset::new(base, spm).unwrap()
}

#[test]
fn batches_have_the_loss_layout_and_draws_are_reproducible() {
    let ds = tiny_dataset(&data("coco"), SpmTrainConfig::default());
    assert_eq!(ds.len(), 4);
    let mode = LoadMode::Train { seed: 3, epoch: 7 };
    let a = ds.load(2, mode).unwrap();
    assert_eq!(
        a,
        ds.load(2, mode).unwrap(),
        "a pure function of (seed, epoch, index)"
    );
    // The same draw as HigherHRNet's sample of that image.
    let bu = ds.base().load(2, mode).unwrap();
    assert_eq!(a.augmentation, bu.augmentation);
    assert_eq!(a.input, bu.input);
    let batch = ds.collate(1, vec![a, ds.load(0, LoadMode::Eval).unwrap()], 1);
    let (r, k) = (32, 17);
    assert_eq!((batch.batch_size, batch.skipped, batch.size), (2, 1, r));
    assert_eq!(batch.inputs.len(), 2 * 3 * 128 * 128);
    assert_eq!(batch.roots.len(), 2 * r * r);
    assert_eq!(batch.masks.len(), 2 * r * r);
    assert_eq!(batch.displacements.len(), 2 * 2 * k * r * r);
    assert_eq!(batch.weights.len(), 2 * k * r * r);
    assert!(batch.weights.contains(&1.0));
}

#[test]
fn unreadable_images_are_skipped_and_counted() {
    let tmp = std::env::temp_dir().join(format!("posekit-spm-unreadable-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for name in ["000000197388.jpg", "000000196141.jpg", "000000000785.jpg"] {
        std::fs::copy(data("coco").join(name), tmp.join(name)).unwrap();
    }
    // 000000040083.jpg truncated to half.
    let bytes = std::fs::read(data("coco/000000040083.jpg")).unwrap();
    std::fs::write(tmp.join("000000040083.jpg"), &bytes[..bytes.len() / 2]).unwrap();
    let ds = Arc::new(tiny_dataset(&tmp, SpmTrainConfig::default()));
    let bad = ds
        .base()
        .images()
        .iter()
        .position(|im| im.image_id == 40083)
        .unwrap();
    let err = ds.load(bad, LoadMode::Eval).unwrap_err();
    assert!(err.is_unreadable_image(), "{err}");
    assert!(err.to_string().contains("000000040083.jpg"), "{err}");
    let loader = Loader::new(
        Arc::clone(&ds),
        LoaderOptions {
            batch_size: 2,
            num_workers: 2,
            prefetch_batches: 2,
            drop_last: false,
        },
    )
    .unwrap()
    .with_skip_warning(Arc::new(|_, _| {}));
    let mut batches = loader.epoch(LoadMode::Train { seed: 1, epoch: 0 });
    let mut loaded = Vec::new();
    for batch in batches.by_ref() {
        loaded.extend(batch.unwrap().image_ids);
    }
    assert_eq!(loaded.len(), 3);
    assert!(!loaded.contains(&40083));
    assert_eq!(batches.skipped(), 1);
    assert_eq!(batches.skipped_indices(), [bad]);
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn bad_spm_settings_and_layouts_are_refused_with_the_key() {
    let base = r#"
[model]
preset = "spm-hrnet-w32"
[model.hrnet]
width = 4
modules = [1, 1, 1]
blocks = 1
[dataset]
format = "coco"
val_annotations = "v.json"
val_images = "v"
[bottomup]
input_size = 128
"#;
    let parse =
        |text: &str| ExperimentConfig::from_toml_str(text, Path::new("spm.toml"), Path::new("."));
    let cfg = parse(base).unwrap();
    let model = cfg
        .model
        .build(&cfg.layout().unwrap(), tch::Device::Cpu)
        .unwrap();
    assert_eq!(model.preset.name, "spm-hrnet-w32");
    assert_eq!(
        parse(&format!("{base}[bottomup.spm]\noverlap = \"nearest\"\n"))
            .unwrap()
            .bottomup
            .and_then(|b| b.spm)
            .map(|spm| spm.overlap),
        Some(SpmOverlap::Nearest)
    );
    for (extra, key) in [
        ("[bottomup.spm]\nradius = 0.0\n", "bottomup.spm.radius"),
        (
            "[bottomup.spm]\nroot_joints = [17]\n",
            "bottomup.spm.root_joints",
        ),
        ("[bottomup.spm]\nsigma = 2.0\n", "sigma"),
        ("[bottomup.spm]\noverlap = \"max\"\n", "average"),
    ] {
        let err = parse(&format!("{base}{extra}")).unwrap_err().report();
        assert!(
            err.contains(key) && err.contains("spm.toml"),
            "{key}: {err}"
        );
    }
    // [bottomup.spm] on a HigherHRNet preset.
    let err = parse(&format!(
        "{}[bottomup.spm]\n",
        base.replace("spm-hrnet-w32", "higherhrnet-w32")
    ))
    .unwrap_err()
    .report();
    assert!(
        err.contains("[bottomup.spm]") && err.contains("higherhrnet-w32"),
        "{err}"
    );
    // A 14-joint layout for a COCO-17 SPM model: refused, naming both layouts.
    let cfg = parse(&base.replace(
        "input_size = 128",
        "input_size = 128\nlayout = \"crowdpose14\"",
    ))
    .unwrap();
    let err = cfg
        .model
        .build(&cfg.layout().unwrap(), tch::Device::Cpu)
        .err()
        .unwrap()
        .report();
    assert!(
        err.contains("coco17") && err.contains("crowdpose14"),
        "{err}"
    );
    // The HRNet override on the hourglass preset.
    let cfg = parse(&base.replace("spm-hrnet-w32", "spm-hourglass")).unwrap();
    let err = cfg
        .model
        .build(&cfg.layout().unwrap(), tch::Device::Cpu)
        .err()
        .unwrap()
        .report();
    assert!(
        err.contains("model.hrnet") && err.contains("spm-hourglass"),
        "{err}"
    );
}
