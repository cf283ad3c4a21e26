"""Build and load the compiled ``posecnn`` operator library from ``cuda_ops/csrc``.

Every ``*.cpp`` file under the source folder is compiled, and every ``*.cu`` file as well when PyTorch has CUDA, a
GPU (or ``TORCH_CUDA_ARCH_LIST``) and nvcc are present. Each source file registers its operators with
``TORCH_LIBRARY_FRAGMENT(posecnn, m)`` and its kernels with ``TORCH_LIBRARY_IMPL(posecnn, CPU|CUDA, m)``, so after
loading they are reachable as ``torch.ops.posecnn.<op>``.

The build uses ``torch.utils.cpp_extension.load`` (JIT) into a persistent cache (:func:`build_dir`). A stamp file
next to the library records a fingerprint of the sources, flags and torch version; when it matches, the library is
loaded directly, without a compiler or ninja (so a prebuilt cache, ``python -m posecnn_core.ops.build``, also
serves machines without a compiler). When the library cannot be built, the loader logs one warning line and the
callers fall back to the PyTorch reference implementations.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import threading
from pathlib import Path

import torch

from ..resources import search_roots  # cuda_ops/ is found where every other bundled file is

LOG = logging.getLogger(__name__)
LIBRARY_NAME = "posecnn"
EXTENSION_NAME = "posecnn_ops"
# -fopenmp: at::parallel_for is an OpenMP pragma in ATen's headers, compiled into this library; without the flag
# the kernels run on one thread whatever torch.set_num_threads says. -fno-math-errno lets sqrt loops vectorise
# (same results). -ffp-contract=off: no fused multiply-adds (the voting rules are exact float32).
CXX_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fopenmp"]
CUDA_FLAGS = ["-O3"]
_SOURCE_SUFFIXES = (".cpp", ".cu", ".h", ".hpp", ".cuh")

_lock = threading.Lock()
_state: dict[str, object] = {"tried": False, "loaded": False, "error": None, "cuda": False, "library": None}
_kernel_cache: dict[tuple[str, str], bool] = {}  # the library is loaded once, so kernels never change afterwards


def source_dir() -> Path:
    """Folder holding the C++/CUDA sources.

    Order: ``$POSECNN_OPS_SOURCE_DIR``; ``cuda_ops/csrc`` next to the package in a source checkout; the ROS install's
    ``share/posecnn_ros/cuda_ops/csrc``; ``<sys.prefix>/share/posecnn_ros/cuda_ops/csrc`` (``pip install .``); a copy
    inside the package (``posecnn_core/ops/csrc``).
    """
    env = os.environ.get("POSECNN_OPS_SOURCE_DIR")
    candidates = [Path(env)] if env else []
    candidates += [root / "cuda_ops" / "csrc" for root in search_roots()]
    candidates.append(Path(__file__).resolve().parent / "csrc")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.cpp")):
            return folder
    raise FileNotFoundError("no posecnn C++ sources found; looked in: " + ", ".join(str(c) for c in candidates))


def build_dir() -> Path:
    """Persistent build cache.

    ``$POSECNN_OPS_BUILD_DIR``, else
    ``${XDG_CACHE_HOME:-~/.cache}/posecnn_ros/ops-torch<version>-<cpu|cu<ver>>-py<ver>-<source dir hash>``: one
    folder per torch build, Python and source checkout, so neither switching environments nor several checkouts
    side by side rebuild each other's library.
    """
    env = os.environ.get("POSECNN_OPS_BUILD_DIR")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    torch_tag = torch.__version__.split("+")[0]
    device_tag = f"cu{torch.version.cuda}" if torch.version.cuda else "cpu"
    py_tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    try:
        src_tag = hashlib.sha256(str(source_dir()).encode()).hexdigest()[:8]
    except FileNotFoundError:
        src_tag = "nosrc"
    return cache / "posecnn_ros" / f"ops-torch{torch_tag}-{device_tag}-{py_tag}-{src_tag}"


def _cuda_build_reason() -> str | None:
    """None when CUDA kernels can be built; otherwise why not."""
    if torch.version.cuda is None:
        return "torch has no CUDA"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return "nvcc / CUDA_HOME not found"
    if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return "no GPU visible and TORCH_CUDA_ARCH_LIST unset"
    return None


def _missing_toolchain() -> str | None:
    """None when a C++ compiler and ninja are present; otherwise what is missing."""
    from torch.utils.cpp_extension import is_ninja_available

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler found ({compiler!r}; set CXX)"
    if not is_ninja_available():
        return "ninja not found"
    return None


def _fingerprint(src: Path, sources: list[Path], with_cuda: bool) -> str:
    digest = hashlib.sha256()
    digest.update(f"{torch.__version__}|{torch.version.cuda}|{sys.version_info[:2]}|{with_cuda}".encode())
    digest.update(repr((CXX_FLAGS, CUDA_FLAGS, os.environ.get("TORCH_CUDA_ARCH_LIST"))).encode())
    headers = [p for p in src.iterdir() if p.suffix in (".h", ".hpp", ".cuh")]
    for path in sorted(set(sources) | set(headers)):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _load_prebuilt(library: Path, stamp: Path, fingerprint: str) -> bool:
    try:
        if not (library.is_file() and stamp.read_text().strip() == fingerprint):
            return False
        torch.ops.load_library(str(library))
    except (OSError, RuntimeError) as exc:
        LOG.debug("prebuilt %s not usable (%s); rebuilding", library, exc)
        return False
    return True


def _build_and_load(verbose: bool) -> None:
    src = source_dir()
    cuda_reason = _cuda_build_reason()
    with_cuda = cuda_reason is None
    sources = sorted(src.glob("*.cpp")) + (sorted(src.glob("*.cu")) if with_cuda else [])
    if not with_cuda and torch.version.cuda is not None and any(src.glob("*.cu")):
        LOG.warning("posecnn ops: building CPU kernels only (%s)", cuda_reason)
    name = EXTENSION_NAME + ("_cuda" if with_cuda else "_cpu")
    out = build_dir()
    library, stamp = out / f"{name}.so", out / f"{name}.stamp"
    fingerprint = _fingerprint(src, sources, with_cuda)
    _state["cuda"] = with_cuda
    _state["library"] = library
    if _load_prebuilt(library, stamp, fingerprint):
        return
    missing = _missing_toolchain()
    if missing:
        raise RuntimeError(missing)
    from torch.utils.cpp_extension import load

    out.mkdir(parents=True, exist_ok=True)
    built = load(
        name=name,
        sources=[str(p) for p in sources],
        extra_include_paths=[str(src)],
        extra_cflags=CXX_FLAGS,
        extra_ldflags=["-fopenmp"],
        extra_cuda_cflags=CUDA_FLAGS,
        build_directory=str(out),
        is_python_module=False,
        with_cuda=with_cuda,
        verbose=verbose,
    )
    _state["library"] = Path(built) if isinstance(built, str) else library
    tmp = stamp.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(fingerprint + "\n")
    tmp.replace(stamp)


def load_ops(verbose: bool = False) -> bool:
    """Compile (first time) and load the operator library; return whether it is available.

    Safe to call many times and from several threads: the first call decides. Set ``POSECNN_DISABLE_OPS=1`` to
    force the PyTorch fallback.
    """
    with _lock:
        if _state["tried"]:
            return bool(_state["loaded"])
        _state["tried"] = True
        if os.environ.get("POSECNN_DISABLE_OPS") == "1":
            _state["error"] = "disabled by POSECNN_DISABLE_OPS=1"
            LOG.info("posecnn compiled ops disabled (POSECNN_DISABLE_OPS=1); using the PyTorch reference ops")
            return False
        try:
            _build_and_load(verbose)
            _state["loaded"] = True
        except Exception as exc:  # compiler missing, build error: fall back, but say so once
            _state["error"] = f"{type(exc).__name__}: {exc}"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            LOG.warning("posecnn compiled ops unavailable (%s); falling back to the PyTorch reference ops "
                        "(details: python -m posecnn_core.ops.build)", first)
        return bool(_state["loaded"])


def load_error() -> str | None:
    """Why the library could not be loaded (None when it loaded or was not tried)."""
    return _state["error"]  # type: ignore[return-value]


def library_path() -> Path | None:
    """The shared library that was (or would have been) loaded; None before :func:`load_ops` ran."""
    return _state["library"]  # type: ignore[return-value]


def has_op(name: str, device_type: str) -> bool:
    """True when ``torch.ops.posecnn.<name>`` exists and has a kernel for ``device_type`` ('cpu' or 'cuda')."""
    if device_type not in ("cpu", "cuda") or not load_ops():
        return False
    if device_type == "cuda" and not (_state["cuda"] and torch.cuda.is_available()):
        return False
    key = "CPU" if device_type == "cpu" else "CUDA"
    cached = _kernel_cache.get((name, key))
    if cached is None:
        try:
            cached = bool(torch._C._dispatch_has_kernel_for_dispatch_key(f"{LIBRARY_NAME}::{name}", key))
        except RuntimeError:  # no such operator
            cached = False
        _kernel_cache[(name, key)] = cached
    return cached


def list_ops() -> dict[str, list[str]]:
    """Loaded ``posecnn::`` operators (unqualified name) and the device types that have kernels for them."""
    if not load_ops():
        return {}
    names = sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names()
                   if n.startswith(LIBRARY_NAME + "::"))
    return {n: [d for d in ("cpu", "cuda") if has_op(n, d)] for n in names}
