//! OpenPose's training sample against a NumPy/OpenCV/pycocotools re-implementation of the
//! CMU-style generator (`tools/fixtures/make_paf_training_fixtures.py`) at fixed augmentation,
//! on three of the repo's COCO val2017 pictures: CMU-18 heatmaps with the background, PAFs and
//! the ignore mask compared in full, the network input at sampled positions. Under
//! `rules = "cmu"`, the same against a NumPy re-implementation of CMU's C++ generator
//! (`tools/fixtures/make_paf_cmu_fixtures.py`) on five crops of three pictures. Also: the layout
//! conversion and its refusal, an unreadable picture skipped and counted by the loader.

use std::path::{Path, PathBuf};

use ndarray::Array3;
use posekit::pipelines::data::paf::{PafAugmentation, PafInput, PafItem};
use posekit::pipelines::data::{
    read_rgb_checked, BottomUpDataConfig, LoadMode, Loader, LoaderOptions, PafAugmentConfig,
    PafDataConfig, PafDataset, PafFraming, PafSample,
};
use posekit_core::codecs::paf::PafTargetRules;
use serde_json::Value;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn coco_json() -> PathBuf {
    data("coco/test_coco.json")
}

fn config(crop: [usize; 2], framing: PafFraming) -> BottomUpDataConfig {
    let mut bu = BottomUpDataConfig::new(64);
    bu.input_size = crop[1];
    bu.paf = Some(PafDataConfig {
        crop_width: Some(crop[0]),
        augmentation: PafAugmentConfig {
            framing,
            ..PafAugmentConfig::default()
        },
        ..PafDataConfig::default()
    });
    bu
}

fn dense(v: &Value, len: usize) -> Vec<f64> {
    let mut out = vec![0.0; len];
    let idx = v["index"].as_array().unwrap();
    let val = v["value"].as_array().unwrap();
    for (i, x) in idx.iter().zip(val) {
        out[i.as_u64().unwrap() as usize] = x.as_f64().unwrap();
    }
    out
}

fn compare(name: &str, got: impl Iterator<Item = f64>, want: &[f64], tol: f64) {
    let mut worst = (0usize, 0.0f64);
    let mut n = 0;
    for (i, (g, w)) in got.zip(want).enumerate() {
        n += 1;
        let d = (g - w).abs();
        if d > worst.1 {
            worst = (i, d);
        }
    }
    assert_eq!(n, want.len(), "{name}: length");
    assert!(
        worst.1 <= tol,
        "{name}: largest difference {} at flat index {} (got vs fixture)",
        worst.1,
        worst.0
    );
}

/// A fixture case's crop size `[w, h]` and framing.
fn crop_and_framing(case: &Value) -> ([usize; 2], PafFraming) {
    let crop = [
        case["crop"][0].as_u64().unwrap() as usize,
        case["crop"][1].as_u64().unwrap() as usize,
    ];
    let framing = match case["framing"].as_str().unwrap() {
        "person" => PafFraming::Person,
        _ => PafFraming::Picture,
    };
    (crop, framing)
}

/// The sample of a fixture case (its picture, main person and fixed augmentation), and the
/// output map size `[w, h]` the fixture gives, checked against the sample's heatmaps and PAFs.
fn fixture_sample(ds: &PafDataset, case: &Value) -> (PafSample, [usize; 2]) {
    let id = case["image_id"].as_i64().unwrap();
    let image_index = ds.images().iter().position(|im| im.image_id == id).unwrap();
    let item = PafItem {
        image: image_index,
        person: case["person"].as_u64().map(|p| p as usize),
    };
    assert!(
        ds.items().contains(&item),
        "image {id}: {item:?} is a sample"
    );
    let aug = fixture_augmentation(case);
    let image = read_rgb_checked(&ds.images()[image_index].image_path).unwrap();
    let s = ds.make_sample(item, &image, &aug).unwrap();
    let [gw, gh] = [
        case["map"][0].as_u64().unwrap() as usize,
        case["map"][1].as_u64().unwrap() as usize,
    ];
    assert_eq!(s.heatmaps.dim(), (19, gh, gw));
    assert_eq!(s.pafs.dim(), (38, gh, gw));
    (s, [gw, gh])
}

