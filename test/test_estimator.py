"""PoseEstimator end to end on CPU: random weights at 640x480 and an odd size, a controlled dense output whose
poses are known, and clear errors for bad inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from posecnn_core.camera import ReferenceCamera
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
    # the analytic "network" below gives metric depths for this frame's camera (fx = fy = 300)
    est = PoseEstimator(checkpoint, objects, device="cpu",
                        config=EstimatorConfig(score_threshold=0.0, reference_camera=ReferenceCamera(300.0, 300.0)))
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

    est = PoseEstimator(checkpoint, objects, device="cpu",
                        config=EstimatorConfig(score_threshold=0.0, reference_camera=ReferenceCamera(300.0, 300.0)))
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

    def rotation_head(conv4, conv5, rois, backend="auto"):
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


# ----------------------------------------------------------------------------------------------------------------
# PoseCNN-PyTorch's post-processing, with the voting output and the RoI heads replaced by known values


def _fixed_votes(rows: list[list[float]]):
    from posecnn_core.voting import VotingOutput

    rois = torch.tensor(rows, dtype=torch.float32)
    centers = torch.stack([(rois[:, 2] + rois[:, 4]) / 2, (rois[:, 3] + rois[:, 5]) / 2], 1)
    z = torch.full((len(rows), 1), 0.8)
    t = torch.cat([(centers[:, :1] - 160.0) / 300.0 * z, (centers[:, 1:] - 120.0) / 300.0 * z, z], 1)
    return VotingOutput(rois, centers, t)


# (b, cls, x1, y1, x2, y2, votes); class probabilities and box deltas the mocked box head gives each row
VOTED = [[0, 1, 10, 10, 50, 50, 30], [0, 1, 12, 12, 52, 52, 25], [0, 2, 100, 60, 140, 100, 40],
         [0, 3, 280, 200, 316, 235, 20], [0, 4, 200, 20, 230, 50, 15]]
PROBS = [0.9, 0.95, 0.8, 0.7, 0.05]
DELTAS = [[0, 0, 0, 0], [0, 0, 0, 0], [0.5, -0.5, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0, 0, 0, 0]]


def _mock_heads(est, monkeypatch, seen: list, delay: float = 0.0):
    import time as _time

    import posecnn_core.estimator as estimator_module

    C = est.net.num_classes
    monkeypatch.setattr(estimator_module, "hough_voting", lambda *a, **k: _fixed_votes(VOTED))

    def box_head(conv4, conv5, rois, backend="auto"):
        _time.sleep(delay)
        scores = torch.zeros(rois.shape[0], C)
        deltas = torch.zeros(rois.shape[0], 4 * C)
        for i, row in enumerate(VOTED):
            c = int(row[1])
            scores[i, c] = math.log(PROBS[i] / (1 - PROBS[i]) * (C - 1))  # softmax(scores)[c] = PROBS[i]
            deltas[i, 4 * c:4 * c + 4] = torch.tensor(DELTAS[i])
        return scores, deltas

    def rotation_head(conv4, conv5, rois, backend="auto"):
        seen.append(rois.clone())
        return torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(rois.shape[0], C)

    monkeypatch.setattr(est.net, "box_head", box_head)
    monkeypatch.setattr(est.net, "rotation_head", rotation_head)


def _decoded(i: int) -> list[float]:
    from posecnn_core.boxes import BoxCoder

    box = BoxCoder().decode(torch.tensor([VOTED[i][2:6]]), torch.tensor([DELTAS[i]]))[0]
    return [min(max(v, 0.0), hi) for v, hi in zip(box.tolist(), (319.0, 239.0, 319.0, 239.0))]


def test_pt_post_processing(checkpoint, objects, monkeypatch):
    est = PoseEstimator(checkpoint, objects, device="cpu")  # defaults: PT's demo preset
    assert est.config.score_threshold == 0.1 and est.config.nms_iou == 0.2
    seen: list = []
    _mock_heads(est, monkeypatch, seen)
    result = est.estimate(np.zeros((240, 320, 3), np.uint8), np.array([[300.0, 0, 160], [0, 300, 120], [0, 0, 1]]))
    # row 4 (0.05) fails the threshold; row 0 (0.9) loses NMS to row 1 (0.95) on the regressed boxes; by score
    assert [o.score for o in result.objects] == pytest.approx([0.95, 0.8, 0.7], abs=1e-5)
    assert [o.class_id for o in result.objects] == [1, 2, 3]
    for obj, i in zip(result.objects, (1, 2, 3)):
        assert obj.roi.tolist() == pytest.approx(_decoded(i), abs=1e-4)  # the regressed box, clipped
        assert obj.votes == VOTED[i][6]
    assert result.objects[2].roi[2] == 319.0  # pushed right by its deltas, clipped to the image
    # the rotation head pooled on the regressed boxes of the kept detections
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0][:, 1:].numpy(), [_decoded(i) for i in (1, 2, 3)], atol=1e-4)
    # PT's keyframe-evaluation preset: no score threshold (row 4 stays), NMS at 0.5 (rows 0/1: IoU 0.83)
    est.config = EstimatorConfig.preset("pt_ycb_eval")
    assert [o.score for o in est.estimate(np.zeros((240, 320, 3), np.uint8), K640).objects] == \
        pytest.approx([0.95, 0.8, 0.7, 0.05], abs=1e-5)
    est.config = EstimatorConfig.preset("pt_ycb_eval", nms_iou=0.9)
    assert len(est.estimate(np.zeros((240, 320, 3), np.uint8), K640).objects) == 5


def test_presets_and_config_validation():
    assert EstimatorConfig.preset("pt_demo") == EstimatorConfig()
    ev = EstimatorConfig.preset("pt_ycb_eval", max_instances=7)
    assert ev.score_threshold is None and ev.nms_iou == 0.5 and ev.max_instances == 7
    with pytest.raises(ValueError, match="preset"):
        EstimatorConfig.preset("fast")
    with pytest.raises(ValueError, match="depth_mode"):
        EstimatorConfig(depth_mode="stretch")
    with pytest.raises(ValueError, match="backend"):
        EstimatorConfig(backend="gpu")


def test_config_snapshot_per_frame(checkpoint, objects, monkeypatch):
    """Settings replaced while frames are in flight: every result follows exactly one settings value."""
    import threading

    est = PoseEstimator(checkpoint, objects, device="cpu")
    _mock_heads(est, monkeypatch, [], delay=0.01)
    a = EstimatorConfig(score_threshold=None, nms_iou=1.0)
    b = EstimatorConfig(score_threshold=0.85, nms_iou=0.2)
    expected = {id(a): [0.95, 0.9, 0.8, 0.7, 0.05], id(b): [0.95]}
    stop = threading.Event()

    def flip():
        k = 0
        while not stop.is_set():
            est.config = (a, b)[k % 2]
            k += 1

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        results = [est.estimate(np.zeros((48, 64, 3), np.uint8), K640) for _ in range(12)]
    finally:
        stop.set()
        flipper.join()
    assert {id(r.config) for r in results} == {id(a), id(b)}
    for r in results:
        assert sorted((o.score for o in r.objects), reverse=True) == pytest.approx(expected[id(r.config)], abs=1e-5)


def test_padding_is_pt_zero_before_normalising(checkpoint, objects):
    est = PoseEstimator(checkpoint, objects, device="cpu")
    x = est._network_input(np.full((20, 30, 3), 255, np.uint8), K640, None)
    assert x.shape == (1, 3, 32, 32)
    means = torch.tensor([102.98, 115.95, 122.77]) / 255.0
    assert torch.allclose(x[0, :, 25, 31], -means) and torch.allclose(x[0, :, 5, 5], 1.0 - means)


# ----------------------------------------------------------------------------------------------------------------
# focal-length-aware depth


def _analytic_dense(est, H: int, W: int, cu: float, cv: float, z: float, c: int, f_ref: float, f_cam: float):
    """A "perfect network" trained at focal length f_ref: for any input size it returns labels and directions of
    one object at the right place and the depth a network trained at f_ref would predict from its apparent size."""
    real_dense = est.net.dense
    C = est.net.num_classes
    radius_m = 0.4 * float(est.object_set.extents[c].max())

    def dense(x):
        _, _, conv4, conv5 = real_dense(x)
        hp, wp = x.shape[-2:]
        s = est._last_scale
        u0, v0 = (cu + 0.5) * s - 0.5, (cv + 0.5) * s - 0.5
        f_in = f_cam * s
        r = radius_m * f_in / z
        v, u = torch.meshgrid(torch.arange(hp, dtype=torch.float32), torch.arange(wp, dtype=torch.float32),
                              indexing="ij")
        inside = (u - u0) ** 2 + (v - v0) ** 2 < r ** 2
        scores = torch.zeros(1, C, hp, wp)
        scores[0, 0] = 1.0
        scores[0, c][inside] = 5.0
        d = torch.stack([u0 - u, v0 - v])
        d = d / d.norm(dim=0).clamp(min=1e-6)
        vertex = torch.zeros(1, 3 * C, hp, wp)
        vertex[0, 3 * c][inside], vertex[0, 3 * c + 1][inside] = d[0][inside], d[1][inside]
        vertex[0, 3 * c + 2][inside] = math.log(z * f_ref / f_in)
        return scores, vertex, conv4, conv5

    return dense


def _reference_checkpoint(tmp_path, objects, fx: float) -> Path:
    from posecnn_core.camera import ReferenceCamera

    torch.manual_seed(0)
    net = PoseCNN(objects.num_classes, fc_dim=32)
    path = tmp_path / "ref.pt"
    save_checkpoint(path, net, CheckpointMeta(num_classes=objects.num_classes, fc_dim=32,
                                              class_names=list(objects.class_names),
                                              reference_camera=ReferenceCamera(fx, fx, 320, 240)))
    return path


@pytest.mark.parametrize("mode", ["scale", "resample"])
def test_focal_length_aware_depth(tmp_path, objects, monkeypatch, mode):
    """The same image with the focal lengths x1.6 gives Tz x1.6 and the same X, Y (issue check)."""
    import posecnn_core.estimator as estimator_module

    H, W, c, z, f_ref = 240, 320, 2, 0.7, 400.0
    est = PoseEstimator(_reference_checkpoint(tmp_path, objects, f_ref), objects, device="cpu",
                        config=EstimatorConfig(score_threshold=None, depth_mode=mode))
    assert est.reference_camera()[1] == "checkpoint"
    real_geometry = estimator_module.input_geometry

    def spy(shape, K, f, cfg):
        geo = real_geometry(shape, K, f, cfg)
        est._last_scale = geo.scale
        return geo

    monkeypatch.setattr(estimator_module, "input_geometry", spy)
    poses = {}
    for scale in (1.0, 1.6):
        f_cam = 250.0 * scale
        K = np.array([[f_cam, 0, 150.0], [0, f_cam, 110.0], [0, 0, 1]])
        monkeypatch.setattr(est.net, "dense", _analytic_dense(est, H, W, 170.0, 130.0, z * scale, c, f_ref, f_cam))
        objs = [o for o in est.estimate(np.zeros((H, W, 3), np.uint8), K).objects if o.class_id == c]
        assert objs, f"no detection at f = {f_cam}"
        poses[scale] = objs[0]
        if mode == "resample":
            assert est._last_scale == pytest.approx(f_ref / f_cam, rel=0.01)
        assert abs(objs[0].center[0] - 170.0) <= 1.5 and abs(objs[0].center[1] - 130.0) <= 1.5
    assert poses[1.6].t[2] / poses[1.0].t[2] == pytest.approx(1.6, rel=0.03)
    assert poses[1.0].t[2] == pytest.approx(z, rel=0.03)
    np.testing.assert_allclose(poses[1.6].t[:2], poses[1.0].t[:2], atol=0.004)


def test_input_geometry_rules():
    from posecnn_core.estimator import input_geometry

    K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
    g = input_geometry((240, 320), K, 600.0, EstimatorConfig())
    assert g.scale == 1.0 and g.size == (240, 320) and g.depth_factor == pytest.approx(0.5)
    g = input_geometry((240, 320), K, 600.0, EstimatorConfig(depth_mode="resample"))
    assert g.size == (480, 640) and g.depth_factor == pytest.approx(1.0, rel=1e-3)
    assert g.K[0, 2] == pytest.approx(319.5)
    g = input_geometry((240, 320), K, 3000.0, EstimatorConfig(depth_mode="resample"))
    assert g.scale == pytest.approx(3.0) and g.depth_factor == pytest.approx(900.0 / 3000.0, rel=1e-3)
    g = input_geometry((3000, 4000), K, None, EstimatorConfig())
    assert g.size[0] * g.size[1] <= 1280 * 960 and g.depth_factor == 1.0
    assert g.K[0, 0] == pytest.approx(300.0 * g.size[1] / 4000)


def test_large_frame_is_downscaled_and_mapped_back(checkpoint, objects):
    est = PoseEstimator(checkpoint, objects, device="cpu", config=EstimatorConfig(max_input_pixels=64 * 48))
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    res = est.estimate(rgb, K640)
    assert res.label.shape == (480, 640)


def test_label_map_equals_argmax_with_ties():
    from posecnn_core.network import label_map

    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (2, 7, 33, 45), generator=g).float()  # many ties
    scores[0, :, 0, 0] = 0.0  # every class tied: class 0
    assert torch.equal(label_map(scores), scores.argmax(dim=1))
    assert torch.equal(label_map(scores[:, :, 1:30, 2:40]), scores[:, :, 1:30, 2:40].argmax(dim=1))
    assert int(label_map(scores)[0, 0, 0]) == 0
