"""The node as a real process (`python -m posecnn_ros.node`) with the deterministic stand-in estimator, driven by
an in-process rclpy peer: outputs, stamps/frames, TF, markers/label consistency, bad inputs, parameters,
back-pressure and signals. Each session uses its own ROS_DOMAIN_ID and localhost-only discovery."""

from __future__ import annotations

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
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402

W, H = 160, 120
POSE_TOL_M = 1e-6
DOMAIN = helpers.session_domain_id()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return helpers.write_fake_model(tmp_path_factory.mktemp("fake_model"), mesh="package://posecnn_ros/m.dae")


@pytest.fixture(scope="module")
def running(model):
    """One node (use_depth, reliable image QoS, tf_prefix pc/) and one peer for the module; SIGINT at the end."""
    ckpt, objs = model
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": ckpt, "objects": objs, "image_qos": "reliable",
                                        "use_depth": True, "tf_prefix": "pc/", "sync_tolerance": 0.01,
                                        "depth_scale": 0.001})
    peer = helpers.Peer(DOMAIN)
    try:
        assert proc.wait_for_output("ready on cpu", 30), proc.output
        assert peer.wait_for_node(30, depth=True), proc.output
        yield proc, peer
        code = proc.stop(signal.SIGINT)
        assert code == 0, proc.output
    finally:
        helpers.teardown(proc, peer)


_stamp_counter = [100]


def next_stamp() -> tuple[int, int]:
    _stamp_counter[0] += 1
    return _stamp_counter[0], 250_000_000


def send_frame(peer, image=None, info=None, depth=None, with_info=True, with_depth=True, stamp=None):
    """Publish depth, camera_info and image, all with `stamp` (default: a fresh one) as a camera does (either may
    arrive first; the node pairs them by stamp); returns the stamp (sec, nanosec)."""
    stamp = stamp or next_stamp()
    image = image or helpers.make_image(W, H, "rgb8", stamp=stamp)
    image.header.stamp.sec, image.header.stamp.nanosec = stamp
    if with_depth:
        depth = depth or helpers.make_image(W, H, "16UC1", stamp=stamp)
        depth.header.stamp.sec, depth.header.stamp.nanosec = stamp
        peer.pub_depth.publish(depth)
    if with_info:
        info = info or helpers.make_camera_info(W, H)
        info.header.stamp.sec, info.header.stamp.nanosec = stamp
        peer.pub_info.publish(info)
    peer.pub_image.publish(image)
    return stamp


def send_answered(peer, timeout: float = 30.0, **frame):
    """One frame (fresh stamp) resent until the node answers it; (stamp, its Detection3DArray or None)."""
    stamp = next_stamp()
    return stamp, peer.send_until_answered(lambda: send_frame(peer, stamp=stamp, **frame), "detections", timeout)


def send_until_logged(peer, proc, text: str, timeout: float = 30.0, **frame) -> bool:
    """One frame (fresh stamp) resent until the node's output holds `text`."""
    stamp = next_stamp()
    return peer.resend_until(lambda: send_frame(peer, stamp=stamp, **frame), lambda: text in proc.output, timeout)


def wait_detection(peer, stamp, timeout=10.0):
    """The Detection3DArray with `stamp`, or None."""
    return peer.answer("detections", stamp, timeout)


def _by_stamp(peer, name, stamp):
    def header(m):
        return m.markers[0].header if hasattr(m, "markers") else m.header
    return [m for m in peer.messages(name) if (header(m).stamp.sec, header(m).stamp.nanosec) == stamp]


def test_missing_camera_info_waits_then_recovers(running) -> None:
    proc, peer = running
    assert send_until_logged(peer, proc, "waiting for camera_info on /camera_info", with_info=False), proc.output
    assert send_answered(peer)[1] is not None, proc.output


