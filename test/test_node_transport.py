"""The node as a process with image_transport's compressed input (JPEG/PNG on `<image>/compressed`, compressedDepth on
`<depth>/compressedDepth`), rectification with a distorted CameraInfo, and its /diagnostics — driven by an rclpy
peer, with the deterministic stand-in estimator (test/_node_helpers.py)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

import _node_helpers as helpers  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402

from posecnn_core.geometry import project_points  # noqa: E402
from posecnn_ros import compressed as cz  # noqa: E402

W, H = 160, 120
DOMAIN = helpers.session_domain_id(60)
P_RECT = np.array([[150.0, 0, 70.0, 0], [0, 150.0, 66.0, 0], [0, 0, 1, 0]])


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """One node (compressed transport, use_depth, remapped image topic) and one peer for the module."""
    ckpt, objs = helpers.write_fake_model(tmp_path_factory.mktemp("fake_model"))
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": ckpt, "objects": objs, "image_qos": "reliable",
                                        "image_transport": "compressed", "use_depth": True,
                                        "sync_tolerance": 0.01},
                               remaps={"image": "/cam/color/image_raw", "depth": "/cam/depth/image_raw"})
    peer = helpers.Peer(DOMAIN)
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    peer.pub_jpeg = peer.node.create_publisher(CompressedImage, "/cam/color/image_raw/compressed", reliable)
    peer.pub_cdepth = peer.node.create_publisher(CompressedImage, "/cam/depth/image_raw/compressedDepth", reliable)
    try:
        assert proc.wait_for_output("ready on cpu", 30), proc.output
        assert ("image /cam/color/image_raw/compressed" in proc.output
                and "depth /cam/depth/image_raw/compressedDepth" in proc.output), proc.output
        assert peer.wait_until(lambda: peer.pub_jpeg.get_subscription_count() > 0
                               and peer.pub_cdepth.get_subscription_count() > 0
                               and peer.pub_info.get_subscription_count() > 0
                               and peer.output_subs["estimates"].get_publisher_count() > 0, 30), proc.output
        yield proc, peer
        assert proc.stop(signal.SIGINT) == 0, proc.output
    finally:
        helpers.teardown(proc, peer)


_stamps = [500]


def next_stamp() -> tuple[int, int]:
    _stamps[0] += 1
    return _stamps[0], 125_000_000


def _rgb(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def send(peer, image: CompressedImage | None = None, depth: CompressedImage | None = None, info=None,
         codec: str = "jpeg", stamp: tuple[int, int] | None = None) -> tuple[int, int]:
    """Publish compressedDepth, camera_info and a compressed image, all with `stamp` (default: a fresh one), as a
    camera does; returns the stamp."""
    stamp = stamp or next_stamp()
    if image is None:
        image = CompressedImage()
        image.format, image.data = cz.encode_compressed(_rgb(), codec)
    if depth is None:
        depth = CompressedImage()
        depth.format, depth.data = cz.encode_compressed_depth(np.full((H, W), 800, np.uint16))
    info = info or helpers.make_camera_info(W, H)
    for msg, frame in ((image, "cam_color_optical"), (depth, "cam_depth_optical"), (info, "cam_color_optical")):
        msg.header.frame_id = frame
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    peer.pub_cdepth.publish(depth)
    peer.pub_info.publish(info)
    peer.pub_jpeg.publish(image)
    return stamp


def send_answered(peer, name: str = "detections", **frame):
    """Send one frame (fresh stamp), resent until the node answers it on `name`; (stamp, answer or None)."""
    stamp = next_stamp()
    return stamp, peer.send_until_answered(lambda: send(peer, stamp=stamp, **frame), name, timeout=30)


def answer(peer, name: str, stamp, timeout: float = 10.0):
    return peer.answer(name, stamp, timeout)


def test_jpeg_and_png_frames_answered_with_their_header(running) -> None:
    proc, peer = running
    for codec in ("jpeg", "png"):
        stamp, det = send_answered(peer, codec=codec)
        assert det is not None, proc.output
        assert det.header.frame_id == "cam_color_optical"
        assert [d.id for d in det.detections] == ["box_0", "can_0", "can_1"]
        est = answer(peer, "estimates", stamp)
        assert est is not None and all(e.refined for e in est.estimates), "compressedDepth was not paired"


def test_bad_compressed_data_is_reported_and_skipped(running) -> None:
    proc, peer = running
    cases = [("rgb8; jpeg compressed bgr8", b"\xff\xd8 garbage", None, "compressed image cannot be decoded"),
             ("rgb8; jpeg compressed bgr8", b"", None, "compressed image has no data"),
             (None, None, ("16UC1; compressedDepth rvl", bytes(20)), "compressed depth format '16UC1; "
                                                                     "compressedDepth rvl' is not supported")]
    for fmt, data, depth, expected in cases:
        image = None
        if fmt is not None:
            image = CompressedImage(format=fmt)
            image.data = data
        depth_msg = None
        if depth is not None:
            depth_msg = CompressedImage(format=depth[0])
            depth_msg.data = depth[1]
        stamp = next_stamp()
        assert peer.resend_until(lambda: send(peer, image=image, depth=depth_msg, stamp=stamp),
                                 lambda: expected in proc.output, 30), proc.output
        assert send_answered(peer)[1] is not None, proc.output
    assert "frame skipped" in proc.output and proc.proc.poll() is None


def test_distortion_warns_once_and_rectify_uses_p(running) -> None:
    proc, peer = running
    info = helpers.make_camera_info(W, H)
    info.d = [-0.2, 0.05, 0.0, 0.0, 0.0]
    info.r = np.eye(3).ravel().tolist()
    info.p = P_RECT.ravel().tolist()
    for _ in range(3):
        stamp, est = send_answered(peer, "estimates", info=info)
        assert est is not None, proc.output
    assert proc.output.count("has lens distortion") == 1, proc.output
    K = helpers.camera_k(W, H)
    t0 = np.asarray(helpers.DEFAULT_POSES[0]["t"])
    np.testing.assert_allclose(est.estimates[0].center, project_points(t0[None], K)[0], atol=1e-3)

    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = peer.node.create_client(SetParameters, "/posecnn/set_parameters")
    req = SetParameters.Request(parameters=[Parameter(name="rectify", value=ParameterValue(
        type=ParameterType.PARAMETER_BOOL, bool_value=True))])
    assert peer.call(client, req).results[0].successful  # resent when lost: setting a value twice is harmless
    stamp, est = send_answered(peer, "estimates", info=info)
    assert est is not None, proc.output
    # the stand-in projects with the intrinsics it is given: rectified frames come with P's
    np.testing.assert_allclose(est.estimates[0].center, project_points(t0[None], P_RECT[:, :3])[0], atol=1e-3)
    assert peer.call(client, SetParameters.Request(parameters=[Parameter(name="rectify", value=ParameterValue(
        type=ParameterType.PARAMETER_BOOL, bool_value=False))])).results[0].successful


def test_diagnostics_report_counts_and_levels(running) -> None:
    proc, peer = running
    assert send_answered(peer)[1] is not None, proc.output

    def ours(level=None):
        out = []
        for arr in peer.messages("diagnostics"):
            for status in arr.status:
                if status.name == "posecnn: pose estimation" and (level is None or status.level == bytes([level])):
                    out.append(status)
        return out

    assert peer.wait_until(lambda: len(ours()) >= 2, 10), proc.output
    status = ours()[-1]
    kv = {v.key: v.value for v in status.values}
    assert status.hardware_id == "cpu" and kv["device"] == "cpu" and kv["image transport"] == "compressed"
    assert int(kv["frames processed"]) >= 1 and int(kv["frames rejected"]) >= 0
    assert float(kv["latency p50 (ms)"]) > 0 and kv["state"] == "active"
    assert kv["checkpoint"].endswith("fake.json")
    # a rejected frame makes the next report a warning that says so
    bad = CompressedImage(format="rgb8; jpeg compressed bgr8")
    bad.data = b"nope"
    peer.clear()
    stamp = next_stamp()
    assert peer.resend_until(lambda: send(peer, image=bad, stamp=stamp),
                             lambda: any("rejected" in s.message for s in ours(1)), 30), \
        [(s.level, s.message) for s in ours()]
    # then, with frames flowing and nothing dropped or rejected, OK
    for _ in range(3):
        assert send_answered(peer)[1] is not None, proc.output
    peer.clear()
    stop = time.monotonic() + 15
    while time.monotonic() < stop and not ours(0):
        send(peer)
        time.sleep(0.3)
    assert ours(0) and "processing at" in ours(0)[-1].message, [(s.level, s.message) for s in ours()]
