"""A bank of object-centred views: each object of a set rendered alone, on the optical axis, under a uniformly
random rotation and random lights, at a fixed apparent size.

The rotation head learns from RoIs, not frames: a bank of single-object views, composited onto photographs with
occluders, rotated in the image plane and rescaled at training time (``posecnn_core.train.crops``), gives it far
more distinct object views per CPU-second than rendering whole scenes. Every view has the object's origin on the
optical axis, so its allocentric rotation is that of the view (``geometry.ego_to_allo`` at t = (0, 0, z)).

Output folder: ``views.npy`` (uint8 [N, S, S, 4]: RGB and the object mask ×255, a memory-mappable array),
``views_meta.npz`` (``class_index`` [N] (1-based, the object set's order), ``quaternion`` [N, 4] egocentric
(w, x, y, z), ``z`` [N] metres, ``focal`` [N] pixels, ``done`` the number of views written, ``size``, ``seed``,
``classes``). View i depends only on (seed, i), so an interrupted run resumes where it stopped and a longer run
extends a shorter one::

    python -m posecnn_core.synth.views --objects config/objects/demo.yaml --out data/views/demo --views 36000
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..geometry import mat_to_quat
from .assets import RenderAsset, read_render_assets
from .scene import Instance, SceneConfig, _sample_varied_lights

__all__ = ["ViewSpec", "sample_view", "render_views", "main"]

VIEW_STREAM = 0x56494557  # "VIEW": keeps the views' random streams apart from the scene generator's


@dataclass(frozen=True)
class ViewSpec:
    """One view: ``class_index`` (1-based), rotation ``R`` (object -> camera), distance ``z`` (metres) on the
    optical axis, ``focal`` (pixels) chosen so that the object's bounding sphere spans ``fill`` of the image."""

    class_index: int
    R: np.ndarray
    z: float
    focal: float


def sample_view(rng: np.random.Generator, assets: list[RenderAsset], size: int, fill: float = 0.8,
                depth_range: tuple[float, float] = (0.45, 1.0)) -> ViewSpec:
    """A class (uniform), a uniformly random rotation and a distance; the focal length keeps the apparent size
    fixed (``fill`` × ``size`` pixels for the bounding sphere's diameter) so perspective varies, not scale."""
    asset = assets[int(rng.integers(len(assets)))]
    R = Rotation.random(rng=rng).as_matrix()
    z = float(rng.uniform(*depth_range))
    focal = fill * size * z / (2.0 * asset.radius)
    return ViewSpec(asset.class_index, R, z, focal)


def intrinsics(size: int, focal: float) -> np.ndarray:
    """A square camera with the principal point at the image centre ((size - 1) / 2, pixel-centre convention)."""
    c = (size - 1) / 2.0
    return np.array([[focal, 0.0, c], [0.0, focal, c], [0.0, 0.0, 1.0]])


def _open_outputs(out: Path, total: int, size: int, seed: int, classes: list[str]):
    """The view array (created, or reopened and grown) and the meta arrays with the count already written."""
    views_path, meta_path = out / "views.npy", out / "views_meta.npz"
    meta = {"class_index": np.zeros(total, np.int16), "quaternion": np.zeros((total, 4), np.float32),
            "z": np.zeros(total, np.float32), "focal": np.zeros(total, np.float32)}
    done = 0
    old = None
    if meta_path.is_file() and views_path.is_file():
        with np.load(meta_path) as m:
            if int(m["size"]) != size or int(m["seed"]) != seed or list(m["classes"]) != classes:
                raise ValueError(f"{out} holds views of another size, seed or object set; use another --out")
            done = min(int(m["done"]), total)
            for k in meta:
                meta[k][:done] = m[k][:done]
        old = np.load(views_path, mmap_mode="r")
    if old is not None and old.shape[0] == total:
        del old
        return np.load(views_path, mmap_mode="r+"), meta, done
    arr = np.lib.format.open_memmap(views_path.with_suffix(".tmp.npy"), mode="w+", dtype=np.uint8,
                                    shape=(total, size, size, 4))
    if old is not None:
        arr[:done] = old[:done]
        del old
    arr.flush()
    views_path.with_suffix(".tmp.npy").replace(views_path)
    return np.load(views_path, mmap_mode="r+"), meta, done


def _write_meta(out: Path, meta: dict[str, np.ndarray], done: int, size: int, seed: int, classes: list[str]) -> None:
    tmp = out / "views_meta.tmp.npz"
    np.savez(tmp, done=done, size=size, seed=seed, classes=np.array(classes), **meta)
    tmp.replace(out / "views_meta.npz")


def render_views(objects_yaml: str | Path, out: str | Path, total: int, size: int = 128, seed: int = 0,
                 flush_every: int = 250, progress: bool = True) -> int:
    """Render views ``done`` .. ``total`` - 1 into ``out`` (see the module docstring); returns the number
    rendered now."""
    from .renderer import SceneRenderer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    assets = read_render_assets(objects_yaml)
    classes = [a.name for a in assets]
    views, meta, done = _open_outputs(out, total, size, seed, classes)
    light_cfg = SceneConfig(light_style="varied", min_lights=1, max_lights=4)
    t0, start = time.perf_counter(), done
    with SceneRenderer(assets, size, size) as renderer:
        for i in range(done, total):
            rng = np.random.default_rng([VIEW_STREAM, seed, i])
            spec = sample_view(rng, assets, size)
            t = np.array([0.0, 0.0, spec.z])
            lights, ambient = _sample_varied_lights(rng, light_cfg, t)
            res = renderer.render(intrinsics(size, spec.focal), [Instance(spec.class_index, spec.R, t)], lights,
                                  ambient)
            views[i, ..., :3] = res.color
            views[i, ..., 3] = np.where(res.instance > 0, 255, 0).astype(np.uint8)
            meta["class_index"][i] = spec.class_index
            meta["quaternion"][i] = mat_to_quat(spec.R).astype(np.float32)
            meta["z"][i], meta["focal"][i] = spec.z, spec.focal
            done = i + 1
            if done % flush_every == 0 or done == total:
                views.flush()
                _write_meta(out, meta, done, size, seed, classes)
                if progress:
                    rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
                    print(f"views: {done}/{total} ({rate:.1f} views/s)", file=sys.stderr, flush=True)
    return done - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m posecnn_core.synth.views", description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", required=True, help="object-set YAML")
    p.add_argument("--out", required=True, help="output folder (resumes/extends a bank with the same size, seed)")
    p.add_argument("--views", type=int, required=True, help="total number of views in the bank")
    p.add_argument("--size", type=int, default=128, help="view size in pixels (square)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.views < 1 or args.size < 16:
        print("error: --views must be >= 1 and --size >= 16", file=sys.stderr)
        return 2
    try:
        n = render_views(args.objects, args.out, args.views, args.size, args.seed)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"rendered {n} views into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
