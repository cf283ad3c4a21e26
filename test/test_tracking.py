"""posecnn_core.tracking: association, pose filter, symmetric alignment, track lifecycle and resets (values)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from posecnn_core.tracking import PoseFilter, SymmetryAligner, Tracker, TrackerConfig, associate, box_iou
from posecnn_core.tracking.pose_filter import angle_deg

K = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])


@dataclass
class Obj:
    """The fields of ObjectPose the tracker reads and copies."""

    class_id: int
    t: np.ndarray
    R: np.ndarray
    roi: np.ndarray
    quaternion: np.ndarray = None
    instance: int = 0
    track_id: int | None = None


def obj(class_id: int, t, R=None, half: float = 20.0) -> Obj:
    t = np.asarray(t, float)
    u, v = K[0, 0] * t[0] / t[2] + K[0, 2], K[1, 1] * t[1] / t[2] + K[1, 2]
    return Obj(class_id, t, np.eye(3) if R is None else np.asarray(R, float),
               np.array([u - half, v - half, u + half, v + half]))


def test_box_iou_values() -> None:
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_association_is_optimal_and_per_class() -> None:
    # greedy would give detection 0 to track 0 (0.04 m) and leave track 1 with 0.2 m (gated): optimal pairs both
    tracks_t = np.array([[0.0, 0, 1], [0.05, 0, 1]])
    dets_t = np.array([[0.04, 0, 1], [-0.03, 0, 1], [0.05, 0, 1]])
    boxes = np.zeros((3, 4))
    m = associate(np.array([1, 1]), tracks_t, boxes[:2], np.array([1, 1, 2]), dets_t, boxes,
                  max_distance=0.1, min_iou=0.5, iou_weight=0.0)
    assert sorted(m.pairs) == [(0, 1), (1, 0)]
    assert m.unmatched_detections == [2]  # class 2 never matches a class-1 track, however close
    assert m.unmatched_tracks == []


def test_two_cans_swapping_rank_keep_their_ids() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    a, b = [0.1, 0.0, 0.8], [-0.1, 0.0, 0.8]
    first = tracker.update([obj(3, a), obj(3, b)], stamp=0.0)
    ids = {tuple(o.t.round(3)): o.track_id for o in first}
    for k in range(1, 6):  # the detector's rank order flips every frame
        frame = [obj(3, a), obj(3, b)] if k % 2 else [obj(3, b), obj(3, a)]
        for i, o in enumerate(frame):
            o.instance = i
        out = tracker.update(frame, stamp=0.1 * k)
        assert {tuple(o.t.round(3)): o.track_id for o in out} == ids
    assert sorted(ids.values()) == [0, 1]


def test_missed_frames_keep_the_id_and_too_many_drop_it() -> None:
    cfg = TrackerConfig(min_hits=1, max_missed=3)
    tracker = Tracker(cfg)
    assert [o.track_id for o in tracker.update([obj(1, [0, 0, 1])], stamp=0)] == [0]
    for k in range(1, 4):  # three missed frames: still tracked
        assert tracker.update([], stamp=k) == []
        assert [tr.track_id for tr in tracker.tracks] == [0]
    assert [o.track_id for o in tracker.update([obj(1, [0, 0, 1])], stamp=4)] == [0]
    for k in range(5, 9):  # four missed frames: dropped after the fourth
        tracker.update([], stamp=k)
    assert tracker.tracks == []
    assert [o.track_id for o in tracker.update([obj(1, [0, 0, 1])], stamp=9)] == [1]


def test_tentative_until_min_hits_and_dropped_at_first_miss() -> None:
    tracker = Tracker(TrackerConfig(min_hits=3))
    assert tracker.update([obj(1, [0, 0, 1])], stamp=0) == []
    assert tracker.update([obj(1, [0, 0, 1])], stamp=1) == []
    assert [o.track_id for o in tracker.update([obj(1, [0, 0, 1])], stamp=2)] == [0]
    tracker.update([obj(2, [0.3, 0, 1])], stamp=3)  # a new tentative track, and track 0 missed once
    assert sorted(tr.track_id for tr in tracker.tracks) == [0, 1]
    tracker.update([], stamp=4)
    assert [tr.track_id for tr in tracker.tracks] == [0]  # the tentative one is gone, the confirmed one coasts


def test_constant_velocity_is_followed_without_lag_and_noise_is_reduced() -> None:
    cfg = TrackerConfig()
    rng = np.random.default_rng(0)
    f = PoseFilter(np.eye(3), np.zeros(3), cfg)
    velocity = np.array([0.05, 0.0, 0.0])  # m/s, frames at 10 Hz
    for k in range(1, 80):
        f.update(np.eye(3), velocity * 0.1 * k, 0.1)
    np.testing.assert_allclose(f.t, velocity * 0.1 * 79, atol=1e-4)
    np.testing.assert_allclose(f.v, velocity, atol=1e-3)
    # static object, 5 mm noise: frame-to-frame steps of the filtered translation are at least halved
    f = PoseFilter(np.eye(3), np.zeros(3), cfg)
    raw = rng.normal(scale=0.005, size=(300, 3))
    out = []
    for k, z in enumerate(raw):
        f.update(np.eye(3), z, 0.1)
        out.append(f.t.copy())
    raw_jitter = np.linalg.norm(np.diff(raw[50:], axis=0), axis=1).mean()
    filt_jitter = np.linalg.norm(np.diff(np.array(out[50:]), axis=0), axis=1).mean()
    assert filt_jitter < 0.5 * raw_jitter


def test_rotation_filter_converges_and_gates_an_outlier() -> None:
    cfg = TrackerConfig(max_outliers=2)
    R0 = Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()
    f = PoseFilter(R0, np.zeros(3), cfg)
    target = Rotation.from_euler("xyz", [12, 20, 30], degrees=True).as_matrix()
    for _ in range(60):
        f.update(target, np.zeros(3), 0.1)
    assert angle_deg(f.R, target) < 0.05
    flipped = Rotation.from_euler("z", 180, degrees=True).as_matrix() @ target
    assert f.update(flipped, np.zeros(3), 0.1) is False  # gated: the pose stays
    assert angle_deg(f.R, target) < 0.1
    assert f.update(flipped, np.zeros(3), 0.1) is False  # second outlier in a row: restarts there
    assert angle_deg(f.R, flipped) < 1e-4


def _cylinder_points(n: int = 2000) -> np.ndarray:
    """A cylinder about z (radius 3 cm, height 10 cm): continuous symmetry about z."""
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 2 * math.pi, n)
    return np.stack([0.03 * np.cos(a), 0.03 * np.sin(a), rng.uniform(-0.05, 0.05, n)], axis=1)


def _box_points(n: int = 800) -> np.ndarray:
    """A box 4 x 6 x 10 cm (symmetries: 180 degrees about each axis)."""
    rng = np.random.default_rng(2)
    p = rng.uniform(-1, 1, (n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = np.sign(p[np.arange(n), axis])
    return p * np.array([0.02, 0.03, 0.05])


def test_symmetry_aligner_picks_the_equivalent_rotation_closest_to_the_track() -> None:
    R_track = Rotation.from_euler("xyz", [5, -10, 40], degrees=True).as_matrix()
    flip = Rotation.from_euler("z", 180, degrees=True).as_matrix()
    small = Rotation.from_euler("x", 3, degrees=True).as_matrix()
    box = SymmetryAligner(_box_points())
    measured = small @ R_track @ flip  # the same box pose up to its 180 degree symmetry, 3 degrees off
    assert angle_deg(measured, R_track) > 170
    assert angle_deg(box.closest(measured, R_track), R_track) < 4.0
    cyl = SymmetryAligner(_cylinder_points())
    spun = R_track @ Rotation.from_euler("z", 75, degrees=True).as_matrix()
    assert angle_deg(cyl.closest(spun, R_track), R_track) < 2.0
    # an asymmetric model: no equivalent rotation, the measurement stays
    rng = np.random.default_rng(3)
    lumpy = SymmetryAligner(rng.normal(size=(500, 3)) * np.array([0.01, 0.03, 0.06]) + np.array([0.02, 0, 0]))
    turned = R_track @ flip
    np.testing.assert_allclose(lumpy.closest(turned, R_track), turned)


def test_symmetric_flip_is_suppressed_in_the_tracker() -> None:
    points = [np.zeros((0, 3)), _box_points()]
    tracker = Tracker(TrackerConfig(min_hits=1), symmetric=[False, True], points=points)
    R = Rotation.from_euler("xyz", [20, 0, 10], degrees=True).as_matrix()
    flip = Rotation.from_euler("y", 180, degrees=True).as_matrix()
    for k in range(10):  # the network alternates between the two symmetric copies
        measured = R @ flip if k % 2 else R
        (out,) = tracker.update([obj(1, [0, 0, 0.8], measured)], stamp=0.1 * k)
        assert angle_deg(out.R, R) < 1.0
    # without the symmetry the flipped measurements are outliers: gated once, then the filter jumps
    plain = Tracker(TrackerConfig(min_hits=1, symmetric_alignment=False), symmetric=[False, True], points=points)
    angles = [angle_deg(plain.update([obj(1, [0, 0, 0.8], R @ flip if k % 2 else R)], stamp=0.1 * k)[0].R, R)
              for k in range(4)]
    assert max(angles) < 1.0  # alternate outliers never make two in a row: gated every time


@pytest.mark.parametrize("change", ["time", "frame", "size"])
def test_stream_changes_reset_the_tracks(change: str) -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update([obj(1, [0, 0, 1])], stamp=10.0, frame_id="cam", image_size=(240, 320))
    tracker.update([obj(1, [0, 0, 1])], stamp=10.1, frame_id="cam", image_size=(240, 320))
    assert [tr.track_id for tr in tracker.tracks] == [0]
    args = {"time": (9.0, "cam", (240, 320)), "frame": (10.2, "other", (240, 320)),
            "size": (10.2, "cam", (480, 640))}[change]
    plan = tracker.begin([obj(1, [0, 0, 1])], *args)
    assert plan.reset_reason and plan.tracks == [None]
    assert [o.track_id for o in tracker.finish(plan, [obj(1, [0, 0, 1])])] == [1]  # a new id, never reused
    tracker.reset()
    assert tracker.tracks == [] and tracker.resets == 2


def test_filter_off_reports_the_measured_pose_with_ids() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, filter=False))
    tracker.update([obj(1, [0, 0, 1])], stamp=0)
    (out,) = tracker.update([obj(1, [0.01, 0, 1])], stamp=1)
    np.testing.assert_allclose(out.t, [0.01, 0, 1])
    assert out.track_id == 0


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="position_alpha"):
        TrackerConfig(position_alpha=0.0)
    with pytest.raises(ValueError, match="min_hits"):
        TrackerConfig(min_hits=True)


def test_tracked_refinement_starts_confirmed_tracks_from_their_prediction() -> None:
    from posecnn_core.estimator import tracked_refine_options
    from posecnn_core.refine import RefineOptions

    opts = tracked_refine_options(RefineOptions())
    assert (opts.rotation_search, opts.tz_offsets, opts.include_initial_tz, opts.center_hypothesis) == \
        (0, (0.0,), False, False)
    assert opts.min_inlier_fraction == RefineOptions().min_inlier_fraction  # acceptance rules unchanged
    tracker = Tracker(TrackerConfig(min_hits=2))
    tracker.update([obj(1, [0, 0, 1]), obj(2, [0.2, 0, 1])], stamp=0.0)
    tracker.update([obj(1, [0.01, 0, 1])], stamp=0.1)  # class 1 confirmed, class 2 dropped (tentative, missed)
    plan = tracker.begin([obj(2, [0.2, 0, 1]), obj(1, [0.02, 0, 1])], stamp=0.2)
    starts = plan.tracked_starts()
    assert list(starts) == [1]  # only the detection of the confirmed track
    R, t = starts[1]
    np.testing.assert_allclose(R, np.eye(3))
    # the filter saw 0 -> 0.01 m sideways in 0.1 s: position 0.5 x 0.01 (position_alpha), velocity
    # 0.1 x 0.01 / 0.1 s = 0.01 m/s (position_beta), so at 0.2 s it predicts 0.005 + 0.001
    np.testing.assert_allclose(t, [0.006, 0.0, 1.0], atol=1e-12)


def test_sequence_scorer_counts_id_switches_and_jitter() -> None:
    from posecnn_core.tracking.metrics import SequenceScorer, TruthObject

    points = [np.zeros((0, 3)), _box_points(100)]
    scorer = SequenceScorer(points)
    truth_a, truth_b = np.array([0.1, 0.0, 0.8]), np.array([-0.1, 0.0, 0.8])
    noise = [0.0, 0.002, 0.0, 0.002]
    ids = [("a", "b"), ("a", "b"), ("b", "a"), ("b", "a")]  # the estimates' ids swap once between frames 1 and 2
    for k in range(4):
        shift = np.array([0.01 * k, 0.0, 0.0])  # both objects move 1 cm per frame (a moving camera)
        truths = [TruthObject("A", 1, np.eye(3), truth_a + shift), TruthObject("B", 1, np.eye(3), truth_b + shift)]
        ests = [obj(1, truth_a + shift + [noise[k], 0, 0]), obj(1, truth_b + shift)]
        scorer.add_frame(ests, list(ids[k]), truths, K)
    s = scorer.score.summary()
    assert s["id_switches"] == 2 and s["recall"] == 1.0
    # jitter: A's estimate moves 1.2, 0.8, 1.2 cm when the truth moves 1 cm (2 mm off each time); B's never is
    assert s["jitter_t_mm"] == pytest.approx((2.0 * 3 + 0.0 * 3) / 6)
    assert s["jitter_r_deg"] == pytest.approx(0.0, abs=1e-6)
    assert s["add_mm"] == pytest.approx((2.0 + 2.0) / 8)  # two estimates 2 mm off, six exact
