"""The node's parameters, each declared once in `SPECS`, and everything derived from that table.

A `ParamSpec` holds a parameter's name, default (whose type is the parameter's type), description, range or
choices, read-only flag and where it applies: `config` names the `EstimatorConfig` field it sets (a dotted path
such as "voting.label_threshold"); a spec without one is a setting of the node itself. From the table derive

- the ROS declaration (`declare`): a ParameterDescriptor with description, read-only flag and range per
  parameter; floating-point parameters also accept integers (`score_threshold:=1`) and store them as floats;
- validation at start-up and on every set (`NodeSettings.from_values`, with a reason naming the parameter);
  an override at start-up (command line, parameters file) naming no parameter is reported with a warning that
  lists it and the closest known name (`unknown_overrides`, `unknown_parameters_message`; rclpy would ignore it
  silently), and the node runs on;
- the estimator's configuration (`NodeSettings.estimator_config`);
- config/posecnn.yaml and the table in docs/node.md (`posecnn_ros.param_docs`, tools/gen_param_docs.py).

Read-only parameters are fixed at start-up; the others take effect on the next frame. A change at run time is
checked first by `set_error` (the node's set_parameters, so that a refusal names the parameter, what it accepts and
the value given, or the closest name for an unknown one), then by the node's set-parameters callback. Estimator parameters declared without a
default take the default of their EstimatorConfig field.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from posecnn_core.camera import ReferenceCamera
from posecnn_core.estimator import EstimatorConfig
from posecnn_core.tracking import TrackerConfig

C = TypeVar("C")


class ParameterError(ValueError):
    """A parameter value the node cannot work with; the message names the parameter and the reason."""


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter. Build it with `node_param` or `estimator_param`.

    default: the value when not set; its type (bool, int, float or str) is the parameter's type.
    low, high: inclusive range of a number (`high_open`: the value must be < high).
    choices: the allowed strings. check: a further test, value -> reason or None. constraint: how the allowed
    values are described (derived from range/choices when empty).
    config: dotted path of the EstimatorConfig field the parameter sets; None = a node setting.
    to_config: turns the parameter's value into the field's (e.g. lambda v: v or None for an optional field whose
    parameter uses "" for none); None = the value as it is.
    """

    name: str
    default: bool | int | float | str
    description: str
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None
    constraint: str = ""
    read_only: bool = False
    config: str | None = None
    to_config: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if type(self.default) not in (bool, int, float, str):
            raise TypeError(f"parameter {self.name}: default must be bool, int, float or str, got "
                            f"{type(self.default).__name__} {self.default!r}")
        if (self.low is None) != (self.high is None):
            raise TypeError(f"parameter {self.name}: give both low and high, or neither")

    @property
    def kind(self) -> type:
        return type(self.default)

    def allowed(self) -> str:
        """The allowed values in words: "[0, 1]", "[0, 1)", "a | b", or the spec's own `constraint`."""
        if self.constraint:
            return self.constraint
        if self.low is not None:
            fmt = "d" if self.kind is int else "g"
            return f"[{self.low:{fmt}}, {self.high:{fmt}}{')' if self.high_open else ']'}"
        return " | ".join(self.choices)

    def validate(self, value: Any) -> Any:
        """`value` in the parameter's type (an integer for a float parameter becomes a float), or ParameterError
        naming the parameter and the reason."""
        kind = self.kind
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise ParameterError(f"{self.name} must be a {kind.__name__}, got {type(value).__name__} {value!r}")
        if kind is float and not math.isfinite(value):
            raise ParameterError(f"{self.name} must be finite, got {value!r}")
        if self.low is not None and self.high is not None:
            too_high = value >= self.high if self.high_open else value > self.high
            if value < self.low or too_high:
                raise ParameterError(f"{self.name} must be in {self.allowed()}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ParameterError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
        reason = self.check(value) if self.check else None
        if reason:
            raise ParameterError(f"{self.name} {reason}, got {value!r}")
        return value


def node_param(name: str, default: bool | int | float | str, description: str, **constraints: Any) -> ParamSpec:
    """A setting of the node itself (see ParamSpec for the keyword arguments)."""
    return ParamSpec(name, default, description, **constraints)


def _config_field(path: str) -> Any:
    value: Any = EstimatorConfig()
    for part in path.split("."):
        if not dataclasses.is_dataclass(value) or part not in {f.name for f in dataclasses.fields(value)}:
            raise TypeError(f"EstimatorConfig has no field {path!r} ({part!r} is missing)")
        value = getattr(value, part)
    return value


def estimator_param(name: str, description: str, field: str | None = None, default: Any = None,
                    **constraints: Any) -> ParamSpec:
    """A parameter that sets the EstimatorConfig field `field` (dotted path; default: the parameter's name); its
    default is the field's default unless given."""
    field = field or name
    return ParamSpec(name, _config_field(field) if default is None else default, description, config=field,
                     **constraints)


def _device_reason(value: str) -> str | None:
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return None
    return "must be auto, cpu, cuda or cuda:N"


def _parse_focal(value: str) -> tuple[float, float] | None:
    """"fx,fy" or "f" (pixels) -> (fx, fy); None for "" or anything else."""
    parts = [p.strip() for p in value.split(",")] if value.strip() else []
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        return None
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or not all(math.isfinite(n) and n > 0 for n in nums):
        return None
    return nums[0], nums[1]


def _reference_camera_reason(value: str) -> str | None:
    if value.strip() == "" or _parse_focal(value) is not None:
        return None
    return 'must be "" (from the checkpoint or object set) or "fx,fy" in pixels, e.g. "1066.778,1067.487"'


def _reference_camera(value: str) -> ReferenceCamera | None:
    focal = _parse_focal(value)
    return None if focal is None else ReferenceCamera(fx=focal[0], fy=focal[1])


def _pixel_limit_reason(value: int) -> str | None:
    return None if value == 0 or value >= 256 else "must be 0 (no limit) or at least 256"


def _crop_size_reason(value: float) -> str | None:
    return None if value in (-1, 0) or 4 <= value <= 112 else "must be -1 (from the checkpoint), 0 (off) or in [4, 112]"


def _crop_size(value: float) -> float | str | None:
    return "auto" if value < 0 else (float(value) or None)


def _no_whitespace(value: str) -> str | None:
    return "must not contain whitespace" if any(c.isspace() for c in value) else None


PUBLISH_OUTPUTS = ("detections_2d", "estimates", "label", "markers", "overlay", "tf")

# Object tracking (posecnn_ros/tracking_glue.py, posecnn_core.tracking, docs/tracking.md): each `tracking.<field>`
# sets that field of posecnn_core.tracking.TrackerConfig; defaults are the config's (measured, docs/tracking.md).
_TRACKER_DEFAULTS = TrackerConfig()


def tracking_param(field: str, description: str, **constraints: Any) -> ParamSpec:
    """`tracking.<field>`: a node setting whose default is TrackerConfig's `field` (see tracking_glue)."""
    return node_param(f"tracking.{field}", getattr(_TRACKER_DEFAULTS, field), description, **constraints)


TRACKING_SPECS: tuple[ParamSpec, ...] = (
    node_param("tracking.enabled", False, "Track objects over frames: ids <class>_<track id> that stay with their "
               "object (Detection3D id, TF child frame, markers), filtered poses; false = every frame alone, ids "
               "<class>_<k>. Switching it clears the tracks"),
    tracking_param("min_hits", "Detections that confirm a new track (it is published from then on)",
                   low=1, high=100),
    tracking_param("max_missed", "Frames a confirmed track may go undetected before it is dropped",
                   low=0, high=10_000),
    tracking_param("max_distance", "Association gate (m): largest distance of a detection's centre from "
                   "a track's predicted centre (along-ray part weighted by tracking.depth_weight)",
                   low=0.001, high=10.0),
    tracking_param("min_iou", "Association: a detection whose box overlaps the track's last box by this "
                   "IoU may be matched beyond max_distance", low=0.0, high=1.0),
    tracking_param("depth_weight", "Weight of the distance along the viewing ray (a monocular estimate's "
                   "noisiest direction) in the association gate and the filter's outlier gate", low=0.01, high=1.0),
    tracking_param("filter", "Filter the tracked poses over time (false: track ids only)"),
    tracking_param("position_alpha", "Translation filter gain across the viewing ray (1 = no smoothing)",
                   low=0.01, high=1.0),
    tracking_param("depth_alpha", "Translation filter gain along the viewing ray", low=0.01, high=1.0),
    tracking_param("position_beta", "Translation filter velocity gain (0 = constant position)",
                   low=0.0, high=1.0),
    tracking_param("rotation_alpha", "Rotation filter gain (1 = no smoothing)", low=0.01, high=1.0),
    tracking_param("rotation_beta", "Rotation filter angular-velocity gain", low=0.0, high=1.0),
    tracking_param("gate_translation", "Outlier gate (m): a detection further from the prediction is not "
                   "filtered in (twice in a row: the filter restarts there)", low=0.001, high=10.0),
    tracking_param("gate_rotation_deg", "Outlier gate (degrees) on the rotation", low=0.1, high=180.0),
    tracking_param("symmetric_alignment", "For symmetric objects, use the equivalent rotation closest "
                   "to the track's (no flips between symmetric copies)"),
    tracking_param("tracked_refinement", "With use_depth: refine a confirmed track from its predicted "
                   "pose by local ICP only (new tracks keep the rotation search)"),
)

SPECS: tuple[ParamSpec, ...] = (
    node_param("checkpoint", "", "Model checkpoint (.pt); empty = the bundled demo checkpoint", read_only=True),
    node_param("objects", "", "Object set YAML matching the checkpoint; empty = the bundled demo object set",
               read_only=True),
    node_param("device", "auto", "Where the model runs: auto (cuda when available), cuda, cuda:N or cpu",
               check=_device_reason, constraint="auto | cuda | cuda:N | cpu", read_only=True),
    estimator_param("backend", "Implementation of Hough voting and RoI pooling: auto (the compiled operators when "
                    "available), torch (PyTorch reference), cpp or cuda", choices=("auto", "torch", "cpp", "cuda"),
                    read_only=True),
    estimator_param("score_threshold", "A detection is published when its box-class score is above this "
                    "(PoseCNN-PyTorch demo: 0.1)", low=0.0, high=1.0),
    estimator_param("nms_iou", "Per-class NMS on the regressed boxes: IoU above which the lower-scored box is "
                    "suppressed (PoseCNN-PyTorch demo: 0.2)", low=0.0, high=1.0),
    estimator_param("max_instances", "Most objects published per frame (highest scores first)", low=1, high=1000),
    estimator_param("reference_camera", 'Focal length "fx,fy" (pixels, at the network input) the checkpoint\'s depth '
                    "head was trained with; empty = from the checkpoint, the object set, or the YCB-Video camera for "
                    "PoseCNN-PyTorch checkpoints", default="", to_config=_reference_camera,
                    check=_reference_camera_reason, constraint='"" | "fx,fy"'),
    estimator_param("depth_mode", "Focal-length-aware depth: scale the network's depth by f_cam / f_ref, or resample "
                    "the image to the reference focal length", choices=("scale", "resample")),
    estimator_param("rotation_crop_size", "Rotation head on a crop of each detection resampled so that its box's "
                    "long side is this many pixels (for checkpoints whose rotation path was trained on such crops, "
                    "docs/conventions.md); 0 = PoseCNN's way, pooled from the frame; -1 = as the checkpoint says "
                    "(PoseCNN-PyTorch checkpoints: 0)", default=-1.0, low=-1.0, high=112.0,
                    check=_crop_size_reason, constraint="-1, 0 or [4, 112]", to_config=_crop_size),
    estimator_param("amp", "Run the dense network under autocast (amp_dtype; on the CPU bfloat16 only)",
                    read_only=True),
    estimator_param("amp_dtype", "Autocast type with amp", choices=("bfloat16", "float16"), read_only=True),
    estimator_param("cuda_graph", "On CUDA: capture the dense forward in a CUDA graph per input size",
                    read_only=True),
    estimator_param("compile", "Run the dense forward through torch.compile (slow first frames)", read_only=True),
    estimator_param("max_input_pixels", "Frames with more pixels are downscaled to this many before the network "
                    "(intrinsics scaled exactly; results are in the frame's own pixels); 0 = no limit",
                    low=0, high=1_000_000_000, check=_pixel_limit_reason, constraint="0 or [256, 1000000000]",
                    to_config=lambda v: v or None),
    estimator_param("voting.label_threshold", "Minimum pixel count of a class before it votes",
                    low=0, high=10_000_000),
    estimator_param("voting.inlier_threshold", "Cosine a pixel's direction must exceed to vote for a centre",
                    low=0.0, high=1.0, high_open=True),
    estimator_param("voting.vote_threshold", "Minimum votes of an object centre", low=0, high=10_000_000),
    estimator_param("voting.skip_pixels", "Every n-th pixel of a class votes", low=1, high=10_000),
    estimator_param("voting.check_same_label", "Reject votes whose path to the centre leaves the class's label "
                    "(PoseCNN-PyTorch behaviour; false = the occlusion-robust option)"),
    *(node_param(f"publish.{name}", True, f"Publish ~/{name}" if name != "tf" else "Broadcast a TF frame per "
                 "object on /tf") for name in PUBLISH_OUTPUTS),
    node_param("publish.diagnostics", True, "Publish the node's health (rate, latency, drops, errors) on "
               "/diagnostics once a second"),
    node_param("tf_prefix", "", "Prefix of each object's TF child frame: <tf_prefix><class>_<k> (<class>_<track id> "
               "with tracking.enabled)",
               check=_no_whitespace, constraint="no whitespace"),
    node_param("image_qos", "sensor_data", "QoS of the image/camera_info/depth subscriptions",
               choices=("sensor_data", "reliable"), read_only=True),
    node_param("image_transport", "raw", "How images arrive, as image_transport names it: raw (sensor_msgs/Image "
               "on `image`, `depth`) or compressed (CompressedImage on `<image>/compressed`, JPEG or PNG, and "
               "`<depth>/compressedDepth`)", choices=("raw", "compressed"), read_only=True),
    node_param("rectify", False, "Undistort and rectify images (and depth, nearest neighbour) with CameraInfo's K, "
               "D, R, P and estimate with P's intrinsics, as image_proc does; false = the images are taken as "
               "rectified (one warning when CameraInfo has distortion)"),
    node_param("use_depth", False, "Subscribe to `depth` and pass the frame paired by stamp to the estimator",
               read_only=True),
    node_param("depth_scale", 0.001, "Metres per unit of 16UC1 depth images (32FC1 is metres)", low=1e-9, high=1.0),
    node_param("sync_tolerance", 0.02, "Largest |image stamp - depth stamp| (s) of a depth/image pair",
               low=0.0, high=10.0),
    node_param("camera_info_wait", 0.1, "Longest time (s) an image waits for the camera_info with its stamp (either "
               "may arrive first); after it the newest camera_info is used (logged once)", low=0.0, high=10.0),
    estimator_param("refine.rotation_search", "Depth refinement: start rotations searched over all of SO(3) "
                    "when the network's rotation may be far off; 0 = local ICP only",
                    field="refine_options.rotation_search", low=0, high=1000),
    estimator_param("refine.min_inlier_fraction", "Depth refinement: fewest depth pixels of the object "
                    "(fraction) that must fit the refined pose for it to be used",
                    field="refine_options.min_inlier_fraction", low=0.0, high=1.0),
    *TRACKING_SPECS,
    node_param("warmup", True, "Run one dummy frame at start-up when the model is on a GPU", read_only=True),
    node_param("warmup_width", 640, "Width of the warm-up frame", low=16, high=8192, read_only=True),
    node_param("warmup_height", 480, "Height of the warm-up frame", low=16, high=8192, read_only=True),
)
SPEC_BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in SPECS}
if len(SPEC_BY_NAME) != len(SPECS):
    raise TypeError("SPECS declares a parameter twice")