def test_outputs_for_a_frame(running) -> None:
    proc, peer = running
    stamp = next_stamp()

    def every_output() -> bool:  # each output publisher of the node must have matched the peer: resend until then
        return (all(_by_stamp(peer, n, stamp) for n in ("detections", "estimates", "detections_2d", "label",
                                                        "markers", "overlay"))
                and any(t.header.stamp.sec == stamp[0] for m in peer.messages("tf") for t in m.transforms))
    assert peer.resend_until(lambda: send_frame(peer, stamp=stamp), every_output, 30), proc.output
    det = wait_detection(peer, stamp)
    assert det is not None, proc.output
    assert det.header.frame_id == "cam_optical"
    assert [d.id for d in det.detections] == ["box_0", "can_0", "can_1"]
    for d, truth in zip(det.detections, helpers.DEFAULT_POSES):
        assert d.results[0].hypothesis.class_id == truth["class"]
        assert d.header.stamp.sec == stamp[0] and d.header.frame_id == "cam_optical"
        p = d.bbox.center
        assert [p.position.x, p.position.y, p.position.z] == pytest.approx(truth["t"], abs=POSE_TOL_M)
        q = [p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z]
        assert q == pytest.approx(truth["quaternion"], abs=1e-6)
    assert peer.wait_until(lambda: all(_by_stamp(peer, n, stamp) for n in
                                       ("estimates", "detections_2d", "label", "markers", "overlay")), 5)
    est = _by_stamp(peer, "estimates", stamp)[0]
    assert est.device == "cpu" and est.frames_processed >= 1
    assert all(e.refined for e in est.estimates), "the depth image was not paired with the image"
    assert [s.stage for s in est.stages][0] == "decode" and est.stages[-1].stage == "publish"
    assert est.total_latency_ms > 0
    # TF: parent = image frame, child = prefix + id, same stamp
    assert peer.wait_until(lambda: any(t.header.stamp.sec == stamp[0] for m in peer.messages("tf")
                                       for t in m.transforms), 5)
    tfs = [t for m in peer.messages("tf") for t in m.transforms if t.header.stamp.sec == stamp[0]]
    assert sorted(t.child_frame_id for t in tfs) == ["pc/box_0", "pc/can_0", "pc/can_1"]
    assert {t.header.frame_id for t in tfs} == {"cam_optical"}
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
    tf_pubs = [i for i in peer.node.get_publishers_info_by_topic("/tf") if i.node_name == "posecnn"]
    assert len(tf_pubs) == 1 and tf_pubs[0].topic_type == "tf2_msgs/msg/TFMessage"
    assert tf_pubs[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert tf_pubs[0].qos_profile.durability == DurabilityPolicy.VOLATILE
    # markers: DELETEALL first, one body per detection (mesh for box, cube for can)
    markers = _by_stamp(peer, "markers", stamp)[0].markers
    assert markers[0].action == markers[0].DELETEALL
    bodies = [m for m in markers[1:] if m.ns == "posecnn_objects"]
    assert [m.type for m in bodies] == [bodies[0].MESH_RESOURCE, bodies[0].CUBE, bodies[0].CUBE]
    assert bodies[0].mesh_resource == "package://posecnn_ros/m.dae"
    assert bodies[1].pose.position.x == pytest.approx(-0.1)
    # label image: the class of each object's RoI centre (front-most object painted last in the fake)
    label = _by_stamp(peer, "label", stamp)[0]
    assert (label.encoding, label.width, label.height, label.header.frame_id) == ("mono8", W, H, "cam_optical")
    lab = np.frombuffer(label.data, np.uint8).reshape(H, W)
    assert set(np.unique(lab)) <= {0, 1, 2} and (lab == 1).any() and (lab == 2).any()
    e0 = est.estimates[0]
    u, v = int(0.5 * (e0.roi[0] + e0.roi[2])), int(0.5 * (e0.roi[1] + e0.roi[3]))
    assert lab[v, u] in (1, 2)
    overlay = _by_stamp(peer, "overlay", stamp)[0]
    assert (overlay.encoding, overlay.width, overlay.height) == ("rgb8", W, H)
    info = peer.messages("label_info")
    assert info and [c.class_name for c in info[-1].class_map] == ["__background__", "box", "can"]


@pytest.mark.parametrize("case,expected", [
    ("encoding", "image encoding 'nv24' is not supported"),
    ("size", "but camera_info says"),
    ("k_zero", "no valid focal length"),
    ("k_nan", "contains NaN or inf"),
    ("truncated", "data is truncated"),
    ("empty", "image is empty"),
    ("depth_size", "depth image is 80x60 but the image is"),
    ("depth_encoding", "depth encoding 'rgb8' is not supported"),
])
def test_bad_input_is_logged_and_next_frame_processed(running, case, expected) -> None:
    proc, peer = running
    image, info, depth = helpers.make_image(W, H), None, None
    if case == "encoding":
        image.encoding = "nv24"
    elif case == "size":
        image = helpers.make_image(W // 2, H)
    elif case == "k_zero":
        info = helpers.make_camera_info(W, H, k=np.zeros((3, 3)))
    elif case == "k_nan":
        info = helpers.make_camera_info(W, H, k=np.full((3, 3), np.nan))
    elif case == "truncated":
        image.data = bytes(image.data)[: len(image.data) // 2]
    elif case == "empty":
        image = helpers.make_image(0, 0)
    elif case == "depth_size":
        depth = helpers.make_image(80, 60, "16UC1")
    elif case == "depth_encoding":
        depth = helpers.make_image(W, H, "rgb8")
    assert send_until_logged(peer, proc, expected, image=image, info=info, depth=depth), proc.output
    assert "frame skipped" in proc.output
    assert send_answered(peer)[1] is not None, proc.output
    assert proc.proc.poll() is None


def _set_params(peer, **values):
    client = peer.node.create_client(SetParameters, "/posecnn/set_parameters")
    req = SetParameters.Request()
    for name, value in values.items():
        if isinstance(value, bool):
            pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
        elif isinstance(value, float):
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        elif isinstance(value, int):
            pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        req.parameters.append(ParameterMsg(name=name, value=pv))
    results = peer.call(client, req).results  # resent when lost: setting a value twice is harmless
    peer.node.destroy_client(client)
    return results


def test_parameters_are_validated_at_runtime(running) -> None:
    proc, peer = running
    bad = _set_params(peer, score_threshold=2.0)
    assert not bad[0].successful and "score_threshold" in bad[0].reason
    readonly = _set_params(peer, checkpoint="/tmp/other.pt")
    assert not readonly[0].successful
    ok = _set_params(peer, score_threshold=0.7)
    assert ok[0].successful, ok[0].reason
    stamp, det = send_answered(peer)
    assert det is not None and [d.id for d in det.detections] == ["box_0", "can_0"]
    assert _set_params(peer, score_threshold=0.2)[0].successful


def test_integer_accepted_for_float_parameter_at_runtime(running) -> None:
    proc, peer = running
    ok = _set_params(peer, score_threshold=1)  # an integer for a floating-point parameter
    assert ok[0].successful, ok[0].reason
    stamp, det = send_answered(peer)
    assert det is not None and det.detections == []  # threshold 1.0: no object scores above it
    bad = _set_params(peer, score_threshold="high")
    assert not bad[0].successful
    assert bad[0].reason == "score_threshold: expected a number in [0, 1], got 'high' (string)", bad[0].reason
    assert _set_params(peer, score_threshold=0.2)[0].successful


def test_runtime_parameter_errors_say_name_expected_type_and_value(running) -> None:
    """`ros2 param set` with a wrong type, a value out of range, a read-only or an unknown name: the reason names
    the parameter, what it accepts and the value given (the closest parameter for an unknown name); every set
    goes through the real parameter service, and the node runs on."""
    proc, peer = running
    cases = {
        "max_instances": (2.5, "max_instances: expected an integer in [1, 1000], got 2.5 (double)"),
        "publish.tf": ("yes", "publish.tf: expected a boolean (true or false), got 'yes' (string)"),
        "rectify": (1, "rectify: expected a boolean (true or false), got 1 (integer)"),
        "tf_prefix": (True, "tf_prefix: expected a string: no whitespace, got True (bool)"),
        "score_threshold": (2.0, "score_threshold: expected a number in [0, 1], got 2.0 (double)"),
        "depth_mode": ("fast", "depth_mode: expected one of the strings scale | resample, got 'fast' (string)"),
        "voting.skip_pixels": (0, "voting.skip_pixels: expected an integer in [1, 10000], got 0 (integer)"),
        "camera_info_wait": ("long", "camera_info_wait: expected a number in [0, 10], got 'long' (string)"),
        "score_treshold": (0.5, "unknown parameter 'score_treshold'; did you mean 'score_threshold'?"),
        "foo": (1, "unknown parameter 'foo'; the node's parameters are listed in docs/node.md"),
        "device": ("cuda", "device is read-only: it is set when the node starts (-p device:=... or a "
                           "parameters file), got 'cuda' (string)"),
    }
    for name, (value, expected) in cases.items():
        result = _set_params(peer, **{name: value})
        assert len(result) == 1 and not result[0].successful, (name, result)
        assert result[0].reason == expected, (name, result[0].reason)
    assert all(r.successful for r in _set_params(peer, max_instances=5, **{"publish.tf": True}))
    assert _set_params(peer, max_instances=128)[0].successful
    assert send_answered(peer)[1] is not None, proc.output


def _center(peer, stamp) -> np.ndarray:
    """The image position of the first (box) estimate of the frame with `stamp`."""
    est = peer.answer("estimates", stamp, 10)
    assert est is not None, stamp
    return np.asarray(est.estimates[0].center)


def _expected_center(K: np.ndarray) -> np.ndarray:
    """Where the stand-in puts the box's centre when it is given intrinsics K."""
    from posecnn_core.geometry import project_points

    return project_points(np.asarray(helpers.DEFAULT_POSES[0]["t"])[None], K)[0]


def test_camera_info_is_paired_by_stamp_in_either_order_and_follows_a_zoom(running) -> None:
    """Each image is estimated with the CameraInfo of its own stamp, whether that arrives before or after the
    image, also when a later CameraInfo (the camera zoomed: other intrinsics) has already arrived; an image
    without one of its stamp is estimated with the newest after camera_info_wait, which is said once."""
    proc, peer = running
    assert _set_params(peer, camera_info_wait=2.0)[0].successful
    wide = helpers.camera_k(W, H)
    zooms = [wide * np.array([[z], [z], [1.0]]) for z in (1.0, 1.5, 2.0, 2.5, 3.0)]

    def info_with(K, stamp):
        info = helpers.make_camera_info(W, H, k=K)
        info.header.stamp.sec, info.header.stamp.nanosec = stamp
        return info

    try:
        # CameraInfo first
        stamp = next_stamp()
        assert peer.send_until_answered(lambda: send_frame(peer, info=info_with(zooms[1], stamp), stamp=stamp))
        np.testing.assert_allclose(_center(peer, stamp), _expected_center(zooms[1]), atol=1e-6)

        # the image first, its CameraInfo 0.3 s later (within camera_info_wait)
        stamp = next_stamp()

        def image_then_info() -> tuple[int, int]:
            send_frame(peer, stamp=stamp, with_info=False)
            time.sleep(0.3)
            peer.pub_info.publish(info_with(zooms[2], stamp))
            return stamp
        assert peer.send_until_answered(image_then_info), proc.output
        np.testing.assert_allclose(_center(peer, stamp), _expected_center(zooms[2]), atol=1e-6)

        # zoom: the CameraInfo of the next frame (other intrinsics) arrives before this frame's image
        first, second = next_stamp(), next_stamp()

        def two_infos_then_image() -> tuple[int, int]:
            peer.pub_info.publish(info_with(zooms[3], first))
            peer.pub_info.publish(info_with(zooms[4], second))
            send_frame(peer, stamp=first, with_info=False)
            return first
        assert peer.send_until_answered(two_infos_then_image), proc.output
        assert peer.send_until_answered(lambda: send_frame(peer, info=info_with(zooms[4], second), stamp=second))
        np.testing.assert_allclose(_center(peer, first), _expected_center(zooms[3]), atol=1e-6)
        np.testing.assert_allclose(_center(peer, second), _expected_center(zooms[4]), atol=1e-6)
        assert "using the newest one" not in proc.output, proc.output

        # no CameraInfo of the image's stamp: the newest one is used after the wait, and said once
        assert _set_params(peer, camera_info_wait=0.2)[0].successful
        lonely = [next_stamp(), next_stamp()]
        for stamp in lonely:
            assert peer.send_until_answered(lambda: send_frame(peer, stamp=stamp, with_info=False)), proc.output
            np.testing.assert_allclose(_center(peer, stamp), _expected_center(zooms[4]), atol=1e-6)
        said = [line for line in proc.output.splitlines() if "using the newest one" in line]
        assert len(said) == 1 and said[0].startswith("[WARN]"), said
        assert (f"no camera_info with the image's stamp {lonely[0][0]}.250000000 arrived within camera_info_wait "
                f"= 0.2 s on /camera_info; using the newest one (stamp {second[0]}.250000000)") in said[0], said[0]
    finally:
        assert _set_params(peer, camera_info_wait=0.1)[0].successful


def _start(model, **params):
    ckpt, objs = model
    return helpers.NodeProcess(DOMAIN, {"checkpoint": ckpt, "objects": objs, **params})


def test_fatal_start_up_errors_exit_non_zero(model, tmp_path) -> None:
    ckpt, objs = model
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    other = tmp_path / "other.yaml"
    other.write_text("classes:\n  - {name: mug, extents: [0.1, 0.1, 0.1]}\n")
    cases = {
        "device must be auto": _start(model, device="tpu"),
        "score_threshold": _start(model, score_threshold=5.0),
        "does not exist": _start(model, checkpoint=str(tmp_path / "missing.pt")),
        "missing or corrupt": _start(model, checkpoint=str(corrupt)),
        "does not match checkpoint": _start(model, objects=str(other)),
        f"checkpoint {tmp_path} is a directory, not a regular file": _start(model, checkpoint=str(tmp_path)),
        "object set /dev/null is a character device, not a regular file": _start(model, objects="/dev/null"),
    }
    for expected, proc in cases.items():  # seven processes start at once: slow on a loaded 2-core machine
        code = proc.wait(180)
        out = proc.output
        assert code == 2 and expected in out and "cannot start" in out, (expected, out)
        assert "Traceback" not in out and out.count("[FATAL]") == 1, out


def test_start_up_integer_for_float_and_unknown_parameter(model) -> None:
    """Integers for floating-point parameters are accepted; unknown names give one warning naming each with the
    closest parameter, and the node runs on (here it also hints that camera_info comes without images)."""
    ok = _start(model, score_threshold=1, nms_iou=0)  # integers for floating-point parameters
    typo = _start(model, score_treshold=0.5, foo=1, **{"voting.skip_pixel": 3})
    try:
        assert ok.wait_for_output("ready on cpu", 60), ok.output
        assert ok.stop(signal.SIGINT) == 0, ok.output
        assert typo.wait_for_output("ready on cpu", 60), typo.output
        warning = [line for line in typo.output.splitlines() if "unknown parameter" in line]
        assert len(warning) == 1 and warning[0].startswith("[WARN]"), typo.output
        assert "foo, score_treshold (did you mean score_threshold?), voting.skip_pixel (did you mean " \
               "voting.skip_pixels?)" in warning[0], warning[0]
        helpers.assert_quiet_exit(typo.stop(signal.SIGTERM), typo.output)
    finally:
        for proc in (ok, typo):
            helpers.teardown(proc)


def _send_pair(peer, image, info, stamp) -> tuple[int, int]:
    """Publish camera_info and image with `stamp`; returns it."""
    for msg in (info, image):
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    peer.pub_info.publish(info)
    peer.pub_image.publish(image)
    return stamp


def test_back_pressure_drops_instead_of_queueing(tmp_path) -> None:
    ckpt, objs = helpers.write_fake_model(tmp_path, sleep_s=0.3, device="cuda:0")
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": ckpt, "objects": objs, "image_qos": "reliable",
                                        "warmup_width": 320, "warmup_height": 240},
                               remaps={"image": "/slowcam/image_raw", "camera_info": "/slowcam/camera_info",
                                       "__ns": "/slow"})
    peer = helpers.Peer(DOMAIN, node_ns="/slow/posecnn", image_topic="/slowcam/image_raw",
                        info_topic="/slowcam/camera_info")
    try:
        assert peer.wait_for_node(30), proc.output
        sent = 40
        info = helpers.make_camera_info(W, H)
        image = helpers.make_image(W, H)
        # a first frame, resent until answered: the node has matched the peer before the burst
        assert peer.send_until_answered(lambda: _send_pair(peer, image, info, (999, 0)), "estimates", 30), \
            proc.output
        time.sleep(1.0)  # a resent copy of it is answered too
        base = peer.messages("estimates")[-1]
        peer.clear()
        start = time.monotonic()
        for i in range(sent):
            image.header.stamp.sec = info.header.stamp.sec = 1000 + i
            peer.pub_info.publish(info)
            peer.pub_image.publish(image)
            time.sleep(0.01)
        burst = time.monotonic() - start
        # the newest frame is processed soon after the burst: no backlog
        assert peer.wait_until(lambda: any(m.header.stamp.sec == 1000 + sent - 1
                                           for m in peer.messages("estimates")), 5), proc.output
        time.sleep(0.5)
        est = peer.messages("estimates")
        assert len(est) <= burst / 0.3 + 3, len(est)
        last = est[-1]
        assert last.header.stamp.sec == 1000 + sent - 1
        processed, dropped = last.frames_processed - base.frames_processed, last.frames_dropped - base.frames_dropped
        assert dropped > 20 and processed == len(est)
        assert processed + dropped + last.frames_rejected - base.frames_rejected == sent
        assert "dropped" in proc.output and "slower than the image rate" in proc.output
        assert "fake warm-up 320x240" in proc.output and "GPU warm-up took" in proc.output
        assert proc.stop(signal.SIGTERM) == 0, proc.output
    finally:
        helpers.teardown(proc, peer)


def test_params_file_is_read(model, tmp_path) -> None:
    """config/posecnn.yaml (with a changed threshold and prefix) is accepted; -p overrides it."""
    text = (helpers.ROOT / "config" / "posecnn.yaml").read_text()
    text = text.replace("score_threshold: 0.1", "score_threshold: 0.7").replace('tf_prefix: ""', 'tf_prefix: "cfg/"')
    params = tmp_path / "params.yaml"
    params.write_text(text)
    ckpt, objs = model
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": ckpt, "objects": objs},  # image_qos: sensor_data
                               remaps={"__ns": "/cfg"}, params_file=params)
    peer = helpers.Peer(DOMAIN, node_ns="/cfg/posecnn", image_topic="/cfg/image", info_topic="/cfg/camera_info")
    try:
        assert proc.wait_for_output("ready on cpu", 30), proc.output
        assert peer.wait_for_node(20), proc.output
        image = helpers.make_image(W, H, stamp=(7, 0))
        for _ in range(50):  # best-effort input: stream like a camera until the node answers
            peer.pub_info.publish(helpers.make_camera_info(W, H, stamp=(7, 0)))
            peer.pub_image.publish(image)
            if peer.wait_until(lambda: peer.count("detections") > 0 and peer.count("tf") > 0, 0.2):
                break
        assert peer.count("detections") > 0, proc.output
        assert [d.id for d in peer.messages("detections")[0].detections] == ["box_0", "can_0"]
        assert peer.messages("tf")[0].transforms[0].child_frame_id == "cfg/box_0"
        assert proc.stop(signal.SIGINT) == 0
    finally:
        helpers.teardown(proc, peer)


