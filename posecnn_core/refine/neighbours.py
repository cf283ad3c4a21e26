"""Nearest model point of each observed point through a lookup grid in the object frame (RefineOptions.neighbours
= "grid").

The model points never change in their own frame, so their neighbourhoods can be tabulated once: a voxel grid
around the model holds, for each cell, the `_CANDIDATES` model points nearest to the cell's centre (a k-d tree
query when the table is built). To match observed points at a pose (R, t), they are moved into the object frame,
(q − t)·R, each looks up its cell (cells outside the grid: the nearest border cell) and takes the nearest of that
cell's candidates *that is visible at the pose*. Cost per match: a handful of distances instead of one per model
point (brute force). The answer is approximate: the true nearest visible point may be missing from the candidate
list (a query far from the model, or when all candidates face away from the camera, which then leaves the point
unmatched). The cells are about one point spacing wide, so near the surface, where matches count, the
list nearly always holds the true nearest point.

Tables are cached by the content of the point set (a model's points are the same tensor frame after frame), so
building them (a few ms per object) is paid once per object and point count.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np
import torch

from ..ops.backend import resolve_backend

_CANDIDATES = 8        # model points listed per cell
_MAX_CELLS = 48        # cells along the longest side of the model at most
_CELL_SPACINGS = 1.0   # cell size in model point spacings (before the _MAX_CELLS bound)
_MARGIN_CELLS = 2      # cells added around the model's bounding box
_CACHE_SIZE = 64

_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def _build_table(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(meta [7] = origin xyz, cell size, cells along x, y, z; table [cells, _CANDIDATES] int64; point spacing)
    of points [n, 3]. The spacing is icp._spacing's: the median distance to the nearest other point."""
    from scipy.spatial import cKDTree

    tree = cKDTree(points)
    spacing = max(float(np.median(tree.query(points, k=2)[0][:, 1])), 1e-5) if len(points) > 1 else 1e-5
    lo, hi = points.min(0), points.max(0)
    span = float((hi - lo).max())
    cell = max(_CELL_SPACINGS * spacing, span / _MAX_CELLS, 1e-6)
    origin = lo - _MARGIN_CELLS * cell
    dims = np.ceil((hi - lo) / cell).astype(np.int64) + 2 * _MARGIN_CELLS + 1
    axes = [origin[a] + (np.arange(dims[a]) + 0.5) * cell for a in range(3)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    k = min(_CANDIDATES, len(points))
    _, idx = tree.query(centres, k=k)
    idx = idx.reshape(len(centres), k)
    if k < _CANDIDATES:  # fewer points than candidates: repeat the nearest
        idx = np.concatenate([idx, np.repeat(idx[:, :1], _CANDIDATES - k, 1)], 1)
    meta = np.array([*origin, cell, *dims], dtype=np.float64)
    return meta, idx.astype(np.int64), spacing


def _table(points: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float]:
    pts = points.detach().cpu().numpy().astype(np.float32)
    key = (pts.shape, hashlib.blake2b(pts.tobytes(), digest_size=16).hexdigest())
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    built = _build_table(pts.astype(np.float64))
    with _cache_lock:
        _cache[key] = built
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return built


class ModelGrid:
    """Lookup grids of a padded batch of model point sets: one table for all, and per element its grid's
    origin, cell size, cell counts and first row in the table (`meta` [B, 8] float64, indexed like the batch).
    `backend` (ops.backend) picks the compiled operator posecnn::model_grid_nearest or the PyTorch reference for
    `nearest`; both compute the same float32 operations in the same order (cuda_ops/csrc/refine_common.h)."""

    def __init__(self, table: torch.Tensor, meta: torch.Tensor, backend: str = "auto") -> None:
        self.table, self.meta, self.backend = table, meta, backend

    @classmethod
    def build(cls, model: torch.Tensor, model_valid: torch.Tensor, backend: str = "auto"
              ) -> tuple["ModelGrid", torch.Tensor]:
        """Grids of model [I, N, 3] (valid rows model_valid [I, N]) and the point spacings [I] (icp._spacing)."""
        metas, tables, spacings, offset = [], [], [], 0
        for i in range(model.shape[0]):
            meta, table, spacing = _table(model[i][model_valid[i]])
            metas.append(np.append(meta, offset))
            tables.append(table)
            spacings.append(spacing)
            offset += len(table)
        dev = model.device
        grid = cls(torch.from_numpy(np.concatenate(tables)).to(dev), torch.from_numpy(np.stack(metas)).to(dev),
                   backend)
        return grid, torch.tensor(spacings, dtype=model.dtype, device=dev)

    def select(self, rows: torch.Tensor) -> "ModelGrid":
        return ModelGrid(self.table, self.meta[rows], self.backend)

    def repeat(self, k: int) -> "ModelGrid":
        m = self.meta
        return ModelGrid(self.table, m[:, None].expand(m.shape[0], k, m.shape[1]).reshape(-1, m.shape[1]),
                         self.backend)

    def nearest(self, q: torch.Tensor, s: torch.Tensor, s_ok: torch.Tensor, R: torch.Tensor, t: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like icp._nearest: index [B, M] of the nearest allowed (s_ok) point of s [B, N, 3] (the model at pose
        R [B, 3, 3], t [B, 3]) for each q [B, M, 3], and its distance (inf where no candidate is allowed)."""
        if q.dtype == torch.float32 and resolve_backend(self.backend, q.device, "model_grid_nearest") == "ext":
            return torch.ops.posecnn.model_grid_nearest(q, s, s_ok, R, t, self.meta, self.table)
        return self._nearest_torch(q, s, s_ok, R, t)

    def _nearest_torch(self, q: torch.Tensor, s: torch.Tensor, s_ok: torch.Tensor, R: torch.Tensor, t: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The PyTorch reference of `nearest`."""
        B, M, _ = q.shape
        dt = q.dtype
        meta = self.meta.to(dt)
        origin, cell = meta[:, None, 0:3], meta[:, None, 3:4]
        dims = self.meta[:, 4:7].long()
        # Object frame: Rᵀ(q − t) as rows, local_j = ((d0·R0j + d1·R1j) + d2·R2j), summed in this order (as the
        # compiled operator does; a matrix product may round differently).
        d = q - t[:, None, :]
        local = d[..., 0:1] * R[:, None, 0, :] + d[..., 1:2] * R[:, None, 1, :] + d[..., 2:3] * R[:, None, 2, :]
        ijk = ((local - origin) / cell).floor()
        ijk = torch.minimum(ijk.clamp_min(0), (dims - 1).to(dt)[:, None, :]).long()
        flat = (ijk[..., 0] * dims[:, None, 1] + ijk[..., 1]) * dims[:, None, 2] + ijk[..., 2] \
            + self.meta[:, None, 7].long()
        cand = self.table[flat]                                     # [B, M, C]
        C = cand.shape[-1]
        # Squared distances to the candidates coordinate by coordinate (planar [B, 3, N] gathers: contiguous,
        # vectorised work instead of reductions over a last dimension of 3).
        flat_cand = cand.reshape(B, 1, M * C).expand(B, 3, M * C)
        diff = torch.gather(s.transpose(1, 2), 2, flat_cand).view(B, 3, M, C) - q.transpose(1, 2)[..., None]
        diff = diff.square_()
        d2 = diff[:, 0].add_(diff[:, 1]).add_(diff[:, 2])
        ok = torch.gather(s_ok, 1, cand.reshape(B, M * C)).view(B, M, C)
        d2 = d2.masked_fill_(~ok, float("inf"))
        best_d2, best = d2.min(-1)  # the first smallest, as argmin
        idx = torch.gather(cand, 2, best[..., None])[..., 0]
        # IEEE square root (float64, rounded once to float32): torch's float32 sqrt may be an ulp off, the
        # compiled operator's is exact
        return idx, best_d2.double().sqrt_().to(dt)
