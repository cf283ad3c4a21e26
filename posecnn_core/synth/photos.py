"""Backgrounds cropped from photographs.

A photo directory holds images (``.png``, ``.jpg``, ``.jpeg``) either directly or in two groups:

- ``scenes/``: photographs of whole scenes (rooms, streets, ...);
- ``surfaces/``: photographs of materials (wood, plaster, felt, tiles, ...).

``tools/fetch_backgrounds.py`` builds such a directory from pinned packages (docs/data.md). Images
directly in the directory count as scenes. A background is a random crop (random scale, position and
horizontal flip) of a scene or a surface, or, when both groups exist, a "tabletop": a surface seen in
perspective in the lower part of the image below a scene crop, as a camera looking down at a table
sees it. Photometric jitter (brightness, contrast, saturation), blur and noise follow.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["PhotoCollection", "PHOTO_SUFFIXES", "DEFAULT_PHOTO_DIR", "find_photos"]

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")
# where tools/fetch_backgrounds.py puts the training photos (git-ignored)
DEFAULT_PHOTO_DIR = Path(__file__).resolve().parents[2] / "data" / "backgrounds" / "photos"
_MAX_SIDE = 1024  # photos are downscaled to at most this size when loaded


def find_photos(root: str | Path) -> tuple[list[Path], list[Path]]:
    """(scene images, surface images) under ``root`` (see the module docstring); sorted, possibly empty."""
    root = Path(root)

    def images(d: Path) -> list[Path]:
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)

    return images(root) + images(root / "scenes"), images(root / "surfaces")


def _load(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # grey images come back as 3 equal channels
    if img is None:
        raise ValueError(f"cannot read background photo {path}")
    scale = _MAX_SIDE / max(img.shape[:2])
    if scale < 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[..., ::-1])


@dataclass
class PhotoCollection:
    """Photographs in memory (RGB uint8) and the random crops made from them."""

    scenes: list[np.ndarray]
    surfaces: list[np.ndarray]
    root: Path | None = None

    @classmethod
    def load(cls, root: str | Path) -> "PhotoCollection":
        """Load every photo under ``root``; FileNotFoundError naming ``root`` when there is none."""
        scene_paths, surface_paths = find_photos(root)
        if not scene_paths and not surface_paths:
            raise FileNotFoundError(f"no background photos ({', '.join(PHOTO_SUFFIXES)}) in {root} "
                                    f"or its scenes/ and surfaces/ folders")
        return cls([_load(p) for p in scene_paths], [_load(p) for p in surface_paths], Path(root))

    def __len__(self) -> int:
        return len(self.scenes) + len(self.surfaces)

    # -- crops -------------------------------------------------------------------------------
    @staticmethod
    def _crop(rng: np.random.Generator, img: np.ndarray, height: int, width: int,
              scale: tuple[float, float]) -> np.ndarray:
        """A random crop with the aspect of ``width`` x ``height``, ``scale`` x the largest such crop,
        randomly flipped left-right, resized to ``width`` x ``height``. Panoramas (aspect >= 1.9,
        equirectangular) are cropped from their middle rows, away from the distorted poles."""
        ih, iw = img.shape[:2]
        r0, r1 = (int(0.2 * ih), int(0.85 * ih)) if iw >= 1.9 * ih else (0, ih)
        avail_h = r1 - r0
        max_w = min(iw, avail_h * width / height)
        cw = max(2.0, max_w * rng.uniform(*scale))
        ch = max(2.0, cw * height / width)
        x0 = rng.uniform(0, iw - cw)
        y0 = r0 + rng.uniform(0, avail_h - ch)
        crop = img[int(y0):int(y0 + ch), int(x0):int(x0 + cw)]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        interp = cv2.INTER_AREA if crop.shape[1] > width else cv2.INTER_LINEAR
        return cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=interp)

    def _tabletop(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A surface in perspective below a horizon line, a scene crop above it."""
        top = self._crop(rng, self.scenes[int(rng.integers(len(self.scenes)))], height, width, (0.35, 1.0))
        tile = self._crop(rng, self.surfaces[int(rng.integers(len(self.surfaces)))], 256, 256, (0.3, 1.0))
        horizon = rng.uniform(-0.1, 0.55) * height
        cx = width * rng.uniform(0.3, 0.7)
        far = width * rng.uniform(0.4, 1.0)  # half-width of the tile's far edge, pixels
        near = far * rng.uniform(1.5, 3.5)
        src = np.float32([[0, 0], [255, 0], [255, 255], [0, 255]])
        dst = np.float32([[cx - far, horizon], [cx + far, horizon], [cx + near, height * 1.05],
                          [cx - near, height * 1.05]])
        H = cv2.getPerspectiveTransform(src, dst)
        table = cv2.warpPerspective(tile, H, (width, height), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)
        rows = np.arange(height, dtype=np.float32)[:, None, None]
        shade = rng.uniform(0.65, 1.0) + (1 - rng.uniform(0.65, 1.0)) * np.clip((rows - horizon) / height, 0, 1)
        table *= shade
        alpha = np.clip(rows - horizon + 0.5, 0.0, 1.0)  # 1 below the horizon
        return (alpha * table + (1 - alpha) * top.astype(np.float32)).clip(0, 255).astype(np.uint8)

    def sample(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A random background [height, width, 3] uint8 RGB from these photos."""
        if height < 1 or width < 1:
            raise ValueError(f"height and width must be positive, got {height}x{width}")
        r = rng.random()
        if self.scenes and self.surfaces and r >= 0.65:
            img = self._tabletop(rng, height, width).astype(np.float32)
        else:
            use_scene = bool(self.scenes) and (not self.surfaces or r < 0.45)
            group = self.scenes if use_scene else self.surfaces
            img = self._crop(rng, group[int(rng.integers(len(group)))], height, width,
                             (0.35, 1.0) if use_scene else (0.2, 1.0)).astype(np.float32)
        mean = img.mean(axis=(0, 1), keepdims=True)
        img = (img - mean) * rng.uniform(0.7, 1.2) + mean * rng.uniform(0.6, 1.3)
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.6, 1.3)
        sigma = rng.uniform(0, 1.2)
        if sigma > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        img += rng.normal(scale=rng.uniform(0, 5), size=img.shape).astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8)

    def texture(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A random square crop [size, size, 3] uint8 of any photo (textures for distractors)."""
        pool = self.scenes + self.surfaces
        return self._crop(rng, pool[int(rng.integers(len(pool)))], size, size, (0.15, 0.8))
