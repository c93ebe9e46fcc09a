"""PyTorch eager timing of the Stacked Hourglass (bearpaw layout, tools/fixtures/
stacked_hourglass_ref.py), the counterpart of `posekit bench --model hourglass-N`.

    /work/main/.venv/bin/python tools/bench/pytorch_hourglass_bench.py --stacks 8 --blocks 1 \
        --batch 1 --threads 2 --warmup 2 --iters 5

Eval mode, no_grad, random weights, a 256x256 input; prints the median ms per batch and
images/s.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures'))
from stacked_hourglass_ref import StackedHourglassRef  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument('--stacks', type=int, default=8)
ap.add_argument('--blocks', type=int, default=1)
ap.add_argument('--batch', type=int, default=1)
ap.add_argument('--size', type=int, default=256)
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--warmup', type=int, default=2)
ap.add_argument('--iters', type=int, default=5)
args = ap.parse_args()
torch.set_num_threads(args.threads)
model = StackedHourglassRef(args.stacks, args.blocks, 16).eval()
x = torch.randn(args.batch, 3, args.size, args.size)
times = []
with torch.no_grad():
    for i in range(args.warmup + args.iters):
        t = time.perf_counter()
        model(x)
        if i >= args.warmup:
            times.append((time.perf_counter() - t) * 1e3)
ms = statistics.median(times)
print(f'pytorch {torch.__version__} eager hg s{args.stacks} b{args.blocks} batch {args.batch} '
      f'{args.size}x{args.size}, {args.threads} threads: median {ms:.1f} ms '
      f'({args.batch * 1e3 / ms:.2f} img/s) over {args.iters} iters {[round(t, 1) for t in times]}')
