"""RoI max pooling speed: PyTorch reference vs compiled C++ (CPU) vs CUDA, forward and forward+backward.

Feature maps of a 640x480 image at 1/8 (80x60) and 1/16 (40x30) scale, 512 channels, batch 1; RoIs are random boxes
inside the image. Prints a table of median milliseconds over --runs repetitions (after one warm-up).

    python bench/bench_roi_pool.py                  # every backend available here
    python bench/bench_roi_pool.py --devices cuda --runs 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from posecnn_core.ops import extension  # noqa: E402
from posecnn_core.ops.roi_pool_ext import roi_max_pool_ext  # noqa: E402

IMAGE_H, IMAGE_W = 480, 640
Pool = Callable[[torch.Tensor, torch.Tensor, int, float], torch.Tensor]


def torch_reference() -> Pool | None:
    try:
        from posecnn_core.roi_pool import roi_max_pool_torch
    except ImportError:
        return None
    return lambda f, r, size, scale: roi_max_pool_torch(f, r, output_size=size, spatial_scale=scale)


def random_rois(num: int, gen: torch.Generator) -> torch.Tensor:
    x1 = torch.rand(num, generator=gen) * (IMAGE_W - 64)
    y1 = torch.rand(num, generator=gen) * (IMAGE_H - 64)
    w = 32 + torch.rand(num, generator=gen) * (IMAGE_W - x1 - 32)
    h = 32 + torch.rand(num, generator=gen) * (IMAGE_H - y1 - 32)
    return torch.stack([torch.zeros(num), x1, y1, x1 + w, y1 + h], dim=1)


def median_ms(fn: Callable[[], object], device: torch.device, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_case(pool: Pool, features: torch.Tensor, rois: torch.Tensor, scale: float, runs: int,
               backward: bool) -> float:
    if not backward:
        def step() -> object:
            with torch.no_grad():
                return pool(features, rois, 7, scale)
    else:
        leaf = features.detach().requires_grad_(True)

        def step() -> object:
            leaf.grad = None
            out = pool(leaf, rois, 7, scale)
            out.backward(torch.ones_like(out))
            return leaf.grad
    return median_ms(step, features.device, runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    parser.add_argument("--rois", nargs="+", type=int, default=[1, 5, 20, 128])
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-backward", action="store_true", help="time the forward pass only")
    args = parser.parse_args()

    reference = torch_reference()
    compiled = extension.load_ops()
    backends: list[tuple[str, torch.device, Pool]] = []
    for dev in args.devices:
        if dev == "cuda" and not torch.cuda.is_available():
            print("(cuda: no device, skipped)")
            continue
        device = torch.device(dev)
        if reference is not None:
            backends.append((f"torch-{dev}", device, reference))
        if compiled and extension.has_op("roi_max_pool_forward", dev):
            backends.append(("cpp" if dev == "cpu" else "cuda", device, roi_max_pool_ext))
    if reference is None:
        print("(torch reference posecnn_core.roi_pool not importable: column skipped)")
    if not compiled:
        print(f"(compiled ops unavailable: {extension.load_error()})")
    if not backends:
        print("nothing to benchmark")
        return 1

    passes = [("fwd", False)] + ([] if args.no_backward else [("fwd+bwd", True)])
    print(f"median ms over {args.runs} runs; {args.channels} channels; image {IMAGE_W}x{IMAGE_H}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in args.devices and torch.cuda.is_available() else ""))
    header = f"{'scale':>6} {'map':>6} {'RoIs':>5} {'pass':>8} " + " ".join(f"{name:>10}" for name, _, _ in backends)
    print(header)
    print("-" * len(header))
    gen = torch.Generator().manual_seed(0)
    for stride in (8, 16):
        h, w = IMAGE_H // stride, IMAGE_W // stride
        features_cpu = torch.randn(1, args.channels, h, w, generator=gen)
        for num in args.rois:
            rois_cpu = random_rois(num, gen)
            for pass_name, backward in passes:
                cells = []
                for _, device, pool in backends:
                    ms = bench_case(pool, features_cpu.to(device), rois_cpu.to(device), 1.0 / stride, args.runs,
                                    backward)
                    cells.append(f"{ms:10.3f}")
                print(f"{'1/' + str(stride):>6} {f'{w}x{h}':>6} {num:>5} {pass_name:>8} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
