"""Rotation at a canonical apparent size: crop geometry, crop pixels, and the estimator's option end to end."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from posecnn_core.checkpoint import CheckpointMeta, save_checkpoint
from posecnn_core.estimator import EstimatorConfig, PoseEstimator
from posecnn_core.geometry import allo_to_ego
from posecnn_core.network import PoseCNN
from posecnn_core.objects import load_object_set
from posecnn_core.rotation_crops import crop_rotations, crop_windows, cut_crops
from posecnn_core.voting import VotingParams

ROOT = Path(__file__).resolve().parents[1]


def test_crop_windows_centre_and_scale_the_box():
    maps, boxes = crop_windows(np.array([[10.0, 20.0, 49.0, 39.0]]), size=80, canvas=112)  # 40 x 20 pixels
    np.testing.assert_allclose(maps[0, :, :2], 2.0 * np.eye(2))
    # long side 40 -> 80 pixels (x2 - x1 = 78 between pixel centres), centred on the crop's centre 55.5
    np.testing.assert_allclose(boxes[0], [16.5, 36.5, 94.5, 74.5])
    centre = maps[0] @ np.array([29.5, 29.5, 1.0])
    np.testing.assert_allclose(centre, [55.5, 55.5])


def _pattern(h: int, w: int, at: tuple[int, int]) -> np.ndarray:
    img = np.full((h, w, 3), 40, np.uint8)
    x, y = at
    cv2.rectangle(img, (x, y), (x + 29, y + 19), (200, 30, 90), -1)
    cv2.circle(img, (x + 8, y + 6), 4, (10, 250, 10), -1)
    return img


def test_crops_do_not_depend_on_where_the_object_is():
    a, _ = cut_crops(_pattern(120, 160, (20, 30)), np.array([[20.0, 30.0, 49.0, 49.0]]), 60, 96)
    b, _ = cut_crops(_pattern(120, 160, (101, 77)), np.array([[101.0, 77.0, 130.0, 96.0]]), 60, 96)
    np.testing.assert_array_equal(a, b)
    # the box's own pixels sit in the middle: the rectangle's colour at the crop's centre
    np.testing.assert_array_equal(a[0, 48, 60], [200, 30, 90])


def test_shrinking_crops_average_instead_of_aliasing():
    stripes = np.zeros((400, 400, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: point sampling at scale 1/4 would give 0 or 255
    crops, _ = cut_crops(stripes, np.array([[0.0, 0.0, 399.0, 399.0]]), 100, 112)
    inner = crops[0, 20:90, 20:90].astype(float)
    assert abs(inner.mean() - 127.5) < 8 and inner.std() < 20


@pytest.fixture(scope="module")
def estimator_parts(tmp_path_factory):
    objects = load_object_set(ROOT / "config/objects/demo.yaml")
    torch.manual_seed(0)
    net = PoseCNN(objects.num_classes, fc_dim=32, trunk_width=0.125)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, net, CheckpointMeta(num_classes=objects.num_classes, fc_dim=32, trunk_width=0.125,
                                              class_names=list(objects.class_names)))
    return objects, path


def test_estimator_rotations_from_crops(estimator_parts):
    objects, path = estimator_parts
    cfg = EstimatorConfig(voting=VotingParams(label_threshold=0, vote_threshold=0, per_threshold=0.0),
                          score_threshold=0.0, max_instances=4)
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    K = np.array([[400.0, 0.0, 160.0], [0.0, 400.0, 120.0], [0.0, 0.0, 1.0]])
    plain = PoseEstimator(path, objects, device="cpu", config=cfg).estimate(rgb, K)
    est = PoseEstimator(path, objects, device="cpu", config=dataclasses.replace(cfg, rotation_crop_size=90))
    cropped = est.estimate(rgb, K)
    assert len(plain.objects) == len(cropped.objects) >= 1
    boxes = np.stack([o.roi for o in cropped.objects]).astype(np.float64)
    classes = np.array([o.class_id for o in cropped.objects])
    with torch.inference_mode():
        q = crop_rotations(est.net, rgb, boxes, classes, 90, 112)
    t = torch.as_tensor(np.stack([o.t for o in cropped.objects]))
    q_ego = np.asarray(allo_to_ego(q.double(), t))
    for o, p, want in zip(plain.objects, cropped.objects, q_ego):
        # detection, boxes and translations as without crops; the rotation is the crops'
        assert (o.class_id, o.score) == (p.class_id, p.score)
        np.testing.assert_allclose(o.t, p.t)
        assert abs(float(np.dot(p.quaternion, want))) == pytest.approx(1.0, abs=1e-5)
    assert any(abs(float(np.dot(o.quaternion, p.quaternion))) < 0.999
               for o, p in zip(plain.objects, cropped.objects))


def test_rotation_crop_settings_are_checked():
    with pytest.raises(ValueError, match="rotation_crop_canvas"):
        EstimatorConfig(rotation_crop_canvas=100)
    with pytest.raises(ValueError, match="rotation_crop_size"):
        EstimatorConfig(rotation_crop_size=200)
    with pytest.raises(ValueError, match="rotation_crop_size"):
        CheckpointMeta(num_classes=3, rotation_crop_size=2)


def test_auto_takes_the_crop_size_from_the_checkpoint(estimator_parts, tmp_path):
    from posecnn_core.checkpoint import read_state_dict
    from posecnn_core.inspect_checkpoint import describe_checkpoint, format_info

    objects, plain_path = estimator_parts
    net = PoseCNN(objects.num_classes, fc_dim=32, trunk_width=0.125)
    path = tmp_path / "crops.pt"
    save_checkpoint(path, net, CheckpointMeta(num_classes=objects.num_classes, fc_dim=32, trunk_width=0.125,
                                              class_names=list(objects.class_names), rotation_crop_size=90))
    assert read_state_dict(path)[1].rotation_crop_size == 90
    assert "rotations from per-detection crops at 90 px" in format_info(describe_checkpoint(path))
    est = PoseEstimator(path, objects, device="cpu")
    assert est.rotation_crop_size() == 90.0  # "auto", the default
    assert est.rotation_crop_size(EstimatorConfig(rotation_crop_size=None)) is None
    assert est.rotation_crop_size(EstimatorConfig(rotation_crop_size=64)) == 64.0
    assert PoseEstimator(plain_path, objects, device="cpu").rotation_crop_size() is None  # no size in its meta
