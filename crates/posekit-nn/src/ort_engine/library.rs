//! Finding and loading `libonnxruntime` at run time.
//!
//! posekit uses the ONNX Runtime shipped inside the `onnxruntime` PyPI wheel, which
//! `scripts/setup.sh` installs into the repository's `.venv`: nothing is downloaded when
//! building or running, and `ort`'s `load-dynamic` feature opens the library only when an ONNX
//! model is first run, so a machine without it still runs everything else. The library is
//! looked for, in order, at:
//! 1. `ORT_DYLIB_PATH` (a path to the library itself), when set;
//! 2. the `.venv` of the source checkout this binary was built from;
//! 3. the active virtualenv (`VIRTUAL_ENV`);
//! 4. a `.venv` beside one of the folders above the executable (a moved checkout).
//!
//! A missing or unusable library is an error that says how to install it, never a crash.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use posekit_core::{Error, Result};

/// The `onnxruntime` wheel `scripts/setup.sh` installs (its library is the one posekit is
/// tested with; any ONNX Runtime from 1.17 on works).
pub const ONNXRUNTIME_VERSION: &str = "1.32.0";

/// The environment variable that names the library file explicitly.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The ONNX Runtime environment, created once per process on first use.
static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

/// The process's ONNX Runtime environment, loading the library on first use.
pub fn environment() -> Result<&'static Environment> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = find_library()?;
            let builder = ort::init_from(&path).map_err(|e| {
                format!(
                    "cannot load ONNX Runtime from {}: {e}. {}",
                    path.display(),
                    install_hint()
                )
            })?;
            builder
                .with_name("posekit")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime ({}): {e}", path.display()))
        })
        .as_ref()
        .map_err(|message| Error::Shape(message.clone()))
}

/// Whether ONNX Runtime can be loaded (for tools that offer it only when present).
pub fn is_available() -> bool {
    environment().is_ok()
}

/// How to get the library, for error messages.
pub fn install_hint() -> String {
    format!(
        "Install it with `bash scripts/setup.sh` (or `.venv/bin/pip install \
         onnxruntime=={ONNXRUNTIME_VERSION}`), or set {DYLIB_ENV} to a libonnxruntime shared \
         library"
    )
}

/// Where the library is, by the rules of the module documentation.
pub fn find_library() -> std::result::Result<PathBuf, String> {
    if let Some(explicit) = std::env::var_os(DYLIB_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(explicit);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{DYLIB_ENV} is {}, which is not a file. {}",
                path.display(),
                install_hint()
            ))
        };
    }
    let venvs = candidate_venvs();
    for venv in &venvs {
        if let Some(lib) = library_in_venv(venv) {
            return Ok(lib);
        }
    }
    let looked: Vec<String> = venvs.iter().map(|v| v.display().to_string()).collect();
    Err(format!(
        "ONNX Runtime (libonnxruntime) was not found (looked in the virtualenvs {}). {}",
        looked.join(", "),
        install_hint()
    ))
}

fn candidate_venvs() -> Vec<PathBuf> {
    let mut venvs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv")];
    if let Some(active) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        venvs.push(PathBuf::from(active));
    }
    if let Ok(exe) = std::env::current_exe() {
        venvs.extend(exe.ancestors().skip(1).take(4).map(|dir| dir.join(".venv")));
    }
    let mut unique: Vec<PathBuf> = Vec::new();
    for venv in venvs {
        let canonical = venv.canonicalize().unwrap_or(venv);
        if !unique.contains(&canonical) {
            unique.push(canonical);
        }
    }
    unique
}

/// `onnxruntime/capi/libonnxruntime.*` of a virtualenv's site-packages (any Python 3), the
/// newest version first when several are there.
fn library_in_venv(venv: &Path) -> Option<PathBuf> {
    let site_dirs: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .chain(std::iter::once(venv.join("Lib/site-packages")))
        .collect();
    let mut found: Vec<PathBuf> = site_dirs
        .iter()
        .flat_map(|site| {
            std::fs::read_dir(site.join("onnxruntime/capi"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| is_runtime_library(&n.to_string_lossy()))
        })
        .collect();
    found.sort();
    found.pop()
}

/// `libonnxruntime.so.1.32.0`, `libonnxruntime.1.32.0.dylib` or `onnxruntime.dll`; not the
/// providers' libraries (`libonnxruntime_providers_shared.so`).
fn is_runtime_library(name: &str) -> bool {
    let linux = name.starts_with("libonnxruntime.so");
    let mac = name.starts_with("libonnxruntime.") && name.ends_with(".dylib");
    linux || mac || name == "onnxruntime.dll"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_runtime_library_is_taken() {
        assert!(is_runtime_library("libonnxruntime.so.1.32.0"));
        assert!(is_runtime_library("libonnxruntime.so"));
        assert!(is_runtime_library("libonnxruntime.1.32.0.dylib"));
        assert!(!is_runtime_library("libonnxruntime_providers_shared.so"));
        assert!(!is_runtime_library("onnxruntime_pybind11_state.so"));
    }

    #[test]
    fn a_virtualenv_layout_is_searched() {
        let root = std::env::temp_dir().join(format!("posekit-ort-venv-{}", std::process::id()));
        let capi = root.join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        assert_eq!(library_in_venv(&root), None);
        std::fs::write(capi.join("libonnxruntime_providers_shared.so"), b"").unwrap();
        std::fs::write(capi.join("libonnxruntime.so.1.32.0"), b"").unwrap();
        assert_eq!(
            library_in_venv(&root),
            Some(capi.join("libonnxruntime.so.1.32.0"))
        );
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn the_hint_says_how_to_install() {
        let hint = install_hint();
        assert!(
            hint.contains("scripts/setup.sh") && hint.contains("ORT_DYLIB_PATH"),
            "{hint}"
        );
        assert!(hint.contains(ONNXRUNTIME_VERSION));
    }
}
