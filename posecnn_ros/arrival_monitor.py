"""Notices images that CameraInfo announces but that do not arrive (e.g. frames too large for best-effort QoS).

A camera publishes a CameraInfo with every image. When the CameraInfo messages for one image size (width x height)
keep arriving but the images of that size do not — or arrive far less often — the images are being lost on the
way, typically because a large frame travels as many fragments and best-effort QoS loses the whole frame with any
one of them. `ArrivalMonitor` counts both per size, over windows of some seconds, and reports a `Shortfall` once per
size; images of another size (a second, smaller camera on the same topics) do not hide it. Nothing here imports
rclpy.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Size = tuple[int, int]  # (width, height)
Stamp = tuple[int, int]  # (sec, nanosec)


@dataclass(frozen=True)
class Shortfall:
    """Over `seconds`, `announced` CameraInfo messages announced `width` x `height` images but only `arrived`
    images of that size arrived."""

    width: int
    height: int
    announced: int
    arrived: int
    seconds: float

    @property
    def megabytes_rgb8(self) -> float:
        """The size of one such frame as rgb8, in MB."""
        return self.width * self.height * 3 / 1e6


@dataclass
class _Window:
    since: float
    announced: int = 0
    arrived: int = 0


class ArrivalMonitor:
    """Counts CameraInfo announcements and image arrivals per image size.

    A window closes after at least `min_seconds` and `min_announced` CameraInfo messages of a size; when fewer
    than `ratio` times as many images of that size arrived in it, `camera_info` returns a Shortfall (once per size
    for the monitor's life). Images whose size is unknown on arrival (compressed) are attributed by stamp to the
    CameraInfo with the same stamp, when there is one.
    """

    def __init__(self, min_announced: int = 5, min_seconds: float = 5.0, ratio: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_announced = min_announced
        self.min_seconds = min_seconds
        self.ratio = ratio
        self._clock = clock
        self._windows: dict[Size, _Window] = {}
        self._size_by_stamp: OrderedDict[Stamp, Size] = OrderedDict()
        self._reported: set[Size] = set()

    def camera_info(self, width: int, height: int, stamp: Stamp) -> Shortfall | None:
        """Count a CameraInfo announcing a `width` x `height` image; a Shortfall when its window shows one."""
        size = (int(width), int(height))
        now = self._clock()
        self._size_by_stamp[stamp] = size
        while len(self._size_by_stamp) > 100:
            self._size_by_stamp.popitem(last=False)
        window = self._windows.setdefault(size, _Window(since=now))
        window.announced += 1
        seconds = now - window.since
        if window.announced < self.min_announced or seconds < self.min_seconds:
            return None
        self._windows[size] = _Window(since=now)
        if size in self._reported or window.arrived >= self.ratio * window.announced:
            return None
        self._reported.add(size)
        return Shortfall(size[0], size[1], window.announced, window.arrived, seconds)

    def image(self, stamp: Stamp, width: int | None = None, height: int | None = None) -> None:
        """Count an arrived image (its size when known, else the size its CameraInfo announced)."""
        size = (int(width), int(height)) if width is not None and height is not None else \
            self._size_by_stamp.get(stamp)
        if size is not None:
            self._windows.setdefault(size, _Window(since=self._clock())).arrived += 1
