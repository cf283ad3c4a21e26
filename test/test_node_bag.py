"""tools/make_sample_bag.py on hand-written YCB-layout frames, and posecnn_ros.bag_player replaying the bag."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

sys.path.insert(0, str(Path(__file__).parent))

from _ros_required import require  # noqa: E402

pytestmark = pytest.mark.ros
require("rclpy")
require("rosbags")

import _node_helpers as helpers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
W, H = 64, 48
NAMES = ["__background__", "box", "can"]
EXTENTS = np.array([[0, 0, 0], [0.1, 0.06, 0.2], [0.07, 0.07, 0.1]])


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_sample_bag", ROOT / "tools" / "make_sample_bag.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_split(root: Path, frames: int = 3) -> list[dict]:
    """Hand-written YCB-layout frames; returns each frame's (cls_indexes, poses, K, depth)."""
    seq = root / "data" / "0000"
    seq.mkdir(parents=True)
    rng = np.random.default_rng(3)
    truth = []
    K = np.array([[80.0, 0, 31.5], [0, 80.0, 23.5], [0, 0, 1]])
    for i in range(frames):
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        depth = rng.integers(3000, 9000, (H, W), dtype=np.uint16)  # factor 10000 -> 0.3 .. 0.9 m
        poses = np.zeros((3, 4, 2))
        poses[:, :3, 0] = np.eye(3)
        poses[:, 3, 0] = [0.01 * i, 0.0, 0.5]
        poses[:, :3, 1] = cv2.Rodrigues(np.array([0.0, 0.3, 0.1]))[0]
        poses[:, 3, 1] = [-0.05, 0.02, 0.7]
        cv2.imwrite(str(seq / f"{i:06d}-color.png"), rgb[:, :, ::-1])
        cv2.imwrite(str(seq / f"{i:06d}-depth.png"), depth)
        scipy.io.savemat(str(seq / f"{i:06d}-meta.mat"), {"cls_indexes": np.array([[1], [2]]), "poses": poses,
                                                           "intrinsic_matrix": K, "factor_depth": np.array([[10000]])})
        truth.append({"rgb": rgb, "depth_m": depth / 10000.0, "poses": poses, "K": K})
    return truth


