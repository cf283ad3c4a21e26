"""Training configuration: a dataclass read from YAML, defaults = PoseCNN-PyTorch's YCB-Video recipe.

Unknown keys are errors (a misspelt option does not go unnoticed). ``--set key=value`` overrides use dotted keys
(``augment.noise_or_blur_prob=0``) with YAML-parsed values. Relative paths stay relative to the working directory.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..augment import AugmentConfig as PhotometricConfig
from ..camera import YCB_VIDEO_CAMERA, ReferenceCamera

__all__ = ["ConfigError", "DataSource", "AugmentConfig", "CropStreamConfig", "TrainConfig", "load_config", "apply_overrides",
           "config_from_dict"]


class ConfigError(ValueError):
    """A training configuration that cannot be used; the message names the field."""


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2's floats: ``2e-5`` and ``1E3`` are numbers, not strings."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


@dataclass
class DataSource:
    """One dataset in the YCB-Video layout (see ``posecnn_core.datasets.ycb``) and the split to train on.

    synthetic: frames are rendered, so the background-replacement augmentation may apply to them.
    """

    root: str
    split: str = "train"
    synthetic: bool = False


_PT = PhotometricConfig()  # PT's photometric defaults, stated once in posecnn_core.augment


@dataclass
class AugmentConfig:
    """Augmentation, applied by :func:`posecnn_core.augment.augment`; the defaults are PT's (HLS colour jitter,
    Gaussian noise or motion blur, background replacement with photographs; no flips, no rescaling).
    Probabilities are per frame. ``enabled: false`` turns it all off (rescaling included)."""

    enabled: bool = True
    # PT's photometric rules: defaults and meaning as in posecnn_core.augment.AugmentConfig
    hls_prob: float = _PT.hls_prob
    hue: float = _PT.hue
    lightness: float = _PT.lightness
    saturation: float = _PT.saturation
    noise_or_blur_prob: float = _PT.noise_or_blur_prob
    blur_fraction: float = _PT.blur_fraction
    noise_sigma: float = _PT.noise_sigma
    blur_max_length: int = _PT.blur_max_length
    background_constant_prob: float = _PT.background_constant_prob
    gray_prob: float = _PT.gray_prob   # our option (0 in PT): the whole augmented frame turned grey
    background_prob: float = 1.0      # synthetic sources: replace the label-0 pixels by a background
    background_prob_real: float = 0.5  # other sources
    background_dir: str | None = None  # photographs (PT: COCO train2014); null = procedural backgrounds
    # our option, off in PT's recipe: rescale the frame by U(scale_min, scale_max) about its top-left corner,
    # crop or zero-pad back to its size, K adjusted exactly (trains several cameras consistently)
    scale_prob: float = 0.0
    scale_min: float = 0.8
    scale_max: float = 1.25

    def for_source(self, synthetic: bool):
        """The :class:`posecnn_core.augment.AugmentConfig` for one data source."""
        if not self.enabled:
            return PhotometricConfig(hls_prob=0.0, noise_or_blur_prob=0.0, background_prob=0.0)
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(PhotometricConfig)
                  if f.name != "background_prob"}
        return PhotometricConfig(**shared,
                                 background_prob=self.background_prob if synthetic else self.background_prob_real)


@dataclass
class CropStreamConfig:
    """Our option (off in PT's recipe): a second stream of object-centred crops for the rotation head only, made
    from a view bank (``posecnn_core.synth.views``) by ``posecnn_core.train.crops``. Every iteration adds the
    point-matching (or paper) rotation loss of ``batch_size`` crops, times ``loss_weight``, to the frame losses.
    ``bank`` null = off."""

    bank: str | None = None
    batch_size: int = 24
    canvas: int = 112                      # crop size in pixels (a multiple of 16)
    size_min: float = 24.0                 # object box long side, log-uniform in [size_min, size_max] pixels
    size_max: float = 100.0
    occlusion_prob: float = 0.5
    max_occlusion: float = 0.6
    roi_jitter: float = 0.1
    resolution_min: float = 0.0            # > 0: the object is first drawn with its long side log-uniform in
                                           # [resolution_min, size] pixels, then scaled up to size (a small RoI
                                           # resampled to a canonical size looks like that); 0 = off
    frame_fraction: float = 0.0            # share of the crops cut from annotated frames (frame_crops.py) at the
                                           # estimator's rotation_crop_size way; 0 = view-bank crops only
    frame_data: list[DataSource] | None = None  # the frames for those crops (null: train_data)
    photo_dir: str | None = "data/backgrounds/photos"  # crop backgrounds (null: procedural images)
    photometric: bool = True               # PT's colour jitter and noise/blur on the crops (augment's settings)
    loss_weight: float = 1.0
    only: bool = False                     # crops alone, no frames: a rotation-pretraining stage (needs iters_per_epoch)

    @property
    def enabled(self) -> bool:
        return self.bank is not None


@dataclass
class TrainConfig:
    """Everything ``posecnn-train`` needs. Defaults reproduce PT's YCB-Video recipe where PT has one."""

    # data
    train_data: list[DataSource] = field(default_factory=list)
    objects: str = ""                     # object-set YAML (class order = model's class order)
    models_root: str | None = None        # override of the object set's models_root
    input_size: list[int] | None = None   # [height, width] to resize frames to; None = as stored (PT: 480x640)
    skip_bad_frames: bool = True
    min_visible_pixels: int = 50          # instances with fewer labelled pixels get no RoIs
    # network
    in_channels: int = 3                  # 3 = BGR, 6 = BGR + backprojected depth (x, y, z)
    fc_dim: int = 4096
    trunk_width: float = 1.0
    vgg16_init: str | None = "data/models/vgg16-397923af.pth"  # torchvision ImageNet VGG16; null = from scratch
    init_weights: str | None = None       # start from this checkpoint's weights (ours or PT's; every key must match)
    init_exclude: list[str] = field(default_factory=list)  # init_weights: key prefixes left at their fresh init
    freeze_early_convs: bool = False      # PT's TRAIN.FREEZE_LAYERS (conv1_1..conv3_3; off in its YCB-Video recipe)
    trainable: list[str] | None = None    # our option: train only these parts (conv5_1, classifier, fc10, ...;
    #                                       PoseCNN.parts); null = all (PT)
    # optimisation (PT: SGD, momentum 0.9, lr 1e-3, x0.1 from the 12th of 16 epochs, batch 2, weight decay 1e-4)
    optimizer: str = "sgd"                # sgd (PT) or adam (AdamW; converges faster from scratch)
    batch_size: int = 2                   # per process
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    epochs: int = 16
    lr_milestones: list[int] = field(default_factory=lambda: [12])  # PT's timing: lr x gamma from the m-th epoch
    lr_gamma: float = 0.1
    iters_per_epoch: int | None = None    # None = one pass over the data; PT: 20000
    max_iters: int | None = None          # stop after this many iterations in total (smoke runs)
    grad_clip_norm: float | None = None
    dropout: float = 0.5                  # p of every Dropout (dense branches and RoI classifier; PT: 0.5)
    # losses (PT: CE over hard pixels and over hard RoIs; vertex smooth-L1 with inside weight 10, times 10;
    # box smooth-L1; point-matching rotation loss)
    hard_label_threshold: float = 0.9     # hard pixels and hard RoIs: probability of the true class below this
    vertex_inside_weight: float = 10.0
    semantic_loss_weight: float = 1.0
    vertex_loss_weight: float = 10.0
    box_class_loss_weight: float = 1.0
    box_reg_loss_weight: float = 1.0
    pose_loss_weight: float = 1.0
    pose_points: int = 1000               # model points per class used by the pose losses
    rotation_loss: str = "pt"             # pt: PT's point-matching loss; paper: PoseLoss / ShapeMatch-Loss
    hard_angle: float = 5.0               # pt loss: only RoIs with a rotation error above this (degrees) count
    rotation_crop_size: float | None = None  # written to the checkpoint meta: the estimator's rotation_crop_size
                                          # the rotation path is trained for (null: PoseCNN's frame features)
    rotation_targets: str = "labelled"    # labelled (PT); nearest_symmetric: classes with a declared finite
                                          # symmetry aim at the nearest equivalent target (train/rotation_targets.py)
    # RoIs for the box and rotation heads
    roi_source: str = "voting"            # voting (PT): training-mode Hough voting on the network's own outputs;
    #                                       gt (our option): jittered ground-truth boxes plus random boxes
    voting_label_threshold: int = 100     # voting: pixels a class needs to take part (PT TRAIN: 100)
    voting_backend: str = "auto"          # voting: auto, torch, cpp or cuda (posecnn_core.voting)
    roi_fg_iou: float = 0.5               # box head: foreground when IoU >= this with a ground-truth box (FG_THRESH)
    pose_fg_iou: float = 0.5              # rotation head (voting): regressed box IoU >= this (FG_THRESH_POSE)
    rois_per_object: int = 2              # gt: jittered copies of each ground-truth box
    roi_jitter: float = 0.1               # gt: std of centre shift (x box size) and of log-scale change
    bg_rois_per_image: int = 2            # gt: random boxes; IoU < roi_fg_iou with every object -> background
    # the camera the depth head is trained for (focal length in pixels at the network's input resolution):
    # depth targets are log(Tz * f_ref / f_frame); default the YCB-Video camera (PT's)
    reference_camera: dict[str, Any] = field(default_factory=lambda: YCB_VIDEO_CAMERA.to_dict())
    # periodic rotation check on training frames (ground-truth boxes, no augmentation); 0 = off
    rotation_eval_interval: int = 0
    rotation_eval_frames: int = 16
    rotation_eval_data: DataSource | None = None  # rotation check on these frames (default: the training data)
    # learning rate and the global batch (world_size x batch_size): PT's lr is for its global batch of 2
    lr_scaling: str = "none"              # none (PT): lr as given; linear: lr x global batch / lr_reference_batch
    lr_reference_batch: int = 2           # the global batch `lr` is meant for (linear scaling)
    # runtime
    device: str = "auto"                  # auto, cpu, cuda, cuda:N (torchrun: cuda:LOCAL_RANK)
    dist_timeout_s: float = 1800.0        # torchrun: rendezvous and collectives fail after this many seconds
    amp: bool = False                     # mixed precision, on CUDA only (our option; PT trains in float32)
    channels_last: bool = True            # NHWC memory layout for the network (same numbers, faster convolutions)
    workers: int = 2
    seed: int = 0
    # output
    output_dir: str = "runs/train"
    checkpoint_dir: str | None = None     # default: <output_dir>/checkpoints
    checkpoint_interval: int = 1000       # iterations; also at the end of each epoch and of training
    resume: str | None = None             # checkpoint path, or "auto" = <checkpoint_dir>/latest.pt if present
    log_dir: str | None = None            # default: <output_dir>
    tensorboard: bool = False
    progress: bool = True
    save_half: bool = False               # write the final model's weights as float16
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    crops: CropStreamConfig = field(default_factory=CropStreamConfig)

    def __post_init__(self) -> None:
        self.validate()

    # -- derived paths --------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(self.output_dir) / "checkpoints"

    @property
    def log_path(self) -> Path:
        return Path(self.log_dir) if self.log_dir else Path(self.output_dir)

    @property
    def reference(self) -> ReferenceCamera:
        """``reference_camera`` as a :class:`posecnn_core.camera.ReferenceCamera`."""
        return ReferenceCamera.from_dict(dict(self.reference_camera))

    def to_dict(self) -> dict[str, Any]:
        """Plain-typed dict (YAML- and checkpoint-safe)."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        def num(name: str, low: float | None = None, high: float | None = None, integer: bool = False,
                optional: bool = False, strict_low: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            ok_type = (isinstance(v, int) if integer else isinstance(v, (int, float))) and not isinstance(v, bool)
            if not ok_type or (not integer and not math.isfinite(v)):
                raise ConfigError(f"field '{name}' must be {'an int' if integer else 'a number'}, got {v!r}")
            if low is not None and (v <= low if strict_low else v < low):
                raise ConfigError(f"field '{name}' must be {'>' if strict_low else '>='} {low}, got {v!r}")
            if high is not None and v > high:
                raise ConfigError(f"field '{name}' must be <= {high}, got {v!r}")

        for name in ("batch_size", "epochs", "rois_per_object", "pose_points", "rotation_eval_frames"):
            num(name, 1, integer=True)
        for name in ("bg_rois_per_image", "workers", "seed", "min_visible_pixels", "voting_label_threshold",
                     "rotation_eval_interval"):
            num(name, 0, integer=True)
        num("checkpoint_interval", 1, integer=True)
        num("iters_per_epoch", 1, integer=True, optional=True)
        num("max_iters", 0, integer=True, optional=True)
        num("fc_dim", 1, integer=True)
        num("lr_reference_batch", 1, integer=True)
        num("dist_timeout_s", 0, strict_low=True)
        num("trunk_width", 0, strict_low=True)
        for name in ("lr", "weight_decay", "momentum", "lr_gamma", "roi_jitter", "vertex_inside_weight",
                     "semantic_loss_weight", "vertex_loss_weight", "box_class_loss_weight",
                     "box_reg_loss_weight", "pose_loss_weight", "hard_angle"):
            num(name, 0)
        num("grad_clip_norm", 0, strict_low=True, optional=True)
        num("hard_label_threshold", 0, 1)
        num("dropout", 0, 1)
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"field 'optimizer' must be 'sgd' or 'adam', got {self.optimizer!r}")
        num("roi_fg_iou", 0, 1, strict_low=True)
        num("pose_fg_iou", 0, 1, strict_low=True)
        for name, allowed in (("rotation_loss", ("pt", "paper")), ("roi_source", ("voting", "gt")),
                              ("rotation_targets", ("labelled", "nearest_symmetric")),
                              ("lr_scaling", ("none", "linear")),
                              ("voting_backend", ("auto", "torch", "cpp", "cuda"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"field '{name}' must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not isinstance(self.reference_camera, Mapping):
            raise ConfigError(f"field 'reference_camera' must be a mapping {{fx, fy, width, height}}, "
                              f"got {self.reference_camera!r}")
        try:
            self.reference
        except ValueError as exc:
            raise ConfigError(f"field 'reference_camera': {exc}") from exc
        if self.in_channels not in (3, 6):
            raise ConfigError(f"field 'in_channels' must be 3 (BGR) or 6 (BGR-D), got {self.in_channels!r}")
        if not isinstance(self.lr_milestones, list) or not all(
                isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in self.lr_milestones):
            raise ConfigError(f"field 'lr_milestones' must be a list of epochs >= 1, got {self.lr_milestones!r}")
        if self.input_size is not None:
            s = self.input_size
            if not (isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                and v >= 16 for v in s)):
                raise ConfigError(f"field 'input_size' must be [height, width] (ints >= 16) or null, got {s!r}")
        if self.vgg16_init is not None and self.trunk_width != 1.0:
            raise ConfigError(f"field 'vgg16_init' needs trunk_width 1.0 (ImageNet VGG16 has the full widths), "
                              f"got trunk_width {self.trunk_width}; set vgg16_init: null to train from scratch")
        if self.vgg16_init is not None and self.init_weights is not None:
            raise ConfigError("fields 'vgg16_init' and 'init_weights' both set: the weights come from one of them "
                              "(set vgg16_init: null to start from init_weights)")
        if self.vgg16_init is not None and self.in_channels not in (3, 6):
            raise ConfigError("field 'vgg16_init' needs in_channels 3 or 6")
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu", "cuda")
                                                    or self.device.startswith("cuda:")):
            raise ConfigError(f"field 'device' must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        a = self.augment
        for name in ("hue", "lightness", "saturation", "noise_sigma"):
            v = getattr(a, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= (180 if name == "hue" else 255):
                raise ConfigError(f"field 'augment.{name}' must be a non-negative number, got {v!r}")
        for name in ("hls_prob", "noise_or_blur_prob", "blur_fraction", "background_prob", "background_prob_real",
                     "background_constant_prob", "scale_prob", "gray_prob"):
            v = getattr(a, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"field 'augment.{name}' must be a probability in [0, 1], got {v!r}")
        k = a.blur_max_length
        if isinstance(k, bool) or not isinstance(k, int) or k < 3:
            raise ConfigError(f"field 'augment.blur_max_length' must be an int >= 3, got {k!r}")
        lo, hi = a.scale_min, a.scale_max
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (lo, hi)) or not 0 < lo <= hi:
            raise ConfigError(f"fields 'augment.scale_min' and 'augment.scale_max' must satisfy "
                              f"0 < scale_min <= scale_max, got {lo!r}, {hi!r}")
        if a.background_dir is not None and (not isinstance(a.background_dir, str) or not a.background_dir):
            raise ConfigError(f"field 'augment.background_dir' must be a directory path or null, "
                              f"got {a.background_dir!r}")
        for i, src in enumerate(self.train_data):
            if not isinstance(src.root, str) or not src.root:
                raise ConfigError(f"field 'train_data[{i}].root' must be a non-empty path, got {src.root!r}")
        if not isinstance(self.init_exclude, list) or not all(isinstance(k, str) and k for k in self.init_exclude):
            raise ConfigError(f"field 'init_exclude' must be a list of key prefixes, got {self.init_exclude!r}")
        if self.trainable is not None and (not isinstance(self.trainable, list) or not self.trainable or not all(
                isinstance(k, str) and k for k in self.trainable)):
            raise ConfigError(f"field 'trainable' must be a non-empty list of network parts (conv5_1, classifier, "
                              f"fc10, ...) or null, got {self.trainable!r}")
        if self.init_exclude and self.init_weights is None:
            raise ConfigError("field 'init_exclude' needs init_weights (it names keys not taken from it)")
        self._validate_crops()

    def _validate_crops(self) -> None:
        c = self.crops
        for name, low, integer in (("batch_size", 1, True), ("canvas", 16, True), ("size_min", 4, False),
                                   ("size_max", 4, False), ("loss_weight", 0, False), ("roi_jitter", 0, False),
                                   ("resolution_min", 0, False)):
            v = getattr(c, name)
            if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) or v < low:
                raise ConfigError(f"field 'crops.{name}' must be {'an int' if integer else 'a number'} >= {low}, "
                                  f"got {v!r}")
        for name in ("occlusion_prob", "max_occlusion", "frame_fraction"):
            v = getattr(c, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"field 'crops.{name}' must be a probability in [0, 1], got {v!r}")
        if not isinstance(c.only, bool):
            raise ConfigError(f"field 'crops.only' must be true or false, got {c.only!r}")
        if c.only and not c.enabled:
            raise ConfigError("field 'crops.only' needs crops.bank (the crops are all the run trains on)")
        if c.only and self.iters_per_epoch is None:
            raise ConfigError("field 'crops.only' needs iters_per_epoch (there are no frames to count epochs by)")
        if c.canvas % 16:
            raise ConfigError(f"field 'crops.canvas' must be a multiple of 16, got {c.canvas}")
        if not c.size_min <= c.size_max <= c.canvas - 2:
            raise ConfigError(f"fields 'crops.size_min' <= 'crops.size_max' <= canvas - 2 must hold, got "
                              f"{c.size_min}, {c.size_max}, canvas {c.canvas}")

    def check_ready(self) -> None:
        """Checks that only matter when training actually starts (data and objects given)."""
        if not self.train_data and not self.crops.only:
            raise ConfigError("field 'train_data' is empty: give at least one {root: ..., split: ...}")
        if not self.objects:
            raise ConfigError("field 'objects' is empty: give the object-set YAML the model is trained for")


def _check_type(value: Any, typ: Any, where: str) -> Any:
    """Light type check/coercion for YAML values (ints accepted for floats)."""
    text = str(typ)
    if value is None:
        if "None" in text or "Optional" in text:
            return None
        raise ConfigError(f"field '{where}' must not be null")
    typ = text.split(" |")[0].strip()
    if typ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"field '{where}' must be a number, got {value!r}")
        return float(value)
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"field '{where}' must be an int, got {value!r}")
        return value
    if typ == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"field '{where}' must be true or false, got {value!r}")
        return value
    if typ == "str":
        if not isinstance(value, str):
            raise ConfigError(f"field '{where}' must be a string, got {value!r}")
        return value
    return value


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"field '{where or 'top level'}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(repr((where + '.' if where else '') + k) for k in unknown)}"
                          f"; known: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        ftype = fields[name].type
        if name == "augment":
            kwargs[name] = value if isinstance(value, AugmentConfig) else _build(AugmentConfig, value or {}, key)
        elif name == "crops":
            kwargs[name] = value if isinstance(value, CropStreamConfig) else _build(CropStreamConfig, value or {},
                                                                                  key)
        elif name == "rotation_eval_data":
            kwargs[name] = None if value is None else (
                value if isinstance(value, DataSource) else _build(DataSource, value, key))
        elif name in ("init_exclude", "trainable"):
            kwargs[name] = list(value) if isinstance(value, (list, tuple)) else value
        elif name == "train_data" or (name == "frame_data" and value is not None):
            if isinstance(value, (str, Mapping)):
                value = [value]
            if not isinstance(value, list):
                raise ConfigError(f"field '{key}' must be a list of data sources, got {value!r}")
            kwargs[name] = [v if isinstance(v, DataSource) else
                            _build(DataSource, {"root": v} if isinstance(v, str) else v, f"{key}[{i}]")
                            for i, v in enumerate(value)]
        elif name in ("input_size", "lr_milestones"):
            kwargs[name] = list(value) if isinstance(value, (list, tuple)) else value
        elif name == "reference_camera":
            if not isinstance(value, Mapping):
                raise ConfigError(f"field '{key}' must be a mapping {{fx, fy, width, height}}, got {value!r}")
            kwargs[name] = dict(value)
        else:
            kwargs[name] = _check_type(value, ftype, key)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def config_from_dict(data: Mapping[str, Any] | None) -> TrainConfig:
    """Build and validate a TrainConfig from a (YAML-loaded) dict; missing fields take the defaults."""
    return _build(TrainConfig, data or {}, "")


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{p}' is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (dotted keys, YAML values) to a config dict; returns it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = _parse_yaml(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r} ({exc})") from exc
        _set_dotted(data, key, value)
    return data


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (None = defaults only), apply ``--set`` overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = _parse_yaml(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded or {}
    data = apply_overrides(data, overrides)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from exc
