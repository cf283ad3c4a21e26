"""Checkpoint I/O for :class:`~posecnn_core.network.PoseCNN`: PT checkpoints, our own format, ImageNet VGG16 init.

Only ``torch.load(..., weights_only=True, map_location="cpu")`` is used, so a checkpoint can hold tensors and
plain Python values but never code. Loading is strict unless asked otherwise, and every skipped key is reported.

Accepted layouts (``read_state_dict``; ``read_checkpoint`` also says which one a file has, see ``LAYOUTS``):
- PT: a plain state_dict (key -> tensor), or ``{'model': state_dict}`` (``'state_dict'`` is accepted too);
- ours: ``{'format': 'posecnn_ros', 'format_version': 1, 'model': state_dict, 'meta': {...}}``, optionally with
  ``'weights_dtype': 'float16'`` (weights stored in half precision; read back as float32) and ``'train_state'``
  (optimizer/scheduler/RNG state for resuming training, see ``posecnn_core.train``; ignored here).
A ``module.`` prefix (DDP / DataParallel) on every key is stripped and logged as a warning.
A PT "detection-only" checkpoint (trained with ``POSE_REG: False``) has no rotation head (``fc10``); it is read
like any other, but :func:`model_from_checkpoint` refuses it with an error saying so (see
:func:`has_rotation_head`). :func:`model_from_checkpoint` also refuses NaN or infinite weights, naming the tensors
(:func:`nonfinite_tensors`). A path that is not a regular file (directory, /dev/null, FIFO) and a file holding
pickled Python objects (e.g. a whole ``nn.Module`` saved with ``torch.save(model)``) get messages of their own.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .camera import ReferenceCamera
from .files import atomic_replace, path_kind
from .network import PoseCNN, trunk_channels

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "LAYOUTS", "ROTATION_HEAD_KEYS", "CheckpointError", "CheckpointMismatchError",
    "CheckpointMeta", "LoadReport", "read_state_dict", "read_checkpoint", "save_checkpoint", "load_weights",
    "load_vgg16_imagenet", "model_from_checkpoint", "infer_meta", "check_layout", "has_rotation_head",
    "strip_module_prefix", "read_train_state", "nonfinite_tensors",
]

log = logging.getLogger(__name__)

FORMAT_NAME = "posecnn_ros"
FORMAT_VERSION = 1
_PREFIX = "module."
# The top-level layouts read_checkpoint tells apart.
LAYOUTS = {
    "pt_plain": "PoseCNN-PyTorch, plain state_dict",
    "pt_model": "PoseCNN-PyTorch, wrapped {'model': state_dict}",
    "pt_state_dict": "PoseCNN-PyTorch, wrapped {'state_dict': state_dict}",
    "ours": f"{FORMAT_NAME} (format_version <= {FORMAT_VERSION}, with meta)",
}
ROTATION_HEAD_KEYS = ("fc10.weight", "fc10.bias")


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or has an unexpected layout."""


class CheckpointMismatchError(CheckpointError):
    """A state_dict does not match the model (missing, unexpected or shape-mismatched keys)."""


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


