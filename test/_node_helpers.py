"""Test helpers for the ROS node: a deterministic stand-in estimator with PoseEstimator's API, files describing it,
Image/CameraInfo builders, and a process/peer harness (unique ROS_DOMAIN_ID, localhost discovery).

The stand-in ("fake") reads a JSON "checkpoint" holding the class names, the poses to return (or a "sequence" of
pose lists, used in turn frame by frame), a time to sleep per
frame (it then prints "fake estimate started" at the start of each frame) and one to sleep while loading, and a
YAML object set holding class names, extents and optional mesh paths. It returns the checkpoint's poses
for every frame; its label image marks each object's projected 3D box with the class index.

Talking to a node process without races: `Peer.wait_for_subscribers` / `wait_for_node` wait for discovery as the
peer sees it, but the node may match the peer's publishers a moment later, and best-effort messages may be lost at
any time; so a test that needs an answer publishes an image together with its CameraInfo (same stamp, as a camera
does) through `Peer.resend_until` / `send_until_answered`, which resend until the answer with that stamp is there
(bounded), and looks answers up by stamp (`Peer.answer`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from posecnn_core.estimator import EstimationResult, EstimatorConfig, ObjectPose
from posecnn_core.geometry import project_points

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------ the stand-in
# The stand-in returns the real estimator's types, so the node is tested against the real contract.
FakeConfig = EstimatorConfig
FakePose = ObjectPose
FakeResult = EstimationResult


def box_corners(extent: np.ndarray) -> np.ndarray:
    """The 8 corners [8, 3] of an axis-aligned box of size `extent` centred at the origin."""
    half = 0.5 * np.asarray(extent, np.float64)
    return np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half


class FakeEstimator:
    """Deterministic PoseEstimator stand-in: same constructor arguments, attributes and `estimate` contract."""

    def __init__(self, checkpoint: str, objects: str, *, device: str = "auto", config: FakeConfig | None = None):
        try:
            ckpt = json.loads(Path(checkpoint).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"checkpoint {checkpoint} is missing or corrupt: {exc}") from exc
        spec = yaml.safe_load(Path(objects).read_text())
        names = ["__background__"] + [c["name"] for c in spec["classes"]]
        if names != ckpt["class_names"]:
            raise ValueError(f"object set {objects} does not match checkpoint {checkpoint}: classes {names} vs "
                             f"{ckpt['class_names']}")
        extents = np.zeros((len(names), 3))
        points: list[np.ndarray] = [np.zeros((0, 3))]
        for i, c in enumerate(spec["classes"], start=1):
            extents[i] = c["extents"]
            points.append(box_corners(extents[i]))
        meshes = [None] + [c.get("mesh") for c in spec["classes"]]
        if ckpt.get("load_s"):
            print("fake model loading", flush=True)  # tests wait for this
            time.sleep(float(ckpt["load_s"]))
        self.object_set = SimpleNamespace(class_names=names, extents=extents, points=points, mesh_paths=meshes)
        self.class_names = names
        self.device = str(ckpt.get("device", "cpu"))  # a stand-in "cuda:0" exercises the node's warm-up path
        self.config = config or FakeConfig()
        self.poses = ckpt["objects"]
        self.sequence = ckpt.get("sequence") or []  # pose lists used in turn, one per frame (replaces objects)
        self.frames = 0
        self.sleep_s = float(ckpt.get("sleep_s", 0.0))
        self.warmups: list[tuple[int, int]] = []

    def warmup(self, height: int, width: int) -> None:
        self.warmups.append((height, width))
        print(f"fake warm-up {width}x{height}", flush=True)

    def estimate(self, rgb: np.ndarray, K: np.ndarray, depth: np.ndarray | None = None) -> FakeResult:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
        if rgb.size == 0:
            raise ValueError("rgb is empty")
        K = np.asarray(K, np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] == 0:
            raise ValueError(f"K must be a finite [3, 3] camera matrix, got {K.tolist()}")
        start = time.perf_counter()
        if self.sleep_s:
            print(f"fake estimate started ({rgb.shape[1]}x{rgb.shape[0]})", flush=True)  # tests wait for this
            time.sleep(self.sleep_s)
        h, w = rgb.shape[:2]
        label = np.zeros((h, w), np.int32)
        objects: list[FakePose] = []
        counts: dict[int, int] = {}
        poses = self.sequence[self.frames % len(self.sequence)] if self.sequence else self.poses
        self.frames += 1
        for p in sorted(poses, key=lambda p: -p["score"]):
            if p["score"] < self.config.score_threshold or len(objects) >= self.config.max_instances:
                continue
            cls = self.class_names.index(p["class"])
            q = np.asarray(p["quaternion"], np.float64)
            R = Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()
            t = np.asarray(p["t"], np.float64)
            cam = box_corners(self.object_set.extents[cls]) @ R.T + t
            uv = project_points(cam, K)
            x1, y1 = np.clip(uv.min(0), 0, [w - 1, h - 1])
            x2, y2 = np.clip(uv.max(0), 0, [w - 1, h - 1])
            label[int(y1):int(y2) + 1, int(x1):int(x2) + 1] = cls
            center = project_points(t[None], K)[0]
            k = counts.get(cls, 0)
            counts[cls] = k + 1
            objects.append(FakePose(class_id=cls, class_name=p["class"], instance=k, score=float(p["score"]),
                                    votes=int(p.get("votes", 50)), roi=np.array([x1, y1, x2, y2]), center=center,
                                    depth=float(t[2]), R=R, t=t, quaternion=q / np.linalg.norm(q),
                                    refined=depth is not None, refine_status="ok" if depth is not None else ""))
        ms = 1e3 * (time.perf_counter() - start)
        return FakeResult(objects=objects, label=label, timings_ms={"preprocess": 0.0, "network": ms,
                                                                    "voting": 0.0, "rotation": 0.0})


def make_fake_estimator(checkpoint: str, objects: str, device: str, config: FakeConfig | None = None
                        ) -> FakeEstimator:
    """The node's estimator factory for the stand-in (test/_fake_node_main.py runs the node with it)."""
    return FakeEstimator(checkpoint, objects, device=device, config=config)


