#!/usr/bin/env python3
"""PoseEstimator on a GPU at 640x480 with 22 classes and PoseCNN-PyTorch's full layout (random weights).

    python bench/bench_gpu.py --out bench.json [--frames 200] [--variants fp32 nchw bf16 graph graph_bf16]
    python bench/bench_gpu.py --out bench.json --variants compile compile_graph_bf16    # merges into the file
    python bench/bench_gpu.py --out bench.json --sections syncs      # in a process of its own (see below)
    python bench/bench_gpu.py --out dry.json --device cpu --tiny     # every step that needs no GPU, tiny sizes

What it measures, each figure also as a ratio against the fp32 eager path (``fp32``, the estimator's defaults)
measured in the same file:
- ``variants``: end-to-end ``estimate()`` wall time per frame (median, p99, mean over ``--frames`` frames after
  warm-up) for each EstimatorConfig variant, the per-stage times the estimator reports (CUDA events: preprocess,
  network = trunk + dense heads, voting, rotation = RoI pooling + box and rotation heads, transfer = device→host
  copy + host-side selection), peak GPU memory, and the poses' difference from the fp32 path on the same frames.
- ``voting``: Hough voting alone at 1/5/20 instances, with and without PT's same-label test.
- ``dense_agreement``: the dense outputs of the reduced-precision variants against fp32 on a random image.
- ``syncs``: device↔host synchronisations per steady-state frame (PyTorch's GPU trace; it stays on for the rest
  of the process and slows it, hence its own invocation).

The frames: random images; the network's semantic and centre outputs are replaced by an analytic scene of
``--instances`` objects (plus 1e-30 times the real outputs, so that no compiler can drop the dense heads), so
that voting, the RoI heads and the poses see a realistic scene while every layer of the network still runs.
The substitution's own cost is reported (``harness_ms``). Random weights: the numbers measure cost and numerical
agreement, not accuracy. The file is rewritten after every section, so a run cut short keeps what finished.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from posecnn_core.camera import ReferenceCamera  # noqa: E402
from posecnn_core.checkpoint import CheckpointMeta, save_checkpoint  # noqa: E402
from posecnn_core.estimator import EstimatorConfig, PoseEstimator  # noqa: E402
from posecnn_core.inference_runtime import pinned  # noqa: E402
from posecnn_core.network import PoseCNN  # noqa: E402
from posecnn_core.objects import BACKGROUND, ObjectSet  # noqa: E402
from posecnn_core.voting import VotingParams, hough_voting  # noqa: E402

TARGETS = {"e2e_median_ms": 3.0, "voting_5_instances_ms": 0.2, "peak_gpu_memory_gb": 2.0}
FX, FY = 1066.778, 1067.487  # YCB-Video's camera (also the reference camera: no depth rescaling)

# name -> (EstimatorConfig changes, needs CUDA)
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "fp32": ({}, False),
    "nchw": ({"channels_last": False}, False),
    "bf16": ({"amp": True}, True),
    "graph": ({"cuda_graph": True}, True),
    "graph_bf16": ({"cuda_graph": True, "amp": True}, True),
    "compile": ({"compile": True}, True),
    "compile_graph_bf16": ({"compile": True, "cuda_graph": True, "amp": True}, True),
}
DEFAULT_VARIANTS = ["fp32", "nchw", "bf16", "graph", "graph_bf16"]
SECTIONS = ("variants", "voting", "dense_agreement", "syncs")
STAGES = ("preprocess", "network", "voting", "rotation", "transfer")


# ----------------------------------------------------------------------------------------------------------------
# setup


class Setup:
    """Sizes and the model/scene shared by every section."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.device = torch.device(args.device)
        self.W, self.H = args.width, args.height
        self.C = args.classes
        self.fc_dim, self.trunk_width = args.fc_dim, args.trunk_width
        self.instances = args.instances
        self.K = np.array([[FX * self.W / 640, 0, self.W / 2 - 0.5], [0, FY * self.W / 640, self.H / 2 - 0.5],
                           [0, 0, 1]])
        g = torch.Generator().manual_seed(0)
        self.extents = (torch.rand(self.C, 3, generator=g) * 0.15 + 0.05).numpy()
        self.extents[0] = 0
        names = [BACKGROUND] + [f"object_{c:02d}" for c in range(1, self.C)]
        points = [np.zeros((0, 3), np.float32)] + [
            ((np.random.default_rng(c).random((200, 3)) - 0.5) * self.extents[c]).astype(np.float32)
            for c in range(1, self.C)]
        self.objects = ObjectSet("bench", names, points, self.extents, np.zeros(self.C, bool),
                                 reference_camera=ReferenceCamera(float(self.K[0, 0]), float(self.K[1, 1])))
        self.tmp = tempfile.TemporaryDirectory(prefix="posecnn_bench_gpu_")
        torch.manual_seed(0)
        net = PoseCNN(self.C, fc_dim=self.fc_dim, trunk_width=self.trunk_width)
        self.checkpoint = save_checkpoint(
            Path(self.tmp.name) / "random.pt", net,
            CheckpointMeta(num_classes=self.C, fc_dim=self.fc_dim, trunk_width=self.trunk_width,
                           class_names=names), half=True)
        del net
        rng = np.random.default_rng(1)
        self.images = [rng.integers(0, 256, (self.H, self.W, 3), dtype=np.uint8) for _ in range(4)]
        self.scene = analytic_scene(self.H, self.W, self.C, self.K, self.extents, self.instances, seed=3)

    def estimator(self, changes: dict[str, Any]) -> PoseEstimator:
        cfg = EstimatorConfig(**changes)
        est = PoseEstimator(self.checkpoint, self.objects, device=self.device, config=cfg)
        install_scene(est, self.scene)
        return est


