"""Object tracking in the node: the `tracking.*` parameters, the reset topic/service, and one tracker per stream.

With `tracking.enabled` the node runs a `posecnn_core.tracking.Tracker` on every frame's estimates: each object
keeps an id over the frames (`<class>_<track id>` as Detection3D / ObjectEstimate id, TF child frame and marker
text; ObjectEstimate.instance stays the frame-local index) and its pose is filtered. The tracks are cleared

- on a message on `~/reset_tracking` (std_msgs/Empty), or a call of the `~/reset_tracking` service
  (std_srvs/Trigger; offered only where std_srvs is installed);
- when `tracking.enabled` is switched;
- by the tracker itself when the camera frame id or the image size changes or the stamps go backwards (a bag that
  loops).

Every reset is logged with its reason. Other `tracking.*` changes take effect on the next frame and keep the
tracks. With `use_depth` and `tracking.tracked_refinement`, the estimator refines confirmed tracks from their
predicted pose (`PoseEstimator.estimate(..., tracker=)`).
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from std_msgs.msg import Empty

from posecnn_core.tracking import Tracker, TrackerConfig

RESET_TOPIC = "~/reset_tracking"
PREFIX = "tracking."


def tracker_config(settings: Mapping[str, Any]) -> TrackerConfig:
    """The TrackerConfig the `tracking.<field>` settings describe (`tracking.enabled` is the node's own)."""
    fields = {f.name for f in dataclasses.fields(TrackerConfig)}
    return TrackerConfig(**{name[len(PREFIX):]: value for name, value in settings.items()
                            if name.startswith(PREFIX) and name[len(PREFIX):] in fields})


class TrackingGlue:
    """The node's tracker. `estimate` runs on the inference worker; `request_reset` and `configure` on the
    executor (a reset or a new configuration is taken over at the start of the next frame, so a frame never
    mixes two)."""

    def __init__(self, object_set: Any, log: Callable[[str], None]) -> None:
        self._object_set = object_set
        self._log = log
        self._lock = threading.Lock()
        self._tracker: Tracker | None = None
        self._reset_reason = ""
        self._pending: TrackerConfig | None = None
        self.resets = 0

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Take new settings: switching tracking on or off clears the tracks; other changes keep them."""
        config = tracker_config(settings)
        with self._lock:
            if not settings[PREFIX + "enabled"]:
                if self._tracker is not None:
                    self._reset_reason = "tracking disabled"
                self._tracker = None
                return
            if self._tracker is None:
                self._tracker = Tracker(config, self._object_set)
                return
            self._pending = config  # taken over by the worker before its next frame

    @property
    def enabled(self) -> bool:
        return self._tracker is not None

    def request_reset(self, reason: str) -> None:
        """Clear the tracks before the next frame."""
        with self._lock:
            self._reset_reason = reason or "reset requested"

    def estimate(self, estimator: Any, rgb: Any, K: Any, depth: Any, stamp: float, frame_id: str) -> Any:
        """The estimator's result for one frame, with tracked objects when tracking is on: through the estimator
        (tracked refinement) when it has depth and takes a tracker, else tracked afterwards."""
        with self._lock:
            tracker, reason, pending = self._tracker, self._reset_reason, self._pending
            self._reset_reason, self._pending = "", None
        if tracker is not None and pending is not None:
            tracker.config = pending
            for track in tracker.tracks:
                track.filter.config = pending
        if reason:
            self.resets += 1
            if tracker is not None:
                tracker.reset()
            self._log(f"tracks cleared: {reason}")
        if tracker is None:
            return estimator.estimate(rgb, K, depth)
        size = tuple(rgb.shape[:2])
        before = tracker.resets
        if (depth is not None and tracker.config.tracked_refinement
                and "tracker" in inspect.signature(estimator.estimate).parameters):
            result = estimator.estimate(rgb, K, depth, tracker=tracker, stamp=stamp, frame_id=frame_id)
        else:
            result = estimator.estimate(rgb, K, depth)
            start = time.perf_counter()
            objects = tracker.update(result.objects, stamp, frame_id, size)
            timings = {**result.timings_ms, "tracking": 1e3 * (time.perf_counter() - start)}
            result = dataclasses.replace(result, objects=objects, timings_ms=timings)
        if tracker.resets != before:
            self.resets += 1
            self._log(f"tracks cleared: {tracker.last_reset_reason}")
        return result

    def subscribe(self, node: Any) -> list[Any]:
        """The reset topic, and the reset service where std_srvs is installed; returns what was created."""
        made = [node.create_subscription(Empty, RESET_TOPIC, lambda _msg: self.request_reset("reset on "
                                                                                            + RESET_TOPIC), 10)]
        try:
            from std_srvs.srv import Trigger
        except ImportError:
            return made

        def on_trigger(_request: Any, response: Any) -> Any:
            self.request_reset("reset_tracking service called")
            response.success, response.message = True, "tracks will be cleared before the next frame"
            return response

        made.append(node.create_service(Trigger, RESET_TOPIC, on_trigger))
        return made

    @staticmethod
    def unsubscribe(node: Any, endpoints: list[Any]) -> None:
        """Remove what `subscribe` created."""
        for endpoint in endpoints:
            if hasattr(endpoint, "srv_type"):
                node.destroy_service(endpoint)
            else:
                node.destroy_subscription(endpoint)