def test_sample_bag_contents_and_playback(tmp_path) -> None:
    tool = _load_tool()
    truth = write_split(tmp_path / "split")
    bag = tmp_path / "bag"
    n = tool.write_bag(tmp_path / "split", bag, NAMES, EXTENTS, rate_hz=20.0)
    assert n == 3 and list(bag.glob("*.mcap"))

    from rosbags.rosbag2 import Reader

    store = tool.make_typestore()
    seen: dict[str, list] = {}
    with Reader(bag) as reader:
        assert {c.topic for c in reader.connections} == set(tool.TOPICS)
        for conn, stamp, raw in reader.messages():
            seen.setdefault(conn.topic, []).append((stamp, store.deserialize_cdr(raw, conn.msgtype)))
    assert all(len(v) == 3 for v in seen.values())
    stamp0, image = seen["/image"][0]
    assert (image.encoding, image.width, image.height, image.header.frame_id) == ("rgb8", W, H, tool.FRAME_ID)
    np.testing.assert_array_equal(image.data.reshape(H, W, 3), truth[0]["rgb"])
    assert image.header.stamp.sec * 10**9 + image.header.stamp.nanosec == stamp0
    assert seen["/image"][1][0] - stamp0 == 50_000_000
    depth = seen["/depth"][0][1]
    assert depth.encoding == "16UC1"
    mm = depth.data.view("<u2").reshape(H, W)
    np.testing.assert_allclose(mm * 0.001, truth[0]["depth_m"], atol=0.0006)
    np.testing.assert_allclose(seen["/camera_info"][0][1].k.reshape(3, 3), truth[0]["K"])
    gt = seen["/ground_truth"][2][1]
    assert [d.id for d in gt.detections] == ["box_0", "can_0"]
    p = gt.detections[0].bbox.center.position
    assert (p.x, p.y, p.z) == pytest.approx((0.02, 0.0, 0.5))
    q = gt.detections[1].bbox.center.orientation
    R = cv2.Rodrigues(np.array([0.0, 0.3, 0.1]))[0]
    from scipy.spatial.transform import Rotation
    np.testing.assert_allclose(Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(), R, atol=1e-9)
    assert gt.detections[1].bbox.size.z == pytest.approx(0.1)

    # read back into the installed message classes (the launch test's ground truth)
    from posecnn_ros.bag_player import BagPlayer, read_topics

    read = read_topics(bag, ["/ground_truth", "/camera_info"])
    assert [len(v) for v in read.values()] == [3, 3]
    assert type(read["/ground_truth"][2]).__name__ == "Detection3DArray"
    assert [d.id for d in read["/ground_truth"][2].detections] == ["box_0", "can_0"]
    assert read["/ground_truth"][0].header.stamp.sec * 10**9 + read["/ground_truth"][0].header.stamp.nanosec \
        == stamp0
    np.testing.assert_allclose(np.asarray(read["/camera_info"][0].k).reshape(3, 3), truth[0]["K"])
    with pytest.raises(ValueError, match="no topic"):
        read_topics(bag, ["/nope"])
    with pytest.raises(FileNotFoundError):
        read_topics(tmp_path / "nobag", ["/image"])

    # replay with rclpy: stored bytes published on the recorded topics, timing honoured

    peer = helpers.Peer(helpers.session_domain_id(20))
    got: list = []
    from vision_msgs.msg import Detection3DArray
    from sensor_msgs.msg import Image
    peer.node.create_subscription(Image, "/image", got.append, 10)
    gts: list = []
    peer.node.create_subscription(Detection3DArray, "/ground_truth", gts.append, 10)
    try:
        player = BagPlayer(peer.node, bag)
        assert peer.wait_until(lambda: player.subscription_counts()["/image"] > 0, 10)
        start = time.monotonic()
        stats = player.play(rate=1.0)
        assert stats.published == 12 and stats.by_topic["/image"] == 3
        assert time.monotonic() - start >= 0.09  # 2 intervals of 50 ms
        assert player.wait_delivered(10)
        assert peer.wait_until(lambda: len(got) == 3 and len(gts) == 3, 10)
        np.testing.assert_array_equal(np.frombuffer(got[1].data, np.uint8).reshape(H, W, 3), truth[1]["rgb"])
        assert gts[0].detections[0].results[0].hypothesis.class_id == "box"
        stop = threading.Event()
        stop.set()
        assert player.play(rate=1.0, stop=stop).published == 0
        with pytest.raises(ValueError, match="no topic"):
            BagPlayer(peer.node, bag, topics=["/nope"])
    finally:
        peer.close()


