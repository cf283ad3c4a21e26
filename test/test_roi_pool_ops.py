"""Compiled RoI max pooling (posecnn::roi_max_pool_*): build, forward against a brute-force oracle, backward."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.cpp_extension import is_ninja_available

from posecnn_core.ops import extension

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ops() -> None:
    """Build/load the operator library; skip when there is no toolchain, fail when the build itself fails."""
    if not extension.load_ops():
        if shutil.which(os.environ.get("CXX", "c++")) is None or not is_ninja_available():
            pytest.skip(f"no C++ toolchain: {extension.load_error()}")
        pytest.fail(f"posecnn ops failed to build: {extension.load_error()}")
    if not extension.has_op("roi_max_pool_forward", "cpu"):
        pytest.fail("library loaded without posecnn::roi_max_pool_forward")


def oracle(features: torch.Tensor, rois: torch.Tensor, pooled: tuple[int, int],
           scale: float) -> tuple[np.ndarray, np.ndarray]:
    """PT's kernel, literally: scalar loops in the features' precision (float32 or float64)."""
    dt = np.float32 if features.dtype == torch.float32 else np.float64
    f = features.numpy()
    r = rois.numpy().astype(dt)
    _, chans, height, width = f.shape
    ph_n, pw_n = pooled
    out = np.zeros((len(r), chans, ph_n, pw_n), dt)
    arg = np.full((len(r), chans, ph_n, pw_n), -1, np.int64)
    s = dt(scale)
    for i, row in enumerate(r):
        b = int(row[0])
        start_w, start_h, end_w, end_h = row[1] * s, row[2] * s, row[3] * s, row[4] * s
        roi_w = int(max(end_w - start_w + dt(1), dt(1)))
        roi_h = int(max(end_h - start_h + dt(1), dt(1)))
        bin_w, bin_h = dt(roi_w) / dt(pw_n), dt(roi_h) / dt(ph_n)
        for ph in range(ph_n):
            h0 = int(min(max(dt(math.floor(dt(ph) * bin_h)) + start_h, 0), height))
            h1 = int(min(max(dt(math.ceil(dt(ph + 1) * bin_h)) + start_h, 0), height))
            for pw in range(pw_n):
                w0 = int(min(max(dt(math.floor(dt(pw) * bin_w)) + start_w, 0), width))
                w1 = int(min(max(dt(math.ceil(dt(pw + 1) * bin_w)) + start_w, 0), width))
                if h1 <= h0 or w1 <= w0:
                    continue
                for c in range(chans):
                    best, best_idx = -np.inf, -1
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            if f[b, c, h, w] > best:
                                best, best_idx = f[b, c, h, w], h * width + w
                    out[i, c, ph, pw], arg[i, c, ph, pw] = best, best_idx
    return out, arg


def random_rois(gen: torch.Generator, num: int, batch: int, img_h: float, img_w: float,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Mix of inside, partly outside, fully outside, tiny and inverted boxes (non-integer pixel coordinates)."""
    u = torch.rand(num, 4, generator=gen, dtype=torch.float64)
    x1 = u[:, 0] * 1.4 * img_w - 0.2 * img_w
    y1 = u[:, 1] * 1.4 * img_h - 0.2 * img_h
    x2 = x1 + u[:, 2] * 0.8 * img_w - 0.1 * img_w  # ~1 in 8 inverted
    y2 = y1 + u[:, 3] * 0.8 * img_h - 0.1 * img_h
    kind = torch.arange(num) % 6
    tiny = kind == 4
    x2[tiny], y2[tiny] = x1[tiny] + 1.5, y1[tiny] + 0.25
    out = kind == 5
    x1[out], x2[out] = -3.0 * img_w, -2.0 * img_w
    b = torch.randint(0, batch, (num,), generator=gen).to(torch.float64)
    return torch.stack([b, x1, y1, x2, y2], dim=1).to(dtype)


