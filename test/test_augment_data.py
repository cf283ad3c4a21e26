"""Tests for posecnn_core.augment."""
import cv2
import numpy as np
import pytest

from posecnn_core.augment import (AugmentConfig, augment, gaussian_noise, hls_jitter, motion_blur,
                                  replace_background)


def _img(seed=0, h=24, w=32):
    return np.random.default_rng(seed).integers(30, 225, (h, w, 3)).astype(np.uint8)


def test_hls_jitter_identity_and_hue_shift():
    img = _img()
    out = hls_jitter(img, np.random.default_rng(0), hue=0, lightness=0, saturation=0)
    assert np.abs(out.astype(int) - img).max() <= 1  # float round trip
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 2] = 200  # BGR pure red, hue 0
    shifted = hls_jitter(red, np.random.default_rng(1), hue=60, lightness=0, saturation=0)
    h = cv2.cvtColor(shifted.astype(np.float32) / 255, cv2.COLOR_BGR2HLS)[..., 0]
    expected = np.random.default_rng(1).uniform(-60, 60) % 360
    assert np.allclose(h, expected, atol=1.5) or np.allclose(h, expected - 360, atol=1.5)
    a = hls_jitter(img, np.random.default_rng(5))
    np.testing.assert_array_equal(a, hls_jitter(img, np.random.default_rng(5)))


def test_gaussian_noise_statistics():
    img = np.full((100, 100, 3), 128, np.uint8)
    out = gaussian_noise(img, np.random.default_rng(0), sigma=5.0)
    diff = out.astype(float) - 128
    assert abs(diff.mean()) < 0.2 and diff.std() == pytest.approx(5.0, rel=0.05)
    np.testing.assert_array_equal(gaussian_noise(img, np.random.default_rng(0), 0.0), img)


def test_motion_blur_spreads_along_a_line_and_keeps_flat_images():
    flat = np.full((16, 16, 3), 77, np.uint8)
    np.testing.assert_array_equal(motion_blur(flat, np.random.default_rng(0)), flat)
    dot = np.zeros((21, 21, 3), np.uint8)
    dot[10, 10] = 210
    out = motion_blur(dot, np.random.default_rng(3), max_length=7).astype(float)
    assert out[..., 0].sum() == pytest.approx(210, rel=0.05)
    assert (out[..., 0] > 0).sum() >= 3 and out[10, 10, 0] < 210
    rows, cols = np.nonzero(out[..., 0] > 0)
    assert np.ptp(rows) <= 7 and np.ptp(cols) <= 7


def test_replace_background_uses_the_label_mask():
    img = _img()
    label = np.zeros(img.shape[:2], np.int64)
    label[5:10, 8:20] = 3
    bg = np.full((12, 16, 3), 9, np.uint8)  # resized to the image
    out = replace_background(img, label, bg)
    np.testing.assert_array_equal(out[label > 0], img[label > 0])
    assert np.all(out[label == 0] == 9)
    with pytest.raises(ValueError, match="label"):
        replace_background(img, label[:5], bg)


def test_augment_is_seeded_and_configurable():
    img = _img()
    label = np.zeros(img.shape[:2], np.int64)
    label[4:12, 4:12] = 1
    cfg = AugmentConfig(background_prob=1.0, noise_or_blur_prob=1.0)
    a = augment(img, np.random.default_rng(11), cfg, label=label)
    b = augment(img, np.random.default_rng(11), cfg, label=label)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, augment(img, np.random.default_rng(12), cfg, label=label))
    off = AugmentConfig(hls_prob=0, noise_or_blur_prob=0, background_prob=0)
    np.testing.assert_array_equal(augment(img, np.random.default_rng(0), off), img)
    with pytest.raises(ValueError, match="label is required"):
        augment(img, np.random.default_rng(0), AugmentConfig(background_prob=1.0))
    with pytest.raises(ValueError, match="hls_prob"):
        augment(img, np.random.default_rng(0), AugmentConfig(hls_prob=2))
    with pytest.raises(ValueError, match="image"):
        augment(img.astype(np.float32), np.random.default_rng(0))
