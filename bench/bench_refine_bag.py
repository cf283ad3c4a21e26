"""Depth refinement time per detected object over the bundled sample bag's RGB-D frames; prints a table.

Every frame of `data/bags/demo` (320x240, depth in millimetres) goes through the estimator (bundled model, the node's
`pt_demo` post-processing) with its depth image; the refinement stage's time is divided by the frame's detections.
Rows: the PyTorch reference operators and the compiled ones (`RefineOptions.backend` "torch" and "auto"), measured
in one run, alternating frame by frame.

    python bench/bench_refine_bag.py [--threads 2] [--checkpoint CKPT] [--bag data/bags/demo]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, _ROOT)  # time this checkout, not an installed copy
from posecnn_core.estimator import EstimatorConfig, PoseEstimator  # noqa: E402
from posecnn_core.resources import resource_path  # noqa: E402


def bag_frames(bag: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rgb, depth metres, K) of every frame of a bag with /image (rgb8/bgr8), /depth (16UC1 mm or 32FC1 m) and
    /camera_info, matched by header stamp."""
    from rosbags.highlevel import AnyReader

    by_stamp: dict[tuple[int, int], dict] = {}
    with AnyReader([bag]) as reader:
        for conn, _, raw in reader.messages():
            if conn.topic in ("/image", "/depth", "/camera_info"):
                msg = reader.deserialize(raw, conn.msgtype)
                by_stamp.setdefault((msg.header.stamp.sec, msg.header.stamp.nanosec), {})[conn.topic] = msg
    frames = []
    for stamp in sorted(by_stamp):
        f = by_stamp[stamp]
        if len(f) < 3:
            continue
        im, d, info = f["/image"], f["/depth"], f["/camera_info"]
        rgb = np.frombuffer(im.data, np.uint8).reshape(im.height, im.width, 3)
        rgb = np.ascontiguousarray(rgb[:, :, ::-1] if im.encoding == "bgr8" else rgb)
        if d.encoding == "32FC1":
            depth = np.frombuffer(d.data, np.float32).reshape(d.height, d.width).copy()
        else:
            depth = np.frombuffer(d.data, np.uint16).reshape(d.height, d.width).astype(np.float32) / 1000.0
        frames.append((rgb, depth, np.asarray(info.k, dtype=np.float64).reshape(3, 3)))
    if not frames:
        raise SystemExit(f"no frames with /image, /depth and /camera_info in {bag}")
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--objects", default=None)
    ap.add_argument("--bag", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or resource_path("data/models/demo.pt")
    objects = args.objects or resource_path("config/objects/demo.yaml")
    frames = bag_frames(Path(args.bag) if args.bag else resource_path("data/bags/demo/metadata.yaml").parent)
    base = EstimatorConfig.preset("pt_demo")
    estimators = {b: PoseEstimator(checkpoint, objects, device="cpu", config=dataclasses.replace(
        base, refine_options=dataclasses.replace(base.refine_options, backend=b))) for b in ("torch", "auto")}
    for est in estimators.values():  # warm-up (grid tables, operator library)
        est.estimate(frames[0][0], frames[0][2], frames[0][1])
    per_frame: dict[str, list[tuple[int, float, int]]] = {b: [] for b in estimators}
    for rgb, depth, K in frames:
        for b, est in estimators.items():
            res = est.estimate(rgb, K, depth)
            per_frame[b].append((len(res.objects), res.timings_ms.get("refinement", 0.0),
                                 sum(o.refined for o in res.objects)))
    print(f"{len(frames)} frames of {frames[0][0].shape[1]}x{frames[0][0].shape[0]}, threads={torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.1f}")
    cols = ("operators", "objects", "refined", "frame median ms", "frame mean ms", "ms per object",
            "median ms per object")
    print(" | ".join(cols))
    for b, rows in per_frame.items():
        n = sum(r[0] for r in rows)
        total = sum(r[1] for r in rows)
        per_obj = [r[1] / r[0] for r in rows if r[0]]
        name = "PyTorch reference" if b == "torch" else "compiled (auto)"
        print(" | ".join([name, str(n), str(sum(r[2] for r in rows)), f"{statistics.median(r[1] for r in rows):.1f}",
                          f"{total / len(rows):.1f}", f"{total / max(n, 1):.1f}",
                          f"{statistics.median(per_obj):.1f}"]), flush=True)


if __name__ == "__main__":
    main()
