"""The node's parameters: one table of specs (default, description, range or choices, read-only), declaration with
descriptors, validation with a reason, and the typed `NodeSettings` the node works from.

Every parameter can be set from config/posecnn.yaml. Read-only ones are fixed at start-up (rclpy rejects runtime
changes); the others are validated by the node's set-parameters callback and take effect on the next frame.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


class ParameterError(ValueError):
    """A parameter value the node cannot work with; the message names the parameter and the reason."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, default (its type is the parameter's type), description and constraints."""

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False
    high_open: bool = False  # the value must be < high (ranges in the descriptor are always closed)


PUBLISH_OUTPUTS = ("detections_2d", "estimates", "label", "markers", "overlay", "tf")

SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", "", "Model checkpoint (.pt); empty = the bundled demo checkpoint", read_only=True),
    ParamSpec("objects", "", "Object set YAML matching the checkpoint; empty = the bundled demo object set",
              read_only=True),
    ParamSpec("device", "auto", "Where the model runs: auto (cuda when available), cuda, cuda:N or cpu",
              choices=("auto", "cuda", "cpu"), read_only=True),
    ParamSpec("score_threshold", 0.1, "A detection is published when its box-class score is above this "
              "(PoseCNN-PyTorch demo: 0.1)", 0.0, 1.0),
    ParamSpec("nms_iou", 0.2, "Per-class NMS on the regressed boxes: IoU above which the lower-scored box is "
              "suppressed (PoseCNN-PyTorch demo: 0.2)", 0.0, 1.0),
    ParamSpec("max_instances", 128, "Most objects published per frame (highest scores first)", 1, 1000),
    ParamSpec("voting.label_threshold", 200, "Minimum pixel count of a class before it votes", 0, 10_000_000),
    ParamSpec("voting.inlier_threshold", 0.9, "Cosine a pixel's direction must exceed to vote for a centre",
              0.0, 1.0, high_open=True),
    ParamSpec("voting.vote_threshold", 10, "Minimum votes of an object centre", 0, 10_000_000),
    ParamSpec("voting.skip_pixels", 10, "Every n-th pixel of a class votes", 1, 10_000),
    ParamSpec("voting.check_same_label", True, "Reject votes whose path to the centre leaves the class's "
              "label (PoseCNN-PyTorch behaviour; false = the occlusion-robust option)"),
    *(ParamSpec(f"publish.{name}", True, f"Publish ~/{name}" if name != "tf" else "Broadcast a TF frame per "
                "object on /tf") for name in PUBLISH_OUTPUTS),
    ParamSpec("tf_prefix", "", "Prefix of each object's TF child frame: <tf_prefix><class>_<k>"),
    ParamSpec("image_qos", "sensor_data", "QoS of the image/camera_info/depth subscriptions",
              choices=("sensor_data", "reliable"), read_only=True),
    ParamSpec("use_depth", False, "Subscribe to `depth` and pass the frame paired by stamp to the estimator",
              read_only=True),
    ParamSpec("depth_scale", 0.001, "Metres per unit of 16UC1 depth images (32FC1 is metres)", 1e-9, 1.0),
    ParamSpec("sync_tolerance", 0.02, "Largest |image stamp - depth stamp| (s) of a depth/image pair", 0.0, 10.0),
    ParamSpec("refine.rotation_search", 72, "Depth refinement: start rotations searched over all of SO(3) when "
              "the network's rotation may be far off; 0 = local ICP only", 0, 1000),
    ParamSpec("refine.min_inlier_fraction", 0.3, "Depth refinement: fewest depth pixels of the object (fraction) "
              "that must fit the refined pose for it to be used", 0.0, 1.0),
    ParamSpec("warmup", True, "Run one dummy frame at start-up when the model is on a GPU", read_only=True),
    ParamSpec("warmup_width", 640, "Width of the warm-up frame", 16, 8192, read_only=True),
    ParamSpec("warmup_height", 480, "Height of the warm-up frame", 16, 8192, read_only=True),
)
SPEC_BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in SPECS}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """A ParameterDescriptor with description, read-only flag, numeric range or the allowed choices."""
    desc = ParameterDescriptor(name=spec.name, description=spec.description, read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.low is not None and spec.high is not None:
        if isinstance(spec.default, bool):
            pass
        elif isinstance(spec.default, int):
            desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
        else:
            desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                            step=0.0)]
            if spec.high_open:
                desc.additional_constraints = f"must be < {spec.high}"
    return desc


