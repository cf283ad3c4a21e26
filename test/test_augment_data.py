"""Tests for posecnn_core.augment (PoseCNN-PyTorch's augmentation rules)."""
import cv2
import numpy as np
import pytest

from posecnn_core.augment import (AugmentConfig, BackgroundImages, augment, gaussian_noise, hls_jitter,
                                  motion_blur, replace_background, to_gray)


def _img(seed=0, h=24, w=32):
    return np.random.default_rng(seed).integers(30, 225, (h, w, 3)).astype(np.uint8)


def test_hls_jitter_is_pts_additive_8bit_hls_shift():
    img = _img()
    np.testing.assert_array_equal(hls_jitter(img, np.random.default_rng(0), hue=0, lightness=0, saturation=0),
                                  cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2HLS), cv2.COLOR_HLS2BGR))
    # the draws: hue U(-18, 18) degrees = U(-9, 9) OpenCV units, lightness/saturation U(-25.6, 25.6)
    rng = np.random.default_rng(4)
    dh, dl, ds = rng.uniform(-18, 18) / 2, rng.uniform(-25.6, 25.6), rng.uniform(-25.6, 25.6)
    hls = cv2.cvtColor(img, cv2.COLOR_BGR2HLS).astype(np.float64)
    want = np.stack([np.mod(hls[..., 0] + dh, 180), np.clip(hls[..., 1] + dl, 0, 255),
                     np.clip(hls[..., 2] + ds, 0, 255)], -1).astype(np.uint8)
    out = hls_jitter(img, np.random.default_rng(4))
    np.testing.assert_array_equal(out, cv2.cvtColor(want, cv2.COLOR_HLS2BGR))
    # lightness is additive: a mid-grey image moves by the drawn amount (saturation 0 stays grey)
    grey = np.full((4, 4, 3), 100, np.uint8)
    g = hls_jitter(grey, np.random.default_rng(1), hue=0, lightness=25.6, saturation=0)
    r = np.random.default_rng(1)
    r.uniform(0, 0)  # the hue draw comes first
    expected = int(np.clip(100 + r.uniform(-25.6, 25.6), 0, 255))
    assert np.all(np.abs(g.astype(int) - expected) <= 1)


def test_gaussian_noise_is_the_same_on_all_channels():
    img = np.full((100, 100, 3), 128, np.uint8)
    out = gaussian_noise(img, np.random.default_rng(0), sigma=5.0)
    diff = out.astype(float) - 128
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    assert abs(diff.mean() + 0.5) < 0.2  # truncation toward zero shifts the mean by about -0.5
    assert diff.std() == pytest.approx(5.0, rel=0.05)
    np.testing.assert_array_equal(gaussian_noise(img, np.random.default_rng(0), 0.0), img)


def test_motion_blur_is_a_horizontal_or_vertical_line_of_pt_length():
    flat = np.full((16, 16, 3), 77, np.uint8)
    np.testing.assert_array_equal(motion_blur(flat, np.random.default_rng(0)), flat)
    seen = set()
    for seed in range(40):
        dot = np.zeros((41, 41, 3), np.uint8)
        dot[20, 20] = 225
        out = motion_blur(dot, np.random.default_rng(seed))[..., 0].astype(float)
        rows, cols = np.nonzero(out > 0)
        assert np.ptp(rows) == 0 or np.ptp(cols) == 0  # a line along x or y
        length = int(max(np.ptp(rows), np.ptp(cols))) + 1
        assert length in (3, 5, 7, 9, 11, 15)
        seen.add((length, bool(np.ptp(rows) == 0)))
    assert len({n for n, _ in seen}) >= 4 and {h for _, h in seen} == {True, False}
    with pytest.raises(ValueError, match="max_length"):
        motion_blur(flat, np.random.default_rng(0), max_length=2)


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