def analytic_scene(H: int, W: int, C: int, K: np.ndarray, extents: np.ndarray, n: int,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores [1, C, H, W] (background 1, objects 5) and an exact centre field [1, 3C, H, W] of ``n`` disc-shaped
    instances of distinct classes, each about as large as its object seen at its depth."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.zeros(1, C, H, W)
    scores[0, 0] = 1.0
    vertex = torch.zeros(1, 3 * C, H, W)
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    margin = max(8, W // 16)
    for i in range(n):
        c = 1 + i % (C - 1)
        z = 0.6 + 0.6 * float(torch.rand(1, generator=g))
        radius = max(3.0, 0.35 * K[0, 0] * float(extents[c].max()) / z)
        cx = margin + (W - 2 * margin) * float(torch.rand(1, generator=g))
        cy = margin + (H - 2 * margin) * float(torch.rand(1, generator=g))
        inside = (u - cx) ** 2 + (v - cy) ** 2 < radius ** 2
        scores[0, c][inside] = 5.0
        d = torch.stack([cx - u, cy - v])
        d = d / d.norm(dim=0).clamp(min=1e-6)
        vertex[0, 3 * c][inside] = d[0][inside]
        vertex[0, 3 * c + 1][inside] = d[1][inside]
        vertex[0, 3 * c + 2][inside] = math.log(z)
    return scores, vertex


def install_scene(est: PoseEstimator, scene: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Make ``est.net.dense`` return the analytic scene (plus 1e-30 × the real outputs, which keeps every layer
    alive under any compiler and changes no value that matters)."""
    real_dense = est.net.dense
    scores0, vertex0 = (t.to(est.device) for t in scene)

    def dense(x: torch.Tensor):
        scores, vertex, conv4, conv5 = real_dense(x)
        return scores0 + 1e-30 * scores, vertex0 + 1e-30 * vertex, conv4, conv5

    est.net.dense = dense


# ----------------------------------------------------------------------------------------------------------------
# timing helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summary_ms(values: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(values), "p99_ms": percentile(values, 99),
            "mean_ms": statistics.fmean(values), "min_ms": min(values), "frames": len(values)}


def pose_records(result) -> list[dict[str, Any]]:
    return [{"cls": o.class_id, "score": o.score, "t": o.t.tolist(), "R": o.R.tolist(), "roi": o.roi.tolist()}
            for o in result.objects]


def pose_difference(ref: list[list[dict]], other: list[list[dict]]) -> dict[str, Any]:
    """Largest differences of ``other`` from ``ref`` over frames, detections matched by order."""
    worst = {"frames": len(ref), "count_mismatches": 0, "detections": 0, "max_t_m": 0.0, "max_rot_deg": 0.0,
             "max_score": 0.0, "max_roi_px": 0.0}
    for a, b in zip(ref, other):
        if [d["cls"] for d in a] != [d["cls"] for d in b]:
            worst["count_mismatches"] += 1
        for da, db in zip(a, b):
            if da["cls"] != db["cls"]:
                continue
            worst["detections"] += 1
            worst["max_t_m"] = max(worst["max_t_m"], float(np.abs(np.subtract(da["t"], db["t"])).max()))
            Rd = np.asarray(da["R"]).T @ np.asarray(db["R"])
            ang = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(Rd) - 1) / 2))))
            worst["max_rot_deg"] = max(worst["max_rot_deg"], ang)
            worst["max_score"] = max(worst["max_score"], abs(da["score"] - db["score"]))
            worst["max_roi_px"] = max(worst["max_roi_px"], float(np.abs(np.subtract(da["roi"], db["roi"])).max()))
    return worst


# ----------------------------------------------------------------------------------------------------------------
# sections


def run_variant(setup: Setup, name: str, frames: int, warmup: int, keep: int) -> dict[str, Any]:
    changes, _ = VARIANTS[name]
    dev = setup.device
    if dev.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    est = setup.estimator(changes)
    est.warmup(setup.H, setup.W)
    for i in range(warmup):
        est.estimate(setup.images[i % len(setup.images)], setup.K)
    sync(dev)
    setup_s = time.perf_counter() - t0
    wall: list[float] = []
    stages: dict[str, list[float]] = {}
    poses: list[list[dict]] = []
    dets: list[int] = []
    for i in range(frames):
        img = setup.images[i % len(setup.images)]
        t = time.perf_counter()
        res = est.estimate(img, setup.K)
        wall.append((time.perf_counter() - t) * 1e3)
        for k, v in res.timings_ms.items():
            stages.setdefault(k, []).append(v)
        dets.append(len(res.objects))
        if i < keep:
            poses.append(pose_records(res))
    out: dict[str, Any] = {"status": "ok", "config": changes, "setup_s": setup_s, **summary_ms(wall),
                           "stages_median_ms": {k: statistics.median(v) for k, v in stages.items()},
                           "detections_per_frame": statistics.median(dets)}
    if dev.type == "cuda":
        out["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        out["peak_gpu_reserved_mb"] = torch.cuda.max_memory_reserved(dev) / 2**20
        out["cuda_graphs"] = est._dense_runner.graphs
        out["compile_fell_back"] = est._dense_runner.compile_failed
    out["_poses"] = poses
    del est
    return out


def harness_cost(setup: Setup, repeat: int) -> float:
    """Milliseconds of the analytic-scene substitution alone (two elementwise ops over the dense outputs)."""
    dev = setup.device
    s, v = (t.to(dev) for t in setup.scene)
    a, b = torch.randn_like(s), torch.randn_like(v)
    times = []
    for _ in range(repeat + 2):
        sync(dev)
        t = time.perf_counter()
        _ = (s + 1e-30 * a, v + 1e-30 * b)
        sync(dev)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times[2:])


def time_call(fn, device: torch.device, repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return times


def section_voting(setup: Setup, repeat: int) -> dict[str, Any]:
    dev = setup.device
    backend = "cuda" if dev.type == "cuda" else "auto"
    K = torch.as_tensor(setup.K, dtype=torch.float32)
    ext = torch.as_tensor(setup.extents, dtype=torch.float32)
    if dev.type == "cuda":  # as the estimator passes them: host tensors in pinned memory, checked on the host
        K, ext = pinned(K), pinned(ext)
    out: dict[str, Any] = {"backend": backend}
    for same_label in (True, False):
        params = VotingParams(check_same_label=same_label)
        rows = {}
        for n in (1, 5, 20):
            scores, vertex = analytic_scene(setup.H, setup.W, setup.C, setup.K, setup.extents, n, seed=10 + n)
            labels = scores.argmax(1).to(dev)
            vertex = vertex.to(dev)
            found = hough_voting(labels, vertex, K, ext, params, backend=backend).rois.shape[0]
            times = time_call(lambda: hough_voting(labels, vertex, K, ext, params, backend=backend), dev, repeat)
            rows[str(n)] = {"found": found, "median_ms": statistics.median(times), "p99_ms": percentile(times, 99)}
        out["same_label" if same_label else "no_same_label"] = rows
    return out


def section_dense_agreement(setup: Setup) -> dict[str, Any]:
    """Labels and centre field of the reduced-precision dense forward against fp32 on one random image."""
    dev = setup.device
    if dev.type != "cuda":
        return {"status": "skipped: autocast variants run on CUDA only"}
    est = PoseEstimator(setup.checkpoint, setup.objects, device=dev, config=EstimatorConfig())
    out: dict[str, Any] = {"status": "ok"}
    with torch.inference_mode():
        x = est._network_input(setup.images[0], setup.K, None)
        ref_l, ref_v, _, _ = est._dense_core(x, setup.H, setup.W, None)
        for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            lab, vtx, _, _ = est._dense_core(x, setup.H, setup.W, dtype)
            err = (vtx - ref_v).abs()
            out[name] = {"label_agreement": float((lab == ref_l).float().mean()),
                         "vertex_max_abs": float(err.max()),
                         "vertex_rel_l2": float(err.norm() / ref_v.norm().clamp(min=1e-30))}
    del est
    return out


def section_syncs(setup: Setup, frames: int) -> dict[str, Any]:
    from posecnn_core.inference_runtime import count_syncs

    if setup.device.type != "cuda":
        return {"status": "skipped: needs CUDA"}
    out: dict[str, Any] = {"status": "ok"}
    for name in ("fp32", "graph_bf16"):
        est = setup.estimator(VARIANTS[name][0])
        est.warmup(setup.H, setup.W)
        for i in range(3):
            est.estimate(setup.images[i % 4], setup.K)
        per_frame = []
        for i in range(frames):
            with count_syncs() as counts:
                est.estimate(setup.images[i % 4], setup.K)
            per_frame.append(dict(counts))
        out[name] = {"per_frame": per_frame[-1], "max_total": max(sum(c.values()) for c in per_frame)}
        del est
    return out


# ----------------------------------------------------------------------------------------------------------------
# report


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "torch_cuda": torch.version.cuda, "cpu_count": os.cpu_count(),
                            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                            "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, capability=f"{p.major}.{p.minor}", sm_count=p.multi_processor_count,
                    gpu_memory_gb=round(p.total_memory / 2**30, 1), cudnn=torch.backends.cudnn.version())
    return info


def add_ratios(report: dict[str, Any]) -> None:
    variants = report.get("variants", {})
    base = variants.get("fp32", {})
    if base.get("status") != "ok":
        return
    for v in variants.values():
        if v.get("status") != "ok":
            continue
        v["ratio_vs_fp32"] = {k: v[k] / base[k] for k in ("median_ms", "p99_ms", "mean_ms") if base.get(k)}
        v["stage_ratio_vs_fp32"] = {k: v["stages_median_ms"][k] / base["stages_median_ms"][k]
                                    for k in v["stages_median_ms"] if base["stages_median_ms"].get(k)}
        if "peak_gpu_memory_mb" in v and base.get("peak_gpu_memory_mb"):
            v["memory_ratio_vs_fp32"] = v["peak_gpu_memory_mb"] / base["peak_gpu_memory_mb"]


def check_targets(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"targets": TARGETS}
    ok = [(n, v) for n, v in report.get("variants", {}).items() if v.get("status") == "ok"]
    if ok:
        best = min(ok, key=lambda nv: nv[1]["median_ms"])
        out["best_variant"] = best[0]
        out["e2e_median_ms"] = best[1]["median_ms"]
        out["e2e_ok"] = best[1]["median_ms"] <= TARGETS["e2e_median_ms"]
        mem = [v["peak_gpu_memory_mb"] for _, v in ok if "peak_gpu_memory_mb" in v]
        if mem:
            out["peak_gpu_memory_gb_max"] = max(mem) / 1024
            out["memory_ok"] = max(mem) / 1024 <= TARGETS["peak_gpu_memory_gb"]
    five = report.get("voting", {}).get("same_label", {}).get("5")
    if five:
        out["voting_5_ms"] = five["median_ms"]
        out["voting_ok"] = five["median_ms"] <= TARGETS["voting_5_instances_ms"]
    return out


def write(path: Path, report: dict[str, Any]) -> None:
    add_ratios(report)
    report["summary"] = check_targets(report)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file (results are merged into it when it exists)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=sorted(VARIANTS))
    p.add_argument("--sections", nargs="+", default=["variants", "voting", "dense_agreement"], choices=SECTIONS)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--warmup-frames", type=int, default=10)
    p.add_argument("--keep-poses", type=int, default=20, help="frames whose poses are compared with fp32")
    p.add_argument("--voting-repeat", type=int, default=50)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--classes", type=int, default=22)
    p.add_argument("--fc-dim", type=int, default=4096)
    p.add_argument("--trunk-width", type=float, default=1.0)
    p.add_argument("--instances", type=int, default=5)
    p.add_argument("--budget", type=float, default=None, help="seconds; later variants are skipped past it")
    p.add_argument("--no-cudnn-benchmark", action="store_true")
    p.add_argument("--tiny", action="store_true", help="dry-run sizes: 128x96, 4 classes, a narrow network, "
                                                        "5 frames")
    args = p.parse_args(argv)
    if args.tiny:
        args.width, args.height, args.classes, args.fc_dim, args.trunk_width = 128, 96, 4, 32, 0.125
        args.frames, args.warmup_frames, args.keep_poses, args.voting_repeat, args.instances = 5, 1, 3, 2, 2
    start = time.perf_counter()
    out = Path(args.out)
    report: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark  # fixed input size
    report["machine"] = machine_info(device)
    report["settings"] = {"size": [args.width, args.height], "classes": args.classes, "fc_dim": args.fc_dim,
                          "trunk_width": args.trunk_width, "frames": args.frames, "instances": args.instances,
                          "device": str(device)}
    setup = Setup(args)
    print(f"bench_gpu: {args.width}x{args.height}, {args.classes} classes, fc_dim {args.fc_dim}, trunk_width "
          f"{args.trunk_width}, {args.instances} instances, device {device} "
          f"({report['machine'].get('gpu', platform.processor() or 'cpu')})", flush=True)
    failures = 0

    def section(name: str, fn) -> Any:
        nonlocal failures
        t = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - one failing section must not lose the others
            failures += 1
            traceback.print_exc()
            value = {"status": f"failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"}
        print(f"  {name}: {time.perf_counter() - t:.1f} s", flush=True)
        return value

    if "variants" in args.sections:
        variants = report.setdefault("variants", {})
        report["harness_ms"] = section("harness", lambda: harness_cost(setup, 5))
        poses_ref = None
        for name in args.variants:
            needs_cuda = VARIANTS[name][1]
            if needs_cuda and device.type != "cuda":
                variants[name] = {"status": "skipped: needs CUDA"}
                print(f"  {name}: skipped (needs CUDA)", flush=True)
                continue
            if args.budget is not None and time.perf_counter() - start > args.budget:
                variants[name] = {"status": "skipped: out of time"}
                print(f"  {name}: skipped (out of time)", flush=True)
                continue
            res = section(f"variant {name}", lambda n=name: run_variant(setup, n, args.frames, args.warmup_frames,
                                                                         args.keep_poses))
            poses = res.pop("_poses", None)
            if name == "fp32":
                poses_ref = poses
                (Path(str(out) + ".poses.json")).write_text(json.dumps(poses))
            elif poses is not None:
                if poses_ref is None and Path(str(out) + ".poses.json").is_file():
                    poses_ref = json.loads(Path(str(out) + ".poses.json").read_text())
                if poses_ref is not None:
                    res["pose_diff_vs_fp32"] = pose_difference(poses_ref, poses)
            variants[name] = res
            if res.get("status") == "ok":
                print(f"    median {res['median_ms']:.3f} ms  p99 {res['p99_ms']:.3f} ms  "
                      + "  ".join(f"{k} {v:.3f}" for k, v in res["stages_median_ms"].items())
                      + (f"  peak {res['peak_gpu_memory_mb']:.0f} MB" if "peak_gpu_memory_mb" in res else ""),
                      flush=True)
            write(out, report)
    if "voting" in args.sections:
        report["voting"] = section("voting", lambda: section_voting(setup, args.voting_repeat))
        write(out, report)
    if "dense_agreement" in args.sections:
        report["dense_agreement"] = section("dense_agreement", lambda: section_dense_agreement(setup))
        write(out, report)
    if "syncs" in args.sections:
        report["syncs"] = section("syncs", lambda: section_syncs(setup, 3))
        write(out, report)
    write(out, report)
    print(json.dumps(report.get("summary", {}), indent=1), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
