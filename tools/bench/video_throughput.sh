#!/bin/bash
# End-to-end frames/s of `posekit infer` on a video against the network alone (`posekit bench`)
# at the same input size (issue 14, item 5; BENCHMARKS.md "Video throughput").
#
#   bash tools/bench/video_throughput.sh THREADS ENGINE [ENGINE...]
#
# ENGINE: a `posekit` front (release build; it runs the `posekit-engine` beside it), e.g. one of
# main's and one of a branch. The clip is made here from the repo's multi-person photo: N frames
# (FRAMES, default 300; the first figures in BENCHMARKS.md used 100) of 640x428, a window sliding
# and zooming over it (the bundled OpenPose-MobileNetV2 stretches each frame to its 368x432
# input, which is what `bench` times). Each engine also runs a 1-frame clip, so that the start-up
# (model, ffprobe, warm-up) can be taken out: per frame = (N-frame run - 1-frame run) / (N - 1),
# wall and CPU (user + sys, ffmpeg's children included) alike; the ratio printed is the bench's
# median over 50 iterations divided by that per-frame wall time (1.0: the network never waits).
# ROUNDS rounds (default 2), the engines in turn (reversed in every second round).
set -euo pipefail
T=$1
shift
N=${FRAMES:-300}
ROUNDS=${ROUNDS:-2}
W=$(mktemp -d /tmp/posekit-video-bench-XXXX)
PHOTO="$(dirname "$0")/../../crates/posekit/tests/data/infer/000000196141.jpg"
ffmpeg -v error -y -loop 1 -framerate 10 -i "$PHOTO" \
  -vf "zoompan=z='1+0.002*on':x='(iw-iw/zoom)*on/$N':y='(ih-ih/zoom)/2':d=1:s=640x428:fps=10" \
  -frames:v "$N" -pix_fmt yuv420p "$W/slideN.mp4"
ffmpeg -v error -y -i "$W/slideN.mp4" -frames:v 1 -pix_fmt yuv420p "$W/slide1.mp4"
for round in $(seq "$ROUNDS"); do
  echo "== threads $T, round $round, load $(cut -d' ' -f1-3 /proc/loadavg)"
  # Even rounds run the engines in the reverse order, so that a load that drifts favours none.
  engines=("$@")
  if [ $((round % 2)) = 0 ]; then
    engines=()
    for ((i = $#; i >= 1; i--)); do engines+=("${!i}"); done
  fi
  for iters in 1 50; do
    /usr/bin/time -f "bench iters $iters: wall %e s, CPU %U s user + %S s sys" \
      "$1" bench --model openpose-mobilenetv2 --batch 1 --threads "$T" --warmup 3 \
      --iters "$iters" > "$W/log.txt" 2> "$W/time.txt"
    echo "$(tail -1 "$W/time.txt"); $(tail -1 "$W/log.txt" | grep -o 'median.*')"
  done
  bench_ms=$(tail -1 "$W/log.txt" | grep -o 'median [0-9.]*' | cut -d' ' -f2)
  for engine in "${engines[@]}"; do
    for clip in slide1 slideN; do
      /usr/bin/time -f "%e %U %S" "$engine" infer "$W/$clip.mp4" --out "$W/out" \
        --no-progress --threads "$T" > "$W/log.txt" 2> "$W/time_$clip.txt"
      read -r wall user sys < <(tail -1 "$W/time_$clip.txt")
      echo "$engine $clip: wall $wall s, CPU $user s user + $sys s sys"
    done
    # Per frame with the start-up taken out, and end-to-end against network-only.
    paste "$W/time_slide1.txt" "$W/time_slideN.txt" | tail -1 | awk -v n="$N" -v b="$bench_ms" '{
      wall = ($4 - $1) / (n - 1) * 1000; cpu = ($5 + $6 - $2 - $3) / (n - 1) * 1000
      printf "  per frame %.1f ms = %.2f frames/s, CPU %.1f ms; network-only %.1f ms: ratio %.2f\n",
        wall, 1000 / wall, cpu, b, b / wall }'
  done
done
rm -rf "$W"
