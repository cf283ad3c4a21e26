"""Compile-only check of every cuda_ops/csrc/*.cu with nvcc (no GPU and no CUDA-enabled torch needed).

Each file is compiled to an object with torch's include paths and the defines torch.utils.cpp_extension passes to
nvcc. Skipped when nvcc is absent. About 35-50 s per file on two shared CPU cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

CSRC = Path(__file__).resolve().parents[1] / "cuda_ops" / "csrc"
CU_FILES = sorted(CSRC.glob("*.cu"))


def find_nvcc() -> str | None:
    """nvcc from $CUDA_HOME/bin (or $CUDA_PATH/bin), else from PATH."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def nvcc_command(nvcc: str, source: Path, obj: Path) -> list[str]:
    torch_include = Path(torch.utils.cpp_extension.include_paths()[0])
    cmd = [nvcc, "-c", str(source), "-o", str(obj), "-std=c++17", "-O0",
           "-gencode", "arch=compute_80,code=sm_80", "--compiler-options", "-fPIC", f"-I{CSRC}",
           "-DTORCH_API_INCLUDE_EXTENSION_H", f"-DTORCH_EXTENSION_NAME=compile_check_{source.stem}",
           *cpp_extension.COMMON_NVCC_FLAGS]
    for inc in cpp_extension.include_paths():
        cmd += ["-isystem", inc]
    if not (torch_include / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").is_file():
        cmd.append("-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE")  # CPU-only torch ships no generated CUDA config header
    return cmd


def test_cuda_sources_exist() -> None:
    assert CU_FILES, f"no .cu sources under {CSRC}"


@pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found ($CUDA_HOME/bin or PATH)")
@pytest.mark.parametrize("source", CU_FILES, ids=[p.name for p in CU_FILES])
def test_cu_compiles(source: Path, tmp_path: Path) -> None:
    obj = tmp_path / (source.stem + ".o")
    proc = subprocess.run(nvcc_command(find_nvcc(), source, obj), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"nvcc failed on {source.name}:\n{proc.stderr[-6000:]}"
    assert obj.is_file() and obj.stat().st_size > 0