def check_value(name: str, value: Any) -> str | None:
    """Why `value` is invalid for parameter `name` (also when `name` is not a parameter), or None."""
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    try:
        spec.validate(value)
    except ParameterError as exc:
        return str(exc)
    return None


_KIND_WORDS = {bool: "a boolean (true or false)", int: "an integer", float: "a number", str: "a string"}


def expected_text(spec: ParamSpec) -> str:
    """What `spec` accepts, in words: "an integer in [1, 1000]", "a boolean (true or false)", "one of the strings
    sensor_data | reliable", "a string: no whitespace"."""
    if spec.choices and not spec.constraint:
        return f"one of the strings {spec.allowed()}"
    words = _KIND_WORDS[spec.kind]
    if spec.low is not None and not spec.constraint:
        return f"{words} in {spec.allowed()}"
    return f"{words}: {spec.allowed()}" if spec.allowed() else words


def _value_text(value: Any, type_name: str) -> str:
    if isinstance(value, str):
        shown = repr(value)
    elif hasattr(value, "__len__"):  # an array parameter: list, tuple or array.array
        shown = str(list(value))
    else:
        shown = str(value)
    return f"{shown} ({type_name})"


def set_error(name: str, value: Any, type_name: str, read_only_ok: bool = False) -> str | None:
    """Why setting parameter `name` to `value` (of ROS parameter type `type_name`: "integer", "double", "string",
    "bool", "not set", "string array", ...) is refused, in the node's words, or None when it is fine.

    "max_instances: expected an integer in [1, 1000], got 2.5 (double)"; "unknown parameter 'fooo'; did you mean
    'foo'?"; "checkpoint is read-only: ...". `read_only_ok`: skip the read-only check (at start-up)."""
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        close = closest_parameter(name)
        hint = f"; did you mean {close!r}?" if close else "; the node's parameters are listed in docs/node.md"
        return f"unknown parameter {name!r}{hint}"
    if spec.read_only and not read_only_ok:
        return (f"{name} is read-only: it is set when the node starts (-p {name}:=... or a parameters file), "
                f"got {_value_text(value, type_name)}")
    expected = expected_text(spec)
    if type_name == "not set":
        return f"{name} cannot be unset: expected {expected}"
    if spec.kind is float and type_name == "integer":
        value = float(value)
    elif type_name != {bool: "bool", int: "integer", float: "double", str: "string"}[spec.kind]:
        return f"{name}: expected {expected}, got {_value_text(value, type_name)}"
    try:
        spec.validate(value)
    except ParameterError:
        return f"{name}: expected {expected}, got {_value_text(value, type_name)}"
    return None