DEFAULT_POSES = [
    {"class": "box", "t": [0.05, -0.02, 0.6], "quaternion": [0.9238795, 0.0, 0.3826834, 0.0], "score": 0.95},
    {"class": "can", "t": [-0.1, 0.05, 0.8], "quaternion": [1.0, 0.0, 0.0, 0.0], "score": 0.8},
    {"class": "can", "t": [0.12, 0.08, 0.9], "quaternion": [0.7071068, 0.7071068, 0.0, 0.0], "score": 0.6},
]


def write_fake_model(folder: Path, poses: list[dict] | None = None, sleep_s: float = 0.0,
                     mesh: str | None = None, device: str = "cpu", load_s: float = 0.0) -> tuple[Path, Path]:
    """Write a fake checkpoint (JSON) and matching object set (YAML); returns (checkpoint, objects).
    `sleep_s`: time each frame takes; `load_s`: time loading takes."""
    folder.mkdir(parents=True, exist_ok=True)
    classes = [{"name": "box", "extents": [0.1, 0.06, 0.2], "mesh": mesh}, {"name": "can", "extents": [0.07, 0.07, 0.1]}]
    ckpt, objs = folder / "fake.json", folder / "fake_objects.yaml"
    ckpt.write_text(json.dumps({"class_names": ["__background__", "box", "can"],
                                "objects": DEFAULT_POSES if poses is None else poses, "sleep_s": sleep_s,
                                "device": device, "load_s": load_s}))
    objs.write_text(yaml.safe_dump({"classes": classes}))
    return ckpt, objs


# ------------------------------------------------------------------------------------------------ messages
def camera_k(width: int, height: int) -> np.ndarray:
    return np.array([[1.2 * width, 0, width / 2 - 0.5], [0, 1.2 * width, height / 2 - 0.5], [0, 0, 1]])


def make_camera_info(width: int, height: int, frame: str = "cam_optical", stamp: tuple[int, int] = (0, 0),
                     k: np.ndarray | None = None) -> Any:
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.header.frame_id = frame
    info.header.stamp.sec, info.header.stamp.nanosec = stamp
    info.k = (camera_k(width, height) if k is None else np.asarray(k, np.float64)).ravel().tolist()
    return info


def make_image(width: int, height: int, encoding: str = "rgb8", frame: str = "cam_optical",
               stamp: tuple[int, int] = (0, 0), seed: int = 0) -> Any:
    """A random image message of the given encoding (8-bit colour/mono, 16UC1 or 32FC1)."""
    from sensor_msgs.msg import Image

    rng = np.random.default_rng(seed)
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "16UC1": 1, "32FC1": 1}.get(encoding, 3)
    if encoding == "16UC1":
        arr = rng.integers(300, 3000, (height, width), dtype=np.uint16)
    elif encoding == "32FC1":
        arr = rng.uniform(0.3, 3.0, (height, width)).astype(np.float32)
    else:
        arr = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    msg = Image(width=width, height=height, encoding=encoding, is_bigendian=0)
    msg.header.frame_id = frame
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.step = int(arr.strides[0])
    msg.data = arr.tobytes()
    return msg


