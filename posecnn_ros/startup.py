"""Start-up of the node's process: ROS arguments checked, rclpy initialised without its signal handlers, rcl's
errors turned into one line, and Python `logging` of posecnn_core forwarded to the ROS log.

rcl reports a missing or malformed parameters file, a bad remapping or log level as an RCLError whose text carries C
source locations (and logs an ERROR of its own first); `init_ros` raises StartupError with one readable line instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


class StartupError(Exception):
    """The node cannot start; the message is one line naming the cause."""


def params_files(argv: Sequence[str]) -> list[str]:
    """The files named by `--params-file` inside the `--ros-args` sections of `argv`."""
    files, in_ros, tokens = [], False, list(argv)
    for k, token in enumerate(tokens):
        if token == "--ros-args":
            in_ros = True
        elif token == "--":
            in_ros = False
        elif in_ros and token == "--params-file" and k + 1 < len(tokens):
            files.append(tokens[k + 1])
    return files


def check_params_file(path: str) -> None:
    """StartupError unless `path` is a readable regular file holding valid YAML (rcl checks the structure)."""
    file = Path(path)
    if not file.exists():
        raise StartupError(f"parameters file {path} does not exist")
    if not file.is_file():
        raise StartupError(f"parameters file {path} is not a regular file")
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(f"cannot read parameters file {path}: {exc}") from exc
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise StartupError(f"parameters file {path} is not valid YAML: {' '.join(problem.split())}{where}") from exc


def rcl_reason(exc: BaseException) -> str:
    """rcl's error text without the 'failed to initialize rcl' prefix and C source locations, on one line."""
    text = re.sub(r"^failed to initialize rcl:\s*", "", str(exc))
    text = re.sub(r",?\s*at /\S+:\d+", "", text)
    return " ".join(text.split()).rstrip(",")


def init_ros(argv: Sequence[str]) -> None:
    """rclpy.init(argv) without rclpy's signal handlers; StartupError naming a bad parameters file or argument.

    rcl's own ERROR line about the arguments is silenced during the call (the StartupError carries the cause)."""
    import rclpy
    from rclpy.impl.implementation_singleton import rclpy_implementation
    from rclpy.logging import LoggingSeverity, get_logger_level, set_logger_level
    from rclpy.signals import SignalHandlerOptions

    for path in params_files(argv):
        check_params_file(path)
    before = get_logger_level("rcl")
    set_logger_level("rcl", LoggingSeverity.FATAL)
    try:
        rclpy.init(args=list(argv), signal_handler_options=SignalHandlerOptions.NO)
    except rclpy_implementation.RCLError as exc:
        raise StartupError(f"invalid ROS arguments: {rcl_reason(exc)}") from exc
    finally:
        if get_logger_level("rcl") == LoggingSeverity.FATAL:  # unless --log-level set it
            set_logger_level("rcl", before)


class RosLogHandler(logging.Handler):
    """Forwards Python `logging` records (e.g. posecnn_core's warnings) to an rclpy logger."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self._ros = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            # one call site per severity: rclpy refuses to log from one call site at different severities
            if record.levelno >= logging.ERROR:
                self._ros.error(text)
            elif record.levelno >= logging.WARNING:
                self._ros.warning(text)
            elif record.levelno >= logging.INFO:
                self._ros.info(text)
            else:
                self._ros.debug(text)
        except Exception:  # noqa: BLE001 - logging must never break the caller
            self.handleError(record)
