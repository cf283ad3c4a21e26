#!/usr/bin/env python3
"""Collect scikit-image's and matplotlib's sample photographs as backgrounds for held-out evaluation.

These images are reserved for evaluation: training data never uses them (the training photos come
from tools/fetch_backgrounds.py), so a held-out split rendered over them (``--photo-dir`` of
``python -m posecnn_core.synth``) shows how a model copes with backgrounds it has never seen.
Writes the photographs as PNG into ``--out`` (default data/backgrounds/eval, git-ignored), grey
ones as three equal channels.

Usage: python tools/collect_eval_backgrounds.py [--out data/backgrounds/eval]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2

# photographs among the sample images (not drawings, charts, microscopy or binary masks)
SKIMAGE_IMAGES = ("astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
                  "grass.png", "gravel.png", "hubble_deep_field.jpg", "moon.png", "motorcycle_left.png", "page.png",
                  "rocket.jpg", "text.png")
MATPLOTLIB_IMAGES = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def collect(out: Path) -> list[Path]:
    """Write the evaluation backgrounds into ``out``; ImportError naming the missing package."""
    try:
        import skimage
    except ImportError as exc:
        raise ImportError("collecting the evaluation backgrounds needs scikit-image "
                          "(tools/requirements-dev.txt)") from exc
    import matplotlib

    skimage_dir = Path(skimage.__file__).parent / "data"  # the images shipped in the wheel (no download)
    mpl_dir = Path(matplotlib.get_data_path()) / "sample_data"
    sources = [(f"skimage_{n}", skimage_dir / n) for n in SKIMAGE_IMAGES]
    sources += [(f"matplotlib_{n}", mpl_dir / n) for n in MATPLOTLIB_IMAGES]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, src in sources:
        img = cv2.imread(str(src), cv2.IMREAD_COLOR)  # grey images: three equal channels
        if img is None:
            raise FileNotFoundError(f"sample image not found or unreadable: {src}")
        path = out / f"{name.rsplit('.', 1)[0]}.png"
        if not cv2.imwrite(str(path), img):
            raise OSError(f"could not write {path}")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data/backgrounds/eval")
    args = parser.parse_args(argv)
    written = collect(args.out)
    print(f"wrote {len(written)} evaluation backgrounds to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
