"""Image augmentation for training, PoseCNN-PyTorch's (PT's) recipe rule for rule.

- Colour: with probability ``hls_prob`` (PT 0.9) PT's chromatic transform — in OpenCV's 8-bit HLS space the hue
  shifted by up to ±``hue`` degrees (PT ±18°), lightness and saturation shifted additively by U(−x, x) on 0–255
  (PT ±25.6), clipped, truncated to uint8.
- Noise: with probability ``noise_or_blur_prob`` (PT 0.9) either Gaussian noise (σ = U(0,1)·U(0,1)·``noise_sigma``,
  PT 25.6; the same noise on all three channels) or, for a ``blur_fraction`` (PT 0.1) of those frames, a
  horizontal or vertical motion-blur line of length 3, 5, 7, 9, 11 or 15 pixels.
- Background: with probability ``background_prob`` the label-0 pixels take a background image that went through
  its own pipeline: one random colour with probability ``background_constant_prob`` (PT 0.1), else a random
  crop of a photograph (or of a procedural image when no photographs are given) with its own colour jitter;
  then its own noise. PT does this for every synthetic frame and half of the real ones.

All functions take a ``numpy.random.Generator`` so results are reproducible; images are uint8 BGR [H, W, 3].
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["AugmentConfig", "BackgroundImages", "hls_jitter", "gaussian_noise", "motion_blur", "replace_background",
           "augment", "BLUR_LENGTHS", "IMAGE_SUFFIXES"]

BLUR_LENGTHS = (3, 5, 7, 9, 11, 15)  # PT's motion-blur kernel sizes
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _check_image(img: np.ndarray, name: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 [H, W, 3], got {img.dtype} {img.shape}")
    return img


def hls_jitter(image: np.ndarray, rng: np.random.Generator, hue: float = 18.0,
               lightness: float = 25.6, saturation: float = 25.6) -> np.ndarray:
    """PT's chromatic transform: in 8-bit HLS (hue in OpenCV's 0–180 units), hue += U(−hue, hue)/2 modulo 180
    (``hue`` in degrees), lightness and saturation += U(−x, x), clipped to 0–255; then truncated to uint8 and
    converted back. The same change applies to every pixel."""
    img = _check_image(image)
    if hue < 0 or lightness < 0 or saturation < 0:
        raise ValueError(f"hue, lightness and saturation must be >= 0, got {hue}, {lightness}, {saturation}")
    dh = rng.uniform(-hue, hue) / 2.0  # degrees -> OpenCV hue units
    dl = rng.uniform(-lightness, lightness)
    ds = rng.uniform(-saturation, saturation)
    hls = cv2.cvtColor(img, cv2.COLOR_BGR2HLS).astype(np.float64)
    hls[..., 0] = np.mod(hls[..., 0] + dh, 180.0)
    hls[..., 1] = np.clip(hls[..., 1] + dl, 0.0, 255.0)
    hls[..., 2] = np.clip(hls[..., 2] + ds, 0.0, 255.0)
    return cv2.cvtColor(hls.astype(np.uint8), cv2.COLOR_HLS2BGR)


def gaussian_noise(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Add Gaussian noise of standard deviation ``sigma`` (grey levels), the same value on the three channels of
    a pixel (PT), clip to 0–255 and truncate to uint8."""
    img = _check_image(image)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    noise = sigma * rng.standard_normal(img.shape[:2])
    return np.clip(img + noise[..., None], 0, 255).astype(np.uint8)


