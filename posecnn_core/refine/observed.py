"""Observed points of an instance: masked depth pixels back-projected, with normals from the depth map."""
from __future__ import annotations

import torch

from ..geometry import backproject_pixels
from .options import RefineOptions
from .tensors import _subsample_rows


def _observed_points(depth: torch.Tensor, K: torch.Tensor, mask: torch.Tensor, options: RefineOptions
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Back-projected masked depth points [M, 3], their normals [M, 3] (zero = none), a validity flag of
    each normal [M] and the number of valid masked pixels before subsampling."""
    H, W = depth.shape
    valid_depth = torch.isfinite(depth) & (depth >= options.min_depth) & (depth <= options.max_depth)
    d = torch.where(valid_depth, depth, torch.zeros_like(depth))
    pixels = torch.nonzero(mask & valid_depth)
    count = int(pixels.shape[0])
    rows, cols = _subsample_rows(pixels, options.max_points).unbind(1)

    def backproject(r: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inside = (r >= 0) & (r < H) & (c >= 0) & (c < W)
        rc, cc = r.clamp(0, H - 1), c.clamp(0, W - 1)
        z = d[rc, cc]
        p = backproject_pixels(cc, rc, z, K)
        return p, inside & (z > 0)

    p, _ = backproject(rows, cols)
    jump = options.normal_max_jump
    # Neighbour offset in pixels: normal_radius in metres at the pixel's depth (at least one pixel).
    rad = (options.normal_radius * K[0, 0] / p[:, 2]).round().clamp(1, 16).long()

    def tangent(dr: torch.Tensor, dc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Central difference when both neighbours are usable, else the one-sided difference that is.
        fwd, okf = backproject(rows + dr, cols + dc)
        bwd, okb = backproject(rows - dr, cols - dc)
        okf = okf & ((fwd[:, 2] - p[:, 2]).abs() < jump)
        okb = okb & ((bwd[:, 2] - p[:, 2]).abs() < jump)
        central = (fwd - bwd) / 2
        one_sided = torch.where(okf[:, None], fwd - p, p - bwd)
        return torch.where((okf & okb)[:, None], central, one_sided), okf | okb

    du, oku = tangent(0 * rad, rad)
    dv, okv = tangent(rad, 0 * rad)
    n = torch.cross(du, dv, dim=-1)
    norm = n.norm(dim=-1, keepdim=True)
    ok = oku & okv & (norm[:, 0] > 0)
    n = n / norm.clamp_min(1e-12)
    n = torch.where((n * p).sum(-1, keepdim=True) > 0, -n, n)  # face the camera
    n = torch.where(ok[:, None], n, torch.zeros_like(n))
    return p, n, ok, count
