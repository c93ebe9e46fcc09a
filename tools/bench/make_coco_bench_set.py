"""Writes the COCO keypoint evaluation benchmark set: 5,000 images and 30,000 keypoint results
(deterministic, seed 0), to time posekit's evaluator against pycocotools on the same files.

    python3 tools/bench/make_coco_bench_set.py [OUT_DIR]     # default /tmp/posekit-coco-bench

Writes OUT_DIR/gt.json and OUT_DIR/results.json (about 10 MB and 25 MB). Only the standard
library is needed. The ground truth looks like COCO val2017 in its proportions: 0 to 12 people
per image (some images empty), a few crowd regions and people without labelled keypoints,
areas from small to large. Results are noisy copies of the people (some duplicated, some
missed) plus false positives, cut to exactly 30,000.
"""

import json
import os
import random
import sys

K = 17
NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
         "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
         "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
NUM_IMAGES = 5000
NUM_RESULTS = 30000


def r2(v):
    return round(v, 2)


def person(rng, ann_id, image_id):
    kind = rng.choices(["normal", "crowd", "unlabelled"], [0.9, 0.02, 0.08])[0]
    size = rng.choice([rng.uniform(12, 32), rng.uniform(32, 96), rng.uniform(96, 400)])
    w, h = size * rng.uniform(0.4, 0.9), size * rng.uniform(1.0, 1.5)
    x, y = rng.uniform(0, 600), rng.uniform(0, 400)
    kps = []
    for _ in range(K):
        if kind != "normal" or rng.random() < 0.25:
            kps += [0, 0, 0]
        else:
            kps += [r2(x + rng.uniform(0, w)), r2(y + rng.uniform(0, h)), rng.choice([1, 2, 2])]
    num = sum(1 for i in range(2, 3 * K, 3) if kps[i] > 0)
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "keypoints": kps,
            "num_keypoints": num, "bbox": [r2(x), r2(y), r2(w), r2(h)],
            "area": r2(w * h * rng.uniform(0.5, 0.9)), "iscrowd": int(kind == "crowd")}


def noisy(rng, ann, noise):
    x, y, w, h = ann["bbox"]
    scale = max(w, h)
    kps = []
    for j in range(K):
        gx, gy, v = ann["keypoints"][3 * j:3 * j + 3]
        if v == 0:
            gx, gy = x + rng.uniform(0, w), y + rng.uniform(0, h)
        kps += [r2(gx + rng.gauss(0, noise * scale)), r2(gy + rng.gauss(0, noise * scale)),
                r2(rng.random())]
    return {"image_id": ann["image_id"], "category_id": 1, "keypoints": kps,
            "score": r2(rng.random())}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/posekit-coco-bench"
    os.makedirs(out, exist_ok=True)
    rng = random.Random(0)
    images, anns, results = [], [], []
    for i in range(NUM_IMAGES):
        image_id = 100000 + 7 * i
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": 640,
                       "height": 480})
        people = [person(rng, len(anns) + n + 1, image_id) for n in range(rng.randint(0, 12))]
        anns += people
        for p in people:
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                results.append(noisy(rng, p, rng.choice([0.01, 0.03, 0.08, 0.2])))
        for _ in range(rng.randint(0, 3)):
            results.append(noisy(rng, person(rng, 0, image_id), 0.0))
    while len(results) < NUM_RESULTS:
        image_id = rng.choice(images)["id"]
        results.append(noisy(rng, person(rng, 0, image_id), 0.0))
    results = rng.sample(results, NUM_RESULTS)
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person", "supercategory": "person",
                          "keypoints": NAMES, "skeleton": []}]}
    with open(os.path.join(out, "gt.json"), "w") as f:
        json.dump(gt, f)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f)
    print(f"{out}: {len(images)} images, {len(anns)} annotations, {len(results)} results")


if __name__ == "__main__":
    main()
