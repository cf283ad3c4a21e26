#!/usr/bin/env python3
"""Data-parallel training equals one process, on the machine at hand (the ``ddp`` step of tools/gpu_check.sh).

    python tools/gpu_ddp_check.py --out DIR/ddp.json [--cpu-dry-run] [--iters 4] [--max-gpus 4]

Trains the same tiny model (test/_train_helpers.py's toy frames with pixel noise, no symmetric class, trunk_width
0.125, fc_dim 16, ground-truth RoIs, dropout 0, SGD) twice through the documented command lines and compares the
final weights and every iteration's logged losses:

- more than one GPU: ``torchrun --nproc_per_node=N -m posecnn_core.train`` (NCCL, N = GPUs up to --max-gpus,
  batch 1 each) against ``posecnn-train`` on cuda:0 with batch N (the same global batch);
- one GPU: ``posecnn-train`` on CUDA against the same on the CPU (batch 2 each);
- ``--cpu-dry-run`` (or no GPU): torchrun with gloo, 2 CPU processes x batch 1, against one CPU process x batch 2.

TF32 is off in every run (NVIDIA_TF32_OVERRIDE=0), so that CUDA computes in float32 as the CPU does. Writes the
JSON report (mode, world size, seconds of each run, largest weight difference and change, largest relative loss
difference, tolerance, ok) and exits 0 when the runs agree within the tolerance, 1 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ITERS_PER_EPOCH = 3
# largest |weight difference| accepted: float32 rounding after a few steps is ~1e-7 between two CPU runs
# (test/test_train_ddp.py); CUDA kernels (cuDNN algorithms, atomics in RoI pooling's backward) add rounding of
# the same order per step, so CUDA comparisons get 10x more room
TOLERANCE = {"gloo": 2e-6, "nccl": 2e-5, "cuda_vs_cpu": 2e-5}
LOSS_RTOL = {"gloo": 2e-5, "nccl": 2e-4, "cuda_vs_cpu": 2e-4}


def _settings(data: Path, objects: Path, out: Path, device: str, batch: int, iters: int) -> list[str]:
    return [f"train_data=[{{root: '{data}'}}]", f"objects='{objects}'", "vgg16_init=null", "trunk_width=0.125",
            "fc_dim=16", f"device={device}", "workers=0", "progress=false", f"output_dir='{out}'",
            "roi_source=gt", "dropout=0", "optimizer=sgd", "lr=0.001", "lr_milestones=[2]", f"max_iters={iters}",
            f"checkpoint_interval={iters}", f"batch_size={batch}", "augment.background_prob_real=0"]


def _run(cmd: list[str], timeout: float) -> float:
    env = dict(os.environ, NVIDIA_TF32_OVERRIDE="0", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, timeout=timeout, text=True, capture_output=True)
    secs = time.perf_counter() - t0
    print((proc.stdout + proc.stderr)[-3000:], flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd[:6])} ...")
    return secs


def _train(settings: list[str], nproc: int, timeout: float) -> float:
    sets = [f"--set={s}" for s in settings]
    if nproc == 1:
        return _run([PY, "-m", "posecnn_core.train", *sets], timeout)
    return _run([PY, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                 "-m", "posecnn_core.train", *sets], timeout)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def compare(a: Path, b: Path, init: dict | None = None) -> dict[str, float]:
    """Largest |weight difference| between two runs' final models, and largest relative loss difference over
    every logged iteration (and, given the initial weights, the largest change by training)."""
    from posecnn_core.checkpoint import read_state_dict

    wa, _ = read_state_dict(a / "model_final.pt")
    wb, _ = read_state_dict(b / "model_final.pt")
    if wa.keys() != wb.keys():
        raise ValueError("the two models have different parameters")
    out = {"max_weight_diff": max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)}
    if init is not None:
        out["max_weight_change"] = max(float((wa[k].float() - init[k].float()).abs().max()) for k in wa)
    ra, rb = _rows(a / "train_iterations.csv"), _rows(b / "train_iterations.csv")
    if [r["iteration"] for r in ra] != [r["iteration"] for r in rb]:
        raise ValueError("the two runs logged different iterations")
    rel = 0.0
    for x, y in zip(ra, rb):
        for k in ("loss", "semantic", "vertex", "box_class", "box_reg", "pose", "lr"):
            fx, fy = float(x[k]), float(y[k])
            rel = max(rel, abs(fx - fy) / max(abs(fy), 1e-6))
    out["max_loss_rel_diff"] = rel
    out["iterations"] = len(ra)
    return out


def _initial_weights(data: Path, objects: Path, iters: int) -> dict:
    """The weights every run starts from (the trainer seeds its network from the config's seed)."""
    from posecnn_core.train.config import load_config
    from posecnn_core.train.trainer import Trainer

    t = Trainer(load_config(None, _settings(data, objects, data.parent / "init", "cpu", 1, iters)))
    return {k: v.detach().clone() for k, v in t.net.state_dict().items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON report to write")
    p.add_argument("--cpu-dry-run", action="store_true", help="gloo on the CPU (what CI runs)")
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--max-gpus", type=int, default=4)
    p.add_argument("--timeout", type=float, default=240.0, help="seconds per training run")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "test"))
    import torch
    from _train_helpers import write_object_set, write_toy_dataset

    gpus = 0 if args.cpu_dry_run else torch.cuda.device_count()
    if gpus >= 2:
        mode, nproc = "nccl", min(gpus, args.max_gpus)
    elif gpus == 1:
        mode, nproc = "cuda_vs_cpu", 1
    else:
        mode, nproc = "gloo", 2
    report: dict = {"mode": mode, "gpus": gpus, "world_size": nproc, "iters": args.iters,
                    "tolerance": TOLERANCE[mode], "loss_rtol": LOSS_RTOL[mode], "ok": False}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="posecnn_ddp_check.") as tmp:
            root = Path(tmp)
            objects = write_object_set(root, symmetric_training=())
            global_batch = max(nproc, 2)
            write_toy_dataset(root / "ds", frames=ITERS_PER_EPOCH * global_batch, noise=20.0)
            data = root / "ds"
            init = _initial_weights(data, objects, args.iters)
            if mode == "cuda_vs_cpu":
                a = ("cuda", 1, global_batch)
                b = ("cpu", 1, global_batch)
            elif mode == "nccl":
                a = ("cuda", nproc, 1)
                b = ("cuda", 1, global_batch)
            else:
                a = ("cpu", nproc, 1)
                b = ("cpu", 1, global_batch)
            secs = {}
            for name, (device, n, batch) in (("a", a), ("b", b)):
                secs[name] = round(_train(_settings(data, objects, root / name, device, batch, args.iters), n,
                                          args.timeout), 1)
            report["runs"] = {"a": {"device": a[0], "processes": a[1], "batch_size": a[2], "seconds": secs["a"]},
                              "b": {"device": b[0], "processes": b[1], "batch_size": b[2], "seconds": secs["b"]}}
            report.update(compare(root / "a", root / "b", init))
            report["ok"] = bool(report["max_weight_diff"] <= TOLERANCE[mode]
                                and report["max_loss_rel_diff"] <= LOSS_RTOL[mode]
                                and report["max_weight_change"] > 100 * TOLERANCE[mode]
                                and report["iterations"] == args.iters)
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        report["error"] = " ".join(str(exc).split())
    out_path.write_text(json.dumps(report, indent=1))
    print(json.dumps(report), flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
