#!/usr/bin/env bash
# The CPU backends side by side in one run (BENCHMARKS.md, "Networks on the CPU: libtorch, ONNX
# Runtime, PyTorch eager"): HRNet-W32 256x192 at batch 1 and 8 and the shipped
# OpenPose-MobileNetV2 at 368x432 (HxW), each with posekit on libtorch, posekit on ONNX Runtime,
# PyTorch eager and ONNX Runtime from Python on posekit's export of the same network.
#
#   bash tools/bench/cpu_backends.sh [POSEKIT_BINARY] [THREADS]
#
# POSEKIT_BINARY defaults to target/release/posekit; Python is .venv-fixtures (torch 2.11,
# onnxruntime 1.32; override with PYTHON=...).
set -euo pipefail
cd "$(dirname "$0")/../.."
POSEKIT=${1:-target/release/posekit}
THREADS=${2:-2}
PYTHON=${PYTHON:-.venv-fixtures/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$POSEKIT" export --model hrnet-w32 --random-weights -o "$WORK/hrnet-w32-b1.onnx" >/dev/null
"$POSEKIT" export --model hrnet-w32 --random-weights --batch 8 -o "$WORK/hrnet-w32-b8.onnx" >/dev/null
"$POSEKIT" export --model openpose-mobilenetv2 -o "$WORK/openpose-mobilenetv2.onnx" >/dev/null

for batch in 1 8; do
    iters=$([ "$batch" = 1 ] && echo 10 || echo 5)
    for backend in torch ort; do
        "$POSEKIT" bench --model hrnet-w32 --batch "$batch" --threads "$THREADS" --backend "$backend" --warmup 2 --iters "$iters"
    done
    "$PYTHON" tools/bench/pytorch_hrnet_bench.py --batch "$batch" --threads "$THREADS" --warmup 2 --iters "$iters"
    "$PYTHON" tools/bench/ort_bench.py "$WORK/hrnet-w32-b$batch.onnx" --threads "$THREADS" --warmup 2 --iters "$iters"
done
for backend in torch ort; do
    "$POSEKIT" bench --model openpose-mobilenetv2 --threads "$THREADS" --backend "$backend" --warmup 3 --iters 10
done
"$PYTHON" tools/bench/pytorch_mobilenet_bench.py --threads "$THREADS" --warmup 3 --iters 10
"$PYTHON" tools/bench/ort_bench.py "$WORK/openpose-mobilenetv2.onnx" --threads "$THREADS" --warmup 3 --iters 10
