"""CPU timings of PoseCNN's stages at 640x480 with 22 classes (YCB-Video size); prints a table.

    python bench/bench_cpu.py [--repeat 3] [--threads N] [--instances 5]

Stages: dense forward (VGG16 trunk + heads), Hough voting on an analytic field with N instances (each backend
available), RoI pooling + box/rotation heads for the voted RoIs, and the whole estimator on one frame.
Random weights: the numbers measure cost, not accuracy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout, not an installed copy

from posecnn_core.network import PoseCNN  # noqa: E402
from posecnn_core.voting import VotingParams, hough_voting  # noqa: E402

H, W, C = 480, 640, 22
K = torch.tensor([[1066.778, 0.0, 312.9869], [0.0, 1067.487, 241.3109], [0.0, 0.0, 1.0]])


def timed(fn, repeat: int) -> float:
    """Median wall time in ms over `repeat` runs after one warm-up run."""
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(samples)


def analytic_field(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels with `n` disc-shaped instances of random classes, and exact centre directions/log-depths."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(1, H, W, dtype=torch.long)
    vertex = torch.zeros(1, 3 * C, H, W)
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    for _ in range(n):
        c = int(torch.randint(1, C, (1,), generator=g))
        cx, cy = float(torch.randint(60, W - 60, (1,), generator=g)), float(torch.randint(60, H - 60, (1,), generator=g))
        z = 0.5 + float(torch.rand(1, generator=g))
        radius = 0.4 * float(K[0, 0]) * 0.15 / z  # within the object's projected size (extent 0.15 m)
        inside = (u - cx) ** 2 + (v - cy) ** 2 < radius**2
        labels[0][inside] = c
        d = torch.stack([cx - u, cy - v])
        d = d / d.norm(dim=0).clamp(min=1e-6)
        vertex[0, 3 * c][inside] = d[0][inside]
        vertex[0, 3 * c + 1][inside] = d[1][inside]
        vertex[0, 3 * c + 2][inside] = float(np.log(z))
    return labels, vertex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--fc-dim", type=int, default=4096)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows: list[tuple[str, float]] = []
    with torch.inference_mode():
        net = PoseCNN(C, fc_dim=args.fc_dim).eval()
        x = torch.randn(1, 3, H, W)
        rows.append(("dense forward (fp32)", timed(lambda: net.dense(x), args.repeat)))
        net_cl = net.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        rows.append(("dense forward (fp32, channels_last)", timed(lambda: net_cl.dense(x_cl), args.repeat)))
        _, _, conv4, conv5 = net.dense(x)
        extents = torch.full((C, 3), 0.15)
        extents[0] = 0
        params = VotingParams()
        for n in args.instances:
            labels, vertex = analytic_field(n)
            for backend in ("torch", "cpp"):
                try:
                    out = hough_voting(labels, vertex, K, extents, params, backend=backend)
                except RuntimeError as exc:
                    rows.append((f"voting {n} inst [{backend}] unavailable: {str(exc).splitlines()[0][:40]}", float("nan")))
                    continue
                ms = timed(lambda: hough_voting(labels, vertex, K, extents, params, backend=backend), args.repeat)
                rows.append((f"voting {n:>2} inst, {out.rois.shape[0]:>2} found [{backend}]", ms))
        for r in (1, 5, 20):
            rois = torch.tensor([[0.0, 100.0, 80.0, 260.0, 240.0]]).repeat(r, 1)
            rows.append((f"RoI pool + box & rotation heads, {r:>2} RoIs",
                         timed(lambda: (net.box_head(conv4, conv5, rois), net.rotation_head(conv4, conv5, rois)),
                               args.repeat)))
    width = max(len(name) for name, _ in rows)
    print(f"CPU, {args.threads} thread(s), {W}x{H}, {C} classes, fc_dim {args.fc_dim}, median of {args.repeat}")
    print(f"{'stage'.ljust(width)} | ms")
    print(f"{'-' * width}-|---------")
    for name, ms in rows:
        print(f"{name.ljust(width)} | {ms:8.1f}")


if __name__ == "__main__":
    main()