def test_no_parameters_uses_the_bundled_demo_files(tmp_path) -> None:
    """Without any parameter the node loads the bundled demo checkpoint and object set (the real estimator, no
    stand-in), subscribes /image and /camera_info, and stops cleanly on SIGINT."""
    proc = helpers.NodeProcess(DOMAIN, {}, fake=False)  # python -m posecnn_ros.node: the real estimator
    try:
        assert proc.wait_for_output("ready on cpu", 90), proc.output
        out = proc.output
        assert "data/models/demo.pt" in out and "demo.yaml" in out, out
        assert "6 classes, image /image, camera_info /camera_info" in out, out
        assert proc.stop(signal.SIGINT) == 0, proc.output
    finally:
        helpers.teardown(proc)

def test_object_set_mismatch_names_the_bundled_set_that_fits(tmp_path) -> None:
    """The real estimator's mismatch error reaches the fatal start-up log: a 21-class PoseCNN-PyTorch state_dict
    with a 2-class object set names the bundled ycb_object set."""
    import torch

    from posecnn_core.network import PoseCNN

    torch.save(PoseCNN(21, fc_dim=16, trunk_width=0.125).state_dict(), tmp_path / "pt21.pth")
    for name in ("a", "b"):
        np.savetxt(tmp_path / f"{name}.xyz", np.array([[0.02, 0.0, 0.0], [-0.02, 0.01, 0.03]]))
    objs = tmp_path / "two.yaml"
    objs.write_text("points: '{name}.xyz'\nclasses: [a, b]\n")
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": str(tmp_path / "pt21.pth"), "objects": str(objs)},
                               fake=False)  # python -m posecnn_ros.node: the real estimator
    code = proc.wait(90)
    out = proc.output
    assert code != 0 and "cannot start" in out, out
    assert "has 21 classes (incl. background) but object set 'two' has 3" in out, out
    assert "bundled object set(s) for 21 classes: ycb_object (" in out and "ycb_object.yaml" in out, out


