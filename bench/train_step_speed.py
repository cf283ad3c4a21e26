"""Seconds per training iteration of a config on this machine (data loading excluded and included).

python bench/train_step_speed.py --config config/train/demo.yaml --dataset data/synthetic/demo \
    [--iters 5] [--set batch_size=2 ...]
Prints a table: iteration, step seconds (forward + losses + backward + update), wall seconds (with data loading).
The first iteration includes warm-up and is reported but left out of the means.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout, not an installed copy

from posecnn_core.train.config import load_config  # noqa: E402
from posecnn_core.train.trainer import Trainer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--dataset", required=True, help="dataset root (replaces train_data)")
    p.add_argument("--split", default="train")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(args.config, [f"train_data=[{{root: {args.dataset}, split: {args.split}, synthetic: true}}]",
                                        f"output_dir={out}", "resume=null", "progress=false",
                                        f"max_iters={args.iters + 1}", "checkpoint_interval=1000000",
                                        *args.overrides])
        trainer = Trainer(cfg)
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
        rows = list(csv.DictReader(open(Path(out) / "train_iterations.csv")))
    steps = [float(r["seconds"]) for r in rows]
    print(f"device {trainer.device}, batch {cfg.batch_size}, input {cfg.input_size or 'as stored'}, "
          f"trunk_width {cfg.trunk_width}, fc_dim {cfg.fc_dim}, amp {trainer.amp}")
    print(f"{'iteration':>9} {'step s':>8} {'loss':>9}")
    for r, s in zip(rows, steps):
        print(f"{r['iteration']:>9} {s:8.3f} {float(r['loss']):9.4f}")
    rest = steps[1:] or steps
    print(f"mean step seconds (without the first): {sum(rest) / len(rest):.3f}; "
          f"wall incl. data loading and final save: {wall / len(steps):.3f} s/iteration")
    return 0


if __name__ == "__main__":
    sys.exit(main())
