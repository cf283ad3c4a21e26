"""Per-cause throttled logging: the first occurrence of each cause is logged at once, repeats at most once per
period with a count of the suppressed ones (rclpy's own throttling is per call site, not per cause)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class ThrottledLog:
    """Wraps an rclpy-like logger (`error`, `warning`, `info` methods taking a string)."""

    def __init__(self, logger: Any, period_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not period_s >= 0:
            raise ValueError(f"period_s must be >= 0, got {period_s!r}")
        self._logger = logger
        self._period = period_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def _emit(self, level: str, cause: str, message: str) -> bool:
        now = self._clock()
        with self._lock:
            self.counts[cause] = self.counts.get(cause, 0) + 1
            last = self._last.get(cause)
            if last is not None and now - last < self._period:
                self._suppressed[cause] = self._suppressed.get(cause, 0) + 1
                return False
            skipped = self._suppressed.pop(cause, 0)
            self._last[cause] = now
        text = message + (f" [{skipped} more like this since the last report]" if skipped else "")
        # one call site per severity: rclpy refuses to log from one call site at different severities
        if level == "error":
            self._logger.error(text)
        elif level == "warning":
            self._logger.warning(text)
        else:
            self._logger.info(text)
        return True

    def error(self, cause: str, message: str) -> bool:
        """Log `message` as an error unless `cause` was reported less than a period ago; True if logged."""
        return self._emit("error", cause, message)

    def warning(self, cause: str, message: str) -> bool:
        """As `error`, at warning level."""
        return self._emit("warning", cause, message)

    def info(self, cause: str, message: str) -> bool:
        """As `error`, at info level."""
        return self._emit("info", cause, message)