# ------------------------------------------------------------------------------------------- faults
def _publish_until(peer, proc, width, height, done, stamp, timeout=60.0) -> bool:
    """Publish camera_info + image (`stamp`) every 0.5 s until done() (robust to the first messages of a fresh
    connection being lost); False on timeout or when the node exits."""
    image = helpers.make_image(width, height, stamp=stamp)
    info = helpers.make_camera_info(width, height, stamp=stamp)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.proc.poll() is None:
        peer.pub_info.publish(info)
        peer.pub_image.publish(image)
        if peer.wait_until(done, 0.5):
            return True
    return done()


@pytest.mark.parametrize("delay_s", [0.3, 0.8, 1.5])
def test_sigterm_during_start_up_exits_quietly(model, delay_s) -> None:
    """SIGTERM while the process imports, initialises ROS or loads the model: exit 0, no traceback, no error."""
    proc = _start(model)
    try:
        time.sleep(delay_s)  # when the signal is sent, not an assertion
        proc.proc.send_signal(signal.SIGTERM)
        helpers.assert_quiet_exit(proc.wait(60), proc.output)
    finally:
        helpers.teardown(proc)


def test_sigterm_while_the_model_loads_exits_quietly(tmp_path) -> None:
    ckpt, objs = helpers.write_fake_model(tmp_path, load_s=3.0)
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": ckpt, "objects": objs})
    try:
        assert proc.wait_for_output("fake model loading", 60), proc.output
        proc.proc.send_signal(signal.SIGTERM)
        helpers.assert_quiet_exit(proc.wait(60), proc.output)
    finally:
        helpers.teardown(proc)


