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


# --- cameras, lights, distractors, photo backgrounds -------------------------------------------

def test_default_sampling_is_unchanged():
    """The default scene sampler and backgrounds draw what they drew before the camera/light/distractor
    options existed (values recorded from that version), so old datasets stay reproducible."""
    from posecnn_core.synth.backgrounds import sample_background

    cfg = SceneConfig(width=64, height=48)
    expected = {
        0: ([-0.169351295, -0.060484116, 0.957040044, -0.103527647, -0.119920815, 0.87487202, -0.105284088,
             0.017436673, 0.783798449, -0.229397689, -0.091882924, 0.870789914, -0.187306097, -0.043291929,
             0.775334883, 0.024832896, -0.113996123, 0.839190514], [18.298137067, 6.734675789, 8.631829656], 386325),
        1: ([-0.031358623, -0.103842856, 0.574422351, 0.065757253, -0.016575267, 0.45, -0.007200005, 0.004238741,
             0.547979224, -0.058644721, 0.082672914, 0.478667271, 0.061200497, -0.056805325, 0.575798656,
             -0.067450754, -0.037032766, 0.491436507], [3.969675413], 279656),
    }
    for i, (ts, intensities, bg_sum) in expected.items():
        rng = frame_rng(7, i)
        scene = sample_scene(rng, [0.05, 0.08], cfg)
        np.testing.assert_allclose(np.concatenate([inst.t for inst in scene.instances]), ts, atol=1e-8)
        np.testing.assert_allclose([light.intensity for light in scene.lights], intensities, atol=1e-8)
        assert scene.distractors == [] and all(light.kind == "point" for light in scene.lights)
        assert int(sample_background(rng, 24, 32).astype(np.int64).sum()) == bg_sum
    np.testing.assert_array_equal(sample_scene(frame_rng(7, 0), [0.05], cfg).K, default_intrinsics(64, 48))
    K = sample_scene(frame_rng(7, 0), [0.05, 0.08], SceneConfig(width=64, height=48, random_intrinsics=True)).K
    np.testing.assert_allclose(K, [[117.182697874, 0, 30.44479561], [0, 116.699476468, 22.924478901], [0, 0, 1]],
                               atol=1e-8)


def test_sampled_intrinsics_lie_in_the_requested_ranges():
    from posecnn_core.synth.scene import sample_intrinsics

    for w, h in ((320, 240), (640, 480), (64, 48)):
        cfg = SceneConfig(width=w, height=h, fx_range=(250, 600), aspect_jitter=0.02, principal_jitter=0.03)
        Ks = np.stack([sample_intrinsics(frame_rng(1, i), cfg) for i in range(300)])
        fx, fy, cx, cy = Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2]
        s = w / 320
        assert fx.min() >= 250 * s and fx.max() <= 600 * s
        assert fx.min() < 280 * s and fx.max() > 540 * s  # the range is covered
        assert np.all(np.abs(fy / fx - 1) <= 0.02 + 1e-12) and np.ptp(fy / fx) > 0.02
        assert np.all(np.abs(cx - (w - 1) / 2) <= 0.03 * w) and np.all(np.abs(cy - (h - 1) / 2) <= 0.03 * h)
        np.testing.assert_array_equal(Ks[:, 2], np.tile([0, 0, 1], (300, 1)))
        np.testing.assert_array_equal(Ks[:, 0, 1], 0)
    fixed = SceneConfig(width=64, height=48, camera=(50.0, 51.0, 30.0, 20.0))
    rng = frame_rng(1, 0)
    np.testing.assert_array_equal(sample_intrinsics(rng, fixed), [[50, 0, 30], [0, 51, 20], [0, 0, 1]])
    assert rng.random() == frame_rng(1, 0).random()  # a fixed camera draws nothing
    with pytest.raises(ValueError, match="camera"):
        SceneConfig(camera=(50.0, 51.0, 30.0, 20.0), fx_range=(250, 600)).validate()
    with pytest.raises(ValueError, match="fx_range"):
        SceneConfig(fx_range=(600, 250)).validate()


def test_varied_lights_and_colour_temperature():
    from posecnn_core.synth.scene import temperature_to_rgb

    np.testing.assert_allclose(temperature_to_rgb(6500), 1.0, atol=0.07)  # about D65 white
    warm, cold = temperature_to_rgb(2700), temperature_to_rgb(10000)
    assert warm[0] > warm[1] > warm[2] and cold[2] > cold[1] > cold[0]
    cfg = SceneConfig(light_style="varied", min_lights=2, max_lights=4)
    kinds, counts = set(), set()
    for i in range(40):
        scene = sample_scene(frame_rng(2, i), [0.05], cfg)
        counts.add(len(scene.lights))
        for light in scene.lights:
            kinds.add(light.kind)
            assert np.all((light.color > 0) & (light.color <= 1)) and light.intensity > 0
            if light.kind == "directional":
                assert abs(np.linalg.norm(light.direction) - 1) < 1e-9
    assert kinds == {"point", "directional"} and counts == {2, 3, 4}
    with pytest.raises(ValueError, match="light_style"):
        SceneConfig(light_style="disco").validate()


