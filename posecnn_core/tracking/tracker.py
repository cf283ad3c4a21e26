"""`Tracker`: object tracks over a sequence of frames, each with a stable id and a filtered pose.

Per frame (``update``, or ``begin`` + ``finish`` when something, e.g. depth refinement, works between the
association and the filter):

1. Resets: the tracks are cleared when the camera frame id or the image size differs from the previous frame's,
   or the stamp is earlier than the previous one (a bag that loops); ``reset()`` clears them on request.
2. Prediction: every track's pose at the frame's stamp (constant velocity).
3. Association (:mod:`.association`): detections to tracks, per class, by the distance of the detection's
   centre from the track's predicted centre and by box overlap, with one optimal assignment. An unmatched
   detection that overlaps a matched one of its class (``duplicate_iou``) is dropped as a duplicate.
4. Update: a matched track folds the detection into its filter (:mod:`.pose_filter`; for a symmetric object the
   equivalent rotation closest to the track's first) and counts a hit; an unmatched detection starts a new,
   tentative track; an unmatched track counts a miss and coasts on its prediction.
5. Lifecycle: a track is confirmed by its ``min_hits``-th hit and reported from then on, with its id, whenever
   it is matched; it is dropped after more than ``max_missed`` misses in a row (a tentative one at its first).

Ids are integers counted up from 0 over the tracker's life (a reset does not reuse them), so an id never names
two objects. Stamps are seconds; without stamps every frame is one time unit after the previous.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..geometry import mat_to_quat
from .association import Match, associate, box_iou
from .config import TrackerConfig
from .pose_filter import PoseFilter, SymmetryAligner


@dataclass
class Track:
    """One tracked object. ``filter`` holds its pose (at ``stamp``), ``box`` its last detected box."""

    track_id: int
    class_id: int
    filter: PoseFilter
    box: np.ndarray
    stamp: float
    hits: int = 1
    missed: int = 0
    confirmed: bool = False

    def predict(self, stamp: float) -> tuple[np.ndarray, np.ndarray]:
        """Pose (R, t) expected at ``stamp``."""
        return self.filter.predict(stamp - self.stamp)


@dataclass
class FramePlan:
    """One frame between association and update: ``tracks[i]`` is the track detection i was matched with (None:
    a new object), ``predicted[i]`` that track's predicted pose; ``duplicates``: detections dropped as duplicates
    of tracked objects; ``unmatched``: the tracks no detection was matched with."""

    stamp: float
    tracks: list[Track | None]
    predicted: list[tuple[np.ndarray, np.ndarray] | None]
    unmatched: list[Track] = field(default_factory=list)
    reset_reason: str = ""
    duplicates: set[int] = field(default_factory=set)

    def tracked_starts(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Detection index -> predicted pose, for the detections matched with confirmed tracks."""
        return {i: p for i, (tr, p) in enumerate(zip(self.tracks, self.predicted))
                if tr is not None and tr.confirmed and p is not None}


