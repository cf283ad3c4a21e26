"""CameraInfo pairing by stamp and the image arrival monitor, without ROS (posecnn_ros/camera_info_pairing.py,
posecnn_ros/arrival_monitor.py)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from posecnn_ros.arrival_monitor import ArrivalMonitor
from posecnn_ros.camera_info_pairing import CameraInfoPairing, stamp_of, stamp_text


def info(sec: int, nanosec: int = 0, fx: float = 100.0) -> SimpleNamespace:
    """A CameraInfo-like message: a header stamp and a focal length to tell them apart."""
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)), fx=fx)


def test_exact_stamp_wins_over_the_newest() -> None:
    pairing = CameraInfoPairing()
    for sec in (1, 2, 3):
        pairing.add(info(sec, fx=100.0 * sec))
    match = pairing.match((2, 0), wait_s=0.0)
    assert match.exact and match.info.fx == 200.0
    assert pairing.newest.fx == 300.0


def test_info_after_its_image_is_waited_for() -> None:
    pairing = CameraInfoPairing()
    pairing.add(info(1, fx=100.0))
    late = threading.Timer(0.15, lambda: pairing.add(info(2, fx=250.0)))
    late.start()
    start = time.monotonic()
    match = pairing.match((2, 0), wait_s=2.0)
    waited = time.monotonic() - start
    late.join()
    assert match.exact and match.info.fx == 250.0
    assert 0.1 <= waited < 1.5, waited


def test_after_the_wait_the_newest_is_used_and_flagged() -> None:
    pairing = CameraInfoPairing()
    pairing.add(info(1, fx=100.0))
    start = time.monotonic()
    match = pairing.match((5, 0), wait_s=0.2)
    assert 0.19 <= time.monotonic() - start < 1.0
    assert not match.exact and match.info.fx == 100.0
    assert pairing.match((9, 0), wait_s=0.0) == (pairing.newest, False)


def test_no_wait_once_a_later_stamp_has_arrived() -> None:
    """A camera publishes CameraInfo in stamp order: once a later one is here, the image's own will not come."""
    pairing = CameraInfoPairing()
    pairing.add(info(7, fx=700.0))
    start = time.monotonic()
    match = pairing.match((6, 500), wait_s=5.0)
    assert time.monotonic() - start < 0.5
    assert not match.exact and match.info.fx == 700.0


def test_nothing_arrived_gives_none_and_clear_forgets() -> None:
    pairing = CameraInfoPairing(capacity=2)
    assert pairing.match((1, 0), wait_s=0.05) == (None, False)
    for sec in (1, 2, 3):
        pairing.add(info(sec))
    assert not pairing.match((1, 0), 0.0).exact  # the oldest went when the buffer was full
    assert pairing.match((3, 0), 0.0).exact
    pairing.clear()
    assert pairing.newest is None and pairing.match((3, 0), 0.0) == (None, False)
    with pytest.raises(ValueError, match="capacity must be at least 1, got 0"):
        CameraInfoPairing(capacity=0)


def test_stamp_helpers() -> None:
    assert stamp_of(info(12, 250_000_000)) == (12, 250_000_000)
    assert stamp_text((12, 5)) == "12.000000005"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_monitor_reports_a_size_whose_images_never_arrive_once() -> None:
    clock = FakeClock()
    monitor = ArrivalMonitor(min_announced=5, min_seconds=5.0, ratio=0.25, clock=clock)
    found = []
    for k in range(60):  # 5 Hz for 12 s: camera_info for 4000x3000 frames, none of which arrive
        clock.now = 0.2 * k
        found.append(monitor.camera_info(4000, 3000, (k, 0)))
    hints = [f for f in found if f is not None]
    assert len(hints) == 1
    gap = hints[0]
    assert (gap.width, gap.height, gap.arrived) == (4000, 3000, 0)
    assert gap.announced == 26 and gap.seconds == pytest.approx(5.0)
    assert gap.megabytes_rgb8 == pytest.approx(36.0)


def test_monitor_sees_large_frames_lost_while_small_ones_arrive() -> None:
    """Two cameras on the same topics: the 640x480 images arrive, the 4000x3000 ones only now and then."""
    clock = FakeClock()
    monitor = ArrivalMonitor(min_announced=5, min_seconds=5.0, ratio=0.25, clock=clock)
    hints = []
    for k in range(100):
        clock.now = 0.1 * k
        for size, stamp in (((640, 480), (k, 1)), ((4000, 3000), (k, 2))):
            hint = monitor.camera_info(*size, stamp)
            hints += [hint] if hint else []
        monitor.image((k, 1), 640, 480)
        if k % 20 == 0:
            monitor.image((k, 2), 4000, 3000)
    assert [(h.width, h.height) for h in hints] == [(4000, 3000)]
    assert 0 < hints[0].arrived < 0.25 * hints[0].announced


def test_monitor_is_quiet_when_images_arrive_and_attributes_compressed_ones_by_stamp() -> None:
    clock = FakeClock()
    monitor = ArrivalMonitor(min_announced=5, min_seconds=5.0, ratio=0.25, clock=clock)
    for k in range(100):
        clock.now = 0.1 * k
        assert monitor.camera_info(1280, 720, (k, 0)) is None
        monitor.image((k, 0))  # a CompressedImage: its size is the one its CameraInfo announced
