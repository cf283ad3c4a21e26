"""Dense pass (trunk + dense heads) on the CPU, stage by stage, and its float32 / bfloat16 / compiled variants.

    python bench/bench_dense.py [--repeat 5] [--threads 2] [--sizes 240x320 480x640] [--full-width]

Models: the bundled demo model (quarter-width trunk, its checkpoint) and, with --full-width, PT's full VGG16
network (22 classes, random weights: cost only). Rows: the trunk's convolutions; the dense heads in PT's order
(8x upsampling of the 64/128-channel embeddings, then the 1x1 score convs) and in the order PoseCNN.dense uses
(the 1x1 convs first, then upsampling of C / 3C channels; the same numbers up to float rounding); the whole
dense pass in float32, under CPU autocast in bfloat16 (the estimator's `amp` option) and through torch.compile.
Also the trunk's GFLOP and the rate it reaches, next to the machine's measured float32 matmul peak
(a 2048x2048 matmul on the same threads). Times are medians; ratios are from one run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout, not an installed copy

from posecnn_core.network import PoseCNN  # noqa: E402


def timed(fn, repeat: int) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


def trunk_gflop(net: PoseCNN, h: int, w: int) -> float:
    """Multiply-adds x 2 of the trunk's convolutions at input size h x w."""
    total, scale = 0.0, 1
    for layer in net.features:
        if isinstance(layer, torch.nn.MaxPool2d):
            scale *= 2
        elif isinstance(layer, torch.nn.Conv2d):
            k = layer.kernel_size[0] * layer.kernel_size[1]
            total += 2.0 * layer.in_channels * layer.out_channels * k * (h // scale) * (w // scale)
    return total / 1e9


def matmul_peak_gflops(repeat: int) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048 ** 3 / (timed(lambda: a @ b, repeat) / 1e3) / 1e9


def pt_order_heads(net: PoseCNN, conv4, conv5):
    """PT's order: upsample the embeddings to full resolution, then the 1x1 score convs."""
    out = []
    for e4, e5, score in ((net.conv4_embed, net.conv5_embed, net.conv_score),
                          (net.conv4_vertex_embed, net.conv5_vertex_embed, net.conv_vertex_score)):
        x = e4(conv4) + F.interpolate(e5(conv5), scale_factor=2.0, mode="bilinear", align_corners=False)
        out.append(score(F.interpolate(x, scale_factor=8.0, mode="bilinear", align_corners=False)))
    return out


def load_demo() -> PoseCNN:
    from posecnn_core.checkpoint import model_from_checkpoint
    from posecnn_core.resources import resource_path
    return model_from_checkpoint(resource_path("data/models/demo.pt"), device="cpu")[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", nargs="+", default=["240x320", "480x640"])
    ap.add_argument("--full-width", action="store_true", help="also PT's full VGG16 network (22 classes)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak_gflops(args.repeat)
    print(f"threads={torch.get_num_threads()}, float32 matmul peak {peak:.0f} GFLOP/s, "
          f"bf16 autocast available: {torch.backends.mkldnn.is_available()}")
    models = [("demo (w=0.25)", load_demo())]
    if args.full_width:
        models.append(("PT VGG16, 22 cls", PoseCNN(22)))
    cols = ["model", "size", "trunk ms", "GFLOP", "% peak", "heads PT ms", "heads ms", "dense f32 ms",
            "dense bf16 ms", "bf16/f32"] + (["compiled ms"] if args.compile else [])
    print(" | ".join(f"{c:>13}" for c in cols))
    for name, net in models:
        net = net.eval().to(memory_format=torch.channels_last)
        for size in args.sizes:
            h, w = (int(v) for v in size.split("x"))
            x = torch.randn(1, net.in_channels, h, w).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                conv4, conv5 = net.trunk(x)
                t_trunk = timed(lambda: net.trunk(x), args.repeat)
                t_pt = timed(lambda: pt_order_heads(net, conv4, conv5), args.repeat)
                t_heads = timed(lambda: (net._dense_branch(conv4, conv5, net.conv4_embed, net.conv5_embed,
                                                           net.conv_score),
                                         net._dense_branch(conv4, conv5, net.conv4_vertex_embed,
                                                           net.conv5_vertex_embed, net.conv_vertex_score)),
                                args.repeat)
                t_f32 = timed(lambda: net.dense(x), args.repeat)

                def bf16():
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return net.dense(x)
                t_bf16 = timed(bf16, args.repeat)
                gf = trunk_gflop(net, h, w)
                row = [name, size, f"{t_trunk:.1f}", f"{gf:.1f}", f"{100 * gf / (t_trunk / 1e3) / peak:.0f}",
                       f"{t_pt:.1f}", f"{t_heads:.1f}", f"{t_f32:.1f}", f"{t_bf16:.1f}", f"{t_bf16 / t_f32:.2f}"]
                if args.compile:
                    compiled = torch.compile(net.dense)
                    row.append(f"{timed(lambda: compiled(x), args.repeat):.1f}")
            print(" | ".join(f"{c:>13}" for c in row))


if __name__ == "__main__":
    main()