def run_forward(features: torch.Tensor, rois: torch.Tensor, pooled: tuple[int, int],
                scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ops.posecnn.roi_max_pool_forward(features, rois, pooled[0], pooled[1], scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1 / 8, 1 / 16])
@pytest.mark.parametrize("pooled", [(7, 7), (3, 5)])
def test_forward_matches_oracle(ops: None, dtype: torch.dtype, scale: float, pooled: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(17 + int(1 / scale) + pooled[1])
    batch, chans, height, width = 3, 2, 9, 11
    features = torch.randn(batch, chans, height, width, generator=gen, dtype=dtype)
    rois = random_rois(gen, 12, batch, height / scale, width / scale, dtype)
    out, arg = run_forward(features, rois, pooled, scale)
    want_out, want_arg = oracle(features, rois, pooled, scale)
    assert out.dtype == dtype and arg.dtype == torch.int32
    assert out.shape == (12, chans, *pooled)
    np.testing.assert_array_equal(arg.numpy(), want_arg)
    np.testing.assert_array_equal(out.numpy(), want_out)
    assert (arg >= 0).any() and (arg < 0).any()  # the RoI mix exercises filled and empty bins


def test_forward_ties_take_first_max_in_row_major_order(ops: None) -> None:
    gen = torch.Generator().manual_seed(3)
    features = torch.randint(0, 3, (2, 3, 12, 10), generator=gen).float()
    rois = torch.tensor([[0, 0, 0, 79, 95], [1, 4, 4, 60, 50], [1, -20, -20, 200, 200]], dtype=torch.float32)
    out, arg = run_forward(features, rois, (4, 4), 1 / 8)
    want_out, want_arg = oracle(features, rois, (4, 4), 1 / 8)
    np.testing.assert_array_equal(arg.numpy(), want_arg)
    np.testing.assert_array_equal(out.numpy(), want_out)
    # a bin filled with one value reports its top-left element
    flat = torch.zeros(1, 1, 6, 6)
    _, arg = run_forward(flat, torch.tensor([[0.0, 0.0, 0.0, 5.0, 5.0]]), (2, 2), 1.0)
    assert arg[0, 0].tolist() == [[0, 3], [18, 21]]


def test_bins_follow_pt_bounds_on_a_hand_example(ops: None) -> None:
    # RoI x in [2, 9] at scale 1/2 -> start 1, end 4.5, roi_w = int(4.5) = 4, bin 2: columns [1, 3), [3, 5)
    features = torch.arange(60, dtype=torch.float32).reshape(1, 1, 6, 10)
    out, arg = run_forward(features, torch.tensor([[0.0, 2.0, 0.0, 9.0, 0.0]]), (1, 2), 0.5)
    # rows: start 0, end 0 -> roi_h 1, bin 1 -> row [0, 1)
    assert arg[0, 0].tolist() == [[2, 4]]
    assert out[0, 0].tolist() == [[2.0, 4.0]]


def test_degenerate_and_outside_rois(ops: None) -> None:
    features = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(5))
    rois = torch.tensor([
        [0, -100, -100, -50, -50],  # fully left/above: all bins clip to empty
        [1, 400, 10, 500, 20],  # fully right of the map
        [0, 20, 20, 10, 10],  # inverted: forced to one cell
        [1, 8, 8, 8, 8],  # zero size
    ], dtype=torch.float32)
    out, arg = run_forward(features, rois, (2, 2), 1 / 8)
    want_out, want_arg = oracle(features, rois, (2, 2), 1 / 8)
    np.testing.assert_array_equal(arg.numpy(), want_arg)
    np.testing.assert_array_equal(out.numpy(), want_out)
    assert (out[:2] == 0).all() and (arg[:2] == -1).all()
    assert (arg[2:] >= 0).any()


def test_zero_rois_and_empty_grad(ops: None) -> None:
    from posecnn_core.ops.roi_pool_ext import roi_max_pool_ext

    features = torch.randn(2, 4, 6, 7, requires_grad=True)
    out = roi_max_pool_ext(features, torch.zeros(0, 5), 7, 1 / 8)
    assert out.shape == (0, 4, 7, 7)
    out.sum().backward()
    assert features.grad is not None and (features.grad == 0).all()


