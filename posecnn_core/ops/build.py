"""Prebuild the compiled operator library: ``python -m posecnn_core.ops.build [--verbose] [--clean]``.

Prints where the sources and the build cache are, which library was loaded and which ``posecnn::`` operators have
CPU / CUDA kernels. Exits with status 1 when the library cannot be built or loaded.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys

import torch

from posecnn_core.ops import extension


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m posecnn_core.ops.build", description=__doc__.split("\n")[0])
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands and output")
    parser.add_argument("--clean", action="store_true", help="delete the build cache first (full rebuild)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        src = extension.source_dir()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = extension.build_dir()
    print(f"torch:      {torch.__version__} (CUDA {torch.version.cuda or 'none'})")
    print(f"sources:    {src}")
    print(f"build dir:  {out}")
    if args.clean and out.exists():
        shutil.rmtree(out)
        print("            (cleaned)")
    if not extension.load_ops(verbose=args.verbose):
        print(f"FAILED: {extension.load_error()}", file=sys.stderr)
        return 1
    print(f"library:    {extension.library_path()}")
    ops = extension.list_ops()
    if not ops:
        print("FAILED: the library loaded but registers no posecnn:: operators", file=sys.stderr)
        return 1
    width = max(len(n) for n in ops)
    print("operators:")
    for name, devices in ops.items():
        print(f"  posecnn::{name:<{width}}  kernels: {', '.join(devices) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
