"""Image augmentation for training (PoseCNN-PyTorch recipe): HLS colour jitter, Gaussian noise or
motion blur, and background replacement through the label mask. All functions take a
``numpy.random.Generator`` so results are reproducible; images are uint8 BGR [H, W, 3].
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["AugmentConfig", "hls_jitter", "gaussian_noise", "motion_blur", "replace_background", "augment"]


def _check_image(img: np.ndarray, name: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 [H, W, 3], got {img.dtype} {img.shape}")
    return img


def hls_jitter(image: np.ndarray, rng: np.random.Generator, hue: float = 10.0,
               lightness: float = 0.1, saturation: float = 0.1) -> np.ndarray:
    """Shift hue by up to ``hue`` degrees and scale lightness and saturation by
    1 + U(-x, x); the same random change applies to every pixel."""
    img = _check_image(image)
    if hue < 0 or lightness < 0 or saturation < 0:
        raise ValueError(f"hue, lightness and saturation must be >= 0, got {hue}, {lightness}, {saturation}")
    dh = rng.uniform(-hue, hue)
    sl = 1.0 + rng.uniform(-lightness, lightness)
    ss = 1.0 + rng.uniform(-saturation, saturation)
    hls = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_BGR2HLS)  # H in degrees, L and S in 0..1
    hls[..., 0] = np.mod(hls[..., 0] + dh, 360.0)
    hls[..., 1] = np.clip(hls[..., 1] * sl, 0.0, 1.0)
    hls[..., 2] = np.clip(hls[..., 2] * ss, 0.0, 1.0)
    out = cv2.cvtColor(hls, cv2.COLOR_HLS2BGR) * 255.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def gaussian_noise(image: np.ndarray, rng: np.random.Generator, sigma: float = 5.0) -> np.ndarray:
    """Add i.i.d. Gaussian noise of standard deviation ``sigma`` (grey levels)."""
    img = _check_image(image)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    noisy = img.astype(np.float32) + rng.normal(scale=sigma, size=img.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def motion_blur(image: np.ndarray, rng: np.random.Generator, max_length: int = 7) -> np.ndarray:
    """Blur along a random direction with a line kernel of random length 3..``max_length`` pixels."""
    img = _check_image(image)
    if max_length < 3:
        raise ValueError(f"max_length must be >= 3, got {max_length}")
    length = int(rng.integers(3, max_length + 1))
    angle = rng.uniform(0.0, 180.0)
    kernel = np.zeros((length, length), dtype=np.float32)
    kernel[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2.0, (length - 1) / 2.0), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length), flags=cv2.INTER_LINEAR)
    kernel /= kernel.sum()
    out = cv2.filter2D(img.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


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
    """Probabilities and magnitudes of :func:`augment`; all probabilities 0 means identity."""

    hls_prob: float = 1.0
    hue: float = 10.0
    lightness: float = 0.1
    saturation: float = 0.1
    noise_or_blur_prob: float = 0.5  # then Gaussian noise or motion blur, equally likely
    noise_sigma: float = 5.0
    blur_max_length: int = 7
    background_prob: float = 0.0  # PT replaces the backgrounds of synthetic frames

    def validate(self) -> None:
        for name in ("hls_prob", "noise_or_blur_prob", "background_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")


def augment(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig | None = None,
            label: np.ndarray | None = None, background: np.ndarray | None = None) -> np.ndarray:
    """Apply background replacement (needs ``label``; a procedural background when
    ``background`` is None), HLS jitter, then noise or blur, each with its probability."""
    cfg = config or AugmentConfig()
    cfg.validate()
    img = _check_image(image)
    if rng.random() < cfg.background_prob:
        if label is None:
            raise ValueError("label is required for background replacement (background_prob > 0)")
        if background is None:
            from .synth.backgrounds import random_background

            background = random_background(rng, img.shape[0], img.shape[1])
        img = replace_background(img, label, background)
    if rng.random() < cfg.hls_prob:
        img = hls_jitter(img, rng, cfg.hue, cfg.lightness, cfg.saturation)
    if rng.random() < cfg.noise_or_blur_prob:
        img = gaussian_noise(img, rng, cfg.noise_sigma) if rng.random() < 0.5 else motion_blur(img, rng, cfg.blur_max_length)
    return img
