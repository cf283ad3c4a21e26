"""Pairs each image with the CameraInfo of the same stamp, as image_transport's camera subscriber does.

Cameras publish an image and its CameraInfo with the same stamp, on two topics, so either may arrive first.
`CameraInfoPairing` keeps the last CameraInfo messages by stamp (a bounded buffer); `match` returns the one with the
image's stamp, waiting up to a given time for it to arrive, and otherwise the newest one (flagged as not exact, so
that the caller can say so). Nothing here imports rclpy: messages only need `header.stamp.sec` and `.nanosec`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, NamedTuple

Stamp = tuple[int, int]  # (sec, nanosec)


def stamp_of(msg: Any) -> Stamp:
    """The (sec, nanosec) stamp of a message with a std_msgs/Header."""
    return int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)


def stamp_text(stamp: Stamp) -> str:
    """A stamp in seconds, as the log shows it: "12.250000000"."""
    return f"{stamp[0]}.{stamp[1]:09d}"


class Match(NamedTuple):
    """The CameraInfo for an image: `info` is None when none has arrived at all; `exact` is True when its stamp is
    the image's."""

    info: Any | None
    exact: bool


class CameraInfoPairing:
    """The last `capacity` CameraInfo messages by stamp; thread-safe (`add` from a callback, `match` from the worker).

    `match(stamp, wait_s)` blocks at most `wait_s` seconds, and not at all once a CameraInfo with this or a later
    stamp has arrived (a camera publishes its CameraInfo in stamp order, so a missing one will not come later).
    """

    def __init__(self, capacity: int = 30) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._by_stamp: OrderedDict[Stamp, Any] = OrderedDict()
        self._newest: Any | None = None
        self._cond = threading.Condition()

    def add(self, info: Any) -> None:
        """Keep `info` (a CameraInfo); the oldest one goes when the buffer is full."""
        stamp = stamp_of(info)
        with self._cond:
            self._by_stamp[stamp] = info
            self._by_stamp.move_to_end(stamp)
            while len(self._by_stamp) > self._capacity:
                self._by_stamp.popitem(last=False)
            self._newest = info
            self._cond.notify_all()

    @property
    def newest(self) -> Any | None:
        """The CameraInfo that arrived last, or None."""
        with self._cond:
            return self._newest

    def clear(self) -> None:
        """Forget every CameraInfo (e.g. when the node unsubscribes)."""
        with self._cond:
            self._by_stamp.clear()
            self._newest = None

    def _settled(self, stamp: Stamp) -> bool:
        """True when waiting longer cannot help: the stamp's CameraInfo is here, or a later one is."""
        return any(s >= stamp for s in self._by_stamp)

    def match(self, stamp: Stamp, wait_s: float) -> Match:
        """The CameraInfo with `stamp` (exact), waiting up to `wait_s` seconds for it; else the newest one."""
        with self._cond:
            self._cond.wait_for(lambda: self._settled(stamp), timeout=max(0.0, wait_s))
            info = self._by_stamp.get(stamp)
            if info is not None:
                return Match(info, True)
            return Match(self._newest, False)