# ------------------------------------------------------------------------------------------------ processes
def ros_env(domain_id: int) -> dict[str, str]:
    """Environment of a node process: this venv and source tree, an isolated domain, localhost discovery."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1",
               RCUTILS_COLORIZED_OUTPUT="0")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "test"), env.get("PYTHONPATH", "")])
    return env


_claimed_domains: dict[int, int] = {}  # offset -> domain id held by this process
_domain_locks: list[Any] = []


def session_domain_id(offset: int = 0) -> int:
    """A ROS_DOMAIN_ID in 1..230 for this test session, derived from the pid; `offset` separates the sessions of one
    process. The id is claimed with a lock file (held until the process ends), so that test runs at the same time
    on one machine (other checkouts, a loop beside a run) never share a domain: the next free id is taken."""
    import fcntl
    import tempfile

    if offset in _claimed_domains:
        return _claimed_domains[offset]
    start = (os.getpid() % 200 + offset) % 230
    for k in range(230):
        domain = 1 + (start + k) % 230
        if domain in _claimed_domains.values():
            continue
        lock = open(Path(tempfile.gettempdir()) / f"posecnn_ros_test_domain_{domain}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        _domain_locks.append(lock)
        _claimed_domains[offset] = domain
        return domain
    return 1 + start  # every id is held: share one


FAKE_NODE_COMMAND = [sys.executable, str(ROOT / "test" / "_fake_node_main.py")]
REAL_NODE_COMMAND = [sys.executable, "-m", "posecnn_ros.node"]
FAKE_LIFECYCLE_COMMAND = [sys.executable, str(ROOT / "test" / "_fake_lifecycle_main.py")]
REAL_LIFECYCLE_COMMAND = [sys.executable, "-m", "posecnn_ros.lifecycle_node"]


class NodeProcess:
    """The node as a subprocess (`test/_fake_node_main.py`, the stand-in estimator, unless `fake` is False:
    then `python -m posecnn_ros.node`; the managed node with `lifecycle`), stdout+stderr collected in the
    background. `ros_args` are added as they are after `--ros-args` (e.g. a malformed remapping)."""

    def __init__(self, domain_id: int, params: dict[str, Any], remaps: dict[str, str] | None = None,
                 extra_env: dict[str, str] | None = None, params_file: Path | None = None,
                 fake: bool = True, lifecycle: bool = False, ros_args: list[str] | None = None) -> None:
        if lifecycle:
            command = FAKE_LIFECYCLE_COMMAND if fake else REAL_LIFECYCLE_COMMAND
        else:
            command = FAKE_NODE_COMMAND if fake else REAL_NODE_COMMAND
        args = [*command, "--ros-args", *(ros_args or [])]
        if params_file is not None:
            args += ["--params-file", str(params_file)]
        for name, value in params.items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            args += ["-p", f"{name}:={text}"]
        for src, dst in (remaps or {}).items():
            args += ["-r", f"{src}:={dst}"]
        env = ros_env(domain_id) | (extra_env or {})
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self._lines.append(line)

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def wait_for_output(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return True
            if self.proc.poll() is not None:
                self._reader.join(1.0)
                return text in self.output
            time.sleep(0.05)
        return False

    def peak_rss_bytes(self) -> int:
        """The process's peak resident memory so far (VmHWM; Linux), while it runs."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc/<pid>/status")

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(2.0)
        return code

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.wait(5.0)
            raise


