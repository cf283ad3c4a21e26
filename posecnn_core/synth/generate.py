"""Generate a synthetic dataset of an object set in the YCB-Video layout."""
from __future__ import annotations

import dataclasses
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .assets import RenderAsset, read_render_assets
from .output import INFO_FILE, OutputError, frame_id, plan_output
from .backgrounds import BACKGROUND_KINDS, random_background, sample_background
from .photos import DEFAULT_PHOTO_DIR, PhotoCollection, find_photos
from .scene import SceneConfig, sample_scene
from .writer import DEFAULT_FACTOR_DEPTH, make_meta, write_classes, write_frame, write_image_set

__all__ = ["GenerationSummary", "generate_dataset", "frame_rng", "composite", "MissingPhotosWarning",
           "resolve_photo_config", "distractor_texture_bank", "OutputError"]

DISTRACTOR_TEXTURE_SIZE = 128


class MissingPhotosWarning(UserWarning):
    """Background photos were asked for but none were found; procedural images are used instead."""


@dataclass
class GenerationSummary:
    """One run: the frames it wrote (``train``/``test``: this run's frame ids), from ``first_frame`` on (> 0 when
    appending); ``total_frames``: the frames the dataset lists afterwards."""

    root: Path
    train: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # fallbacks taken (e.g. no background photos)
    first_frame: int = 0
    total_frames: int = 0

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


def resolve_photo_config(cfg: SceneConfig, require_photos: bool = False) -> tuple[SceneConfig, list[str]]:
    """Point ``cfg.photo_dir`` at the photos (default ``data/backgrounds/photos``) where photos are used.

    Photos are used by the background kind "photo" and as distractor textures. When none are found,
    kind "photo" is dropped (procedural kinds remain, or all four procedural kinds if it was the
    only one) and distractor textures become procedural; each such change is returned as a message
    and issued as a :class:`MissingPhotosWarning`. ``require_photos`` makes it a FileNotFoundError.
    """
    wants_photos = "photo" in cfg.background_kinds or cfg.max_distractors > 0
    if not wants_photos:
        return cfg, []
    photo_dir = Path(cfg.photo_dir) if cfg.photo_dir else DEFAULT_PHOTO_DIR
    scenes, surfaces = find_photos(photo_dir)
    if scenes or surfaces:
        return dataclasses.replace(cfg, photo_dir=str(photo_dir)), []
    hint = ("fetch the training photos with `python tools/fetch_backgrounds.py`" if photo_dir == DEFAULT_PHOTO_DIR
            else "check --photo-dir")
    if require_photos:
        raise FileNotFoundError(f"no background photos (.png/.jpg) in {photo_dir}; {hint}")
    notes = []
    kinds, weights = cfg.background_kinds, cfg.background_weights
    if "photo" in kinds:
        keep = [k for k, name in enumerate(kinds) if name != "photo"]
        if keep:
            kinds = tuple(kinds[k] for k in keep)
            weights = None if weights is None else tuple(weights[k] for k in keep)
        else:
            kinds, weights = BACKGROUND_KINDS, None
        notes.append(f"no background photos found in {photo_dir} ({hint}); using the procedural "
                     f"backgrounds {', '.join(kinds)} instead")
    if cfg.max_distractors > 0:
        notes.append(f"no photos in {photo_dir} for distractor textures; using procedural textures")
    for note in notes:
        warnings.warn(note, MissingPhotosWarning, stacklevel=3)
    return dataclasses.replace(cfg, photo_dir=None, background_kinds=kinds, background_weights=weights), notes