def _node_in_a_slow_frame(tmp_path, sleep_s, answered_first=False):
    """A node (stand-in taking `sleep_s` per frame) and a peer, with a frame being processed. `answered_first`: a
    first frame is answered before (the node's publishers have matched the peer's subscriptions too, so that the
    answer to the frame in progress can reach the peer)."""
    ckpt, objs = helpers.write_fake_model(tmp_path, sleep_s=sleep_s)
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": ckpt, "objects": objs, "image_qos": "reliable"},
                               remaps={"__ns": "/slowframe"})
    peer = helpers.Peer(DOMAIN, node_ns="/slowframe/posecnn", image_topic="/slowframe/image",
                        info_topic="/slowframe/camera_info")
    assert proc.wait_for_output("ready on cpu", 60), proc.output
    assert peer.wait_for_node(30), proc.output
    if answered_first:
        assert _publish_until(peer, proc, W, H, lambda: peer.count("estimates") > 0, (4, 0)), proc.output
    started = proc.output.count("fake estimate started")
    assert _publish_until(peer, proc, W, H, lambda: proc.output.count("fake estimate started") > started,
                          (5, 0)), proc.output
    return proc, peer


def test_sigint_twice_during_a_frame_exits_quietly(tmp_path) -> None:
    proc, peer = _node_in_a_slow_frame(tmp_path, sleep_s=5.0)
    try:
        proc.proc.send_signal(signal.SIGINT)
        time.sleep(0.2)  # when the second signal is sent, not an assertion
        proc.proc.send_signal(signal.SIGINT)
        helpers.assert_quiet_exit(proc.wait(30), proc.output)
    finally:
        helpers.teardown(proc, peer)


