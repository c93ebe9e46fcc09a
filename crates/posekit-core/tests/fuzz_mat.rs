//! Property-based tests of the MAT v5 reader and the MPII ground-truth loader (issue 7, item
//! 10): mutated and truncated real `gt_valid.mat` files, compressed and not, including edits
//! made *inside* the zlib streams (re-compressed, so that they reach the matrix parser instead
//! of stopping at the zlib checksum). No panic; every error is one line naming the file.
//! `cargo test -p posekit-core --test fuzz_mat -- --ignored` runs 100,000 cases.

#[path = "support/fuzz.rs"]
mod fuzz;

use std::io::{Read, Write};
use std::path::Path;

use posekit_core::formats::mat::MatFile;
use posekit_core::formats::mpii::MpiiGroundTruth;
use rand::Rng;

const SEEDS: [&str; 6] = [
    "gt_valid_subset_compressed.mat",
    "bad_dataset_joints.mat",
    "bad_headboxes_shape.mat",
    "bad_jnt_missing_value.mat",
    "bad_no_pos_gt_src.mat",
    "gt_valid_subset.mat",
];

const GT_VARIABLES: [&str; 4] = [
    "dataset_joints",
    "jnt_missing",
    "pos_gt_src",
    "headboxes_src",
];

fn seeds() -> Vec<Vec<u8>> {
    SEEDS
        .iter()
        .map(|n| {
            std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/data/mpii")
                    .join(n),
            )
            .unwrap()
        })
        .collect()
}

/// The file with one of its compressed variables inflated, mutated and deflated again;
/// `None` when the file has no (valid) compressed variable.
fn mutate_inside_zlib(rng: &mut fuzz::ChaCha8Rng, file: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 128;
    let mut compressed = Vec::new();
    while pos + 8 <= file.len() {
        let ty = u32::from_le_bytes(file[pos..pos + 4].try_into().unwrap());
        let len = u32::from_le_bytes(file[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let end = (pos + 8).checked_add(len)?.min(file.len());
        if ty == 15 {
            compressed.push((pos, end));
        }
        pos = if ty == 15 {
            end
        } else {
            end + (8 - len % 8) % 8
        };
    }
    let &(start, end) = compressed.get(rng.random_range(0..compressed.len().max(1)))?;
    let mut inner = Vec::new();
    flate2::read::ZlibDecoder::new(&file[start + 8..end])
        .read_to_end(&mut inner)
        .ok()?;
    let inner = fuzz::mutate_bytes(rng, &inner);
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&inner).unwrap();
    let z = enc.finish().unwrap();
    let mut out = file[..start].to_vec();
    out.extend_from_slice(&15u32.to_le_bytes());
    out.extend_from_slice(&(z.len() as u32).to_le_bytes());
    out.extend(z);
    out.extend_from_slice(&file[end..]);
    Some(out)
}

fn mat(cases: usize, seed: u64) {
    let seeds = seeds();
    fuzz::run(
        "mat",
        "gt.mat",
        cases,
        seed,
        |rng| {
            if rng.random_bool(0.5) {
                let seed = &seeds[rng.random_range(0..seeds.len())];
                if let Some(inside) = mutate_inside_zlib(rng, seed) {
                    return inside;
                }
            }
            fuzz::mutated_seed(rng, &seeds)
        },
        |bytes| {
            // Every variable, then only the ground truth's (what `eval mpii` reads), then
            // their interpretation.
            let all = MatFile::from_bytes("gt.mat", bytes);
            let selected = MatFile::from_bytes_selected("gt.mat", bytes, Some(&GT_VARIABLES))
                .map_err(|e| e.to_string())?;
            if let Ok(all) = &all {
                for name in GT_VARIABLES {
                    if all.get(name) != selected.get(name) {
                        return Err(format!("gt.mat: {name} differs when read alone"));
                    }
                }
            }
            MpiiGroundTruth::from_mat(&selected)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn mat_files_never_panic_and_errors_name_the_file() {
    mat(fuzz::DEFAULT_CASES, 3);
}

#[test]
#[ignore = "long: 100,000 cases"]
fn mat_files_long() {
    mat(fuzz::LONG_CASES, 103);
}