def ros_type_name(param: Any) -> str:
    """The ROS parameter type of an rclpy Parameter in words: "integer", "double", "string array", "not set"."""
    return param.type_.name.lower().replace("_", " ")


class NodeSettings(Mapping[str, Any]):
    """Validated values of every parameter, by parameter name (settings["voting.label_threshold"]); immutable."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> NodeSettings:
        """Defaults updated with `values`, each validated: ParameterError names an unknown or bad parameter."""
        unknown = sorted(set(values) - SPEC_BY_NAME.keys())
        if unknown:
            raise ParameterError(f"unknown parameter(s): {', '.join(unknown)}")
        return cls({spec.name: spec.validate(values.get(spec.name, spec.default)) for spec in SPECS})

    def updated(self, values: Mapping[str, Any]) -> NodeSettings:
        """These settings with `values` changed (validated like from_values)."""
        return NodeSettings.from_values({**self._values, **values})

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(f"unknown parameter {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"NodeSettings({self._values!r})"

    def estimator_config(self, base: C) -> C:
        """A copy of `base` (a frozen EstimatorConfig) with the value of every estimator parameter in its field.

        ParameterError when `base` lacks a field (nothing is dropped) or rejects a value."""
        updates: dict[str, Any] = {}
        for spec in SPECS:
            if spec.config is None:
                continue
            value = self._values[spec.name]
            node = updates
            *parents, leaf = spec.config.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = spec.to_config(value) if spec.to_config else value
        return _replace(base, updates, "")


def _replace(obj: Any, updates: dict[str, Any], where: str) -> Any:
    if not dataclasses.is_dataclass(obj):
        raise ParameterError(f"{where.rstrip('.') or 'config'} is a {type(obj).__name__}, not a dataclass")
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in updates.items():
        if key not in names:
            raise ParameterError(f"{type(obj).__name__} has no field {where}{key}")
        changes[key] = _replace(getattr(obj, key), value, f"{where}{key}.") if isinstance(value, dict) else value
    try:
        return dataclasses.replace(obj, **changes)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{type(obj).__name__}: {exc}") from exc


# ------------------------------------------------------------------------------------------------ ROS side
def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The spec's ParameterDescriptor: description, read-only flag, range and allowed values. Floating-point
    parameters are dynamically typed so that an integer value is not a type error (see `coerce_integers`)."""
    desc = ParameterDescriptor(name=spec.name, description=spec.description, read_only=spec.read_only,
                               additional_constraints=spec.allowed())
    if spec.kind is float:
        desc.dynamic_typing = True
        if spec.low is not None:
            desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                            step=0.0)]
    elif spec.kind is int and spec.low is not None:
        desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    return desc


