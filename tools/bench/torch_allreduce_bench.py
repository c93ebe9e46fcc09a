"""PyTorch reference for posekit-dist's all-reduce bench (crates/posekit-dist/benches/allreduce.rs).

Averages HRNet-W32's gradient volume (28,536,113 float32 values) across Gloo ranks on loopback
with torch.distributed, the way DDP moves it: as 25 MiB buckets (all started, then awaited,
then divided by the world size) and as one flat buffer. Rank 0 prints the median time.

    .venv/bin/torchrun --nproc-per-node 2 --master-addr 127.0.0.1 --master-port 29731 \
        tools/bench/torch_allreduce_bench.py [--numel 28536113] [--iters 10] [--warmup 2]
"""

import argparse
import os
import time

import torch
import torch.distributed as dist

BUCKET_BYTES = 25 * 1024 * 1024


def average(chunks, world):
    works = [dist.all_reduce(c, async_op=True) for c in chunks]
    for c, w in zip(chunks, works):
        w.wait()
        c.div_(world)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--numel", type=int, default=28_536_113)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    flat = torch.full((args.numel,), 0.5)
    per_bucket = BUCKET_BYTES // 4
    cases = [
        ("25 MiB buckets", list(flat.split(per_bucket))),
        ("one flat buffer", [flat]),
    ]
    for label, chunks in cases:
        times = []
        for i in range(args.warmup + args.iters):
            dist.barrier()
            start = time.perf_counter()
            average(chunks, world)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
        times.sort()
        if rank == 0:
            median, best = times[len(times) // 2], times[0]
            gb = args.numel * 4 / 1e9
            print(
                f"torch {torch.__version__} gloo, {args.numel} floats ({gb * 1e3:.1f} MB), {world} rank(s), "
                f"{label}: median {median * 1e3:.1f} ms, best {best * 1e3:.1f} ms, "
                f"algbw {gb / median:.2f} GB/s, busbw {gb / median * 2 * (world - 1) / world:.2f} GB/s "
                f"({args.iters} iterations)"
            )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
