"""ONNX Runtime from Python on a posekit export: the reference timing for `posekit bench
--backend ort` (BENCHMARKS.md).

    target/release/posekit export --model hrnet-w32 --random-weights -o /tmp/hrnet-w32.onnx
    .venv-fixtures/bin/python tools/bench/ort_bench.py /tmp/hrnet-w32.onnx --threads 2

Times `InferenceSession.run` the way posekit's bench times its forward: warm-up, then the
median of N runs on one random input of the model's declared shape (a symbolic batch takes
--batch).
"""
import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('model')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--batch', type=int, default=1, help='for a model with a symbolic batch')
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--iters', type=int, default=10)
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(args.model, opts, providers=['CPUExecutionProvider'])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else args.batch for d in inp.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    preset = sess.get_modelmeta().custom_metadata_map.get('posekit.preset', '?')
    for _ in range(args.warmup):
        sess.run(None, {inp.name: x})
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        sess.run(None, {inp.name: x})
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f'onnxruntime {ort.__version__} (python) {preset} batch {shape[0]} input {shape[2]}x{shape[3]} '
          f'threads {args.threads}: median {med * 1e3:.2f} ms/batch, mean {statistics.mean(times) * 1e3:.2f} '
          f'ms/batch, {shape[0] / med:.1f} images/s')


if __name__ == '__main__':
    main()
