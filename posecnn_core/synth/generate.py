"""Generate a synthetic dataset of an object set in the YCB-Video layout."""
from __future__ import annotations

import dataclasses
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .assets import RenderAsset, read_render_assets
from .backgrounds import random_background
from .scene import SceneConfig, sample_scene
from .writer import DEFAULT_FACTOR_DEPTH, make_meta, write_classes, write_frame, write_image_set

__all__ = ["GenerationSummary", "generate_dataset", "frame_rng", "composite"]


@dataclass
class GenerationSummary:
    root: Path
    train: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def frames(self) -> int:
        return len(self.train) + len(self.test)


def frame_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of frame ``index``: frames are independent and reproducible given ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def composite(rgb: np.ndarray, mask: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Rendered RGB where ``mask`` is true, ``background`` (RGB, same size) elsewhere; uint8."""
    if rgb.shape != background.shape or mask.shape != rgb.shape[:2]:
        raise ValueError(f"rgb {rgb.shape}, mask {mask.shape} and background {background.shape} sizes differ")
    return np.where(mask[..., None], rgb, background).astype(np.uint8)


class _FrameWriter:
    """Renders and writes frames by index; one per process (it owns a GL context)."""

    def __init__(self, assets: list[RenderAsset], root: Path, seed: int, cfg: SceneConfig,
                 frames_per_sequence: int, min_visible_pixels: int, platform: str) -> None:
        from .renderer import SceneRenderer

        self.radii = [a.radius for a in assets]
        self.root, self.seed, self.cfg = root, seed, cfg
        self.frames_per_sequence = frames_per_sequence
        self.min_visible_pixels = min_visible_pixels
        self.renderer = SceneRenderer(assets, cfg.width, cfg.height, platform=platform)

    def __call__(self, i: int) -> str:
        cfg, rng = self.cfg, frame_rng(self.seed, i)
        for _ in range(20):
            scene = sample_scene(rng, self.radii, cfg)
            res = self.renderer.render(scene.K, scene.instances, scene.lights, scene.ambient)
            counts = np.bincount(res.instance.ravel(), minlength=len(scene.instances) + 1)
            keep = [k for k in range(len(scene.instances)) if counts[k + 1] >= self.min_visible_pixels]
            if keep:
                break
        else:
            raise RuntimeError(f"frame {i}: no object visible in 20 random scenes; check depth_range and the meshes")
        # renumber the kept instances 1..len(keep); dropped ones become background
        remap = np.zeros(len(scene.instances) + 1, dtype=np.int32)
        remap[np.asarray(keep) + 1] = np.arange(1, len(keep) + 1)
        instance = remap[res.instance]
        kept = [scene.instances[k] for k in keep]
        cls = np.array([inst.class_index for inst in kept])
        label = np.where(instance > 0, cls[np.maximum(instance - 1, 0)], 0).astype(np.uint8)
        depth = np.where(instance > 0, res.depth, 0.0)
        poses = np.stack([np.hstack([inst.R, inst.t.reshape(3, 1)]) for inst in kept])
        meta = make_meta(cls, poses, scene.K, DEFAULT_FACTOR_DEPTH)
        color = composite(res.color, instance > 0, random_background(rng, cfg.height, cfg.width))
        frame_id = f"{i // self.frames_per_sequence:04d}/{i % self.frames_per_sequence + 1:06d}"
        write_frame(self.root, frame_id, color, depth, label, instance, meta)
        return frame_id

    def close(self) -> None:
        self.renderer.close()


_process_writer: _FrameWriter | None = None  # the worker process's writer (multiprocessing only)


def _init_worker(*args) -> None:
    global _process_writer
    _process_writer = _FrameWriter(*args)


def _work(i: int) -> str:
    assert _process_writer is not None
    return _process_writer(i)


def generate_dataset(objects: str | Path, out: str | Path, frames: int, seed: int = 0,
                     config: SceneConfig | None = None, frames_per_sequence: int = 1000,
                     test_fraction: float = 0.1, min_visible_pixels: int = 10,
                     platform: str = "osmesa", progress: bool = True, workers: int = 1) -> GenerationSummary:
    """Render ``frames`` random frames of the object set YAML ``objects`` into ``out``.

    Frames go to sequences of ``frames_per_sequence`` (``data/0000/000001`` ...); the last
    ``round(frames * test_fraction)`` frames are listed in ``image_sets/test.txt``, the rest in
    ``train.txt``. Objects with fewer than ``min_visible_pixels`` visible pixels are left out of
    the frame's meta; a scene with none visible is re-drawn. ``workers`` > 1 renders in that many
    processes. Output depends only on the inputs (not on ``workers``).
    """
    from tqdm import tqdm

    cfg = config or SceneConfig()
    cfg.validate()
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if frames_per_sequence < 1:
        raise ValueError(f"frames_per_sequence must be >= 1, got {frames_per_sequence}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    root = Path(out)
    assets = read_render_assets(objects)
    summary = GenerationSummary(root=root)
    n_test = int(round(frames * test_fraction))
    args = (assets, root, seed, cfg, frames_per_sequence, min_visible_pixels, platform)
    bar = dict(total=frames, desc="synth", unit="frame", disable=not progress)
    start = time.perf_counter()
    if workers == 1:
        writer = _FrameWriter(*args)
        try:
            frame_ids = [writer(i) for i in tqdm(range(frames), **bar)]
        finally:
            writer.close()
    else:
        # spawn: a forked GL context is not safe to use. A worker that fails to start (e.g. no
        # OSMesa) raises BrokenProcessPool here instead of hanging.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=args) as pool:
            frame_ids = list(tqdm(pool.map(_work, range(frames), chunksize=4), **bar))
    for i, frame_id in enumerate(frame_ids):
        (summary.test if i >= frames - n_test else summary.train).append(frame_id)
    summary.seconds = time.perf_counter() - start
    write_image_set(root, "train", summary.train)
    write_image_set(root, "test", summary.test)
    write_classes(root, [a.name for a in assets])
    info = {"objects": str(Path(objects).resolve()), "frames": frames, "seed": seed,
            "frames_per_sequence": frames_per_sequence, "test_fraction": test_fraction,
            "min_visible_pixels": min_visible_pixels, "scene": dataclasses.asdict(cfg)}
    (root / "synth_info.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
    return summary
