"""Find files bundled with the package (checkpoints, object sets, configs) wherever it is installed.

Search order: the source checkout this module lives in, each ament prefix's ``share/posecnn_ros`` (colcon
install), then ``sys.prefix/share/posecnn_ros`` (``pip install .``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "posecnn_ros"
DEMO_CHECKPOINT = "data/models/demo.pt"
DEMO_OBJECTS = "config/objects/demo.yaml"


def search_roots() -> list[Path]:
    """Directories searched for bundled files, in order, without duplicates."""
    roots = [Path(__file__).resolve().parent.parent]
    try:
        from ament_index_python.packages import get_package_share_directory

        roots.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # not importable, or the package is not registered in any ament prefix
        pass
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            roots.append(Path(prefix) / "share" / PACKAGE)
    roots.append(Path(sys.prefix) / "share" / PACKAGE)
    unique: list[Path] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def resource_path(rel: str | os.PathLike[str]) -> Path:
    """Absolute path of the bundled file `rel` (e.g. "data/models/demo.pt").

    Raises FileNotFoundError listing every place searched when the file is nowhere.
    """
    rel_path = Path(rel)
    if rel_path.is_absolute():
        raise ValueError(f"rel must be a path relative to the package root, got {str(rel)!r}")
    searched = []
    for root in search_roots():
        candidate = root / rel_path
        if candidate.is_file():
            return candidate
        searched.append(str(candidate))
    raise FileNotFoundError(f"bundled file {str(rel_path)!r} not found; searched: " + ", ".join(searched))