/// The fixed augmentation a fixture case was made with.
fn fixture_augmentation(case: &Value) -> PafAugmentation {
    PafAugmentation {
        scale: case["scale"].as_f64().unwrap(),
        rotation: case["rotation"].as_f64().unwrap(),
        shift: [
            case["shift"][0].as_f64().unwrap(),
            case["shift"][1].as_f64().unwrap(),
        ],
        flip: case["flip"].as_bool().unwrap(),
    }
}

#[test]
fn targets_masks_and_input_match_the_numpy_generator() {
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(data("paf/paf_pipeline.json")).unwrap())
            .unwrap();
    for case in fx["cases"].as_array().unwrap() {
        let id = case["image_id"].as_i64().unwrap();
        let (crop, framing) = crop_and_framing(case);
        let input = match case["style"].as_str().unwrap() {
            "cmu" => PafInput::CmuBgr,
            _ => PafInput::TfPoseBgr,
        };
        let ds = PafDataset::coco(
            &coco_json(),
            &data("coco"),
            &config(crop, framing),
            input,
            8,
        )
        .unwrap();
        let (s, [gw, gh]) = fixture_sample(&ds, case);
        assert_eq!(s.mask.dim(), (gh, gw));
        let plane = gw * gh;
        let hm = dense(&case["heatmaps"], 18 * plane);
        compare(
            &format!("{id} heatmaps"),
            s.heatmaps.iter().take(18 * plane).map(|&v| v as f64),
            &hm,
            1e-5,
        );
        let bg = dense(&case["background_complement"], plane);
        compare(
            &format!("{id} background"),
            s.heatmaps.iter().skip(18 * plane).map(|&v| 1.0 - v as f64),
            &bg,
            1e-5,
        );
        let pafs = dense(&case["pafs"], 38 * plane);
        compare(
            &format!("{id} pafs"),
            s.pafs.iter().map(|&v| v as f64),
            &pafs,
            1e-5,
        );
        let mask = dense(&case["mask_complement"], plane);
        compare(
            &format!("{id} mask"),
            s.mask.iter().map(|&v| 1.0 - v as f64),
            &mask,
            1e-6,
        );
        // The input: the same OpenCV warp rounded to u8; the JPEG decoders may differ by a
        // level on a few pixels.
        let step = if input == PafInput::CmuBgr {
            1.0 / 256.0
        } else {
            1.0
        };
        let mut off = 0;
        let positions = case["input_positions"].as_array().unwrap();
        for (p, v) in positions
            .iter()
            .zip(case["input_values"].as_array().unwrap())
        {
            let d = (s.input[p.as_u64().unwrap() as usize] as f64 - v.as_f64().unwrap()).abs();
            assert!(d <= 2.0 * step + 1e-4, "image {id}: input at {p}: {d}");
            if d > 1e-4 {
                off += 1;
            }
        }
        assert!(
            off * 20 <= positions.len(),
            "image {id}: {off} inputs differ"
        );
    }
}

