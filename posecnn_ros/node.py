"""`posecnn_node` (node name `posecnn`): camera images in, 6D object poses out.

Subscribes `image`, `camera_info` (and `depth` when use_depth is set) — with image_transport=compressed,
`<image>/compressed` and `<depth>/compressedDepth` instead; publishes `~/detections`, `~/detections_2d`,
`~/estimates`, `~/label`, `~/label_info` (transient local), `~/markers`, `~/overlay`, one TF frame per object on /tf
and the node's health on /diagnostics. Inference runs on a worker thread fed by a one-slot mailbox (the newest frame
replaces a pending one), so callbacks never block and nothing queues up. Parameters: posecnn_ros/params.py
(docs/node.md lists them). `PoseCnnGlue` holds the behaviour; `PoseCnnNode` runs it at once, the managed
`PoseCnnLifecycleNode` (lifecycle_node.py) step by step.
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m posecnn_ros.node`: handle SIGINT/SIGTERM already during the imports below
    from posecnn_ros import stop_signals

    stop_signals.install()

import gc
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from posecnn_core.estimator import EstimatorConfig
from posecnn_core.files import path_kind, require_regular_file
from posecnn_core.overlay import draw_overlay
from posecnn_core.resources import DEMO_CHECKPOINT, DEMO_OBJECTS, resource_path
from posecnn_ros import diagnostics, messages, params, stop_signals
from posecnn_ros.arrival_monitor import ArrivalMonitor, Shortfall
from posecnn_ros.camera_info_pairing import CameraInfoPairing, stamp_of, stamp_text
from posecnn_ros.frame_input import FrameDecoder
from posecnn_ros.image_conversion import ImageError, rgb_to_image
from posecnn_ros.latest_frame import LatestFrameWorker
from posecnn_ros.msg import ObjectEstimateArray
from posecnn_ros.params import SPEC_BY_NAME, NodeSettings
from posecnn_ros.startup import RosLogHandler, StartupError, init_ros
from posecnn_ros.tf_publisher import TfPublisher
from posecnn_ros.tracking_glue import TrackingGlue
from posecnn_ros.throttled_log import ThrottledLog

NODE_NAME = "posecnn"
EXIT_FATAL = 2
DIAGNOSTICS_PERIOD_S = 1.0
STOP_TIMEOUT_S = 5.0         # on SIGINT/SIGTERM, how long the frame in progress may take to finish and be published
FLUSH_TIMEOUT_S = 1.0        # then how long subscribers have to acknowledge what was published last
INFO_HINT_MESSAGES = 5       # camera_info messages announcing a size before the node checks its images arrive ...
INFO_HINT_SECONDS = 5.0      # ... and seconds since the first of them
INFO_HINT_RATIO = 0.25       # fewer images of that size than this times the camera_info messages: a hint

# (checkpoint path, object set path, device, EstimatorConfig) -> an estimator with PoseEstimator's API
# (docs/estimator_api.md)
EstimatorFactory = Callable[[str, str, str, EstimatorConfig], Any]
# (message type, topic, QoS) -> a publisher: Node.create_publisher, or a lifecycle node's create_lifecycle_publisher
PublisherFactory = Callable[[type, str, QoSProfile], Any]


def default_estimator_factory(checkpoint: str, objects: str, device: str, config: EstimatorConfig) -> Any:
    """The real PoseCNN estimator."""
    from posecnn_core.estimator import PoseEstimator

    return PoseEstimator(checkpoint, objects, device=device, config=config)


def resolve_file(value: str, bundled: str, what: str) -> Path:
    """The file a checkpoint/objects parameter names: empty = the bundled default; a relative path that does not
    exist as given is also looked up among the bundled files. FileNotFoundError when there is no such file,
    NotARegularFileError (an OSError) for a directory, /dev/null, a FIFO."""
    if not value:
        return resource_path(bundled)
    path = Path(value).expanduser()
    kind = path_kind(path)
    if kind == "regular file":
        return path.resolve()
    if kind == "missing" and not path.is_absolute():
        try:
            return resource_path(value)
        except FileNotFoundError:
            pass
    return require_regular_file(path, what)


def _stamp_seconds(header: Header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


class PoseCnnGlue:
    """The node's behaviour in steps, mixed into an rclpy Node (`self` is the node):
    `_declare` parameters -> `_load_model` -> `_open` publishers, worker, diagnostics -> `_start` subscriptions;
    and back: `_stop` -> `_close` -> `_release_model`.

    Raises ParameterError / FileNotFoundError / the estimator's ModelError (ValueErrors) for bad parameters,
    missing files or a checkpoint the object set does not match.
    """

    estimator: Any = None
    _worker: LatestFrameWorker | None = None
    _active = False

    def _declare(self) -> None:
        self._log = ThrottledLog(self.get_logger(), period_s=5.0)
        self._closing = False
        self._publish_lock = threading.Lock()  # publishing vs. close(): no publish on a destroyed node
        self._core_log = RosLogHandler(self.get_logger().get_child("core"))
        logging.getLogger("posecnn_core").addHandler(self._core_log)  # e.g. the estimator's downscale notice
        self._settings_lock = threading.Lock()
        self.settings: NodeSettings = params.declare(self)
        unknown = params.unknown_overrides(self)
        if unknown:
            self.get_logger().warning(params.unknown_parameters_message(unknown))
        self._camera_infos = CameraInfoPairing()
        self._fallback_logged = False           # "using the newest camera_info" is said once
        self._arrivals = ArrivalMonitor(INFO_HINT_MESSAGES, INFO_HINT_SECONDS, INFO_HINT_RATIO)
        self._depth_lock = threading.Condition()
        self._depth_buffer: deque[Any] = deque(maxlen=30)
        self._input_subs: list[Any] = []
        self._output_pubs: list[Any] = []
        self._diag_timer = None
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _detach_core_log(self) -> None:
        logging.getLogger("posecnn_core").removeHandler(self._core_log)

    def _load_model(self, estimator_factory: EstimatorFactory | None) -> None:
        checkpoint = resolve_file(self.settings["checkpoint"], DEMO_CHECKPOINT, "checkpoint")
        objects = resolve_file(self.settings["objects"], DEMO_OBJECTS, "object set")
        device = self.settings["device"]
        self.get_logger().info(f"loading checkpoint {checkpoint} with object set {objects} on {device}")
        factory = estimator_factory or default_estimator_factory
        config = self.settings.estimator_config(EstimatorConfig())
        self.estimator = factory(str(checkpoint), str(objects), device, config)
        self._model_files = (checkpoint, objects)
        objset = self.estimator.object_set
        self._class_names: list[str] = list(objset.class_names)
        self._extents = np.asarray(objset.extents, np.float64)
        self._points: list[np.ndarray] = [np.asarray(p, np.float64).reshape(-1, 3) for p in objset.points]
        mesh_paths = list(getattr(objset, "mesh_paths", []) or [])
        self._mesh_uris = [messages.mesh_uri(p) for p in mesh_paths] + [None] * (len(self._class_names)
                                                                                 - len(mesh_paths))
        self.device = str(self.estimator.device)

    def _release_model(self) -> bool:
        """Drop the estimator (and the GPU memory it held); True when nothing else still references it."""
        if self.estimator is None:
            return True
        on_cuda = self.device.startswith("cuda")
        ref = weakref.ref(self.estimator)
        self.estimator = None
        gc.collect()
        if on_cuda:
            import torch

            torch.cuda.empty_cache()
        return ref() is None

    def _open(self, create_publisher: PublisherFactory) -> None:
        """Publishers, the inference worker, the frame decoder and the diagnostics timer."""
        self._closing = False
        self.frames_processed = 0
        self.frames_rejected = 0
        self._stats = diagnostics.FrameStats()
        self._last_diag: diagnostics.StatsSnapshot | None = None
        self._decoder = FrameDecoder(lambda text: self.get_logger().warning(text))
        self._pub_det3d = create_publisher(Detection3DArray, "~/detections", RELIABLE)
        self._pub_det2d = create_publisher(Detection2DArray, "~/detections_2d", RELIABLE)
        self._pub_est = create_publisher(ObjectEstimateArray, "~/estimates", RELIABLE)
        self._pub_label = create_publisher(Image, "~/label", RELIABLE)
        self._pub_markers = create_publisher(MarkerArray, "~/markers", RELIABLE)
        self._pub_overlay = create_publisher(Image, "~/overlay", RELIABLE)
        self._pub_label_info = create_publisher(LabelInfo, "~/label_info", LATCHED)
        self._output_pubs = [self._pub_det3d, self._pub_det2d, self._pub_est, self._pub_label, self._pub_markers,
                             self._pub_overlay, self._pub_label_info]
        self._tf = TfPublisher(self)
        from diagnostic_msgs.msg import DiagnosticArray

        # a plain publisher, also for a managed node: its health is reported while it is inactive too
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self._worker = LatestFrameWorker(self._process, self._on_worker_error, before_first=self._warmup,
                                         name="posecnn-inference")
        self._tracking = TrackingGlue(self.estimator.object_set, lambda text: self.get_logger().info(text))
        self._tracking.configure(self.settings)
        self._tracking_endpoints = self._tracking.subscribe(self)

    def _input_topics(self) -> tuple[str, str | None]:
        """The image and depth topics as subscribed: image_transport's `<base>/compressed` and
        `<base>/compressedDepth` for compressed input (the base name resolved with namespaces and remapping)."""
        use_depth = self.settings["use_depth"]
        if self.settings["image_transport"] == "compressed":
            return (self.resolve_topic_name("image") + "/compressed",
                    self.resolve_topic_name("depth") + "/compressedDepth" if use_depth else None)
        return "image", "depth" if use_depth else None

    def _start(self) -> None:
        """Subscribe to the inputs: frames flow from here on."""
        image_qos = qos_profile_sensor_data if self.settings["image_qos"] == "sensor_data" else RELIABLE
        kind = CompressedImage if self.settings["image_transport"] == "compressed" else Image
        image_topic, depth_topic = self._input_topics()
        self._sub_info = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, image_qos)
        self._sub_image = self.create_subscription(kind, image_topic, self._on_image, image_qos)
        self._sub_depth = (self.create_subscription(kind, depth_topic, self._on_depth, image_qos)
                           if depth_topic else None)
        self._input_subs = [s for s in (self._sub_info, self._sub_image, self._sub_depth) if s is not None]
        self._active = True
        self._publish_label_info()

    def _stop(self, timeout: float = 10.0) -> None:
        """Unsubscribe and let the frame in progress finish (its results are still published)."""
        self._active = False
        for sub in self._input_subs:
            self.destroy_subscription(sub)
        self._input_subs = []
        if self._worker is not None:
            self._worker.wait_idle(timeout)
        with self._depth_lock:
            self._depth_buffer.clear()
        self._camera_infos.clear()

    def _close(self) -> bool:
        """Stop the worker (the frame in progress is published if it finishes within STOP_TIMEOUT_S, else
        dropped) and remove the publishers and the timer. True when the worker thread has ended."""
        ended = True
        if self._worker is not None:
            ended = self._worker.stop(STOP_TIMEOUT_S)
            self._worker = None
        self._flush_outputs(FLUSH_TIMEOUT_S)
        with self._publish_lock:
            self._closing = True
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self.destroy_publisher(self._pub_diag)
            self._diag_timer = None
        for pub in self._output_pubs:
            self.destroy_publisher(pub)
        self._output_pubs = []
        self._tracking.unsubscribe(self, self._tracking_endpoints)
        self._tracking_endpoints = []
        self._tf.destroy()
        return ended

    def _ready_message(self) -> str:
        return (f"ready on {self.device}: {len(self._class_names) - 1} classes, image {self._sub_image.topic_name}, "
                f"camera_info {self._sub_info.topic_name}"
                + (f", depth {self._sub_depth.topic_name}" if self._sub_depth else "")
                + f"; TF via {self._tf.backend}")

    # ---------------------------------------------------------------- callbacks (executor thread, never block)
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_infos.add(msg)
        shortfall = self._arrivals.camera_info(msg.width, msg.height, stamp_of(msg))
        if shortfall is not None:
            self.get_logger().warning(self._missing_images_hint(shortfall))

    def _missing_images_hint(self, gap: Shortfall) -> str:
        """The one warning for images that CameraInfo announces but that do not arrive (or hardly)."""
        arrived = ("no such image has arrived" if gap.arrived == 0 else
                   f"only {gap.arrived} such image(s) arrived")
        text = (f"{gap.announced} camera_info messages in {gap.seconds:.0f} s announce {gap.width}x{gap.height} "
                f"images, but {arrived} on {self._sub_image.topic_name}: check that the camera publishes them "
                f"there (remapping)")
        size = f"a {gap.megabytes_rgb8:.0f} MB frame (as rgb8)"
        if self.settings["image_qos"] == "sensor_data":
            text += (f"; with image_qos sensor_data (best effort) {size} is lost whenever one of its fragments is, "
                     f"so it may never arrive: set image_qos:=reliable, or use image_transport:=compressed or "
                     f"smaller images (docs/node.md, 'Large frames')")
        else:
            text += (f"; {size} may exceed what the transport delivers at this rate: use "
                     f"image_transport:=compressed or smaller images (docs/node.md, 'Large frames')")
        return text

    def _on_depth(self, msg: Any) -> None:
        with self._depth_lock:
            self._depth_buffer.append(msg)
            self._depth_lock.notify_all()

    def _on_image(self, msg: Any) -> None:
        self._arrivals.image(stamp_of(msg), getattr(msg, "width", None), getattr(msg, "height", None))
        if not self._active or self._worker is None:
            return
        self._stats.received()
        if self._worker.submit((msg, time.perf_counter())):
            self._log.warning("dropped", f"dropped {self._worker.dropped} frame(s) so far: inference is slower "
                                         f"than the image rate (only the newest frame is processed)")

    def set_parameters(self, parameter_list: list[Parameter]) -> list[SetParametersResult]:
        """rclpy's Node.set_parameters (each parameter on its own), with the node's own messages for an unknown
        name, a read-only parameter, a wrong type or a value out of range (params.set_error): no exception for an
        unknown name, a failed result naming the closest parameter instead."""
        return [self.set_parameters_atomically([param]) for param in parameter_list]

    def set_parameters_atomically(self, parameter_list: list[Parameter]) -> SetParametersResult:
        """rclpy's Node.set_parameters_atomically after checking every parameter as `set_parameters` says; the
        parameter services (`ros2 param set`) come through here."""
        for param in parameter_list:
            if param.name in SPEC_BY_NAME or not self.has_parameter(param.name):  # rclpy's own: as rclpy says
                reason = params.set_error(param.name, param.value, params.ros_type_name(param))
                if reason is not None:
                    return SetParametersResult(successful=False, reason=reason)
        return super().set_parameters_atomically(parameter_list)

    def _on_set_parameters(self, changes: Sequence[Parameter]) -> SetParametersResult:
        # set_parameters_atomically has checked names, types, ranges and read-only flags (params.set_error);
        # names not in SPECS are rclpy's own (use_sim_time)
        values = {p.name: p.value for p in changes if p.name in SPEC_BY_NAME}
        with self._settings_lock:
            try:
                settings = self.settings.updated(values)
                config = settings.estimator_config(self.estimator.config) if self.estimator is not None else None
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            self.settings = settings
            if config is not None:
                self.estimator.config = config
            if any(name.startswith("tracking.") for name in values) and self._worker is not None:
                self._tracking.configure(settings)
            if "score_threshold" in values and self._active:
                self._publish_label_info()
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        if not self.settings["publish.diagnostics"] or self._worker is None:
            return
        snap = self._stats.snapshot(self._worker.dropped, self.frames_rejected)
        image_topic = self._sub_image.topic_name if self._active else self._input_topics()[0]
        info = [("device", self.device), ("checkpoint", str(self._model_files[0])),
                ("object set", str(self._model_files[1])), ("classes", str(len(self._class_names) - 1)),
                ("image transport", self.settings["image_transport"]), ("rectify", str(self.settings["rectify"]))]
        level, text, values = diagnostics.evaluate(snap, self._last_diag, self._active, image_topic, info)
        self._last_diag = snap
        status = diagnostics.status_message(f"{self.get_name()}: pose estimation", self.device, level, text, values)
        self._pub_diag.publish(diagnostics.diagnostic_array(self.get_clock().now().to_msg(), [status]))

    # ---------------------------------------------------------------- worker thread
    def _warmup(self) -> None:
        if not (self.settings["warmup"] and self.device.startswith("cuda")):
            return
        start = time.perf_counter()
        try:
            self.estimator.warmup(self.settings["warmup_height"], self.settings["warmup_width"])
        except Exception as exc:  # noqa: BLE001 - the first real frame will show whether the model works
            if not self._closing:
                self.get_logger().warning(f"GPU warm-up failed: {type(exc).__name__}: {exc}")
            return
        if not self._closing:
            self.get_logger().info(f"GPU warm-up took {1e3 * (time.perf_counter() - start):.0f} ms")

    def _on_worker_error(self, exc: BaseException) -> None:
        if self._closing:  # a frame that outlived the node: dropped without a word
            return
        self.frames_rejected += 1
        self._stats.failed(f"{type(exc).__name__}: {exc}")
        self._log.error(f"unexpected:{type(exc).__name__}", f"frame skipped after an unexpected error: "
                                                           f"{type(exc).__name__}: {exc}")

    def _reject(self, cause: str, message: str, warning: bool = False) -> None:
        if self._closing:
            return
        self.frames_rejected += 1
        (self._log.warning if warning else self._log.error)(cause, message + "; frame skipped")

    def _pair_depth(self, image: Any, settings: NodeSettings) -> Any | None:
        """The depth message closest in stamp to `image` within the tolerance, waiting briefly for it."""
        target = _stamp_seconds(image.header)
        tolerance = settings["sync_tolerance"]

        def best() -> Any | None:
            found = [d for d in self._depth_buffer if abs(_stamp_seconds(d.header) - target) <= tolerance]
            return min(found, key=lambda d: abs(_stamp_seconds(d.header) - target)) if found else None

        with self._depth_lock:
            self._depth_lock.wait_for(lambda: best() is not None, timeout=max(0.1, tolerance))
            match = best()
        if match is None:
            self._log.warning("no_depth", f"no depth image within {tolerance} s of the image stamp "
                                          f"{target:.6f}; estimating from RGB only")
        return match

    def _camera_info_for(self, image: Any, settings: NodeSettings) -> CameraInfo | None:
        """The CameraInfo with the image's stamp, waiting up to camera_info_wait for it (either may arrive first);
        else the newest one (said once); None when none has arrived."""
        wait_s = settings["camera_info_wait"]
        stamp = stamp_of(image)
        info, exact = self._camera_infos.match(stamp, wait_s)
        if info is not None and not exact and not self._fallback_logged:
            self._fallback_logged = True
            self.get_logger().warning(
                f"no camera_info with the image's stamp {stamp_text(stamp)} arrived within camera_info_wait = "
                f"{wait_s:g} s on {self._sub_info.topic_name}; using the newest one (stamp "
                f"{stamp_text(stamp_of(info))}) for this and any such later frame (said once)")
        return info

    def _process(self, item: tuple[Any, float]) -> None:
        image, received = item
        settings = self.settings
        start = time.perf_counter()
        info = self._camera_info_for(image, settings)
        if info is None:
            self._reject("no_camera_info", f"waiting for camera_info on {self._sub_info.topic_name} (none arrived "
                                           f"within camera_info_wait = {settings['camera_info_wait']:g} s)",
                         warning=True)
            return
        try:
            depth = self._pair_depth(image, settings) if settings["use_depth"] else None
            frame = self._decoder.frame(image, info, depth, settings["depth_scale"], settings["rectify"])
        except ImageError as exc:
            self._reject(exc.cause, str(exc))
            return
        decoded = time.perf_counter()
        try:
            result = self._tracking.estimate(self.estimator, frame.rgb, frame.K, frame.depth,
                                             _stamp_seconds(frame.header), frame.header.frame_id)
        except ValueError as exc:  # the estimator's InputError
            self._stats.failed(f"{type(exc).__name__}: {exc}")
            self._reject("estimator_input", f"estimator rejected the frame: {exc}")
            return
        estimated = time.perf_counter()
        with self._publish_lock:
            if self._closing:  # stopped while this frame was computed: its result is dropped
                return
            self._publish(result, frame.header, frame.rgb, frame.K, settings)
            published = time.perf_counter()
            self.frames_processed += 1
            self._stats.processed(1e3 * (published - received))
            stages = [("decode", 1e3 * (decoded - start)),
                      *((str(k), float(v)) for k, v in result.timings_ms.items()),
                      ("publish", 1e3 * (published - estimated))]
            if settings["publish.estimates"]:
                self._pub_est.publish(messages.estimates(
                    result.objects, frame.header, stages, 1e3 * (published - received), self.device,
                    self.frames_processed, self._worker.dropped, self.frames_rejected))

    def _publish(self, result: Any, header: Header, rgb: np.ndarray, K: np.ndarray, settings: NodeSettings) -> None:
        objects = result.objects
        self._pub_det3d.publish(messages.detections_3d(objects, header, self._extents))
        if settings["publish.tf"]:
            self._tf.send(messages.transforms(objects, header, settings["tf_prefix"]))
        if settings["publish.detections_2d"]:
            self._pub_det2d.publish(messages.detections_2d(objects, header))
        if settings["publish.markers"] and self._pub_markers.get_subscription_count():
            self._pub_markers.publish(messages.markers(objects, header, self._extents, self._mesh_uris,
                                                       len(self._class_names)))
        if settings["publish.label"] and self._pub_label.get_subscription_count():
            self._pub_label.publish(messages.label_image(result.label, header, len(self._class_names)))
        if settings["publish.overlay"] and self._pub_overlay.get_subscription_count():
            drawn = draw_overlay(rgb, objects, K, self._points, self._extents)
            self._pub_overlay.publish(rgb_to_image(Image(), drawn, header))

    def _publish_label_info(self) -> None:
        header = Header(stamp=self.get_clock().now().to_msg())
        self._pub_label_info.publish(messages.label_info(self._class_names, header, self.settings["score_threshold"]))

    def _shut(self, timeout: float) -> bool:
        """Stop the worker: the frame in progress is finished and published if that takes at most `timeout`
        seconds, otherwise its result is dropped. Nothing is published or logged by the node's threads afterwards,
        so the node can be destroyed. True when the worker thread has ended (False: it is still computing)."""
        ended = self._worker.stop(timeout) if self._worker is not None else True
        with self._publish_lock:
            self._closing = True
        self._flush_outputs(FLUSH_TIMEOUT_S)
        self._detach_core_log()
        return ended

    def _flush_outputs(self, timeout: float) -> bool:
        """Wait up to `timeout` s until reliable subscribers have acknowledged everything published (a frame
        finished while the node stops would otherwise go down with the process); True when they have."""
        from rclpy.duration import Duration

        deadline = time.monotonic() + timeout
        tf = getattr(self, "_tf", None)
        for pub in [*self._output_pubs, *(tf.publishers() if tf is not None else [])]:
            left = deadline - time.monotonic()
            if left <= 0 or not pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))):
                return False
        return True


class PoseCnnNode(PoseCnnGlue, Node):
    """The PoseCNN node: loads the model and subscribes at construction. `estimator_factory` defaults to the real
    PoseEstimator (tests pass a stand-in). Raises as PoseCnnGlue says for bad parameters or model files."""

    def __init__(self, estimator_factory: EstimatorFactory | None = None, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self._declare()
        try:
            self._load_model(estimator_factory)
        except BaseException:
            self._detach_core_log()
            raise
        self._open(self.create_publisher)
        self._start()
        self.get_logger().info(self._ready_message())

    def close(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """See PoseCnnGlue._shut."""
        return self._shut(timeout)


def run(make_node: Callable[[], Any], args: list[str] | None = None) -> int:
    """Start ROS, build the node with `make_node` and spin it until SIGINT/SIGTERM (exit 0); bad arguments,
    parameters or model files exit with EXIT_FATAL after one fatal log line. Used by posecnn_node and
    posecnn_lifecycle_node; the node's `close()` must return whether its worker thread has ended.

    Signals (posecnn_ros.stop_signals): the first SIGINT/SIGTERM, at any moment (also during start-up), ends the
    node cleanly: the frame in progress is published if it finishes within STOP_TIMEOUT_S, else dropped; a second
    one ends the process at once. When a frame is still being computed at the end, the process ends with
    `stop_signals.leave_now(0)` (the interpreter cannot finalise while the worker thread runs native code)."""
    stop = stop_signals.install()  # the entry points install it before their imports already
    stop.immediate = False  # from here on a signal asks for a clean stop
    logger = get_logger(NODE_NAME)
    try:
        init_ros(args if args is not None else sys.argv)
    except StartupError as exc:
        logger.fatal(f"cannot start: {exc}")
        return EXIT_FATAL
    node = None
    try:
        if not stop.requested:
            node = make_node()
    except (ValueError, OSError, ImportError) as exc:
        logger.fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return EXIT_FATAL
    if node is None:
        rclpy.try_shutdown()
        return 0
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.requested:  # signal handlers run between these calls
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ended = node.close()
        executor.remove_node(node)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    if not ended:
        stop_signals.leave_now(0)
    return 0


def main(args: list[str] | None = None, estimator_factory: EstimatorFactory | None = None) -> int:
    """`posecnn_node`: see `run`. `estimator_factory`: see PoseCnnNode (the executable uses the real estimator)."""
    return run(lambda: PoseCnnNode(estimator_factory), args)


if __name__ == "__main__":
    sys.exit(main())
