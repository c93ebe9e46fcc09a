#!/usr/bin/env bash
# The prepared GPU check: a few minutes on a machine with an NVIDIA GPU and the torch==2.11.0
# wheel, every figure written under $OUT.
#
#   1. libtorch sees the GPU, and `--device cuda` really runs there: the posekit process shows
#      up in nvidia-smi's compute apps with GPU memory while it benchmarks (a binary whose
#      libtorch_cuda was dropped at link time would fail `--device cuda` or run on the CPU);
#   2. `posekit bench` HRNet-W32 256x192 at batch 1, 64 and 256 in fp32 and bf16, and a
#      training step (forward, loss, backward, Adam) at batch 32;
#   3. PyTorch eager HRNet-W32 on the same GPU in the same run, for the ratio;
#   4. a few epochs of configs/coco_mini_hrnet_w32.toml (when coco-mini is given).
#
# Build here (no GPU needed) a release binary without debug info, small enough to travel:
#   CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --release --bins
#   mkdir -p gpu-bin && cp target/release/posekit* gpu-bin/ && strip gpu-bin/posekit*
# then on the GPU machine, from the repository root (coco-mini optional, e.g. copied into a
# git-ignored folder that travels with the checkout):
#   OUT=/tmp/out bash tools/gpu_check.sh gpu-bin [path/to/coco-mini]
set -uo pipefail
bin_dir=${1:-target/release}
coco_mini=${2:-}
out=${OUT:-gpu-check-out}
mkdir -p "$out"
log="$out/gpu_check.log"
exec > >(tee "$log") 2>&1
posekit="$bin_dir/posekit"
[ -x "$posekit" ] || { echo "no posekit binary in $bin_dir"; exit 1; }

# The binary's rpath points at the build machine's .venv; here libtorch is the wheel's.
py=${PYTHON:-python3}
torch_lib=$("$py" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
ldd "$bin_dir"/posekit* 2>/dev/null | grep -E 'torch|c10' | sort -u

echo "== 1. --device cuda runs on the GPU"
"$posekit" bench --model hrnet-w32 --batch 64 --device cuda --warmup 5 --iters 200 >"$out/bench_probe.txt" 2>&1 &
pid=$!
seen=""
for _ in $(seq 1 60); do
  sleep 1
  apps=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>/dev/null)
  if echo "$apps" | grep -q "^$pid,"; then seen=$(echo "$apps" | grep "^$pid,"); break; fi
  kill -0 $pid 2>/dev/null || break
done
wait $pid; rc=$?
if [ -n "$seen" ] && [ $rc -eq 0 ]; then
  echo "PASS: posekit (pid $pid) used the GPU: $seen"
else
  echo "FAIL: posekit bench --device cuda exit $rc; nvidia-smi saw: ${seen:-nothing}"; cat "$out/bench_probe.txt"
fi

echo "== 2. posekit bench (GPU)"
{
  for b in 1 64 256; do
    for prec in fp32 bf16; do
      half=""; [ $prec = bf16 ] && half="--half"
      printf 'inference batch %s %s: ' "$b" "$prec"
      "$posekit" bench --model hrnet-w32 --batch "$b" --device cuda $half --warmup 10 --iters 50 2>&1 | tail -1
    done
  done
  for prec in fp32 bf16; do
    half=""; [ $prec = bf16 ] && half="--half"
    printf 'training step batch 32 %s: ' "$prec"
    "$posekit" bench --model hrnet-w32 --batch 32 --device cuda --train $half --warmup 5 --iters 30 2>&1 | tail -1
  done
} | tee "$out/posekit_bench.txt"

echo "== 3. PyTorch eager (same GPU)"
for b in 1 64 256; do
  "$py" tools/bench/pytorch_hrnet_bench.py --batch "$b" --device cuda --warmup 10 --iters 50 2>&1 | tail -1
  "$py" tools/bench/pytorch_hrnet_bench.py --batch "$b" --device cuda --bf16 --warmup 10 --iters 50 2>&1 | tail -1
done | tee "$out/pytorch_bench.txt"

echo "== 4. a few epochs of coco_mini_hrnet_w32"
if [ -n "$coco_mini" ] && [ -d "$coco_mini/train2017" ]; then
  cfg="$out/coco_mini_gpu.toml"
  sed -e "s|\.\./\.\./shared/data/coco-mini|$(cd "$coco_mini" && pwd)|g" \
      -e 's/^epochs = .*/epochs = 5/' -e 's/^val_interval = .*/val_interval = 5/' \
      configs/coco_mini_hrnet_w32.toml >"$cfg"
  /usr/bin/time -v "$posekit" train "$cfg" --device cuda --out "$out/coco_mini_run" --no-progress \
    2>"$out/train_time.txt" | tee "$out/train.txt"
  grep -E 'Elapsed|Maximum resident' "$out/train_time.txt"
  cp "$out/coco_mini_run/log.jsonl" "$out/train_log.jsonl" 2>/dev/null
  rm -rf "$out/coco_mini_run"
else
  echo "skipped: no coco-mini folder given"
fi
echo "== done; figures in $out"
