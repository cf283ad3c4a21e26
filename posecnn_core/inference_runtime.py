"""Device plumbing of the estimator's inference path: uploads, result copies, stage timing, the dense forward runner.

On CUDA a frame is meant to run without waiting for the GPU until its results are needed:

- :func:`upload` copies numpy inputs through pinned memory with ``non_blocking=True`` (no synchronisation);
  :func:`pinned` stages small host tensors (intrinsics, extents) for operators that upload them themselves.
- :class:`HostCopies` queues device→host copies into pinned memory and completes them all at one
  synchronisation (``wait``).
- :class:`StageClock` records a CUDA event per stage instead of synchronising per stage; the intervals are read
  once the frame has synchronised anyway.
- :class:`DenseRunner` runs the dense forward eagerly, through ``torch.compile``, or replayed from a CUDA graph
  captured once per input shape, and falls back to eager (one warning) when compilation or capture fails.

On the CPU every helper degenerates to the plain operation (no pinned memory, wall-clock timing, eager runs), so
the same estimator code runs on both devices.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import numpy as np
import torch

LOG = logging.getLogger(__name__)

__all__ = ["upload", "pinned", "HostCopies", "StageClock", "DenseRunner", "count_syncs"]


def _is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def pinned(array: np.ndarray | torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A CPU tensor in page-locked memory holding ``array`` (so that a later ``.to(cuda, non_blocking=True)`` is
    truly asynchronous). Needs CUDA; the block returns to PyTorch's pinned-memory cache when the tensor dies and
    is not reused before the copies that read it have completed."""
    src = torch.as_tensor(np.ascontiguousarray(array) if isinstance(array, np.ndarray) else array)
    src = src.to(dtype) if dtype is not None else src
    host = _pinned_empty(tuple(src.shape), src.dtype)
    host.copy_(src)
    return host


def _pinned_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, pin_memory=True)


def upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``: on CUDA staged in pinned memory and copied asynchronously (stream
    ordered, no synchronisation); on the CPU a zero-copy view of a contiguous array."""
    if not _is_cuda(device):
        return torch.from_numpy(np.ascontiguousarray(array))
    return pinned(array).to(device, non_blocking=True)


class HostCopies:
    """Device→host copies completed together: ``add`` queues one (into pinned memory on CUDA) and returns its
    index, ``wait`` synchronises once for all of them, ``numpy(i)`` gives the i-th result.

    On the CPU ``add`` keeps the tensor itself and ``wait`` does nothing.
    """

    def __init__(self, device: torch.device) -> None:
        self._cuda = _is_cuda(device)
        self._host: list[torch.Tensor] = []
        self._done = False

    def add(self, tensor: torch.Tensor) -> int:
        if self._done:
            raise RuntimeError("HostCopies.add after wait()")
        if self._cuda:
            host = _pinned_empty(tuple(tensor.shape), tensor.dtype)
            host.copy_(tensor, non_blocking=True)
        else:
            host = tensor.cpu()
        self._host.append(host)
        return len(self._host) - 1

    def wait(self) -> None:
        """Block until every queued copy has landed (one ``cudaEventSynchronize`` on CUDA)."""
        if self._cuda and self._host and not self._done:
            event = torch.cuda.Event()
            event.record()
            event.synchronize()
        self._done = True

    def numpy(self, index: int) -> np.ndarray:
        if self._cuda and not self._done:
            raise RuntimeError("HostCopies.numpy before wait()")
        return self._host[index].numpy()


class StageClock:
    """Milliseconds per stage, written into ``sink`` in lap order.

    CPU: the wall time between consecutive ``lap`` calls. CUDA: ``lap`` records an event on the current stream
    (nothing waits); after the frame's one synchronisation call ``device_done``, then ``resolve`` fills the
    device stages from the event intervals (the time the GPU took from one stage boundary to the next, host
    launch gaps included) and adds the host time since ``device_done`` to the last device stage. Laps after
    ``resolve`` are wall clock again.
    """

    def __init__(self, device: torch.device, sink: dict[str, float]) -> None:
        self._sink = sink
        self._events = _is_cuda(device)
        self._marks: list[tuple[str, Any]] = []
        self._t = time.perf_counter()
        self._first = self._record() if self._events else None

    @staticmethod
    def _record() -> Any:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def lap(self, name: str) -> None:
        if self._events:
            self._marks.append((name, self._record()))
            return
        now = time.perf_counter()
        self._sink[name] = (now - self._t) * 1000.0
        self._t = now

    def device_done(self) -> None:
        """Mark the moment the frame's synchronisation returned (CUDA)."""
        self._t = time.perf_counter()

    def resolve(self) -> None:
        """Write the device stages (CUDA; all their events must have completed). No-op on the CPU."""
        if not self._events:
            return
        prev = self._first
        for name, event in self._marks:
            self._sink[name] = float(prev.elapsed_time(event))
            prev = event
        now = time.perf_counter()
        if self._marks:
            self._sink[self._marks[-1][0]] += (now - self._t) * 1000.0
        self._events = False
        self._t = now


class _CapturedGraph:
    """``fn`` captured in a CUDA graph for inputs like ``example``: ``__call__`` copies the input into the static
    buffer, replays, and returns the static outputs (overwritten by the next replay)."""

    def __init__(self, fn: Callable[[torch.Tensor], Any], example: torch.Tensor, warmup_runs: int = 2) -> None:
        self.static_input = torch.empty_like(example)  # keeps the memory format
        self.static_input.copy_(example)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the capture: cuDNN/cuBLAS handles, autotuning, compilation
            for _ in range(warmup_runs):
                fn(self.static_input)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_output = fn(self.static_input)

    def __call__(self, x: torch.Tensor) -> Any:
        self.static_input.copy_(x)
        self.graph.replay()
        return self.static_output


