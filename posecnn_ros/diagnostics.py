"""The node's health as a diagnostic_msgs/DiagnosticStatus (published on /diagnostics once a second).

`FrameStats` counts what happens to frames (thread-safe: callbacks and the worker thread report to it);
`evaluate` turns a snapshot of it into a level, a message and key/value pairs (pure, unit-testable):

- ERROR: the estimator failed on the last `ERROR_AFTER_FAILURES` or more frames in a row;
- WARN: no image for `STALE_AFTER_S` seconds (or none yet), or frames dropped or rejected since the last report;
- OK otherwise (also while a managed node is inactive: it is not expected to process then).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OK, WARN, ERROR = 0, 1, 2
ERROR_AFTER_FAILURES = 3
STALE_AFTER_S = 5.0
RATE_WINDOW_S = 10.0
LATENCY_SAMPLES = 100


@dataclass
class StatsSnapshot:
    """What FrameStats knew at one moment."""

    now: float
    received: int
    processed: int
    dropped: int
    rejected: int
    failures_in_a_row: int
    last_failure: str
    last_received: float | None
    rate_hz: float
    latencies_ms: list[float] = field(default_factory=list)


class FrameStats:
    """Counters and recent timings of the frames. `clock` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._received = 0
        self._processed = 0
        self._failures_in_a_row = 0
        self._last_failure = ""
        self._last_received: float | None = None
        self._done_times: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)

    def received(self) -> None:
        """An image arrived."""
        with self._lock:
            self._received += 1
            self._last_received = self._clock()

    def processed(self, latency_ms: float) -> None:
        """A frame's results were published, `latency_ms` after its image arrived."""
        with self._lock:
            now = self._clock()
            self._processed += 1
            self._failures_in_a_row = 0
            self._done_times.append(now)
            self._latencies.append(float(latency_ms))

    def failed(self, reason: str) -> None:
        """The estimator raised on a frame."""
        with self._lock:
            self._failures_in_a_row += 1
            self._last_failure = reason

    def snapshot(self, dropped: int, rejected: int) -> StatsSnapshot:
        """The current state, with the worker's dropped and the node's rejected totals."""
        with self._lock:
            now = self._clock()
            while self._done_times and now - self._done_times[0] > RATE_WINDOW_S:
                self._done_times.popleft()
            times = list(self._done_times)
            if len(times) >= 2:
                rate = (len(times) - 1) / max(times[-1] - times[0], 1e-9)
            else:
                rate = 0.0
            return StatsSnapshot(now=now, received=self._received, processed=self._processed, dropped=int(dropped),
                                 rejected=int(rejected), failures_in_a_row=self._failures_in_a_row,
                                 last_failure=self._last_failure, last_received=self._last_received, rate_hz=rate,
                                 latencies_ms=list(self._latencies))


def evaluate(snap: StatsSnapshot, previous: StatsSnapshot | None, active: bool, image_topic: str,
             info: Sequence[tuple[str, str]]) -> tuple[int, str, list[tuple[str, str]]]:
    """(level, message, key/value pairs) of a snapshot; `previous` is the last reported one (for the drops and
    rejections since then), `info` extra pairs (device, model, ...)."""
    lat = np.asarray(snap.latencies_ms, np.float64)
    pct = {p: float(np.percentile(lat, p)) if lat.size else 0.0 for p in (50, 90, 99)}
    values = [
        ("state", "active" if active else "inactive"),
        ("frames received", str(snap.received)),
        ("frames processed", str(snap.processed)),
        ("frames dropped", str(snap.dropped)),
        ("frames rejected", str(snap.rejected)),
        ("rate (Hz)", f"{snap.rate_hz:.2f}"),
        ("latency p50 (ms)", f"{pct[50]:.1f}"),
        ("latency p90 (ms)", f"{pct[90]:.1f}"),
        ("latency p99 (ms)", f"{pct[99]:.1f}"),
        ("latency samples", str(lat.size)),
        ("estimator failures in a row", str(snap.failures_in_a_row)),
        ("seconds since last image", "never" if snap.last_received is None
         else f"{snap.now - snap.last_received:.1f}"),
        *info,
    ]
    if not active:
        return OK, "inactive: not subscribed, not processing", values
    if snap.failures_in_a_row >= ERROR_AFTER_FAILURES:
        return ERROR, (f"estimator failed on the last {snap.failures_in_a_row} frames: "
                       f"{snap.last_failure}"), values
    problems = []
    if snap.last_received is None:
        problems.append(f"no image received yet on {image_topic}")
    elif snap.now - snap.last_received >= STALE_AFTER_S:
        problems.append(f"no image on {image_topic} for {snap.now - snap.last_received:.0f} s")
    dropped = snap.dropped - (previous.dropped if previous else 0)
    rejected = snap.rejected - (previous.rejected if previous else 0)
    if dropped > 0:
        problems.append(f"{dropped} frame(s) dropped (inference slower than the image rate)")
    if rejected > 0:
        problems.append(f"{rejected} frame(s) rejected (bad input, see the log)")
    if problems:
        return WARN, "; ".join(problems), values
    return OK, f"processing at {snap.rate_hz:.1f} Hz, median latency {pct[50]:.0f} ms", values


def status_message(name: str, hardware_id: str, level: int, message: str, values: Sequence[tuple[str, str]]) -> Any:
    """A diagnostic_msgs/DiagnosticStatus."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    return DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in values])


def diagnostic_array(stamp: Any, statuses: Sequence[Any]) -> Any:
    """A diagnostic_msgs/DiagnosticArray stamped `stamp` (builtin_interfaces/Time)."""
    from diagnostic_msgs.msg import DiagnosticArray

    out = DiagnosticArray()
    out.header.stamp = stamp
    out.status = list(statuses)
    return out
