"""posecnn_core.synth.sequence: the motion of a tracking sequence (no rendering): static objects keep their
distances, the moved object moves only in its window, the occluder comes and goes, the camera moves smoothly."""

from __future__ import annotations

import numpy as np
import pytest

from posecnn_core.synth.scene import Instance, Scene
from posecnn_core.synth.sequence import SequenceConfig, _prepared, sequence_frame


def _scene() -> Scene:
    K = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
    inst = [Instance(1, np.eye(3), np.array([0.05, 0.0, 0.7])), Instance(2, np.eye(3), np.array([-0.05, 0.02, 0.65])),
            Instance(3, np.eye(3), np.array([0.0, -0.04, 0.75]))]
    return _prepared(Scene(K=K, instances=inst, lights=[]))


def test_prepared_scene_is_centred_and_has_two_look_alikes() -> None:
    scene = _scene()
    centre = np.mean([i.t for i in scene.instances], axis=0)
    np.testing.assert_allclose(centre[:2], 0.0, atol=1e-12)
    assert [i.class_index for i in scene.instances] == [1, 1, 3]


def test_motion_of_a_sequence() -> None:
    seq = SequenceConfig(frames=21)
    scene = _scene()
    frames = [sequence_frame(scene, k, seq) for k in range(seq.frames)]
    static = [(f[0][0].t, f[0][1].t) for f in frames]
    dists = [np.linalg.norm(a - b) for a, b in static]
    np.testing.assert_allclose(dists, dists[0], atol=1e-12)  # a moving camera keeps static objects' distances
    moved = [np.linalg.norm(f[0][2].t - f[0][0].t) for f in frames]
    offsets = [f[0][2].t - f[0][0].t for f in frames]
    lo, hi = seq.move_window
    before = [d for k, d in enumerate(moved) if k / (seq.frames - 1) <= lo]
    np.testing.assert_allclose(before, before[0], atol=1e-12)
    assert np.linalg.norm(offsets[-1] - offsets[0]) > 0.02  # it ended somewhere else
    still = SequenceConfig(frames=21, orbit_deg=0.0, bob=0.0)  # a still camera: the move is exactly `shift` in x
    first, last = sequence_frame(scene, 0, still)[0][2], sequence_frame(scene, 20, still)[0][2]
    np.testing.assert_allclose(last.t - first.t, [still.shift, 0.0, 0.0], atol=1e-12)
    # the camera's motion between frames is small (smooth): at most a few centimetres per frame
    steps = [np.linalg.norm(frames[k + 1][0][0].t - frames[k][0][0].t) for k in range(seq.frames - 1)]
    assert max(steps) < 0.03 and min(steps) >= 0.0
    occluded = [any(d.shape == "box" for d in f[1]) for f in frames]
    assert occluded[0] is False and occluded[-1] is False and any(occluded)
    hand = [any(d.shape == "capsule" for d in f[1]) for f in frames]
    assert hand[0] is False and hand[-1] is False and any(hand)


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="move_window"):
        SequenceConfig(move_window=(0.6, 0.3)).validate()


def test_bag_ground_truth_ids_name_the_objects(tmp_path) -> None:
    """make_sample_bag names ground truth <class>_<object id> when the meta holds object_ids."""
    pytest.importorskip("rosbags")
    pytest.importorskip("ament_index_python")
    import importlib.util
    from pathlib import Path

    import cv2
    import scipy.io
    from rosbags.rosbag2 import Reader

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("make_sample_bag", root / "tools" / "make_sample_bag.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    seq = tmp_path / "split" / "data" / "0000"
    seq.mkdir(parents=True)
    K = np.array([[80.0, 0, 31.5], [0, 80.0, 23.5], [0, 0, 1]])
    poses = np.zeros((3, 4, 2))
    poses[:, :3, 0] = poses[:, :3, 1] = np.eye(3)
    poses[:, 3, 0], poses[:, 3, 1] = [0.05, 0, 0.5], [-0.05, 0, 0.5]
    for i, ids in enumerate(([[4], [1]], [[1], [4]])):  # the same two cans, listed in the other order
        cv2.imwrite(str(seq / f"{i:06d}-color.png"), np.zeros((48, 64, 3), np.uint8))
        cv2.imwrite(str(seq / f"{i:06d}-depth.png"), np.full((48, 64), 5000, np.uint16))
        scipy.io.savemat(str(seq / f"{i:06d}-meta.mat"), {
            "cls_indexes": np.array([[1], [1]]), "poses": poses if i == 0 else poses[:, :, ::-1],
            "intrinsic_matrix": K, "factor_depth": np.array([[10000]]), "object_ids": np.array(ids)})
    tool.write_bag(tmp_path / "split", tmp_path / "bag", ["__background__", "can"], np.zeros((2, 3)))
    store = tool.make_typestore()
    seen = []
    with Reader(tmp_path / "bag") as reader:
        conns = [c for c in reader.connections if c.topic == "/ground_truth"]
        for conn, _, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            seen.append({d.id: round(d.bbox.center.position.x, 3) for d in msg.detections})
    assert seen == [{"can_4": 0.05, "can_1": -0.05}, {"can_1": -0.05, "can_4": 0.05}]
