"""Tests for posecnn_core.targets."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from _data_helpers import square_frame
from posecnn_core.synth import default_intrinsics
from posecnn_core.targets import boxes_from_points, compute_targets

K = default_intrinsics(64, 48)
C = 4


def _frame():
    objs = [(2, np.array([-0.1, 0.0, 0.6]), 4), (2, np.array([0.1, 0.02, 0.7]), 4),
            (1, np.array([0.0, -0.05, 0.8]), 3)]
    _, _, label, inst, meta = square_frame(48, 64, K, objs)
    cls = meta["cls_indexes"].ravel().astype(int)
    poses = np.transpose(meta["poses"], (2, 0, 1))
    return label, inst, cls, poses


def test_every_weighted_pixel_points_at_its_instance_centre():
    label, inst, cls, poses = _frame()
    tg = compute_targets(label, inst, cls, poses, K, C)
    centers = (poses[:, :, 3] @ K.T)[:, :2] / poses[:, 2:3, 3]
    checked = 0
    for c in range(1, C):
        w = tg.vertex_weights[3 * c]
        rows, cols = np.nonzero(w > 0)
        for r, col in zip(rows, cols):
            k = inst[r, col] - 1
            assert cls[k] == c
            n = tg.vertex_targets[3 * c:3 * c + 2, r, col]
            d = centers[k] - [col, r]
            if np.hypot(*d) < 1e-9:
                continue
            assert np.linalg.norm(n) == pytest.approx(1.0, abs=1e-6)
            assert n[0] * d[1] - n[1] * d[0] == pytest.approx(0.0, abs=1e-5)  # parallel
            assert n @ d > 0  # towards the centre
            assert tg.vertex_targets[3 * c + 2, r, col] == pytest.approx(np.log(poses[k, 2, 3]), abs=1e-6)
            checked += 1
    assert checked == (inst > 0).sum()


def test_weights_cover_exactly_the_class_channels():
    label, inst, cls, poses = _frame()
    tg = compute_targets(label, inst, cls, poses, K, C)
    assert tg.vertex_targets.shape == (3 * C, 48, 64) and tg.vertex_targets.dtype == np.float32
    for c in range(C):
        for j in range(3):
            np.testing.assert_array_equal(tg.vertex_weights[3 * c + j], (label == c) & (c > 0))
    assert np.all(tg.vertex_targets[tg.vertex_weights == 0] == 0)


def test_two_instances_of_one_class_get_separate_targets():
    label, inst, cls, poses = _frame()
    tg = compute_targets(label, inst, cls, poses, K, C)
    a, b = inst == 1, inst == 2  # both class 2
    z = tg.vertex_targets[3 * 2 + 2]
    np.testing.assert_allclose(z[a], np.log(0.6), rtol=1e-6)
    np.testing.assert_allclose(z[b], np.log(0.7), rtol=1e-6)
    # instance 1 lies left of instance 2: its pixels point left-ish to their own centre, never to b's
    nx = tg.vertex_targets[3 * 2]
    u1 = tg.centers[0, 0]
    cols = np.nonzero(a)[1]
    np.testing.assert_array_equal(np.sign(nx[a]), np.sign(np.round(u1 - cols, 6)))
    np.testing.assert_array_equal(tg.classes, [2, 2, 1])
    np.testing.assert_array_equal(tg.visible_pixels, [81, 81, 49])
    # mask boxes: 9x9 squares around each projected centre
    cu, cv = np.round(tg.centers[0]).astype(int)
    np.testing.assert_array_equal(tg.boxes[0], [cu - 4, cv - 4, cu + 4, cv + 4])


def test_pose_fields_symmetry_and_point_boxes():
    label, inst, cls, poses = _frame()
    R = Rotation.from_euler("xyz", [30, -50, 170], degrees=True).as_matrix()
    poses = poses.copy()
    poses[0, :, :3] = R
    sym = [False, True, False, False]
    pts = {1: np.array([[0.01, 0.0, 0.0], [-0.01, 0.0, 0.0]]), 2: np.array([[0.0, 0.02, 0.0], [0.0, -0.02, 0.0]])}
    tg = compute_targets(label, inst, cls, poses, K, C, symmetric=sym, points_by_class=pts)
    np.testing.assert_array_equal(tg.symmetric, [False, False, True])
    q = tg.quaternions[0]
    assert q[0] >= 0
    np.testing.assert_allclose(Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix(), R, atol=1e-6)
    np.testing.assert_allclose(tg.depths, [0.6, 0.7, 0.8], rtol=1e-6)
    np.testing.assert_allclose(tg.boxes, boxes_from_points(pts, cls, poses, K))
    # class 1 at (0, -0.05, 0.8), points +-1 cm along x -> box width 2 * 0.01 * fx / 0.8
    assert tg.boxes[2, 2] - tg.boxes[2, 0] == pytest.approx(0.02 * K[0, 0] / 0.8, rel=1e-5)


def test_label_disagreeing_with_instance_gets_no_target_and_bad_input_raises():
    label, inst, cls, poses = _frame()
    label = label.copy()
    label[inst == 3] = 3  # pretend the label says class 3 where instance 3 (class 1) is
    tg = compute_targets(label, inst, cls, poses, K, C)
    assert tg.vertex_weights[3:6][:, inst == 3].sum() == 0
    with pytest.raises(ValueError, match="classes"):
        compute_targets(label, inst, [2, 2, 9], poses, K, C)
    with pytest.raises(ValueError, match="symmetric"):
        compute_targets(label, inst, cls, poses, K, C, symmetric=[False])
    with pytest.raises(ValueError, match="instance ids"):
        compute_targets(label, inst * 2, cls, poses, K, C)
    with pytest.raises(ValueError, match="poses"):
        compute_targets(label, inst, cls, poses[:2], K, C)


def test_empty_frame():
    label = np.zeros((8, 8), np.uint8)
    tg = compute_targets(label, np.zeros((8, 8), np.int32), [], np.zeros((0, 3, 4)), K, C)
    assert tg.vertex_weights.sum() == 0 and tg.boxes.shape == (0, 4) and tg.quaternions.shape == (0, 4)


def test_depth_targets_are_normalised_to_the_reference_focal_length():
    from posecnn_core.camera import focal_length

    label, inst, cls, poses = _frame()
    f = focal_length(K)
    metric = compute_targets(label, inst, cls, poses, K, C)
    same = compute_targets(label, inst, cls, poses, K, C, reference_focal=f)
    np.testing.assert_allclose(same.vertex_targets, metric.vertex_targets, atol=1e-6)
    # the same frame seen through a camera with 1.6x the focal lengths: log-depth targets shift by -log(1.6)
    K16 = K.copy()
    K16[0, 0] *= 1.6
    K16[1, 1] *= 1.6
    long = compute_targets(label, inst, cls, poses, K16, C, reference_focal=f)
    depth = np.zeros(C * 3, bool)
    depth[2::3] = True
    w = metric.vertex_weights > 0
    np.testing.assert_allclose(long.vertex_targets[depth][w[depth]],
                               metric.vertex_targets[depth][w[depth]] - np.log(1.6), atol=1e-6)
    # directions follow the frame's own projection, unchanged by the normalisation
    np.testing.assert_array_equal(long.vertex_targets[~depth],
                                  compute_targets(label, inst, cls, poses, K16, C).vertex_targets[~depth])
    np.testing.assert_array_equal(long.depths, metric.depths)  # the metric depths stay metric
    with pytest.raises(ValueError, match="reference_focal"):
        compute_targets(label, inst, cls, poses, K, C, reference_focal=0.0)
