"""A one-slot mailbox served by a worker thread: the newest item replaces a pending one, which is counted as dropped.

Producers (ROS callbacks) never block on processing; the worker processes one item at a time, always the newest.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestFrameWorker(Generic[T]):
    """Run `process(item)` on a background thread for the most recent item submitted.

    `on_error(exc)` is called (on the worker thread) when `process` raises; the worker keeps going.
    `before_first` runs once on the worker before any item (e.g. a GPU warm-up); items submitted meanwhile
    replace one another like any other pending item.
    """

    def __init__(self, process: Callable[[T], None], on_error: Callable[[BaseException], None],
                 before_first: Callable[[], None] | None = None, name: str = "latest-frame-worker") -> None:
        self._process = process
        self._on_error = on_error
        self._before_first = before_first
        self._cond = threading.Condition()
        self._pending: T | None = None
        self._has_pending = False
        self._stopping = False
        self._busy = False
        self.submitted = 0
        self.dropped = 0
        self.processed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Hand over `item`; returns True when it replaced a pending (now dropped) item. Never blocks on work."""
        with self._cond:
            replaced = self._has_pending
            if replaced:
                self.dropped += 1
            self._pending, self._has_pending = item, True
            self.submitted += 1
            self._cond.notify()
            return replaced

    @property
    def busy(self) -> bool:
        """True while an item is being processed or waits in the slot."""
        with self._cond:
            return self._busy or self._has_pending

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is pending or processing (tests, shutdown); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._busy or self._has_pending), timeout)

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the worker to finish its current item and exit; pending work is discarded. True if it ended."""
        with self._cond:
            self._stopping = True
            self._has_pending, self._pending = False, None
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _report(self, exc: BaseException) -> None:
        try:
            self._on_error(exc)
        except BaseException as second:  # noqa: BLE001 - the reporter failing must not end the worker either
            print(f"{self._thread.name}: {type(exc).__name__}: {exc} (reporting failed: {second})", file=sys.stderr)

    def _run(self) -> None:
        if self._before_first is not None:
            with self._cond:
                self._busy = True
            try:
                self._before_first()
            except BaseException as exc:  # noqa: BLE001 - reported, the worker carries on
                self._report(exc)
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._has_pending or self._stopping)
                if self._stopping:
                    return
                item, self._pending, self._has_pending = self._pending, None, False
                self._busy = True
            try:
                self._process(item)  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: BLE001 - a bad frame must not kill the worker
                self._report(exc)
            finally:
                with self._cond:
                    self.processed += 1
                    self._busy = False
                    self._cond.notify_all()
