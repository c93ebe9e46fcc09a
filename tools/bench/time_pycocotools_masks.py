"""pycocotools' side of `cargo bench -p posekit-core --bench masks`: the same operations on the
same 309 annotations, per annotation: the median wall time of 30 passes and the mean on-CPU
time of the thread.

    /work/venv-fixtures/bin/python tools/bench/time_pycocotools_masks.py
"""

import contextlib
import io
import os
import statistics
import time
from collections import defaultdict

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "crates", "posekit-core", "tests", "data")
FILES = [
    "masks/coco_mini_person_keypoints_val2017.json",
    "masks/coco_mini_person_keypoints_train2017.json",
    "coco_eval/coco_val2017_mmpose_gt.json",
    "masks/ochuman_test.json",
]
PASSES = 30


def per_item(n, f):
    f()
    cpu_start = time.thread_time()
    times = []
    for _ in range(PASSES):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    cpu = (time.thread_time() - cpu_start) / PASSES / n
    return statistics.median(times) / n, cpu


def main():
    items = []
    for name in FILES:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(os.path.join(DATA, name))
        for ann in coco.anns.values():
            if "segmentation" in ann:
                items.append((coco, ann, (name, ann["image_id"])))
    n = len(items)
    rles = [coco.annToRLE(ann) for coco, ann, _ in items]
    print(f"pycocotools: {n} annotations; {PASSES} passes, per annotation:")

    def report(label, t, unit=""):
        wall, cpu = t
        print(f"  {label:<32} median {wall * 1e6:>8.2f} us  on-CPU mean {cpu * 1e6:>8.2f} us {unit}")

    report("annToRLE", per_item(n, lambda: [coco.annToRLE(ann) for coco, ann, _ in items]))
    # The compressed string both ways has no Python entry point of its own; frPyObjects on an
    # uncompressed RLE (to string) and area (from string, then a sum) are the nearest.
    report("area (parses the string)", per_item(n, lambda: [mask_utils.area(r) for r in rles]))
    report("decode to [h, w] u8", per_item(n, lambda: [mask_utils.decode(r) for r in rles]))
    groups = defaultdict(list)
    for (_, _, image), rle in zip(items, rles):
        groups[image].append(rle)
    groups = list(groups.values())
    t = per_item(len(groups), lambda: [mask_utils.merge(g) for g in groups])
    report("union of an image's people", t, f"per image ({len(groups)} images)")


if __name__ == "__main__":
    main()
