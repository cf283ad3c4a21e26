"""Photometric augmentation of BGR uint8 training images (PT's recipe: HLS jitter, noise or motion blur,
random backgrounds behind synthetic objects). Every function takes an explicit ``numpy`` Generator."""
from __future__ import annotations

import cv2
import numpy as np

from ..synth.backgrounds import random_background
from .config import AugmentConfig

__all__ = ["hls_jitter", "gaussian_noise", "motion_blur", "replace_background", "augment_image"]


def _check(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 [H, W, 3] array, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")


def hls_jitter(image: np.ndarray, rng: np.random.Generator, hue: float, lightness: float,
               saturation: float) -> np.ndarray:
    """Shift hue (fraction of the circle), lightness and saturation (fractions of 255) by uniform amounts."""
    _check(image)
    hls = cv2.cvtColor(image, cv2.COLOR_BGR2HLS_FULL).astype(np.float32)  # H in 0..255 for the full circle
    dh, dl, ds = (rng.uniform(-m, m) * 255.0 for m in (hue, lightness, saturation))
    hls[..., 0] = np.mod(hls[..., 0] + dh, 256.0)
    hls[..., 1] = np.clip(hls[..., 1] + dl, 0, 255)
    hls[..., 2] = np.clip(hls[..., 2] + ds, 0, 255)
    return cv2.cvtColor(np.round(hls).astype(np.uint8), cv2.COLOR_HLS2BGR_FULL)


def gaussian_noise(image: np.ndarray, rng: np.random.Generator, max_std: float) -> np.ndarray:
    """Add zero-mean Gaussian noise with a std drawn uniformly from [0, max_std·255]."""
    _check(image)
    std = rng.uniform(0, max_std) * 255.0
    noisy = image.astype(np.float32) + rng.normal(0.0, std, size=image.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def motion_blur(image: np.ndarray, rng: np.random.Generator, max_kernel: int) -> np.ndarray:
    """Blur along a random direction with a line kernel of odd length in [3, max_kernel]."""
    _check(image)
    size = int(rng.integers(1, max_kernel // 2 + 1)) * 2 + 1
    kernel = np.zeros((size, size), np.float32)
    kernel[size // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((size - 1) / 2.0, (size - 1) / 2.0), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (size, size))
    kernel /= max(float(kernel.sum()), 1e-6)
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)


def replace_background(image: np.ndarray, background_mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replace the pixels where ``background_mask`` is true by a procedural random background."""
    _check(image)
    if background_mask.shape != image.shape[:2]:
        raise ValueError(f"background_mask must be {image.shape[:2]}, got {background_mask.shape}")
    bg = random_background(rng, image.shape[0], image.shape[1])[:, :, ::-1]  # RGB -> BGR
    out = image.copy()
    out[background_mask] = bg[background_mask]
    return out


def augment_image(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
                  synthetic: bool) -> np.ndarray:
    """The full per-frame augmentation (returns ``image`` itself when disabled)."""
    if not cfg.enabled:
        return image
    if synthetic and cfg.background_prob > 0 and rng.random() < cfg.background_prob:
        image = replace_background(image, label == 0, rng)
    if cfg.hue > 0 or cfg.lightness > 0 or cfg.saturation > 0:
        image = hls_jitter(image, rng, cfg.hue, cfg.lightness, cfg.saturation)
    if cfg.noise_prob > 0 and rng.random() < cfg.noise_prob:
        image = gaussian_noise(image, rng, cfg.noise_std)
    elif cfg.blur_prob > 0 and rng.random() < cfg.blur_prob:
        image = motion_blur(image, rng, cfg.blur_max_kernel)
    return image
