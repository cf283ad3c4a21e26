"""Build and load the compiled ``posecnn`` operator library from ``cuda_ops/csrc``.

Every ``*.cpp`` file under the source folder is compiled, and every ``*.cu`` file as well when PyTorch was built
with CUDA. Each source file registers its operators with ``TORCH_LIBRARY_FRAGMENT(posecnn, m)`` and its kernels
with ``TORCH_LIBRARY_IMPL(posecnn, CPU|CUDA, m)``, so after loading they are reachable as ``torch.ops.posecnn.<op>``.

The build uses ``torch.utils.cpp_extension.load`` (JIT, cached). When no compiler is available the loader logs one
line and the callers fall back to the PyTorch reference implementations.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

LOG = logging.getLogger(__name__)
LIBRARY_NAME = "posecnn"
EXTENSION_NAME = "posecnn_ops"

_state: dict[str, object] = {"tried": False, "loaded": False, "error": None}


def source_dir() -> Path:
    """Folder holding the C++/CUDA sources.

    Order: ``$POSECNN_OPS_SOURCE_DIR``; ``cuda_ops/csrc`` next to the package in a source checkout; the ROS install's
    ``share/posecnn_ros/cuda_ops/csrc``; the copy installed inside the package (``posecnn_core/ops/csrc``).
    """
    env = os.environ.get("POSECNN_OPS_SOURCE_DIR")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates.append(here.parents[2] / "cuda_ops" / "csrc")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "posecnn_ros" / "cuda_ops" / "csrc")
    candidates.append(here.parent / "csrc")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.cpp")):
            return folder
    raise FileNotFoundError("no posecnn C++ sources found; looked in: " + ", ".join(str(c) for c in candidates))


def build_dir() -> Path:
    """Persistent build cache: ``$POSECNN_OPS_BUILD_DIR`` or ``~/.cache/posecnn_ros/ops-<torch version>``."""
    env = os.environ.get("POSECNN_OPS_BUILD_DIR")
    if env:
        return Path(env)
    tag = torch.__version__.replace("+", "_") + ("-cuda" if torch.version.cuda else "-cpu")
    return Path.home() / ".cache" / "posecnn_ros" / f"ops-{tag}"


def _with_cuda() -> bool:
    return torch.version.cuda is not None and torch.cuda.is_available()


def load_ops(verbose: bool = False) -> bool:
    """Compile (first time) and load the operator library; return whether it is available.

    Safe to call many times: the first call decides. Set ``POSECNN_DISABLE_OPS=1`` to force the PyTorch fallback.
    """
    if _state["tried"]:
        return bool(_state["loaded"])
    _state["tried"] = True
    if os.environ.get("POSECNN_DISABLE_OPS") == "1":
        _state["error"] = "disabled by POSECNN_DISABLE_OPS=1"
        LOG.info("posecnn compiled ops disabled (POSECNN_DISABLE_OPS=1); using the PyTorch reference ops")
        return False
    try:
        from torch.utils.cpp_extension import load

        src = source_dir()
        sources = sorted(str(p) for p in src.glob("*.cpp"))
        if _with_cuda():
            sources += sorted(str(p) for p in src.glob("*.cu"))
        out = build_dir()
        out.mkdir(parents=True, exist_ok=True)
        load(
            name=EXTENSION_NAME + ("_cuda" if _with_cuda() else "_cpu"),
            sources=sources,
            extra_include_paths=[str(src)],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3"],
            build_directory=str(out),
            is_python_module=False,
            verbose=verbose,
        )
        _state["loaded"] = True
    except Exception as exc:  # compiler missing, build error: fall back, but say so once
        _state["error"] = f"{type(exc).__name__}: {exc}"
        LOG.warning("posecnn compiled ops unavailable (%s); falling back to the PyTorch reference ops",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return bool(_state["loaded"])


def load_error() -> str | None:
    """Why the library could not be loaded (None when it loaded or was not tried)."""
    return _state["error"]  # type: ignore[return-value]


def has_op(name: str, device_type: str) -> bool:
    """True when ``torch.ops.posecnn.<name>`` exists and has a kernel for ``device_type`` ('cpu' or 'cuda')."""
    if device_type not in ("cpu", "cuda") or not load_ops():
        return False
    if device_type == "cuda" and not _with_cuda():
        return False
    try:
        getattr(getattr(torch.ops, LIBRARY_NAME), name)
    except (AttributeError, RuntimeError):
        return False
    key = "CPU" if device_type == "cpu" else "CUDA"
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"{LIBRARY_NAME}::{name}", key)
