"""The compiled depth-refinement operators (cuda_ops/csrc/refine_*: posecnn::model_visibility and
posecnn::model_grid_nearest) against their PyTorch references, bit for bit, and the refinement through either."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from _refine_helpers import (K_SMALL, box_mesh, cylinder_mesh, frame, l_block_mesh, look_pose, model_points,
                             perturb, rotation_error_deg)
from posecnn_core.ops.extension import _missing_toolchain, has_op, load_error, load_ops
from posecnn_core.refine import RefineOptions, refine_poses
from posecnn_core.refine.icp import _normal_equations, _normal_equations_torch
from posecnn_core.refine.neighbours import ModelGrid
from posecnn_core.refine.visibility import _visible, _visible_torch

if _missing_toolchain() is not None and not load_ops():
    pytest.skip(f"no C++ toolchain to build the operators: {_missing_toolchain()}", allow_module_level=True)

CUDA = torch.cuda.is_available() and has_op("model_visibility", "cuda")
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])


def test_operators_load() -> None:
    assert load_ops(), f"posecnn operator library failed to build or load: {load_error()}"
    assert has_op("model_visibility", "cpu") and has_op("model_grid_nearest", "cpu")


def _posed_models(B: int, N: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Model points [B, N, 3] of boxes and cylinders at random poses 0.4-1.2 m in front of the camera, their
    rotations [B, 3, 3] and translations [B, 3]; a few points placed behind the camera or flagged invalid."""
    rng = np.random.default_rng(seed)
    meshes = [box_mesh((0.16, 0.21, 0.06)), cylinder_mesh(), l_block_mesh()]
    pts, Rs, ts = [], [], []
    for b in range(B):
        p = model_points(meshes[b % 3], N, seed=seed + b)
        R, t = look_pose([rng.uniform(-0.2, 0.2), rng.uniform(-0.15, 0.15), rng.uniform(0.4, 1.2)],
                         tuple(rng.uniform(-180, 180, 3)))
        pts.append(p @ R.T + t)
        Rs.append(R)
        ts.append(t)
    s = torch.tensor(np.stack(pts), dtype=torch.float32)
    s[0, :5, 2] = -0.1  # behind the camera: never visible
    return s, torch.tensor(np.stack(Rs), dtype=torch.float32), torch.tensor(np.stack(ts), dtype=torch.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_visibility_equals_reference(device: str, seed: int) -> None:
    s, _, _ = _posed_models(6, 700, seed)
    valid = torch.rand(6, 700, generator=torch.Generator().manual_seed(seed)) > 0.1
    valid[3] = False                 # an element without any valid point
    valid[4, 1:] = False             # a single valid point
    K = torch.tensor(K_SMALL, dtype=torch.float32)
    s, valid, K = s.to(device), valid.to(device), K.to(device)
    ref = _visible_torch(s, valid, K, 0.01)
    out = torch.ops.posecnn.model_visibility(s, valid, K, 0.01)
    assert torch.equal(out, ref)
    assert torch.equal(_visible(s, valid, K, 0.01, backend="auto"), ref)
    # The test means something: roughly half of a closed surface faces away from the camera.
    frac = ref[:3].float().mean().item()
    assert 0.3 < frac < 0.7, frac
    assert not ref[3].any() and not ref[0, :5].any()
    assert ref[4, 0] and not ref[4, 1:].any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1])
def test_grid_nearest_equals_reference(device: str, seed: int) -> None:
    B, N, M = 5, 600, 400
    gen = torch.Generator().manual_seed(seed)
    s, R, t = _posed_models(B, N, seed)
    model = torch.einsum("bij,bnj->bni", R.transpose(1, 2), s - t[:, None, :])  # back in the object frame
    model_valid = torch.ones(B, N, dtype=torch.bool)
    model_valid[1, N - 50:] = False  # a padded element
    grid, _ = ModelGrid.build(model, model_valid)
    # Observed points: model points with noise up to 2 cm (near the surface) and a few far away.
    q = s[:, torch.randint(0, N - 50, (M,), generator=gen)] + 0.02 * (torch.rand(B, M, 3, generator=gen) - 0.5)
    q[:, :10] += 0.5
    s_ok = torch.rand(B, N, generator=gen) > 0.4
    s_ok[2] = False  # nothing allowed: every match is the first candidate at distance inf
    args = [x.to(device) for x in (q, s, s_ok, R, t)]
    grid = ModelGrid(grid.table.to(device), grid.meta.to(device))
    idx_ref, d_ref = grid._nearest_torch(*args)
    idx, d = torch.ops.posecnn.model_grid_nearest(*args, grid.meta, grid.table)
    assert torch.equal(idx, idx_ref) and torch.equal(d, d_ref)
    idx_auto, d_auto = grid.nearest(*args)
    assert torch.equal(idx_auto, idx_ref) and torch.equal(d_auto, d_ref)
    assert torch.isinf(d[2]).all() and torch.isfinite(d[0]).all()
    # The matches are near: observed points within 1 cm of the surface find a point within ~1.5 cm.
    assert float(d[0, 10:].median()) < 0.015