def test_noncontiguous_inputs_and_reduced_precision(ops: None) -> None:
    gen = torch.Generator().manual_seed(11)
    base = torch.randn(2, 8, 10, 3, generator=gen)
    features = base.permute(0, 3, 1, 2)  # [2, 3, 8, 10], not contiguous
    rois = random_rois(gen, 6, 2, 8 * 8, 10 * 8)[:, [0, 1, 2, 3, 4]].t().contiguous().t()
    assert not features.is_contiguous() and not rois.is_contiguous()
    out, arg = run_forward(features, rois, (7, 7), 1 / 8)
    want_out, want_arg = oracle(features.contiguous(), rois.contiguous(), (7, 7), 1 / 8)
    np.testing.assert_array_equal(out.numpy(), want_out)
    np.testing.assert_array_equal(arg.numpy(), want_arg)
    for dtype in (torch.float16, torch.bfloat16):
        low = features.to(dtype)
        out_low, arg_low = run_forward(low, rois, (7, 7), 1 / 8)
        out_ref, arg_ref = run_forward(low.float(), rois, (7, 7), 1 / 8)
        assert out_low.dtype == dtype
        assert torch.equal(arg_low, arg_ref)
        assert torch.equal(out_low.float(), out_ref)


def test_backward_gradcheck(ops: None) -> None:
    from posecnn_core.ops.roi_pool_ext import RoiMaxPoolFunction

    gen = torch.Generator().manual_seed(23)
    features = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 40, 30], [1, 8, 4, 30, 38], [0, 12, 12, 47, 39], [1, -9, -9, 3, 3]],
                        dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: RoiMaxPoolFunction.apply(f, rois, 3, 2, 1 / 8), (features,),
                                    eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_backward_routes_gradient_to_argmax(ops: None, dtype: torch.dtype) -> None:
    from posecnn_core.ops.roi_pool_ext import roi_max_pool_ext

    gen = torch.Generator().manual_seed(29)
    batch, chans, height, width = 3, 2, 7, 9
    base = torch.randn(batch, chans, height, width, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 10, batch, height * 16, width * 16, torch.float64)
    rois[1] = rois[0]  # identical RoIs: their gradients must add up
    features = base.to(dtype).requires_grad_(True)
    out = roi_max_pool_ext(features, rois.float(), (4, 3), 1 / 16)
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)
    out.backward(grad)
    _, want_arg = oracle(features.detach().double(), rois.float().double(), (4, 3), 1 / 16)
    want = np.zeros((batch, chans, height * width))
    g = grad.double().numpy()
    for idx in np.ndindex(*want_arg.shape):
        if want_arg[idx] >= 0:
            want[int(rois[idx[0], 0]), idx[1], want_arg[idx]] += g[idx]
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
    np.testing.assert_allclose(features.grad.double().numpy().reshape(want.shape), want, rtol=tol, atol=tol)
    assert features.grad.dtype == dtype


