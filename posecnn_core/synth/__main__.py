"""CLI: ``python -m posecnn_core.synth --objects config/objects/demo.yaml --out DIR --frames N``.

``--sequence``: one temporally coherent sequence of N frames instead (``posecnn_core.synth.sequence``: a camera
moving around static objects, an object moved by a hand, an occluder that comes and goes; ground truth with object
identities), for tracking.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from .backgrounds import ALL_BACKGROUND_KINDS
from .generate import generate_dataset
from .scene import LIGHT_STYLES, SceneConfig


def _numbers(text: str, count: int) -> tuple[float, ...]:
    parts = text.split(",")
    try:
        if len(parts) != count:
            raise ValueError
        return tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got {text!r}") from None


def _pair(text: str) -> tuple[float, float]:
    return _numbers(text, 2)  # type: ignore[return-value]


def _int_pair(text: str) -> tuple[int, int]:
    lo, hi = _pair(text)
    if lo != int(lo) or hi != int(hi):
        raise argparse.ArgumentTypeError(f"expected two comma-separated integers, got {text!r}")
    return int(lo), int(hi)


def _camera(text: str) -> tuple[float, float, float, float]:
    return _numbers(text, 4)  # type: ignore[return-value]


def _backgrounds(text: str) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    """``kind[:weight],...`` -> (kinds, weights or None when no weight is given)."""
    kinds, weights = [], []
    for item in text.split(","):
        name, _, weight = item.strip().partition(":")
        if name not in ALL_BACKGROUND_KINDS:
            raise argparse.ArgumentTypeError(f"unknown background kind {name!r}; expected {ALL_BACKGROUND_KINDS}")
        try:
            weights.append(float(weight) if weight else 1.0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad weight in {item!r}") from None
        kinds.append(name)
    return tuple(kinds), (tuple(weights) if any(":" in item for item in text.split(",")) else None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m posecnn_core.synth",
                                description="Render a synthetic dataset in the YCB-Video layout.")
    p.add_argument("--objects", required=True, help="object set YAML (e.g. config/objects/demo.yaml)")
    p.add_argument("--out", required=True, help="output dataset root: a new or empty folder (see --append, "
                                                "--overwrite)")
    into = p.add_mutually_exclusive_group()
    into.add_argument("--append", action="store_true",
                      help="add the frames to the dataset this generator wrote in --out: numbered after its frames, "
                           "lists extended, synth_info.yaml records both runs (same objects, size, "
                           "--frames-per-sequence)")
    into.add_argument("--overwrite", action="store_true",
                      help="replace the dataset this generator wrote in --out (its data/, image_sets/, "
                           "synth_info.yaml); other files stay")
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--min-objects", type=int, default=2)
    p.add_argument("--max-objects", type=int, default=6)
    p.add_argument("--max-instances-per-class", type=int, default=3)
    p.add_argument("--depth-range", type=_pair, default=(0.45, 1.0), metavar="MIN,MAX", help="metres")
    cam = p.add_argument_group("camera (default: YCB-Video's camera scaled to the image size)")
    cam.add_argument("--fx-range", type=_pair, metavar="MIN,MAX",
                     help="sample fx per frame, log-uniform, in pixels at 320 px image width (scaled with "
                          "--width), e.g. 250,600 for common RGB-D cameras")
    cam.add_argument("--aspect-jitter", type=float, default=0.02, help="with --fx-range: fy = fx * (1 +- this)")
    cam.add_argument("--principal-jitter", type=float, default=0.03,
                     help="with --fx-range/--random-intrinsics: principal point offset, fraction of the image size")
    cam.add_argument("--camera", type=_camera, metavar="FX,FY,CX,CY",
                     help="a fixed camera (pixels at --width x --height)")
    cam.add_argument("--random-intrinsics", action="store_true",
                     help="older jitter: YCB-Video focal lengths x 0.8-1.25 and principal point jitter per frame")
    look = p.add_argument_group("appearance")
    look.add_argument("--backgrounds", type=_backgrounds, default=None, metavar="KIND[:W],...",
                      help=f"background kinds {ALL_BACKGROUND_KINDS} with optional weights, e.g. "
                           f"photo:0.8,noise:0.1,shapes:0.1 (default: the four procedural kinds)")
    look.add_argument("--photo-dir", help="photos for kind 'photo' and distractor textures "
                                          "(default data/backgrounds/photos, see tools/fetch_backgrounds.py)")
    look.add_argument("--require-photos", action="store_true",
                      help="fail instead of falling back to procedural images when no photos are found")
    look.add_argument("--distractors", type=_int_pair, default=(0, 0), metavar="MIN,MAX",
                      help="random occluding primitives per frame (never labelled as objects)")
    look.add_argument("--lights", type=_int_pair, default=(1, 3), metavar="MIN,MAX", help="lights per frame")
    look.add_argument("--light-style", choices=LIGHT_STYLES, default="basic",
                      help="basic: tinted point lights (original); varied: point and directional lights of "
                           "random colour temperature and intensity")
    p.add_argument("--frames-per-sequence", type=int, default=1000)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--min-visible-pixels", type=int, default=10)
    p.add_argument("--platform", default="osmesa", help="PYOPENGL_PLATFORM when unset (osmesa or egl)")
    p.add_argument("--workers", type=int, default=1, help="rendering processes")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--sequence", action="store_true",
                   help="render one coherent sequence of --frames frames for tracking (moving camera, a moved "
                        "object, an occluder; meta object_ids and moving); uses --objects, --out, --seed, --width, "
                        "--height, --overwrite")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sequence:
        return _sequence(args)
    kinds, weights = args.backgrounds if args.backgrounds else (SceneConfig.background_kinds, None)
    cfg = SceneConfig(width=args.width, height=args.height, min_objects=args.min_objects,
                      max_objects=args.max_objects, max_instances_per_class=args.max_instances_per_class,
                      depth_range=args.depth_range, random_intrinsics=args.random_intrinsics,
                      fx_range=args.fx_range, aspect_jitter=args.aspect_jitter,
                      principal_jitter=args.principal_jitter, camera=args.camera,
                      min_lights=args.lights[0], max_lights=args.lights[1], light_style=args.light_style,
                      min_distractors=args.distractors[0], max_distractors=args.distractors[1],
                      background_kinds=kinds, background_weights=weights, photo_dir=args.photo_dir)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *_a, **_k: print(f"warning: {message}", file=sys.stderr)
            summary = generate_dataset(args.objects, args.out, args.frames, seed=args.seed, config=cfg,
                                       frames_per_sequence=args.frames_per_sequence,
                                       test_fraction=args.test_fraction,
                                       min_visible_pixels=args.min_visible_pixels,
                                       platform=args.platform, progress=not args.no_progress,
                                       workers=args.workers, require_photos=args.require_photos,
                                       mode="append" if args.append else "overwrite" if args.overwrite else "new")
    except (ValueError, OSError, RuntimeError) as exc:  # OutputError is a ValueError
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    rate = summary.frames / max(summary.seconds, 1e-9)
    print(f"wrote {summary.frames} frames ({len(summary.train)} train, {len(summary.test)} test) "
          + (f"as frames {summary.first_frame}..{summary.first_frame + summary.frames - 1} "
             if summary.first_frame else "")
          + f"to {summary.root} in {summary.seconds:.1f} s ({rate:.1f} frames/s); the dataset lists "
          f"{summary.total_frames} frames")
    return 0


def _sequence(args: argparse.Namespace) -> int:
    from .sequence import SequenceConfig, generate_sequence

    kinds, weights = args.backgrounds if args.backgrounds else (SceneConfig.background_kinds, None)
    cfg = SceneConfig(width=args.width, height=args.height, min_objects=4, max_objects=5, max_instances_per_class=2,
                      depth_range=(0.55, 0.8), background_kinds=kinds, background_weights=weights)
    try:
        ids = generate_sequence(args.objects, args.out, SequenceConfig(frames=args.frames), cfg, seed=args.seed,
                                platform=args.platform, mode="overwrite" if args.overwrite else "new")
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"wrote a sequence of {len(ids)} frames to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
