"""Unit tests of the node's pure modules: image conversion, message builders, params, worker, throttled log,
resource resolver, overlay."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _ros_required import require  # noqa: E402

pytestmark = pytest.mark.ros

ros = require("rclpy")

from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

import _node_helpers as helpers  # noqa: E402
from posecnn_core import resources  # noqa: E402
from posecnn_core.estimator import EstimatorConfig  # noqa: E402
from posecnn_ros import image_conversion as ic  # noqa: E402
from posecnn_ros import messages  # noqa: E402
from posecnn_ros.latest_frame import LatestFrameWorker  # noqa: E402
from posecnn_core.overlay import class_colour, draw_overlay, project  # noqa: E402
from posecnn_ros import param_docs, startup  # noqa: E402
from posecnn_ros.params import (SPEC_BY_NAME, SPECS, NodeSettings, ParameterError, check_value,  # noqa: E402
                                closest_parameter, declare, descriptor, unknown_overrides,
                                unknown_parameters_message)
from posecnn_ros.throttled_log import ThrottledLog  # noqa: E402


def _image(arr: np.ndarray, encoding: str, step: int | None = None, bigendian: bool = False) -> Image:
    h, w = arr.shape[:2]
    row = arr.reshape(h, -1).view(np.uint8).reshape(h, -1)
    step = row.shape[1] if step is None else step
    padded = np.zeros((h, step), np.uint8)
    padded[:, : row.shape[1]] = row
    msg = Image(height=h, width=w, encoding=encoding, step=step, is_bigendian=int(bigendian))
    msg.data = padded.tobytes()
    return msg


# ------------------------------------------------------------------------------------------- image conversion
def test_colour_encodings_decode_to_rgb() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    alpha = np.full((5, 7, 1), 9, np.uint8)
    cases = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "rgba8": np.concatenate([rgb, alpha], 2),
             "bgra8": np.concatenate([rgb[:, :, ::-1], alpha], 2)}
    for enc, arr in cases.items():
        out = ic.image_to_rgb(_image(np.ascontiguousarray(arr), enc, step=7 * arr.shape[2] + 3))
        assert out.dtype == np.uint8 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, rgb, err_msg=enc)
    mono = rgb[:, :, 0].copy()
    out = ic.image_to_rgb(_image(mono, "mono8"))
    np.testing.assert_array_equal(out, np.repeat(mono[:, :, None], 3, 2))


def test_depth_encodings_step_and_endianness() -> None:
    raw = np.array([[0, 1000, 2500], [65535, 3, 7]], np.uint16)
    little = ic.depth_to_metres(_image(raw.astype("<u2"), "16UC1", step=8), 0.001)
    big = ic.depth_to_metres(_image(raw.astype(">u2"), "16UC1", bigendian=True), 0.001)
    np.testing.assert_allclose(little, raw * 0.001, rtol=1e-6)
    np.testing.assert_allclose(big, little)
    f = np.array([[0.5, np.nan, -1.0], [np.inf, 2.0, 0.0]], np.float32)
    out = ic.depth_to_metres(_image(f.astype(">f4"), "32FC1", bigendian=True), 0.001)
    np.testing.assert_allclose(out, [[0.5, 0, 0], [0, 2.0, 0]])


@pytest.mark.parametrize("mutate,cause", [
    (lambda m: setattr(m, "encoding", "nv24"), "encoding"),
    (lambda m: setattr(m, "data", bytes(m.data)[:-5]), "truncated"),
    (lambda m: (setattr(m, "height", 0), setattr(m, "data", b"")), "empty"),
    (lambda m: setattr(m, "step", 4), "bad_step"),
])
def test_bad_images_raise_with_cause(mutate, cause) -> None:
    msg = _image(np.zeros((4, 6, 3), np.uint8), "rgb8")
    mutate(msg)
    with pytest.raises(ic.ImageError) as err:
        ic.image_to_rgb(msg)
    assert err.value.cause == cause and str(err.value)


def test_camera_matrix_validation() -> None:
    info = helpers.make_camera_info(64, 48)
    np.testing.assert_allclose(ic.camera_matrix(info), helpers.camera_k(64, 48))
    zero = helpers.make_camera_info(64, 48, k=np.zeros((3, 3)))
    nan = helpers.make_camera_info(64, 48, k=np.full((3, 3), np.nan))
    for bad, cause in ((zero, "intrinsics_zero"), (nan, "intrinsics_not_finite")):
        with pytest.raises(ic.ImageError, match="camera_info K") as err:
            ic.camera_matrix(bad)
        assert err.value.cause == cause
    with pytest.raises(ic.ImageError, match="64x48") as err:
        ic.check_image_matches(helpers.make_image(32, 48), info)
    assert err.value.cause == "size_mismatch"


def test_round_trip_rgb_and_label_images() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    header = Header(frame_id="f")
    msg = ic.rgb_to_image(Image(), rgb, header)
    assert (msg.encoding, msg.step, msg.header.frame_id) == ("rgb8", 15, "f")
    np.testing.assert_array_equal(ic.image_to_rgb(msg), rgb)
    label = np.arange(30, dtype=np.int32).reshape(6, 5)
    small = messages.label_image(label, header, 22)
    assert small.encoding == "mono8"
    np.testing.assert_array_equal(np.frombuffer(small.data, np.uint8).reshape(6, 5), label)
    big = messages.label_image(label * 100, header, 1000)
    assert big.encoding == "16UC1" and big.step == 10
    np.testing.assert_array_equal(np.frombuffer(big.data, "<u2").reshape(6, 5), label * 100)


# ------------------------------------------------------------------------------------------- message builders
def _fake_result():
    ckpt, objs = helpers.write_fake_model(Path(__import__("tempfile").mkdtemp()), mesh="package://p/m.dae")
    est = helpers.make_fake_estimator(str(ckpt), str(objs), "cpu")
    K = helpers.camera_k(320, 240)
    return est, est.estimate(np.zeros((240, 320, 3), np.uint8), K), K


def test_detections_and_tf_carry_header_ids_poses_and_extents() -> None:
    est, result, _ = _fake_result()
    header = Header(frame_id="cam_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    det = messages.detections_3d(result.objects, header, est.object_set.extents)
    assert det.header.frame_id == "cam_optical" and det.header.stamp.nanosec == 345
    assert [d.id for d in det.detections] == ["box_0", "can_0", "can_1"]
    first = det.detections[0]
    assert first.results[0].hypothesis.class_id == "box"
    assert first.results[0].hypothesis.score == pytest.approx(0.95)
    assert first.bbox.center.position.z == pytest.approx(0.6)
    q = first.bbox.center.orientation
    assert (q.w, q.x, q.y, q.z) == pytest.approx((0.9238795, 0.0, 0.3826834, 0.0), abs=1e-6)
    assert (first.bbox.size.x, first.bbox.size.y, first.bbox.size.z) == pytest.approx((0.1, 0.06, 0.2))
    tf = messages.transforms(result.objects, header, "pc/")
    assert [t.child_frame_id for t in tf.transforms] == ["pc/box_0", "pc/can_0", "pc/can_1"]
    assert all(t.header.frame_id == "cam_optical" and t.header.stamp.sec == 12 for t in tf.transforms)
    assert tf.transforms[1].transform.translation.x == pytest.approx(-0.1)
    d2 = messages.detections_2d(result.objects, header)
    x1, y1, x2, y2 = result.objects[0].roi
    assert d2.detections[0].bbox.size_x == pytest.approx(x2 - x1)
    assert d2.detections[0].bbox.center.position.y == pytest.approx(0.5 * (y1 + y2))


def test_estimates_markers_and_label_info() -> None:
    est, result, _ = _fake_result()
    header = Header(frame_id="cam")
    out = messages.estimates(result.objects, header, [("decode", 0.5), ("network", 3.0)], 4.0, "cpu", 7, 2, 1)
    assert (out.frames_processed, out.frames_dropped, out.frames_rejected, out.device) == (7, 2, 1, "cpu")
    assert [s.stage for s in out.stages] == ["decode", "network"]
    e = out.estimates[2]
    assert (e.id, e.class_id, e.instance, e.votes) == ("can_1", 2, 1, 50)
    np.testing.assert_allclose(e.roi, result.objects[2].roi, rtol=1e-5)
    assert e.depth == pytest.approx(0.9)
    m = messages.markers(result.objects, header, est.object_set.extents, ["", "package://p/m.dae", None], 3)
    assert m.markers[0].action == m.markers[0].DELETEALL
    bodies = [x for x in m.markers if x.ns == messages.MARKER_NS_MESH]
    assert bodies[0].type == bodies[0].MESH_RESOURCE and bodies[0].mesh_resource == "package://p/m.dae"
    assert bodies[1].type == bodies[1].CUBE and bodies[1].scale.z == pytest.approx(0.1)
    assert len({(x.ns, x.id) for x in m.markers[1:]}) == len(m.markers) - 1
    info = messages.label_info(est.class_names, header, 0.3)
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(0, "__background__"), (1, "box"), (2, "can")]
    assert info.threshold == pytest.approx(0.3)
    assert messages.mesh_uri("/a/b.obj") == "file:///a/b.obj" and messages.mesh_uri(None) is None


def test_overlay_draws_projected_points_and_axes() -> None:
    est, result, K = _fake_result()
    rgb = np.zeros((240, 320, 3), np.uint8)
    out = draw_overlay(rgb, result.objects, K, est.object_set.points, est.object_set.extents)
    assert out.shape == rgb.shape and rgb.sum() == 0 and out.sum() > 0
    uv, front = project(np.zeros((1, 3)), result.objects[0].R, result.objects[0].t, K)
    u, v = uv[0].astype(int)
    assert front.all() and out[v - 2:v + 3, u - 2:u + 3].sum() > 0  # the axes start at the object origin
    assert class_colour(1, 3) != class_colour(2, 3)


# ------------------------------------------------------------------------------------------- params
def test_params_validation_and_config() -> None:
    defaults = NodeSettings.from_values({})
    assert defaults["device"] == "auto" and defaults["publish.tf"] and defaults["image_qos"] == "sensor_data"
    assert check_value("score_threshold", 1.5) and "score_threshold" in check_value("score_threshold", 1.5)
    assert check_value("voting.inlier_threshold", 1.0)
    assert check_value("device", "cuda:1") is None and check_value("device", "tpu")
    assert check_value("image_qos", "best") and check_value("max_instances", "3")
    assert check_value("score_threshold", 1) is None  # integers are fine for float parameters
    with pytest.raises(ParameterError, match="depth_scale"):
        NodeSettings.from_values({"depth_scale": 0.0})
    s = NodeSettings.from_values({"score_threshold": 0.5, "voting.vote_threshold": 3, "publish.overlay": False})
    cfg = s.estimator_config(helpers.FakeConfig())
    assert cfg.score_threshold == 0.5 and cfg.voting.vote_threshold == 3 and not s["publish.overlay"]
    s = NodeSettings.from_values({"refine.rotation_search": 0, "refine.min_inlier_fraction": 0.5})
    est_cfg = s.estimator_config(EstimatorConfig())
    assert est_cfg.refine_options.rotation_search == 0 and est_cfg.refine_options.min_inlier_fraction == 0.5
    assert EstimatorConfig().refine_options.rotation_search == SPEC_BY_NAME["refine.rotation_search"].default
    assert check_value("refine.rotation_search", -1) and check_value("refine.min_inlier_fraction", 1.5)
    desc = {spec.name: descriptor(spec) for spec in SPECS}
    assert desc["score_threshold"].floating_point_range[0].to_value == 1.0
    assert desc["max_instances"].integer_range[0].from_value == 1 and desc["checkpoint"].read_only
    assert desc["score_threshold"].dynamic_typing and not desc["max_instances"].dynamic_typing


OTHER_STRINGS = {"reference_camera": "500,510"}  # string parameters without choices: a valid non-default value


def _other_valid_value(spec):
    """A valid value of `spec` different from its default."""
    if spec.name in OTHER_STRINGS:
        return OTHER_STRINGS[spec.name]
    if spec.kind is bool:
        return not spec.default
    if spec.choices:
        return next(c for c in spec.choices if c != spec.default)
    if spec.kind is int:
        return spec.default + 1 if spec.default < spec.high else spec.default - 1
    return (spec.default + spec.low) / 2 if spec.default > spec.low else (spec.default + spec.high) / 2


def test_every_estimator_parameter_reaches_its_config_field() -> None:
    specs = [spec for spec in SPECS if spec.config]
    assert {"backend", "score_threshold", "nms_iou", "voting.label_threshold", "refine.rotation_search"} <= \
        {s.name for s in specs}
    values = {spec.name: _other_valid_value(spec) for spec in specs}
    cfg = NodeSettings.from_values(values).estimator_config(EstimatorConfig())
    for spec in specs:
        convert = spec.to_config or (lambda v: v)
        field = cfg
        for part in spec.config.split("."):
            field = getattr(field, part)
        assert field == convert(values[spec.name]) and values[spec.name] != spec.default, spec.name
        default = EstimatorConfig()
        for part in spec.config.split("."):
            default = getattr(default, part)
        assert convert(spec.default) == default, spec.name  # the declared default is the estimator's
    assert SPEC_BY_NAME["backend"].read_only and cfg.backend == "torch"
    from posecnn_core.camera import ReferenceCamera

    assert cfg.reference_camera == ReferenceCamera(500.0, 510.0)
    assert check_value("reference_camera", "533") is None and check_value("reference_camera", "-1,2")


def test_unknown_names_are_errors_not_dropped() -> None:
    import dataclasses

    with pytest.raises(ParameterError, match="score_treshold"):
        NodeSettings.from_values({"score_treshold": 0.5})
    assert "unknown parameter" in check_value("score_treshold", 0.5)
    assert check_value("tf_prefix", "a b") and check_value("backend", "opencl")

    @dataclasses.dataclass(frozen=True)
    class OldConfig:  # an estimator config without some of the declared fields
        voting: object = dataclasses.field(default_factory=lambda: EstimatorConfig().voting)
        score_threshold: float = 0.2

    with pytest.raises(ParameterError, match="OldConfig has no field"):
        NodeSettings.from_values({}).estimator_config(OldConfig())
    with pytest.raises(ParameterError, match="score_threshold"):  # the config's own validation, by name
        NodeSettings({**NodeSettings.from_values({}), "score_threshold": 2.0}).estimator_config(EstimatorConfig())


def test_estimator_parameter_with_a_converter(monkeypatch) -> None:
    """An optional config field (None = unset) behind a string parameter ("" = unset), e.g. a reference camera."""
    import dataclasses

    from posecnn_ros import params

    @dataclasses.dataclass(frozen=True)
    class Config:
        camera: str | None = None

    spec = params.ParamSpec("camera", "", "reference camera; empty = none", config="camera",
                            to_config=lambda v: v or None)
    monkeypatch.setattr(params, "SPECS", (spec,))
    monkeypatch.setattr(params, "SPEC_BY_NAME", {"camera": spec})
    assert NodeSettings.from_values({}).estimator_config(Config(camera="x")).camera is None
    assert NodeSettings.from_values({"camera": "ycb"}).estimator_config(Config()).camera == "ycb"


def test_declare_accepts_integers_for_floats_and_reports_unknown_overrides() -> None:
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    context = Context()
    ros.init(context=context, domain_id=helpers.session_domain_id(90))
    nodes = []
    try:
        node = ros.create_node("params_test", context=context, parameter_overrides=[
            Parameter("score_threshold", value=1), Parameter("voting.inlier_threshold", value=0),
            Parameter("max_instances", value=3)])
        nodes.append(node)
        settings = declare(node)
        assert settings["score_threshold"] == 1.0 and type(settings["score_threshold"]) is float
        assert type(settings["voting.inlier_threshold"]) is float and settings["max_instances"] == 3
        assert node.get_parameter("score_threshold").type_ == Parameter.Type.DOUBLE
        assert node.set_parameters([Parameter("depth_scale", value=1)])[0].successful
        value = node.get_parameter("depth_scale").value
        assert value == 1.0 and type(value) is float
        assert not node.set_parameters([Parameter("checkpoint", value="x.pt")])[0].successful  # read-only
        assert unknown_overrides(node) == []
        typo = ros.create_node("params_typo", context=context, parameter_overrides=[
            Parameter("score_treshold", value=0.5), Parameter("zzz", value=1)])
        nodes.append(typo)
        assert declare(typo)["score_threshold"] == SPEC_BY_NAME["score_threshold"].default  # the typo is not used
        assert unknown_overrides(typo) == ["score_treshold", "zzz"]
        bad = ros.create_node("params_bad", context=context,
                                    parameter_overrides=[Parameter("score_threshold", value="high")])
        nodes.append(bad)
        with pytest.raises(ParameterError, match="score_threshold must be a float"):
            declare(bad)
    finally:
        for n in nodes:
            n.destroy_node()
        context.try_shutdown()


def test_unknown_parameters_message_names_the_closest_parameter() -> None:
    assert closest_parameter("score_treshold") == "score_threshold"
    assert closest_parameter("voting.skip_pixel") == "voting.skip_pixels"
    assert closest_parameter("publish_overlay") == "publish.overlay"
    assert closest_parameter("foo") is None
    text = unknown_parameters_message(["foo", "score_treshold"])
    assert text.startswith("ignoring unknown parameter(s): foo, score_treshold (did you mean score_threshold?); ")


def test_max_input_pixels_parameter() -> None:
    spec = SPEC_BY_NAME["max_input_pixels"]
    assert spec.config == "max_input_pixels" and spec.default == EstimatorConfig().max_input_pixels == 1280 * 960
    assert not spec.read_only
    assert check_value("max_input_pixels", 0) is None and check_value("max_input_pixels", 256) is None
    assert "0 (no limit) or at least 256" in check_value("max_input_pixels", 100)
    assert check_value("max_input_pixels", -1) and check_value("max_input_pixels", 1.5e6)
    assert NodeSettings.from_values({"max_input_pixels": 0}).estimator_config(EstimatorConfig()).max_input_pixels \
        is None
    cfg = NodeSettings.from_values({"max_input_pixels": 640 * 480}).estimator_config(EstimatorConfig())
    assert cfg.max_input_pixels == 640 * 480


# ------------------------------------------------------------------------------------------- start-up
def test_params_files_are_found_in_ros_args_only() -> None:
    argv = ["node", "--params-file", "not_ros.yaml", "--ros-args", "-p", "a:=1", "--params-file", "a.yaml", "--",
            "--params-file", "plain.yaml", "--ros-args", "--params-file", "b.yaml"]
    assert startup.params_files(argv) == ["a.yaml", "b.yaml"]


def test_params_file_checks(tmp_path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("posecnn:\n  ros__parameters:\n    score_threshold: 0.5\n")
    startup.check_params_file(str(good))
    bad = tmp_path / "bad.yaml"
    bad.write_text("posecnn:\n  ros__parameters: {score_threshold: 0.5\n")
    cases = {str(tmp_path / "missing.yaml"): "does not exist", str(tmp_path): "is not a regular file",
             str(bad): "is not valid YAML: "}
    for path, expected in cases.items():
        with pytest.raises(startup.StartupError, match=expected) as info:
            startup.check_params_file(path)
        assert path in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(startup.StartupError, match="at line 3"):
        startup.check_params_file(str(bad))


def test_rcl_reason_is_one_line_without_source_locations() -> None:
    text = ("failed to initialize rcl: Couldn't parse params file: '--params-file x.yaml'. Error: Sequences can "
            "only be values and not keys in params. Error at line 1\n, at /project/src/parse.c:835, at "
            "/project/src/rcl/arguments.c:415")
    assert startup.rcl_reason(RuntimeError(text)) == ("Couldn't parse params file: '--params-file x.yaml'. Error: "
                                                      "Sequences can only be values and not keys in params. Error at "
                                                      "line 1")


def test_python_logging_is_forwarded_to_the_ros_logger() -> None:
    import logging

    calls = []

    class Recorder:
        def __getattr__(self, level):
            return lambda text: calls.append((level, text))

    logger = logging.getLogger("posecnn_core.test_forwarding")
    logger.setLevel(logging.WARNING)
    handler = startup.RosLogHandler(Recorder())
    logger.addHandler(handler)
    try:
        logger.warning("input %dx%d is large", 4000, 3000)
        logger.error("bad")
        logger.info("not shown: below the logger's level")
    finally:
        logger.removeHandler(handler)
    assert calls == [("warning", "input 4000x3000 is large"), ("error", "bad")]


_STOP_SCRIPT = """
import os, signal, sys, time
from posecnn_ros import stop_signals
stop = stop_signals.install()
assert stop_signals.install() is stop and stop.immediate
stop.immediate = {immediate}
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.5)
print("first handled", stop.requested, stop.signum == signal.SIGTERM, flush=True)
os.kill(os.getpid(), signal.SIGINT)
time.sleep(0.5)
print("still running", flush=True)
sys.exit(3)
"""


@pytest.mark.parametrize("immediate", [False, True])
def test_stop_signals(immediate) -> None:
    """First SIGTERM/SIGINT: a stop request (or, before anything needs cleaning up, exit 0 at once); a second one:
    exit 0 at once, with what was printed flushed."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _STOP_SCRIPT.format(immediate=immediate)], capture_output=True,
                         text=True, timeout=60, env=helpers.ros_env(0))
    assert out.returncode == 0 and "Traceback" not in out.stderr, out
    assert out.stdout == ("" if immediate else "first handled True True\n"), out


