"""Where a generator run writes: a new (or empty) folder, a dataset it replaces, or one it extends — never over
data it was not asked to replace.

``plan_output`` checks the output folder before anything is rendered:

- ``new`` (the default): the folder must be missing or empty;
- ``overwrite``: a dataset written by this generator (it has ``synth_info.yaml``) is replaced: its ``data/``,
  ``image_sets/`` and ``synth_info.yaml`` are removed just before the new frames are written; other files in the
  folder are left alone; a folder holding files but no ``synth_info.yaml`` (another dataset, unrelated files) is
  refused;
- ``append``: frames are added to a dataset written by this generator, numbered after its listed frames (frame
  ``i`` is always drawn from ``frame_rng(seed, i)``), with the same object classes, image size and
  ``frames_per_sequence``; the lists are extended and ``synth_info.yaml`` records every run.

``synth_info.yaml``: ``objects``, ``classes``, ``frames`` (all runs), ``frames_per_sequence`` and ``runs``, one entry
per run (``first_frame``, ``frames``, ``train``, ``test``, ``seed``, ``test_fraction``, ``min_visible_pixels``,
``objects``, ``scene``, ``notes``). The flat layout of earlier versions (one run's keys at the top) is read as one
run.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..files import path_kind

__all__ = ["OUTPUT_MODES", "OutputError", "OutputPlan", "plan_output", "frame_id", "frame_index", "read_info"]

OUTPUT_MODES = ("new", "overwrite", "append")
INFO_FILE = "synth_info.yaml"
DATASET_PARTS = ("data", "image_sets", INFO_FILE)  # what `overwrite` removes
_FRAME_ID = re.compile(r"^(\d{4,})/(\d{6})$")


class OutputError(ValueError):
    """The output folder cannot take this run (it holds data the run would damage, or does not fit it)."""


def frame_id(index: int, frames_per_sequence: int) -> str:
    """``<seq>/<NNNNNN>`` of the frame with 0-based ``index``."""
    return f"{index // frames_per_sequence:04d}/{index % frames_per_sequence + 1:06d}"


def frame_index(fid: str, frames_per_sequence: int) -> int:
    """Inverse of :func:`frame_id`; ValueError for an id that is not of that form."""
    match = _FRAME_ID.match(fid)
    if not match or not 1 <= int(match.group(2)) <= frames_per_sequence:
        raise ValueError(f"frame id {fid!r} is not <seq>/<NNNNNN> with NNNNNN in 1..{frames_per_sequence}")
    return int(match.group(1)) * frames_per_sequence + int(match.group(2)) - 1


@dataclass
class OutputPlan:
    """What a run does to its output folder (see the module docstring)."""

    root: Path
    mode: str
    first_frame: int = 0
    train: list[str] = field(default_factory=list)   # frames already listed (append)
    test: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)  # earlier runs' records (append)
    remove: list[Path] = field(default_factory=list)  # removed before writing (overwrite)

    def clear_replaced(self) -> None:
        """Remove the replaced dataset's parts (overwrite); call once the run is ready to write."""
        for path in self.remove:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()


def read_info(path: Path) -> dict[str, Any]:
    """``synth_info.yaml`` with a ``runs`` list (a flat, one-run file is converted); OutputError when unreadable."""
    try:
        info = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise OutputError(f"cannot read {path}: {' '.join(str(exc).split())}") from exc
    if not isinstance(info, dict):
        raise OutputError(f"{path} is not a synth_info mapping")
    if "runs" not in info:
        run_keys = ("frames", "seed", "test_fraction", "min_visible_pixels", "objects", "scene", "notes")
        info = {"objects": info.get("objects"), "frames": info.get("frames"),
                "frames_per_sequence": info.get("frames_per_sequence"),
                "runs": [{"first_frame": 0, **{k: info[k] for k in run_keys if k in info}}]}
    if not isinstance(info.get("runs"), list) or not isinstance(info.get("frames_per_sequence"), int):
        raise OutputError(f"{path} lacks runs or frames_per_sequence")
    return info


def _list(root: Path, split: str) -> list[str]:
    path = root / "image_sets" / f"{split}.txt"
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def _listing(root: Path, limit: int = 3) -> str:
    names = sorted(p.name for p in root.iterdir())
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def plan_output(root: str | Path, mode: str, class_names: list[str], width: int, height: int,
                frames_per_sequence: int) -> OutputPlan:
    """Check the output folder for a run in ``mode`` (see the module docstring); OutputError says why not.

    Nothing is changed here; :meth:`OutputPlan.clear_replaced` does the removal of ``overwrite``."""
    if mode not in OUTPUT_MODES:
        raise ValueError(f"mode must be one of {', '.join(OUTPUT_MODES)}, got {mode!r}")
    root = Path(root)
    kind = path_kind(root)
    if kind == "missing":
        return OutputPlan(root, mode)
    if kind != "directory":
        raise OutputError(f"output {root} is a {kind}, not a folder")
    if not any(root.iterdir()):
        return OutputPlan(root, mode)
    info_path = root / INFO_FILE
    if mode == "new":
        raise OutputError(f"output folder {root} is not empty ({_listing(root)}); nothing was written. Give a new "
                          f"folder, or --append to add frames to the dataset in it, or --overwrite to replace it")
    if not info_path.is_file():
        raise OutputError(f"output folder {root} holds files ({_listing(root)}) but no {INFO_FILE}: it is not a "
                          f"dataset made by this generator, so it is neither replaced nor extended; nothing was "
                          f"written. Give a new or empty folder")
    info = read_info(info_path)
    if mode == "overwrite":
        return OutputPlan(root, mode, remove=[root / part for part in DATASET_PARTS if (root / part).exists()])
    # append
    classes_file = root / "image_sets" / "classes.txt"
    existing = [ln.strip() for ln in classes_file.read_text().splitlines() if ln.strip()] \
        if classes_file.is_file() else None
    if existing != list(class_names):
        raise OutputError(f"cannot append to {root}: its classes {existing} differ from the object set's "
                          f"{list(class_names)}")
    if info["frames_per_sequence"] != frames_per_sequence:
        raise OutputError(f"cannot append to {root}: it has frames_per_sequence {info['frames_per_sequence']}, "
                          f"this run {frames_per_sequence}")
    scene = (info["runs"][-1] if info["runs"] else {}).get("scene") or {}
    if (scene.get("width"), scene.get("height")) != (width, height):
        raise OutputError(f"cannot append {width}x{height} frames to {root}: its frames are "
                          f"{scene.get('width')}x{scene.get('height')}")
    train, test = _list(root, "train"), _list(root, "test")
    try:
        indices = [frame_index(fid, frames_per_sequence) for fid in train + test]
    except ValueError as exc:
        raise OutputError(f"cannot append to {root}: {exc}") from exc
    first = max(indices, default=-1) + 1
    later = sorted(p for p in (root / "data").glob("*/*-meta.mat")
                   if _index_of_file(p, frames_per_sequence) >= first) if (root / "data").is_dir() else []
    if later:
        raise OutputError(f"cannot append to {root}: frame files after its last listed frame exist (e.g. "
                          f"{later[0]}; left by an interrupted run?), which the new frames would overwrite; "
                          f"remove them first")
    return OutputPlan(root, mode, first_frame=first, train=train, test=test, runs=list(info["runs"]))


def _index_of_file(meta: Path, frames_per_sequence: int) -> int:
    try:
        return frame_index(f"{meta.parent.name}/{meta.name[:-len('-meta.mat')]}", frames_per_sequence)
    except ValueError:
        return -1