def test_background_photographs_are_cropped_like_pt(tmp_path):
    photo = np.zeros((90, 120, 3), np.uint8)
    photo[:, :, 0] = np.arange(120)[None, :]  # blue encodes the column, green the row
    photo[:, :, 1] = np.arange(90)[:, None]
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    src = BackgroundImages(tmp_path)
    assert len(src) == 1
    for seed in range(10):
        bg = src.image(np.random.default_rng(seed), 30, 40)
        assert bg.shape == (30, 40, 3)
        # the crop starts in the first third and ends in the last third of the photograph
        assert bg[0, 0, 0] < 40 + 2 and bg[0, 0, 1] < 30 + 2
        assert bg[-1, -1, 0] >= 80 - 2 and bg[-1, -1, 1] >= 60 - 2
    with pytest.raises(FileNotFoundError, match="no background images"):
        BackgroundImages(_empty(tmp_path))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    broken = BackgroundImages(tmp_path)
    with pytest.raises(ValueError, match="bad.png"):
        for seed in range(20):
            broken.image(np.random.default_rng(seed), 8, 8)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_augment_probabilities_follow_pt():
    img = _img(h=16, w=16)
    label = np.zeros(img.shape[:2], np.int64)
    label[4:12, 4:12] = 1
    cfg = AugmentConfig()  # PT: colour 0.9, noise-or-blur 0.9 (blur 10 % of those)
    assert (cfg.hls_prob, cfg.noise_or_blur_prob, cfg.blur_fraction) == (0.9, 0.9, 0.1)
    assert (cfg.hue, cfg.lightness, cfg.saturation, cfg.noise_sigma, cfg.blur_max_length) == (18, 25.6, 25.6, 25.6, 15)
    only_bg = AugmentConfig(hls_prob=0, noise_or_blur_prob=0, background_prob=1.0, background_constant_prob=1.0)
    out = augment(img, np.random.default_rng(0), only_bg, label=label)
    np.testing.assert_array_equal(out[label > 0], img[label > 0])
    assert len(np.unique(out[label == 0].reshape(-1, 3), axis=0)) == 1  # one constant colour
    # noise and blur: Gaussian in 81 % of frames, blur in 9 %
    noisy = AugmentConfig(hls_prob=0, background_prob=0)
    flat = np.full((8, 8, 3), 128, np.uint8)
    kinds = {"same": 0, "noise": 0}
    n = 2000
    for seed in range(n):
        o = augment(flat, np.random.default_rng(seed), noisy)
        kinds["same" if np.array_equal(o, flat) else "noise"] += 1  # blur keeps a flat image
    assert kinds["noise"] / n == pytest.approx(0.81, abs=0.03)


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


def test_to_gray_is_a_mono_cameras_luminance_on_three_channels():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = (255, 0, 0)      # pure blue (BGR)
    img[0, 1] = (0, 255, 0)      # pure green
    img[0, 2] = (0, 0, 255)      # pure red
    img[1] = 200
    g = to_gray(img)
    assert g.shape == img.shape and g.dtype == np.uint8
    np.testing.assert_array_equal(g[..., 0], g[..., 1])
    np.testing.assert_array_equal(g[..., 0], g[..., 2])
    # BT.601: 0.114 B + 0.587 G + 0.299 R
    np.testing.assert_array_equal(g[0, :, 0], [29, 150, 76])
    np.testing.assert_array_equal(g[1, :, 0], [200, 200, 200])


def test_gray_option_is_off_in_pt_and_leaves_pts_random_stream_alone():
    img = _img()
    label = np.zeros(img.shape[:2], np.int64)
    label[4:12, 4:12] = 1
    assert AugmentConfig().gray_prob == 0.0
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    a = augment(img, rng_a, AugmentConfig(background_prob=1.0), label=label)
    b = augment(img, rng_b, AugmentConfig(background_prob=1.0, gray_prob=0.0), label=label)
    np.testing.assert_array_equal(a, b)
    assert rng_a.random() == rng_b.random()  # gray_prob 0 draws nothing
    always = AugmentConfig(background_prob=1.0, gray_prob=1.0)
    g = augment(img, np.random.default_rng(5), always, label=label)
    np.testing.assert_array_equal(g, to_gray(a))  # the composed frame, background included, turned grey
    half = AugmentConfig(hls_prob=0, noise_or_blur_prob=0, gray_prob=0.3)
    grey = sum(np.array_equal(augment(img, np.random.default_rng(s), half), to_gray(img)) for s in range(1000))
    assert grey / 1000 == pytest.approx(0.3, abs=0.05)
    with pytest.raises(ValueError, match="gray_prob"):
        augment(img, np.random.default_rng(0), AugmentConfig(gray_prob=1.5))
