"""Object tracks over an image sequence: stable ids, filtered poses, tracked refinement (ROS-free).

- ``config``: :class:`TrackerConfig`, every setting of the tracker (frozen dataclass, defaults measured with
  bench/bench_tracking.py, docs/tracking.md).
- ``association``: matching a frame's detections to the tracks, per class, by 3D centre distance and box
  overlap with an optimal assignment.
- ``pose_filter``: a constant-velocity (alpha-beta) filter on translation and a tangent-space one on rotation,
  with an outlier gate; :class:`SymmetryAligner` picks, for a symmetric object, the equivalent rotation closest
  to the track's before filtering.
- ``tracker``: :class:`Tracker`, the track lifecycle (tentative -> confirmed after ``min_hits`` hits, dropped
  after ``max_missed`` missed frames), resets (on request, camera frame id or image size change, time going
  backwards).
- ``metrics``: id switches, frame-to-frame jitter and ADD/ADD-S of estimates over a sequence with object
  identities (bench/bench_tracking.py).

Use: ``objects = tracker.update(result.objects, stamp=t)``; or pass the tracker to
``PoseEstimator.estimate(..., tracker=tracker, stamp=t)``, which then also refines confirmed tracks from their
predicted pose when it has depth (``tracked_refinement``).
"""
from .association import Match, associate, box_iou
from .config import TrackerConfig
from .pose_filter import PoseFilter, SymmetryAligner
from .tracker import FramePlan, Track, Tracker

__all__ = ["TrackerConfig", "Tracker", "Track", "FramePlan", "PoseFilter", "SymmetryAligner", "Match",
           "associate", "box_iou"]
