"""Reference crops for posekit's top-down data pipeline (tests/data_pipeline.rs).

Re-implements, with NumPy and OpenCV, what the official HRNet `JointsDataset.__getitem__` does
to one COCO person (annotation 442619 of image 785 in ../coco/test_coco.json): the box cleaning
and `_xywh2cs` of `COCODataset`, the horizontal flip with the left/right swap, the three-point
`get_affine_transform`, `cv2.warpAffine(INTER_LINEAR)`, the joint transform and the target
weights of `generate_target`. Two cases: the test-time crop, and a training crop with fixed
parameters (scale x1.1, rotation 30 degrees, flipped), so that no random stream has to match.

Writes `pipeline_fixture.json` and the crops `crop_eval.png`, `crop_aug.png` next to itself.
Run with the fixtures virtualenv (OpenCV 5.0.0 was used):
    .venv-fixtures/bin/python crates/posekit/tests/data/pipeline/make_pipeline_fixture.py
"""

import json
import os

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
COCO = os.path.join(HERE, "..", "coco")
INPUT_W, INPUT_H = 192, 256
HEATMAP_W, HEATMAP_H = 48, 64
SIGMA = 2
FLIP_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]


def box_to_center_scale(x, y, w, h):
    aspect = INPUT_W / INPUT_H
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    scale = np.array([w / 200.0, h / 200.0], dtype=np.float32) * 1.25
    return center, scale


def third_point(a, b):
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def crop_matrix(center, scale, rot_deg):
    src_w = (scale * 200.0)[0]
    rad = np.pi * rot_deg / 180.0
    sn, cs = np.sin(rad), np.cos(rad)
    src_dir = np.array([-(src_w * -0.5) * sn, (src_w * -0.5) * cs])
    dst_dir = np.array([0, INPUT_W * -0.5], np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = center + src_dir
    dst[0] = [INPUT_W * 0.5, INPUT_H * 0.5]
    dst[1] = dst[0] + dst_dir
    src[2] = third_point(src[0], src[1])
    dst[2] = third_point(dst[0], dst[1])
    return cv2.getAffineTransform(src, dst)


def target_weights(joints):
    weights = []
    stride = INPUT_W / HEATMAP_W
    for x, y, v in joints:
        mu_x, mu_y = int(x / stride + 0.5), int(y / stride + 0.5)
        ul = [int(mu_x - 3 * SIGMA), int(mu_y - 3 * SIGMA)]
        br = [int(mu_x + 3 * SIGMA + 1), int(mu_y + 3 * SIGMA + 1)]
        outside = ul[0] >= HEATMAP_W or ul[1] >= HEATMAP_H or br[0] < 0 or br[1] < 0
        weights.append(0.0 if (v == 0 or outside) else 1.0)
    return weights


def make_case(image, joints, vis, center, scale, rot, flip, name):
    joints = joints.copy()
    vis = vis.copy()
    center = center.copy()
    if flip:
        width = image.shape[1]
        image = image[:, ::-1, :]
        joints[:, 0] = width - joints[:, 0] - 1
        for a, b in FLIP_PAIRS:
            joints[[a, b]] = joints[[b, a]]
            vis[[a, b]] = vis[[b, a]]
        joints = joints * vis[:, None]
        center[0] = width - center[0] - 1
    trans = crop_matrix(center, scale, rot)
    crop = cv2.warpAffine(image, trans, (INPUT_W, INPUT_H), flags=cv2.INTER_LINEAR)
    cv2.imwrite(os.path.join(HERE, f"crop_{name}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    out = []
    for (x, y), v in zip(joints, vis):
        if v > 0:
            x, y = trans @ np.array([x, y, 1.0])
        out.append([float(x), float(y), float(v)])
    return {
        "center": [float(v) for v in center],
        "scale": [float(v) for v in scale],
        "rotation": float(rot),
        "flip": bool(flip),
        "joints": out,
        "target_weight": target_weights(out),
        "crop_png": f"crop_{name}.png",
    }


def main():
    gt = json.load(open(os.path.join(COCO, "test_coco.json")))
    ann = next(a for a in gt["annotations"] if a["id"] == 442619)
    info = next(i for i in gt["images"] if i["id"] == ann["image_id"])
    bgr = cv2.imread(os.path.join(COCO, info["file_name"]), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    x, y, w, h = ann["bbox"]
    x1, y1 = max(0, x), max(0, y)
    x2 = min(info["width"] - 1, x1 + max(0, w - 1))
    y2 = min(info["height"] - 1, y1 + max(0, h - 1))
    center, scale = box_to_center_scale(x1, y1, x2 - x1, y2 - y1)

    kp = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    joints = kp[:, :2].copy()
    vis = np.minimum(kp[:, 2], 1.0)

    cases = {
        "eval": make_case(image, joints, vis, center, scale, 0.0, False, "eval"),
        "aug": make_case(image, joints, vis, center, (scale * np.float32(1.1)).astype(np.float32), 30.0, True, "aug"),
    }
    fixture = {
        "annotation_id": ann["id"],
        "image": info["file_name"],
        "opencv": cv2.__version__,
        "input_size": [INPUT_W, INPUT_H],
        "heatmap_size": [HEATMAP_W, HEATMAP_H],
        "cases": cases,
    }
    with open(os.path.join(HERE, "pipeline_fixture.json"), "w") as f:
        json.dump(fixture, f, indent=1)


if __name__ == "__main__":
    main()
