"""`posecnn-inspect CHECKPOINT`: what a checkpoint is and which object set it needs.

Prints the file's layout (PoseCNN-PyTorch plain or wrapped state_dict, or ours), the network size read from the
tensor shapes (classes, input channels, trunk and classifier widths), whether the rotation head ``fc10`` is there,
whether the weights match PoseCNN's layout key for key, the stored meta (class names, reference camera) and the
bundled object sets (``config/objects/``) the checkpoint fits, by class count and, when it records them, by names.

Exit status: 0 = at least one object set matches, 1 = none does, 2 = the file cannot be read as a PoseCNN
checkpoint (one line on stderr). Also ``python -m posecnn_core.inspect_checkpoint``.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from .camera import ReferenceCamera
from .checkpoint import (LAYOUTS, ROTATION_HEAD_KEYS, CheckpointError, CheckpointMeta, check_layout,
                         has_rotation_head, infer_meta, read_checkpoint)
from .objects import ObjectSetError, ObjectSetSpec, bundled_object_sets, matching_object_sets, read_object_set_spec

__all__ = ["CheckpointInfo", "describe_state_dict", "describe_checkpoint", "main"]

PRECEDENCE = ("explicit reference_camera parameter > checkpoint meta > object set > "
              "YCB-Video camera (PoseCNN-PyTorch checkpoints without meta)")


@dataclass
class CheckpointInfo:
    """What :func:`describe_checkpoint` found. ``layout_problems`` lists how the weights differ from PoseCNN's
    layout for this size, apart from a missing rotation head (``rotation_head``); empty = a strict load works
    (for a detection-only file: everything but fc10 matches)."""

    path: str
    layout: str
    num_tensors: int
    num_parameters: int
    dtypes: list[str]
    num_classes: int
    in_channels: int
    trunk_width: float
    trunk_convs: list[int]
    fc_dim: int
    rotation_head: bool
    layout_problems: list[str]
    class_names: list[str] | None
    reference_camera: ReferenceCamera | None
    matches: list[ObjectSetSpec] = field(default_factory=list)
    rotation_crop_size: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "layout": self.layout, "layout_text": LAYOUTS[self.layout],
            "num_tensors": self.num_tensors, "num_parameters": self.num_parameters, "dtypes": self.dtypes,
            "num_classes": self.num_classes, "in_channels": self.in_channels, "trunk_width": self.trunk_width,
            "trunk_convs": self.trunk_convs, "fc_dim": self.fc_dim, "rotation_head": self.rotation_head,
            "layout_problems": self.layout_problems, "class_names": self.class_names,
            "reference_camera": None if self.reference_camera is None else self.reference_camera.to_dict(),
            "rotation_crop_size": self.rotation_crop_size,
            "matching_object_sets": [
                {"name": s.name, "file": str(s.source), "num_classes": s.num_classes,
                 "reference_camera": None if s.reference_camera is None else s.reference_camera.to_dict()}
                for s in self.matches],
        }


def describe_state_dict(state_dict: Mapping[str, Tensor], meta: CheckpointMeta | None, layout: str,
                        path: str | Path = "<state_dict>",
                        candidates: Sequence[ObjectSetSpec] | None = None) -> CheckpointInfo:
    """Describe a state_dict read by :func:`~posecnn_core.checkpoint.read_checkpoint` (only shapes are used, so
    ``meta``-device tensors work). ``candidates`` defaults to the bundled object sets. Raises CheckpointError
    when the size cannot be inferred (not a PoseCNN state_dict)."""
    inferred = infer_meta(state_dict, path)  # also raises for a state_dict that is not PoseCNN's
    meta = meta or inferred
    report = check_layout(state_dict, meta)
    rotation_head = has_rotation_head(state_dict)
    if not rotation_head:  # reported on its own line
        for key in ROTATION_HEAD_KEYS:
            report.missing.pop(key, None)
    convs = [int(v.shape[0]) for _, v in sorted((int(k.split(".")[1]), v) for k, v in state_dict.items()
                                                 if k.startswith("features.") and k.endswith(".weight"))]
    matches = matching_object_sets(meta.num_classes, meta.class_names, candidates)
    return CheckpointInfo(
        path=str(path), layout=layout, num_tensors=len(state_dict),
        num_parameters=sum(int(v.numel()) for v in state_dict.values()),
        dtypes=sorted({str(v.dtype).replace("torch.", "") for v in state_dict.values()}),
        num_classes=meta.num_classes, in_channels=meta.in_channels, trunk_width=meta.trunk_width,
        trunk_convs=convs, fc_dim=meta.fc_dim, rotation_head=rotation_head,
        layout_problems=report.problems(), class_names=meta.class_names, reference_camera=meta.reference_camera,
        matches=matches, rotation_crop_size=meta.rotation_crop_size)


def describe_checkpoint(path: str | Path, candidates: Sequence[ObjectSetSpec] | None = None) -> CheckpointInfo:
    """Read ``path`` (``torch.load(weights_only=True)``, memory-mapped where the file allows) and describe it;
    raises CheckpointError when it cannot."""
    state_dict, meta, layout = read_checkpoint(path, mmap=True)
    return describe_state_dict(state_dict, meta, layout, path, candidates)


def _camera_text(cam: ReferenceCamera | None) -> str:
    if cam is None:
        return "none"
    text = f"fx {cam.fx:.10g}, fy {cam.fy:.10g} (f_ref {cam.focal:.1f} px)"
    if cam.width and cam.height:
        text += f" at {cam.width}x{cam.height}"
    if cam.cx is not None and cam.cy is not None:
        text += f", cx {cam.cx:.10g}, cy {cam.cy:.10g}"
    return text


def format_info(info: CheckpointInfo) -> str:
    """The human-readable report printed by ``posecnn-inspect``."""
    channels = {3: "3 (RGB)", 6: "6 (RGB-D)"}.get(info.in_channels, str(info.in_channels))
    lines = [
        f"checkpoint:        {info.path}",
        f"format:            {LAYOUTS[info.layout]}",
        f"tensors:           {info.num_tensors} ({info.num_parameters:,} parameters, {', '.join(info.dtypes)})",
        f"classes:           {info.num_classes} (including the background)",
        f"input channels:    {channels}",
        f"trunk width:       {info.trunk_width:g} (conv widths {'-'.join(map(str, info.trunk_convs))})",
        f"fc width:          {info.fc_dim}" + (" (PoseCNN-PyTorch 'slim')" if info.fc_dim == 256 else ""),
    ]
    if info.rotation_head:
        lines.append("rotation head:     fc10 present" + (
            "" if info.rotation_crop_size is None else
            f", trained on crops: rotations from per-detection crops at {info.rotation_crop_size:g} px "
            "(rotation_crop_size)"))
    else:
        lines.append("rotation head:     fc10 ABSENT - detection-only checkpoint (labels, boxes, centres; "
                     "no rotations, so the pose estimator refuses it)")
    problems = info.layout_problems
    if problems:
        lines.append(f"layout:            does NOT match PoseCNN ({len(problems)} problems):")
        lines += [f"                     {p}" for p in problems[:20]]
        if len(problems) > 20:
            lines.append(f"                     ... and {len(problems) - 20} more")
    else:
        lines.append("layout:            matches PoseCNN key for key" + ("" if info.rotation_head else ", but fc10"))
    if info.class_names is None:
        lines.append("class names:       none stored (PoseCNN-PyTorch files only have the count)")
    else:
        lines.append(f"class names:       {', '.join(info.class_names)}")
    lines.append("reference camera:  " + ("none stored in the checkpoint" if info.reference_camera is None
                                          else f"{_camera_text(info.reference_camera)} (stored in the checkpoint)"))
    if info.matches:
        lines.append("object sets:       " + ("matching by class names:" if info.class_names else
                                             f"matching by class count ({info.num_classes}):"))
        for spec in info.matches:
            lines.append(f"  {spec.name}: {spec.source}")
            lines.append(f"      reference camera: {_camera_text(spec.reference_camera)}")
    else:
        what = "these class names" if info.class_names else f"{info.num_classes} classes"
        lines.append(f"object sets:       none with {what}; write one in the checkpoint's class order "
                     "(docs/object_sets.md)")
    lines.append(f"reference camera precedence: {PRECEDENCE}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="posecnn-inspect",
        description="Describe a PoseCNN checkpoint (PoseCNN-PyTorch or ours) and list the object sets it fits. "
                    "Exit status: 0 = an object set matches, 1 = none does, 2 = unreadable file.")
    parser.add_argument("checkpoint", help="checkpoint file (.pth / .pt)")
    parser.add_argument("--objects", action="append", default=[], metavar="YAML",
                        help="also consider this object-set file (repeatable; model files are not read)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        candidates = bundled_object_sets() + [read_object_set_spec(p) for p in args.objects]
    except (ObjectSetError, OSError) as exc:
        print(f"posecnn-inspect: error: {exc}", file=sys.stderr)
        return 2
    try:
        info = describe_checkpoint(args.checkpoint, candidates)
    except (CheckpointError, OSError, ValueError) as exc:
        print(f"posecnn-inspect: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(json.dumps(info.to_dict(), indent=2) if args.json else format_info(info))
    return 0 if info.matches else 1


if __name__ == "__main__":
    sys.exit(main())
