"""PoseEstimator end to end on CPU: random weights at 640x480 and an odd size, a controlled dense output whose
poses are known, and clear errors for bad inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from posecnn_core.checkpoint import CheckpointMeta, save_checkpoint
from posecnn_core.estimator import EstimatorConfig, InputError, ModelError, PoseEstimator
from posecnn_core.geometry import quat_to_mat
from posecnn_core.network import PoseCNN
from posecnn_core.objects import load_object_set
from posecnn_core.voting import VotingParams

ROOT = Path(__file__).resolve().parents[1]
DEMO_OBJECTS = ROOT / "config" / "objects" / "demo.yaml"
K640 = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def objects():
    return load_object_set(DEMO_OBJECTS)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, objects) -> Path:
    torch.manual_seed(0)
    net = PoseCNN(objects.num_classes, fc_dim=32)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, net, CheckpointMeta(num_classes=objects.num_classes, fc_dim=32,
                                              class_names=list(objects.class_names)))
    return path


def _permissive() -> EstimatorConfig:
    """Thresholds low enough that random weights still produce detections, so every stage runs."""
    return EstimatorConfig(voting=VotingParams(label_threshold=0, vote_threshold=0, per_threshold=0.0),
                           score_threshold=0.0, max_instances=5)


def _check_result(result, shape, class_names) -> None:
    assert result.label.shape == shape
    assert result.label.dtype == np.int32
    assert result.label.min() >= 0 and result.label.max() < len(class_names)
    assert list(result.timings_ms) == ["preprocess", "network", "voting", "rotation"]
    assert all(v >= 0 for v in result.timings_ms.values())
    seen: dict[int, int] = {}
    for obj in result.objects:
        assert obj.class_name == class_names[obj.class_id] and obj.class_id > 0
        assert obj.instance == seen.get(obj.class_id, 0)
        seen[obj.class_id] = obj.instance + 1
        assert 0.0 <= obj.score <= 1.0
        np.testing.assert_allclose(obj.R @ obj.R.T, np.eye(3), atol=1e-5)
        assert abs(np.linalg.det(obj.R) - 1.0) < 1e-5
        np.testing.assert_allclose(np.linalg.norm(obj.quaternion), 1.0, atol=1e-6)
        np.testing.assert_allclose(quat_to_mat(obj.quaternion), obj.R, atol=1e-5)
        assert obj.t[2] > 0 and math.isclose(obj.depth, obj.t[2], rel_tol=1e-6)
        assert np.all(np.isfinite(obj.roi)) and obj.roi[2] >= obj.roi[0] and obj.roi[3] >= obj.roi[1]


@pytest.mark.parametrize("size", [(480, 640), (251, 333)])
def test_random_weights_end_to_end(checkpoint, objects, size):
    est = PoseEstimator(checkpoint, objects, device="cpu", config=_permissive())
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    K = K640.copy()
    K[0, 2], K[1, 2] = size[1] / 2, size[0] / 2
    result = est.estimate(rgb, K)
    _check_result(result, size, objects.class_names)
    assert len(result.objects) >= 1, "permissive thresholds should let random weights through every stage"
    assert len(result.objects) <= 5


def test_known_dense_output_gives_known_translation(checkpoint, objects):
    """Replace the dense head by an analytic field of two instances; the estimator must return their poses."""
    est = PoseEstimator(checkpoint, objects, device="cpu", config=EstimatorConfig(score_threshold=0.0))
    H, W, C = 240, 320, objects.num_classes
    K = np.array([[300.0, 0, 160.0], [0, 300.0, 120.0], [0, 0, 1]])
    truth = {1: (100.0, 90.0, 0.6), 4: (220.0, 150.0, 0.8)}  # bottle, cereal: class -> (u, v, Tz)
    scores = torch.zeros(1, C, H, W)
    vertex = torch.zeros(1, 3 * C, H, W)
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    scores[0, 0] = 1.0
    radius = {}
    for c, (cu, cv, z) in truth.items():
        radius[c] = 0.4 * 300.0 * float(objects.extents[c].max()) / z  # inside the object's projected size
        inside = (u - cu) ** 2 + (v - cv) ** 2 < radius[c] ** 2
        scores[0, c][inside] = 5.0
        d = torch.stack([cu - u, cv - v])
        d = d / d.norm(dim=0).clamp(min=1e-6)
        vertex[0, 3 * c][inside] = d[0][inside]
        vertex[0, 3 * c + 1][inside] = d[1][inside]
        vertex[0, 3 * c + 2][inside] = math.log(z)
    real_dense = est.net.dense

    def dense(x):
        _, _, conv4, conv5 = real_dense(x)
        return scores, vertex, conv4, conv5

    est.net.dense = dense
    result = est.estimate(np.zeros((H, W, 3), np.uint8), K)
    found = {o.class_id: o for o in result.objects}
    assert set(found) == set(truth)
    for c, (cu, cv, z) in truth.items():
        obj = found[c]
        assert abs(obj.center[0] - cu) <= 2 and abs(obj.center[1] - cv) <= 2  # cone plateau: +-2 px
        expected_t = np.array([(cu - 160.0) / 300.0 * z, (cv - 120.0) / 300.0 * z, z])
        np.testing.assert_allclose(obj.t, expected_t, rtol=0.01, atol=2 * z / 300.0)
        assert obj.class_name == objects.class_names[c]
    for c in truth:
        assert (result.label == c).sum() > 0.9 * math.pi * radius[c] ** 2


@pytest.mark.parametrize("rgb, message", [
    (np.zeros((48, 64, 3), np.float32), "uint8"),
    (np.zeros((48, 64), np.uint8), "shape"),
    (np.zeros((48, 64, 4), np.uint8), "shape"),
    (np.zeros((0, 64, 3), np.uint8), "empty"),
    ([[0, 0, 0]], "numpy array"),
])
def test_bad_image_is_named(checkpoint, objects, rgb, message):
    est = PoseEstimator(checkpoint, objects, device="cpu")
    with pytest.raises(InputError, match=message):
        est.estimate(rgb, K640)


@pytest.mark.parametrize("K, message", [
    (np.zeros((3, 3)), "focal length"),
    (np.full((3, 3), np.nan), "NaN"),
    (np.eye(2), "3x3"),
])
def test_bad_intrinsics_are_named(checkpoint, objects, K, message):
    est = PoseEstimator(checkpoint, objects, device="cpu")
    with pytest.raises(InputError, match=message):
        est.estimate(np.zeros((48, 64, 3), np.uint8), K)


def test_class_count_mismatch(tmp_path, objects):
    net = PoseCNN(4, fc_dim=16)
    path = tmp_path / "four.pt"
    save_checkpoint(path, net, CheckpointMeta(num_classes=4, fc_dim=16))
    with pytest.raises(ModelError, match=r"4 classes .* has 7"):
        PoseEstimator(path, objects, device="cpu")


def test_class_name_mismatch(tmp_path, objects):
    names = list(objects.class_names)
    names[3] = "teapot"
    net = PoseCNN(len(names), fc_dim=16)
    path = tmp_path / "named.pt"
    save_checkpoint(path, net, CheckpointMeta(num_classes=len(names), fc_dim=16, class_names=names))
    with pytest.raises(ModelError, match="only in checkpoint: \\['teapot'\\]"):
        PoseEstimator(path, objects, device="cpu")


def test_unreadable_checkpoint(tmp_path, objects):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError, match="broken.pt"):
        PoseEstimator(path, objects, device="cpu")
    with pytest.raises(ModelError, match="missing.pt"):
        PoseEstimator(tmp_path / "missing.pt", objects, device="cpu")


def test_missing_model_file(tmp_path, checkpoint):
    yaml_path = tmp_path / "objs.yaml"
    yaml_path.write_text("name: broken\nmodels_root: models\nclasses:\n  - name: ghost\n    points: ghost/points.xyz\n")
    with pytest.raises(ModelError, match="ghost"):
        PoseEstimator(checkpoint, yaml_path, device="cpu")


def test_cuda_without_gpu_is_a_clear_error(checkpoint, objects):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelError, match="CUDA is not available"):
        PoseEstimator(checkpoint, objects, device="cuda")


def test_depth_refinement_corrects_a_wrong_voted_depth(checkpoint, objects):
    """Controlled heads give the right rotation and a centre 3 cm too far; the rendered depth pulls it back."""
    import trimesh

    from _depth_render import render_depth
    from posecnn_core.geometry import ego_to_allo, mat_to_quat

    est = PoseEstimator(checkpoint, objects, device="cpu", config=EstimatorConfig(score_threshold=0.0))
    H, W, C, c = 240, 320, objects.num_classes, 4  # cereal box
    K = np.array([[300.0, 0, 160.0], [0, 300.0, 120.0], [0, 0, 1]])
    cu, cv, z = 170.0, 110.0, 0.7
    t_true = np.array([(cu - 160.0) / 300.0 * z, (cv - 120.0) / 300.0 * z, z])
    R_true = np.asarray(quat_to_mat(np.array([0.9, 0.3, -0.2, 0.25])), dtype=np.float64)
    mesh = trimesh.load(objects.mesh_paths[c], force="mesh")
    depth = render_depth(mesh.vertices, mesh.faces, K, R_true, t_true, H, W).astype(np.float32)
    assert (depth > 0).sum() > 1000
    scores = torch.zeros(1, C, H, W)
    scores[0, 0] = 1.0
    scores[0, c][torch.from_numpy(depth > 0)] = 5.0
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    d = torch.stack([cu - u, cv - v])
    d = d / d.norm(dim=0).clamp(min=1e-6)
    vertex = torch.zeros(1, 3 * C, H, W)
    vertex[0, 3 * c], vertex[0, 3 * c + 1] = d[0], d[1]
    vertex[0, 3 * c + 2] = math.log(z + 0.03)
    q_allo = torch.as_tensor(ego_to_allo(mat_to_quat(R_true), t_true), dtype=torch.float32)
    real_dense = est.net.dense

    def dense(x):
        _, _, conv4, conv5 = real_dense(x)
        return scores, vertex, conv4, conv5

    def rotation_head(conv4, conv5, rois):
        out = torch.zeros(rois.shape[0], 4 * C)
        out[:, 4 * c:4 * c + 4] = q_allo
        return out

    est.net.dense, est.net.rotation_head = dense, rotation_head
    result = est.estimate(np.zeros((H, W, 3), np.uint8), K, depth)
    assert "refinement" in result.timings_ms
    obj = next(o for o in result.objects if o.class_id == c)
    assert abs(obj.t_initial[2] - (z + 0.03)) < 0.01          # voted depth: 3 cm too far
    assert obj.refined and obj.refine_status == "ok", obj.refine_status
    assert np.linalg.norm(obj.t - t_true) < 0.005              # refined: within 5 mm
    np.testing.assert_allclose(quat_to_mat(obj.quaternion), obj.R, atol=1e-5)
    without = est.estimate(np.zeros((H, W, 3), np.uint8), K)   # no depth: no refinement
    assert "refinement" not in without.timings_ms and not any(o.refined for o in without.objects)
