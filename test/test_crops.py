"""Object-centred crops for the rotation head: the view bank, the in-plane rotation's geometry, crop composition,
the crop stream in a training run, init_exclude and the rotation check on other frames."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).parent))
from _data_helpers import osmesa_available  # noqa: E402
from _train_helpers import BOX_SIZES, box_points, write_object_set, write_toy_dataset  # noqa: E402

from posecnn_core.geometry import ego_to_allo, mat_to_quat, quat_to_mat  # noqa: E402
from posecnn_core.synth.views import intrinsics  # noqa: E402
from posecnn_core.train.config import ConfigError, load_config  # noqa: E402
from posecnn_core.train.crops import (CropSettings, ViewBank, compose_crop, inplane_rotation,  # noqa: E402
                                      make_crop_batch)
from posecnn_core.train.trainer import Trainer, TrainingError  # noqa: E402


def _project(points: np.ndarray, R: np.ndarray, z: float, K: np.ndarray) -> np.ndarray:
    X = points @ R.T + [0.0, 0.0, z]
    uv = X @ K.T
    return uv[:, :2] / uv[:, 2:3]


def write_toy_bank(root: Path, views: int = 12, size: int = 64, seed: int = 0) -> Path:
    """A view bank of the toy boxes drawn as filled hulls (class colour) with a dark stripe along model x."""
    import cv2

    rng = np.random.default_rng(seed)
    names = list(BOX_SIZES)
    arr = np.zeros((views, size, size, 4), np.uint8)
    cls = np.zeros(views, np.int16)
    quat = np.zeros((views, 4), np.float32)
    z = np.full(views, 0.6, np.float32)
    focal = np.full(views, 300.0, np.float32)
    K = intrinsics(size, 300.0)
    for i in range(views):
        c = 1 + i % 2
        R = Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix()
        uv = _project(box_points(BOX_SIZES[names[c - 1]], 2), R, 0.6, K)
        hull = cv2.convexHull(np.round(uv).astype(np.int32))
        mask = np.zeros((size, size), np.uint8)
        cv2.fillConvexPoly(mask, hull, 255)
        arr[i, ..., :3][mask > 0] = (220, 40, 40) if c == 1 else (40, 200, 60)
        a, o = _project(np.array([[0.04, 0, 0], [0, 0, 0]]), R, 0.6, K)
        cv2.line(arr[i], tuple(int(v) for v in np.round(o)), tuple(int(v) for v in np.round(a)), (20, 20, 20, 255), 2)
        arr[i, ..., 3] = mask
        cls[i], quat[i] = c, mat_to_quat(R)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "views.npy", arr)
    np.savez(root / "views_meta.npz", done=views, size=size, seed=seed, classes=np.array(names), class_index=cls,
             quaternion=quat, z=z, focal=focal)
    return root


def test_inplane_rotation_is_the_camera_turning_about_its_axis():
    """Points drawn at their projections under R land, after turning the image by θ, at their projections under
    Rz(θ)·R (the camera turned about the optical axis), for both signs of θ."""
    size, f, z = 96, 250.0, 0.5
    K = intrinsics(size, f)
    pts = np.array([[0.03, 0.0, 0.0], [0.0, 0.05, 0.0], [-0.02, -0.01, 0.02], [0.01, 0.04, -0.03]])
    R = Rotation.from_euler("xyz", [20, -35, 60], degrees=True).as_matrix()
    img = np.zeros((size, size), np.float32)
    for u, v in np.round(_project(pts, R, z, K)).astype(int):
        img[v, u] = 1.0
    for theta in (0.5, -1.2, 2.8):
        turned, R2 = inplane_rotation(img, R, theta, ((size - 1) / 2, (size - 1) / 2))
        assert np.allclose(R2, Rotation.from_euler("z", theta).as_matrix() @ R)
        for (u, v) in _project(pts, R2, z, K):
            r0, c0 = int(np.floor(v)) - 1, int(np.floor(u)) - 1
            window = turned[r0:r0 + 4, c0:c0 + 4]
            ys, xs = np.mgrid[r0:r0 + 4, c0:c0 + 4]
            assert window.sum() > 0.5, (theta, u, v)
            cu, cv = (xs * window).sum() / window.sum(), (ys * window).sum() / window.sum()
            # the drawn dot was rounded to a pixel: its turned centroid lies within 0.75 px of the exact projection
            assert abs(cu - u) < 0.75 + 1e-6 and abs(cv - v) < 0.75 + 1e-6, (theta, cu, u, cv, v)


def test_view_bank_reads_grows_and_reports_problems(tmp_path):
    bank_dir = write_toy_bank(tmp_path / "bank", views=6)
    bank = ViewBank(bank_dir, ["plate", "brick"])
    assert len(bank) == 6 and bank.size == 64 and sorted(bank.by_class) == [1, 2]
    with np.load(bank_dir / "views_meta.npz") as m:
        meta = dict(m)
    meta["done"] = 4
    np.savez(bank_dir / "views_meta.npz", **meta)
    bank.refresh()
    assert len(bank) == 4 and bank.views.shape[0] == 4 and bank.views_total == 6
    with pytest.raises(ValueError, match=r"classes \['plate', 'brick'\].*\['can'\]"):
        ViewBank(bank_dir, ["can"])
    with pytest.raises(FileNotFoundError, match="no view bank in .*missing"):
        ViewBank(tmp_path / "missing")


def test_crops_have_exact_boxes_sizes_and_allocentric_targets(tmp_path):
    bank = ViewBank(write_toy_bank(tmp_path / "bank", views=10))
    settings = CropSettings(canvas=80, size_min=20, size_max=60, occlusion_prob=0.0)
    bg = np.full((80, 80, 3), 128, np.uint8)
    for seed in range(12):
        image, box, cls, q = compose_crop(bank, np.random.default_rng(seed), settings, bg)
        assert image.shape == (80, 80, 3) and image.dtype == np.uint8 and cls in (1, 2)
        x1, y1, x2, y2 = box
        assert 0 <= x1 < x2 <= 79 and 0 <= y1 < y2 <= 79
        # the box is the object's (pixels at least half covered): every pixel more than one pixel outside it is
        # the background
        outside = np.ones((80, 80), bool)
        outside[max(int(y1) - 1, 0):int(y2) + 2, max(int(x1) - 1, 0):int(x2) + 2] = False
        assert np.abs(image[outside].astype(int) - 128).max() <= 1
        assert 19 <= max(x2 - x1 + 1, y2 - y1 + 1) <= 62
        assert np.isclose(np.linalg.norm(q), 1.0, atol=1e-5) and q[0] >= 0
    # the target is the allocentric rotation of the turned view: re-derive it from the same random stream
    rng = np.random.default_rng(3)
    index = bank.pick(rng)
    rng.uniform()  # the size draw
    theta = rng.uniform(-np.pi, np.pi)
    R = Rotation.from_euler("z", theta).as_matrix() @ quat_to_mat(bank.quaternion[index])
    _, _, cls, q = compose_crop(bank, np.random.default_rng(3), settings, bg)
    expected = ego_to_allo(mat_to_quat(R), np.array([0.0, 0.0, bank.z[index]]))
    assert cls == bank.class_index[index]
    assert np.allclose(q, expected, atol=1e-5)


def test_crop_batches_are_deterministic_and_occluded_crops_keep_their_box(tmp_path):
    bank = ViewBank(write_toy_bank(tmp_path / "bank", views=10))
    settings = CropSettings(canvas=64, size_min=16, size_max=48, occlusion_prob=1.0)
    bgs = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(4)]
    a = make_crop_batch(bank, [np.random.default_rng([7, i]) for i in range(4)], settings, bgs)
    b = make_crop_batch(bank, [np.random.default_rng([7, i]) for i in range(4)], settings, bgs)
    c = make_crop_batch(bank, [np.random.default_rng([8, i]) for i in range(4)], settings, bgs)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.rois, b.rois) and np.array_equal(a.q_allo, b.q_allo)
    assert not np.array_equal(a.image, c.image)
    assert a.rois.shape == (4, 5) and np.array_equal(a.rois[:, 0], np.arange(4))
    assert (a.rois[:, 1:] >= 0).all() and (a.rois[:, 1:] <= 63).all()
    # jittered RoIs stay near their exact boxes (std 0.1 of the size)
    size = np.maximum(a.boxes[:, 2] - a.boxes[:, 0], a.boxes[:, 3] - a.boxes[:, 1]) + 1
    centre_shift = np.abs((a.rois[:, 1:3] + a.rois[:, 3:5]) / 2 - (a.boxes[:, :2] + a.boxes[:, 2:]) / 2).max(1)
    assert (centre_shift < 0.6 * size).all()


def test_low_resolution_crops_blur_but_keep_box_and_target(tmp_path):
    import dataclasses

    bank = ViewBank(write_toy_bank(tmp_path / "bank", views=10))
    sharp = CropSettings(canvas=80, size_min=50, size_max=60, occlusion_prob=0.0)
    blurred = dataclasses.replace(sharp, resolution_min=8.0)
    bg = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    detail = []
    for seed in range(6):
        a = compose_crop(bank, np.random.default_rng(seed), sharp, bg)
        b = compose_crop(bank, np.random.default_rng(seed), blurred, bg)
        assert np.array_equal(a[1], b[1]) and a[2] == b[2] and np.allclose(a[3], b[3])  # box, class, target
        detail.append([np.abs(np.diff(x[0].astype(float), axis=1)).mean() for x in (a, b)])
    detail = np.array(detail)
    assert (detail[:, 1] < detail[:, 0]).all() and detail[:, 1].mean() < 0.7 * detail[:, 0].mean()


def test_frame_crops_cut_annotated_objects_with_their_allocentric_targets(tmp_path):
    from posecnn_core.datasets.ycb import YCBVideoDataset
    from posecnn_core.targets import boxes_from_mask
    from posecnn_core.train.config import DataSource
    from posecnn_core.train.frame_crops import FrameCrops

    write_toy_dataset(tmp_path / "frames", frames=4, h=96, w=128)
    source = DataSource(root=str(tmp_path / "frames"), split="train")
    crops = FrameCrops([source], canvas=64, size_min=40, size_max=48, jitter=0.0, min_visible=20)
    assert len(crops) == 4
    frames = YCBVideoDataset(source.root, "train", load_depth=False)
    seen = set()
    for seed in range(12):
        image, box, cls, q = crops.sample(np.random.default_rng(seed))
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        # without jitter the object's box is centred and its long side is 40-48 pixels
        assert abs((box[0] + box[2]) / 2 - 31.5) < 0.01 and abs((box[1] + box[3]) / 2 - 31.5) < 0.01
        assert 39 - 1e-3 <= max(box[2] - box[0], box[3] - box[1]) + 1 <= 48 + 1e-3
        # the target is the allocentric rotation of one annotated object of that class
        matches = [(f, k) for f in range(4) for k in range(frames[f].num_objects)
                   if frames[f].cls_indexes[k] == cls
                   and np.allclose(np.abs(ego_to_allo(mat_to_quat(frames[f].poses[k, :, :3]), frames[f].poses[k, :, 3])
                                          @ q), 1.0, atol=1e-6)]
        assert len(matches) == 1
        f, k = matches[0]
        b = boxes_from_mask(frames[f].instance, frames[f].num_objects)[k]
        # the crop shows that object: its colour at the centre equals the frame's at the box centre
        centre = frames[f].color_bgr[int(round((b[1] + b[3]) / 2)), int(round((b[0] + b[2]) / 2))].astype(int)
        assert np.abs(image[31:33, 31:33].reshape(-1, 3).astype(int) - centre).min() <= 40
        seen.add(matches[0])
    assert len(seen) > 3
    first = crops.sample(np.random.default_rng(5))
    again = crops.sample(np.random.default_rng(5))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    # in a crop batch: frame_fraction 1 takes every crop from the frames, 0 none
    bank = ViewBank(write_toy_bank(tmp_path / "bank", views=6))
    settings = CropSettings(canvas=64, size_min=40, size_max=48, occlusion_prob=0.0)
    bgs = [np.zeros((64, 64, 3), np.uint8)] * 6
    targets = np.array([ego_to_allo(mat_to_quat(fr.poses[k, :, :3]), fr.poses[k, :, 3])
                        for fr in (frames[i] for i in range(4)) for k in range(fr.num_objects)])
    for fraction, from_frames in ((1.0, 6), (0.0, 0)):
        batch = make_crop_batch(bank, [np.random.default_rng([3, i]) for i in range(6)], settings, bgs,
                                frames=crops, frame_fraction=fraction)
        hits = sum(bool(np.isclose(np.abs(targets @ q), 1.0, atol=1e-5).any()) for q in batch.q_allo)
        assert hits == from_frames


def test_crop_settings_and_init_exclude_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="'crops.canvas' must be a multiple of 16"):
        load_config(None, ["crops.canvas=100"])
    with pytest.raises(ConfigError, match="crops.size_min"):
        load_config(None, ["crops.size_min=80", "crops.size_max=40"])
    with pytest.raises(ConfigError, match="'crops.occlusion_prob' must be a probability"):
        load_config(None, ["crops.occlusion_prob=1.5"])
    with pytest.raises(ConfigError, match="'crops.resolution_min' must be a number >= 0"):
        load_config(None, ["crops.resolution_min=-1"])
    with pytest.raises(ConfigError, match="'crops.frame_fraction' must be a probability"):
        load_config(None, ["crops.frame_fraction=2"])
    cfg = load_config(None, ["crops.frame_data=[{root: frames, split: train}]"])
    assert cfg.crops.frame_data[0].root == "frames"
    with pytest.raises(ConfigError, match="'rotation_targets' must be one of labelled, nearest_symmetric"):
        load_config(None, ["rotation_targets=closest"])
    with pytest.raises(ConfigError, match="unknown field.*'crops.bnak'"):
        load_config(None, ["crops.bnak=x"])
    with pytest.raises(ConfigError, match="'init_exclude' needs init_weights"):
        load_config(None, ["init_exclude=[fc10.]"])
    cfg = load_config(None, ["crops.bank=somewhere", "rotation_eval_data={root: heldout, split: test}"])
    assert cfg.crops.enabled and cfg.rotation_eval_data.root == "heldout"
    assert not load_config(None, []).crops.enabled


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    yaml_path = write_object_set(root)
    write_toy_dataset(root / "ds", frames=3, test_frames=2)
    write_toy_bank(root / "bank", views=8)
    return root, yaml_path


def _overrides(root: Path, yaml_path: Path, out: Path, *extra: str) -> list[str]:
    return [f"train_data=[{{root: {root / 'ds'}}}]", f"objects={yaml_path}", "vgg16_init=null",
            "trunk_width=0.125", "fc_dim=32", "device=cpu", "workers=0", "progress=false",
            f"output_dir={out}", "batch_size=1", "roi_source=gt", *extra]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_crop_stream_trains_the_rotation_head_and_resumes_exactly(toy, tmp_path):
    root, yaml_path = toy
    crops = [f"crops.bank={root / 'bank'}", "crops.batch_size=3", "crops.canvas=64", "crops.size_min=16",
             "crops.size_max=48", "crops.photo_dir=null"]
    a = Trainer(load_config(None, _overrides(root, yaml_path, tmp_path / "a", "max_iters=3",
                                             "checkpoint_interval=2", *crops)))
    batch = a.crop_stream.batch(5)
    assert batch.image.shape == (3, 64, 64, 3) and np.array_equal(batch.image, a.crop_stream.batch(5).image)
    a.train()
    rows_a = _rows(tmp_path / "a" / "train_iterations.csv")
    assert all(np.isfinite(float(r["crop_pose"])) and float(r["crop_pose"]) > 0 for r in rows_a)
    # the crop loss is part of the total
    for r in rows_a:
        parts = float(r["semantic"]) + 10 * float(r["vertex"]) + float(r["box_class"]) + float(r["box_reg"]) \
            + float(r["pose"]) + float(r["crop_pose"])
        assert float(r["loss"]) == pytest.approx(parts, rel=1e-4)
    b = Trainer(load_config(None, _overrides(root, yaml_path, tmp_path / "b", "max_iters=3", *crops,
                                             f"resume={tmp_path / 'a' / 'checkpoints' / 'iter_0000002.pt'}")))
    b.train()
    rows_b = _rows(tmp_path / "b" / "train_iterations.csv")
    assert float(rows_b[0]["crop_pose"]) == pytest.approx(float(rows_a[2]["crop_pose"]), rel=1e-4)
    # without a bank the column is empty (NaN) and nothing else changes
    c = Trainer(load_config(None, _overrides(root, yaml_path, tmp_path / "c", "max_iters=1")))
    assert c.crop_stream is None
    c.train()
    assert _rows(tmp_path / "c" / "train_iterations.csv")[0]["crop_pose"] == "nan"
    other = write_toy_bank(tmp_path / "other_bank", views=2)
    with np.load(other / "views_meta.npz") as m:
        meta = dict(m)
    np.savez(other / "views_meta.npz", **{**meta, "classes": np.array(["mug", "bowl"])})
    with pytest.raises(ValueError, match=r"view bank .*other_bank has classes \['mug', 'bowl'\]"):
        Trainer(load_config(None, _overrides(root, yaml_path, tmp_path / "d", "max_iters=1", *crops[1:],
                                             f"crops.bank={other}")))


def test_init_exclude_keeps_fresh_heads_and_loads_the_rest(toy, tmp_path):
    from posecnn_core.checkpoint import read_state_dict

    root, yaml_path = toy
    final = Trainer(load_config(None, _overrides(root, yaml_path, tmp_path / "a", "max_iters=1"))).train()[
        "final_checkpoint"]
    saved, _ = read_state_dict(final)
    t = Trainer(load_config(None, _overrides(root, yaml_path, tmp_path / "b", f"init_weights={final}",
                                             "fc_dim=48", "init_exclude=[classifier., fc8., fc9., fc10.]")))
    for k, v in t.net.state_dict().items():
        if k.startswith(("classifier.", "fc8.", "fc9.", "fc10.")):
            assert v.shape != saved[k].shape or not torch.equal(v, saved[k].to(v.dtype)), k
        else:
            assert torch.equal(v, saved[k].to(v.dtype)), k
    with pytest.raises(TrainingError, match=r"init_exclude: no weight of the model starts with \['fc11.'\]"):
        Trainer(load_config(None, _overrides(root, yaml_path, tmp_path / "c", f"init_weights={final}",
                                             "init_exclude=[fc11.]")))


def test_rotation_check_runs_on_the_frames_it_is_given(toy, tmp_path):
    root, yaml_path = toy
    t = Trainer(load_config(None, _overrides(root, yaml_path, tmp_path / "a", "max_iters=1",
                                             "rotation_eval_interval=1", "rotation_eval_frames=8",
                                             f"rotation_eval_data={{root: {root / 'ds'}, split: test}}")))
    frames = [f for b in t.rotation_probe.batches for f in b.frame_ids]
    assert len(frames) == 2  # the 2 test frames, not the 3 training frames
    t.train()
    rows = _rows(tmp_path / "a" / "train_rotation_eval.csv")
    assert [r["iteration"] for r in rows] == ["0", "1"] and int(rows[0]["instances"]) == 2


@pytest.mark.skipif(not osmesa_available(), reason="pyrender/OSMesa not installed")
def test_view_bank_renders_resumes_and_extends(tmp_path):
    from posecnn_core.synth.views import main as views_main

    objects = Path(__file__).parents[1] / "config" / "objects" / "demo.yaml"
    out = tmp_path / "bank"
    assert views_main(["--objects", str(objects), "--out", str(out), "--views", "3", "--size", "32"]) == 0
    first = np.load(out / "views.npy").copy()
    assert views_main(["--objects", str(objects), "--out", str(out), "--views", "5", "--size", "32"]) == 0
    bank = ViewBank(out)
    assert len(bank) == 5 and bank.views_total == 5
    assert np.array_equal(np.asarray(bank.views[:3]), first)  # view i depends on (seed, i) only
    for i in range(5):
        mask = bank.views[i, ..., 3] > 0
        assert 0.02 < mask.mean() < 0.9  # the object is in the picture, and not cut off
        ys, xs = np.nonzero(mask)
        assert abs(xs.mean() - 15.5) < 6 and abs(ys.mean() - 15.5) < 6  # centred on the optical axis
    assert np.allclose(np.linalg.norm(bank.quaternion, axis=1), 1.0, atol=1e-5)
    assert views_main(["--objects", str(objects), "--out", str(out), "--views", "5", "--size", "48"]) == 2


def test_crops_only_stage_trains_just_the_named_parts(toy, tmp_path):
    """``crops.only`` reads no frames; ``trainable`` leaves every other weight exactly as it was initialised."""
    from posecnn_core.checkpoint import read_state_dict

    root, yaml_path = toy
    init = Trainer(load_config(None, _overrides(root, yaml_path, tmp_path / "init", "max_iters=1"))).train()[
        "final_checkpoint"]
    start, _ = read_state_dict(init)
    crops = [f"crops.bank={root / 'bank'}", "crops.batch_size=4", "crops.canvas=64", "crops.size_min=16",
             "crops.size_max=48", "crops.photo_dir=null", "crops.only=true"]
    t = Trainer(load_config(None, _overrides(root, yaml_path, tmp_path / "a", f"init_weights={init}", "train_data=[]",
                                             "iters_per_epoch=3", "epochs=1", "optimizer=adam", "lr=0.01",
                                             "trainable=[conv5_3, classifier, fc10]", *crops)))
    assert t.dataset is None
    t.train()
    rows = _rows(tmp_path / "a" / "train_iterations.csv")
    assert len(rows) == 3 and all(float(r["semantic"]) == 0 and float(r["crop_pose"]) > 0 for r in rows)
    assert all(float(r["loss"]) == pytest.approx(float(r["crop_pose"])) for r in rows)
    trained = {k for k, v in t.net.state_dict().items() if not torch.equal(v, start[k].to(v.dtype))}
    assert trained and all(k.startswith(("features.28.", "classifier.", "fc10.")) for k in trained), trained
    assert any(k.startswith("features.28.") for k in trained) and any(k.startswith("fc10.") for k in trained)
    with pytest.raises(ConfigError, match=r"unknown network part\(s\) \['conv6_1'\]; known: conv1_1"):
        Trainer(load_config(None, _overrides(root, yaml_path, tmp_path / "b", "trainable=[conv6_1]")))
    with pytest.raises(ConfigError, match="'crops.only' needs iters_per_epoch"):
        load_config(None, [*crops, "iters_per_epoch=null"])
    with pytest.raises(ConfigError, match="'crops.only' needs crops.bank"):
        load_config(None, ["crops.only=true", "iters_per_epoch=5"])
    with pytest.raises(ConfigError, match="'trainable' must be a non-empty list"):
        load_config(None, ["trainable=[]"])
