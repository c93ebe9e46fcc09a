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

fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    let Some(lib) = torch_lib_dir() else {
        println!("cargo:warning=could not locate torch's lib/ directory; binaries will need LD_LIBRARY_PATH");
        return;
    };
    let lib = lib.display();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&format!("{lib}/libtorch_cuda.so")).exists() {
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