class Peer:
    """An in-process rclpy node (own context, given domain) that publishes inputs and records the node's outputs."""

    def __init__(self, domain_id: int, node_ns: str = "/posecnn", image_topic: str = "/image",
                 info_topic: str = "/camera_info", depth_topic: str = "/depth") -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from diagnostic_msgs.msg import DiagnosticArray
        from tf2_msgs.msg import TFMessage
        from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
        from visualization_msgs.msg import MarkerArray

        from posecnn_ros.msg import ObjectEstimateArray

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f"posecnn_test_peer_{id(self)}", context=self.context)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.node.create_publisher(Image, image_topic, reliable)
        self.pub_info = self.node.create_publisher(CameraInfo, info_topic, reliable)
        self.pub_depth = self.node.create_publisher(Image, depth_topic, reliable)
        self.received: dict[str, list[Any]] = {k: [] for k in
                                              ("detections", "detections_2d", "estimates", "label", "markers",
                                               "overlay", "tf", "label_info", "diagnostics")}
        self._lock = threading.Lock()
        topics = {"detections": Detection3DArray, "detections_2d": Detection2DArray,
                  "estimates": ObjectEstimateArray, "label": Image, "markers": MarkerArray, "overlay": Image}
        self.output_subs = {name: self.node.create_subscription(kind, f"{node_ns}/{name}", self._recorder(name),
                                                                reliable) for name, kind in topics.items()}
        self.node.create_subscription(TFMessage, "/tf", self._recorder("tf"),
                                      QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._recorder("diagnostics"), reliable)
        self.node.create_subscription(LabelInfo, f"{node_ns}/label_info", self._recorder("label_info"),
                                      QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                                 durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._running = True
        self._spin.start()

    def _spin_loop(self) -> None:
        while self._running and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _recorder(self, name: str):
        def record(msg: Any) -> None:
            with self._lock:
                self.received[name].append(msg)
        return record

    def count(self, name: str) -> int:
        with self._lock:
            return len(self.received[name])

    def messages(self, name: str) -> list[Any]:
        with self._lock:
            return list(self.received[name])

    def clear(self) -> None:
        with self._lock:
            for v in self.received.values():
                v.clear()

    def wait_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    def wait_for_subscribers(self, *publishers: Any, timeout: float = 20.0) -> bool:
        """Wait until each of `publishers` (default: image and camera_info) is matched with a subscription.

        This is discovery as the peer sees it; the node may match the peer's publishers a moment later, so a test
        that needs an answer still sends with `resend_until`."""
        pubs = publishers or (self.pub_image, self.pub_info)
        return self.wait_until(lambda: all(p.get_subscription_count() > 0 for p in pubs), timeout)

    def answer(self, name: str, stamp: tuple[int, int], timeout: float = 0.0) -> Any | None:
        """The first recorded `name` output whose header has `stamp` (waiting up to `timeout` s), or None."""
        def find() -> Any | None:
            return next((m for m in self.messages(name) if stamp_of(m) == stamp), None)
        self.wait_until(lambda: find() is not None, timeout)
        return find()

    def resend_until(self, send: Callable[[], Any], done: Callable[[], bool], timeout: float = 30.0,
                     period: float = 2.0) -> bool:
        """Call `send()` (it publishes an image with its CameraInfo, same stamp, as a camera does), and again every
        `period` s until `done()`: a message published before the node has matched the peer is lost, best-effort
        ones may be lost any time. True when done within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            send()
            if self.wait_until(done, min(period, max(0.0, deadline - time.monotonic()))):
                return True
            if time.monotonic() >= deadline:
                return False

    def send_until_answered(self, send: Callable[[], tuple[int, int]], name: str = "detections",
                            timeout: float = 30.0, period: float = 2.0) -> Any | None:
        """`send()` publishes a frame and returns its stamp (the same each call); resent until the node answers
        on `name` with that stamp. The answer, or None after `timeout`."""
        stamps: list[tuple[int, int]] = []

        def once() -> None:
            stamps.append(send())
            assert stamps[-1] == stamps[0], f"send() must repeat its stamp, got {stamps}"

        self.resend_until(once, lambda: self.answer(name, stamps[0]) is not None, timeout, period)
        return self.answer(name, stamps[0])

    def call(self, client: Any, request: Any, timeout: float = 30.0, attempt_s: float = 5.0) -> Any:
        """The answer of an idempotent service (get state, set a parameter to a value), the request sent again
        every `attempt_s` s: right after discovery a request or its answer can be lost (the server may not have
        matched the client yet). AssertionError when no answer comes within `timeout`."""
        assert client.wait_for_service(timeout_sec=timeout), f"no service {client.srv_name}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            future = client.call_async(request)
            if self.wait_until(future.done, min(attempt_s, max(0.0, deadline - time.monotonic()))):
                return future.result()
        raise AssertionError(f"no answer from {client.srv_name} within {timeout} s")

    def wait_for_node(self, timeout: float = 20.0, depth: bool = False) -> bool:
        """Wait until the node's input subscriptions and output publishers are matched with ours."""
        return self.wait_until(lambda: self.pub_image.get_subscription_count() > 0
                               and self.pub_info.get_subscription_count() > 0
                               and (not depth or self.pub_depth.get_subscription_count() > 0)
                               and all(s.get_publisher_count() > 0 for s in self.output_subs.values()), timeout)

    def close(self) -> None:
        self._running = False
        self._spin.join(2.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()


def stamp_of(msg: Any) -> tuple[int, int] | None:
    """(sec, nanosec) of a message's header (a MarkerArray: its first marker's; a TFMessage: its first
    transform's; None when it has none)."""
    for field in ("markers", "transforms"):
        if hasattr(msg, field):
            items = getattr(msg, field)
            if not items:
                return None
            msg = items[0]
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def teardown(proc: "NodeProcess", peer: "Peer | None" = None) -> None:
    """End of a node test, however it ended: close the peer (if any) and kill the node process if it still runs
    (a test that passed has already stopped it with a signal and checked its exit code)."""
    if peer is not None:
        peer.close()
    if proc.proc.poll() is None:
        proc.proc.kill()


def assert_quiet_exit(code: int, output: str) -> None:
    """Exit code 0 and nothing alarming in the output: no traceback, no ERROR/FATAL line, no C++ abort."""
    assert code == 0, output
    for bad in ("Traceback", "[ERROR]", "[FATAL]", "terminate called", "Failed to publish"):
        assert bad not in output, f"{bad!r} in the output:\n{output}"
