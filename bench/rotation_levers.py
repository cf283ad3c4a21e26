"""Short training runs that isolate one lever of the rotation head each, and the table of what they did.

python bench/rotation_levers.py --config config/train/demo_v3_cpu.yaml --out runs/levers \
    --variant "fc1024=fc_dim=1024 dropout=0" --variant "fc128_d05=fc_dim=128 dropout=0.5" \
    [--set max_iters=600 --set rotation_eval_interval=200 ...]

Each variant is NAME=OVERRIDES (space-separated ``key=value`` as for ``posecnn-train --set``) applied after the
common ``--set`` overrides, trained into ``OUT/NAME`` (resumed if it is there). Then, for every variant, the
rotation check's curve (``train_rotation_eval.csv``: median error of the non-symmetric objects on the probe
frames with ground-truth boxes) and the seconds of training are printed as one table (markdown), also written to
``OUT/levers.md``. Use ``--set rotation_eval_data=...`` to probe held-out frames instead of training frames.
"""
from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout, not an installed copy

from posecnn_core.train.config import load_config  # noqa: E402
from posecnn_core.train.trainer import Trainer  # noqa: E402


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def run_variant(config: str, out: Path, name: str, overrides: list[str]) -> None:
    cfg = load_config(config, [*overrides, f"output_dir={out / name}", "resume=auto", "progress=false"])
    trainer = Trainer(cfg)
    try:
        trainer.train()
    finally:
        trainer.close()


def table(out: Path, names: list[str]) -> str:
    lines = []
    curves = {n: _rows(out / n / "train_rotation_eval.csv") for n in names}
    iters = sorted({int(r["iteration"]) for rows in curves.values() for r in rows})
    head = "| variant | " + " | ".join(f"it {i}" for i in iters) + " | < 30° (last) | minutes |"
    lines += [head, "|---|" + "---:|" * (len(iters) + 2)]
    for n in names:
        by_iter = {int(r["iteration"]): r for r in curves[n]}
        cells = [f"{float(by_iter[i]['median_deg']):.1f}°" if i in by_iter else "" for i in iters]
        last = curves[n][-1] if curves[n] else None
        secs = sum(float(r["seconds"]) for r in _rows(out / n / "train_iterations.csv"))
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {100 * float(last['below_30']):.0f} % | {secs / 60:.1f} |"
                     if last else f"| {n} | (no rotation check yet) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True, help="folder of the runs (one subfolder per variant)")
    p.add_argument("--variant", action="append", required=True, help="NAME=key=value key=value ...")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="common override")
    p.add_argument("--table-only", action="store_true", help="print the table of the runs already there")
    args = p.parse_args(argv)
    out = Path(args.out)
    names = []
    for spec in args.variant:
        name, _, rest = spec.partition("=")
        if not name or "/" in name:
            print(f"error: bad variant {spec!r} (NAME=overrides)", file=sys.stderr)
            return 2
        names.append(name)
        if not args.table_only:
            run_variant(args.config, out, name, [*args.overrides, *shlex.split(rest)])
    text = table(out, names)
    out.mkdir(parents=True, exist_ok=True)
    (out / "levers.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
