#!/usr/bin/env bash
# Installs what posekit needs on a fresh Debian/Ubuntu machine and builds the release binary:
#   * libtorch, from the PyTorch wheel (torch==2.11.0, the version tch 0.24 is built against),
#     into the repo's own virtualenv `.venv`, linked to `.venv/libtorch` for the build;
#   * ONNX Runtime, from the onnxruntime wheel (its libonnxruntime runs exported models:
#     `--backend ort`), into the same `.venv`;
#   * ffmpeg, for reading and writing videos (`posekit infer video.mp4`);
#   * Gloo's headers (Debian's libgloo-dev), which posekit-dist's c10d shim compiles against:
#     the wheel has Gloo inside libtorch_cpu.so but ships none of its headers;
#   * with a CUDA wheel, the CUDA runtime's crt/ and libcu++ headers (nvidia-cuda-crt,
#     nvidia-cuda-cccl, same CUDA version) that c10d's NCCL header needs beyond the wheel;
#   * `target/release/posekit` and `target/release/posekit-engine` (the front runs `eval` and
#     `--help` without libtorch and hands every network command to the engine beside it).
# Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
# Keep in step with ONNXRUNTIME_VERSION in crates/posekit-nn/src/ort_engine/library.rs.
ONNXRUNTIME_VERSION=1.32.0
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
pip_install() {
    .venv/bin/pip install --quiet --disable-pip-version-check --no-cache-dir "$@"
}

# install_lean REQUIREMENT: installs REQUIREMENT and its dependencies one wheel at a time, so the
# disk holds what is installed plus one download (the CUDA wheel of torch pulls about 3 GB of
# nvidia-* wheels: installed in one go, with pip's cache, it needed about three times that and
# filled a CI runner's disk). triton is left out: only torch.compile uses it, and nothing here
# compiles Python models (libtorch is linked directly; torchrun runs without it).
install_lean() {
    local report
    report=$(mktemp)
    if .venv/bin/pip install --quiet --disable-pip-version-check --dry-run --ignore-installed \
        --report "$report" "$1" >/dev/null 2>&1; then
        local wheels
        wheels=$(.venv/bin/python - "$report" <<'PY'
import json, sys
# torch last, so that an interrupted set-up leaves no torch without its libraries.
items = [item["metadata"] for item in json.load(open(sys.argv[1]))["install"]]
for meta in sorted(items, key=lambda meta: meta["name"].lower() == "torch"):
    if meta["name"].lower() != "triton":
        print(f'{meta["name"]}=={meta["version"]}')
PY
)
        rm -f "$report"
        local wheel
        for wheel in $wheels; do
            pip_install --no-deps "$wheel"
        done
    else
        rm -f "$report"
        pip_install "$1"
    fi
}

if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    echo "setup: installing torch==$TORCH_VERSION into .venv (libtorch for the tch crate)"
    install_lean "torch==$TORCH_VERSION"
fi
torch_dir=$(.venv/bin/python -c "import os, torch; print(os.path.dirname(torch.__file__))" 2>/dev/null)
ln -sfn "$torch_dir" .venv/libtorch

if ! .venv/bin/python -c "import onnxruntime, sys; sys.exit(onnxruntime.__version__ != '$ONNXRUNTIME_VERSION')" 2>/dev/null; then
    echo "setup: installing onnxruntime==$ONNXRUNTIME_VERSION into .venv (libonnxruntime for --backend ort)"
    pip_install "onnxruntime==$ONNXRUNTIME_VERSION"
fi

# apt_install PACKAGE WHAT-IS-LOST-WITHOUT-IT
apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing $1"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
    elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
    else
        echo "setup: warning: $1 not found and cannot be installed here; $2" >&2
    fi
}

if ! command -v ffmpeg >/dev/null 2>&1; then
    apt_install ffmpeg "video input will be unavailable"
fi
if [ ! -f /usr/include/gloo/algorithm.h ] && [ -z "${GLOO_INCLUDE_DIR:-}" ]; then
    apt_install libgloo-dev "distributed training on the CPU (Gloo) will be unavailable"
fi
if [ -f .venv/libtorch/lib/libtorch_cuda.so ]; then
    cuda=$(.venv/bin/python -c "import torch; print(torch.version.cuda or '')" 2>/dev/null)
    if [ -n "$cuda" ] && ! .venv/bin/python -m pip show --quiet nvidia-cuda-crt nvidia-cuda-cccl >/dev/null 2>&1; then
        echo "setup: installing CUDA $cuda headers for the NCCL process group into .venv"
        pip_install "nvidia-cuda-crt==$cuda.*" "nvidia-cuda-cccl==$cuda.*"
    fi
fi

if [ "${POSEKIT_SKIP_BUILD:-0}" != 1 ]; then
    echo "setup: building target/release/posekit and posekit-engine"
    cargo build --release --quiet --bin posekit --bin posekit-engine
fi
echo "setup: done"
