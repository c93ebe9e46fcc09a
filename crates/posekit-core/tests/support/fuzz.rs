//! A tiny property-based testing kit for the parsers of users' files (issue 7, item 10),
//! shared by the `fuzz_*.rs` tests of every crate (included with `#[path]`): seeded ChaCha
//! inputs, byte-level mutation of real files, and a driver that runs a parser on each input
//! under `catch_unwind` and checks that it never panics and that every error is one line naming
//! the file. No dependency beyond `rand`/`rand_chacha`.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

use rand::{Rng, SeedableRng};
pub use rand_chacha::ChaCha8Rng;

/// Cases per parser in the default suite (seconds in all).
pub const DEFAULT_CASES: usize = 3_000;
/// Cases per parser in the `#[ignore]` runs (`cargo test --test fuzz_... -- --ignored`).
pub const LONG_CASES: usize = 100_000;

/// Values that break length fields and ranges more often than random ones.
const INTERESTING_U32: [u32; 10] = [
    0,
    1,
    2,
    7,
    0x7f,
    0x80,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// One to four random edits of `input`: bit flips, interesting bytes and 32-bit words, random
/// or copied insertions, deletions, truncation.
pub fn mutate_bytes(rng: &mut ChaCha8Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let edits = rng.random_range(1..=4);
    for _ in 0..edits {
        let len = out.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] = [0u8, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'-', b'"', b'\n']
                    [rng.random_range(0..10)];
            }
            2 if len >= 4 => {
                let i = rng.random_range(0..=len - 4);
                let v = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
                let bytes = if rng.random_bool(0.5) {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                out[i..i + 4].copy_from_slice(&bytes);
            }
            3 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..=16);
                let extra: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                out.splice(i..i, extra);
            }
            4 if len > 0 => {
                // A copy of another part of the input: duplicated records, repeated tokens.
                let from = rng.random_range(0..len);
                let n = rng.random_range(1..=64).min(len - from);
                let chunk = out[from..from + n].to_vec();
                let at = rng.random_range(0..=len);
                out.splice(at..at, chunk);
            }
            5 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=16).min(len - i);
                out.drain(i..i + n);
            }
            6 => {
                let cut = rng.random_range(0..=len);
                out.truncate(cut);
            }
            _ if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] = rng.random();
            }
            _ => out.push(rng.random()),
        }
    }
    out
}

/// What a fuzz run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub cases: usize,
    pub accepted: usize,
    pub refused: usize,
}

/// Runs `parse` on `cases` inputs made by `make`. A panic, or an error that is not one line
/// naming `file`, fails the test after the run, with the offending inputs saved under the temp
/// folder for reproduction. Prints the counts and the time (a figure, not an assertion).
pub fn run(
    label: &str,
    file: &str,
    cases: usize,
    seed: u64,
    mut make: impl FnMut(&mut ChaCha8Rng) -> Vec<u8>,
    parse: impl Fn(&[u8]) -> Result<(), String>,
) -> Outcome {
    let mut rng = rng(seed);
    let mut outcome = Outcome::default();
    let mut failures = Vec::new();
    let start = Instant::now();
    for case in 0..cases {
        let input = make(&mut rng);
        outcome.cases += 1;
        let problem = match catch_unwind(AssertUnwindSafe(|| parse(&input))) {
            Ok(Ok(())) => {
                outcome.accepted += 1;
                None
            }
            Ok(Err(message)) => {
                outcome.refused += 1;
                if message.contains('\n') || !message.contains(file) {
                    Some(format!("error not one line naming {file}: {message:?}"))
                } else {
                    None
                }
            }
            Err(panic) => Some(format!(
                "panic: {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or(panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(not a string)")
            )),
        };
        if let Some(problem) = problem {
            if failures.len() < 10 {
                let saved = save(label, case, &input);
                failures.push(format!("case {case} ({}): {problem}", saved.display()));
            }
        }
    }
    eprintln!(
        "fuzz {label}: {} cases ({} accepted, {} refused) in {:.2} s",
        outcome.cases,
        outcome.accepted,
        outcome.refused,
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{label}: {} bad cases, first ones:\n{}",
        failures.len(),
        failures.join("\n")
    );
    outcome
}

fn save(label: &str, case: usize, input: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join("posekit-fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{label}-{case}.bin"));
    let _ = std::fs::write(&path, input);
    path
}

/// Picks one of `seeds` and mutates it (or, one time in eight, only truncates it).
pub fn mutated_seed(rng: &mut ChaCha8Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let seed = &seeds[rng.random_range(0..seeds.len())];
    if rng.random_range(0..8) == 0 {
        let cut = rng.random_range(0..=seed.len());
        seed[..cut].to_vec()
    } else {
        mutate_bytes(rng, seed)
    }
}
