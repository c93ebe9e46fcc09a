#!/bin/bash
# End-to-end frames/s of `posekit infer` on a video against the network alone (`posekit bench`)
# at the same input size (issue 14, item 5; BENCHMARKS.md "Video throughput").
#
#   bash tools/bench/video_throughput.sh THREADS ENGINE [ENGINE...]
#
# ENGINE: a `posekit-engine` binary (release build), e.g. one of main's and one of a branch.
# The clip is made here from the repo's multi-person photo: 100 frames of 640x428, a window
# sliding and zooming over it (the bundled OpenPose-MobileNetV2 stretches each frame to its
# 368x432 input, which is what `bench` times). Each engine also runs a 1-frame clip, and the
# bench runs with 1 iteration, so that the start-up (libtorch, model, ffprobe, warm-up) can be
# taken out: per frame = (100-frame run - 1-frame run) / 99, wall and CPU (user + sys, ffmpeg's
# children included) alike. Two rounds, the engines in turn (reversed in the second).
set -euo pipefail
T=$1
shift
W=$(mktemp -d /tmp/posekit-video-bench-XXXX)
PHOTO="$(dirname "$0")/../../crates/posekit/tests/data/infer/000000196141.jpg"
ffmpeg -v error -y -loop 1 -framerate 10 -i "$PHOTO" \
  -vf "zoompan=z='1+0.002*on':x='(iw-iw/zoom)*on/100':y='(ih-ih/zoom)/2':d=1:s=640x428:fps=10" \
  -frames:v 100 -pix_fmt yuv420p "$W/slide100.mp4"
ffmpeg -v error -y -i "$W/slide100.mp4" -frames:v 1 -pix_fmt yuv420p "$W/slide1.mp4"
for round in 1 2; do
  echo "== threads $T, round $round, load $(cut -d' ' -f1-3 /proc/loadavg)"
  # Round 2 runs the engines in the reverse order, so that a load that drifts favours none.
  engines=("$@")
  if [ "$round" = 2 ]; then
    engines=()
    for ((i = $#; i >= 1; i--)); do engines+=("${!i}"); done
  fi
  for engine in "${engines[@]}"; do
    for clip in slide1 slide100; do
      /usr/bin/time -f "$engine $clip: wall %e s, CPU %U s user + %S s sys" \
        "$engine" infer "$W/$clip.mp4" --out "$W/out" --no-progress --threads "$T" \
        > "$W/log.txt" 2> "$W/time.txt"
      echo "$(tail -1 "$W/time.txt"); $(grep -o '[0-9.]* frames/s' "$W/log.txt" || true)"
    done
  done
  for iters in 1 50; do
    /usr/bin/time -f "bench iters $iters: wall %e s, CPU %U s user + %S s sys" \
      "$1" bench --model openpose-mobilenetv2 --batch 1 --threads "$T" --warmup 3 \
      --iters "$iters" > "$W/log.txt" 2> "$W/time.txt"
    echo "$(tail -1 "$W/time.txt"); $(tail -1 "$W/log.txt" | grep -o 'median.*')"
  done
done
rm -rf "$W"
