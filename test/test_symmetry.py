"""Declared finite symmetries: the group, the object-set field, nearest-equivalent targets in training, and rotation
errors up to the symmetry in evaluation and in the trainer's probe."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from posecnn_core.evaluate import Detection, FrameResults, GroundTruth, evaluate_results
from posecnn_core.geometry import mat_to_quat, quat_multiply
from posecnn_core.objects import ObjectSet, ObjectSetError, load_object_set
from posecnn_core.symmetry import (cyclic_group, group_quaternions, nearest_symmetric_targets,
                                   rotation_error_up_to_deg)
from posecnn_core.train.rotation_targets import RotationTargets

REPO = Path(__file__).resolve().parents[1]


def _rz(deg: float) -> np.ndarray:
    return Rotation.from_euler("z", deg, degrees=True).as_matrix()


def _angle(Ra: np.ndarray, Rb: np.ndarray) -> float:
    return math.degrees(Rotation.from_matrix(Ra.T @ Rb).magnitude())


def test_cyclic_group_elements():
    g = cyclic_group([0, 0, 2], 4)
    assert g.shape == (4, 3, 3)
    np.testing.assert_allclose(g[0], np.eye(3))
    for k in range(4):
        np.testing.assert_allclose(g[k], _rz(90 * k), atol=1e-12)
    g = cyclic_group([1, 1, 0], 2)
    np.testing.assert_allclose(g[1] @ np.array([1.0, 1.0, 0.0]), [1, 1, 0], atol=1e-12)  # the axis stays
    np.testing.assert_allclose(g[1] @ np.array([0.0, 0.0, 1.0]), [0, 0, -1], atol=1e-12)
    for bad in ([0, 0, 0], [1, 2]):
        with pytest.raises(ValueError, match="axis"):
            cyclic_group(bad, 2)
    with pytest.raises(ValueError, match="order"):
        cyclic_group([0, 0, 1], 0)


def test_rotation_error_up_to_the_group():
    g = cyclic_group([0, 0, 1], 2)
    R_gt = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
    R_est = R_gt @ _rz(180) @ Rotation.from_euler("x", 7, degrees=True).as_matrix()
    assert _angle(R_est, R_gt) > 170
    assert rotation_error_up_to_deg(R_est, R_gt, g) == pytest.approx(7.0, abs=1e-6)
    assert rotation_error_up_to_deg(R_est, R_gt, np.eye(3)[None]) == pytest.approx(_angle(R_est, R_gt), abs=1e-6)


def test_nearest_symmetric_targets_pick_the_nearer_equivalent():
    groups = group_quaternions([np.eye(3)[None], cyclic_group([0, 0, 1], 2)])  # [2, 2, 4], identity-padded
    assert groups.shape == (2, 2, 4)
    rng = np.random.default_rng(0)
    R_gt = Rotation.random(6, random_state=1).as_matrix()
    q_gt = torch.as_tensor(mat_to_quat(R_gt), dtype=torch.float32)
    # predictions near R_gt·Rz(180) (rows 0-2) or near R_gt (rows 3-5)
    near_flip = np.stack([R_gt[i] @ _rz(180 + rng.uniform(-20, 20)) for i in range(3)])
    near_gt = np.stack([R_gt[i] @ _rz(rng.uniform(-20, 20)) for i in range(3, 6)])
    q_pred = torch.as_tensor(mat_to_quat(np.concatenate([near_flip, near_gt])), dtype=torch.float32) * 3.0
    sym = nearest_symmetric_targets(q_pred, q_gt, groups[torch.ones(6, dtype=torch.long)])
    flipped = quat_multiply(q_gt, torch.tensor([0.0, 0.0, 0.0, 1.0]))
    for i in range(3):
        assert abs(float(sym[i] @ flipped[i])) == pytest.approx(1.0, abs=1e-6)
    for i in range(3, 6):
        assert abs(float(sym[i] @ q_gt[i])) == pytest.approx(1.0, abs=1e-6)
    # a class without symmetry keeps its labelled target whatever the prediction
    plain = nearest_symmetric_targets(q_pred, q_gt, groups[torch.zeros(6, dtype=torch.long)])
    torch.testing.assert_close(plain, q_gt)


def _write_set(tmp_path: Path, cereal: str) -> Path:
    root = tmp_path / "models" / "box"
    root.mkdir(parents=True)
    np.savetxt(root / "points.xyz", np.array([[0.05, 0.01, 0.07], [-0.05, -0.01, -0.07], [0.0, 0.0, 0.0]]))
    (tmp_path / "set.yaml").write_text(f"""
