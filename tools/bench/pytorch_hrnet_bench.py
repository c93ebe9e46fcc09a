"""PyTorch eager reference timing for `posekit bench --model hrnet-w32` (BENCHMARKS.md).

Builds HRNet-W32 (the official pose_hrnet layout, from tools/fixtures/higher_hrnet_ref.py's
blocks; 28,536,113 parameters), then times eval-mode forward passes the same way posekit's
bench does: warm-up, then the median of N timed batches.

    .venv-fixtures/bin/python tools/bench/pytorch_hrnet_bench.py --batch 1 --threads 2
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'fixtures'))
from higher_hrnet_ref import Bottle, Exchange, make_transition  # noqa: E402


class PoseHRNet(nn.Module):
    def __init__(self, width=32, modules=(1, 4, 3), blocks=4, joints=17):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.layer1 = nn.Sequential(Bottle(64, 64), Bottle(256, 64), Bottle(256, 64), Bottle(256, 64))
        pre = [256]
        for s, nmod in enumerate(modules):
            cur = [width * 2 ** b for b in range(s + 2)]
            setattr(self, f'transition{s + 1}', make_transition(pre, cur))
            setattr(self, f'stage{s + 2}', nn.Sequential(*[
                Exchange(cur, [blocks] * len(cur), all_outputs=not (s == 2 and m == nmod - 1))
                for m in range(nmod)]))
            pre = cur
        self.final_layer = nn.Conv2d(width, joints, 1)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for s in range(3):
            xs = []
            for i, t in enumerate(getattr(self, f'transition{s + 1}')):
                if i >= len(ys):
                    xs.append(t(ys[-1]))
                else:
                    xs.append(ys[i] if t is None else t(ys[i]))
            ys = getattr(self, f'stage{s + 2}')(xs)
        return self.final_layer(ys[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', type=int, default=1)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--height', type=int, default=256)
    ap.add_argument('--width', type=int, default=192)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--iters', type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = PoseHRNet().eval()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(args.batch, 3, args.height, args.width)
    times = []
    with torch.no_grad():
        for _ in range(args.warmup):
            model(x)
        for _ in range(args.iters):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f'pytorch {torch.__version__} eager hrnet-w32 ({params:,} params) batch {args.batch} '
          f'input {args.height}x{args.width} threads {torch.get_num_threads()}: median {med * 1e3:.2f} ms/batch, '
          f'mean {statistics.mean(times) * 1e3:.2f} ms/batch, {args.batch / med:.1f} images/s')


if __name__ == '__main__':
    main()
