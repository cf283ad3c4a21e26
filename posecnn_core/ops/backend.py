"""One place that decides which implementation of an operator runs: ``auto``, ``torch``, ``cpp`` or ``cuda``.

Every op with a compiled kernel (Hough voting, RoI pooling) asks :func:`resolve_backend`; the answer is
``"ext"`` (the compiled operator for the tensors' device) or ``"torch"`` (the PyTorch reference).

- ``torch``: the PyTorch reference, on any device.
- ``cpp`` / ``cuda``: the compiled operator; the tensors must be on a CPU / CUDA device and the operator library
  must provide a kernel for it, else a clear error.
- ``auto``: the compiled operator when the library provides it for the tensors' device, else the reference.
"""

from __future__ import annotations

import torch

from .extension import has_op, load_error

__all__ = ["BACKENDS", "resolve_backend", "check_backend"]

BACKENDS = ("auto", "torch", "cpp", "cuda")


def check_backend(backend: str) -> str:
    """Return ``backend`` or raise ValueError naming the allowed values."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def resolve_backend(backend: str, device: torch.device, op: str) -> str:
    """``"ext"`` or ``"torch"`` for operator ``op`` (its ``torch.ops.posecnn`` name) on tensors of ``device``."""
    check_backend(backend)
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "ext" if has_op(op, device.type) else "torch"
    wanted = "cpu" if backend == "cpp" else "cuda"
    if device.type != wanted:
        raise ValueError(f"backend={backend!r} needs tensors on a {wanted} device, got {device}")
    if not has_op(op, wanted):
        reason = load_error() or f"the library has no {wanted} kernel for {op}"
        raise RuntimeError(f"backend={backend!r}: compiled operator posecnn::{op} unavailable ({reason}); "
                           "use backend='torch' or 'auto'")
    return "ext"
