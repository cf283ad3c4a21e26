"""Generate a synthetic dataset of an object set in the YCB-Video layout."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .assets import read_render_assets
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


def generate_dataset(objects: str | Path, out: str | Path, frames: int, seed: int = 0,
                     config: SceneConfig | None = None, frames_per_sequence: int = 1000,
                     test_fraction: float = 0.1, min_visible_pixels: int = 10,
                     platform: str = "osmesa", progress: bool = True) -> GenerationSummary:
    """Render ``frames`` random frames of the object set YAML ``objects`` into ``out``.

    Frames go to sequences of ``frames_per_sequence`` (``data/0000/000001`` ...); the last
    ``round(frames * test_fraction)`` frames are listed in ``image_sets/test.txt``, the rest in
    ``train.txt``. Objects with fewer than ``min_visible_pixels`` visible pixels are left out of
    the frame's meta; a scene with none visible is re-drawn. Output depends only on the inputs.
    """
    from tqdm import tqdm

    from .renderer import SceneRenderer

    cfg = config or SceneConfig()
    cfg.validate()
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if frames_per_sequence < 1:
        raise ValueError(f"frames_per_sequence must be >= 1, got {frames_per_sequence}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    root = Path(out)
    assets = read_render_assets(objects)
    radii = [a.radius for a in assets]
    summary = GenerationSummary(root=root)
    n_test = int(round(frames * test_fraction))
    start = time.perf_counter()
    with SceneRenderer(assets, cfg.width, cfg.height, platform=platform) as renderer:
        for i in tqdm(range(frames), desc="synth", unit="frame", disable=not progress):
            rng = frame_rng(seed, i)
            for _ in range(20):
                scene = sample_scene(rng, radii, cfg)
                res = renderer.render(scene.K, scene.instances, scene.lights, scene.ambient)
                counts = np.bincount(res.instance.ravel(), minlength=len(scene.instances) + 1)
                keep = [k for k in range(len(scene.instances)) if counts[k + 1] >= min_visible_pixels]
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
            frame_id = f"{i // frames_per_sequence:04d}/{i % frames_per_sequence + 1:06d}"
            write_frame(root, frame_id, color, depth, label, instance, meta)
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