def test_grid_nearest_rejects_bad_inputs() -> None:
    s, R, t = _posed_models(2, 100, 0)
    model = torch.einsum("bij,bnj->bni", R.transpose(1, 2), s - t[:, None, :])
    grid, _ = ModelGrid.build(model, torch.ones(2, 100, dtype=torch.bool))
    q, ok = s[:, :20].clone(), torch.ones(2, 100, dtype=torch.bool)
    bad = grid.meta.clone()
    bad[1, 7] = grid.table.shape[0]  # first row past the table's end
    with pytest.raises(RuntimeError, match="meta row 1"):
        torch.ops.posecnn.model_grid_nearest(q, s, ok, R, t, bad, grid.table)
    with pytest.raises(RuntimeError, match="q must be float32"):
        torch.ops.posecnn.model_grid_nearest(q.double(), s, ok, R, t, grid.meta, grid.table)
    with pytest.raises(RuntimeError, match="valid must be bool"):
        torch.ops.posecnn.model_visibility(s, ok.float(), torch.eye(3), 0.01)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("plane", [True, False])
def test_normal_equations_equal_reference(device: str, plane: bool) -> None:
    gen = torch.Generator().manual_seed(3)
    B, M = 4, 500
    q = torch.randn(B, M, 3, generator=gen) * 0.05 + torch.tensor([0.0, 0.0, 0.8])
    m = q + 0.01 * torch.randn(B, M, 3, generator=gen)
    normals = torch.nn.functional.normalize(torch.randn(B, M, 3, generator=gen), dim=-1)
    normal_ok = torch.rand(B, M, generator=gen) > 0.2
    w = torch.rand(B, M, generator=gen) * (torch.rand(B, M, generator=gen) > 0.3)
    w[3] = 0.0  # an element without matches: all zero
    c = (w[..., None] * q).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-12)
    pw = torch.rand(B, generator=gen)
    args = [x.to(device) for x in (q, m, normals, normal_ok, w, c, pw)]
    H_ref, g_ref = _normal_equations_torch(*args, plane)
    H, g = torch.ops.posecnn.icp_normal_equations(*args, plane)
    assert H.dtype == torch.float64 and H.shape == (B, 6, 6) and g.shape == (B, 6)
    torch.testing.assert_close(H, H_ref, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-15)
    assert torch.equal(H[3], torch.zeros(6, 6, dtype=torch.float64)) and float(H[0].abs().max()) > 1.0
    H_auto, _ = _normal_equations(*args, plane)
    assert torch.equal(H_auto, H)


def test_refinement_identical_through_either_backend() -> None:
    """The whole refinement (local ICP and the rotation search) gives the same poses with the compiled
    operators as with the PyTorch references."""
    meshes = [box_mesh(), cylinder_mesh(), l_block_mesh()]
    poses = [look_pose([-0.2, 0.02, 0.85]), look_pose([0.17, -0.03, 0.7], (60.0, 20.0, 0.0)),
             look_pose([0.02, 0.01, 0.75], (35.0, -25.0, 15.0))]
    depth, masks = frame([(m, R, t) for m, (R, t) in zip(meshes, poses)], noise_m=0.001, seed=5)
    starts = [perturb(R, t, 0.02, 10.0, seed=i) for i, (R, t) in enumerate(poses[:2])]
    starts.append(perturb(*poses[2], 0.03, 120.0, 0, axis=(1.0, 0.0, 0.0)))  # far off: the rotation search runs
    points = [model_points(m, 1500) for m in meshes]
    results = {}
    for backend in ("torch", "cpp"):
        opts = dataclasses.replace(RefineOptions(max_points=600), backend=backend)
        results[backend] = refine_poses(depth, K_SMALL, masks, [R for R, _ in starts], [t for _, t in starts],
                                        points, options=opts, symmetric=[False, True, False])
    # The normal equations' sums run in another order (equal to ~1e-12 relative), so the poses agree to far below
    # the depth noise rather than bit for bit.
    for a, b in zip(results["torch"], results["cpp"]):
        assert a.success and b.success
        assert np.abs(a.t - b.t).max() < 1e-5 and np.abs(a.R - b.R).max() < 1e-4
        assert abs(a.inlier_fraction - b.inlier_fraction) < 0.01
    for (R, t), r in zip(poses, results["cpp"]):
        assert np.linalg.norm(r.t - t) < 0.005
    assert rotation_error_deg(results["cpp"][2].R, poses[2][0]) < 2.0  # the search found the L block's rotation
