"""Hough voting speed at 640x480 with 22 classes: PyTorch reference vs compiled CPU (vs CUDA when available).

Scenes have 1, 5 or 20 object instances (discs sized like their projected models, noisy directions); the label
map is otherwise background. Times are medians; CUDA times use CUDA events around the whole call.

    python bench/bench_voting.py --repeat 5 [--threads 4] [--instances 1 5 20]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout, not an installed copy

from posecnn_core.ops.extension import has_op  # noqa: E402
from posecnn_core.voting import VotingParams, hough_voting  # noqa: E402

H, W, C = 480, 640, 22
FX, FY, PX, PY = 1066.778, 1067.487, 312.9869, 241.3109


def make_scene(n_instances: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    extents = torch.rand(C, 3, generator=g) * 0.15 + 0.05
    extents[0] = 0
    labels = torch.zeros(1, H, W, dtype=torch.int64)
    vertex = torch.zeros(1, 3 * C, H, W)
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    for i in range(n_instances):
        c = 1 + i % (C - 1)
        depth = 0.6 + 0.8 * float(torch.rand(1, generator=g))
        radius = 0.4 * FX * float(extents[c].max()) / depth
        cx = 40 + (W - 80) * float(torch.rand(1, generator=g))
        cy = 40 + (H - 80) * float(torch.rand(1, generator=g))
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius ** 2
        dx, dy = cx - xx, cy - yy
        norm = torch.sqrt(dx * dx + dy * dy).clamp(min=1e-6)
        labels[0][mask] = c
        vertex[0, 3 * c][mask] = (dx / norm)[mask]
        vertex[0, 3 * c + 1][mask] = (dy / norm)[mask]
        vertex[0, 3 * c + 2][mask] = math.log(depth)
    vertex[:, 0::3] += 0.1 * torch.randn(vertex[:, 0::3].shape, generator=g)
    vertex[:, 1::3] += 0.1 * torch.randn(vertex[:, 1::3].shape, generator=g)
    K = torch.tensor([[FX, 0, PX], [0, FY, PY], [0, 0, 1]])
    return labels, vertex, K, extents


def time_cpu(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def time_cuda(fn, repeat: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--instances", type=int, nargs="+", default=[1, 5, 20])
    ap.add_argument("--no-same-label", action="store_true",
                    help="the occlusion-robust option (check_same_label=False); default: PT's same-label test")
    ap.add_argument("--skip-torch", action="store_true", help="do not time the PyTorch reference (slow on CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    p = VotingParams(check_same_label=not args.no_same_label)
    cpp = has_op("hough_voting", "cpu")
    cuda = torch.cuda.is_available() and has_op("hough_voting", "cuda")
    print(f"Hough voting {W}x{H}, {C} classes, threads={torch.get_num_threads()}, repeat={args.repeat}, "
          f"check_same_label={p.check_same_label}" + (f", GPU: {torch.cuda.get_device_name()}" if cuda else ""))
    cols = ["instances", "found", "torch-cpu ms", "cpp ms"] + (["torch-cuda ms", "cuda ms"] if cuda else [])
    print(" | ".join(f"{c:>13}" for c in cols))
    for n in args.instances:
        scene = make_scene(n)
        found = hough_voting(*scene, p, backend="cpp" if cpp else "torch").rois.shape[0]
        row = [str(n), str(found), "skipped" if args.skip_torch else
               f"{time_cpu(lambda: hough_voting(*scene, p, backend='torch'), args.repeat):.1f}"]
        row.append(f"{time_cpu(lambda: hough_voting(*scene, p, backend='cpp'), args.repeat):.1f}" if cpp else "n/a")
        if cuda:
            dev = [t.cuda() for t in scene]
            row.append(f"{time_cuda(lambda: hough_voting(*dev, p, backend='torch'), args.repeat):.1f}")
            row.append(f"{time_cuda(lambda: hough_voting(*dev, p, backend='cuda'), args.repeat):.2f}")
        print(" | ".join(f"{c:>13}" for c in row))


if __name__ == "__main__":
    main()
