"""Shared test setup: keep CPU threads modest and make ROS tests fail loudly where ROS is required."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _ros_available() -> bool:
    try:
        import rclpy  # noqa: F401
        import vision_msgs.msg  # noqa: F401
        from posecnn_ros.msg import ObjectEstimateArray  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `ros`-marked tests without rclpy, unless POSECNN_REQUIRE_ROS=1 (the test command sets it). Skip the
    test cases of launch tests (modules with `generate_test_description`) unless the launch_testing pytest plugin
    runs them (setup.cfg disables it: they run with `launch_test` or `colcon test`)."""
    if not config.pluginmanager.has_plugin("launch_testing"):
        launch = pytest.mark.skip(reason="a launch test: run it with `launch_test test/test_launch_posecnn.py` or "
                                         "`colcon test` (the launch_testing pytest plugin is disabled in setup.cfg)")
        for item in items:
            if hasattr(getattr(item, "module", None), "generate_test_description"):
                item.add_marker(launch)
    if _ros_available() or os.environ.get("POSECNN_REQUIRE_ROS") == "1":
        return
    skip = pytest.mark.skip(reason="rclpy / interface packages not importable (run tools/setup_env.sh)")
    for item in items:
        if "ros" in item.keywords:
            item.add_marker(skip)
