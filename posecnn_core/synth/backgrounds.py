"""Random backgrounds: procedural ones (no downloads: gradients, fractal noise, shapes, stripes) and
crops of photographs (kind "photo", see :mod:`posecnn_core.synth.photos`)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

if TYPE_CHECKING:
    from .photos import PhotoCollection

__all__ = ["random_background", "sample_background", "BACKGROUND_KINDS", "ALL_BACKGROUND_KINDS"]

BACKGROUND_KINDS = ("gradient", "noise", "shapes", "stripes")  # the procedural kinds
ALL_BACKGROUND_KINDS = BACKGROUND_KINDS + ("photo",)


def _colours(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0, 255, size=(n, 3))


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    a, b = _colours(rng, 2)
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if rng.random() < 0.5:  # linear
        s = xx * np.cos(ang) + yy * np.sin(ang)
    else:  # radial around a random point
        s = np.hypot(xx - rng.uniform(0, w), yy - rng.uniform(0, h))
    s = (s - s.min()) / max(np.ptp(s), 1e-9)
    return (1 - s)[..., None] * a + s[..., None] * b


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    total = np.zeros((h, w), dtype=np.float64)
    amp, norm = 1.0, 0.0
    cells = int(rng.integers(2, 6))
    for _ in range(int(rng.integers(3, 6))):
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        total += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        norm += amp
        amp *= rng.uniform(0.4, 0.7)
        cells *= 2
    s = np.clip(total / norm, 0, 1)
    cols = _colours(rng, 3)
    lo = np.clip(2 * s, 0, 1)[..., None]
    hi = np.clip(2 * s - 1, 0, 1)[..., None]
    return np.where(s[..., None] < 0.5, (1 - lo) * cols[0] + lo * cols[1], (1 - hi) * cols[1] + hi * cols[2])


def _shapes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = _colours(rng, 1)[0].astype(np.uint8)
    scale = max(h, w)
    for _ in range(int(rng.integers(5, 40))):
        col = tuple(float(c) for c in _colours(rng, 1)[0])
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        kind = rng.integers(0, 3)
        if kind == 0:
            x2, y2 = x + int(rng.integers(-scale // 3, scale // 3)), y + int(rng.integers(-scale // 3, scale // 3))
            cv2.rectangle(img, (x, y), (x2, y2), col, thickness=-1)
        elif kind == 1:
            cv2.circle(img, (x, y), int(rng.integers(2, scale // 5 + 3)), col, thickness=-1)
        else:
            x2, y2 = int(rng.integers(0, w)), int(rng.integers(0, h))
            cv2.line(img, (x, y), (x2, y2), col, thickness=int(rng.integers(1, max(2, scale // 40) + 1)))
    return img.astype(np.float64)


def _stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    a, b = _colours(rng, 2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ang = rng.uniform(0, np.pi)
    period = rng.uniform(4, max(h, w) / 3)
    s = xx * np.cos(ang) + yy * np.sin(ang)
    if rng.random() < 0.5:  # checkerboard
        s2 = -xx * np.sin(ang) + yy * np.cos(ang)
        m = ((np.floor(s / period) + np.floor(s2 / period)) % 2)[..., None]
    else:  # soft stripes
        m = (0.5 + 0.5 * np.sin(2 * np.pi * s / period))[..., None]
    return (1 - m) * a + m * b


_MAKERS = {"gradient": _gradient, "noise": _noise, "shapes": _shapes, "stripes": _stripes}


def random_background(rng: np.random.Generator, height: int, width: int, kind: str | None = None) -> np.ndarray:
    """A random RGB uint8 image [height, width, 3]; ``kind`` one of BACKGROUND_KINDS or None (random).

    A random blur and pixel noise are added so that backgrounds are not perfectly clean.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if kind is None:
        kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    if kind not in _MAKERS:
        raise ValueError(f"kind must be one of {BACKGROUND_KINDS} or None, got {kind!r}")
    img = _MAKERS[kind](rng, height, width).astype(np.float32)
    sigma = rng.uniform(0, 1.5)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(scale=rng.uniform(0, 6), size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def sample_background(rng: np.random.Generator, height: int, width: int, kinds: Sequence[str] = BACKGROUND_KINDS,
                      weights: Sequence[float] | None = None, photos: "PhotoCollection | None" = None) -> np.ndarray:
    """A background of a kind drawn from ``kinds`` (uniformly, or with ``weights``); uint8 RGB.

    With the default arguments this draws exactly what ``random_background(rng, height, width)``
    draws. Kind "photo" needs ``photos`` (a :class:`~posecnn_core.synth.photos.PhotoCollection`)."""
    if not kinds:
        raise ValueError("kinds must name at least one background kind")
    if weights is None or len(set(float(w) for w in weights)) == 1:
        kind = kinds[int(rng.integers(len(kinds)))]
    else:
        w = np.asarray(weights, dtype=np.float64)
        kind = kinds[int(rng.choice(len(kinds), p=w / w.sum()))]
    if kind == "photo":
        if photos is None:
            raise ValueError("background kind 'photo' needs a photo collection")
        return photos.sample(rng, height, width)
    return random_background(rng, height, width, kind)