name: s
models_root: models
points: "{{name}}/points.xyz"
classes:
  - name: box
{cereal}
""")
    return tmp_path / "set.yaml"


def test_object_set_symmetry_field(tmp_path):
    path = _write_set(tmp_path, "    symmetric: true\n    symmetry: {axis: [0, 0, 1], order: 2}")
    objs = load_object_set(path)
    assert [len(g) for g in objs.symmetry_groups] == [1, 2]
    np.testing.assert_allclose(objs.symmetry_groups[1][1], _rz(180), atol=1e-12)
    assert objs.finite_symmetry.tolist() == [False, True]


@pytest.mark.parametrize("entry, message", [
    ("    symmetry: {axis: [0, 0, 1], order: 2}", "needs 'symmetric: true'"),
    ("    symmetric: true\n    symmetry: {axis: [0, 0, 0], order: 2}", r"classes\[0\].symmetry.axis"),
    ("    symmetric: true\n    symmetry: {axis: [0, 0, 1], order: 1}", r"classes\[0\].symmetry.order"),
    ("    symmetric: true\n    symmetry: [0, 0, 1]", r"classes\[0\].symmetry' must be a mapping"),
])
def test_object_set_symmetry_errors(tmp_path, entry, message):
    with pytest.raises(ObjectSetError, match=message):
        load_object_set(_write_set(tmp_path, entry))


def test_finite_symmetry_flags_of_the_demo_set():
    objs = load_object_set(REPO / "config/objects/demo.yaml")
    assert dict(zip(objs.class_names, objs.finite_symmetry.tolist())) == {
        "__background__": False, "bottle": False, "bread": False, "can": True, "cereal": True, "lemon": False,
        "milk": False}


def test_rotation_targets_modes():
    objs = load_object_set(REPO / "config/objects/demo.yaml")
    cereal, can = objs.index("cereal"), objs.index("can")
    labelled = RotationTargets(objs, "labelled", "cpu")
    nearest = RotationTargets(objs, "nearest_symmetric", "cpu")
    # PT's way: the cereal box is a shape-match (symmetric_training) class; ours: plain point matching
    assert bool(labelled.symmetric[cereal]) and not bool(nearest.symmetric[cereal])
    torch.testing.assert_close(nearest.symmetric[[0, can, objs.index("lemon")]],
                               labelled.symmetric[[0, can, objs.index("lemon")]])
    q_gt = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    q_pred = torch.tensor([[0.0, 0.0, 0.1, 1.0], [0.0, 0.0, 0.1, 1.0]])  # ~180 deg about z
    classes = torch.tensor([cereal, can])
    assert labelled.targets(q_pred, q_gt, classes) is q_gt
    out = nearest.targets(q_pred, q_gt, classes)
    torch.testing.assert_close(out[0].abs(), torch.tensor([0.0, 0.0, 0.0, 1.0]))  # the flipped equivalent
    torch.testing.assert_close(out[1], q_gt[1])
    with pytest.raises(ValueError, match="rotation_targets"):
        RotationTargets(objs, "closest", "cpu")


def test_evaluation_up_to_a_declared_symmetry():
    pts = np.array([[0.05, 0.01, 0.0], [-0.02, 0.03, 0.01], [0.01, -0.04, 0.02]])  # no shape symmetry
    objs = ObjectSet(name="s", class_names=["__background__", "box", "plain"],
                     points=[np.zeros((0, 3)), pts, pts], extents=np.zeros((3, 3)),
                     symmetric=[False, True, False],
                     symmetry_groups=[np.eye(3)[None], cyclic_group([0, 0, 1], 2), np.eye(3)[None]])
    pose = np.hstack([np.eye(3), [[0.0], [0.0], [1.0]]])
    tilt = Rotation.from_euler("x", 10, degrees=True).as_matrix()
    gt = [GroundTruth("f", [1, 2], np.stack([pose, pose]), [[10, 10, 50, 50], [60, 10, 100, 50]])]
    res = FrameResults(class_names=objs.class_names, frames={"f": [
        Detection(1, 0.9, [10, 10, 50, 50], _rz(180) @ tilt, [0, 0, 1]),
        Detection(2, 0.9, [60, 10, 100, 50], _rz(20), [0, 0, 1])]})
    rep = evaluate_results(res, gt, objs)
    box = next(r for r in rep.instances if r.class_name == "box")
    assert box.rot_error_deg > 170 and box.rot_error_sym_deg == pytest.approx(10.0, abs=1e-6)
    assert box.symmetry_order == 2 and box.rotation_defined
    assert rep.rot_median_nonsymmetric_deg == pytest.approx(20.0, abs=1e-6)
    assert rep.rot_median_defined_deg == pytest.approx(15.0, abs=1e-6)  # median of 10 and 20
    assert any("finitely many correct rotations" in line and "15.0 deg" in line for line in rep.summary_lines())


def test_object_set_rejects_a_group_on_a_non_symmetric_class():
    with pytest.raises(ValueError, match="not marked symmetric"):
        ObjectSet(name="s", class_names=["__background__", "a"], points=[np.zeros((0, 3)), np.zeros((1, 3))],
                  extents=np.zeros((2, 3)), symmetric=[False, False],
                  symmetry_groups=[np.eye(3)[None], cyclic_group([0, 0, 1], 2)])


def test_nearest_targets_make_the_symmetric_answer_free_in_the_point_matching_loss():
    from posecnn_core.losses import point_matching_loss

    objs = load_object_set(REPO / "config/objects/demo.yaml")
    cereal = objs.index("cereal")
    points, counts = objs.points_tensor(max_points=500)
    extents = torch.as_tensor(objs.extents)
    R_gt = Rotation.random(4, random_state=3).as_matrix()
    q_gt = torch.as_tensor(mat_to_quat(R_gt), dtype=torch.float32)
    q_pred = torch.as_tensor(mat_to_quat(R_gt @ _rz(180)), dtype=torch.float32)  # the look-alike rotation
    classes = torch.full((4,), cereal)

    def loss(mode: str) -> float:
        rt = RotationTargets(objs, mode, "cpu")
        target = rt.targets(q_pred, q_gt, classes)
        return float(point_matching_loss(q_pred, target, points[classes], extents[classes], rt.symmetric[classes],
                                         point_counts=counts[classes]))

    assert loss("nearest_symmetric") == 0.0  # no RoI is hard: the prediction is one of the correct answers
    # labelled targets take PT's shape-match loss for symmetric classes: the box's shape allows the turn, but the
    # nearest sampled point is never the same point, so the loss keeps a floor
    assert loss("labelled") > 0.1
    # a turn the look does not allow (about x) still costs under nearest targets
    q_bad = torch.as_tensor(mat_to_quat(R_gt @ Rotation.from_euler("x", 90, degrees=True).as_matrix()),
                            dtype=torch.float32)
    rt = RotationTargets(objs, "nearest_symmetric", "cpu")
    bad = point_matching_loss(q_bad, rt.targets(q_bad, q_gt, classes), points[classes], extents[classes],
                              rt.symmetric[classes], point_counts=counts[classes])
    assert float(bad) > 0.5
