#!/usr/bin/env python3
"""The managed posecnn node with the test suite's deterministic stand-in estimator (test/_node_helpers.py):
same arguments, behaviour and exit codes as `python -m posecnn_ros.lifecycle_node`."""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from _node_helpers import make_fake_estimator  # noqa: E402
from posecnn_ros.lifecycle_node import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(estimator_factory=make_fake_estimator))
