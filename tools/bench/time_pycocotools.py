"""Times pycocotools' keypoint evaluation on the benchmark set written by
make_coco_bench_set.py, for comparison with `cargo bench -p posekit-core --bench coco_eval`.

    /work/main/.venv-fixtures/bin/python tools/bench/time_pycocotools.py [DIR] [REPEATS]

Prints the best time over REPEATS (default 2) of load + evaluate (COCO(gt), loadRes,
evaluate, accumulate, summarize) and of evaluate alone (evaluate, accumulate, summarize on
already loaded files), and the stats, so the two implementations can also be compared.
"""

import contextlib
import io
import os
import sys
import time

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def run(directory):
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(os.path.join(directory, "gt.json"))
        dt = gt.loadRes(os.path.join(directory, "results.json"))
        t1 = time.perf_counter()
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1, ev.stats


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "/tmp/posekit-coco-bench"
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    runs = [run(directory) for _ in range(repeats)]
    total = min(r[0] for r in runs)
    evaluate = min(r[1] for r in runs)
    print(f"pycocotools load + evaluate: {total:.3f} s (best of {repeats})")
    print(f"pycocotools evaluate alone:  {evaluate:.3f} s (best of {repeats})")
    print("stats:", " ".join(repr(float(s)) for s in runs[0][2]))


if __name__ == "__main__":
    main()
