"""Which model points the camera sees (a splatting z-buffer) and which ones it sees through (free-space violations
against the depth image). Padded batches: B elements, N model points."""
from __future__ import annotations

import torch

from ..geometry import project_uv
from ..ops.backend import resolve_backend

_VIS_GRID = 128  # visibility z-buffer grid is at most this many cells per side (refine_common.h: kVisGrid)


def _in_front(s: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Points s [..., 3] with those not ok replaced by (0, 0, 1), so that projecting them is safe."""
    return torch.where(ok[..., None], s, s.new_tensor([0.0, 0.0, 1.0]))


def _visible(s: torch.Tensor, model_valid: torch.Tensor, K: torch.Tensor, margin: float,
             backend: str = "auto") -> torch.Tensor:
    """Model points [B, N, 3] (camera frame) visible from the camera: splat z-buffer on a coarse grid.

    The cell size is chosen so that a cell holds a few camera-facing points (holes would let back points
    through); a point is visible if its depth is within margin + one cell's footprint of the cell's nearest.
    backend (ops.backend): the compiled operator posecnn::model_visibility (float32) or this PyTorch reference;
    both compute the same float32 operations in the same order (cuda_ops/csrc/refine_common.h).
    """
    if s.dtype == torch.float32 and resolve_backend(backend, s.device, "model_visibility") == "ext":
        return torch.ops.posecnn.model_visibility(s, model_valid, K.to(s.dtype), float(margin))
    return _visible_torch(s, model_valid, K, margin)


def _visible_torch(s: torch.Tensor, model_valid: torch.Tensor, K: torch.Tensor, margin: float) -> torch.Tensor:
    """The PyTorch reference of _visible."""
    B, N, _ = s.shape
    z = s[..., 2]
    ok = model_valid & (z > 1e-3)
    u, v = project_uv(_in_front(s, ok), K)
    big = torch.finfo(s.dtype).max
    uv, ok2 = torch.stack((u, v), -1), ok[..., None]
    umin, vmin = torch.where(ok2, uv, big).amin(1).unbind(-1)
    umax, vmax = torch.where(ok2, uv, -big).amax(1).unbind(-1)
    n_ok = ok.sum(1).clamp_min(1).to(s.dtype)
    span_u = (umax - umin).clamp_min(0)
    span_v = (vmax - vmin).clamp_min(0)
    # About half the points face the camera and cover roughly 60 % of the bounding box: aim at ~4 per cell.
    # the square root in float64, rounded once: exact, as the compiled operator's (torch's float32 sqrt may be an
    # ulp off)
    cell = torch.sqrt((5 * span_u * span_v / n_ok).double()).to(s.dtype).clamp_min(1.0)
    cell = torch.maximum(cell, torch.maximum(span_u, span_v) / (_VIS_GRID - 1))
    cu = ((u - umin[:, None]) / cell[:, None]).floor().clamp(0, _VIS_GRID - 1).long()
    cv = ((v - vmin[:, None]) / cell[:, None]).floor().clamp(0, _VIS_GRID - 1).long()
    cu, cv = torch.where(ok, cu, 0), torch.where(ok, cv, 0)
    # The grid needs only as many cells as the widest element uses (at most _VIS_GRID per side).
    gu, gv = (int(cu.max()) + 1, int(cv.max()) + 1) if B * N else (1, 1)
    flat = (torch.arange(B, device=s.device)[:, None] * gv + cv) * gu + cu
    grid = torch.full((B * gv * gu,), float("inf"), dtype=s.dtype, device=s.device)
    grid = grid.scatter_reduce(0, flat.view(-1), torch.where(ok, z, float("inf")).view(-1), reduce="amin",
                               include_self=True)
    zmin = grid[flat.view(-1)].view(B, N)
    footprint = cell[:, None] * zmin / K[0, 0]  # cell size in metres at the cell's depth (45 degree slope)
    return ok & (z <= zmin + margin + footprint)


def _nearest_reading(depth: torch.Tensor, radius: int) -> torch.Tensor:
    """Per pixel the smallest depth reading within `radius` pixels (inf where there is none): a min filter
    that ignores missing readings (0)."""
    d = torch.where(depth > 0, depth, torch.full_like(depth, float("inf")))
    if radius == 0:
        return d
    # A square min filter is a row filter followed by a column filter (cheaper than one 2D pool).
    k = 2 * radius + 1
    rows = torch.nn.functional.max_pool2d(-d[None, None], (1, k), stride=1, padding=(0, radius))
    return -torch.nn.functional.max_pool2d(rows, (k, 1), stride=1, padding=(radius, 0))[0, 0]


def _free_space_violation(s: torch.Tensor, vis: torch.Tensor, nearest: torch.Tensor, K: torch.Tensor,
                          margin: float) -> torch.Tensor:
    """Fraction [B] of the visible model points s [B, N, 3] that the camera sees through: every depth reading
    near their pixel (`nearest`, from :func:`_nearest_reading`) lies more than margin behind them. Points off
    the image or without readings nearby do not count against the pose (unknown), nor do points with a
    reading in front of them (an occluder); the neighbourhood forgives small misalignments at the outline."""
    H, W = nearest.shape
    z = s[..., 2]
    ok = vis & (z > 1e-3)
    u, v = (c.round() for c in project_uv(_in_front(s, ok), K))
    ok = ok & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    d = nearest[v.clamp(0, H - 1).long(), u.clamp(0, W - 1).long()]
    through = ok & torch.isfinite(d) & (d > z + margin)
    return through.sum(1).to(s.dtype) / ok.sum(1).clamp_min(1).to(s.dtype)