def test_sigterm_during_a_frame_publishes_it_then_exits(tmp_path) -> None:
    proc, peer = _node_in_a_slow_frame(tmp_path, sleep_s=2.0, answered_first=True)
    try:
        peer.clear()
        proc.proc.send_signal(signal.SIGTERM)
        helpers.assert_quiet_exit(proc.wait(60), proc.output)
        # the frame in progress (under STOP_TIMEOUT_S) was finished and published before the node went away
        assert peer.wait_until(lambda: peer.count("estimates") >= 1, 10), proc.output
        assert [d.id for d in peer.messages("detections")[-1].detections] == ["box_0", "can_0", "can_1"]
    finally:
        helpers.teardown(proc, peer)


def test_sigterm_during_a_frame_longer_than_the_stop_timeout_drops_it(tmp_path) -> None:
    proc, peer = _node_in_a_slow_frame(tmp_path, sleep_s=8.0)  # > STOP_TIMEOUT_S (5 s)
    try:
        peer.clear()
        proc.proc.send_signal(signal.SIGTERM)
        helpers.assert_quiet_exit(proc.wait(60), proc.output)
        assert peer.count("estimates") == 0 and peer.count("detections") == 0  # dropped, not published
    finally:
        helpers.teardown(proc, peer)


def test_bad_ros_arguments_are_one_fatal_line(model, tmp_path) -> None:
    """rcl's start-up errors (parameters file missing or malformed, bad remapping): one FATAL line, exit 2."""
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("posecnn:\n  ros__parameters:\n    score_threshold: [0.1\n")
    not_ros = tmp_path / "not_ros.yaml"
    not_ros.write_text("posecnn:\n  ros__parameters:\n    - score_threshold\n")
    cases = {
        f"parameters file {tmp_path / 'missing.yaml'} does not exist":
            helpers.NodeProcess(DOMAIN, {}, params_file=tmp_path / "missing.yaml"),
        f"parameters file {malformed} is not valid YAML":
            helpers.NodeProcess(DOMAIN, {}, params_file=malformed),
        f"Couldn't parse params file: '--params-file {not_ros}'":
            helpers.NodeProcess(DOMAIN, {}, params_file=not_ros),
        "Couldn't parse remap rule: '-r foo'": helpers.NodeProcess(DOMAIN, {}, ros_args=["-r", "foo"]),
    }
    for expected, proc in cases.items():
        code = proc.wait(180)
        out = proc.output
        fatal = [line for line in out.splitlines() if line.strip()]
        assert code == 2 and len(fatal) == 1, (expected, out)
        assert fatal[0].startswith("[FATAL]") and "cannot start: " in fatal[0] and expected in fatal[0], fatal[0]
        assert "/project/src" not in fatal[0], fatal[0]  # no C source locations