def coerce_integers(params: Sequence[Any]) -> list[Any]:
    """A pre-set-parameters callback: integer values of floating-point parameters become floats."""
    from rclpy.parameter import Parameter

    out = []
    for p in params:
        spec = SPEC_BY_NAME.get(p.name)
        if spec is not None and spec.kind is float and p.type_ == Parameter.Type.INTEGER:
            p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
        out.append(p)
    return out


def declare(node: Any) -> NodeSettings:
    """Declare every parameter on `node` (an rclpy Node) and return the validated start-up settings.

    ParameterError for a bad value. Overrides (command line, parameters file) that name no parameter are left
    to `unknown_overrides`. Registers `coerce_integers` as pre-set callback; validating later changes is the
    node's set-parameters callback (NodeSettings.updated)."""
    from rclpy.exceptions import ParameterException
    from rclpy.parameter import Parameter

    values: dict[str, Any] = {}
    for spec in SPECS:
        try:
            values[spec.name] = node.declare_parameter(spec.name, spec.default, descriptor(spec)).value
        except ParameterException as exc:  # e.g. out of range, wrong type: say so in our words
            given = getattr(node, "_parameter_overrides", {}).get(spec.name)
            reason = (set_error(spec.name, given.value, ros_type_name(given), read_only_ok=True)
                      if given is not None else None)
            raise ParameterError(f"parameter {reason or f'{spec.name}: {exc}'}") from exc
    settings = NodeSettings.from_values(values)
    as_float = [Parameter(n, Parameter.Type.DOUBLE, settings[n]) for n, v in values.items() if type(v) is int
                and SPEC_BY_NAME[n].kind is float]
    if as_float:
        node.set_parameters(as_float)
    node.add_pre_set_parameters_callback(coerce_integers)
    return settings


def unknown_overrides(node: Any) -> list[str]:
    """Names given at start-up (command line, parameters file) that `node` has not declared, sorted.

    rclpy keeps such overrides without a word; once `declare` ran, the node's own parameters (use_sim_time, ...)
    are declared, so any other name is a typo or a parameter of another node."""
    return sorted(name for name in getattr(node, "_parameter_overrides", {}) if not node.has_parameter(name))


def closest_parameter(name: str) -> str | None:
    """The declared parameter name most like `name` (difflib), or None when none is close."""
    match = difflib.get_close_matches(name, list(SPEC_BY_NAME), n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_parameters_message(names: Sequence[str]) -> str:
    """The start-up warning for parameters the node does not have: each name, with the closest known name."""
    parts = []
    for name in names:
        close = closest_parameter(name)
        parts.append(f"{name} (did you mean {close}?)" if close else name)
    return (f"ignoring unknown parameter(s): {', '.join(parts)}; the node's parameters are listed in docs/node.md "
            f"and config/posecnn.yaml")
