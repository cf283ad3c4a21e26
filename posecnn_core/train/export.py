"""Export a training checkpoint as a deployable one: weights + metadata only (no optimizer/RNG state).

    python -m posecnn_core.train.export runs/demo/latest.pt data/models/demo.pt [--float32]

Weights are stored as float16 by default (half the size; loading casts them back to float32). Training info in
the metadata (`extra`) is kept, plus the source file name and iteration.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ..checkpoint import model_from_checkpoint, read_train_state, save_checkpoint


def export_checkpoint(src: str | Path, dst: str | Path, half: bool = True) -> Path:
    """Write ``src``'s model and metadata to ``dst`` (our format, without training state)."""
    model, meta = model_from_checkpoint(src)
    state = read_train_state(src) or {}
    extra = dict(meta.extra)
    extra["exported_from"] = Path(src).name
    if "iteration" in state and isinstance(state["iteration"], int):
        extra["iteration"] = state["iteration"]
    return save_checkpoint(dst, model, replace(meta, extra=extra), half=half)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="training checkpoint (e.g. runs/demo/latest.pt)")
    p.add_argument("dst", help="output checkpoint")
    p.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16)")
    args = p.parse_args(argv)
    out = export_checkpoint(args.src, args.dst, half=not args.float32)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
