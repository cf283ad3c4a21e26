#!/usr/bin/env python3
"""Poses of a checkpoint under several EstimatorConfig variants on a dataset split, against the fp32 defaults.

    python bench/compare_precision.py --checkpoint CKPT --objects config/objects/demo.yaml \
        --dataset data/synthetic/demo --split test --out precision.json [--device cuda] [--max-frames 100] \
        [--variants fp32 bf16 graph_bf16]

For each variant: ms per frame over the split, the evaluation (mean and pooled ADD / ADD-S AUC, detections, as
``posecnn-eval`` computes them with PT's YCB-Video evaluation preset) and, against the ``fp32`` variant, the
largest differences of the detections on the same frames (matched by class and rank): translation, rotation,
score, box, and the number of frames whose detections differ in class or count. Variants that need CUDA are
skipped on the CPU. Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from posecnn_core.estimator import EstimatorConfig, PoseEstimator  # noqa: E402
from posecnn_core.evaluate import runner  # noqa: E402
from posecnn_core.evaluate.report import evaluate_results  # noqa: E402
from posecnn_core.datasets.ycb import read_frame_list  # noqa: E402
from posecnn_core.objects import load_object_set  # noqa: E402

VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "fp32": ({}, False),
    "bf16": ({"amp": True}, False),  # CPU autocast runs bfloat16 too
    "fp16": ({"amp": True, "amp_dtype": "float16"}, True),
    "graph_bf16": ({"amp": True, "cuda_graph": True}, True),
    "compile_bf16": ({"amp": True, "compile": True}, True),
}


def detection_difference(ref, other) -> dict[str, Any]:
    out = {"frames": 0, "frames_differing": 0, "matched": 0, "max_t_m": 0.0, "median_t_m": 0.0, "max_rot_deg": 0.0,
           "median_rot_deg": 0.0, "max_score": 0.0, "max_roi_px": 0.0}
    dts, drs = [], []
    for fid, dets in ref.frames.items():
        out["frames"] += 1
        mine = other.frames.get(fid, [])
        if sorted(d.class_id for d in dets) != sorted(d.class_id for d in mine):
            out["frames_differing"] += 1
        by_class: dict[int, list] = {}
        for d in mine:
            by_class.setdefault(d.class_id, []).append(d)
        seen: dict[int, int] = {}
        for d in dets:
            k = seen.get(d.class_id, 0)
            seen[d.class_id] = k + 1
            cands = by_class.get(d.class_id, [])
            if k >= len(cands):
                continue
            e = cands[k]
            out["matched"] += 1
            dts.append(float(np.abs(np.asarray(d.t) - np.asarray(e.t)).max()))
            cos = np.clip((np.trace(np.asarray(d.R).T @ np.asarray(e.R)) - 1) / 2, -1, 1)
            drs.append(math.degrees(math.acos(cos)))
            out["max_score"] = max(out["max_score"], abs(d.score - e.score))
            out["max_roi_px"] = max(out["max_roi_px"], float(np.abs(np.asarray(d.roi) - np.asarray(e.roi)).max()))
    if dts:
        out.update(max_t_m=max(dts), median_t_m=float(np.median(dts)), max_rot_deg=max(drs),
                   median_rot_deg=float(np.median(drs)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--objects", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--variants", nargs="+", default=["fp32", "bf16", "graph_bf16"], choices=sorted(VARIANTS))
    args = p.parse_args(argv)
    device = torch.device(args.device)
    objects = load_object_set(args.objects)
    ids = read_frame_list(args.dataset, args.split)[: args.max_frames]
    gt = runner.read_ground_truth(args.dataset, args.split, objects, frame_ids=ids)
    report: dict[str, Any] = {"checkpoint": str(args.checkpoint), "dataset": str(args.dataset), "split": args.split,
                              "frames": len(ids), "device": str(device), "variants": {}}
    results = {}
    for name in ["fp32"] + [v for v in args.variants if v != "fp32"]:
        changes, needs_cuda = VARIANTS[name]
        if needs_cuda and device.type != "cuda":
            report["variants"][name] = {"status": "skipped: needs CUDA"}
            continue
        cfg = EstimatorConfig.preset("pt_ycb_eval", **changes)
        est = PoseEstimator(args.checkpoint, objects, device=device, config=cfg)
        t = time.perf_counter()
        est.warmup(*_frame_size(args.dataset, ids[0]))
        warm = time.perf_counter() - t
        res, timing = runner.run_estimator(est, args.dataset, args.split, frame_ids=ids, progress=False)
        ev = evaluate_results(res, gt, objects)
        row: dict[str, Any] = {"status": "ok", "config": changes, "warmup_s": warm,
                               "ms_per_frame": timing["ms_per_frame"],
                               "mean_add_auc": ev.mean.add_auc, "mean_adds_auc": ev.mean.adds_auc,
                               "mean_add_or_adds_auc": ev.mean.add_or_adds_auc,
                               "detected": ev.pooled.detected, "instances": ev.pooled.count}
        results[name] = res
        if name != "fp32":
            row["vs_fp32"] = detection_difference(results["fp32"], res)
        report["variants"][name] = row
        del est
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"{'variant':<12} {'ms/frame':>9} {'ADD AUC':>8} {'ADD-S AUC':>9} {'detected':>9}  vs fp32")
    for name, row in report["variants"].items():
        if row.get("status") != "ok":
            print(f"{name:<12} {row['status']}")
            continue
        diff = row.get("vs_fp32")
        print(f"{name:<12} {row['ms_per_frame']:9.2f} {row['mean_add_auc']:8.2f} {row['mean_adds_auc']:9.2f} "
              f"{row['detected']:>4}/{row['instances']:<4}  "
              + (f"max dt {diff['max_t_m'] * 100:.2f} cm, max dR {diff['max_rot_deg']:.2f} deg, "
                 f"{diff['frames_differing']} frames with other detections" if diff else ""))
    return 0


def _frame_size(root: str, frame_id: str) -> tuple[int, int]:
    from posecnn_core.datasets.ycb import read_frame

    frame = read_frame(root, frame_id, load_depth=False)
    h, w = frame.color_bgr.shape[:2]
    return h, w


if __name__ == "__main__":
    sys.exit(main())