/// CMU's rules (`rules = "cmu"`) against the NumPy re-implementation of CMU's
/// `generateLabelMap` / `putGaussianMaps` / `putVecMaps`, in full. Tolerance 1e-6: both sides
/// compute in f32 with the same operations in the same order (the C++'s float arithmetic), so
/// what is left is `exp` (NumPy's and Rust's float `exp` may differ by an ulp, 6e-8 at 1) and
/// the fixture's 7 stored decimals (5e-8); a pixel on the wrong side of a limb's distance test
/// or box edge, or a Gaussian kept instead of summed, would differ by far more. The mask of the
/// person cases is CMU's `mask_miss` chain made by OpenCV 4.10 itself (cubic resize, cubic
/// rotation, crop/pad, flip, cubic resize to 1/8): bytes divided by 255, so 1e-6 means the same
/// byte everywhere (one grey level is 3.9e-3); the picture case keeps posekit's mask. The person
/// cases' joints go through CMU's chain too (float scale, double rotation, rounded crop offset).
#[test]
fn cmu_rules_match_the_numpy_cmu_generator() {
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(data("paf/paf_cmu_targets.json")).unwrap())
            .unwrap();
    assert_eq!(fx["rules"], "cmu");
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    let mut worst = [0f64; 4];
    for case in cases {
        let id = case["image_id"].as_i64().unwrap();
        let (crop, framing) = crop_and_framing(case);
        let mut bu = config(crop, framing);
        bu.paf.as_mut().unwrap().rules = PafTargetRules::Cmu;
        let ds = PafDataset::coco(&coco_json(), &data("coco"), &bu, PafInput::CmuBgr, 8).unwrap();
        let (s, [gw, gh]) = fixture_sample(&ds, case);
        let plane = gw * gh;
        let checks: [(&str, Vec<f64>, Vec<f64>); 4] = [
            (
                "heatmaps",
                s.heatmaps
                    .iter()
                    .take(18 * plane)
                    .map(|&v| v as f64)
                    .collect(),
                dense(&case["heatmaps"], 18 * plane),
            ),
            (
                "background",
                s.heatmaps
                    .iter()
                    .skip(18 * plane)
                    .map(|&v| 1.0 - v as f64)
                    .collect(),
                dense(&case["background_complement"], plane),
            ),
            (
                "pafs",
                s.pafs.iter().map(|&v| v as f64).collect(),
                dense(&case["pafs"], 38 * plane),
            ),
            (
                "mask",
                s.mask.iter().map(|&v| 1.0 - v as f64).collect(),
                dense(&case["mask_complement"], plane),
            ),
        ];
        for (k, (name, got, want)) in checks.iter().enumerate() {
            let d = got
                .iter()
                .zip(want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0, f64::max);
            worst[k] = worst[k].max(d);
            compare(
                &format!("{id} {name} (cmu)"),
                got.iter().copied(),
                want,
                1e-6,
            );
        }
    }
    eprintln!(
        "CMU rules vs NumPy: max |diff| heatmaps {:.2e}, background {:.2e}, pafs {:.2e}, mask {:.2e}",
        worst[0], worst[1], worst[2], worst[3]
    );
}

