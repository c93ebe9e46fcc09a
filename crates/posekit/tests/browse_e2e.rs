//! `posekit browse` end to end through the binary on the repo's tiny configs (the 4 COCO images
//! of `tests/data/coco`): the pictures and tensor files are named by image id (top-down: image
//! id and annotation id), and the tensor files hold exactly the dataset's sample tensors, with
//! the epoch-0 augmentation of the config's seed or with every random part at identity.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use posekit::pipelines::browse::{read_tensors, TensorData};
use posekit::pipelines::config::ExperimentConfig;
use posekit::pipelines::data::{BottomUpDataset, LoadMode};
use posekit::pipelines::test::test_dataset;
use posekit::pipelines::train::task::{bottomup_dataset, topdown_train_dataset};

/// The tiny HigherHRNet config with absolute data paths and the official random augmentation
/// switched on (so the augmented samples really differ from the identity ones).
fn tiny_bottomup_config(dir: &Path) -> PathBuf {
    let mut text =
        std::fs::read_to_string(repo("configs/tiny_higherhrnet_coco_test.toml")).unwrap();
    text = text.replace("../crates/posekit/tests/data/coco", path_str(&data("coco")));
    for (from, to) in [
        ("max_rotation = 0.0", "max_rotation = 30.0"),
        ("min_scale = 1.0", "min_scale = 0.75"),
        ("max_scale = 1.0", "max_scale = 1.5"),
        ("flip_prob = 0.0", "flip_prob = 0.5"),
    ] {
        assert!(text.contains(from), "the tiny config has no `{from}`");
        text = text.replace(from, to);
    }
    let path = dir.join("tiny_bu.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn f32s(t: &TensorData) -> &[f32] {
    match t {
        TensorData::F32(v) => v,
        TensorData::I64(_) => panic!("expected f32"),
    }
}

fn i64s(t: &TensorData) -> &[i64] {
    match t {
        TensorData::I64(v) => v,
        TensorData::F32(_) => panic!("expected i64"),
    }
}

fn browse(config: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "browse",
        path_str(config),
        "--out",
        path_str(out),
        "--tensors",
    ];
    args.extend_from_slice(extra);
    let o = posekit(&args);
    assert!(o.status.success(), "{}", text_of(&o));
    assert!(stdout(&o).contains("samples written"), "{}", text_of(&o));
}

fn check_bottomup(ds: &BottomUpDataset, out: &Path, n: usize, mode: LoadMode) {
    for i in 0..n {
        let want = ds.load(i, mode).unwrap();
        let id = want.image_id;
        for suffix in ["input", "heatmaps_48", "heatmaps_96"] {
            let pic = out.join(format!("{id}_{suffix}.png"));
            let img = image::open(&pic).unwrap_or_else(|e| panic!("{}: {e}", pic.display()));
            assert_eq!((img.width(), img.height()), (192, 192), "{}", pic.display());
        }
        let got = read_tensors(&out.join(format!("{id}.safetensors"))).unwrap();
        assert_eq!(got.len(), 1 + 3 * want.targets.len(), "{:?}", got.keys());
        assert_eq!(got["input"].shape, vec![3, 192, 192]);
        assert_eq!(f32s(&got["input"].data), want.input.as_slice());
        for t in &want.targets {
            let r = t.size;
            let h = &got[&format!("heatmaps_{r}")];
            assert_eq!(h.shape, vec![17, r, r]);
            assert_eq!(
                f32s(&h.data),
                t.heatmaps.iter().copied().collect::<Vec<_>>()
            );
            let m = &got[&format!("mask_{r}")];
            assert_eq!(m.shape, vec![r, r]);
            // Logical (row-major) order: an augmented mask may be a non-standard-layout array.
            assert_eq!(f32s(&m.data), t.mask.iter().copied().collect::<Vec<_>>());
            let j = &got[&format!("joints_{r}")];
            assert_eq!(j.shape, vec![30, 17, 2]);
            assert_eq!(i64s(&j.data), t.joints.iter().copied().collect::<Vec<_>>());
        }
    }
}

#[test]
fn bottomup_browse_writes_the_loss_tensors_augmented_and_not() {
    let dir = scratch("browse-bu");
    let config = tiny_bottomup_config(&dir);
    let cfg = ExperimentConfig::load(&config).unwrap().config;
    let d = &cfg.dataset;
    let ds = bottomup_dataset(
        &cfg,
        d.train_annotations.as_ref().unwrap(),
        d.train_images.as_ref().unwrap(),
    )
    .unwrap();

    let aug = dir.join("aug");
    browse(&config, &aug, &["--n", "2"]);
    check_bottomup(
        &ds,
        &aug,
        2,
        LoadMode::Train {
            seed: cfg.train.seed,
            epoch: 0,
        },
    );
    // Only the first two samples: 3 pictures and a tensor file each.
    assert_eq!(std::fs::read_dir(&aug).unwrap().count(), 2 * 4);

    let plain = dir.join("plain");
    browse(
        &config,
        &plain,
        &["--n", "4", "--no-augment", "--split", "val"],
    );
    check_bottomup(&ds, &plain, 4, LoadMode::Eval);
    let a = read_tensors(&aug.join("785.safetensors")).unwrap();
    let p = read_tensors(&plain.join("785.safetensors")).unwrap();
    assert_ne!(a["input"], p["input"], "the augmentation changed nothing");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn topdown_browse_names_samples_by_image_and_annotation() {
    let dir = scratch("browse-td");
    let config = tiny_hrnet_config(&dir, &[]);
    let cfg = ExperimentConfig::load(&config).unwrap().config;
    let gt: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cfg.dataset.train_annotations.as_ref().unwrap()).unwrap(),
    )
    .unwrap();

    for (split, extra, n) in [("train", vec![], 3), ("val", vec!["--no-augment"], 3)] {
        let out = dir.join(split);
        let mut args = vec!["--split", split, "--n", "3"];
        args.extend(extra.iter().copied());
        browse(&config, &out, &args);
        let (ds, mode) = if split == "train" {
            (
                topdown_train_dataset(&cfg).unwrap(),
                LoadMode::Train {
                    seed: cfg.train.seed,
                    epoch: 0,
                },
            )
        } else {
            (test_dataset(&cfg).unwrap(), LoadMode::Eval)
        };
        for i in 0..n {
            let want = ds.load(i, mode).unwrap();
            let inst = ds.instance(i).unwrap();
            let ann_id = gt["annotations"][inst.source_index]["id"].as_i64().unwrap();
            let name = format!("{}_{ann_id}", inst.image_id);
            for suffix in ["input", "heatmaps"] {
                assert!(
                    out.join(format!("{name}_{suffix}.png")).is_file(),
                    "{name}_{suffix}"
                );
            }
            let got = read_tensors(&out.join(format!("{name}.safetensors"))).unwrap();
            assert_eq!(got.len(), 3);
            let [w, h] = cfg.data.input_size;
            let [hw, hh] = cfg.data.heatmap_size;
            assert_eq!(got["input"].shape, vec![3, h, w]);
            assert_eq!(f32s(&got["input"].data), want.input.as_slice());
            assert_eq!(got["heatmaps"].shape, vec![17, hh, hw]);
            assert_eq!(f32s(&got["heatmaps"].data), want.target.as_slice());
            assert_eq!(got["target_weight"].shape, vec![17, 1]);
            assert_eq!(
                f32s(&got["target_weight"].data),
                want.target_weight.as_slice()
            );
        }
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), n * 3);
    }
    std::fs::remove_dir_all(&dir).ok();
}