def test_demo_runner_end_to_end(tmp_path) -> None:
    """posecnn_ros.demo with the stand-in estimator answering frame 0's ground truth for every frame."""
    import json
    import shlex
    import subprocess

    from posecnn_core.evaluate import Detection, GroundTruth
    from posecnn_ros.demo import Models, score_frame

    tool = _load_tool()
    truth = write_split(tmp_path / "split")
    bag = tmp_path / "bag"
    tool.write_bag(tmp_path / "split", bag, NAMES, EXTENTS, rate_hz=20.0)
    poses0 = truth[0]["poses"]
    from scipy.spatial.transform import Rotation
    fake_poses = []
    for k, name in enumerate(["box", "can"]):
        x, y, z, w = Rotation.from_matrix(poses0[:, :3, k]).as_quat()
        fake_poses.append({"class": name, "t": poses0[:, 3, k].tolist(), "quaternion": [w, x, y, z], "score": 0.9})
    ckpt, objs = helpers.write_fake_model(tmp_path / "model", poses=fake_poses)
    env = helpers.ros_env(helpers.session_domain_id(40))
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "posecnn_ros.demo", "--bag", str(bag), "--checkpoint", str(ckpt),
                           "--objects", str(objs), "--rate", "1", "--lockstep", "--out", str(out),
                           "--node-command", shlex.join(helpers.FAKE_NODE_COMMAND),
                           "--frame-timeout", "20", "--startup-timeout", "60"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert f"summary: {out / 'summary.json'}" in text
    summary = json.loads((out / "summary.json").read_text())
    frames = {f["index"]: f for f in summary["per_frame"]}
    assert sorted(frames) == [0, 1, 2]
    for o in frames[0]["objects"]:  # frame 0: exact
        assert o["translation_error_m"] == pytest.approx(0.0, abs=1e-6)
        assert o["rotation_error_deg"] == pytest.approx(0.0, abs=1e-3), o
    box2 = next(o for o in frames[2]["objects"] if o["class_name"] == "box")
    assert box2["translation_error_m"] == pytest.approx(0.02, abs=1e-6)  # frame 2: the box moved 2 cm
    assert box2["rotation_error_deg"] == pytest.approx(0.0, abs=1e-3)
    assert summary["objects"] == {"ground_truth": 6, "found": 6, "missed": 0} and summary["node_exit_code"] == 0
    assert summary["add_s"] is None and summary["add_s_not_reported"]  # the fake object set has no model points
    assert sorted(p.name for p in out.glob("*.png")) == ["overlay_0000.png", "overlay_0001.png", "overlay_0002.png"]
    # the pure scoring (posecnn_core.evaluate's matching by box IoU): of two can detections the one whose RoI
    # overlaps the object is matched, the other is a false positive
    I3 = np.eye(3)
    no_models = Models(["__background__", "can"], [False, False], [None, None])
    g = GroundTruth("f", [1], np.hstack([I3, [[0.29], [0], [1.0]]])[None], [[100, 100, 140, 160]])
    a = Detection(1, 0.9, [10, 10, 50, 70], I3, [0, 0, 1.0])
    b = Detection(1, 0.8, [102, 100, 142, 160], I3, [0.3, 0, 1.0])
    frame, _ = score_frame(0, "f", g, ["can_0"], [a, b], ["can_0", "can_1"], no_models)
    obj = frame.objects[0]
    assert obj.detection == "can_1" and frame.false_positives == ["can_0"]
    assert obj.translation_error_m == pytest.approx(0.01)
    assert obj.add_s_m is None  # no models given
    # ADD(-S): a can turned 180 degrees about its axis (z) is an ADD error but no ADD-S error; its rotation error
    # is 180 degrees, up to the symmetry 0
    pts = np.array([[0.03, 0.0, 0.05], [-0.03, 0.0, 0.05], [0.0, 0.03, -0.05], [0.0, -0.03, -0.05]])
    turned = Detection(1, 0.9, [100, 100, 140, 160], np.diag([-1.0, -1.0, 1.0]), [0.29, 0, 1.0])
    for symmetric, expected in ((False, 0.06), (True, 0.0)):
        models = Models(["__background__", "can"], [False, symmetric], [None, pts])
        frame, _ = score_frame(0, "f", g, ["can_0"], [turned], ["can_0"], models)
        obj = frame.objects[0]
        assert obj.add_s_m == pytest.approx(expected)
        assert obj.rotation_error_deg == pytest.approx(180.0)
        assert obj.rotation_error_sym_deg == pytest.approx(0.0 if symmetric else 180.0, abs=1e-6)


