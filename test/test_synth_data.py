"""Tests for the synthetic data generator (rendering tests skip without pyrender + OSMesa)."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from _data_helpers import osmesa_available, write_box_object_set
from posecnn_core.synth import SceneConfig, default_intrinsics, frame_rng, generate_dataset
from posecnn_core.synth.backgrounds import BACKGROUND_KINDS, random_background
from posecnn_core.synth.scene import sample_scene
from posecnn_core.synth.writer import encode_depth, make_meta

REPO = Path(__file__).resolve().parents[1]
needs_osmesa = pytest.mark.skipif(not osmesa_available(), reason="pyrender/OSMesa not installed")


def test_backgrounds_all_kinds_deterministic():
    for kind in BACKGROUND_KINDS:
        a = random_background(np.random.default_rng(3), 24, 32, kind)
        b = random_background(np.random.default_rng(3), 24, 32, kind)
        assert a.shape == (24, 32, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
        assert a.std() > 0
    with pytest.raises(ValueError, match="kind"):
        random_background(np.random.default_rng(0), 8, 8, "photo")


def test_default_intrinsics_scale_ycb():
    K = default_intrinsics(320, 240)
    np.testing.assert_allclose(K[0], [1066.778 / 2, 0, 312.9869 / 2])
    np.testing.assert_allclose(K[1], [0, 1067.487 / 2, 241.3109 / 2])


def test_sample_scene_respects_config():
    cfg = SceneConfig(width=64, height=48, min_objects=3, max_objects=5, max_instances_per_class=2,
                      random_intrinsics=True)
    radii = [0.05, 0.08]
    for i in range(20):
        scene = sample_scene(frame_rng(7, i), radii, cfg)
        n = len(scene.instances)
        assert 3 <= n <= 4  # 2 classes x 2 instances caps at 4
        classes = [inst.class_index for inst in scene.instances]
        assert all(classes.count(c) <= 2 for c in (1, 2))
        for inst in scene.instances:
            assert cfg.depth_range[0] <= inst.t[2] <= cfg.depth_range[1]
            u, v = (scene.K @ inst.t / inst.t[2])[:2]
            assert 0 <= u <= 63 and 0 <= v <= 47
            np.testing.assert_allclose(inst.R @ inst.R.T, np.eye(3), atol=1e-9)
    again = sample_scene(frame_rng(7, 0), radii, cfg)
    first = sample_scene(frame_rng(7, 0), radii, cfg)
    np.testing.assert_array_equal(again.K, first.K)
    np.testing.assert_array_equal(again.instances[0].t, first.instances[0].t)


def test_scene_config_validation():
    with pytest.raises(ValueError, match="min_objects"):
        SceneConfig(min_objects=3, max_objects=2).validate()
    with pytest.raises(ValueError, match="depth_range"):
        SceneConfig(depth_range=(1.0, 0.5)).validate()


def test_encode_depth_and_meta():
    d = encode_depth(np.array([[0.5, np.nan], [7.0, -1.0]]))
    np.testing.assert_array_equal(d, [[5000, 0], [0, 0]])
    K = default_intrinsics(64, 48)
    poses = np.stack([np.hstack([np.eye(3), [[0.1], [0.0], [1.0]]])] * 2)
    meta = make_meta([3, 3], poses, K)
    assert meta["poses"].shape == (3, 4, 2)
    np.testing.assert_allclose(meta["center"][0], [K[0, 0] * 0.1 + K[0, 2], K[1, 2]])
    np.testing.assert_array_equal(meta["instance_ids"].ravel(), [1, 2])
    with pytest.raises(ValueError, match="poses"):
        make_meta([1], poses, K)


@needs_osmesa
def test_renderer_pixel_convention_and_depth(tmp_path):
    from posecnn_core.synth.assets import read_render_assets
    from posecnn_core.synth.renderer import SceneRenderer
    from posecnn_core.synth.scene import Instance

    yaml_path = write_box_object_set(tmp_path, extents=(0.1, 0.1, 1e-4))  # a thin square plate
    K = np.array([[300.0, 0, 150.3], [0, 310.0, 110.7], [0, 0, 1]])
    with SceneRenderer(read_render_assets(yaml_path), 320, 240) as r:
        for t in ([0.0, 0.0, 1.0], [0.1, 0.05, 1.0]):
            t = np.array(t)
            res = r.render(K, [Instance(1, np.eye(3), t)])
            rows, cols = np.nonzero(res.instance == 1)
            u, v = (K @ t / t[2])[:2]
            # exactly the pixels whose centres (c, r) lie inside the projected square
            # u +- 15, v +- 15.5 are covered (docs/conventions.md pixel centres)
            assert (cols.min(), cols.max()) == (int(np.floor(u - 15)) + 1, int(np.floor(u + 15)))
            assert (rows.min(), rows.max()) == (int(np.floor(v - 15.5)) + 1, int(np.floor(v + 15.5)))
            assert rows.size == 30 * 31
            np.testing.assert_allclose(res.depth[res.instance == 1], t[2], atol=1e-4)
            assert np.all(res.depth[res.instance == 0] == 0)


@needs_osmesa
def test_generate_tiny_dataset_is_deterministic_and_consistent(tmp_path):
    cfg = SceneConfig(width=64, height=48, min_objects=2, max_objects=4)
    objects = REPO / "config/objects/demo.yaml"
    s1 = generate_dataset(objects, tmp_path / "a", 3, seed=5, config=cfg, test_fraction=0.34, progress=False)
    generate_dataset(objects, tmp_path / "b", 3, seed=5, config=cfg, test_fraction=0.34, progress=False)
    assert s1.train == ["0000/000001", "0000/000002"] and s1.test == ["0000/000003"]
    assert (tmp_path / "a/image_sets/train.txt").read_text().split() == s1.train
    assert (tmp_path / "a/image_sets/classes.txt").read_text().split() == \
        ["bottle", "bread", "can", "cereal", "lemon", "milk"]
    for fid in s1.train + s1.test:
        pa, pb = tmp_path / "a/data" / fid, tmp_path / "b/data" / fid
        for suffix in ("-color.png", "-depth.png", "-label.png", "-instance.png"):
            assert Path(f"{pa}{suffix}").read_bytes() == Path(f"{pb}{suffix}").read_bytes(), fid + suffix
        color = cv2.imread(f"{pa}-color.png", cv2.IMREAD_UNCHANGED)
        depth = cv2.imread(f"{pa}-depth.png", cv2.IMREAD_UNCHANGED)
        label = cv2.imread(f"{pa}-label.png", cv2.IMREAD_UNCHANGED)
        inst = cv2.imread(f"{pa}-instance.png", cv2.IMREAD_UNCHANGED)
        meta = scipy.io.loadmat(f"{pa}-meta.mat")
        assert color.shape == (48, 64, 3) and depth.dtype == np.uint16
        cls = meta["cls_indexes"].ravel().astype(int)
        n = cls.size
        assert n >= 1 and meta["poses"].shape == (3, 4, n)
        assert set(np.unique(inst)) == set(range(n + 1))  # every listed instance is visible
        np.testing.assert_array_equal(label, np.where(inst > 0, cls[np.maximum(inst.astype(int) - 1, 0)], 0))
        assert np.all((depth > 0) == (inst > 0))
        t = meta["poses"][:, 3, :].T
        K = meta["intrinsic_matrix"]
        np.testing.assert_allclose(meta["center"], (t @ K.T)[:, :2] / t[:, 2:3])
        z = depth[inst > 0] / meta["factor_depth"].item()
        assert z.min() > 0.3 and z.max() < 1.2


def test_cli_reports_bad_objects_file(tmp_path, capsys):
    from posecnn_core.synth.__main__ import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nclasses: []\n")
    assert main(["--objects", str(bad), "--out", str(tmp_path / "o"), "--frames", "1"]) == 2
    assert "bad.yaml" in capsys.readouterr().err


@needs_osmesa
def test_workers_give_the_same_frames(tmp_path):
    cfg = SceneConfig(width=48, height=32, min_objects=1, max_objects=3)
    objects = REPO / "config/objects/demo.yaml"
    generate_dataset(objects, tmp_path / "one", 4, seed=9, config=cfg, progress=False)
    s2 = generate_dataset(objects, tmp_path / "two", 4, seed=9, config=cfg, progress=False, workers=2)
    assert s2.train == ["0000/000001", "0000/000002", "0000/000003", "0000/000004"]
    for fid in s2.train:
        for suffix in ("-color.png", "-depth.png", "-instance.png"):
            one = (tmp_path / "one/data" / f"{fid}{suffix}").read_bytes()
            assert (tmp_path / "two/data" / f"{fid}{suffix}").read_bytes() == one