# ------------------------------------------------------------------------------------------- worker
def test_latest_frame_worker_drops_stale_frames() -> None:
    seen: list[int] = []
    gate = threading.Event()

    def process(item: int) -> None:
        gate.wait(5)
        seen.append(item)
        if item == 3:
            raise RuntimeError("boom")

    errors: list[BaseException] = []
    worker = LatestFrameWorker(process, errors.append)
    assert worker.submit(0) is False
    time.sleep(0.1)  # 0 is being processed (blocked on the gate)
    replaced = [worker.submit(i) for i in range(1, 6)]
    assert replaced == [False, True, True, True, True] and worker.dropped == 4
    gate.set()
    assert worker.wait_idle(5)
    assert seen == [0, 5] and worker.processed == 2 and not errors
    worker.submit(3)
    assert worker.wait_idle(5) and isinstance(errors[0], RuntimeError)
    worker.submit(4)
    assert worker.wait_idle(5) and seen[-1] == 4  # the worker survived the error
    assert worker.stop()


def test_throttled_log_is_per_cause() -> None:
    class Logger:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def error(self, msg: str) -> None:
            self.lines.append(msg)

        warning = info = error

    now = [0.0]
    logger = Logger()
    log = ThrottledLog(logger, period_s=5.0, clock=lambda: now[0])
    assert log.error("a", "A") and log.error("b", "B") and not log.error("a", "A")
    now[0] = 6.0
    assert log.error("a", "A")
    assert logger.lines == ["A", "B", "A [1 more like this since the last report]"]
    assert log.counts == {"a": 3, "b": 1}