def test_huge_frame_then_small_frame(tmp_path) -> None:
    """A 4000x3000 rgb8 frame (reliable QoS) does not stall the node: a 320x240 frame after it is answered within
    25 s, and the node's peak memory stays under 2.5 GB."""
    ckpt, objs = helpers.write_fake_model(tmp_path)
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": ckpt, "objects": objs, "image_qos": "reliable"},
                               remaps={"__ns": "/huge"})
    peer = helpers.Peer(DOMAIN, node_ns="/huge/posecnn", image_topic="/huge/image", info_topic="/huge/camera_info")

    def answered(stamp):
        return lambda: any((m.header.stamp.sec, m.header.stamp.nanosec) == stamp for m in peer.messages("estimates"))

    try:
        assert proc.wait_for_output("ready on cpu", 60), proc.output
        assert peer.wait_for_node(30), proc.output
        assert _publish_until(peer, proc, 320, 240, answered((1, 0)), (1, 0)), proc.output  # connection is up
        start = time.monotonic()
        peer.pub_info.publish(helpers.make_camera_info(4000, 3000, stamp=(2, 0)))
        peer.pub_image.publish(helpers.make_image(4000, 3000, stamp=(2, 0)))
        # the node pairs the image with the camera_info of its stamp, also when later ones (the small frames that
        # follow once the large one is answered) have arrived while the 36 MB image was in transit
        assert peer.wait_until(answered((2, 0)), 25.0), proc.output
        left = 25.0 - (time.monotonic() - start)
        assert _publish_until(peer, proc, 320, 240, answered((3, 0)), (3, 0), timeout=left), proc.output
        assert time.monotonic() - start < 25.0 + 0.5
        peak = proc.peak_rss_bytes()
        assert peak < 2.5e9, f"peak RSS {peak / 1e9:.2f} GB"
        assert proc.stop(signal.SIGINT, timeout=30) == 0, proc.output
        assert "Traceback" not in proc.output
    finally:
        helpers.teardown(proc, peer)


