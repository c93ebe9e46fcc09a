//! `posekit`, the front of the command line.
//!
//! libtorch's libraries cost about 0.4 s and 470 MB to load (its CUDA library most of it), so
//! the commands that run no network (`eval`, `--help`, `--version`, argument errors) run here,
//! in a binary that links no libtorch at all. Every other command is parsed here too (so its
//! errors and help are immediate) and then handed, arguments unchanged, to `posekit-engine`
//! beside this binary by `exec`: same process id, signals and exit code, as if it were one
//! program. The engine keeps the explicit `libtorch_cuda` link that makes `--device cuda` work
//! (see build-support/libtorch_link.rs).

// The front compiles the whole command line (for parsing and help) but runs only the commands
// that need no engine; the others' run functions are the engine's.
#[allow(dead_code)]
mod cli;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The engine binary's file name, looked for in this binary's own folder.
const ENGINE: &str = "posekit-engine";

fn main() {
    // Only what is named here is linked into this binary: naming `cli::run` would pull in every
    // command, and libtorch with them.
    match cli::Cli::parse().command {
        cli::Command::Eval(cmd) => cli::finish(cli::eval::run(cmd)),
        command => cli::finish(exec_engine(command.runs_onnx_runtime())),
    }
}

/// Replaces this process with `posekit-engine` and the same arguments; returns only on error.
///
/// With ONNX Runtime running the network (`onnx_runtime`), libtorch's OpenMP is told to wait
/// passively (`OMP_WAIT_POLICY=PASSIVE`, unless the user set it): its threads, woken by the
/// glue around each run, otherwise spin on the cores ONNX Runtime's own pool is using.
/// Measured on the 2-core dev box with 2 threads (BENCHMARKS.md): HRNet-W32 75 ms instead of
/// 83, the shipped OpenPose-MobileNetV2 25 ms instead of 31, which is ONNX Runtime's speed from
/// Python. The variable must be set before libgomp loads, hence here and not in the library.
fn exec_engine(onnx_runtime: bool) -> anyhow::Result<()> {
    let engine = engine_path()?;
    let mut command = std::process::Command::new(&engine);
    command.args(std::env::args_os().skip(1));
    if onnx_runtime && std::env::var_os("OMP_WAIT_POLICY").is_none() {
        command.env("OMP_WAIT_POLICY", "PASSIVE");
    }
    let err = command.exec();
    Err(err).with_context(|| format!("cannot start {}", engine.display()))
}

fn engine_path() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot locate the posekit binary")?;
    let engine = me.with_file_name(ENGINE);
    anyhow::ensure!(
        engine.is_file(),
        "{} is missing: posekit runs networks through {ENGINE}, built beside it \
         (cargo build --release --bins, or cargo install --path crates/posekit)",
        engine.display()
    );
    Ok(engine)
}