# ------------------------------------------------------------------------------------------- resources
def test_resource_path_searches_checkout_then_prefixes(tmp_path, monkeypatch) -> None:
    assert resources.resource_path("posecnn_core/resources.py") == Path(resources.__file__).resolve()
    share = tmp_path / "share" / "posecnn_ros" / "data"
    share.mkdir(parents=True)
    (share / "x.bin").write_bytes(b"1")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert resources.resource_path("data/x.bin") == share / "x.bin"
    with pytest.raises(FileNotFoundError, match="searched:.*share/posecnn_ros/data/nope.bin"):
        resources.resource_path("data/nope.bin")
    with pytest.raises(ValueError, match="relative"):
        resources.resource_path("/abs/path")


def test_config_file_lists_every_parameter_with_its_default() -> None:
    import yaml

    doc = yaml.safe_load((helpers.ROOT / "config" / "posecnn.yaml").read_text())
    flat: dict = {}

    def walk(prefix: str, node: dict) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                flat[prefix + key] = value

    walk("", doc["/**"]["ros__parameters"])
    assert flat == {spec.name: spec.default for spec in SPECS}
    assert (helpers.ROOT / "config" / "posecnn.yaml").read_text() == param_docs.yaml_text(), \
        "config/posecnn.yaml is out of date: run python tools/gen_param_docs.py"


