//! `posekit-engine`: the whole command line in one process linked with libtorch (CUDA
//! included). Users run `posekit`, which hands it every command that runs a network; it can
//! also be run directly, with the same arguments.

#[path = "../cli/mod.rs"]
mod cli;

use clap::Parser;

fn main() {
    // The front `exec`s this binary under its own process id; take its name back, so that ps,
    // top, pgrep and launchers' logs show the program the user started (`posekit`), as the
    // front's design promises ("as if it were one program").
    // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            c"posekit".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    let cli = cli::Cli::parse();
    cli::finish(cli::run(cli.command));
}
