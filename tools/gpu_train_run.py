#!/usr/bin/env python3
"""The time-boxed pieces of tools/gpu_train.sh, each through the project's documented command lines.

    gpu_train_run.py render --objects YAML --out DIR --seconds S [--workers N] [--platform egl] [--size 320x240]
    gpu_train_run.py probe  --config YAML --data DIR/data.json --out DIR [--iters 150] [--set K=V ...]
    gpu_train_run.py train  --config YAML --data DIR/data.json --out DIR --minutes M --probe DIR/probe.json
                            [--set K=V ...]

render: ``python -m posecnn_core.synth`` in chunks (different seeds; the first one keeps 10 % as its test split)
  until the time is spent or ``--max-frames`` are written; a chunk is sized from the rate the previous ones
  achieved. Writes DIR/data.json {roots, test_root, frames, seconds, frames_per_s, platform}.
probe: ``posecnn-train`` for ``--iters`` iterations into a scratch folder; the rate is read from the growth of
  train_iterations.csv between its 30th row and its last (so start-up does not count). Writes probe.json.
train: ``posecnn-train`` with max_iters = rate x the minutes left after start-up, and iters_per_epoch = max_iters /
  epochs, so that the config's whole schedule (its learning-rate milestones) fits the minutes. Writes train.json
  (iterations, seconds, rate, last losses, checkpoint path).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

PY = sys.executable


def _run(cmd: list[str], timeout: float, log_prefix: str = "") -> subprocess.CompletedProcess:
    print(f"{log_prefix}$ {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd, timeout=timeout, text=True)


# ----------------------------------------------------------------------------------------------------- render


def cmd_render(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    w, h = (int(v) for v in args.size.split("x"))
    start = time.perf_counter()
    deadline = start + args.seconds
    roots: list[str] = []
    frames = 0
    rate = None
    chunk = args.first_chunk
    k = 0
    while frames < args.max_frames:
        left = deadline - time.perf_counter()
        if rate is not None:
            chunk = int(min(args.max_frames - frames, max(0.0, (left - args.startup_s) * rate)))
            if chunk < args.min_chunk:
                break
        chunk = min(chunk, args.max_frames - frames)
        root = out / f"chunk{k:02d}"
        cmd = [PY, "-m", "posecnn_core.synth", "--objects", args.objects, "--out", str(root), "--frames", str(chunk),
               "--seed", str(args.seed + k), "--width", str(w), "--height", str(h), "--min-objects", "2",
               "--max-objects", "6", "--depth-range", "0.45,1.0", "--test-fraction", "0.1" if k == 0 else "0",
               "--platform", args.platform, "--workers", str(args.workers), "--no-progress",
               *shlex.split(args.synth_args)]
        t = time.perf_counter()
        try:
            proc = _run(cmd, timeout=max(10.0, deadline - time.perf_counter() + 30.0))
        except subprocess.TimeoutExpired:
            print(f"chunk {k} timed out", flush=True)
            break
        if proc.returncode != 0:
            print(f"chunk {k} failed (exit {proc.returncode})", flush=True)
            if k == 0:
                return proc.returncode
            break
        secs = time.perf_counter() - t
        roots.append(str(root))
        frames += chunk
        rate = frames / (time.perf_counter() - start)
        print(f"chunk {k}: {chunk} frames in {secs:.1f} s; {frames} frames so far ({rate:.1f} frames/s)", flush=True)
        k += 1
        if time.perf_counter() > deadline:
            break
    if not roots:
        print("no data rendered", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    info = {"roots": roots, "test_root": roots[0], "frames": frames, "seconds": round(seconds, 1),
            "frames_per_s": round(frames / seconds, 1), "platform": args.platform, "size": [w, h],
            "workers": args.workers}
    (out / "data.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------- training


def _train_data(data: dict) -> str:
    return "train_data=[" + ", ".join(f"{{root: '{r}', split: train, synthetic: true}}" for r in data["roots"]) + "]"


def _csv_rows(path: Path) -> int:
    try:
        with open(path) as fh:
            return max(0, sum(1 for _ in fh) - 1)
    except OSError:
        return 0


def _train_cmd(config: str, sets: list[str]) -> list[str]:
    cmd = [PY, "-m", "posecnn_core.train", "--config", config]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def _watch(cmd: list[str], csv_path: Path, timeout: float, mark: int) -> tuple[int, float, dict[int, float]]:
    """Run ``cmd``, noting when train_iterations.csv first reaches 1 row, ``mark`` rows, and its last row."""
    print(f"$ {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, text=True)
    seen: dict[int, float] = {}
    last = 0
    try:
        while proc.poll() is None:
            if time.perf_counter() - t0 > timeout:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                print(f"training stopped after {timeout:.0f} s", flush=True)
                break
            rows = _csv_rows(csv_path)
            now = time.perf_counter() - t0
            if rows >= 1 and 1 not in seen:
                seen[1] = now
            if rows >= mark and mark not in seen:
                seen[mark] = now
            if rows > last:
                last, seen[-1] = rows, now
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
    rows = _csv_rows(csv_path)
    if rows > last:
        seen[-1] = time.perf_counter() - t0
    seen[0] = rows
    return proc.returncode if proc.returncode is not None else -9, time.perf_counter() - t0, seen


def cmd_probe(args: argparse.Namespace) -> int:
    data = json.loads(Path(args.data).read_text())
    out = Path(args.out)
    run = out / "probe_run"
    sets = [_train_data(data), f"output_dir={run}", "resume=null", "progress=false", f"max_iters={args.iters}",
            f"iters_per_epoch={args.iters}", "checkpoint_interval=1000000", *args.set]
    rc, secs, seen = _watch(_train_cmd(args.config, sets), run / "train_iterations.csv", args.timeout, 30)
    rows = int(seen.get(0, 0))
    info = {"rc": rc, "seconds": round(secs, 1), "iterations": rows}
    if rows > 30 and 30 in seen and seen.get(-1, 0) > seen[30]:
        info["iters_per_s"] = (rows - 30) / (seen[-1] - seen[30])
        info["startup_s"] = round(seen.get(1, 0.0), 1)
    elif rows >= 2 and 1 in seen and seen.get(-1, 0) > seen[1]:
        info["iters_per_s"] = (rows - 1) / (seen[-1] - seen[1])
        info["startup_s"] = round(seen[1], 1)
    elif rows >= 2:
        # a short probe (the dry run's) may finish between two looks at the CSV: take the rate from the
        # trainer's own per-iteration times instead (the first iteration, with its warm-up, left out)
        per_iter = [float(r["seconds"]) for r in csv.DictReader(open(run / "train_iterations.csv"))][1:]
        if per_iter and sum(per_iter) > 0:
            info["iters_per_s"] = len(per_iter) / sum(per_iter)
            info["startup_s"] = round(seen.get(1, seen.get(-1, 0.0)), 1)
    (out / "probe.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info), flush=True)
    return 0 if rc == 0 and "iters_per_s" in info else 1


def cmd_train(args: argparse.Namespace) -> int:
    data = json.loads(Path(args.data).read_text())
    probe = json.loads(Path(args.probe).read_text())
    out = Path(args.out)
    run = out / "run"
    printed = subprocess.run(_train_cmd(args.config, args.set) + ["--print-config"], capture_output=True, text=True,
                             timeout=120)
    if printed.returncode != 0:
        print(printed.stderr, file=sys.stderr)
        return 2
    epochs = int(yaml.safe_load(printed.stdout)["epochs"])
    rate, startup = float(probe["iters_per_s"]), float(probe.get("startup_s", 20.0))
    budget = args.minutes * 60.0
    iters = max(epochs, int(rate * budget * 0.97))
    per_epoch = max(1, math.ceil(iters / epochs))
    iters = per_epoch * epochs
    sets = [_train_data(data), f"output_dir={run}", "resume=null", "progress=false", f"max_iters={iters}",
            f"iters_per_epoch={per_epoch}", f"checkpoint_interval={max(50, iters // 5)}", *args.set]
    # the schedule is sized for `minutes` of iterations; start-up comes on top, and a slower run is cut
    rc, secs, seen = _watch(_train_cmd(args.config, sets), run / "train_iterations.csv",
                            budget * 1.25 + startup + 60.0, 30)
    rows = list(csv.DictReader(open(run / "train_iterations.csv"))) if (run / "train_iterations.csv").is_file() else []
    latest = run / "checkpoints" / "latest.pt"
    info = {"rc": rc, "planned_iterations": iters, "iters_per_epoch": per_epoch, "epochs": epochs,
            "iterations": len(rows), "seconds": round(secs, 1), "probe_iters_per_s": round(rate, 2),
            "checkpoint": str(latest) if latest.is_file() else None,
            "last_losses": {k: float(v) for k, v in rows[-1].items() if k not in ("epoch", "iteration", "seconds")}
            if rows else None,
            "first_losses": {k: float(v) for k, v in rows[0].items() if k not in ("epoch", "iteration", "seconds")}
            if rows else None}
    if 30 in seen and seen.get(-1, 0) > seen[30]:
        info["iters_per_s"] = round((len(rows) - 30) / (seen[-1] - seen[30]), 2)
    (out / "train.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info), flush=True)
    return 0 if latest.is_file() else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("--objects", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--seconds", type=float, required=True)
    r.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    r.add_argument("--platform", default="egl")
    r.add_argument("--size", default="320x240")
    r.add_argument("--max-frames", type=int, default=20000)
    r.add_argument("--first-chunk", type=int, default=2000)
    r.add_argument("--min-chunk", type=int, default=200)
    r.add_argument("--startup-s", type=float, default=8.0, help="expected start-up time of one synth call")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--synth-args", default="", help="more options for python -m posecnn_core.synth (one string)")
    for name in ("probe", "train"):
        s = sub.add_parser(name)
        s.add_argument("--config", required=True)
        s.add_argument("--data", required=True)
        s.add_argument("--out", required=True)
        s.add_argument("--set", action="append", default=[])
        if name == "probe":
            s.add_argument("--iters", type=int, default=150)
            s.add_argument("--timeout", type=float, default=150.0)
        else:
            s.add_argument("--minutes", type=float, required=True)
            s.add_argument("--probe", required=True)
    args = p.parse_args(argv)
    return {"render": cmd_render, "probe": cmd_probe, "train": cmd_train}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