def distractor_texture_bank(seed: int, cfg: SceneConfig, photos: PhotoCollection | None) -> list[np.ndarray]:
    """The ``cfg.distractor_textures`` textures distractors are drawn with: crops of ``photos`` or,
    without photos, procedural backgrounds. Depends only on ``seed`` (same in every process)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E57, 0x7E57]))
    size = DISTRACTOR_TEXTURE_SIZE
    if photos is not None and len(photos):
        return [photos.texture(rng, size) for _ in range(cfg.distractor_textures)]
    return [random_background(rng, size, size) for _ in range(cfg.distractor_textures)]


class _FrameWriter:
    """Renders and writes frames by index; one per process (it owns a GL context)."""

    def __init__(self, assets: list[RenderAsset], root: Path, seed: int, cfg: SceneConfig,
                 frames_per_sequence: int, min_visible_pixels: int, platform: str) -> None:
        from .renderer import SceneRenderer

        self.radii = [a.radius for a in assets]
        self.root, self.seed, self.cfg = root, seed, cfg
        self.frames_per_sequence = frames_per_sequence
        self.min_visible_pixels = min_visible_pixels
        self.photos = PhotoCollection.load(cfg.photo_dir) if cfg.photo_dir else None
        bank = distractor_texture_bank(seed, cfg, self.photos) if cfg.max_distractors > 0 else []
        self.renderer = SceneRenderer(assets, cfg.width, cfg.height, platform=platform, distractor_textures=bank)

    def __call__(self, i: int) -> str:
        cfg, rng = self.cfg, frame_rng(self.seed, i)
        for _ in range(20):
            scene = sample_scene(rng, self.radii, cfg)
            res = self.renderer.render(scene.K, scene.instances, scene.lights, scene.ambient, scene.distractors)
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
        rendered = (instance > 0) | res.distractor  # dropped objects' pixels are background
        depth = np.where(rendered, res.depth, 0.0)
        poses = np.stack([np.hstack([inst.R, inst.t.reshape(3, 1)]) for inst in kept])
        meta = make_meta(cls, poses, scene.K, DEFAULT_FACTOR_DEPTH)
        background = sample_background(rng, cfg.height, cfg.width, cfg.background_kinds, cfg.background_weights,
                                       self.photos)
        color = composite(res.color, rendered, background)
        fid = frame_id(i, self.frames_per_sequence)
        write_frame(self.root, fid, color, depth, label, instance, meta)
        return fid

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
                     platform: str = "osmesa", progress: bool = True, workers: int = 1,
                     require_photos: bool = False, mode: str = "new") -> GenerationSummary:
    """Render ``frames`` random frames of the object set YAML ``objects`` into ``out``.

    ``mode`` (``posecnn_core.synth.output``): "new" needs ``out`` missing or empty, "overwrite" replaces a
    dataset this generator wrote there, "append" adds the frames after its listed ones; anything else in the
    folder makes it an OutputError (a ValueError) before anything is rendered or changed.
    Frames go to sequences of ``frames_per_sequence`` (``data/0000/000001`` ...); the last
    ``round(frames * test_fraction)`` frames of the run are listed in ``image_sets/test.txt``, the rest in
    ``train.txt``. Objects with fewer than ``min_visible_pixels`` visible pixels are left out of
    the frame's meta; a scene with none visible is re-drawn. ``workers`` > 1 renders in that many
    processes. Output depends only on the inputs (not on ``workers``). Photos (background kind
    "photo", distractor textures) come from ``config.photo_dir`` (default ``data/backgrounds/photos``);
    see :func:`resolve_photo_config` for what happens without them (``require_photos``: an error).
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
    cfg, notes = resolve_photo_config(cfg, require_photos)
    root = Path(out)
    assets = read_render_assets(objects)
    class_names = [a.name for a in assets]
    plan = plan_output(root, mode, class_names, cfg.width, cfg.height, frames_per_sequence)
    first = plan.first_frame
    summary = GenerationSummary(root=root, notes=notes, first_frame=first)
    n_test = int(round(frames * test_fraction))
    args = (assets, root, seed, cfg, frames_per_sequence, min_visible_pixels, platform)
    bar = dict(total=frames, desc="synth", unit="frame", disable=not progress)
    start = time.perf_counter()
    plan.clear_replaced()
    indices = range(first, first + frames)
    if workers == 1:
        writer = _FrameWriter(*args)
        try:
            frame_ids = [writer(i) for i in tqdm(indices, **bar)]
        finally:
            writer.close()
    else:
        # spawn: a forked GL context is not safe to use. A worker that fails to start (e.g. no
        # OSMesa) raises BrokenProcessPool here instead of hanging.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=args) as pool:
            frame_ids = list(tqdm(pool.map(_work, indices, chunksize=4), **bar))
    for i, fid in enumerate(frame_ids):
        (summary.test if i >= frames - n_test else summary.train).append(fid)
    summary.seconds = time.perf_counter() - start
    train, test = plan.train + summary.train, plan.test + summary.test
    summary.total_frames = len(train) + len(test)
    write_image_set(root, "train", train)
    write_image_set(root, "test", test)
    write_classes(root, class_names)
    run = {"first_frame": first, "frames": frames, "train": len(summary.train), "test": len(summary.test),
           "seed": seed, "test_fraction": test_fraction, "min_visible_pixels": min_visible_pixels,
           "objects": str(Path(objects).resolve()), "scene": dataclasses.asdict(cfg), "notes": notes}
    info = {"objects": str(Path(objects).resolve()), "classes": class_names, "frames": summary.total_frames,
            "frames_per_sequence": frames_per_sequence, "runs": plan.runs + [run]}
    (root / INFO_FILE).write_text(yaml.safe_dump(info, sort_keys=False))
    return summary
