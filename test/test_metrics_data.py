"""Tests for posecnn_core.metrics against hand-computed cases."""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from posecnn_core.metrics import (accuracy_curve, add, adds, rotation_error_deg, symmetric_rotation_error_deg,
                                  vocap_auc)


def _cube_points() -> np.ndarray:
    g = np.linspace(-0.05, 0.05, 5)
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)


def _cylinder_points(n_theta: int = 72, radius: float = 0.03, height: float = 0.1) -> np.ndarray:
    theta = np.arange(n_theta) * 2 * np.pi / n_theta
    zs = np.linspace(-height / 2, height / 2, 5)
    pts = [np.stack([radius * np.cos(theta), radius * np.sin(theta), np.full_like(theta, z)], 1) for z in zs]
    return np.concatenate(pts)


def test_translation_offset_gives_add_equal_offset():
    pts = _cube_points()
    R = Rotation.from_euler("xyz", [0.3, -0.2, 1.0]).as_matrix()
    t = np.array([0.1, -0.05, 0.8])
    offset = np.array([0.003, 0.004, 0.0])  # |offset| = 0.005
    assert add(pts, R, t + offset, R, t) == pytest.approx(0.005, abs=1e-12)
    assert add(pts, R, t, R, t) == pytest.approx(0.0, abs=1e-12)
    # translation given as a column vector also works
    assert add(pts, R, (t + offset).reshape(3, 1), R, t.reshape(3, 1)) == pytest.approx(0.005)


def test_add_rotation_hand_computed():
    # a single point at distance r from the axis, rotated by 90 deg -> chord r*sqrt(2)
    pts = np.array([[0.1, 0.0, 0.0]])
    Rz = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    assert add(pts, Rz, np.zeros(3), np.eye(3), np.zeros(3)) == pytest.approx(0.1 * math.sqrt(2))


def test_adds_not_larger_than_add():
    rng = np.random.default_rng(0)
    pts = _cube_points()
    for _ in range(10):
        R1, R2 = Rotation.random(2, rng=rng).as_matrix()
        t1 = rng.normal(size=3) * 0.01 + [0, 0, 1]
        t2 = rng.normal(size=3) * 0.01 + [0, 0, 1]
        assert adds(pts, R1, t1, R2, t2) <= add(pts, R1, t1, R2, t2) + 1e-12


def test_symmetric_cylinder_rotated_about_axis():
    pts = _cylinder_points()
    t = np.array([0.0, 0.0, 1.0])
    # 90 degrees is a multiple of the 5-degree sampling step, so points map onto points
    Rz = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    assert adds(pts, Rz, t, np.eye(3), t) == pytest.approx(0.0, abs=1e-9)
    assert add(pts, Rz, t, np.eye(3), t) == pytest.approx(0.03 * math.sqrt(2), rel=1e-9)


def test_adds_translation_offset_hand_computed():
    # two points 1 m apart, estimate shifted by 0.1 along the line -> nearest distance 0.1 each
    pts = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert adds(pts, np.eye(3), [0.1, 0, 0], np.eye(3), np.zeros(3)) == pytest.approx(0.1)


def test_vocap_all_zeros_is_100():
    assert vocap_auc(np.zeros(7)) == pytest.approx(100.0)


def test_vocap_all_misses_is_0():
    assert vocap_auc([np.inf, np.inf, 0.5]) == 0.0
    assert vocap_auc([]) == 0.0


def test_vocap_single_error_right_end_step():
    # the toolbox takes the step value at the right end of the interval
    assert vocap_auc([0.05]) == pytest.approx(100.0)
    assert vocap_auc([0.1]) == pytest.approx(100.0)  # exactly max_distance is kept


def test_vocap_mixed_hand_computed():
    # sorted: 0.02, 0.04, inf, inf (0.2 > 0.1 is a miss); n = 4 -> acc 0.25, 0.5
    # area = 0.02*0.25 + 0.02*0.5 + 0.06*0.5 = 0.045 -> /0.1 * 100 = 45
    assert vocap_auc([0.04, np.inf, 0.02, 0.2]) == pytest.approx(45.0)


def test_vocap_ties_take_lowest_accuracy():
    # rec = [0, .02, .02, .1], prec = [0, .5, 1, 1]; rec changes at 1 and 3 -> .02*.5 + .08*1 = .09
    assert vocap_auc([0.02, 0.02]) == pytest.approx(90.0)


def test_vocap_max_distance_scaling():
    # max 0.02: [0.01, 0.03] -> 0.03 is a miss; area = 0.01*0.5 + 0.01*0.5 = 0.01 -> /0.02 -> 50
    assert vocap_auc([0.01, 0.03], max_distance=0.02) == pytest.approx(50.0)


def test_vocap_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        vocap_auc([0.1, np.nan])
    with pytest.raises(ValueError, match="max_distance"):
        vocap_auc([0.1], max_distance=0)
    with pytest.raises(ValueError, match="non-negative"):
        vocap_auc([-0.1])


def test_accuracy_curve():
    d = [0.01, 0.03, np.inf, 0.05]
    curve = accuracy_curve(d, [0.0, 0.01, 0.04, 0.1, np.inf])
    np.testing.assert_allclose(curve, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert accuracy_curve([], [0.1]).tolist() == [0.0]


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="points"):
        add(np.zeros((4, 2)), np.eye(3), np.zeros(3), np.eye(3), np.zeros(3))
    with pytest.raises(ValueError, match="R_est"):
        adds(np.zeros((4, 3)), np.eye(4), np.zeros(3), np.eye(3), np.zeros(3))
    with pytest.raises(ValueError, match="t_gt"):
        add(np.zeros((4, 3)), np.eye(3), np.zeros(3), np.eye(3), np.zeros(4))


def _box_points() -> np.ndarray:
    """Points on the surface of a 16 x 21 x 6 cm box (no symmetry beyond the box's three 180-degree turns)."""
    rng = np.random.default_rng(0)
    half = np.array([0.08, 0.105, 0.03])
    p = rng.uniform(-1, 1, (3000, 3))
    axis = rng.integers(0, 3, 3000)
    p[np.arange(3000), axis] = np.sign(p[np.arange(3000), axis])
    return p * half


def test_rotation_error_and_its_symmetric_variant():
    R_gt = Rotation.from_euler("xyz", [20, -30, 10], degrees=True).as_matrix()

    def turned(axis: str, deg) -> np.ndarray:
        return R_gt @ Rotation.from_euler(axis, deg, degrees=True).as_matrix()

    assert rotation_error_deg(turned("y", 37), R_gt) == pytest.approx(37.0)
    assert rotation_error_deg(turned("z", 180), R_gt) == pytest.approx(180.0)
    cyl = _cylinder_points(n_theta=180)  # continuous symmetry about z (and a 180-degree flip about x)
    assert symmetric_rotation_error_deg(cyl, turned("z", 90), R_gt) < 1.0
    assert symmetric_rotation_error_deg(cyl, turned("x", 180), R_gt) < 1.0
    assert symmetric_rotation_error_deg(cyl, turned("zx", (90, 8)), R_gt) == pytest.approx(8.0, abs=1.0)
    assert symmetric_rotation_error_deg(cyl, turned("y", 45), R_gt) == pytest.approx(45.0, abs=1e-6)
    box = _box_points()
    assert symmetric_rotation_error_deg(box, turned("z", 180), R_gt) < 1.0
    for axis, deg in (("z", 90), ("z", 37), ("x", 10)):  # not symmetries of the box: the plain error
        assert symmetric_rotation_error_deg(box, turned(axis, deg), R_gt) == pytest.approx(float(deg), abs=1e-6)
