#!/usr/bin/env python3
"""A small program that runs every CUDA kernel of the compiled operators once, for compute-sanitizer:

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 99 \
        python tools/gpu_sanitize_ops.py
    compute-sanitizer --tool racecheck --error-exitcode 99 python tools/gpu_sanitize_ops.py

Hough voting (multi-instance with and without the same-label test, single-instance, training mode, vote counts)
RoI max pooling forward + backward (float32 and bfloat16) and the depth refinement's operators (visibility, grid
nearest point, normal equations) on small inputs; every CUDA result is compared with the CPU operator. Prints one line per check and exits non-zero on a mismatch. (The caching allocator is off for
memcheck so that an overrun lands outside any allocation.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "test")]

from _voting_helpers import pt_scene  # noqa: E402

from posecnn_core.ops.extension import has_op, load_error, load_ops  # noqa: E402
from posecnn_core.ops.roi_pool_ext import roi_max_pool_ext  # noqa: E402
from posecnn_core.voting import VotingParams, hough_voting, vote_counts  # noqa: E402


def refine_checks(g: torch.Generator) -> int:
    """The refinement operators on a few random elements, CUDA against CPU; returns the number of mismatches."""
    from posecnn_core.refine.neighbours import ModelGrid

    B, N, M = 3, 300, 200
    model = torch.rand(B, N, 3, generator=g) * 0.1 - 0.05
    grid, _ = ModelGrid.build(model, torch.ones(B, N, dtype=torch.bool))
    R = torch.linalg.qr(torch.randn(B, 3, 3, generator=g)).Q
    R = R * torch.det(R)[:, None, None]  # proper rotations
    t = torch.tensor([0.0, 0.0, 0.7]).repeat(B, 1)
    s = model @ R.transpose(1, 2) + t[:, None]
    valid = torch.rand(B, N, generator=g) > 0.1
    K = torch.tensor([[500.0, 0.0, 160.0], [0.0, 500.0, 120.0], [0.0, 0.0, 1.0]])
    q = s[:, :M] + 0.005 * torch.randn(B, M, 3, generator=g)
    bad = 0
    vis_c = torch.ops.posecnn.model_visibility(s, valid, K, 0.01)
    vis_g = torch.ops.posecnn.model_visibility(s.cuda(), valid.cuda(), K.cuda(), 0.01)
    nn_c = torch.ops.posecnn.model_grid_nearest(q, s, vis_c, R, t, grid.meta, grid.table)
    nn_g = torch.ops.posecnn.model_grid_nearest(q.cuda(), s.cuda(), vis_c.cuda(), R.cuda(), t.cuda(), grid.meta.cuda(),
                                                grid.table.cuda())
    w = torch.rand(B, M, generator=g)
    normals = torch.nn.functional.normalize(torch.randn(B, M, 3, generator=g), dim=-1)
    ok = torch.rand(B, M, generator=g) > 0.2
    c, pw = q.mean(1), torch.full((B,), 0.5)
    args = (q, s[:, :M], normals, ok, w, c, pw)
    ne_c = torch.ops.posecnn.icp_normal_equations(*args, True)
    ne_g = torch.ops.posecnn.icp_normal_equations(*(x.cuda() for x in args), True)
    torch.cuda.synchronize()
    checks = {
        "visibility": torch.equal(vis_c, vis_g.cpu()),
        "grid nearest": torch.equal(nn_c[0], nn_g[0].cpu()) and torch.equal(nn_c[1], nn_g[1].cpu()),
        # CUDA may fuse the float64 multiply-adds: equal to rounding
        "normal equations": all(torch.allclose(a, b.cpu(), rtol=1e-12, atol=1e-14) for a, b in zip(ne_c, ne_g)),
    }
    for name, same in checks.items():
        print(f"refinement {name:<18} cuda == cpu: {same}", flush=True)
        bad += not same
    return bad


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    if not load_ops() or not has_op("hough_voting", "cuda") or not has_op("roi_max_pool_forward", "cuda"):
        print(f"CUDA operators unavailable: {load_error()}", file=sys.stderr)
        return 2
    bad = 0
    labels, vertex, K, extents = pt_scene(3, B=2, H=36, W=48, C=4)
    dev = [t.cuda() for t in (labels, vertex, K, extents)]
    params = {
        "multi, same-label": VotingParams(label_threshold=20, skip_pixels=2, vote_threshold=3),
        "multi, no same-label": VotingParams(label_threshold=20, skip_pixels=2, vote_threshold=3,
                                             check_same_label=False),
        "single": VotingParams(label_threshold=20, skip_pixels=3, vote_threshold=None),
        "train": VotingParams(label_threshold=20, skip_pixels=2, vote_threshold=2, mode="train"),
        "many peaks (train mode)": VotingParams(label_threshold=0, skip_pixels=1, vote_threshold=0,
                                                per_threshold=0.0, inlier_threshold=0.0, check_same_label=False,
                                                max_peaks=100000, mode="train"),
    }
    for name, p in params.items():
        cpu = hough_voting(labels, vertex, K, extents, p, backend="cpp")
        gpu = hough_voting(*dev, p, backend="cuda")
        torch.cuda.synchronize()
        same = all(torch.equal(a, b.cpu()) for a, b in zip(cpu[:2], gpu[:2])) and torch.allclose(
            cpu.translations, gpu.translations.cpu(), rtol=1e-6, atol=1e-7)
        counts_same = torch.equal(vote_counts(labels, vertex, K, extents, p, backend="cpp"),
                                  vote_counts(*dev, p, backend="cuda").cpu())
        print(f"voting {name:<24} rows {cpu.rois.shape[0]:>5}  cuda == cpu: {same and counts_same}", flush=True)
        bad += not (same and counts_same)
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        feats = torch.randn(2, 8, 12, 16, generator=g).to(dtype)
        rois = torch.tensor([[0, 3.0, 5.0, 60.0, 40.0], [1, -10.0, -4.0, 200.0, 90.0], [0, 50.0, 50.0, 51.0, 50.5],
                             [1, 120.0, 80.0, 126.0, 95.0]])
        out_c = roi_max_pool_ext(feats.requires_grad_(True), rois, 7, 1 / 8)
        fg = feats.detach().cuda().requires_grad_(True)
        out_g = roi_max_pool_ext(fg, rois.cuda(), 7, 1 / 8)
        grad = torch.randn(out_c.shape, generator=g).to(dtype)
        out_c.backward(grad)
        out_g.backward(grad.cuda())
        torch.cuda.synchronize()
        fwd = torch.equal(out_c.detach(), out_g.detach().cpu())
        bwd = torch.allclose(feats.grad.float(), fg.grad.float().cpu(), rtol=1e-2 if dtype != torch.float32 else 1e-6,
                             atol=1e-2 if dtype != torch.float32 else 1e-6)
        print(f"roi pooling {str(dtype):<15} forward cuda == cpu: {fwd}  backward: {bwd}", flush=True)
        bad += not (fwd and bwd)
    bad += refine_checks(g)
    print("OK" if bad == 0 else f"{bad} mismatch(es)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
