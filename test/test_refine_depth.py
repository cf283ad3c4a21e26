"""Depth refinement (posecnn_core.refine) on rendered synthetic depth frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from _refine_helpers import (K_SMALL, add_outliers, add_s, box_mesh, cylinder_mesh, frame, l_block_mesh,
                             look_pose, model_points, perturb, rotation_error_deg)
from posecnn_core.refine import RefineOptions, RefineResult, refine_pose, refine_poses
from posecnn_core.refine.so3 import _so3_samples

FAST = dict(max_points=600)


@pytest.fixture(scope="module")
def box_scene():
    mesh = box_mesh()
    R, t = look_pose([0.03, -0.02, 0.8])
    depth, masks = frame([(mesh, R, t)], noise_m=0.001, seed=3)
    return dict(depth=depth, mask=masks[0], R=R, t=t, points=model_points(mesh, 1500))


@pytest.fixture(scope="module")
def can_scene():
    mesh = cylinder_mesh()
    R, t = look_pose([-0.02, 0.03, 0.7], (60.0, 20.0, 0.0))
    depth, masks = frame([(mesh, R, t)], noise_m=0.001, seed=4)
    return dict(depth=depth, mask=masks[0], R=R, t=t, points=model_points(mesh, 1500))


@pytest.fixture(scope="module")
def l_scene():
    mesh = l_block_mesh()
    R, t = look_pose([0.02, 0.01, 0.75], (35.0, -25.0, 15.0))
    depth, masks = frame([(mesh, R, t)], noise_m=0.001, seed=6)
    return dict(depth=depth, mask=masks[0], R=R, t=t, points=model_points(mesh, 2000))


def _errors(res: RefineResult, R, t) -> tuple[float, float]:
    return float(np.linalg.norm(np.asarray(res.t) - t)), rotation_error_deg(res.R, R)


@pytest.mark.parametrize("seed", [0, 3])
def test_recovers_perturbed_pose(box_scene, seed):
    s = box_scene
    R1, t1 = perturb(s["R"], s["t"], 0.05, 10.0, seed)
    res = refine_pose(s["depth"], K_SMALL, s["mask"], R1, t1, s["points"], **FAST)
    assert res.success, res.reason
    assert res.reason == ""
    dt, dr = _errors(res, s["R"], s["t"])
    assert dt < 0.005 and dr < 2.0, (dt, dr)
    assert res.inlier_fraction > 0.9
    assert 0 < res.iterations <= RefineOptions().max_iterations
    assert res.time_ms > 0
    assert isinstance(res.R, np.ndarray) and res.R.shape == (3, 3) and res.t.shape == (3,)


@pytest.mark.parametrize("method,robust", [("point_to_point", "huber"), ("point_to_plane", "trimmed")])
def test_other_residuals_and_weights(box_scene, method, robust):
    s = box_scene
    R1, t1 = perturb(s["R"], s["t"], 0.05, 10.0, 1)
    # Local refinement only: the box's shape is symmetric under 180-degree turns, so the rotation search may
    # rightly prefer a turned copy that fits the depth better than point-to-point's coarser local optimum.
    res = refine_pose(s["depth"], K_SMALL, s["mask"], R1, t1, s["points"], method=method, robust=robust,
                      rotation_search=0, **FAST)
    assert res.success, res.reason
    dt, dr = _errors(res, s["R"], s["t"])
    # Point-to-point snaps to the discrete model points: it is only as accurate as their spacing (~7 mm).
    assert dt < (0.01 if method == "point_to_point" else 0.005) and dr < 2.0, (dt, dr)


@pytest.mark.parametrize("seed", [1, 2])
def test_recovers_with_30_percent_outliers(box_scene, seed):
    s = box_scene
    depth = add_outliers(s["depth"], s["mask"], 0.3, seed=seed)
    R1, t1 = perturb(s["R"], s["t"], 0.05, 10.0, seed)
    res = refine_pose(depth, K_SMALL, s["mask"], R1, t1, s["points"], **FAST)
    assert res.success, res.reason
    dt, dr = _errors(res, s["R"], s["t"])
    assert dt < 0.005 and dr < 2.0, (dt, dr)
    assert 0.6 < res.inlier_fraction < 0.75  # the outliers are not inliers


def test_declines_without_valid_depth(box_scene):
    s = box_scene
    R1, t1 = perturb(s["R"], s["t"], 0.05, 10.0, 0)
    res = refine_pose(np.zeros_like(s["depth"]), K_SMALL, s["mask"], R1, t1, s["points"])
    assert not res.success
    assert res.reason == "too few depth pixels in mask: 0 < 50"
    np.testing.assert_array_equal(res.R, R1)
    np.testing.assert_array_equal(res.t, t1)
    assert np.isnan(res.inlier_fraction) and res.iterations == 0


def test_declines_with_few_depth_pixels(box_scene):
    s = box_scene
    mask = np.zeros_like(s["mask"])
    rows, cols = np.nonzero(s["mask"])
    mask[rows[:12], cols[:12]] = True
    res = refine_pose(s["depth"], K_SMALL, mask, s["R"], s["t"], s["points"])
    assert not res.success and res.reason == "too few depth pixels in mask: 12 < 50"
    res = refine_pose(s["depth"], K_SMALL, mask, s["R"], s["t"], s["points"], min_pixels=10, **FAST)
    assert "too few depth pixels" not in res.reason


def test_declines_when_not_converged(box_scene):
    s = box_scene
    R1, t1 = perturb(s["R"], s["t"], 0.05, 10.0, 0)
    res = refine_pose(s["depth"], K_SMALL, s["mask"], R1, t1, s["points"], max_iterations=2, **FAST)
    assert not res.success
    assert res.reason == "did not converge in 2 iterations"
    np.testing.assert_array_equal(res.R, R1)
    np.testing.assert_array_equal(res.t, t1)


def test_symmetric_object_stays_within_adds_tolerance(can_scene):
    s = can_scene
    axis = np.array([0.0, 0.0, 1.0])  # the cylinder's symmetry axis
    for seed in (0, 3):
        R1, t1 = perturb(s["R"], s["t"], 0.05, 10.0, seed)
        R1 = Rotation.from_rotvec(np.deg2rad(70.0) * (R1 @ axis)).as_matrix() @ R1  # spin about the axis
        res = refine_pose(s["depth"], K_SMALL, s["mask"], R1, t1, s["points"], symmetric=True, **FAST)
        assert res.success, res.reason
        diameter = 2 * 0.034
        assert add_s(s["points"], res.R, res.t, s["R"], s["t"]) < 0.1 * diameter
        assert add_s(s["points"], res.R, res.t, s["R"], s["t"]) < 0.2 * add_s(s["points"], R1, t1, s["R"], s["t"])
        # Not pulled around the symmetry: the rotation moved no further than the cap.
        assert rotation_error_deg(res.R, R1) <= RefineOptions().symmetric_max_rotation_deg + 0.1
        # The axis itself is recovered.
        assert np.degrees(np.arccos(np.clip((res.R @ axis) @ (s["R"] @ axis), -1, 1))) < 2.0


def test_batched_instances_and_torch_inputs():
    box, can = box_mesh(), cylinder_mesh()
    Rb, tb = look_pose([0.07, 0.0, 0.85])
    Rc, tc = look_pose([-0.09, 0.02, 0.75], (60.0, 20.0, 0.0))
    depth, masks = frame([(box, Rb, tb), (can, Rc, tc)], noise_m=0.001, seed=5)
    pts = [model_points(box, 1500), model_points(can, 1200)]
    Rb1, tb1 = perturb(Rb, tb, 0.04, 8.0, 6)
    Rc1, tc1 = perturb(Rc, tc, 0.04, 8.0, 7)
    f32 = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
    results = refine_poses(f32(depth), f32(K_SMALL), [torch.as_tensor(m) for m in masks], [f32(Rb1), f32(Rc1)],
                           [f32(tb1), f32(tc1)], [f32(p) for p in pts], symmetric=[False, True], **FAST)
    assert len(results) == 2 and all(r.success for r in results), [r.reason for r in results]
    for r in results:
        assert isinstance(r.R, torch.Tensor) and r.R.dtype == torch.float32 and r.t.shape == (3,)
    dt, dr = _errors(RefineResult(results[0].R.numpy(), results[0].t.numpy(), True, 0, "", 0, 0), Rb, tb)
    assert dt < 0.005 and dr < 2.0, (dt, dr)
    assert add_s(pts[1], results[1].R.numpy(), results[1].t.numpy(), Rc, tc) < 0.0068
    # One instance at a time gives the same poses as the batch.
    single = refine_pose(depth, K_SMALL, masks[0], Rb1, tb1, pts[0], **FAST)
    np.testing.assert_allclose(single.t, results[0].t.numpy(), atol=5e-4)


def test_so3_samples_cover_rotations():
    G = _so3_samples(72, torch.device("cpu"), torch.float64)
    assert G.shape == (72, 3, 3)
    np.testing.assert_allclose(G @ G.transpose(1, 2), np.broadcast_to(np.eye(3), (72, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(torch.linalg.det(G), 1.0, atol=1e-12)
    # Every rotation is within 60 degrees of a sample (measured covering radius of 72 samples: ~54 degrees).
    test = Rotation.random(2000, random_state=0).as_matrix()
    cos = (np.einsum("aij,bij->ab", test, G.numpy()) - 1) / 2
    nearest = np.degrees(np.arccos(np.clip(cos.max(1), -1, 1)))
    assert nearest.max() < 60.0 and nearest.mean() < 35.0
    # ... and no two samples coincide.
    pair = (np.einsum("aij,bij->ab", G.numpy(), G.numpy()) - 1) / 2
    np.fill_diagonal(pair, -1)
    assert np.degrees(np.arccos(np.clip(pair.max(), -1, 1))) > 15.0


@pytest.mark.parametrize("axis,angle", [((1.0, 0.0, 0.0), 120.0), ((0.3, 1.0, -0.5), 170.0)])
def test_rotation_search_recovers_a_far_off_rotation(l_scene, axis, angle):
    s = l_scene
    R1, t1 = perturb(s["R"], s["t"], 0.03, angle, 0, axis=axis)
    assert rotation_error_deg(R1, s["R"]) > 100.0
    local = refine_pose(s["depth"], K_SMALL, s["mask"], R1, t1, s["points"], rotation_search=0, **FAST)
    # Local ICP cannot get there: it declines or stops far from the true rotation.
    assert not local.success or rotation_error_deg(local.R, s["R"]) > 20.0
    res = refine_pose(s["depth"], K_SMALL, s["mask"], R1, t1, s["points"], rotation_search=72, **FAST)
    assert res.success, res.reason
    dt, dr = _errors(res, s["R"], s["t"])
    assert dt < 0.005 and dr < 2.0, (dt, dr)
    assert res.inlier_fraction > 0.9


def test_rotation_search_keeps_a_good_rotation(l_scene):
    s = l_scene
    R1, t1 = perturb(s["R"], s["t"], 0.04, 8.0, 2)
    for n in (0, 72):
        res = refine_pose(s["depth"], K_SMALL, s["mask"], R1, t1, s["points"], rotation_search=n, **FAST)
        assert res.success, res.reason
        dt, dr = _errors(res, s["R"], s["t"])
        assert dt < 0.005 and dr < 2.0, (n, dt, dr)


def test_options_and_argument_errors(box_scene):
    s = box_scene
    args = (s["depth"], K_SMALL, s["mask"], s["R"], s["t"], s["points"])
    with pytest.raises(TypeError, match="unknown refinement option"):
        refine_pose(*args, iterations=3)
    with pytest.raises(ValueError, match="method"):
        RefineOptions(method="plane")
    with pytest.raises(ValueError, match="trim_fraction"):
        RefineOptions(trim_fraction=0.0)
    with pytest.raises(ValueError, match="rotation_search"):
        RefineOptions(rotation_search=-1)
    with pytest.raises(ValueError, match="search_margin"):
        RefineOptions(search_margin=2.0)
    with pytest.raises(ValueError, match="search_keep"):
        RefineOptions(search_keep=0)
    with pytest.raises(ValueError, match="depth"):
        refine_pose(s["depth"][None], *args[1:])
    with pytest.raises(ValueError, match="K"):
        refine_pose(s["depth"], np.eye(4), *args[2:])
    with pytest.raises(ValueError, match=r"masks\[0\]"):
        refine_pose(s["depth"], K_SMALL, s["mask"][:10], *args[3:])
    with pytest.raises(ValueError, match=r"Rs\[0\]"):
        refine_pose(*args[:3], 2 * np.eye(3), *args[4:])
    with pytest.raises(ValueError, match=r"points\[0\]"):
        refine_pose(*args[:5], np.zeros((10, 2)))
    with pytest.raises(ValueError, match="ts has 0 entries"):
        refine_poses(s["depth"], K_SMALL, [s["mask"]], [s["R"]], [], [s["points"]])
    assert refine_poses(s["depth"], K_SMALL, [], [], [], []) == []
    res = refine_pose(*args[:4], np.array([0.0, 0.0, -1.0]), args[5])
    assert not res.success and "not in front of the camera" in res.reason