/// CMU's augmentation chain (`Transform_nv`: cubic resize by the float scale, cubic rotation into
/// the rotated picture's bounding box, crop/pad about the rounded centre, flip; what `rules =
/// "cmu"` applies to the picture with border 128 and to `mask_miss` with 255) against OpenCV
/// 4.10 running CMU's calls, on a texture of each picture's size with each person case's box and
/// draws (a texture rather than the JPEG, so that no decoder takes part): exact, every pixel
/// counted through its row and column sums, and the green channel every 16 pixels.
#[test]
fn cmu_chain_matches_opencv_on_a_texture() {
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(data("paf/paf_cmu_targets.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for case in fx["cases"].as_array().unwrap() {
        let Some(want) = case.get("cmu_chain_texture") else {
            assert_eq!(
                case["framing"], "picture",
                "person cases carry the chain check"
            );
            continue;
        };
        let id = case["image_id"].as_i64().unwrap();
        let crop = [
            case["crop"][0].as_u64().unwrap() as usize,
            case["crop"][1].as_u64().unwrap() as usize,
        ];
        let mut bu = config(crop, PafFraming::Person);
        bu.paf.as_mut().unwrap().rules = PafTargetRules::Cmu;
        let ds = PafDataset::coco(&coco_json(), &data("coco"), &bu, PafInput::CmuBgr, 8).unwrap();
        let image = ds.images().iter().position(|im| im.image_id == id).unwrap();
        let item = PafItem {
            image,
            person: case["person"].as_u64().map(|p| p as usize),
        };
        let aug = fixture_augmentation(case);
        let steps = ds.cmu_steps(item, &aug).expect("cmu rules, person framing");
        let (w, h) = (
            ds.images()[image].width as usize,
            ds.images()[image].height as usize,
        );
        let texture = Array3::from_shape_fn((h, w, 3), |(y, x, k)| {
            ((x * (7 + k) + y * (13 - 2 * k) + (x * y) % (31 + k)) % 256) as u8
        });
        let out = steps.apply(texture.view(), 128).unwrap();
        assert_eq!(out.dim(), (crop[1], crop[0], 3));
        let ints = |v: &Value| -> Vec<i64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect()
        };
        let rows: Vec<i64> = out
            .outer_iter()
            .map(|r| r.iter().map(|&v| v as i64).sum())
            .collect();
        let columns: Vec<i64> = (0..crop[0])
            .map(|x| {
                out.slice(ndarray::s![.., x, ..])
                    .iter()
                    .map(|&v| v as i64)
                    .sum()
            })
            .collect();
        let green: Vec<i64> = out
            .slice(ndarray::s![..;16, ..;16, 1])
            .iter()
            .map(|&v| v as i64)
            .collect();
        for (name, got, want) in [
            ("row sums", rows, ints(&want["row_sums"])),
            ("column sums", columns, ints(&want["column_sums"])),
            ("green every 16", green, ints(&want["green_every_16"])),
        ] {
            let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(got.len(), want.len(), "{id} {name}: lengths");
            assert_eq!(bad, 0, "{id} {name}: {bad} of {} differ", want.len());
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} person cases");
}

/// genJSON.m's rule: a main person whose box centre lies within 0.3 x the larger box side of
/// an *earlier main* person's centre is no main person; a person dropped by it does not
/// count for later ones.
#[test]
fn main_people_too_close_to_an_earlier_one_are_dropped() {
    let mut gt: Value =
        serde_json::from_str(&std::fs::read_to_string(coco_json()).unwrap()).unwrap();
    let id = 197388;
    gt["images"] = Value::Array(
        gt["images"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|im| im["id"] == id)
            .cloned()
            .collect(),
    );
    let mut anns: Vec<Value> = gt["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["image_id"] == id)
        .cloned()
        .collect();
    assert_eq!(anns.len(), 5);
    // Centres (150, 200) side 200 (radius 60); (200, 200): 50 from the first, dropped;
    // (220, 200): 70 from the first, kept, though 20 from the dropped one; (245, 200): 25 from
    // the third (radius 30), dropped; the fifth far away, kept.
    let boxes = [
        [100.0, 100.0, 100.0, 200.0],
        [150.0, 150.0, 100.0, 100.0],
        [170.0, 150.0, 100.0, 100.0],
        [195.0, 150.0, 100.0, 100.0],
        [500.0, 100.0, 100.0, 200.0],
    ];
    for (a, b) in anns.iter_mut().zip(boxes) {
        a["bbox"] = serde_json::json!(b);
        assert!(a["num_keypoints"].as_u64().unwrap() >= 5 && a["area"].as_f64().unwrap() >= 1024.0);
    }
    gt["annotations"] = Value::Array(anns);
    let path =
        std::env::temp_dir().join(format!("posekit_paf_too_close_{}.json", std::process::id()));
    std::fs::write(&path, gt.to_string()).unwrap();
    let people = |distance: f64| {
        let mut bu = config([368, 368], PafFraming::Person);
        bu.paf.as_mut().unwrap().augmentation.min_main_distance = distance;
        let ds = PafDataset::coco(&path, &data("coco"), &bu, PafInput::CmuBgr, 8).unwrap();
        ds.items()
            .iter()
            .map(|it| it.person.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(people(0.0), vec![0, 1, 2, 3, 4]);
    assert_eq!(people(0.3), vec![0, 2, 4]);
    std::fs::remove_file(&path).ok();
}

#[test]
fn layouts_convert_to_cmu18_or_are_refused() {
    // COCO-17 -> CMU-18: the neck between the shoulders, labelled when both are.
    let mut bu = config([64, 64], PafFraming::Picture);
    bu.paf.as_mut().unwrap().augmentation = PafAugmentConfig::none(PafFraming::Picture);
    let ds = PafDataset::coco(&coco_json(), &data("coco"), &bu, PafInput::CmuBgr, 8).unwrap();
    let im = &ds.images()[0];
    let image = Array3::<u8>::zeros((im.height as usize, im.width as usize, 3));
    let s = ds
        .make_sample(
            PafItem {
                image: 0,
                person: None,
            },
            &image,
            &PafAugmentation::IDENTITY,
        )
        .unwrap();
    let coco = &im.joints;
    let (sx, sy) = (64.0 / im.width as f32, 64.0 / im.height as f32);
    for p in 0..coco.dim().0 {
        let (l, r) = (coco[[p, 5, 2]] > 0.0, coco[[p, 6, 2]] > 0.0);
        let neck = s.people[[p, 1, 2]] > 0.0;
        assert_eq!(
            neck,
            l && r,
            "person {p}: neck labelled iff both shoulders are"
        );
        if neck {
            let x = (coco[[p, 5, 0]] + coco[[p, 6, 0]]) / 2.0;
            let want = (x + 0.5) * sx - 0.5;
            assert!((s.people[[p, 1, 0]] - want).abs() < 1e-3);
        }
        // CMU's right shoulder (2) is COCO's 6.
        if coco[[p, 6, 2]] > 0.0 {
            let want = (coco[[p, 6, 1]] + 0.5) * sy - 0.5;
            assert!((s.people[[p, 2, 1]] - want).abs() < 1e-3);
        }
    }
    // MPII's layout has no eyes or ears: refused, naming them.
    bu.layout = "mpii16".into();
    let err = PafDataset::coco(&coco_json(), &data("coco"), &bu, PafInput::CmuBgr, 8)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mpii16") && err.contains("right_eye") && err.contains("CMU-18"),
        "{err}"
    );
    // The tf-pose network's multiple of 16.
    let bu = config([200, 368], PafFraming::Person);
    let err = PafDataset::coco(&coco_json(), &data("coco"), &bu, PafInput::TfPoseBgr, 16)
        .unwrap_err()
        .to_string();
    assert!(err.contains("crop_width") && err.contains("16"), "{err}");
}

#[test]
fn an_unreadable_picture_is_skipped_and_counted() {
    let dir = std::env::temp_dir().join(format!("posekit_paf_unreadable_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(data("coco")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "jpg") {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(dir.join("000000040083.jpg"), b"not a jpeg").unwrap();
    let mut bu = config([64, 64], PafFraming::Picture);
    bu.paf.as_mut().unwrap().augmentation = PafAugmentConfig::none(PafFraming::Picture);
    let ds = PafDataset::coco(&coco_json(), &dir, &bu, PafInput::TfPoseBgr, 16).unwrap();
    assert_eq!(ds.len(), 4);
    let loader = Loader::new(
        std::sync::Arc::new(ds),
        LoaderOptions {
            batch_size: 4,
            num_workers: 1,
            prefetch_batches: 1,
            drop_last: false,
        },
    )
    .unwrap()
    .with_skip_warning(std::sync::Arc::new(|_, _| {}));
    let mut epoch = loader.epoch(LoadMode::Train { seed: 0, epoch: 0 });
    let batch = epoch.next().unwrap().unwrap();
    assert_eq!(batch.batch_size, 3);
    assert_eq!(batch.skipped, 1);
    assert_eq!(batch.inputs.len(), 3 * 3 * 64 * 64);
    assert_eq!(batch.heatmaps.len(), 3 * 19 * 8 * 8);
    assert_eq!(batch.pafs.len(), 3 * 38 * 8 * 8);
    std::fs::remove_dir_all(&dir).ok();
}

/// `posekit browse` on an OpenPose config (the tiny one with CMU's person framing and random
/// augmentation): the crop with its people, the heatmaps and the PAFs as pictures, and the
/// tensors the loss reads, equal to the dataset's sample.
#[test]
fn browse_draws_the_paf_targets_and_writes_the_loss_tensors() {
    use posekit::pipelines::browse::{
        browse, read_tensors, BrowseOptions, BrowseSplit, TensorData,
    };
    use posekit::pipelines::config::ExperimentConfig;
    use posekit::pipelines::train::paf_task::paf_dataset;

    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut text =
        std::fs::read_to_string(repo.join("configs/tiny_openpose_coco_test.toml")).unwrap();
    text = text.replace(
        "../crates/posekit/tests/data/coco",
        data("coco").to_str().unwrap(),
    );
    assert!(text.contains("framing = \"picture\""));
    text = text.replace("framing = \"picture\"", "framing = \"person\"");
    text = text.replace("max_rotate = 0.0", "max_rotate = 40.0");
    text = text.replace("flip_prob = 0.0", "flip_prob = 0.5");
    let cfg =
        ExperimentConfig::from_toml_str(&text, Path::new("tiny.toml"), Path::new("/")).unwrap();
    let out = std::env::temp_dir().join(format!("posekit_paf_browse_{}", std::process::id()));
    let summary = browse(
        &cfg,
        &BrowseOptions {
            split: BrowseSplit::Train,
            count: 2,
            augment: true,
            tensors: true,
            out_dir: out.clone(),
        },
    )
    .unwrap();
    assert_eq!(summary.samples.len(), 2);
    let ds = paf_dataset(
        &cfg,
        cfg.dataset.train_annotations.as_ref().unwrap(),
        cfg.dataset.train_images.as_ref().unwrap(),
    )
    .unwrap();
    let [w, h] = ds.crop_size();
    for (i, browsed) in summary.samples.iter().enumerate() {
        let want = ds
            .load(
                i,
                LoadMode::Train {
                    seed: cfg.train.seed,
                    epoch: 0,
                },
            )
            .unwrap();
        for suffix in ["input", "heatmaps", "pafs"] {
            let pic = out.join(format!("{}_{suffix}.png", browsed.name));
            let img = read_rgb_checked(&pic).unwrap();
            assert_eq!(img.dim(), (h, w, 3), "{}", pic.display());
            if suffix == "pafs" {
                // Some cells carry a field's colour: not a grey (dimmed) pixel.
                let coloured = img
                    .outer_iter()
                    .flat_map(|row| {
                        row.outer_iter()
                            .map(|p| (p[0], p[1], p[2]))
                            .collect::<Vec<_>>()
                    })
                    .filter(|&(r, g, b)| r != g || g != b)
                    .count();
                assert!(coloured > 0, "{}: no PAF drawn", pic.display());
            }
        }
        let got = read_tensors(&out.join(format!("{}.safetensors", browsed.name))).unwrap();
        let f = |name: &str| match &got[name].data {
            TensorData::F32(v) => v.clone(),
            TensorData::I64(_) => panic!("{name}: expected f32"),
        };
        assert_eq!(f("input"), want.input);
        assert_eq!(
            f("heatmaps"),
            want.heatmaps.iter().copied().collect::<Vec<_>>()
        );
        assert_eq!(f("pafs"), want.pafs.iter().copied().collect::<Vec<_>>());
        assert_eq!(f("mask"), want.mask.iter().copied().collect::<Vec<_>>());
        assert_eq!(got["pafs"].shape, vec![38, h / 8, w / 8]);
    }
    std::fs::remove_dir_all(&out).ok();
}