def check_value(name: str, value: Any) -> str | None:
    """Why `value` is invalid for parameter `name`, or None when it is fine."""
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        return None  # not ours (e.g. use_sim_time)
    kind = type(spec.default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        return f"{name} must be a {kind.__name__}, got {type(value).__name__} {value!r}"
    if kind is float and not math.isfinite(value):
        return f"{name} must be finite, got {value!r}"
    if spec.low is not None and spec.high is not None and kind in (int, float):
        too_high = value >= spec.high if spec.high_open else value > spec.high
        if value < spec.low or too_high:
            bracket = ")" if spec.high_open else "]"
            return f"{name} must be in [{spec.low}, {spec.high}{bracket}, got {value!r}"
    if name == "device":
        if not (value in spec.choices or (value.startswith("cuda:") and value[5:].isdigit())):
            return f"device must be auto, cpu, cuda or cuda:N, got {value!r}"
    elif spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if name == "tf_prefix" and any(c.isspace() for c in value):
        return f"tf_prefix must not contain whitespace, got {value!r}"
    return None


@dataclass(frozen=True)
class NodeSettings:
    """Typed values of all parameters."""

    checkpoint: str
    objects: str
    device: str
    score_threshold: float
    nms_iou: float
    max_instances: int
    label_threshold: int
    inlier_threshold: float
    vote_threshold: int
    skip_pixels: int
    check_same_label: bool
    publish: dict[str, bool]
    tf_prefix: str
    image_qos: str
    use_depth: bool
    depth_scale: float
    sync_tolerance: float
    rotation_search: int
    min_inlier_fraction: float
    warmup: bool
    warmup_width: int
    warmup_height: int

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeSettings:
        """Validate every value (ParameterError naming the first bad one) and build the settings."""
        merged = {spec.name: spec.default for spec in SPECS} | dict(values)
        for name, value in merged.items():
            reason = check_value(name, value)
            if reason:
                raise ParameterError(reason)
        kwargs: dict[str, Any] = {}
        for name, value in merged.items():
            if name.startswith("publish."):
                kwargs.setdefault("publish", {})[name.split(".", 1)[1]] = bool(value)
            elif name in SPEC_BY_NAME:
                field = name.split(".", 1)[-1]
                kwargs[field] = float(value) if isinstance(SPEC_BY_NAME[name].default, float) else value
        return cls(**kwargs)


def apply_to_config(config: Any, settings: NodeSettings) -> Any:
    """A copy of the estimator's frozen config (EstimatorConfig with a VotingParams `voting` and RefineOptions
    `refine_options`) with the settings' thresholds; fields the config does not have are left alone."""
    voting_fields = {"label_threshold": settings.label_threshold, "inlier_threshold": settings.inlier_threshold,
                     "vote_threshold": settings.vote_threshold, "skip_pixels": settings.skip_pixels,
                     "check_same_label": settings.check_same_label}
    voting = config.voting
    names = {f.name for f in dataclasses.fields(voting)}
    voting = dataclasses.replace(voting, **{k: v for k, v in voting_fields.items() if k in names})
    top = {"voting": voting, "score_threshold": settings.score_threshold, "nms_iou": settings.nms_iou,
           "max_instances": settings.max_instances}
    refine = getattr(config, "refine_options", None)
    if refine is not None:
        top["refine_options"] = dataclasses.replace(refine, rotation_search=settings.rotation_search,
                                                    min_inlier_fraction=settings.min_inlier_fraction)
    names = {f.name for f in dataclasses.fields(config)}
    return dataclasses.replace(config, **{k: v for k, v in top.items() if k in names})