def test_camera_info_without_images_gives_a_hint(model) -> None:
    """camera_info announcing 4000x3000 frames that never arrive (too large for best-effort transport), while
    320x240 frames of a second camera on the same topics arrive: one warning naming the image topic, the
    announced size, image_qos:=reliable and the other remedies; the node keeps running and answering."""
    proc = helpers.NodeProcess(DOMAIN, {"checkpoint": model[0], "objects": model[1]},  # image_qos: sensor_data
                               remaps={"__ns": "/noimage"})
    peer = helpers.Peer(DOMAIN, node_ns="/noimage/posecnn", image_topic="/noimage/image",
                        info_topic="/noimage/camera_info")
    try:
        assert proc.wait_for_output("ready on cpu", 60), proc.output
        assert peer.wait_for_node(30), proc.output
        large = helpers.make_camera_info(4000, 3000)
        small_image, small_info = helpers.make_image(320, 240), helpers.make_camera_info(320, 240)
        deadline = time.monotonic() + 60
        k = 0
        while time.monotonic() < deadline and "no such image has arrived" not in proc.output:
            k += 1
            large.header.stamp.sec = k
            peer.pub_info.publish(large)  # a 5 Hz camera_info stream whose images are lost on the way
            _send_pair(peer, small_image, small_info, (k, 500))  # the other camera's frames arrive
            time.sleep(0.2)
        hint = [line for line in proc.output.splitlines() if "no such image has arrived" in line]
        assert len(hint) == 1 and hint[0].startswith("[WARN]"), proc.output
        assert "announce 4000x3000 images" in hint[0] and "/noimage/image" in hint[0], hint[0]
        assert "image_qos:=reliable" in hint[0] and "36 MB" in hint[0], hint[0]
        assert "image_transport:=compressed" in hint[0] and "smaller images" in hint[0], hint[0]
        assert "320x240" not in proc.output, proc.output  # the small frames arrive: nothing said about them
        assert peer.count("detections") > 0, proc.output
        helpers.assert_quiet_exit(proc.stop(signal.SIGINT), proc.output)
    finally:
        helpers.teardown(proc, peer)