def _write_compressed_bag(path: Path, frames: int = 3) -> list[int]:
    """A bag as recorded from image_transport's compressed streams: JPEG /image/compressed, compressedDepth
    /depth/compressedDepth and /camera_info (rosbags writer, mcap); returns the stamps (ns)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from posecnn_ros.compressed import encode_compressed, encode_compressed_depth

    store = get_typestore(Stores.ROS2_KILTED)
    encoder = _load_tool().FrameEncoder(store, NAMES, EXTENTS)
    compressed = store.types["sensor_msgs/msg/CompressedImage"]
    rng = np.random.default_rng(5)
    stamps = [(20 + i) * 10**9 + 100_000_000 for i in range(frames)]
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    with writer:
        conns = {topic: writer.add_connection(topic, msgtype, typestore=store) for topic, msgtype in (
            ("/image/compressed", "sensor_msgs/msg/CompressedImage"), ("/camera_info", "sensor_msgs/msg/CameraInfo"),
            ("/depth/compressedDepth", "sensor_msgs/msg/CompressedImage"))}
        for stamp in stamps:
            K = np.array([[80.0, 0, 31.5], [0, 80.0, 23.5], [0, 0, 1]])
            writer.write(conns["/camera_info"], stamp - 1000, encoder.camera_info(K, W, H, stamp))  # info first
            fmt, data = encode_compressed(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), "jpeg")
            dfmt, ddata = encode_compressed_depth(np.full((H, W), 700, np.uint16))
            for topic, msg_fmt, msg_data in (("/depth/compressedDepth", dfmt, ddata),
                                             ("/image/compressed", fmt, data)):
                msg = compressed(header=encoder._header(stamp), format=msg_fmt,
                                 data=np.frombuffer(msg_data, np.uint8))
                writer.write(conns[topic], stamp, bytes(store.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage")))
    return stamps


def test_compressed_bag_and_on_the_fly_compression_feed_the_node(tmp_path) -> None:
    """A bag of CompressedImage streams plays into the node with image_transport=compressed, and so does the raw
    sample-bag format with `compress=jpeg`; every frame is answered with its stamp and frame id, depth paired."""
    from posecnn_ros.bag_player import BagPlayer

    stamps = _write_compressed_bag(tmp_path / "cbag")
    tool = _load_tool()
    write_split(tmp_path / "split")
    tool.write_bag(tmp_path / "split", tmp_path / "rawbag", NAMES, EXTENTS, rate_hz=20.0)
    domain = helpers.session_domain_id(30)
    ckpt, objs = helpers.write_fake_model(tmp_path / "model")
    # camera_info_wait: a bag's camera_info and image come from two writers; should the node match the camera_info
    # writer a moment after the image writer, the first image waits for its (reliable, resent) camera_info
    proc = helpers.NodeProcess(domain, {"checkpoint": ckpt, "objects": objs, "image_qos": "reliable",
                                        "image_transport": "compressed", "use_depth": True,
                                        "camera_info_wait": 5.0})
    peer = helpers.Peer(domain)
    try:
        assert proc.wait_for_output("ready on cpu", 30), proc.output
        player = BagPlayer(peer.node, tmp_path / "cbag")
        assert player.topics["/image/compressed"] == "sensor_msgs/msg/CompressedImage"
        assert peer.wait_until(lambda: all(player.subscription_counts().values())
                               and peer.output_subs["estimates"].get_publisher_count() > 0, 20), proc.output

        def answered(expected_ns):
            got = {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in peer.messages("estimates")}
            return set(expected_ns) <= got

        def play_until_answered(bag_player, rate, expected_ns, plays: int = 3) -> bool:
            """Play the bag until every frame is answered (by stamp): frames played before the node has matched
            the player are lost, so the bag is played again, at most `plays` times."""
            for _ in range(plays):
                assert bag_player.play(rate=rate).published == 9
                assert bag_player.wait_delivered(20), proc.output
                if peer.wait_until(lambda: answered(expected_ns), 20):
                    return True
            return False

        # a frame every 2 s: none dropped on a loaded machine
        assert play_until_answered(player, 0.5, stamps), proc.output
        est = peer.messages("estimates")
        assert all(m.header.frame_id == tool.FRAME_ID for m in est)
        assert all(e.refined for m in est for e in m.estimates), "compressedDepth not paired"
        assert est[-1].frames_rejected == 0 and est[-1].frames_dropped == 0

        peer.clear()
        raw = BagPlayer(peer.node, tmp_path / "rawbag", topics=["/image", "/camera_info", "/depth"],
                        compress="jpeg")
        assert peer.wait_until(lambda: all(raw.subscription_counts().values()), 20)
        from rosbags.rosbag2 import Reader
        with Reader(tmp_path / "rawbag") as reader:
            raw_stamps = [s for c, s, _ in reader.messages() if c.topic == "/image"]
        # 2 frames/s: no frame is dropped on a loaded machine
        assert play_until_answered(raw, 0.1, raw_stamps), proc.output
        assert all(e.refined for m in peer.messages("estimates") for e in m.estimates)
        assert "/image/compressed" in proc.output and "frame skipped" not in proc.output
    finally:
        peer.close()
        if proc.proc.poll() is None:
            proc.proc.send_signal(2)
            proc.wait(10)
