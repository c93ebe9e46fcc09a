//! Compiles the C++ shim over libtorch's c10d (`csrc/`) with the `cc` crate, against the torch
//! wheel's headers, the way torch-sys compiles tch's own `libtch/torch_api.cpp`: C++17 and the
//! wheel's `_GLIBCXX_USE_CXX11_ABI`.
//!
//! * Gloo: the wheel has Gloo compiled into libtorch_cpu.so but does not ship Gloo's headers,
//!   which c10d's ProcessGroupGloo.hpp includes. They are looked for in `GLOO_INCLUDE_DIR`,
//!   then the system's include directories (Debian's `libgloo-dev`, which scripts/setup.sh
//!   installs). Without them the shim is built without Gloo and says so at run time.
//! * NCCL: compiled in when the headers allow it: the CUDA wheel's `nvidia/nccl/include` and
//!   `nvidia/cu*/include`, plus the CUDA runtime's `crt/` and libcu++'s `nv/` headers, which
//!   the wheel does not depend on (pip packages nvidia-cuda-crt and nvidia-cuda-cccl install
//!   them into the same `nvidia/cu*/include`; `POSEKIT_DIST_CUDA_INCLUDE` adds directories).
//!   `POSEKIT_DIST_NCCL=0` leaves NCCL out, `=1` makes its absence a build error.

use std::path::{Path, PathBuf};

include!("../../build-support/libtorch_link.rs");

fn main() {
    link_libtorch(LinkScope::All);
    for var in [
        "LIBTORCH",
        "LIBTORCH_CXX11_ABI",
        "GLOO_INCLUDE_DIR",
        "POSEKIT_DIST_NCCL",
        "POSEKIT_DIST_CUDA_INCLUDE",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    for file in [
        "posekit_dist.h",
        "internal.hpp",
        "posekit_dist.cpp",
        "posekit_dist_nccl.cpp",
    ] {
        println!("cargo:rerun-if-changed=csrc/{file}");
    }

    let torch = torch_dir().unwrap_or_else(|| {
        panic!("posekit-dist: cannot find libtorch; set LIBTORCH (see README.md, scripts/setup.sh)")
    });
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .warnings(false)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .include(torch.join("include"))
        .include(torch.join("include/torch/csrc/api/include"))
        .file("csrc/posekit_dist.cpp");

    match gloo_include_dir() {
        Some(dir) => {
            build.define("USE_C10D_GLOO", None);
            // A system directory is already searched; naming it again with -I would change
            // the order of the C++ library's own headers.
            if !is_system_include(&dir) {
                build.include(dir);
            }
        }
        None => println!(
            "cargo:warning=posekit-dist: Gloo's headers not found (install libgloo-dev or set \
             GLOO_INCLUDE_DIR); building without the Gloo process group"
        ),
    }

    let nccl = std::env::var("POSEKIT_DIST_NCCL").unwrap_or_default();
    if nccl != "0" {
        match nccl_include_dirs(&torch) {
            Ok(dirs) => {
                build
                    .define("USE_C10D_NCCL", None)
                    .define("POSEKIT_DIST_WITH_NCCL", None);
                build.includes(dirs).file("csrc/posekit_dist_nccl.cpp");
                // ProcessGroupNCCL is in libtorch_cuda (which torch-sys links); the shim also
                // calls c10::cuda's device functions, which torch-sys does not link.
                println!("cargo:rustc-link-lib=dylib=c10_cuda");
            }
            Err(missing) if nccl == "1" => {
                panic!("posekit-dist: POSEKIT_DIST_NCCL=1 but {missing}")
            }
            Err(_) => {}
        }
    }

    build.compile("posekit_dist_shim");
}

/// The torch package directory (holding `include/` and `lib/`), with links resolved: the
/// wheel's `nvidia/` packages are beside the real one (`.venv/libtorch` is a link into
/// site-packages).
fn torch_dir() -> Option<PathBuf> {
    let dir = torch_lib_dir().and_then(|lib| lib.parent().map(Path::to_path_buf))?;
    Some(std::fs::canonicalize(&dir).unwrap_or(dir))
}

fn gloo_include_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::env::var("GLOO_INCLUDE_DIR") {
        candidates.push(dir.into());
    }
    candidates.extend(["/usr/include", "/usr/local/include"].map(PathBuf::from));
    candidates
        .into_iter()
        .find(|dir| dir.join("gloo/algorithm.h").is_file())
}

fn is_system_include(dir: &Path) -> bool {
    dir == Path::new("/usr/include") || dir == Path::new("/usr/local/include")
}

/// The include directories NCCL's process group needs, or what is missing.
fn nccl_include_dirs(torch: &Path) -> Result<Vec<PathBuf>, String> {
    if !torch.join("lib/libtorch_cuda.so").is_file() {
        return Err("this libtorch has no CUDA (no lib/libtorch_cuda.so)".into());
    }
    let nvidia = torch.parent().map(|p| p.join("nvidia")).unwrap_or_default();
    let nccl = nvidia.join("nccl/include");
    if !nccl.join("nccl.h").is_file() {
        return Err(format!("nccl.h is not in {}", nccl.display()));
    }
    let mut dirs = vec![nccl];
    if let Ok(extra) = std::env::var("POSEKIT_DIST_CUDA_INCLUDE") {
        dirs.extend(std::env::split_paths(&extra));
    }
    // The CUDA toolkit headers of the wheel's CUDA version (nvidia/cu13/include, ...).
    if let Ok(entries) = std::fs::read_dir(&nvidia) {
        let mut cuda: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path().join("include"))
            .filter(|p| p.join("cuda_runtime_api.h").is_file())
            .collect();
        cuda.sort();
        dirs.extend(cuda);
    }
    for (header, package) in [
        ("cuda_runtime_api.h", "nvidia-cuda-runtime"),
        ("crt/host_config.h", "nvidia-cuda-crt"),
        ("nv/target", "nvidia-cuda-cccl"),
    ] {
        if !dirs.iter().any(|d| d.join(header).is_file()) {
            return Err(format!("{header} is missing (pip package {package})"));
        }
    }
    Ok(dirs)
}
