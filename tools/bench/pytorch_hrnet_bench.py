"""PyTorch eager reference timing for `posekit bench --model hrnet-w32` (BENCHMARKS.md).

Builds HRNet-W32 (the official pose_hrnet layout, from tools/fixtures/spm_ref.py's HRNet
backbone; 28,536,113 parameters), then times eval-mode forward passes the same way posekit's
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

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'fixtures'))
from spm_ref import HrnetBackboneRef  # noqa: E402


class PoseHRNet(nn.Module):
    """Official pose HRNet: the backbone's high-resolution output through a 1x1 conv to K maps."""

    def __init__(self, width=32, modules=(1, 4, 3), blocks=4, joints=17):
        super().__init__()
        self.backbone = HrnetBackboneRef(width, modules, blocks)
        self.final_layer = nn.Conv2d(width, joints, 1)

    def forward(self, x):
        return self.final_layer(self.backbone.features(x)[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', type=int, default=1)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--height', type=int, default=256)
    ap.add_argument('--width', type=int, default=192)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--iters', type=int, default=10)
    ap.add_argument('--device', default='cpu', help='cpu or cuda')
    ap.add_argument('--bf16', action='store_true', help='weights and input in bfloat16')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    model = PoseHRNet().eval().to(device=device, dtype=dtype)
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(args.batch, 3, args.height, args.width, device=device, dtype=dtype)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    times = []
    with torch.no_grad():
        for _ in range(args.warmup):
            model(x)
        sync()
        for _ in range(args.iters):
            t0 = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f'pytorch {torch.__version__} eager hrnet-w32 ({params:,} params) batch {args.batch} '
          f'input {args.height}x{args.width} {"bf16" if args.bf16 else "fp32"} on {device} '
          f'threads {torch.get_num_threads()}: median {med * 1e3:.2f} ms/batch, '
          f'mean {statistics.mean(times) * 1e3:.2f} ms/batch, {args.batch / med:.1f} images/s')


if __name__ == '__main__':
    main()