def test_sample_distractors_roles_and_ranges():
    cfg = SceneConfig(width=64, height=48, min_distractors=2, max_distractors=5, distractor_size_range=(0.01, 0.04),
                      distractor_textures=7)
    n_front = 0
    for i in range(30):
        scene = sample_scene(frame_rng(4, i), [0.05, 0.08], cfg)
        assert 2 <= len(scene.distractors) <= 5
        nearest = min(inst.t[2] for inst in scene.instances)
        for d in scene.distractors:
            assert d.scale.max() <= 0.04 + 1e-12 and d.scale.min() > 0
            assert -1 <= d.texture < 7 and d.t[2] > 0
            np.testing.assert_allclose(d.R @ d.R.T, np.eye(3), atol=1e-9)
            n_front += d.t[2] < nearest
    assert n_front > 10  # occluders in front of the objects


@needs_osmesa
def test_distractor_occludes_but_is_never_an_object(tmp_path):
    from posecnn_core.synth.assets import read_render_assets
    from posecnn_core.synth.renderer import SceneRenderer
    from posecnn_core.synth.scene import Distractor, Instance

    yaml_path = write_box_object_set(tmp_path, extents=(0.1, 0.1, 1e-4))
    K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
    plate = Instance(1, np.eye(3), np.array([0.0, 0.0, 1.0]))
    occluder = Distractor(shape="box", scale=np.array([0.02, 0.02, 0.02]), R=np.eye(3), t=np.array([0.02, 0.0, 0.6]),
                          texture=0, color=np.array([1.0, 0.5, 0.5]))
    tex = np.full((16, 16, 3), 200, np.uint8)
    with SceneRenderer(read_render_assets(yaml_path), 320, 240, distractor_textures=[tex]) as r:
        alone = r.render(K, [plate])
        both = r.render(K, [plate], distractors=[occluder])
    visible_alone = int((alone.instance == 1).sum())
    visible = int((both.instance == 1).sum())
    covered = both.distractor & (alone.instance == 1)
    # the cube's front face (z = 0.58 m) spans u in [159.5, 180.2], v in 119.5 +- 10.3: over the plate
    # (u, v in 159.5 +- 15, 119.5 +- 15) that is 15 columns x 20 rows of pixel centres
    assert visible_alone == 30 * 30 and covered.sum() == 15 * 20
    assert visible == visible_alone - int(covered.sum())
    assert not np.any(both.instance[both.distractor])  # distractor pixels are not objects
    np.testing.assert_allclose(both.depth[both.distractor], 0.58, atol=2e-3)  # its depth is measured
    assert not alone.distractor.any()


