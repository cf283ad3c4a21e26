"""Synthetic-data generator speed: frames/s of rendering alone and of the full writer loop.

Usage: python bench/bench_synth.py [--frames 20] [--sizes 320x240,640x480]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from posecnn_core.synth import SceneConfig, frame_rng, generate_dataset
from posecnn_core.synth.assets import read_render_assets
from posecnn_core.synth.scene import sample_scene

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", default=str(REPO / "config/objects/demo.yaml"))
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--sizes", default="320x240,640x480")
    args = ap.parse_args()
    from posecnn_core.synth.renderer import SceneRenderer

    assets = read_render_assets(args.objects)
    radii = [a.radius for a in assets]
    print(f"{'size':>9} {'render ms/frame':>16} {'full frames/s':>14}")
    for size in args.sizes.split(","):
        w, h = (int(x) for x in size.split("x"))
        cfg = SceneConfig(width=w, height=h)
        with SceneRenderer(assets, w, h) as r:
            scenes = [sample_scene(frame_rng(0, i), radii, cfg) for i in range(args.frames)]
            r.render(scenes[0].K, scenes[0].instances, scenes[0].lights, scenes[0].ambient)  # warm up
            t0 = time.perf_counter()
            for s in scenes:
                r.render(s.K, s.instances, s.lights, s.ambient)
            render_ms = (time.perf_counter() - t0) / args.frames * 1000
        with tempfile.TemporaryDirectory() as tmp:
            summary = generate_dataset(args.objects, tmp, args.frames, config=cfg, progress=False)
        print(f"{size:>9} {render_ms:16.1f} {summary.frames / summary.seconds:14.1f}")


if __name__ == "__main__":
    main()
