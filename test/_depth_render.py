"""Tiny CPU z-buffer rasteriser of triangle meshes into depth images (numpy only).

Makes synthetic depth frames for the tests and bench/bench_refine.py (not part of the package). Pinhole camera per
docs/conventions.md: a camera-frame point X projects to u = fx·X/Z + px, v = fy·Y/Z + py, and pixel
(row r, column c) has its centre at (u, v) = (c, r). Depth is the camera-frame Z (not the ray length) in
metres; 0 means "no surface". Depth is interpolated exactly (1/Z is affine in screen space over a planar
triangle). Triangles with a vertex closer than `near` are dropped rather than clipped; both faces of a
triangle are drawn, the z-buffer resolves visibility.

The rasteriser is vectorised over triangles: candidate pixels of all triangles' bounding boxes are enumerated
in chunks of bounded size, tested with barycentric coordinates and reduced with a depth-sorted scatter.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from posecnn_core.geometry import project_points

__all__ = ["render_depth", "render_scene"]

_CHUNK_PIXELS = 1 << 21  # candidate pixels processed at once (bounds memory)


def _as_matrix(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _check_mesh(name: str, vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"{name} vertices must have shape [V, 3], got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"{name} faces must be an integer array of shape [F, 3], got {f.dtype} {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"{name} faces index vertices outside [0, {len(v)})")
    return v, f.astype(np.int64)


def _rasterize(v_cam: np.ndarray, faces: np.ndarray, K: np.ndarray, height: int, width: int,
               near: float) -> tuple[np.ndarray, np.ndarray]:
    """Depth [H, W] (0 = empty) and the index of the visible face per pixel (-1 = empty)."""
    depth = np.zeros((height, width), np.float64)
    face_id = np.full((height, width), -1, np.int64)
    if len(faces) == 0:
        return depth, face_id
    tri = v_cam[faces]                                   # [F, 3, 3]
    z = tri[..., 2]
    keep = np.all(z > near, axis=1)
    tri, z, ids = tri[keep], z[keep], np.nonzero(keep)[0]
    u, v = np.moveaxis(project_points(tri, K), -1, 0)
    # Pixel-centre bounding boxes, clipped to the image.
    c0 = np.clip(np.ceil(u.min(1)), 0, width).astype(np.int64)
    c1 = np.clip(np.floor(u.max(1)), -1, width - 1).astype(np.int64)
    r0 = np.clip(np.ceil(v.min(1)), 0, height).astype(np.int64)
    r1 = np.clip(np.floor(v.max(1)), -1, height - 1).astype(np.int64)
    bw, bh = c1 - c0 + 1, r1 - r0 + 1
    area2 = (u[:, 1] - u[:, 0]) * (v[:, 2] - v[:, 0]) - (u[:, 2] - u[:, 0]) * (v[:, 1] - v[:, 0])
    ok = (bw > 0) & (bh > 0) & (np.abs(area2) > 1e-12)
    sel = np.nonzero(ok)[0]
    counts = (bw * bh)[sel]
    best = np.full(height * width, np.inf)
    best_face = np.full(height * width, -1, np.int64)
    start = 0
    while start < len(sel):
        # Grow the chunk until it holds _CHUNK_PIXELS candidates (always at least one triangle).
        stop = start + max(1, int(np.searchsorted(np.cumsum(counts[start:]), _CHUNK_PIXELS, side="right")))
        t_idx = sel[start:stop]
        n = counts[start:stop]
        owner = np.repeat(np.arange(len(t_idx)), n)
        local = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        ti = t_idx[owner]
        col = c0[ti] + local % bw[ti]
        row = r0[ti] + local // bw[ti]
        uu, vv = u[ti], v[ti]
        # Barycentric weights of the pixel centre (col, row).
        w0 = ((uu[:, 1] - col) * (vv[:, 2] - row) - (uu[:, 2] - col) * (vv[:, 1] - row)) / area2[ti]
        w1 = ((uu[:, 2] - col) * (vv[:, 0] - row) - (uu[:, 0] - col) * (vv[:, 2] - row)) / area2[ti]
        w2 = 1.0 - w0 - w1
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        inv_z = w0 / z[ti, 0] + w1 / z[ti, 1] + w2 / z[ti, 2]
        zz = 1.0 / inv_z[inside]
        flat = (row * width + col)[inside]
        fid = ids[ti[inside]]
        # z-buffer: sort by depth, the first occurrence of each pixel is the nearest.
        order = np.lexsort((zz, flat))
        flat, zz, fid = flat[order], zz[order], fid[order]
        first = np.ones(len(flat), bool)
        first[1:] = flat[1:] != flat[:-1]
        flat, zz, fid = flat[first], zz[first], fid[first]
        nearer = zz < best[flat]
        best[flat[nearer]] = zz[nearer]
        best_face[flat[nearer]] = fid[nearer]
        start = stop
    hit = np.isfinite(best)
    depth.reshape(-1)[hit] = best[hit]
    face_id.reshape(-1)[:] = best_face
    return depth, face_id


def render_scene(objects: Sequence[tuple], K, height: int, width: int,
                 near: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Render several meshes into one depth frame.

    objects: sequence of (vertices [V, 3], faces [F, 3], R [3, 3], t (3,)) with X_cam = R·X_obj + t.
    Returns (depth [H, W] float64 metres, 0 = empty; instance [H, W] int64, the index into `objects` of the
    visible object, -1 = empty).
    """
    K = _as_matrix("K", K, (3, 3))
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if not near > 0:
        raise ValueError(f"near must be > 0, got {near}")
    verts, faces, owner = [], [], []
    offset = 0
    for i, obj in enumerate(objects):
        if len(obj) != 4:
            raise ValueError(f"objects[{i}] must be (vertices, faces, R, t)")
        v, f = _check_mesh(f"objects[{i}]", obj[0], obj[1])
        R = _as_matrix(f"objects[{i}] R", obj[2], (3, 3))
        t = _as_matrix(f"objects[{i}] t", np.reshape(obj[3], -1), (3,))
        verts.append(v @ R.T + t)
        faces.append(f + offset)
        owner.append(np.full(len(f), i, np.int64))
        offset += len(v)
    if not verts:
        return np.zeros((height, width)), np.full((height, width), -1, np.int64)
    depth, face_id = _rasterize(np.concatenate(verts), np.concatenate(faces), K, int(height), int(width), near)
    owner_all = np.concatenate(owner)
    instance = np.where(face_id >= 0, owner_all[np.maximum(face_id, 0)], -1)
    return depth, instance


def render_depth(vertices, faces, K, R, t, height: int, width: int, near: float = 0.01) -> np.ndarray:
    """Depth image [H, W] (float64 metres, 0 = empty) of one mesh at pose (R, t), X_cam = R·X_obj + t."""
    depth, _ = render_scene([(vertices, faces, R, t)], K, height, width, near)
    return depth
