//! Weight import/export against real `torch.save` output (fixtures written by
//! `tools/fixtures/make_pth_fixtures.py` with torch 2.11; see `tests/data/pth/README.md`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use posekit_nn::weights::{
    convert_checkpoint, load_into, load_weights, load_weights_with, parse_pth, read_pth,
    read_safetensors, read_weights, save_safetensors, DType, Item, KeyMap, LoadOptions, PthFormat,
    RawTensor, WeightsError, WeightsFormat,
};
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

/// The file the malicious fixtures' payload (`os.system("touch ...")`) would create.
const PAYLOAD_MARKER: &str = "/tmp/posekit-pth-fixture-payload-ran";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pth")
        .join(name)
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("posekit-weights-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn expected() -> HashMap<String, RawTensor> {
    read_safetensors(&data("expected.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

/// The fixture generator's `Tiny` module: conv (no bias) + BN + 1x1 head, named as in PyTorch.
fn tiny_model(joints: i64) -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let conv = nn::ConvConfig {
        padding: 1,
        bias: false,
        ..Default::default()
    };
    let _ = nn::conv2d(&root / "conv", 3, 4, 3, conv);
    let _ = nn::batch_norm2d(&root / "bn", 4, Default::default());
    let _ = nn::conv2d(&root / "final_layer", 4, joints, 1, Default::default());
    vs
}

const TINY_NAMES: [&str; 7] = [
    "bn.bias",
    "bn.running_mean",
    "bn.running_var",
    "bn.weight",
    "conv.weight",
    "final_layer.bias",
    "final_layer.weight",
];

fn assert_model_holds_expected(vs: &VarStore) {
    let expected = expected();
    let vars = vs.variables();
    assert_eq!(vars.len(), TINY_NAMES.len());
    for name in TINY_NAMES {
        let got = RawTensor::from_tch(&vars[name]).unwrap();
        assert_eq!(got, expected[name], "{name}");
    }
}

#[test]
fn flat_state_dicts_of_both_formats_match_the_expected_tensors_exactly() {
    let expected = expected();
    for (file, format) in [
        ("flat_zip.pth", PthFormat::Zip),
        ("flat_legacy.pth", PthFormat::Legacy),
        ("flat_zip_proto4.pth", PthFormat::Zip),
    ] {
        let ckpt = read_pth(&data(file)).unwrap();
        assert_eq!(ckpt.format, format, "{file}");
        let tensors = ckpt.root.tensors();
        assert_eq!(tensors.len(), expected.len(), "{file}");
        for (name, t) in tensors {
            let want = &expected[&name];
            // Bytes, dtype and shape: bit-exact, including f16/bf16, int64 extremes, bool,
            // the transpose, the two overlapping views of one storage, stride 0, 0-dim, empty.
            assert_eq!(t, want, "{file}: {name}");
        }
    }
    // The dtypes really are the ones torch wrote (not all converted to f32 on the way).
    let ckpt = read_pth(&data("flat_legacy.pth")).unwrap();
    let by_name: HashMap<String, &RawTensor> = ckpt.root.tensors().into_iter().collect();
    for (name, dtype) in [
        ("extra.f16", DType::F16),
        ("extra.bf16", DType::BF16),
        ("extra.f64", DType::F64),
        ("extra.i64", DType::I64),
        ("extra.i32", DType::I32),
        ("extra.i16", DType::I16),
        ("extra.i8", DType::I8),
        ("extra.u8", DType::U8),
        ("extra.bool", DType::Bool),
        ("bn.num_batches_tracked", DType::I64),
    ] {
        assert_eq!(by_name[name].dtype, dtype, "{name}");
    }
    assert_eq!(by_name["extra.transposed"].shape, vec![4, 3]);
    assert_eq!(by_name["extra.scalar"].shape, Vec::<usize>::new());
    assert_eq!(by_name["extra.empty"].shape, vec![0, 3]);
}

#[test]
fn tensors_convert_to_tch_with_their_values() {
    let ckpt = read_pth(&data("flat_zip.pth")).unwrap();
    let by_name: HashMap<String, &RawTensor> = ckpt.root.tensors().into_iter().collect();
    let i64s = by_name["extra.i64"].to_tch().unwrap();
    assert_eq!(i64s.kind(), Kind::Int64);
    assert_eq!(
        Vec::<i64>::try_from(&i64s).unwrap(),
        vec![-(1 << 40), -1, 0, 1, 1 << 40]
    );
    let bools = by_name["extra.bool"].to_tch().unwrap();
    assert_eq!(
        Vec::<bool>::try_from(&bools).unwrap(),
        vec![true, false, true]
    );
    let counter = by_name["bn.num_batches_tracked"].to_tch().unwrap();
    assert_eq!(counter.int64_value(&[]), 7);
    // The transpose materialised row-major equals torch's own contiguous copy.
    let t = by_name["extra.transposed"].to_tch().unwrap();
    let e = expected()["extra.transposed"].to_tch().unwrap();
    assert!(t.equal(&e));
}

#[test]
fn nested_training_checkpoints_load_with_their_metadata() {
    let expected = expected();
    for file in ["nested_zip.pth", "nested_legacy.pth"] {
        let ckpt = read_pth(&data(file)).unwrap();
        let root = &ckpt.root;
        assert_eq!(root.get("epoch"), Some(&Item::Int(3)), "{file}");
        let meta = root.get("meta").unwrap();
        assert_eq!(meta.get("name"), Some(&Item::Str("posekit fixture".into())));
        assert_eq!(
            meta.get("hash"),
            Some(&Item::Bytes(b"\x00\x01\xffbytes".to_vec()))
        );
        assert_eq!(meta.get("best_score"), Some(&Item::Float(0.75)));
        assert_eq!(meta.get("note"), Some(&Item::None));
        assert_eq!(
            meta.get("input_size"),
            Some(&Item::List(vec![Item::Int(256), Item::Int(192)]))
        );
        assert_eq!(
            meta.get("flags"),
            Some(&Item::List(vec![Item::Bool(true), Item::Bool(false)]))
        );
        // The optimizer state (integer keys, momentum buffers) is read too, and ignored by loads.
        let optimizer = root.get("optimizer").unwrap();
        assert!(optimizer
            .get("state")
            .unwrap()
            .get("0")
            .unwrap()
            .has_tensors());

        let file_weights = read_weights(&data(file), &KeyMap::default()).unwrap();
        assert_eq!(file_weights.container, vec!["state_dict".to_string()]);
        assert_eq!(file_weights.tensors.len(), expected.len());
        for (name, t) in &file_weights.tensors {
            let plain = name
                .strip_prefix("module.")
                .expect("DataParallel prefix kept in raw names");
            assert_eq!(t, &expected[plain], "{file}: {name}");
        }
    }
}

#[test]
fn malicious_pickles_are_refused_without_running_the_payload() {
    let _ = std::fs::remove_file(PAYLOAD_MARKER);
    for file in ["malicious_zip.pth", "malicious_legacy.pth"] {
        let path = data(file);
        let err = read_pth(&path).unwrap_err();
        match &err {
            WeightsError::ForbiddenGlobal {
                global, path: p, ..
            } => {
                assert_eq!(global, "posix.system");
                assert_eq!(p, &path);
            }
            other => panic!("{file}: expected a refused global, got {other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(file) && text.contains("posix.system"),
            "{text}"
        );
        assert!(
            text.contains("nothing from this file was executed"),
            "{text}"
        );
        // Through the high-level entry point too.
        let mut vs = tiny_model(2);
        assert!(matches!(
            load_weights(&mut vs, &path),
            Err(WeightsError::ForbiddenGlobal { .. })
        ));
    }
    assert!(!Path::new(PAYLOAD_MARKER).exists(), "the payload ran");
}

#[test]
fn truncated_and_corrupt_files_give_errors_naming_the_file() {
    for file in ["truncated_zip.pth", "truncated_legacy.pth"] {
        let err = read_pth(&data(file)).unwrap_err();
        assert!(matches!(err, WeightsError::Format { .. }), "{file}: {err}");
        assert!(err.to_string().contains(file), "{err}");
    }
    // Every cut of the legacy file and many cuts of the zip file fail cleanly, never panic.
    let dir = scratch("cuts");
    for file in ["flat_legacy.pth", "flat_zip.pth", "nested_legacy.pth"] {
        let bytes = std::fs::read(data(file)).unwrap();
        let step = if file.contains("zip") { 61 } else { 7 };
        for cut in (0..bytes.len()).step_by(step) {
            let path = dir.join(format!("cut_{cut}.pth"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let result = read_pth(&path);
            assert!(result.is_err(), "{file} cut at {cut} parsed");
            assert_eq!(result.unwrap_err().path(), path.as_path());
        }
        // Flipped bytes inside the storage area: either an error or (for data bytes) a parse;
        // never a panic.
        for at in (0..bytes.len()).step_by(step * 3) {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x5a;
            let path = dir.join("corrupt.pth");
            std::fs::write(&path, &corrupt).unwrap();
            let _ = read_pth(&path);
        }
    }
    let missing = dir.join("does-not-exist.pth");
    let err = read_pth(&missing).unwrap_err();
    assert!(matches!(err, WeightsError::Io { .. }));
    assert!(err.to_string().contains("does-not-exist.pth"), "{err}");
    let err = read_pth(&data("torchscript.pt")).unwrap_err();
    assert!(err.to_string().contains("TorchScript archive"), "{err}");
    let text = dir.join("notes.pth");
    std::fs::write(&text, "hello").unwrap();
    assert!(read_pth(&text)
        .unwrap_err()
        .to_string()
        .contains("not a PyTorch checkpoint"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mmpose_checkpoints_load_into_official_names() {
    for file in ["mmpose_v0.pth", "mmpose_v1.pth"] {
        let mut vs = tiny_model(2);
        let report = load_weights(&mut vs, &data(file)).unwrap();
        assert_eq!(report.loaded, 7, "{file}");
        assert_eq!(report.renamed, 7, "{file}");
        assert_eq!(
            report.dropped,
            vec!["backbone.bn.num_batches_tracked".to_string()]
        );
        assert_eq!(report.container, vec!["state_dict".to_string()]);
        assert_model_holds_expected(&vs);
    }
}

#[test]
fn non_strict_loads_list_what_they_skipped() {
    // The nested checkpoint holds the tiny model plus the `extra.*` tensors.
    let mut vs = tiny_model(2);
    let err = load_weights(&mut vs, &data("nested_legacy.pth")).unwrap_err();
    assert!(matches!(err, WeightsError::Mismatch { .. }), "{err}");
    let options = LoadOptions {
        strict: false,
        ..LoadOptions::default()
    };
    let report = load_weights_with(&mut vs, &data("nested_legacy.pth"), &options).unwrap();
    assert_eq!(report.loaded, 7);
    assert!(report.missing.is_empty());
    assert_eq!(report.unexpected.len(), 17);
    assert!(report.unexpected.iter().all(|k| k.starts_with("extra.")));
    assert_model_holds_expected(&vs);
}

#[test]
fn one_error_lists_missing_unexpected_and_mis_shaped_keys_and_changes_nothing() {
    let mut vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let a = root.zeros("a", &[2]);
    let _b = root.zeros("b", &[3]);
    let _c = (&root / "layer").zeros("c", &[2, 2]);
    let tensors = HashMap::from([
        (
            "a".to_string(),
            Tensor::ones([2], (Kind::Float, Device::Cpu)),
        ),
        (
            "layer.c".to_string(),
            Tensor::ones([3, 2], (Kind::Float, Device::Cpu)),
        ),
        (
            "d".to_string(),
            Tensor::ones([1], (Kind::Float, Device::Cpu)),
        ),
    ]);
    let source = Path::new("some/checkpoint.pth");
    let err = load_into(&mut vs, tensors, source).unwrap_err();
    let WeightsError::Mismatch { mismatch, path } = &err else {
        panic!("{err}")
    };
    assert_eq!(path, source);
    assert_eq!(mismatch.missing, vec!["b".to_string()]);
    assert_eq!(mismatch.unexpected, vec!["d".to_string()]);
    assert_eq!(mismatch.mis_shaped.len(), 1);
    assert_eq!(mismatch.mis_shaped[0].name, "layer.c");
    assert_eq!(mismatch.mis_shaped[0].checkpoint, vec![3, 2]);
    assert_eq!(mismatch.mis_shaped[0].model, vec![2, 2]);
    let text = err.to_string();
    assert!(
        text.starts_with("some/checkpoint.pth: checkpoint does not match the model"),
        "{text}"
    );
    for part in [
        "1 missing key: b",
        "1 unexpected key: d",
        "layer.c (checkpoint [3, 2], model [2, 2])",
    ] {
        assert!(text.contains(part), "{text}");
    }
    // All-or-nothing: `a` matched but was not written.
    assert_eq!(a.sum(Kind::Float).double_value(&[]), 0.0);
}

#[test]
fn a_real_checkpoint_against_a_wrong_model_reports_everything_at_once() {
    // 3 joints instead of 2, and an extra variable the checkpoint lacks.
    let mut vs = tiny_model(3);
    let _ = (vs.root() / "extra_head").zeros("weight", &[1]);
    let err = load_weights(&mut vs, &data("mmpose_v0.pth")).unwrap_err();
    let WeightsError::Mismatch { mismatch, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(mismatch.missing, vec!["extra_head.weight".to_string()]);
    let mis: Vec<&str> = mismatch
        .mis_shaped
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(mis, vec!["final_layer.bias", "final_layer.weight"]);
    assert!(err.to_string().contains("mmpose_v0.pth"));
}

#[test]
fn safetensors_export_round_trips_every_variable_including_bn_statistics() {
    let dir = scratch("export");
    let mut vs = tiny_model(2);
    load_weights(&mut vs, &data("mmpose_v1.pth")).unwrap();
    let out = dir.join("tiny.safetensors");
    assert_eq!(save_safetensors(&vs, &out).unwrap(), 7);
    let written: Vec<String> = read_safetensors(&out)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(written, TINY_NAMES.to_vec());
    let mut fresh = tiny_model(2);
    let report = load_weights(&mut fresh, &out).unwrap();
    assert_eq!((report.loaded, report.renamed), (7, 0));
    assert_model_holds_expected(&fresh);
    assert_eq!(
        read_weights(&out, &KeyMap::default()).unwrap().format,
        WeightsFormat::Safetensors
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn convert_checks_against_the_model_and_writes_its_variables() {
    let dir = scratch("convert");
    let vs = tiny_model(2);
    for file in ["mmpose_v0.pth", "flat_legacy.pth"] {
        let out = dir.join(format!("{file}.safetensors"));
        let result = convert_checkpoint(&data(file), &vs, &out);
        if file == "flat_legacy.pth" {
            // The `extra.*` tensors are unexpected: nothing may be written.
            let err = result.unwrap_err();
            assert!(err.to_string().contains("17 unexpected keys"), "{err}");
            assert!(!out.exists());
            continue;
        }
        let report = result.unwrap();
        assert_eq!(report.input_format, WeightsFormat::PthZip);
        assert_eq!(report.tensors, 7);
        assert_eq!(
            report.dropped,
            vec!["backbone.bn.num_batches_tracked".to_string()]
        );
        assert!(report.output_bytes > 0);
        let expected = expected();
        for (name, t) in read_safetensors(&out).unwrap() {
            assert_eq!(t, expected[&name], "{name}");
        }
    }
    // The model itself was not modified by convert.
    let conv = vs.variables()["conv.weight"].shallow_clone();
    assert!(!RawTensor::from_tch(&conv)
        .unwrap()
        .eq(&expected()["conv.weight"]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn metadata_objects_load_as_inert_values() {
    let ckpt = read_pth(&data("metadata_zip.pth")).unwrap();
    let meta = ckpt.root.get("meta").unwrap();
    assert_eq!(meta.get("best"), Some(&Item::Other("numpy scalar".into())));
    assert_eq!(meta.get("sigmas"), Some(&Item::Other("numpy array".into())));
    assert_eq!(
        meta.get("device"),
        Some(&Item::Other("torch.device".into()))
    );
    assert_eq!(
        meta.get("size"),
        Some(&Item::List(vec![Item::Int(2), Item::Int(3)]))
    );
    assert_eq!(
        meta.get("args"),
        Some(&Item::Other("argparse.Namespace".into()))
    );
    assert_eq!(meta.get("dtype"), Some(&Item::Other("torch.dtype".into())));
    // A tensor with a Python attribute comes through `_rebuild_from_type_v2`.
    let tensors = read_weights(&data("metadata_zip.pth"), &KeyMap::default())
        .unwrap()
        .tensors;
    assert_eq!(tensors.len(), 1);
    let (name, t) = &tensors[0];
    assert_eq!(name, "tagged");
    let values: Vec<f32> = Vec::try_from(&t.to_tch().unwrap()).unwrap();
    assert_eq!(values, vec![0.0, 1.0, 2.0, 3.0]);
}

#[test]
fn every_single_byte_corruption_of_a_legacy_file_is_handled_without_panicking() {
    // The legacy format has no checksum, so every flipped byte reaches the pickle machine or
    // the storage reader: each must give a value or an error, never a panic or a huge
    // allocation.
    let bytes = std::fs::read(data("flat_legacy.pth")).unwrap();
    let path = Path::new("flipped.pth");
    let mut errors = 0;
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= mask;
            if let Err(e) = parse_pth(&corrupt, path) {
                assert_eq!(e.path(), path);
                errors += 1;
            }
        }
    }
    // Most flips in the pickle area are caught; flips in tensor data are not detectable.
    assert!(errors > bytes.len() / 2, "{errors} errors");
}
