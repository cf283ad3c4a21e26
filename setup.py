"""pip install . — installs posecnn_core (and the posecnn_ros Python modules) without ROS.

The ROS build (colcon, ament_cmake) uses CMakeLists.txt instead; both install the same Python code. Configs, the
C++/CUDA sources and bundled data go to <prefix>/share/posecnn_ros, where posecnn_core.resources finds them.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent


def share_files(*folders: str) -> list[tuple[str, list[str]]]:
    """(install dir, files) pairs mirroring `folders` under share/posecnn_ros."""
    out: dict[str, list[str]] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT)
                out.setdefault(str(Path("share/posecnn_ros") / rel.parent), []).append(str(rel))
    return sorted(out.items())


setup(data_files=share_files("config", "cuda_ops", "launch", "data"))
