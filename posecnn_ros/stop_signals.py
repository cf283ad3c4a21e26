"""SIGINT / SIGTERM handling of the node's process, installed before anything slow is imported.

The first SIGINT or SIGTERM asks for a clean stop (`StopSignals.requested`): the node finishes or drops the frame in
progress, shuts ROS down and exits with 0. A second one ends the process at once, also with exit code 0, after
flushing stdout/stderr (`leave_now`); the user has asked twice. Before ROS is initialised (`immediate`, while the
entry point imports torch and rclpy) there is nothing to clean up, and the first signal ends the process at once.

rclpy's own handlers are not used (the node calls `rclpy.init` with `SignalHandlerOptions.NO`): they shut the ROS
context down from a signal at any moment, so that a signal during start-up or during a frame ends in errors from
whatever was using the context. This module imports nothing heavy, so that an entry point can install the handlers
first (`install()`) and a signal during the imports of torch and rclpy is handled too.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def leave_now(code: int = 0) -> None:
    """Flush stdout/stderr and end the process with `code` without running finalisers: for when a thread still
    runs native code (the interpreter's finalisation would abort the process under it)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


class StopSignals:
    """Records SIGINT/SIGTERM: the first sets `requested`, a second calls `leave_now(0)`. While `immediate` is
    True (nothing to clean up yet) the first one calls `leave_now(0)` already."""

    def __init__(self, immediate: bool = False) -> None:
        self._event = threading.Event()
        self.signum: int | None = None
        self.immediate = immediate

    @property
    def requested(self) -> bool:
        """True once a stop signal has arrived."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested (True) or `timeout` seconds pass (False)."""
        return self._event.wait(timeout)

    def request(self, signum: int | None = None) -> None:
        """Ask for a stop as the first signal does (also usable without a signal)."""
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        """The signal handler (runs on the main thread)."""
        if self._event.is_set() or self.immediate:
            leave_now(0)
        self.request(signum)

    def install(self) -> StopSignals:
        """Make this object the SIGINT and SIGTERM handler of the process; returns self."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.handle)
        return self


def install() -> StopSignals:
    """The process's StopSignals, installing one (`immediate`: a signal ends the process at once) on first use;
    later calls return the installed one. The caller sets `immediate = False` once it holds something to clean up.

    Only from the main thread, and only in a process that is the node (it replaces Python's KeyboardInterrupt)."""
    current = signal.getsignal(signal.SIGINT)
    owner = getattr(current, "__self__", None)
    if isinstance(owner, StopSignals) and signal.getsignal(signal.SIGTERM) == current:
        return owner
    return StopSignals(immediate=True).install()