class Tracker:
    """Tracks of one camera stream. ``symmetric[c]`` and ``points[c]`` (model points, object frame) per class
    enable the symmetric alignment (``object_set``: an ObjectSet providing both)."""

    def __init__(self, config: TrackerConfig | None = None, object_set: Any = None, *,
                 symmetric: Sequence[bool] | None = None, points: Sequence[np.ndarray] | None = None) -> None:
        self.config = config or TrackerConfig()
        if object_set is not None:
            if symmetric is None and getattr(object_set, "symmetric", None) is not None:
                symmetric = list(object_set.symmetric)
            if points is None and getattr(object_set, "points", None) is not None:
                points = list(object_set.points)
        self._symmetric = [bool(s) for s in symmetric] if symmetric is not None else []
        self._points = list(points) if points is not None else []
        self._aligners: dict[int, SymmetryAligner | None] = {}
        self.tracks: list[Track] = []
        self._next_id = 0
        self._frame_id: str | None = None
        self._size: tuple[int, int] | None = None
        self._stamp: float | None = None
        self._frames = 0
        self.resets = 0
        self.last_reset_reason = ""

    # -- resets ----------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every track (ids are not reused) and the stream's frame id, size and time."""
        self.last_reset_reason = "reset requested"
        self.tracks = []
        self._frame_id, self._size, self._stamp = None, None, None
        self.resets += 1

    def _stream_change(self, stamp: float, frame_id: str | None, size: tuple[int, int] | None) -> str:
        """Why this frame cannot continue the previous ones ("" when it can)."""
        if self._stamp is None:
            return ""
        if frame_id is not None and self._frame_id is not None and frame_id != self._frame_id:
            return f"camera frame changed from {self._frame_id!r} to {frame_id!r}"
        if size is not None and self._size is not None and tuple(size) != self._size:
            return f"image size changed from {self._size} to {tuple(size)}"
        if stamp < self._stamp:
            return f"time went backwards by {self._stamp - stamp:.3f} s"
        return ""

    # -- per frame -------------------------------------------------------------------------------------------
    def begin(self, objects: Sequence[Any], stamp: float | None = None, frame_id: str | None = None,
              image_size: tuple[int, int] | None = None) -> FramePlan:
        """Resets when the stream changed, prediction and association of ``objects`` (ObjectPose-like: class_id,
        roi, R, t). Nothing is changed until :meth:`finish`."""
        self._frames += 1
        stamp = float(self._frames) if stamp is None else float(stamp)
        reason = self._stream_change(stamp, frame_id, image_size)
        if reason:
            self.reset()
            self.last_reset_reason = reason
        self._frame_id = frame_id if frame_id is not None else self._frame_id
        self._size = tuple(image_size) if image_size is not None else self._size
        self._stamp = stamp
        cfg = self.config
        predicted = [tr.predict(stamp) for tr in self.tracks]
        match: Match = associate(
            np.array([tr.class_id for tr in self.tracks], dtype=np.int64),
            np.array([p[1] for p in predicted]).reshape(-1, 3),
            np.array([tr.box for tr in self.tracks]).reshape(-1, 4),
            np.array([int(o.class_id) for o in objects], dtype=np.int64),
            np.array([np.asarray(o.t, np.float64) for o in objects]).reshape(-1, 3),
            np.array([np.asarray(o.roi, np.float64) for o in objects]).reshape(-1, 4),
            max_distance=cfg.max_distance, min_iou=cfg.min_iou, iou_weight=cfg.iou_weight,
            depth_weight=cfg.depth_weight)
        tracks: list[Track | None] = [None] * len(objects)
        preds: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(objects)
        for ti, di in match.pairs:
            tracks[di], preds[di] = self.tracks[ti], predicted[ti]
        duplicates = self._duplicates(objects, [di for _, di in match.pairs], match.unmatched_detections)
        return FramePlan(stamp, tracks, preds, [self.tracks[i] for i in match.unmatched_tracks], reason, duplicates)

    def _duplicates(self, objects: Sequence[Any], matched: list[int], unmatched: list[int]) -> set[int]:
        """Unmatched detections whose box overlaps a matched detection of their class by >= duplicate_iou."""
        out = set()
        for di in unmatched:
            same = [m for m in matched if int(objects[m].class_id) == int(objects[di].class_id)]
            if same and box_iou(np.asarray(objects[di].roi), np.array([objects[m].roi for m in same])).max() \
                    >= self.config.duplicate_iou:
                out.add(di)
        return out

    def finish(self, plan: FramePlan, objects: Sequence[Any]) -> list[Any]:
        """Fold the frame's (possibly refined) ``objects`` into their tracks, start tracks for new ones, age and
        drop the rest; returns copies of the objects of confirmed tracks with ``track_id`` set and, with
        ``filter`` on, the filtered pose (R, t, quaternion)."""
        cfg = self.config
        out = []
        for i, (obj, track) in enumerate(zip(objects, plan.tracks)):
            if i in plan.duplicates:
                continue
            R = np.asarray(obj.R, np.float64)
            t = np.asarray(obj.t, np.float64).reshape(3)
            if track is None:
                track = Track(self._next_id, int(obj.class_id), PoseFilter(R, t, cfg), np.asarray(obj.roi, float),
                              plan.stamp)
                self._next_id += 1
                self.tracks.append(track)
            else:
                R = self._aligned(track, R, plan.stamp)
                track.filter.update(R, t, plan.stamp - track.stamp)
                track.stamp, track.box = plan.stamp, np.asarray(obj.roi, float)
                track.hits += 1
                track.missed = 0
            track.confirmed = track.confirmed or track.hits >= cfg.min_hits
            if not track.confirmed:
                continue
            if cfg.filter:
                R, t = track.filter.R, track.filter.t
            out.append(dataclasses.replace(obj, R=R.copy(), t=t.copy(), track_id=track.track_id,
                                           quaternion=np.asarray(mat_to_quat(R), np.float64)))
        for track in plan.unmatched:
            track.missed += 1
        self.tracks = [tr for tr in self.tracks
                       if tr.missed == 0 or (tr.confirmed and tr.missed <= cfg.max_missed)]
        return out

    def update(self, objects: Sequence[Any], stamp: float | None = None, frame_id: str | None = None,
               image_size: tuple[int, int] | None = None) -> list[Any]:
        """One frame: :meth:`begin` then :meth:`finish` (see the module docstring)."""
        return self.finish(self.begin(objects, stamp, frame_id, image_size), objects)

    def _aligned(self, track: Track, R: np.ndarray, stamp: float) -> np.ndarray:
        """R, or for a symmetric class its equivalent closest to the track's predicted rotation."""
        if not self.config.symmetric_alignment:
            return R
        aligner = self._aligner(track.class_id)
        if aligner is None:
            return R
        return aligner.closest(R, track.predict(stamp)[0])

    def _aligner(self, class_id: int) -> SymmetryAligner | None:
        if class_id not in self._aligners:
            symmetric = class_id < len(self._symmetric) and self._symmetric[class_id]
            pts = self._points[class_id] if symmetric and class_id < len(self._points) else None
            self._aligners[class_id] = (SymmetryAligner(pts) if pts is not None and len(pts) >= 4 else None)
        return self._aligners[class_id]
