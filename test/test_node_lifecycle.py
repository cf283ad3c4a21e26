"""The managed node (`posecnn_lifecycle_node`) as a real process, driven through its lifecycle services
(/posecnn/change_state, /posecnn/get_state) by an rclpy peer, with the deterministic stand-in estimator: what it
does in each state, and that cleanup releases the model."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

import _node_helpers as helpers  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402

W, H = 96, 72
DOMAIN = helpers.session_domain_id(90)


# the state each transition leads to when it succeeds
GOAL = {Transition.TRANSITION_CONFIGURE: "inactive", Transition.TRANSITION_CLEANUP: "unconfigured",
        Transition.TRANSITION_ACTIVATE: "active", Transition.TRANSITION_DEACTIVATE: "inactive",
        Transition.TRANSITION_UNCONFIGURED_SHUTDOWN: "finalized", Transition.TRANSITION_INACTIVE_SHUTDOWN: "finalized",
        Transition.TRANSITION_ACTIVE_SHUTDOWN: "finalized"}
PRIMARY = {"unconfigured", "inactive", "active", "finalized"}


class Lifecycle:
    """Calls a managed node's lifecycle services from the peer."""

    def __init__(self, peer, node: str = "/posecnn") -> None:
        self.peer = peer
        self.change = peer.node.create_client(ChangeState, f"{node}/change_state")
        self.get = peer.node.create_client(GetState, f"{node}/get_state")
        assert self.change.wait_for_service(timeout_sec=30) and self.get.wait_for_service(timeout_sec=30)

    def state(self) -> str:
        """The node's primary state (waits while a transition is in progress)."""
        deadline = time.monotonic() + 60
        while True:
            label = self.peer.call(self.get, GetState.Request()).current_state.label
            if label in PRIMARY or time.monotonic() > deadline:
                return label
            time.sleep(0.1)

    def transition(self, transition_id: int, attempt_s: float = 5.0, attempts: int = 6) -> bool:
        """Ask for a transition; True when it succeeded. A request (or its answer) sent right after discovery can
        be lost: without an answer the node's state tells whether it happened, and the request is sent again only
        when the node is still where it was."""
        before = self.state()
        for _ in range(attempts):
            future = self.change.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
            if self.peer.wait_until(future.done, attempt_s):
                return future.result().success
            now = self.state()
            if now != before:
                return now == GOAL[transition_id]
        raise AssertionError(f"no answer from the lifecycle service for transition {transition_id}")


_stamp = [900]


def next_stamp() -> tuple[int, int]:
    _stamp[0] += 1
    return _stamp[0], 0


def send_frame(peer, stamp: tuple[int, int] | None = None) -> tuple[int, int]:
    """Publish camera_info and image with `stamp` (default: a fresh one), as a camera does; returns the stamp."""
    stamp = stamp or next_stamp()
    peer.pub_info.publish(helpers.make_camera_info(W, H, stamp=stamp))
    peer.pub_image.publish(helpers.make_image(W, H, stamp=stamp))
    return stamp


def answered(peer, stamp, timeout: float) -> bool:
    return peer.answer("detections", stamp, timeout) is not None


def send_answered(peer, timeout: float = 30.0) -> bool:
    """One frame, resent until the node answers it (the node may match the peer's publishers a moment after the
    peer has seen its subscriptions)."""
    stamp = next_stamp()
    return peer.send_until_answered(lambda: send_frame(peer, stamp), "detections", timeout) is not None


def test_transitions_and_behaviour_in_each_state(tmp_path) -> None:
    ckpt, objs = helpers.write_fake_model(tmp_path)
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": ckpt, "objects": objs, "image_qos": "reliable"},
                               lifecycle=True)
    peer = helpers.Peer(DOMAIN)
    try:
        assert proc.wait_for_output("unconfigured", 30), proc.output
        life = Lifecycle(peer)
        assert life.state() == "unconfigured"
        assert "loading checkpoint" not in proc.output  # no model before configure
        assert peer.pub_image.get_subscription_count() == 0

        assert life.transition(Transition.TRANSITION_CONFIGURE), proc.output
        assert life.state() == "inactive"
        assert "loading checkpoint" in proc.output and "configured: model loaded on cpu (2 classes)" in proc.output
        # inactive: outputs exist but the node neither subscribes nor publishes
        assert peer.wait_until(lambda: peer.output_subs["detections"].get_publisher_count() > 0, 10)
        assert peer.pub_image.get_subscription_count() == 0
        stamp = send_frame(peer)
        assert not answered(peer, stamp, 1.5)

        assert life.transition(Transition.TRANSITION_ACTIVATE), proc.output
        assert life.state() == "active"
        assert peer.wait_for_node(20), proc.output
        assert send_answered(peer), proc.output
        assert peer.wait_until(lambda: peer.messages("label_info"), 5)  # latched class map sent when active

        assert life.transition(Transition.TRANSITION_DEACTIVATE), proc.output
        assert life.state() == "inactive"
        assert peer.wait_until(lambda: peer.pub_image.get_subscription_count() == 0, 10)
        peer.clear()
        stamp = send_frame(peer)
        assert not answered(peer, stamp, 1.5)

        def ours():
            return [s for a in peer.messages("diagnostics") for s in a.status if s.name == "posecnn: pose estimation"]
        assert peer.wait_until(lambda: ours(), 10)  # once a second
        assert ours()[-1].message.startswith("inactive"), ours()

        assert life.transition(Transition.TRANSITION_CLEANUP), proc.output
        assert life.state() == "unconfigured"
        assert "cleaned up: model released" in proc.output and "still referenced" not in proc.output
        assert peer.wait_until(lambda: peer.output_subs["detections"].get_publisher_count() == 0, 10)

        # configure again (the model loads anew) and activate: frames are answered again
        assert life.transition(Transition.TRANSITION_CONFIGURE) and life.transition(Transition.TRANSITION_ACTIVATE)
        assert proc.output.count("loading checkpoint") == 2
        assert peer.wait_for_node(20), proc.output
        assert send_answered(peer), proc.output
        # shutdown straight from active
        assert life.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN), proc.output
        assert life.state() == "finalized"
        assert "shut down from active" in proc.output
        assert proc.stop(signal.SIGINT) == 0, proc.output
    finally:
        helpers.teardown(proc, peer)


def test_failed_configure_keeps_the_node_unconfigured(tmp_path) -> None:
    ckpt, objs = helpers.write_fake_model(tmp_path)
    missing = tmp_path / "missing.json"
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": str(missing), "objects": objs},
                               remaps={"__ns": "/bad"}, lifecycle=True)
    peer = helpers.Peer(DOMAIN, node_ns="/bad/posecnn")
    try:
        life = Lifecycle(peer, "/bad/posecnn")
        assert not life.transition(Transition.TRANSITION_CONFIGURE)
        assert life.state() == "unconfigured"
        assert "configure failed" in proc.output and "missing.json does not exist" in proc.output, proc.output
        # shutdown from unconfigured, then the process still ends cleanly on SIGTERM
        assert life.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert life.state() == "finalized"
        assert proc.stop(signal.SIGTERM) == 0, proc.output
    finally:
        helpers.teardown(proc, peer)


def test_bad_parameter_stops_the_managed_node_at_start(tmp_path) -> None:
    ckpt, objs = helpers.write_fake_model(tmp_path)
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": ckpt, "objects": objs, "image_transport": "theora"},
                               lifecycle=True)
    code = proc.wait(60)
    assert code == 2 and "image_transport must be one of raw, compressed" in proc.output, proc.output
