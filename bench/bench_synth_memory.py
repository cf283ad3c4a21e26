"""Resident memory of the synthetic-data renderer over a long run (pyrender on OSMesa leaks inside a GL
context; the renderer replaces its context every ``SceneRenderer.RENEW_EVERY`` frames and returns the
freed memory to the system).

Prints the process's RSS every ``--every`` frames while rendering ``--frames`` frames with the demo_v2
settings (docs/data.md) into a temporary directory; the RSS should stay flat, not grow with the frames.

Usage: python bench/bench_synth_memory.py [--frames 300] [--every 25] [--renew-every 25] [--defaults]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import sys
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout, not an installed copy

from posecnn_core.synth import SceneConfig  # noqa: E402
from posecnn_core.synth.assets import read_render_assets  # noqa: E402
from posecnn_core.synth.generate import _FrameWriter, resolve_photo_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", default=str(REPO / "config/objects/demo.yaml"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--renew-every", type=int, default=None, help="override SceneRenderer.RENEW_EVERY")
    ap.add_argument("--defaults", action="store_true", help="default scene settings instead of demo_v2's")
    args = ap.parse_args()
    cfg = SceneConfig()
    if not args.defaults:
        cfg = SceneConfig(depth_range=(0.4, 1.1), fx_range=(250, 600), max_distractors=6, light_style="varied",
                          max_lights=4, background_kinds=("photo", "noise"), background_weights=(0.84, 0.16))
    cfg, _ = resolve_photo_config(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        writer = _FrameWriter(read_render_assets(args.objects), Path(tmp), 0, cfg, 1000, 10, "osmesa")
        if args.renew_every:
            writer.renderer.RENEW_EVERY = args.renew_every
        print(f"{'frame':>6} {'RSS MB':>8} {'frames/s':>9}")
        t0, peak = time.perf_counter(), 0.0
        for i in range(args.frames):
            writer(i)
            peak = max(peak, rss_mb())
            if (i + 1) % args.every == 0:
                print(f"{i + 1:6d} {rss_mb():8.0f} {(i + 1) / (time.perf_counter() - t0):9.2f}")
        writer.close()
    print(f"peak RSS {peak:.0f} MB over {args.frames} frames")


if __name__ == "__main__":
    main()
