// Shared by the build scripts of every crate whose binaries (programs, tests, benches) call
// libtorch. Included with `include!`, so it is plain functions, no crate.
//
// Two things the default link does not give us:
// * an rpath to torch's `lib/`, so that binaries run without LD_LIBRARY_PATH;
// * `libtorch_cuda.so` kept as a dependency: nothing references its symbols directly, so the
//   default `--as-needed` drops it, and then CUDA is silently unavailable (seen on the H100).

fn torch_lib_dir() -> Option<std::path::PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(std::path::PathBuf::from(dir).join("lib"));
    }
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    Some(std::path::PathBuf::from(dir))
}

/// Which of a crate's link targets keep `libtorch_cuda.so` linked.
#[allow(dead_code)] // each build script uses one of the two
enum LinkScope {
    /// Every binary, test, example and bench of the crate.
    All,
    /// The named binaries and the named kinds of target (`tests`, `examples`, `benches`: cargo
    /// refuses a kind the crate lacks) only: the crate's other binaries call no libtorch code
    /// and so, with the default `--as-needed`, load no libtorch library at all (posekit's front
    /// binary, which runs `eval` and `--help`).
    Only {
        bins: &'static [&'static str],
        kinds: &'static [&'static str],
    },
}

fn link_libtorch(scope: LinkScope) {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    let Some(lib) = torch_lib_dir() else {
        println!("cargo:warning=could not locate torch's lib/ directory; binaries will need LD_LIBRARY_PATH");
        return;
    };
    let lib = lib.display();
    // The rpath goes to every target (the library's own unit tests included, which no
    // `rustc-link-arg-*` kind names): it only says where to look, so a binary that needs no
    // libtorch still loads none.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let mut args = vec![];
    if std::path::Path::new(&format!("{lib}/libtorch_cuda.so")).exists() {
        args.push(format!("-L{lib}"));
        args.push("-Wl,--no-as-needed,-ltorch_cuda,--as-needed".to_string());
    }
    for arg in &args {
        match scope {
            LinkScope::All => println!("cargo:rustc-link-arg={arg}"),
            LinkScope::Only { bins, kinds } => {
                for kind in kinds {
                    println!("cargo:rustc-link-arg-{kind}={arg}");
                }
                for bin in bins {
                    println!("cargo:rustc-link-arg-bin={bin}={arg}");
                }
            }
        }
    }
}
