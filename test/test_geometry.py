"""Tests for posecnn_core.geometry."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from posecnn_core import geometry as g

S2 = math.sqrt(0.5)


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _random_quats(n: int, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _same_rotation(q1, q2, atol=1e-9) -> bool:
    return np.allclose(np.abs(np.sum(np.asarray(q1) * np.asarray(q2), axis=-1)), 1.0, atol=atol)


# ------------------------------------------------------------------ quaternions / matrices

def test_quat_to_mat_matches_scipy_and_normalises():
    q = _random_quats(50)
    R = g.quat_to_mat(3.0 * q)  # scaled quaternions are normalised
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    assert isinstance(R, np.ndarray) and R.shape == (50, 3, 3)
    np.testing.assert_allclose(R, ref, atol=1e-12)


def test_quat_mat_round_trip_random_batched_torch():
    q = torch.from_numpy(_random_quats(64, seed=1)).reshape(4, 16, 4)
    q2 = g.mat_to_quat(g.quat_to_mat(q))
    assert isinstance(q2, torch.Tensor) and q2.shape == (4, 16, 4)
    assert torch.all(q2[..., 0] >= 0)
    assert _same_rotation(q.numpy(), q2.numpy())
    R = Rotation.random(100, random_state=3).as_matrix()
    np.testing.assert_allclose(g.quat_to_mat(g.mat_to_quat(R)), R, atol=1e-12)


def test_mat_to_quat_near_180_degrees_is_accurate():
    axes = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -2, 3]], dtype=np.float64)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    for angle in (math.pi, math.pi - 1e-7, 1e-8):
        R = Rotation.from_rotvec(axes * angle).as_matrix()
        q = g.mat_to_quat(R)
        np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)
        np.testing.assert_allclose(g.quat_to_mat(q), R, atol=1e-12)
    # float32 keeps its dtype
    q32 = g.mat_to_quat(R.astype(np.float32))
    assert q32.dtype == np.float32


def test_quat_multiply_composes_rotations():
    a, b = _random_quats(10, 4), _random_quats(10, 5)
    ab = g.quat_multiply(a, b)
    np.testing.assert_allclose(g.quat_to_mat(ab), g.quat_to_mat(a) @ g.quat_to_mat(b), atol=1e-12)
    ident = g.quat_multiply(a, g.quat_conjugate(a))
    np.testing.assert_allclose(ident, np.tile([1.0, 0, 0, 0], (10, 1)), atol=1e-12)


def test_rotation_angle_deg():
    R1 = Rotation.random(20, random_state=7).as_matrix()
    for deg in (0.0, 1e-4, 5.0, 90.0, 179.9, 180.0):
        R2 = R1 @ _rz(math.radians(deg))
        np.testing.assert_allclose(g.rotation_angle_deg(R1, R2), deg, atol=1e-7)
    ang = g.rotation_angle_deg(torch.eye(3), torch.from_numpy(_rx(math.radians(30.0))))
    assert isinstance(ang, torch.Tensor) and abs(float(ang) - 30.0) < 1e-4


# ------------------------------------------------------------------ allocentric / egocentric

TRANSLATIONS = [(0.1, -0.05, 0.8), (-0.3, 0.2, 1.5), (0.5, 0.4, 0.6), (0.0, 0.0, 1.0), (0.0, 0.3, 0.9),
                (1e-6, -1e-6, 2.0)]


@pytest.mark.parametrize("convention", ["pt", "ray"])
@pytest.mark.parametrize("t", TRANSLATIONS)
def test_allo_ego_round_trip(t, convention):
    q = _random_quats(8, seed=11)
    q[:, 0] = np.abs(q[:, 0])
    T = np.tile(np.array(t), (8, 1))
    ego = g.allo_to_ego(q, T, convention=convention)
    back = g.ego_to_allo(ego, T, convention=convention)
    np.testing.assert_allclose(back, q, atol=1e-12)  # exact because both are sign-fixed to w >= 0
    allo = g.ego_to_allo(q, T, convention=convention)
    assert np.all(allo[:, 0] >= 0)
    assert _same_rotation(g.allo_to_ego(allo, T, convention=convention), q)


def test_pt_convention_equals_euler_composition():
    """R_ego = Ry(-atan2(tx, -tz)) · Rx(-atan2(ty, -tz)) · R_allo (PoseCNN-PyTorch, static x-y-z euler)."""
    rng = np.random.default_rng(2)
    q = _random_quats(30, seed=12)
    T = np.column_stack([rng.uniform(-0.5, 0.5, 30), rng.uniform(-0.5, 0.5, 30), rng.uniform(0.3, 2.0, 30)])
    ego = g.quat_to_mat(g.allo_to_ego(q, T))
    for i in range(30):
        Rc = _ry(-math.atan2(T[i, 0], -T[i, 2])) @ _rx(-math.atan2(T[i, 1], -T[i, 2]))
        np.testing.assert_allclose(ego[i], Rc @ g.quat_to_mat(q[i]), atol=1e-12)


def test_pt_convention_hand_case_off_axis():
    # T = (1, 0, 1): dx = atan2(1, -1) = 3π/4, dy = atan2(0, -1) = π -> R_c = Ry(-3π/4)·Rx(-π).
    expected = np.array([[-S2, 0, S2], [0, -1, 0], [S2, 0, S2]])
    R = g.quat_to_mat(g.allo_to_ego(np.array([1.0, 0, 0, 0]), np.array([1.0, 0, 1.0])))
    np.testing.assert_allclose(R, expected, atol=1e-12)
    # the optical axis is turned toward T; an allocentric rotation A composes on the right
    np.testing.assert_allclose(expected @ [0, 0, 1], [S2, 0, S2], atol=1e-12)
    A = _rx(0.3) @ _rz(-1.1)
    ego = g.allo_to_ego(g.mat_to_quat(A), np.array([1.0, 0, 1.0]))
    np.testing.assert_allclose(g.quat_to_mat(ego), expected @ A, atol=1e-12)
    allo = g.ego_to_allo(g.mat_to_quat(expected @ A), np.array([1.0, 0, 1.0]))
    np.testing.assert_allclose(g.quat_to_mat(allo), A, atol=1e-12)


def test_pt_convention_on_optical_axis_is_180_about_z():
    # atan2(0, -tz) = π, so PT's R_c on the optical axis is Ry(π)·Rx(π) = Rz(π).
    A = Rotation.random(5, random_state=9).as_matrix()
    ego = g.quat_to_mat(g.allo_to_ego(g.mat_to_quat(A), np.array([[0.0, 0.0, 0.7]] * 5)))
    np.testing.assert_allclose(ego, _rz(math.pi) @ A, atol=1e-12)


def test_ray_convention_identity_on_axis_and_hand_case():
    q = _random_quats(6, seed=13)
    q[:, 0] = np.abs(q[:, 0])
    on_axis = np.array([[0.0, 0.0, z] for z in (0.2, 0.5, 1.0, 2.0, 3.0, 9.0)])
    np.testing.assert_allclose(g.allo_to_ego(q, on_axis, convention="ray"), q, atol=1e-12)
    np.testing.assert_allclose(g.ego_to_allo(q, on_axis, convention="ray"), q, atol=1e-12)
    # T = (1, 0, 1): rotation by +45° about y
    R = g.quat_to_mat(g.allo_to_ego(np.array([1.0, 0, 0, 0]), np.array([1.0, 0, 1.0]), convention="ray"))
    np.testing.assert_allclose(R, _ry(math.pi / 4), atol=1e-12)
    # the optical axis always ends up along T, and T pointing backwards is still a proper rotation
    T = np.array([[0.3, -0.4, 1.2], [-1.0, 2.0, 0.5], [0.0, 0.0, -1.0]])
    Rc = g.quat_to_mat(g.allo_to_ego(np.tile([1.0, 0, 0, 0], (3, 1)), T, convention="ray"))
    np.testing.assert_allclose(Rc[:, :, 2], T / np.linalg.norm(T, axis=1, keepdims=True), atol=1e-12)


def test_allo_to_ego_gradients_and_bad_convention():
    q = torch.tensor([[0.9, 0.1, -0.2, 0.3]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0.1, 0.2, 1.0]], dtype=torch.float64)
    g.allo_to_ego(q, t).sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="convention"):
        g.allo_to_ego(q, t, convention="euler")


# ------------------------------------------------------------------ points and cameras

K = np.array([[100.0, 0.0, 50.0], [0.0, 200.0, 60.0], [0.0, 0.0, 1.0]])


def test_project_points_hand_case_and_batched_K():
    pts = np.array([[0.1, -0.2, 2.0], [0.0, 0.0, 1.0], [-0.5, 0.25, 0.5]])
    uv = g.project_points(pts, K)
    np.testing.assert_allclose(uv, [[55.0, 40.0], [50.0, 60.0], [-50.0, 160.0]])
    K2 = np.stack([K, K * np.array([[2.0], [2.0], [1.0]])])  # second camera: doubled focal lengths and centre
    uvb = g.project_points(torch.from_numpy(np.stack([pts, pts])), torch.from_numpy(K2))
    np.testing.assert_allclose(uvb[0].numpy(), uv)
    np.testing.assert_allclose(uvb[1].numpy(), 2 * uv)


def test_transform_points_and_backproject_round_trip():
    R = _rz(math.pi / 2)
    out = g.transform_points(np.array([[1.0, 0.0, 0.0]]), R, np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(out, [[0.0, 1.0, 1.0]], atol=1e-12)

    depth = np.full((4, 5), 2.0)
    depth[1, 2] = 0.0
    pts = g.backproject(depth, K)
    assert pts.shape == (4, 5, 3)
    # pixel (row 3, col 1): u = 1, v = 3 -> X = (1 - 50)/100·2, Y = (3 - 60)/200·2
    np.testing.assert_allclose(pts[3, 1], [-0.98, -0.57, 2.0])
    np.testing.assert_allclose(pts[1, 2], [0.0, 0.0, 0.0])
    uv = g.project_points(pts.reshape(-1, 3)[depth.reshape(-1) > 0], K)
    rows, cols = np.nonzero(depth > 0)
    np.testing.assert_allclose(uv, np.column_stack([cols, rows]), atol=1e-9)
    # batched torch depth with one K per image
    d = torch.full((2, 3, 4), 1.5)
    pb = g.backproject(d, torch.from_numpy(np.stack([K, K])).float())
    assert pb.shape == (2, 3, 4, 3) and pb.dtype == torch.float32


def test_backproject_pixels_inverts_project_points_with_skew():
    Ks = K.copy()
    Ks[0, 1] = 3.0
    pts = np.array([[0.1, -0.2, 2.0], [0.0, 0.0, 1.0], [-0.5, 0.25, 0.5]])
    uv = g.project_points(pts, Ks)
    # u = (fx·X + s·Y)/Z + px by hand for the first point
    assert uv[0, 0] == pytest.approx((100.0 * 0.1 + 3.0 * -0.2) / 2.0 + 50.0)
    back = g.backproject_pixels(uv[:, 0], uv[:, 1], pts[:, 2], Ks)
    np.testing.assert_allclose(back, pts, atol=1e-12)
    # integer pixel indices (torch), one K per batch element; pixel (row 3, col 1) as in backproject
    cols, rows = torch.tensor([[1, 4]]), torch.tensor([[3, 0]])
    pb = g.backproject_pixels(cols, rows, torch.tensor([[2.0, 1.0]], dtype=torch.float64), torch.from_numpy(K[None]))
    np.testing.assert_allclose(pb[0, 0].numpy(), [-0.98, -0.57, 2.0])
    np.testing.assert_allclose(pb[0].numpy(), g.backproject(np.full((4, 5), 2.0), K)[[3, 0], [1, 4]] * [[1], [0.5]])


def test_box_extents():
    pts = np.array([[0.01, -0.05, 0.02], [-0.03, 0.04, -0.07]], dtype=np.float32)
    ext = g.box_extents(pts)
    assert ext.dtype == np.float32
    np.testing.assert_allclose(ext, [0.06, 0.10, 0.14], rtol=1e-6)
    np.testing.assert_array_equal(g.box_extents(np.zeros((0, 3))), np.zeros(3))


def test_bad_input_names_argument():
    with pytest.raises(ValueError, match="q must have shape"):
        g.quat_to_mat(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="R must have shape"):
        g.mat_to_quat(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="t must have shape"):
        g.allo_to_ego(np.array([1.0, 0, 0, 0]), np.zeros(2))
    with pytest.raises(ValueError, match="K must have shape"):
        g.project_points(np.zeros((4, 3)), np.eye(4))
    with pytest.raises(TypeError, match="points"):
        g.box_extents("not an array")
