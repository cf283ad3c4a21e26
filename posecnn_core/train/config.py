"""Training configuration: a dataclass read from YAML, defaults = PoseCNN-PyTorch's YCB-Video recipe.

Unknown keys are errors (a misspelt option does not go unnoticed). ``--set key=value`` overrides use dotted keys
(``augment.noise_or_blur_prob=0``) with YAML-parsed values. Relative paths stay relative to the working directory.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

__all__ = ["ConfigError", "DataSource", "AugmentConfig", "TrainConfig", "load_config", "apply_overrides",
           "config_from_dict"]


class ConfigError(ValueError):
    """A training configuration that cannot be used; the message names the field."""


@dataclass
class DataSource:
    """One dataset in the YCB-Video layout (see ``posecnn_core.datasets.ycb``) and the split to train on.

    synthetic: frames are rendered, so the background-replacement augmentation may apply to them.
    """

    root: str
    split: str = "train"
    synthetic: bool = False


@dataclass
class AugmentConfig:
    """Photometric augmentation, applied by :func:`posecnn_core.augment.augment` (PT: HLS colour jitter,
    Gaussian noise or motion blur, random backgrounds for synthetic frames; no flips). Probabilities are per
    frame; ``background_prob`` applies to ``synthetic`` sources only. ``enabled: false`` turns it all off."""

    enabled: bool = True
    hls_prob: float = 1.0
    hue: float = 10.0                 # max |hue shift|, degrees
    lightness: float = 0.1            # lightness scaled by 1 + U(-x, x)
    saturation: float = 0.1           # saturation scaled by 1 + U(-x, x)
    noise_or_blur_prob: float = 0.5   # then Gaussian noise or motion blur, equally likely
    noise_sigma: float = 5.0          # grey levels
    blur_max_length: int = 7          # pixels
    background_prob: float = 0.5      # synthetic frames: replace label-0 pixels by a procedural background

    def for_source(self, synthetic: bool):
        """The :class:`posecnn_core.augment.AugmentConfig` for one data source."""
        from ..augment import AugmentConfig as Ops

        if not self.enabled:
            return Ops(hls_prob=0.0, noise_or_blur_prob=0.0, background_prob=0.0)
        return Ops(hls_prob=self.hls_prob, hue=self.hue, lightness=self.lightness, saturation=self.saturation,
                   noise_or_blur_prob=self.noise_or_blur_prob, noise_sigma=self.noise_sigma,
                   blur_max_length=self.blur_max_length,
                   background_prob=self.background_prob if synthetic else 0.0)


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
    freeze_early_convs: bool = True       # PT's TRAIN.FREEZE_LAYERS (conv1_1..conv3_3); only with vgg16_init
    # optimisation (PT: SGD, momentum 0.9, lr 1e-3, x0.1 at epoch 12 of 16, batch 2, weight decay 1e-4)
    optimizer: str = "sgd"                # sgd (PT) or adam (AdamW; converges faster from scratch)
    batch_size: int = 2                   # per process
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    epochs: int = 16
    lr_milestones: list[int] = field(default_factory=lambda: [12])
    lr_gamma: float = 0.1
    iters_per_epoch: int | None = None    # None = one pass over the data; PT: 20000
    max_iters: int | None = None          # stop after this many iterations in total (smoke runs)
    grad_clip_norm: float | None = None
    dropout: float = 0.5                  # p of every Dropout (dense branches and RoI classifier; PT: 0.5)
    # losses (PT: CE over hard pixels; vertex smooth-L1 with inside weight 10, times 10; box CE + smooth-L1;
    # PoseLoss / ShapeMatch-Loss)
    hard_label_threshold: float = 0.9
    vertex_inside_weight: float = 10.0
    semantic_loss_weight: float = 1.0
    vertex_loss_weight: float = 10.0
    box_class_loss_weight: float = 1.0
    box_reg_loss_weight: float = 1.0
    pose_loss_weight: float = 1.0
    pose_points: int = 1000               # model points per class used by the pose losses
    # RoIs for the box and rotation heads (from ground-truth boxes)
    rois_per_object: int = 2              # jittered copies of each ground-truth box
    roi_jitter: float = 0.1               # std of centre shift (x box size) and of log-scale change
    bg_rois_per_image: int = 2            # random boxes; IoU < roi_fg_iou with every object -> background
    roi_fg_iou: float = 0.5
    # runtime
    device: str = "auto"                  # auto, cpu, cuda, cuda:N (torchrun: cuda:LOCAL_RANK)
    amp: bool = True                      # mixed precision, on CUDA only
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

    def __post_init__(self) -> None:
        self.validate()

    # -- derived paths --------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(self.output_dir) / "checkpoints"

    @property
    def log_path(self) -> Path:
        return Path(self.log_dir) if self.log_dir else Path(self.output_dir)

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

        for name in ("batch_size", "epochs", "rois_per_object", "pose_points"):
            num(name, 1, integer=True)
        for name in ("bg_rois_per_image", "workers", "seed", "min_visible_pixels"):
            num(name, 0, integer=True)
        num("checkpoint_interval", 1, integer=True)
        num("iters_per_epoch", 1, integer=True, optional=True)
        num("max_iters", 0, integer=True, optional=True)
        num("fc_dim", 1, integer=True)
        num("trunk_width", 0, strict_low=True)
        for name in ("lr", "weight_decay", "momentum", "lr_gamma", "roi_jitter", "vertex_inside_weight",
                     "semantic_loss_weight", "vertex_loss_weight", "box_class_loss_weight",
                     "box_reg_loss_weight", "pose_loss_weight"):
            num(name, 0)
        num("grad_clip_norm", 0, strict_low=True, optional=True)
        num("hard_label_threshold", 0, 1)
        num("dropout", 0, 1)
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"field 'optimizer' must be 'sgd' or 'adam', got {self.optimizer!r}")
        num("roi_fg_iou", 0, 1, strict_low=True)
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
        if self.vgg16_init is not None and self.in_channels not in (3, 6):
            raise ConfigError("field 'vgg16_init' needs in_channels 3 or 6")
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu", "cuda")
                                                    or self.device.startswith("cuda:")):
            raise ConfigError(f"field 'device' must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        a = self.augment
        for name in ("hue", "lightness", "saturation", "noise_sigma"):
            v = getattr(a, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= (360 if name == "hue" else 255):
                raise ConfigError(f"field 'augment.{name}' must be a non-negative number, got {v!r}")
        for name in ("hls_prob", "noise_or_blur_prob", "background_prob"):
            v = getattr(a, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"field 'augment.{name}' must be a probability in [0, 1], got {v!r}")
        k = a.blur_max_length
        if isinstance(k, bool) or not isinstance(k, int) or k < 3:
            raise ConfigError(f"field 'augment.blur_max_length' must be an int >= 3, got {k!r}")
        for i, src in enumerate(self.train_data):
            if not isinstance(src.root, str) or not src.root:
                raise ConfigError(f"field 'train_data[{i}].root' must be a non-empty path, got {src.root!r}")

    def check_ready(self) -> None:
        """Checks that only matter when training actually starts (data and objects given)."""
        if not self.train_data:
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
        elif name == "train_data":
            if isinstance(value, (str, Mapping)):
                value = [value]
            if not isinstance(value, list):
                raise ConfigError(f"field '{key}' must be a list of data sources, got {value!r}")
            kwargs[name] = [v if isinstance(v, DataSource) else
                            _build(DataSource, {"root": v} if isinstance(v, str) else v, f"{key}[{i}]")
                            for i, v in enumerate(value)]
        elif name in ("input_size", "lr_milestones"):
            kwargs[name] = list(value) if isinstance(value, (list, tuple)) else value
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
            value = yaml.safe_load(raw) if raw.strip() else None
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
            loaded = yaml.safe_load(path.read_text())
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