@needs_osmesa
def test_generate_with_photos_distractors_and_sampled_cameras(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    red = np.zeros((60, 90, 3), np.uint8)
    red[:] = (40, 40, 200)  # BGR: a red photo
    cv2.imwrite(str(photos / "red.png"), red)
    cfg = SceneConfig(width=64, height=48, min_objects=2, max_objects=4, fx_range=(250, 600),
                      min_distractors=3, max_distractors=3, light_style="varied", background_kinds=("photo",),
                      photo_dir=str(photos))
    objects = REPO / "config/objects/demo.yaml"
    s = generate_dataset(objects, tmp_path / "a", 4, seed=11, config=cfg, test_fraction=0, progress=False)
    assert s.notes == []
    generate_dataset(objects, tmp_path / "b", 4, seed=11, config=cfg, test_fraction=0, progress=False, workers=2)
    Ks, n_distractor_px = [], 0
    for fid in s.train:
        pa = tmp_path / "a/data" / fid
        for suffix in ("-color.png", "-depth.png", "-label.png", "-instance.png"):
            assert Path(f"{pa}{suffix}").read_bytes() == (tmp_path / "b/data" / f"{fid}{suffix}").read_bytes()
        color = cv2.imread(f"{pa}-color.png")
        depth = cv2.imread(f"{pa}-depth.png", cv2.IMREAD_UNCHANGED)
        label = cv2.imread(f"{pa}-label.png", cv2.IMREAD_UNCHANGED)
        inst = cv2.imread(f"{pa}-instance.png", cv2.IMREAD_UNCHANGED)
        meta = scipy.io.loadmat(f"{pa}-meta.mat")
        cls = meta["cls_indexes"].ravel().astype(int)
        assert set(np.unique(inst)) == set(range(cls.size + 1))
        np.testing.assert_array_equal(label, np.where(inst > 0, cls[np.maximum(inst.astype(int) - 1, 0)], 0))
        n_distractor_px += int(((depth > 0) & (inst == 0)).sum())  # distractors: depth but no label
        background = color[(depth == 0)].astype(float)
        assert background.size and (background[:, 2] - background[:, 1]).mean() > 40  # from the red photo
        K = meta["intrinsic_matrix"]
        t = meta["poses"][:, 3, :].T
        np.testing.assert_allclose(meta["center"], (t @ K.T)[:, :2] / t[:, 2:3])
        Ks.append(K)
    assert n_distractor_px > 0
    fx = np.array([K[0, 0] for K in Ks])
    assert np.all((fx >= 250 * 64 / 320) & (fx <= 600 * 64 / 320)) and np.unique(fx).size == len(Ks)

    from posecnn_core.datasets.ycb import YCBVideoDataset

    ds = YCBVideoDataset(tmp_path / "a", "train")
    np.testing.assert_array_equal(ds[1].K, Ks[1])  # the reader gives each frame its own K


def test_missing_photos_fall_back_with_a_message(tmp_path, capsys):
    from posecnn_core.synth.__main__ import main
    from posecnn_core.synth.generate import MissingPhotosWarning, resolve_photo_config

    empty = tmp_path / "none"
    cfg = SceneConfig(background_kinds=("photo", "noise"), background_weights=(0.9, 0.1), photo_dir=str(empty),
                      max_distractors=2)
    with pytest.warns(MissingPhotosWarning) as caught:
        resolved, notes = resolve_photo_config(cfg)
    assert [str(w.message) for w in caught] == notes
    assert notes[0].startswith(f"no background photos found in {empty} (check --photo-dir)")
    assert resolved.background_kinds == ("noise",) and resolved.background_weights == (0.1,)
    assert resolved.photo_dir is None and len(notes) == 2 and "procedural textures" in notes[1]
    with pytest.warns(MissingPhotosWarning):
        only_photo, _ = resolve_photo_config(SceneConfig(background_kinds=("photo",), photo_dir=str(empty)))
    assert only_photo.background_kinds == BACKGROUND_KINDS
    with pytest.raises(FileNotFoundError, match="no background photos"):
        resolve_photo_config(cfg, require_photos=True)
    unchanged, notes = resolve_photo_config(SceneConfig(photo_dir=str(empty)))  # photos not used: no message
    assert notes == [] and unchanged.background_kinds == BACKGROUND_KINDS
    code = main(["--objects", str(REPO / "config/objects/demo.yaml"), "--out", str(tmp_path / "o"), "--frames", "1",
                 "--backgrounds", "photo", "--photo-dir", str(empty), "--require-photos"])
    assert code == 2 and "no background photos" in capsys.readouterr().err


def test_cli_builds_the_scene_config(monkeypatch, tmp_path):
    import posecnn_core.synth.__main__ as cli

    seen = {}

    def fake_generate(objects, out, frames, **kw):
        seen.update(kw)
        raise ValueError("stop")

    monkeypatch.setattr(cli, "generate_dataset", fake_generate)
    assert cli.main(["--objects", "x.yaml", "--out", str(tmp_path), "--frames", "1", "--fx-range", "250,600",
                     "--aspect-jitter", "0.01", "--distractors", "1,4", "--lights", "2,5", "--light-style", "varied",
                     "--backgrounds", "photo:0.8,noise:0.2", "--photo-dir", "P"]) == 2
    cfg = seen["config"]
    assert cfg.fx_range == (250.0, 600.0) and cfg.aspect_jitter == 0.01 and cfg.camera is None
    assert (cfg.min_distractors, cfg.max_distractors, cfg.min_lights, cfg.max_lights) == (1, 4, 2, 5)
    assert cfg.background_kinds == ("photo", "noise") and cfg.background_weights == (0.8, 0.2)
    assert cfg.light_style == "varied" and cfg.photo_dir == "P"
    assert cli.main(["--objects", "x.yaml", "--out", str(tmp_path), "--frames", "1",
                     "--camera", "300,301,159,119"]) == 2
    assert seen["config"].camera == (300.0, 301.0, 159.0, 119.0) and seen["config"].background_weights is None
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--objects", "x", "--out", "y", "--frames", "1", "--backgrounds", "sky"])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cli_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    """A folder holding one unrelated file: refused (also with --append / --overwrite), left untouched."""
    from posecnn_core.synth.__main__ import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    before = _snapshot(out)
    base = ["--objects", str(REPO / "config/objects/demo.yaml"), "--out", str(out), "--frames", "1",
            "--width", "64", "--height", "48", "--no-progress"]
    for extra, expected in (([], "is not empty (notes.txt)"), (["--append"], "no synth_info.yaml"),
                            (["--overwrite"], "no synth_info.yaml")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert expected in err and str(out) in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
        assert _snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert main(base[:3] + [str(afile)] + base[4:]) == 2
    assert "is a regular file, not a folder" in capsys.readouterr().err and afile.read_text() == "x"
    with pytest.raises(SystemExit):  # --append and --overwrite exclude each other
        main(base + ["--append", "--overwrite"])


@needs_osmesa
def test_append_continues_the_dataset_and_overwrite_replaces_it(tmp_path):
    import yaml

    from posecnn_core.synth.output import OutputError

    cfg = SceneConfig(width=64, height=48, min_objects=1, max_objects=2)
    objects = REPO / "config/objects/demo.yaml"
    a, whole = tmp_path / "a", tmp_path / "whole"
    first = generate_dataset(objects, a, 3, seed=5, config=cfg, test_fraction=0.34, progress=False)
    second = generate_dataset(objects, a, 2, seed=5, config=cfg, test_fraction=0.5, progress=False, mode="append")
    assert first.train == ["0000/000001", "0000/000002"] and first.test == ["0000/000003"]
    assert second.first_frame == 3 and second.train == ["0000/000004"] and second.test == ["0000/000005"]
    assert second.total_frames == 5
    assert (a / "image_sets/train.txt").read_text().split() == ["0000/000001", "0000/000002", "0000/000004"]
    assert (a / "image_sets/test.txt").read_text().split() == ["0000/000003", "0000/000005"]
    info = yaml.safe_load((a / "synth_info.yaml").read_text())
    assert info["frames"] == 5 and info["classes"] == (a / "image_sets/classes.txt").read_text().split()
    assert [(r["first_frame"], r["frames"], r["train"], r["test"], r["test_fraction"]) for r in info["runs"]] == \
        [(0, 3, 2, 1, 0.34), (3, 2, 1, 1, 0.5)]
    # frame i comes from frame_rng(seed, i): appended frames are those of one longer run with the same seed
    generate_dataset(objects, whole, 5, seed=5, config=cfg, progress=False)
    assert (a / "data/0000/000005-color.png").read_bytes() == (whole / "data/0000/000005-color.png").read_bytes()

    before = _snapshot(a)
    with pytest.raises(OutputError, match="is not empty"):
        generate_dataset(objects, a, 1, seed=1, config=cfg, progress=False)
    with pytest.raises(OutputError, match="cannot append 32x24 frames"):
        generate_dataset(objects, a, 1, config=SceneConfig(width=32, height=24), progress=False, mode="append")
    with pytest.raises(OutputError, match="frames_per_sequence 1000, this run 2"):
        generate_dataset(objects, a, 1, config=cfg, progress=False, mode="append", frames_per_sequence=2)
    orphan = a / "data/0000/000009-meta.mat"
    orphan.write_bytes(b"")
    with pytest.raises(OutputError, match="000009-meta.mat"):
        generate_dataset(objects, a, 1, config=cfg, progress=False, mode="append")
    orphan.unlink()
    assert _snapshot(a) == before

    (a / "keep.txt").write_text("mine")
    third = generate_dataset(objects, a, 2, seed=8, config=cfg, test_fraction=0.0, progress=False, mode="overwrite")
    assert third.first_frame == 0 and third.total_frames == 2
    assert sorted(p.name for p in (a / "data/0000").glob("*-meta.mat")) == ["000001-meta.mat", "000002-meta.mat"]
    assert (a / "image_sets/test.txt").read_text() == "" and (a / "keep.txt").read_text() == "mine"
    assert [r["seed"] for r in yaml.safe_load((a / "synth_info.yaml").read_text())["runs"]] == [8]


def test_old_flat_synth_info_reads_as_one_run(tmp_path):
    from posecnn_core.synth.output import frame_id, frame_index, read_info

    path = tmp_path / "synth_info.yaml"
    path.write_text("objects: /x/demo.yaml\nframes: 7\nseed: 3\nframes_per_sequence: 5\ntest_fraction: 0.1\n"
                    "scene: {width: 64, height: 48}\nnotes: []\n")
    info = read_info(path)
    assert info["frames_per_sequence"] == 5 and info["runs"][0]["first_frame"] == 0
    assert info["runs"][0]["seed"] == 3 and info["runs"][0]["scene"]["width"] == 64
    assert [frame_id(i, 5) for i in (0, 4, 5, 12)] == ["0000/000001", "0000/000005", "0001/000001", "0002/000003"]
    assert all(frame_index(frame_id(i, 5), 5) == i for i in range(30))
    with pytest.raises(ValueError):
        frame_index("0000/000006", 5)
