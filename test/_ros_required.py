"""Importing what the ROS tests need: a missing module skips the test module, unless POSECNN_REQUIRE_ROS=1 (the
test command sets it), where the ImportError fails the run instead of hiding the tests behind a skip.

Only for third-party/ROS modules (rclpy, rosbags, ...): this package's own modules are imported normally, so that
an import error in them always fails."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def ros_required() -> bool:
    """Whether missing ROS modules are errors (POSECNN_REQUIRE_ROS=1) rather than reasons to skip."""
    return os.environ.get("POSECNN_REQUIRE_ROS") == "1"


def require(name: str) -> ModuleType:
    """`import name`; skips the calling test module when that fails, unless ros_required() (then it raises)."""
    if ros_required():
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} is not importable (run tools/setup_env.sh, or set "
                                            f"POSECNN_REQUIRE_ROS=1 to make this an error)")
