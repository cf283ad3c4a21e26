#!/usr/bin/env python3
"""The posecnn node with the test suite's deterministic stand-in estimator (test/_node_helpers.py) in place of the
real PoseEstimator: same arguments, behaviour and exit codes as `python -m posecnn_ros.node`.

    python test/_fake_node_main.py --ros-args -p checkpoint:=<fake.json> -p objects:=<fake_objects.yaml> ...
"""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from posecnn_ros import stop_signals  # noqa: E402

stop_signals.install()  # as the real entry points: signals during the imports below are handled

from _node_helpers import make_fake_estimator  # noqa: E402
from posecnn_ros.node import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(estimator_factory=make_fake_estimator))