def test_wrapper_rejects_bad_arguments(ops: None) -> None:
    from posecnn_core.ops.roi_pool_ext import roi_max_pool_ext

    features = torch.randn(2, 3, 5, 5)
    rois = torch.tensor([[0.0, 0, 0, 10, 10]])
    with pytest.raises(ValueError, match="features"):
        roi_max_pool_ext(features[0], rois)
    with pytest.raises(ValueError, match="rois"):
        roi_max_pool_ext(features, rois[:, :4])
    with pytest.raises(ValueError, match="output_size"):
        roi_max_pool_ext(features, rois, (7, 0))
    with pytest.raises(ValueError, match="spatial_scale"):
        roi_max_pool_ext(features, rois, 7, 0.0)
    with pytest.raises(ValueError, match="batch"):
        roi_max_pool_ext(features, torch.tensor([[2.0, 0, 0, 10, 10]]))
    with pytest.raises(RuntimeError, match="rois must be"):
        torch.ops.posecnn.roi_max_pool_forward(features, rois[:, :3], 7, 7, 0.125)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(ops: None, dtype: torch.dtype) -> None:
    from posecnn_core.ops.roi_pool_ext import roi_max_pool_ext

    if not extension.has_op("roi_max_pool_forward", "cuda"):
        pytest.fail(f"no CUDA kernel built: {extension.load_error()}")
    gen = torch.Generator().manual_seed(31)
    features = torch.randn(2, 64, 60, 80, generator=gen).to(dtype)
    rois = random_rois(gen, 40, 2, 480, 640)
    out_cpu, arg_cpu = run_forward(features, rois, (7, 7), 1 / 8)
    out_gpu, arg_gpu = run_forward(features.cuda(), rois.cuda(), (7, 7), 1 / 8)
    assert torch.equal(arg_gpu.cpu(), arg_cpu)
    assert torch.equal(out_gpu.cpu(), out_cpu)
    grad = torch.randn(out_cpu.shape, generator=gen).to(dtype)
    f_cpu = features.clone().requires_grad_(True)
    f_gpu = features.cuda().requires_grad_(True)
    roi_max_pool_ext(f_cpu, rois, 7, 1 / 8).backward(grad)
    roi_max_pool_ext(f_gpu, rois.cuda(), 7, 1 / 8).backward(grad.cuda())
    tol = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-5
    torch.testing.assert_close(f_gpu.grad.cpu(), f_cpu.grad, rtol=tol, atol=tol)


def test_matches_torch_reference(ops: None) -> None:
    from posecnn_core import roi_pool
    from posecnn_core.ops.roi_pool_ext import roi_max_pool_ext

    gen = torch.Generator().manual_seed(37)
    for scale in (1 / 8, 1 / 16):
        features = torch.randn(3, 4, 10, 12, generator=gen)
        rois = random_rois(gen, 18, 3, 10 / scale, 12 / scale)
        f_ext = features.clone().requires_grad_(True)
        f_ref = features.clone().requires_grad_(True)
        out_ext = roi_max_pool_ext(f_ext, rois, 7, scale)
        out_ref = roi_pool.roi_max_pool_torch(f_ref, rois, output_size=7, spatial_scale=scale)
        assert torch.equal(out_ext, out_ref)
        grad = torch.randn(out_ext.shape, generator=gen)
        out_ext.backward(grad)
        out_ref.backward(grad)
        torch.testing.assert_close(f_ext.grad, f_ref.grad)


def _loader_subprocess(env_update: dict[str, str]) -> subprocess.CompletedProcess:
    code = ("import logging, sys; logging.basicConfig(level=logging.WARNING);"
            "from posecnn_core.ops import extension as e; ok = e.load_ops();"
            "print('LOADED' if ok else 'FALLBACK', e.has_op('roi_max_pool_forward', 'cpu'))")
    env = {**os.environ, **env_update, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=str(REPO))


def test_no_compiler_falls_back_with_one_log_line(tmp_path: Path) -> None:
    proc = _loader_subprocess({"CXX": str(tmp_path / "no-such-c++"), "POSECNN_OPS_BUILD_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["FALLBACK", "False"]
    lines = [ln for ln in proc.stderr.splitlines() if "posecnn" in ln]
    assert len(lines) == 1 and "no C++ compiler" in lines[0] and "falling back" in lines[0], proc.stderr


def test_prebuilt_library_loads_without_compiler(ops: None, tmp_path: Path) -> None:
    proc = _loader_subprocess({"CXX": str(tmp_path / "no-such-c++"),
                               "POSECNN_OPS_BUILD_DIR": str(extension.build_dir())})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["LOADED", "True"], proc.stderr


def test_build_command_lists_ops(ops: None) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "posecnn_core.ops.build"], env=env, capture_output=True,
                          text=True, timeout=300, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    assert str(extension.build_dir()) in proc.stdout
    assert "posecnn::roi_max_pool_forward" in proc.stdout and "kernels: cpu" in proc.stdout
