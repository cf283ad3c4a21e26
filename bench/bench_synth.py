"""Synthetic-data generator speed: frames/s of rendering alone and of the full writer loop.

Usage: python bench/bench_synth.py [--frames 20] [--sizes 320x240,640x480] [--demo-v2]

``--demo-v2``: the settings of the demo_v2 datasets (docs/data.md: sampled cameras, 0-6 distractors,
varied lights, photo backgrounds when data/backgrounds/photos exists) instead of the defaults.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import sys
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout, not an installed copy

from posecnn_core.synth import SceneConfig, frame_rng, generate_dataset  # noqa: E402
from posecnn_core.synth.assets import read_render_assets  # noqa: E402
from posecnn_core.synth.generate import distractor_texture_bank, resolve_photo_config  # noqa: E402
from posecnn_core.synth.photos import PhotoCollection  # noqa: E402
from posecnn_core.synth.scene import sample_scene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", default=str(REPO / "config/objects/demo.yaml"))
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--sizes", default="320x240,640x480")
    ap.add_argument("--demo-v2", action="store_true", help="the demo_v2 dataset settings")
    args = ap.parse_args()
    from posecnn_core.synth.renderer import SceneRenderer

    assets = read_render_assets(args.objects)
    radii = [a.radius for a in assets]
    print(f"{'size':>9} {'render ms/frame':>16} {'full frames/s':>14}")
    for size in args.sizes.split(","):
        w, h = (int(x) for x in size.split("x"))
        cfg = SceneConfig(width=w, height=h)
        if args.demo_v2:
            cfg = SceneConfig(width=w, height=h, depth_range=(0.4, 1.1), fx_range=(250, 600), max_distractors=6,
                              light_style="varied", max_lights=4, background_kinds=("photo", "noise"),
                              background_weights=(0.84, 0.16))
            cfg, _ = resolve_photo_config(cfg)
        photos = PhotoCollection.load(cfg.photo_dir) if cfg.photo_dir else None
        bank = distractor_texture_bank(0, cfg, photos) if cfg.max_distractors else []
        with SceneRenderer(assets, w, h, distractor_textures=bank) as r:
            scenes = [sample_scene(frame_rng(0, i), radii, cfg) for i in range(args.frames)]
            r.render(scenes[0].K, scenes[0].instances, scenes[0].lights, scenes[0].ambient,
                     scenes[0].distractors)  # warm up
            t0 = time.perf_counter()
            for s in scenes:
                r.render(s.K, s.instances, s.lights, s.ambient, s.distractors)
            render_ms = (time.perf_counter() - t0) / args.frames * 1000
        with tempfile.TemporaryDirectory() as tmp:
            summary = generate_dataset(args.objects, tmp, args.frames, config=cfg, progress=False)
        print(f"{size:>9} {render_ms:16.1f} {summary.frames / summary.seconds:14.1f}")


if __name__ == "__main__":
    main()