def test_docs_list_exactly_the_declared_parameters() -> None:
    text = (helpers.ROOT / "docs" / "node.md").read_text()
    assert param_docs.docs_with_table(text) == text, "docs/node.md is out of date: run python tools/gen_param_docs.py"
    table = text.split(param_docs.DOCS_BEGIN)[1].split(param_docs.DOCS_END)[0]
    names = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]
    assert names == [spec.name for spec in SPECS]


def test_set_error_names_parameter_expectation_and_value() -> None:
    from posecnn_ros.params import expected_text, set_error

    assert expected_text(SPEC_BY_NAME["max_instances"]) == "an integer in [1, 1000]"
    assert expected_text(SPEC_BY_NAME["image_qos"]) == "one of the strings sensor_data | reliable"
    assert expected_text(SPEC_BY_NAME["camera_info_wait"]) == "a number in [0, 10]"
    cases = {
        ("max_instances", 2.5, "double"): "max_instances: expected an integer in [1, 1000], got 2.5 (double)",
        ("publish.tf", "yes", "string"): "publish.tf: expected a boolean (true or false), got 'yes' (string)",
        ("score_threshold", (0.5,), "double array"):
            "score_threshold: expected a number in [0, 1], got [0.5] (double array)",
        ("score_threshold", float("nan"), "double"): "score_threshold: expected a number in [0, 1], got nan (double)",
        ("max_input_pixels", 5, "integer"):
            "max_input_pixels: expected an integer: 0 or [256, 1000000000], got 5 (integer)",
        ("max_instances", None, "not set"): "max_instances cannot be unset: expected an integer in [1, 1000]",
        ("voting.skip_pixel", 3, "integer"): "unknown parameter 'voting.skip_pixel'; did you mean "
                                             "'voting.skip_pixels'?",
        ("checkpoint", "x.pt", "string"): "checkpoint is read-only: it is set when the node starts (-p "
                                          "checkpoint:=... or a parameters file), got 'x.pt' (string)",
    }
    for (name, value, kind), expected in cases.items():
        assert set_error(name, value, kind) == expected
    assert set_error("score_threshold", 1, "integer") is None  # integers for floating-point parameters
    assert set_error("checkpoint", "x.pt", "string", read_only_ok=True) is None


