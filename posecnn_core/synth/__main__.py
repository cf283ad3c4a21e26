"""CLI: ``python -m posecnn_core.synth --objects config/objects/demo.yaml --out DIR --frames N``."""
from __future__ import annotations

import argparse
import sys

from .generate import generate_dataset
from .scene import SceneConfig


def _pair(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected two comma-separated numbers, got {text!r}")
    return float(parts[0]), float(parts[1])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m posecnn_core.synth",
                                description="Render a synthetic dataset in the YCB-Video layout.")
    p.add_argument("--objects", required=True, help="object set YAML (e.g. config/objects/demo.yaml)")
    p.add_argument("--out", required=True, help="output dataset root")
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--min-objects", type=int, default=2)
    p.add_argument("--max-objects", type=int, default=6)
    p.add_argument("--max-instances-per-class", type=int, default=3)
    p.add_argument("--depth-range", type=_pair, default=(0.45, 1.0), metavar="MIN,MAX", help="metres")
    p.add_argument("--random-intrinsics", action="store_true",
                   help="jitter focal lengths and principal point per frame")
    p.add_argument("--frames-per-sequence", type=int, default=1000)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--min-visible-pixels", type=int, default=10)
    p.add_argument("--platform", default="osmesa", help="PYOPENGL_PLATFORM when unset (osmesa or egl)")
    p.add_argument("--workers", type=int, default=1, help="rendering processes")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = SceneConfig(width=args.width, height=args.height, min_objects=args.min_objects,
                      max_objects=args.max_objects, max_instances_per_class=args.max_instances_per_class,
                      depth_range=args.depth_range, random_intrinsics=args.random_intrinsics)
    try:
        summary = generate_dataset(args.objects, args.out, args.frames, seed=args.seed, config=cfg,
                                   frames_per_sequence=args.frames_per_sequence,
                                   test_fraction=args.test_fraction,
                                   min_visible_pixels=args.min_visible_pixels,
                                   platform=args.platform, progress=not args.no_progress,
                                   workers=args.workers)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {summary.frames} frames ({len(summary.train)} train, {len(summary.test)} test) "
          f"to {summary.root} in {summary.seconds:.1f} s ({summary.frames / max(summary.seconds, 1e-9):.1f} frames/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
