"""Export a training checkpoint as a deployable one: weights + metadata only (no optimizer/RNG state).

    python -m posecnn_core.train.export runs/demo/latest.pt data/models/demo.pt [--float32] [--overwrite]
    python -m posecnn_core.train.export A.pt B.pt C.pt data/models/demo.pt      # the mean of A, B and C

Weights are stored as float16 by default (half the size; loading casts them back to float32). Training info in
the metadata (`extra`) is kept, plus the source file name and iteration. Several sources give their weights'
element-wise mean (checkpoint averaging, e.g. of checkpoints along one run: every weight averaged in float64), with
the last source's metadata and the sources' names and iterations; they must hold the same network and object
classes. An existing output file is never replaced unless --overwrite is given; errors are one line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, model_from_checkpoint, read_train_state, save_checkpoint
from ..files import path_kind


def export_checkpoint(src: str | Path, dst: str | Path, half: bool = True) -> Path:
    """Write ``src``'s model and metadata to ``dst`` (our format, without training state)."""
    model, meta = model_from_checkpoint(src)
    state = read_train_state(src) or {}
    extra = dict(meta.extra)
    extra["exported_from"] = Path(src).name
    if "iteration" in state and isinstance(state["iteration"], int):
        extra["iteration"] = state["iteration"]
    return save_checkpoint(dst, model, replace(meta, extra=extra), half=half)


def average_checkpoints(srcs: list[str | Path], dst: str | Path, half: bool = True) -> Path:
    """Write the element-wise mean of the weights of ``srcs`` to ``dst``, with the last source's metadata.

    ValueError naming the file when a source differs from the first in architecture, classes or tensor shapes.
    """
    if len(srcs) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    total: dict[str, torch.Tensor] = {}
    first_meta = None
    names, iterations = [], []
    for src in srcs:
        model, meta = model_from_checkpoint(src)
        layout = (meta.num_classes, meta.in_channels, meta.fc_dim, meta.trunk_width, meta.class_names)
        if first_meta is None:
            first_meta = layout
        elif layout != first_meta:
            raise ValueError(f"{src}: a different network or object classes than {srcs[0]} (classes, input "
                             f"channels, fc_dim, trunk width, class names: {layout} against {first_meta}); "
                             "only checkpoints of one network can be averaged")
        for key, value in model.state_dict().items():
            total[key] = total[key] + value.double() if key in total else value.double()
        names.append(Path(src).name)
        state = read_train_state(src) or {}
        iterations.append(state.get("iteration") if isinstance(state.get("iteration"), int) else None)
    model.load_state_dict({key: (value / len(srcs)).float() for key, value in total.items()})
    extra = dict(meta.extra)
    extra["averaged_from"] = names
    extra["averaged_iterations"] = iterations
    extra.pop("exported_from", None)
    extra.pop("iteration", None)
    return save_checkpoint(dst, model, replace(meta, extra=extra), half=half)


def check_destination(dst: Path, overwrite: bool) -> None:
    """ValueError unless ``dst`` can be written: not a folder, not an existing file (unless ``overwrite``)."""
    kind = path_kind(dst)
    if kind == "regular file" and not overwrite:
        raise ValueError(f"{dst} already exists; give another output file, or --overwrite to replace it")
    if kind not in ("missing", "regular file"):
        raise ValueError(f"output {dst} is a {kind}, not a file")
    parent = dst.parent
    while path_kind(parent) == "missing" and parent != parent.parent:
        parent = parent.parent
    if path_kind(parent) != "directory":
        raise ValueError(f"output {dst} cannot be created: {parent} is not a folder")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m posecnn_core.train.export", description=__doc__.split("\n\n")[0])
    p.add_argument("src", nargs="+", help="training checkpoint (e.g. runs/demo/latest.pt); several: their mean")
    p.add_argument("dst", help="output checkpoint")
    p.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16)")
    p.add_argument("--overwrite", action="store_true", help="replace dst if it exists")
    args = p.parse_args(argv)
    try:
        check_destination(Path(args.dst), args.overwrite)
        if len(args.src) == 1:
            out = export_checkpoint(args.src[0], args.dst, half=not args.float32)
        else:
            out = average_checkpoints(args.src, args.dst, half=not args.float32)
    except (CheckpointError, OSError, ValueError, TypeError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