def test_wrong_type_at_start_up_is_said_in_our_words() -> None:
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    context = Context()
    ros.init(context=context, domain_id=helpers.session_domain_id(91))
    try:
        node = ros.create_node("params_type", context=context,
                               parameter_overrides=[Parameter("max_instances", value=2.5)])
        with pytest.raises(ParameterError) as info:
            declare(node)
        assert str(info.value) == "parameter max_instances: expected an integer in [1, 1000], got 2.5 (double)"
        node.destroy_node()
    finally:
        context.try_shutdown()


def test_node_set_parameters_api_gives_our_messages(tmp_path) -> None:
    """PoseCnnNode.set_parameters (the node API, in-process): a failed result in the node's words for each bad
    parameter, no exception for an unknown name, and the good ones are set."""
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from posecnn_ros.node import PoseCnnNode

    ckpt, objs = helpers.write_fake_model(tmp_path)
    context = Context()
    ros.init(context=context, domain_id=helpers.session_domain_id(92))
    try:
        node = PoseCnnNode(helpers.make_fake_estimator, context=context, parameter_overrides=[
            Parameter("checkpoint", value=str(ckpt)), Parameter("objects", value=str(objs))])
        try:
            results = node.set_parameters([Parameter("max_instances", value=2.5), Parameter("fooo", value=1),
                                           Parameter("score_threshold", value=1), Parameter("max_instances", value=7)])
            assert [r.successful for r in results] == [False, False, True, True]
            assert results[0].reason == "max_instances: expected an integer in [1, 1000], got 2.5 (double)"
            assert results[1].reason == "unknown parameter 'fooo'; the node's parameters are listed in docs/node.md"
            assert node.settings["score_threshold"] == 1.0 and node.estimator.config.max_instances == 7
            atomic = node.set_parameters_atomically([Parameter("nms_iou", value=0.5),
                                                     Parameter("publish.tf", value="yes")])
            assert not atomic.successful and atomic.reason == ("publish.tf: expected a boolean (true or false), "
                                                               "got 'yes' (string)")
            assert node.settings["nms_iou"] == SPEC_BY_NAME["nms_iou"].default  # all or nothing
            assert node.set_parameters([Parameter("use_sim_time", value=False)])[0].successful  # rclpy's own
        finally:
            node.close()
            node.destroy_node()
    finally:
        context.try_shutdown()
