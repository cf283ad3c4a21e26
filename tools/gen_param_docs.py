#!/usr/bin/env python3
"""Write config/posecnn.yaml and the parameter table of docs/node.md from the node's declarations
(posecnn_ros/params.py). Run after adding or changing a parameter; `--check` only reports whether they are current.

    python tools/gen_param_docs.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from posecnn_ros.param_docs import docs_with_table, yaml_text  # noqa: E402

FILES = {ROOT / "config" / "posecnn.yaml": lambda old: yaml_text(),
         ROOT / "docs" / "node.md": docs_with_table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, render in FILES.items():
        old = path.read_text()
        new = render(old)
        if new != old:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