@dataclass
class CheckpointMeta:
    """What a checkpoint says about its network. ``extra`` holds training info (epoch, config, ...).

    class_names: names by class index (index 0 = background), or None when unknown (PT checkpoints).
    format_version: FORMAT_VERSION for our files, 0 for a PT state_dict.
    trunk_width: the network's trunk width factor (see :class:`~posecnn_core.network.PoseCNN`); 1.0 = VGG16.
    reference_camera: the camera the depth head was trained with (focal-length-aware depth, docs/conventions.md),
    or None when unknown (PT checkpoints, and ours written before it was recorded).
    rotation_crop_size: the estimator's ``rotation_crop_size`` the rotation path was trained for (rotations from
    per-detection crops at that apparent size, ``posecnn_core.rotation_crops``), or None (PoseCNN's way).
    ``extra`` may hold only None/bool/int/float/str and lists/tuples/str-keyed dicts of them, so that the file
    stays loadable with ``weights_only=True``.
    """

    num_classes: int
    in_channels: int = 3
    fc_dim: int = 4096
    trunk_width: float = 1.0
    class_names: list[str] | None = None
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    reference_camera: ReferenceCamera | None = None
    rotation_crop_size: float | None = None

    def __post_init__(self) -> None:
        rc = self.rotation_crop_size
        if rc is not None and (isinstance(rc, bool) or not isinstance(rc, (int, float)) or not 4 <= rc <= 4096):
            raise ValueError(f"CheckpointMeta.rotation_crop_size must be None or a number in [4, 4096], got {rc!r}")
        for name, low in (("num_classes", 2), ("in_channels", 1), ("fc_dim", 1), ("format_version", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"CheckpointMeta.{name} must be an int >= {low}, got {value!r}")
        if self.class_names is not None:
            names = list(self.class_names)
            if not all(isinstance(n, str) for n in names):
                raise TypeError("CheckpointMeta.class_names must be a list of str")
            if len(names) != self.num_classes:
                raise ValueError(f"CheckpointMeta.class_names has {len(names)} names but num_classes is "
                                 f"{self.num_classes}")
            self.class_names = names
        tw = self.trunk_width
        if isinstance(tw, bool) or not isinstance(tw, (int, float)) or not 0 < tw <= 1e3:
            raise ValueError(f"CheckpointMeta.trunk_width must be a positive number, got {tw!r}")
        self.trunk_width = float(tw)
        if isinstance(self.reference_camera, Mapping):
            self.reference_camera = ReferenceCamera.from_dict(dict(self.reference_camera))
        if self.reference_camera is not None and not isinstance(self.reference_camera, ReferenceCamera):
            raise TypeError("CheckpointMeta.reference_camera must be a ReferenceCamera, a dict or None, got "
                            f"{type(self.reference_camera).__name__}")
        if not isinstance(self.extra, dict):
            raise TypeError(f"CheckpointMeta.extra must be a dict, got {type(self.extra).__name__}")
        bad = [k for k, v in self.extra.items() if not isinstance(k, str) or not _is_plain(v)]
        if bad:
            raise TypeError(f"CheckpointMeta.extra must hold only plain Python values (None, bool, int, float, "
                            f"str, list, tuple, dict with str keys); offending keys: {bad}")

    def to_dict(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "in_channels": self.in_channels, "fc_dim": self.fc_dim,
                "trunk_width": self.trunk_width, "class_names": None if self.class_names is None else list(self.class_names),
                "format_version": self.format_version, "extra": dict(self.extra),
                "reference_camera": None if self.reference_camera is None else self.reference_camera.to_dict(),
                "rotation_crop_size": None if self.rotation_crop_size is None else float(self.rotation_crop_size)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckpointMeta":
        known = {"num_classes", "in_channels", "fc_dim", "trunk_width", "class_names", "format_version", "extra",
                 "reference_camera", "rotation_crop_size"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown CheckpointMeta fields: {unknown}")
        if "num_classes" not in data:
            raise ValueError("CheckpointMeta needs num_classes")
        return cls(**dict(data))


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


@dataclass
class LoadReport:
    """Outcome of loading a state_dict into a model.

    loaded: keys copied into the model. missing: model keys left untouched -> expected shape.
    unexpected: state_dict keys the model lacks -> their shape. shape_mismatched: key -> (expected, actual).
    notes: anything else the caller should know (e.g. adapted tensors).
    """

    loaded: list[str] = field(default_factory=list)
    missing: dict[str, tuple[int, ...]] = field(default_factory=dict)
    unexpected: dict[str, tuple[int, ...]] = field(default_factory=dict)
    shape_mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every model key was loaded and nothing was skipped."""
        return not (self.missing or self.unexpected or self.shape_mismatched)

    def problems(self) -> list[str]:
        """One line per offending key."""
        lines = [f"missing: {k} (model expects {list(s)})" for k, s in self.missing.items()]
        lines += [f"unexpected: {k} (checkpoint has {list(s)}, model has no such key)"
                  for k, s in self.unexpected.items()]
        lines += [f"shape mismatch: {k} (model expects {list(e)}, checkpoint has {list(a)})"
                  for k, (e, a) in self.shape_mismatched.items()]
        return lines

    def summary(self) -> str:
        head = (f"loaded {len(self.loaded)} tensors; {len(self.missing)} missing, {len(self.unexpected)} "
                f"unexpected, {len(self.shape_mismatched)} shape-mismatched (skipped)")
        return "\n".join([head] + ["  " + line for line in self.problems() + self.notes])


def strip_module_prefix(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], bool]:
    """Drop a ``module.`` prefix when EVERY key has it (DDP); returns (state_dict, whether it was stripped)."""
    keys = list(state_dict)
    if keys and all(k.startswith(_PREFIX) for k in keys):
        return {k[len(_PREFIX):]: v for k, v in state_dict.items()}, True
    return dict(state_dict), False


def _tensor_dict(obj: Any, path: Path, what: str) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: {what} is a {type(obj).__name__}, expected a mapping of tensors")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: {what} has entries that are not str -> tensor: {bad[:10]}"
                              + (f" (+{len(bad) - 10} more)" if len(bad) > 10 else ""))
    return dict(obj)


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, Tensor], CheckpointMeta | None]:
    """Read a checkpoint file -> (state_dict on CPU, meta or None for PT files). See the module docstring."""
    state_dict, meta, _ = read_checkpoint(path)
    return state_dict, meta


def read_checkpoint(path: str | os.PathLike, mmap: bool = False
                    ) -> tuple[dict[str, Tensor], CheckpointMeta | None, str]:
    """Like :func:`read_state_dict`, plus the file's top-level layout (a key of ``LAYOUTS``).

    ``mmap`` maps the tensors from the file instead of reading them into memory (files written by
    ``torch.save``'s zip format; older files are read normally), for looking at a checkpoint cheaply.
    """
    path = Path(path)
    _check_file(path)
    _check_content(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except Exception as exc:  # torch raises many types for corrupt/unsafe files
        raise _load_error(path, exc) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: top level is a {type(obj).__name__}, expected a dict")

    meta = None
    if obj.get("format") == FORMAT_NAME:
        version = obj.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise CheckpointError(f"{path}: format_version must be an int, got {version!r}")
        if version > FORMAT_VERSION:
            raise CheckpointError(f"{path}: format_version {version} is newer than this code supports "
                                  f"({FORMAT_VERSION}); update posecnn_core")
        state_dict = _tensor_dict(obj.get("model"), path, "'model'")
        stored = obj.get("weights_dtype", "float32")
        if stored not in ("float32", "float16"):
            raise CheckpointError(f"{path}: weights_dtype must be 'float32' or 'float16', got {stored!r}")
        if stored == "float16":
            state_dict = {k: v.float() if v.dtype == torch.float16 else v for k, v in state_dict.items()}
        raw_meta = obj.get("meta")
        if not isinstance(raw_meta, Mapping):
            raise CheckpointError(f"{path}: 'meta' is missing or not a dict")
        try:
            meta = CheckpointMeta.from_dict({**raw_meta, "format_version": version})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: invalid meta ({exc})") from exc
        layout = "ours"
    elif "model" in obj and isinstance(obj["model"], Mapping):
        state_dict, layout = _tensor_dict(obj["model"], path, "'model'"), "pt_model"
    elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        state_dict, layout = _tensor_dict(obj["state_dict"], path, "'state_dict'"), "pt_state_dict"
    elif obj and all(isinstance(v, Tensor) for v in obj.values()):
        state_dict, layout = _tensor_dict(obj, path, "state_dict"), "pt_plain"
    else:
        raise CheckpointError(f"{path}: unrecognised checkpoint layout (top-level keys: {list(obj)[:10]}); "
                              "expected a state_dict, {'model': state_dict} or our posecnn_ros format")
    if not state_dict:
        raise CheckpointError(f"{path}: checkpoint holds no tensors")
    state_dict, stripped = strip_module_prefix(state_dict)
    if stripped:
        log.warning("%s: stripped the 'module.' (DDP) prefix from all %d keys", path, len(state_dict))
    return state_dict, meta, layout


def _check_file(path: Path) -> None:
    """CheckpointError unless `path` is a regular file (a directory, /dev/null or a FIFO each say so)."""
    kind = path_kind(path)
    if kind == "missing":
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    if kind != "regular file":
        raise CheckpointError(f"{path}: is a {kind}, not a checkpoint file" if kind != "unreadable"
                              else f"{path}: cannot access the checkpoint file")


_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_ZIP_MAGIC = b"PK\x03\x04"   # torch.save's format since PyTorch 1.6
_PICKLE_MAGIC = b"\x80"        # the legacy torch.save format starts with a pickle protocol opcode
_TAR_MAGIC_OFFSET = 257        # the oldest torch.save format is a tar archive ("ustar" at this offset)


def _not_a_checkpoint_reason(path: Path) -> str | None:
    """Why `path` cannot be a torch.save file, judged from its first bytes before torch reads it: "empty file",
    "text file starting with '...'", "truncated zip archive (...)"; None when it may be one (torch decides)."""
    size = os.path.getsize(path)
    if size == 0:
        return "empty file"
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(_ZIP_MAGIC):
        if zipfile.is_zipfile(path):
            return None
        return f"truncated zip archive ({size} bytes, the end of the archive is missing)"
    if head.startswith(_PICKLE_MAGIC) or head[_TAR_MAGIC_OFFSET:_TAR_MAGIC_OFFSET + 5] == b"ustar":
        return None
    text = _as_text(head)
    if text is not None:
        return f"text file starting with {' '.join(text.split())[:60]!r}"
    return None  # some other binary content: torch.load's own error says what it found


def _as_text(head: bytes) -> str | None:
    """`head` as text when it is printable UTF-8 (a character cut at the end is ignored), else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return None
        text = head[:exc.start].decode("utf-8")
    return text if text and all(c.isprintable() or c in "\r\n\t" for c in text) else None


def _check_content(path: Path) -> None:
    """CheckpointError "not a checkpoint: ..." for an empty file, a text file or a truncated zip archive, before
    torch.load misreads it (text is parsed as pickle opcodes, so its error would name a "pickled object")."""
    reason = _not_a_checkpoint_reason(path)
    if reason is not None:
        raise CheckpointError(f"{path}: not a checkpoint: {reason}")


def _load_error(path: Path, exc: Exception) -> CheckpointError:
    """The CheckpointError for a file torch.load(weights_only=True) refused or could not read."""
    if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in str(exc):
        found = _UNSAFE_GLOBAL.search(str(exc))
        what = f" (it contains {found.group(1)})" if found else ""
        return CheckpointError(
            f"{path}: holds pickled Python objects{what}, not just tensors; checkpoints are read as weights only, "
            "never by running code from the file. Re-save the weights where the file was made, with "
            "torch.save(model.state_dict(), 'weights.pt') (or {'model': model.state_dict()}), or write a "
            "training checkpoint of this project out with `python -m posecnn_core.train.export SRC DST`")
    if isinstance(exc, EOFError) or os.path.getsize(path) == 0:
        return CheckpointError(f"{path}: not a checkpoint: the file is empty or truncated")
    text = " ".join(str(exc).split())
    return CheckpointError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {text})")


def nonfinite_tensors(state_dict: Mapping[str, Tensor]) -> dict[str, int]:
    """Floating-point tensors holding NaN or infinite values -> how many such values each holds."""
    bad = {}
    for key, value in state_dict.items():
        if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value.sum())):
            count = int((~torch.isfinite(value)).sum())
            if count:
                bad[key] = count
    return bad


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def _check_train_state(value: Any, where: str) -> None:
    """Allow what ``torch.load(weights_only=True)`` reads back: tensors, plain scalars, str/int-keyed containers."""
    if value is None or isinstance(value, (bool, int, float, str, Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_train_state(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"train_state key {where}[{k!r}] must be a str or int")
            _check_train_state(v, f"{where}[{k!r}]")
        return
    raise TypeError(f"train_state{where} holds a {type(value).__name__}; only tensors and plain Python values "
                    "can be stored")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: CheckpointMeta, *, half: bool = False,
                    train_state: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s state_dict and ``meta`` in our format, atomically (temp file + rename). Returns the path.

    A DDP/DataParallel wrapper is unwrapped; ``meta`` must agree with a PoseCNN's num_classes/in_channels/fc_dim/
    trunk_width. ``half`` stores floating weights as float16 (half the size; :func:`read_state_dict` casts them
    back to float32). ``train_state`` (tensors and plain values only, e.g. optimizer and RNG states) is stored
    beside the weights for resuming; read it with :func:`read_train_state`.
    """
    if not isinstance(meta, CheckpointMeta):
        raise TypeError(f"meta must be a CheckpointMeta, got {type(meta).__name__}")
    model = _unwrap(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, PoseCNN):
        for name in ("num_classes", "in_channels", "fc_dim", "trunk_width"):
            if getattr(model, name) != getattr(meta, name):
                raise ValueError(f"meta.{name}={getattr(meta, name)} disagrees with the model's "
                                 f"{getattr(model, name)}")
    if train_state is not None:
        if not isinstance(train_state, Mapping):
            raise TypeError(f"train_state must be a mapping, got {type(train_state).__name__}")
        _check_train_state(dict(train_state), "")
    meta_dict = meta.to_dict()
    meta_dict["format_version"] = FORMAT_VERSION

    def stored(v: Tensor) -> Tensor:
        v = v.detach().cpu()
        return v.to(torch.float16) if half and v.is_floating_point() else v.clone()

    payload: dict[str, Any] = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "weights_dtype": "float16" if half else "float32",
        "model": {k: stored(v) for k, v in model.state_dict().items()},
        "meta": {k: v for k, v in meta_dict.items() if k != "format_version"}}
    if train_state is not None:
        payload["train_state"] = dict(train_state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_replace(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def read_train_state(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``train_state`` stored by :func:`save_checkpoint` (None when the file has none); CPU tensors."""
    path = Path(path)
    _check_file(path)
    _check_content(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _load_error(path, exc) from exc
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a {FORMAT_NAME} checkpoint, so it has no training state")
    state = obj.get("train_state")
    if state is not None and not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: 'train_state' is a {type(state).__name__}, expected a dict")
    return None if state is None else dict(state)


def _compare(model_sd: Mapping[str, Tensor], state_dict: Mapping[str, Tensor]) -> LoadReport:
    report = LoadReport()
    for key, target in model_sd.items():
        if key not in state_dict:
            report.missing[key] = _shape(target)
        elif _shape(state_dict[key]) != _shape(target):
            report.shape_mismatched[key] = (_shape(target), _shape(state_dict[key]))
        else:
            report.loaded.append(key)
    for key, value in state_dict.items():
        if key not in model_sd:
            report.unexpected[key] = _shape(value)
    return report


def _copy_in(model: nn.Module, state_dict: Mapping[str, Tensor], keys: list[str]) -> None:
    if keys:
        result = model.load_state_dict({k: state_dict[k] for k in keys}, strict=False)
        assert not result.unexpected_keys, result.unexpected_keys


def load_weights(model: nn.Module, state_dict: Mapping[str, Tensor], *, partial: bool = False) -> LoadReport:
    """Copy ``state_dict`` into ``model``; strict unless ``partial``.

    Strict: any missing, unexpected or shape-mismatched key raises CheckpointMismatchError listing every such
    key with expected/actual shapes, and the model is left unchanged. Partial: loads the matching keys and
    returns a LoadReport describing the rest (print ``report.summary()``).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    model = _unwrap(model)
    report = _compare(model.state_dict(), state_dict)
    if not partial and not report.complete:
        hint = ""
        if report.unexpected and all(k.startswith(_PREFIX) for k in state_dict):
            hint = "\n(every key starts with 'module.': read the file with read_state_dict, which strips it)"
        raise CheckpointMismatchError("state_dict does not match the model:\n  "
                                      + "\n  ".join(report.problems()) + hint)
    _copy_in(model, state_dict, report.loaded)
    if not report.complete:
        log.warning("partial weight load: %s", report.summary())
    return report


def load_vgg16_imagenet(model: PoseCNN, path: str | os.PathLike) -> LoadReport:
    """Initialise ``model`` from a local torchvision VGG16 ImageNet state_dict (e.g. ``vgg16-397923af.pth``).

    ``features.*`` map one to one (for in_channels=6 the RGB filters of conv1_1 are copied into both channel
    halves, as PT does; other in_channels raise); ``classifier.0``/``classifier.3`` load when fc_dim is 4096,
    otherwise they are reported as shape-mismatched. Model keys the file cannot provide (the PoseCNN heads) are
    reported as missing and keep their initialisation; file keys PoseCNN lacks (``classifier.6``) as unexpected.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: ImageNet VGG16 weights not found. This machine has no internet access: download "
            "torchvision's VGG16 ImageNet state_dict (vgg16-397923af.pth) elsewhere and copy it to this path.")
    state_dict, _ = read_state_dict(path)
    net = _unwrap(model)
    report = _compare(net.state_dict(), state_dict)
    adapted: dict[str, Tensor] = {}
    key0 = "features.0.weight"
    if key0 in report.shape_mismatched:
        expected, actual = report.shape_mismatched[key0]
        if expected[1] == 2 * actual[1] and expected[0] == actual[0] and expected[2:] == actual[2:]:
            adapted[key0] = torch.cat([state_dict[key0], state_dict[key0]], dim=1)
            del report.shape_mismatched[key0]
            report.loaded.append(key0)
            report.notes.append(f"{key0}: ImageNet {list(actual)} filters copied into both halves of "
                                f"{list(expected)} (PT's RGB-D init)")
    trunk = LoadReport(missing={k: s for k, s in report.missing.items() if k.startswith("features.")},
                       shape_mismatched={k: s for k, s in report.shape_mismatched.items()
                                         if k.startswith("features.")})
    if not trunk.complete:
        raise CheckpointMismatchError(
            f"{path}: not a VGG16 state_dict matching this model's trunk (in_channels="
            f"{getattr(net, 'in_channels', '?')}):\n  " + "\n  ".join(trunk.problems()))
    _copy_in(net, {**state_dict, **adapted}, report.loaded)
    log.info("ImageNet VGG16 init from %s: %s", path, report.summary())
    return report


_TRUNK_CONV_KEYS = tuple(f"features.{i}.weight" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28))


def _infer_trunk_width(state_dict: Mapping[str, Tensor]) -> float:
    """trunk_width from the conv widths: features.0 has 64·w outputs (also tried: conv5_3's 512·w)."""
    first = int(state_dict["features.0.weight"].shape[0])
    if first == 64:
        return 1.0
    widths = [int(state_dict[k].shape[0]) for k in _TRUNK_CONV_KEYS if k in state_dict]
    candidates = [first / 64.0]
    if "features.28.weight" in state_dict:
        candidates.append(int(state_dict["features.28.weight"].shape[0]) / 512.0)
    for w in candidates:
        if trunk_channels(w)[:len(widths)] == widths:
            return w
    return candidates[0]  # the strict load then names the mismatching keys


def infer_meta(state_dict: Mapping[str, Tensor], path: str | os.PathLike) -> CheckpointMeta:
    """The network size of a PT state_dict from its tensor shapes (class_names None, format_version 0).

    num_classes from ``conv_score.0``, in_channels from ``features.0``, fc_dim from ``classifier.0``, trunk_width
    from the trunk's conv widths. Only shapes are read, so tensors on the ``meta`` device work too. ``path`` is
    used in error messages.
    """
    path = Path(path)
    needed = ("conv_score.0.weight", "features.0.weight", "classifier.0.weight")
    absent = [k for k in needed if k not in state_dict]
    if absent:
        raise CheckpointError(f"{path}: cannot infer the network size, keys missing: {absent}")
    score, first, fc0 = (state_dict[k] for k in needed)
    if score.dim() != 4 or first.dim() != 4 or fc0.dim() != 2:
        raise CheckpointError(f"{path}: unexpected ranks for {needed}: "
                              f"{[list(t.shape) for t in (score, first, fc0)]}")
    width = _infer_trunk_width(state_dict)
    try:
        return CheckpointMeta(num_classes=int(score.shape[0]), in_channels=int(first.shape[1]),
                              fc_dim=int(fc0.shape[0]), trunk_width=width, class_names=None, format_version=0)
    except ValueError as exc:
        raise CheckpointError(f"{path}: implausible network size ({exc})") from exc


def check_layout(state_dict: Mapping[str, Tensor], meta: CheckpointMeta) -> LoadReport:
    """Compare ``state_dict`` with the keys and shapes of a PoseCNN of ``meta``'s size, without allocating one
    (the model is built on the ``meta`` device). ``report.complete`` means a strict load works; nothing is
    copied (``loaded`` lists the keys that would be)."""
    with torch.device("meta"):
        expected = PoseCNN(meta.num_classes, in_channels=meta.in_channels, fc_dim=meta.fc_dim,
                           trunk_width=meta.trunk_width).state_dict()
    return _compare(expected, state_dict)


def has_rotation_head(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether the state_dict has the rotation head ``fc10`` (PT's detection-only checkpoints have none)."""
    return all(k in state_dict for k in ROTATION_HEAD_KEYS)


def model_from_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"
                          ) -> tuple[PoseCNN, CheckpointMeta]:
    """Build a PoseCNN from a checkpoint and load it strictly -> (model in eval mode on ``device``, meta).

    For PT files the size is inferred from tensor shapes (class_names None, format_version 0); for ours it comes
    from the stored meta. A detection-only checkpoint (no ``fc10``, everything else matching) raises a
    CheckpointMismatchError that says so: PoseCNN without its rotation head cannot estimate poses. NaN or infinite
    weights raise a CheckpointError naming the tensors (such a model detects nothing).
    """
    path = Path(path)
    state_dict, meta = read_state_dict(path)
    bad = nonfinite_tensors(state_dict)
    if bad:
        names = [f"{key} ({count} of {state_dict[key].numel()} values)" for key, count in list(bad.items())[:5]]
        more = f" and {len(bad) - 5} more tensors" if len(bad) > 5 else ""
        raise CheckpointError(f"{path}: NaN or infinite weights in {', '.join(names)}{more}; the file is corrupt or "
                              "was saved after training diverged: use an earlier checkpoint")
    if meta is None:
        meta = infer_meta(state_dict, path)
    report = check_layout(state_dict, meta)
    if not has_rotation_head(state_dict) and set(report.missing) <= set(ROTATION_HEAD_KEYS) \
            and not report.unexpected and not report.shape_mismatched:
        raise CheckpointMismatchError(
            f"{path}: a detection-only checkpoint (no rotation head: {', '.join(report.missing)} absent; "
            "PoseCNN-PyTorch's POSE_REG: False variant, e.g. vgg16_ycb_object_detection_*). It predicts labels, "
            "boxes and object centres but no rotations, so it cannot estimate poses; use a checkpoint of the "
            "same family with fc10 (e.g. vgg16_ycb_object_self_supervision_epoch_8.checkpoint.pth)")
    model = PoseCNN(meta.num_classes, in_channels=meta.in_channels, fc_dim=meta.fc_dim,
                    trunk_width=meta.trunk_width)
    try:
        load_weights(model, state_dict)
    except CheckpointMismatchError as exc:
        raise CheckpointMismatchError(f"{path}: {exc}") from exc
    return model.to(device).eval(), meta