def motion_blur(image: np.ndarray, rng: np.random.Generator, max_length: int = 15) -> np.ndarray:
    """PT's motion blur: a horizontal or vertical (equally likely) line kernel whose length is drawn from
    :data:`BLUR_LENGTHS` up to ``max_length``."""
    img = _check_image(image)
    lengths = [n for n in BLUR_LENGTHS if n <= max_length]
    if not lengths:
        raise ValueError(f"max_length must be >= {BLUR_LENGTHS[0]}, got {max_length}")
    n = lengths[int(rng.integers(len(lengths)))]
    kernel = np.zeros((n, n), dtype=np.float64)
    if rng.random() < 0.5:
        kernel[(n - 1) // 2, :] = 1.0
    else:
        kernel[:, (n - 1) // 2] = 1.0
    return cv2.filter2D(img, -1, kernel / n)


def to_gray(image: np.ndarray) -> np.ndarray:
    """The frame as a mono camera would give it, converted back to 3 channels: each pixel's luminance
    (ITU-R BT.601, as OpenCV's BGR2GRAY) on all three channels."""
    img = _check_image(image)
    return np.repeat(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[..., None], 3, axis=2)


def replace_background(image: np.ndarray, label: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Pixels with label 0 take the background (resized to the image when sizes differ)."""
    img = _check_image(image)
    bg = _check_image(background, "background")
    label = np.asarray(label)
    if label.shape != img.shape[:2]:
        raise ValueError(f"label must have shape {img.shape[:2]}, got {label.shape}")
    if bg.shape != img.shape:
        bg = cv2.resize(bg, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.where((label > 0)[..., None], img, bg).astype(np.uint8)


@dataclass
class AugmentConfig:
    """Probabilities and magnitudes of :func:`augment`; defaults are PT's, all probabilities 0 means identity."""

    hls_prob: float = 0.9
    hue: float = 18.0                 # max |hue shift|, degrees
    lightness: float = 25.6           # max |additive change| on 0..255
    saturation: float = 25.6          # max |additive change| on 0..255
    noise_or_blur_prob: float = 0.9
    blur_fraction: float = 0.1        # of those frames: motion blur instead of Gaussian noise
    noise_sigma: float = 25.6         # σ = U(0,1)·U(0,1)·noise_sigma, grey levels
    blur_max_length: int = 15         # pixels
    background_prob: float = 0.0      # replace the label-0 pixels (PT: 1 for synthetic, 0.5 for real frames)
    background_constant_prob: float = 0.1  # the background is one random colour
    gray_prob: float = 0.0            # our option, off in PT: the composed frame becomes grey (a mono camera)

    def validate(self) -> None:
        for name in ("hls_prob", "noise_or_blur_prob", "blur_fraction", "background_prob",
                     "background_constant_prob", "gray_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        for name in ("hue", "lightness", "saturation", "noise_sigma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.blur_max_length < BLUR_LENGTHS[0]:
            raise ValueError(f"blur_max_length must be >= {BLUR_LENGTHS[0]}, got {self.blur_max_length}")


class BackgroundImages:
    """Background images for :func:`augment`: photographs from ``directory`` (searched recursively for
    :data:`IMAGE_SUFFIXES`; PT uses COCO train2014) or, with ``directory`` None, procedural images
    (``posecnn_core.synth.backgrounds``). An unreadable photograph raises an error naming it."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = None if directory is None else Path(directory)
        self.files: list[Path] = []
        if self.directory is not None:
            if not self.directory.is_dir():
                raise FileNotFoundError(f"background image directory not found: {self.directory}")
            self.files = sorted(p for p in self.directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise FileNotFoundError(f"no background images ({', '.join(IMAGE_SUFFIXES)}) under {self.directory}")

    def __len__(self) -> int:
        return len(self.files)

    def image(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A photograph cropped as PT crops it — x1 in [0, w/3), y1 in [0, h/3), x2 in [2w/3, w), y2 in
        [2h/3, h) — and resized to ``height`` x ``width``; or a procedural image."""
        if not self.files:
            from .synth.backgrounds import random_background

            return random_background(rng, height, width)[..., ::-1].copy()  # RGB -> BGR
        path = self.files[int(rng.integers(len(self.files)))]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None or img.size == 0:
            raise ValueError(f"cannot read background image {path}")
        h, w = img.shape[:2]
        if h < 3 or w < 3:
            raise ValueError(f"background image {path} is too small ({w}x{h})")
        x1 = int(rng.integers(0, max(1, w // 3)))
        y1 = int(rng.integers(0, max(1, h // 3)))
        x2 = int(rng.integers(2 * w // 3, w))
        y2 = int(rng.integers(2 * h // 3, h))
        return cv2.resize(img[y1:y2, x1:x2], (width, height), interpolation=cv2.INTER_LINEAR)


def _noise_or_blur(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    if rng.random() < cfg.blur_fraction:
        return motion_blur(img, rng, cfg.blur_max_length)
    sigma = rng.random() * rng.uniform(0.0, 1.0) * cfg.noise_sigma
    return gaussian_noise(img, rng, sigma)


def _background(rng: np.random.Generator, cfg: AugmentConfig, height: int, width: int,
                source: BackgroundImages) -> np.ndarray:
    """PT's background pipeline: constant colour or (photograph + colour jitter), then noise or blur."""
    if rng.random() < cfg.background_constant_prob:
        bg = np.empty((height, width, 3), np.uint8)
        bg[:] = rng.integers(0, 256, size=3).astype(np.uint8)
    else:
        bg = source.image(rng, height, width)
        if rng.random() < cfg.hls_prob:
            bg = hls_jitter(bg, rng, cfg.hue, cfg.lightness, cfg.saturation)
    if rng.random() < cfg.noise_or_blur_prob:
        bg = _noise_or_blur(bg, rng, cfg)
    return bg


def augment(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig | None = None,
            label: np.ndarray | None = None, backgrounds: BackgroundImages | None = None) -> np.ndarray:
    """PT's augmentation of one frame: colour jitter and noise/blur of the frame (each with its probability),
    then, with ``background_prob``, its label-0 pixels replaced by a background from ``backgrounds`` (default:
    procedural images) that got its own jitter and noise, as PT composes them after loading."""
    cfg = config or AugmentConfig()
    cfg.validate()
    img = _check_image(image)
    if rng.random() < cfg.hls_prob:
        img = hls_jitter(img, rng, cfg.hue, cfg.lightness, cfg.saturation)
    if rng.random() < cfg.noise_or_blur_prob:
        img = _noise_or_blur(img, rng, cfg)
    if rng.random() < cfg.background_prob:
        if label is None:
            raise ValueError("label is required for background replacement (background_prob > 0)")
        bg = _background(rng, cfg, img.shape[0], img.shape[1], backgrounds or BackgroundImages())
        img = replace_background(img, label, bg)
    if cfg.gray_prob > 0 and rng.random() < cfg.gray_prob:  # no draw when off: PT's random stream is unchanged
        img = to_gray(img)
    return img
