"""`TrackerConfig`: the settings of object tracking (association gates, track ages, filter gains)."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class TrackerConfig:
    """Settings of :class:`posecnn_core.tracking.Tracker`; lengths in metres, angles in degrees.

    Association (per class, optimal assignment): a detection and a track may be matched when the detection's
    centre lies within ``max_distance`` of the track's predicted centre, or when their boxes overlap with
    IoU >= ``min_iou``; the cost of a pair is distance / max_distance + ``iou_weight`` x (1 - IoU). The distance
    weighs the part along the viewing ray by ``depth_weight`` (the network's depth is its noisiest coordinate;
    the direction of an object is known far better). A detection of a class whose box overlaps a matched
    detection of that class with IoU >= ``duplicate_iou`` starts no track (a duplicate of a tracked object).

    Lifecycle: a new track is tentative and is confirmed by its ``min_hits``-th hit (1: at once); only
    confirmed tracks are reported. A track not matched for more than ``max_missed`` frames in a row is dropped
    (a tentative one at its first miss).

    Filter (``filter``: on): translation by an alpha-beta (constant-velocity) filter with gains
    ``position_alpha`` and ``position_beta`` across the viewing ray and ``depth_alpha`` (beta scaled alike)
    along it; rotation by the same filter in the tangent space (rotation
    vectors of the innovation) with ``rotation_alpha`` and ``rotation_beta``. alpha = 1, beta = 0 passes the
    measurements through. A measurement further than ``gate_translation`` or ``gate_rotation_deg`` from the
    prediction is an outlier: the track keeps its prediction; after ``max_outliers`` outliers in a row, each
    within the gates of the one before, the filter restarts from the measurement (the object really moved).
    The translation gate weighs the part along the viewing ray by ``depth_weight`` like the association.
    ``symmetric_alignment``: for objects the object set marks symmetric, the measured rotation is first replaced
    by its equivalent (same shape) closest to the track's, so rotations never flip between symmetric copies.

    ``tracked_refinement``: with depth, a confirmed track is refined from its predicted pose by local ICP only
    (``PoseEstimator.estimate(..., tracker=)``); new tracks keep the full refinement with rotation search.
    """

    max_distance: float = 0.15
    min_iou: float = 0.3
    iou_weight: float = 0.5
    depth_weight: float = 0.5
    duplicate_iou: float = 0.5
    min_hits: int = 2
    max_missed: int = 10
    filter: bool = True
    position_alpha: float = 0.5
    position_beta: float = 0.1
    depth_alpha: float = 0.15
    rotation_alpha: float = 0.4
    rotation_beta: float = 0.05
    gate_translation: float = 0.06
    gate_rotation_deg: float = 45.0
    max_outliers: int = 2
    symmetric_alignment: bool = True
    tracked_refinement: bool = False  # measured: 2.4x faster refinement, but ADD 41.5 -> 54.4 mm (docs/tracking.md)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool", bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{f.name} must be a bool, got {value!r}")
            elif f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{f.name} must be an integer, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
        if self.max_distance <= 0 or self.gate_translation <= 0 or self.gate_rotation_deg <= 0:
            raise ValueError("max_distance, gate_translation and gate_rotation_deg must be > 0")
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou!r}")
        if not 0.0 <= self.duplicate_iou <= 1.0:
            raise ValueError(f"duplicate_iou must be in [0, 1], got {self.duplicate_iou!r}")
        if not 0.0 < self.depth_weight <= 1.0:
            raise ValueError(f"depth_weight must be in (0, 1], got {self.depth_weight!r}")
        if self.iou_weight < 0:
            raise ValueError(f"iou_weight must be >= 0, got {self.iou_weight!r}")
        if self.min_hits < 1 or self.max_missed < 0 or self.max_outliers < 1:
            raise ValueError("min_hits and max_outliers must be >= 1, max_missed >= 0")
        for name in ("position_alpha", "depth_alpha", "rotation_alpha"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        for name in ("position_beta", "rotation_beta"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