class DenseRunner:
    """Runs ``fn(x, **kwargs)`` (the estimator's dense forward) eagerly, compiled, or from a CUDA graph.

    - ``compile=True``: ``torch.compile(fn)`` (built once, lazily). If compiling or running it raises, one
      warning is logged and this runner stays eager from then on.
    - ``graph=True`` (CUDA tensors only): one graph per (shape, strides, dtype, kwargs, compiled) key, captured on
      first use after two warm-up runs; at most ``max_graphs`` are kept (least recently used dropped). If a
      capture fails, one warning is logged and that key runs eagerly.

    Returns ``(outputs, from_graph)``; graph outputs are static buffers that the next replay overwrites (the
    caller owns them until then and may modify them in place). Call :meth:`reset` after changing the model's
    weights or their memory layout: graphs read the weights' memory directly.
    """

    def __init__(self, fn: Callable[..., Any], max_graphs: int = 4) -> None:
        self._fn = fn
        self._compiled: Callable[..., Any] | None = None
        self._compile_failed = False
        self._graphs: OrderedDict[Hashable, _CapturedGraph | None] = OrderedDict()
        self._max_graphs = max_graphs

    @property
    def compile_failed(self) -> bool:
        return self._compile_failed

    @property
    def graphs(self) -> int:
        """Number of CUDA graphs held."""
        return sum(g is not None for g in self._graphs.values())

    def reset(self) -> None:
        """Drop every captured graph (they hold the weights' addresses and their own memory pool)."""
        self._graphs.clear()

    def _target(self, compile: bool) -> Callable[..., Any]:
        if compile and not self._compile_failed:
            if self._compiled is None:
                self._compiled = torch.compile(self._fn, dynamic=False)
            return self._compiled
        return self._fn

    def _compile_fallback(self, exc: BaseException) -> None:
        self._compile_failed = True
        self._graphs.clear()
        LOG.warning("torch.compile of the dense forward failed (%s: %s); running it eagerly from now on",
                    type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")

    def __call__(self, x: torch.Tensor, *, compile: bool = False, graph: bool = False,
                 **kwargs: Hashable) -> tuple[Any, bool]:
        use_compile = compile and not self._compile_failed
        if graph and x.is_cuda:
            key = (tuple(x.shape), tuple(x.stride()), x.dtype, x.device, use_compile, tuple(sorted(kwargs.items())))
            if key not in self._graphs:
                self._graphs[key] = self._capture(x, use_compile, kwargs)
                while len(self._graphs) > self._max_graphs:
                    self._graphs.popitem(last=False)
            self._graphs.move_to_end(key)
            captured = self._graphs[key]
            if captured is not None:
                return captured(x), True
        return self._eager(x, use_compile, kwargs), False

    def _eager(self, x: torch.Tensor, use_compile: bool, kwargs: dict[str, Hashable]) -> Any:
        if not use_compile:
            return self._fn(x, **kwargs)
        try:
            return self._target(True)(x, **kwargs)
        except (ValueError, TypeError):  # the model's own input checks: not a compiler problem
            raise
        except Exception as exc:  # noqa: BLE001 - dynamo/inductor raise many types; fall back, but say so
            self._compile_fallback(exc)
            return self._fn(x, **kwargs)

    def _capture(self, x: torch.Tensor, use_compile: bool,
                 kwargs: dict[str, Hashable]) -> _CapturedGraph | None:
        fn = functools.partial(self._target(use_compile), **kwargs)
        start = time.perf_counter()
        try:
            captured = _CapturedGraph(fn, x)
        except Exception as exc:  # noqa: BLE001 - any failure leaves this key eager, with one warning
            LOG.warning("CUDA graph capture of the %sdense forward failed for input %s (%s: %s); running it "
                        "eagerly", "compiled " if use_compile else "", tuple(x.shape), type(exc).__name__,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            return None
        LOG.info("captured the dense forward for input %s in a CUDA graph (%.0f ms)", tuple(x.shape),
                 1e3 * (time.perf_counter() - start))
        return captured


_SYNC_COUNTERS: list[dict[str, int]] = []


def _count(kind: str) -> Callable[..., None]:
    def callback(*_handle: int) -> None:  # stream/event callbacks get a handle, device ones nothing
        for counts in _SYNC_COUNTERS:
            counts[kind] += 1
    return callback


@contextlib.contextmanager
def count_syncs() -> Iterator[dict[str, int]]:
    """Count the CUDA synchronisations issued inside the block: ``{"stream": n, "event": n, "device": n}``
    ("stream" includes blocking copies such as ``tensor.cpu()`` and ``.item()``, also inside operators).

    Uses PyTorch's GPU trace, which once switched on stays on for the rest of the process and slows every later
    CUDA call a little: use it in a process of its own (diagnostics and tests).
    """
    from torch.cuda import _gpu_trace

    if not getattr(count_syncs, "_registered", False):
        _gpu_trace.register_callback_for_stream_synchronization(_count("stream"))
        _gpu_trace.register_callback_for_event_synchronization(_count("event"))
        _gpu_trace.register_callback_for_device_synchronization(_count("device"))
        torch._C._activate_gpu_trace()
        count_syncs._registered = True  # type: ignore[attr-defined]
    counts = {"stream": 0, "event": 0, "device": 0}
    _SYNC_COUNTERS.append(counts)
    try:
        yield counts
    finally:
        _SYNC_COUNTERS.remove(counts)
