"""Tracking in the node (a real process with the stand-in estimator): ids that stay with their objects when the
detector's rank order changes, the frame-local index kept in ObjectEstimate.instance, resets by the
~/reset_tracking topic and by stamps going backwards."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _ros_required import require  # noqa: E402

pytestmark = pytest.mark.ros
require("rclpy")

import _node_helpers as helpers  # noqa: E402

W, H = 160, 120
DOMAIN = helpers.session_domain_id(offset=7)
LEFT = {"class": "can", "t": [-0.1, 0.05, 0.8], "quaternion": [1.0, 0.0, 0.0, 0.0]}
RIGHT = {"class": "can", "t": [0.12, 0.08, 0.9], "quaternion": [0.7071068, 0.7071068, 0.0, 0.0]}


def _frames() -> list[list[dict]]:
    """The two cans swap their score order every frame (so per-frame ids can_0/can_1 swap between them)."""
    return [[{**LEFT, "score": 0.9}, {**RIGHT, "score": 0.6}], [{**LEFT, "score": 0.6}, {**RIGHT, "score": 0.9}]]


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    ckpt, objs = helpers.write_fake_model(tmp_path_factory.mktemp("fake_tracking"))
    spec = json.loads(ckpt.read_text())
    spec["sequence"] = _frames()
    ckpt.write_text(json.dumps(spec))
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": ckpt, "objects": objs, "image_qos": "reliable",
                                        "tracking.enabled": True, "tracking.min_hits": 1})
    peer = helpers.Peer(DOMAIN)
    try:
        assert proc.wait_for_output("ready on cpu", 30), proc.output
        assert peer.wait_for_node(30), proc.output
        yield proc, peer
        assert proc.stop(signal.SIGINT) == 0, proc.output
    finally:
        helpers.teardown(proc, peer)


def _send(peer, sec: int) -> tuple[int, int]:
    stamp = (sec, 0)
    peer.pub_info.publish(helpers.make_camera_info(W, H, stamp=stamp))
    time.sleep(0.02)
    peer.pub_image.publish(helpers.make_image(W, H, "rgb8", stamp=stamp))
    return stamp


def _ids_by_x(peer, stamp) -> dict[float, tuple[str, int]]:
    """For the frame with `stamp`: can x position -> (ObjectEstimate id, its frame-local instance)."""
    def found():
        return [m for m in peer.messages("estimates") if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp]
    assert peer.wait_until(lambda: bool(found()), 10)
    return {round(e.pose.position.x, 2): (e.id, e.instance) for e in found()[0].estimates}


def test_ids_stay_with_their_objects_and_resets_clear_them(running) -> None:
    proc, peer = running
    seen = [_ids_by_x(peer, _send(peer, 200 + k)) for k in range(4)]
    # per frame the instance index follows the score order, which swaps every frame ...
    assert [s[-0.1][1] for s in seen] == [0, 1, 0, 1]
    # ... while the id stays with the can: the same two track ids in every frame
    assert all(s == {-0.1: ("can_0", s[-0.1][1]), 0.12: ("can_1", s[0.12][1])} for s in seen), seen
    tfs = {t.child_frame_id for m in peer.messages("tf") for t in m.transforms}
    assert tfs == {"can_0", "can_1"}
    dets = [d.id for m in peer.messages("detections") for d in m.detections]
    assert set(dets) == {"can_0", "can_1"}

    from std_msgs.msg import Empty
    pub = peer.node.create_publisher(Empty, "/posecnn/reset_tracking", 10)
    assert peer.wait_until(lambda: pub.get_subscription_count() > 0, 10)
    time.sleep(1.0)  # discovery may finish on the publisher's side before the subscriber's
    pub.publish(Empty())
    time.sleep(1.0)  # the reset is carried out before the next frame
    after = _ids_by_x(peer, _send(peer, 210))
    assert proc.wait_for_output("tracks cleared: reset on ~/reset_tracking", 10), proc.output
    assert {v[0] for v in after.values()} == {"can_2", "can_3"}  # new tracks, ids never reused

    back = _ids_by_x(peer, _send(peer, 150))  # the stamps jump back (a bag that loops)
    assert proc.wait_for_output("tracks cleared: time went backwards", 10), proc.output
    assert {v[0] for v in back.values()} == {"can_4", "can_5"}


def test_glue_configuration_and_resets_without_a_node(tmp_path) -> None:
    """TrackingGlue on the stand-in estimator: switching on and off, new gains kept with the tracks, resets."""
    from posecnn_ros.params import NodeSettings
    from posecnn_ros.tracking_glue import TrackingGlue, tracker_config

    ckpt, objs = helpers.write_fake_model(tmp_path)
    est = helpers.FakeEstimator(str(ckpt), str(objs))
    rgb = np.zeros((H, W, 3), np.uint8)
    K = helpers.camera_k(W, H)
    logs: list[str] = []
    glue = TrackingGlue(est.object_set, logs.append)
    settings = NodeSettings.from_values({"tracking.enabled": True, "tracking.min_hits": 1})
    assert tracker_config(settings).min_hits == 1 and tracker_config(settings).gate_translation == 0.06
    glue.configure(settings)
    ids = [[o.track_id for o in glue.estimate(est, rgb, K, None, 1.0 + k, "cam").objects] for k in range(2)]
    assert ids == [[0, 1, 2], [0, 1, 2]]
    glue.configure(settings.updated({"tracking.position_alpha": 0.9}))  # kept tracks, new gain
    out = glue.estimate(est, rgb, K, None, 3.0, "cam")
    assert [o.track_id for o in out.objects] == [0, 1, 2] and "tracking" in out.timings_ms
    assert glue._tracker.tracks[0].filter.config.position_alpha == 0.9
    out = glue.estimate(est, rgb, K, None, 4.0, "other_cam")  # a new camera frame: new tracks
    assert [o.track_id for o in out.objects] == [3, 4, 5] and logs[-1].startswith("tracks cleared: camera frame")
    glue.request_reset("test")
    assert [o.track_id for o in glue.estimate(est, rgb, K, None, 5.0, "other_cam").objects] == [6, 7, 8]
    assert logs[-1] == "tracks cleared: test"
    glue.configure(settings.updated({"tracking.enabled": False}))
    out = glue.estimate(est, rgb, K, None, 6.0, "other_cam")
    assert [o.track_id for o in out.objects] == [None, None, None] and logs[-1] == "tracks cleared: tracking disabled"
