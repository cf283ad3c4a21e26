"""Point the ROS wheels' exported CMake files at this venv's Python and numpy headers.

The manylinux wheels were built under /opt/python/cp311-cp311; their `*.cmake` exports keep those include
directories, which do not exist here, so building interface packages against them fails. Usage:
    python tools/fix_ros_cmake_paths.py <venv>
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

BUILDER_PYTHON_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
BUILDER_NUMPY_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include")


def fix(venv: Path) -> int:
    """Rewrite the paths in place; return the number of files changed."""
    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    changed = 0
    for path in sorted((venv / "share").rglob("*.cmake")):
        text = path.read_text()
        new = BUILDER_NUMPY_INCLUDE.sub(np_include, text)
        new = BUILDER_PYTHON_INCLUDE.sub(py_include, new)
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    n = fix(Path(sys.argv[1]))
    print(f"[fix_ros_cmake_paths] rewrote {n} file(s)")
