//! Property-based tests of the weights readers (issue 7, item 10): `.pth` files of both formats
//! and safetensors, mutated and truncated. Zip checkpoints are also rebuilt around a mutated
//! `data.pkl` (otherwise the zip CRC stops nearly every edit before the pickle machine), and
//! random opcode streams are run as pickles. No panic; every error is one line naming the file.
//! `cargo test -p posekit-nn --test fuzz_weights -- --ignored` runs 100,000 cases per reader.

#[path = "../../posekit-core/tests/support/fuzz.rs"]
mod fuzz;

use std::io::{Cursor, Read, Write};
use std::path::Path;

use posekit_nn::weights::safetensors_io::parse_safetensors;
use posekit_nn::weights::{parse_pth, parse_pth_selected, Item, KeyMap};
use rand::Rng;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/pth")
            .join(name),
    )
    .unwrap()
}

const PTH_SEEDS: [&str; 7] = [
    "flat_zip.pth",
    "flat_legacy.pth",
    "flat_zip_proto4.pth",
    "nested_zip.pth",
    "nested_legacy.pth",
    "metadata_zip.pth",
    "mmpose_v1.pth",
];

/// The members of a zip checkpoint, in order.
fn members(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().to_string(), data)
        })
        .collect()
}

fn zip_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in members {
        zip.start_file(name.as_str(), stored).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Pickle opcodes with plausible arguments, so random streams get past the first byte.
fn random_pickle(rng: &mut fuzz::ChaCha8Rng) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    for _ in 0..rng.random_range(1..40) {
        match rng.random_range(0..14) {
            0 => p.push(b'('),
            1 => p.push(b'}'),
            2 => p.push(b']'),
            3 => p.push(b')'),
            4 => p.extend_from_slice(&[b'K', rng.random()]),
            5 => p.extend_from_slice(b"X\x01\x00\x00\x00a"),
            6 => p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n"),
            7 => p.extend_from_slice(b"ctorch\nFloatStorage\n"),
            8 => p.extend_from_slice(b"ccollections\nOrderedDict\n"),
            9 => p.push(
                [
                    b'R', b'Q', b't', b'u', b'l', b'e', b's', b'a', 0x85, 0x86, 0x87,
                ][rng.random_range(0..11)],
            ),
            10 => p.extend_from_slice(&[b'q', rng.random_range(0..4)]),
            11 => p.extend_from_slice(&[b'h', rng.random_range(0..4)]),
            12 => p.extend_from_slice(b"X\x07\x00\x00\x00storage"),
            _ => p.push(rng.random()),
        }
    }
    p.push(b'.');
    p
}

fn pth_case(
    rng: &mut fuzz::ChaCha8Rng,
    seeds: &[Vec<u8>],
    zips: &[Vec<(String, Vec<u8>)>],
) -> Vec<u8> {
    match rng.random_range(0..4) {
        // Rebuild a zip checkpoint around a mutated (or random) pickle.
        0 | 1 => {
            let mut members = zips[rng.random_range(0..zips.len())].clone();
            let pkl = members
                .iter_mut()
                .find(|(n, _)| n.ends_with("data.pkl"))
                .unwrap();
            pkl.1 = if rng.random_range(0..4) == 0 {
                random_pickle(rng)
            } else {
                fuzz::mutate_bytes(rng, &pkl.1)
            };
            // Sometimes also a storage member of another length.
            if rng.random_range(0..4) == 0 {
                let i = rng.random_range(0..members.len());
                members[i].1 = fuzz::mutate_bytes(rng, &members[i].1);
            }
            zip_of(&members)
        }
        _ => fuzz::mutated_seed(rng, seeds),
    }
}

fn pth(cases: usize, seed: u64) {
    let seeds: Vec<Vec<u8>> = PTH_SEEDS.iter().map(|n| data(n)).collect();
    let zips: Vec<Vec<(String, Vec<u8>)>> = seeds
        .iter()
        .filter(|s| s.starts_with(b"PK"))
        .map(|s| members(s))
        .collect();
    let key_map = KeyMap::default();
    let path = Path::new("w.pth");
    fuzz::run(
        "pth",
        "w.pth",
        cases,
        seed,
        |rng| pth_case(rng, &seeds, &zips),
        |bytes| {
            let whole = parse_pth(bytes, path).map_err(|e| e.to_string())?;
            // The two-step read the loaders use gives the same tensors for the container it
            // selects from the skeleton.
            let mut select = |skeleton: &Item| Ok(key_map.select_weights(skeleton).1);
            let selected =
                parse_pth_selected(bytes, path, Some(&mut select)).map_err(|e| e.to_string())?;
            let mut expected = whole.root.clone();
            for key in &selected.container {
                expected = expected.remove(key).unwrap();
            }
            if expected.tensors() != selected.root.tensors() {
                return Err("w.pth: the selected read differs from the whole read".into());
            }
            Ok(())
        },
    );
}

fn safetensors(cases: usize, seed: u64) {
    let seeds = vec![data("expected.safetensors")];
    let path = Path::new("w.safetensors");
    fuzz::run(
        "safetensors",
        "w.safetensors",
        cases,
        seed,
        |rng| fuzz::mutated_seed(rng, &seeds),
        |bytes| {
            parse_safetensors(bytes, path)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn pth_files_never_panic_and_errors_name_the_file() {
    pth(fuzz::DEFAULT_CASES, 4);
}

#[test]
fn safetensors_files_never_panic_and_errors_name_the_file() {
    safetensors(fuzz::DEFAULT_CASES, 5);
}

#[test]
#[ignore = "long: 100,000 cases"]
fn pth_files_long() {
    pth(fuzz::LONG_CASES, 104);
}

#[test]
#[ignore = "long: 100,000 cases"]
fn safetensors_files_long() {
    safetensors(fuzz::LONG_CASES, 105);
}
