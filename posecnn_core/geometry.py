"""Rotations, allocentric/egocentric conversion and pinhole projection.

Every function is torch-first and batched over leading dimensions; numpy arrays are accepted too and the
result is then a numpy array of the same floating dtype (integer input becomes float64). Quaternions are
(w, x, y, z); rotation matrices act on column vectors (X_cam = R·X_obj + t), see docs/conventions.md.
"""
from __future__ import annotations

from typing import Callable, Union

import numpy as np
import torch

Array = Union[torch.Tensor, np.ndarray]

ALLOCENTRIC_CONVENTIONS = ("pt", "ray")


# --------------------------------------------------------------------------------------------------
# numpy <-> torch plumbing
# --------------------------------------------------------------------------------------------------

def _to_tensor(x: Array, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """Return `x` as a floating torch tensor (numpy arrays are wrapped, not copied where possible)."""
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, (list, tuple, float, int)):
        t = torch.as_tensor(x, dtype=torch.float64)
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if not t.is_floating_point():
        t = t.to(torch.float64 if like is None else like.dtype)
    if like is not None:
        t = t.to(device=like.device, dtype=like.dtype)
    return t


def _returns_numpy(*xs: object) -> bool:
    """True when the first array-like argument is a numpy array (the result then is numpy too)."""
    return isinstance(xs[0], np.ndarray)


def _out(t: torch.Tensor, as_numpy: bool) -> Array:
    return t.detach().cpu().numpy() if as_numpy else t


def _check_last(t: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if t.dim() < len(shape) or tuple(t.shape[t.dim() - len(shape):]) != shape:
        want = "[..., " + ", ".join(str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")


# --------------------------------------------------------------------------------------------------
# quaternions and rotation matrices
# --------------------------------------------------------------------------------------------------

def _quat_to_mat(q: torch.Tensor) -> torch.Tensor:
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    rows = (
        1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
        2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
        2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
    )
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))


def quat_to_mat(q: Array) -> Array:
    """Unit rotation matrix `[..., 3, 3]` of quaternions `q` `[..., 4]` (w, x, y, z); `q` is normalised first."""
    qt = _to_tensor(q, "q")
    _check_last(qt, (4,), "q")
    return _out(_quat_to_mat(qt), _returns_numpy(q))


def _canonical_sign(q: torch.Tensor) -> torch.Tensor:
    """Flip quaternions with w < 0 so that w >= 0 (same rotation)."""
    return torch.where(q[..., :1] < 0, -q, q)


def _mat_to_quat(R: torch.Tensor) -> torch.Tensor:
    r00, r01, r02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    r10, r11, r12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    r20, r21, r22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    # 4w², 4x², 4y², 4z² (up to the shared +1); the largest gives the best-conditioned branch.
    t = torch.stack((1 + r00 + r11 + r22, 1 + r00 - r11 - r22,
                     1 - r00 + r11 - r22, 1 - r00 - r11 + r22), dim=-1)
    cand = torch.stack((
        torch.stack((t[..., 0], r21 - r12, r02 - r20, r10 - r01), dim=-1),
        torch.stack((r21 - r12, t[..., 1], r01 + r10, r02 + r20), dim=-1),
        torch.stack((r02 - r20, r01 + r10, t[..., 2], r12 + r21), dim=-1),
        torch.stack((r10 - r01, r02 + r20, r12 + r21, t[..., 3]), dim=-1),
    ), dim=-2)  # [..., 4 branches, 4]
    cand = cand / (2 * t.clamp_min(1e-12).sqrt()).unsqueeze(-1)
    best = t.argmax(dim=-1, keepdim=True)
    q = torch.gather(cand, -2, best.unsqueeze(-1).expand(best.shape + (4,))).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return _canonical_sign(q)


def mat_to_quat(R: Array) -> Array:
    """Unit quaternion `[..., 4]` (w, x, y, z) with w >= 0 of rotation matrices `R` `[..., 3, 3]`.

    Uses the branch (w, x, y or z) with the largest magnitude, so it stays accurate near 180° rotations.
    """
    Rt = _to_tensor(R, "R")
    _check_last(Rt, (3, 3), "R")
    return _out(_mat_to_quat(Rt), _returns_numpy(R))


def _quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack((
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ), dim=-1)


def quat_multiply(a: Array, b: Array) -> Array:
    """Hamilton product a ⊗ b `[..., 4]` (broadcast); R(a ⊗ b) = R(a)·R(b). No normalisation."""
    at = _to_tensor(a, "a")
    bt = _to_tensor(b, "b", like=at)
    _check_last(at, (4,), "a")
    _check_last(bt, (4,), "b")
    return _out(_quat_multiply(at, bt), _returns_numpy(a))


def quat_conjugate(q: Array) -> Array:
    """Conjugate (w, -x, -y, -z): the inverse rotation of a unit quaternion."""
    qt = _to_tensor(q, "q")
    _check_last(qt, (4,), "q")
    return _out(qt * qt.new_tensor([1.0, -1.0, -1.0, -1.0]), _returns_numpy(q))


def rotation_angle_deg(R1: Array, R2: Array) -> Array:
    """Geodesic angle in degrees `[...]` between rotation matrices `R1` and `R2` `[..., 3, 3]` (broadcast).

    Computed as atan2(|sin|, cos) of the relative rotation R1ᵀ·R2, accurate for small and large angles.
    """
    a = _to_tensor(R1, "R1")
    b = _to_tensor(R2, "R2", like=a)
    _check_last(a, (3, 3), "R1")
    _check_last(b, (3, 3), "R2")
    rel = a.transpose(-1, -2) @ b
    cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    axis = torch.stack((rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0],
                        rel[..., 1, 0] - rel[..., 0, 1]), dim=-1)
    sin = axis.norm(dim=-1) / 2
    return _out(torch.rad2deg(torch.atan2(sin, cos)), _returns_numpy(R1))


# --------------------------------------------------------------------------------------------------
# allocentric <-> egocentric
# --------------------------------------------------------------------------------------------------

def _axis_quat(angle: torch.Tensor, axis: int) -> torch.Tensor:
    """Quaternion of a rotation by `angle` about coordinate axis 0 (x), 1 (y) or 2 (z)."""
    half = angle / 2
    zero = torch.zeros_like(half)
    parts = [half.cos(), zero, zero, zero]
    parts[1 + axis] = half.sin()
    return torch.stack(parts, dim=-1)


def _viewing_quat(t: torch.Tensor, convention: str) -> torch.Tensor:
    """Quaternion q_c of the rotation that relates allocentric and egocentric rotation at translation t."""
    tx, ty, tz = t.unbind(-1)
    if convention == "pt":
        # PoseCNN-PyTorch: euler (-atan2(Ty, -Tz), -atan2(Tx, -Tz), 0) with static x-y-z axes,
        # i.e. R_c = Ry(-atan2(Tx, -Tz)) · Rx(-atan2(Ty, -Tz)).
        ax = -torch.atan2(ty, -tz)
        ay = -torch.atan2(tx, -tz)
        return _quat_multiply(_axis_quat(ay, 1), _axis_quat(ax, 0))
    if convention == "ray":
        # Shortest rotation taking the optical axis (0, 0, 1) onto the direction of t:
        # q ∝ (1 + ẑ·t̂, ẑ × t̂) = (1 + t̂z, -t̂y, t̂x, 0); identity for t on the optical axis.
        n = t.norm(dim=-1).clamp_min(1e-12)
        q = torch.stack((1 + tz / n, -ty / n, tx / n, torch.zeros_like(tx)), dim=-1)
        qn = q.norm(dim=-1, keepdim=True)
        # t = 0 gives (1, 0, 0, 0); t pointing straight backwards has no unique shortest rotation: 180° about x.
        flip = q.new_tensor([0.0, 1.0, 0.0, 0.0]).expand_as(q)
        return torch.where(qn < 1e-9, flip, q / qn.clamp_min(1e-12))
    raise ValueError(f"convention must be one of {ALLOCENTRIC_CONVENTIONS}, got {convention!r}")


def _allo_ego(q: Array, t: Array, name: str, compose: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              convention: str) -> Array:
    qt = _to_tensor(q, name)
    tt = _to_tensor(t, "t", like=qt)
    _check_last(qt, (4,), name)
    _check_last(tt, (3,), "t")
    qc = _viewing_quat(tt, convention)
    qn = qt / qt.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return _out(_canonical_sign(compose(qc, qn)), _returns_numpy(q))


def allo_to_ego(q_allo: Array, t: Array, convention: str = "pt") -> Array:
    """Egocentric quaternion `[..., 4]` (w >= 0) of allocentric quaternions `q_allo` at translations `t` `[..., 3]`.

    q_ego = q_c ⊗ q_allo, where q_c turns the camera's optical axis toward the object. With
    convention "pt" (default, PoseCNN-PyTorch; what its checkpoints regress) R_c = Ry(-atan2(tx, -tz)) ·
    Rx(-atan2(ty, -tz)); note that this is a 180° rotation about z (not the identity) for t on the
    optical axis, because atan2(0, -tz) = π. Convention "ray" uses the shortest rotation from (0, 0, 1) to
    t/|t| instead (identity on the optical axis). `q_allo` is normalised first.
    """
    return _allo_ego(q_allo, t, "q_allo", _quat_multiply, convention)


def ego_to_allo(q_ego: Array, t: Array, convention: str = "pt") -> Array:
    """Allocentric quaternion `[..., 4]` of egocentric `q_ego` at `t`: q_c⁻¹ ⊗ q_ego, sign-fixed to w >= 0.

    Inverse of `allo_to_ego`; the w >= 0 sign fix is PoseCNN-PyTorch's training-target convention.
    """
    def compose(qc: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return _quat_multiply(qc * qc.new_tensor([1.0, -1.0, -1.0, -1.0]), q)

    return _allo_ego(q_ego, t, "q_ego", compose, convention)


# --------------------------------------------------------------------------------------------------
# points and cameras
# --------------------------------------------------------------------------------------------------

def _intrinsics(k: torch.Tensor, extra_dims: int) -> tuple[torch.Tensor, ...]:
    """(fx, skew, px, fy, py) of K `[..., 3, 3]`, each with `extra_dims` trailing singleton dims for broadcasting."""
    def entry(r: int, c: int) -> torch.Tensor:
        e = k[..., r, c]
        return e.reshape(e.shape + (1,) * extra_dims)
    return entry(0, 0), entry(0, 1), entry(0, 2), entry(1, 1), entry(1, 2)


def _project(p: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    fx, s, px, fy, py = _intrinsics(k, 1)
    x, y, z = p.unbind(-1)
    return torch.stack(((fx * x + s * y) / z + px, fy * y / z + py), dim=-1)


def project_uv(points: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v) `[...]` of camera-frame points `[..., 3]` through one `K` `[3, 3]`: project_points's arithmetic
    for tensors already checked (no conversion or validation; for inner loops such as the depth refinement's)."""
    (fx, s, px), (_, fy, py) = K[:2].tolist()  # Python numbers act in the points' dtype, like K's float32
    x, y, z = points.unbind(-1)
    return (fx * x + s * y) / z + px, fy * y / z + py


def project_points(points: Array, K: Array) -> Array:
    """Pixel coordinates (u, v) `[..., N, 2]` of camera-frame `points` `[..., N, 3]`.

    `K` is `[3, 3]` or `[..., 3, 3]` with leading dims broadcastable against those of `points`; its last row is
    taken to be (0, 0, 1). u = (K00·X + K01·Y)/Z + K02, v = K11·Y/Z + K12 (with K01 = 0 exactly the
    fx·X/Z + px of docs/conventions.md); points with Z = 0 give inf/nan.
    """
    p = _to_tensor(points, "points")
    k = _to_tensor(K, "K", like=p)
    _check_last(p, (3,), "points")
    _check_last(k, (3, 3), "K")
    if p.dim() < 2:
        raise ValueError(f"points must have shape [..., N, 3], got {tuple(p.shape)}")
    return _out(_project(p, k), _returns_numpy(points))


def transform_points(points: Array, R: Array, t: Array) -> Array:
    """R·x + t for `points` `[..., N, 3]`, `R` `[..., 3, 3]`, `t` `[..., 3]` (leading dims broadcast)."""
    p = _to_tensor(points, "points")
    r = _to_tensor(R, "R", like=p)
    tt = _to_tensor(t, "t", like=p)
    _check_last(p, (3,), "points")
    _check_last(r, (3, 3), "R")
    _check_last(tt, (3,), "t")
    if p.dim() < 2:
        raise ValueError(f"points must have shape [..., N, 3], got {tuple(p.shape)}")
    return _out(p @ r.transpose(-1, -2) + tt.unsqueeze(-2), _returns_numpy(points))


def _backproject(u: torch.Tensor, v: torch.Tensor, z: torch.Tensor, fx: torch.Tensor, s: torch.Tensor,
                 px: torch.Tensor, fy: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    yn = (v - py) / fy
    xn = (u - px - s * yn) / fx
    return torch.stack(torch.broadcast_tensors(xn * z, yn * z, z), dim=-1)


def backproject_pixels(u: Array, v: Array, z: Array, K: Array) -> Array:
    """Camera-frame points `[..., N, 3]` of pixel coordinates `u`, `v` (column, row) with depths `z` `[..., N]`.

    The inverse of `project_points`: X = (u - px - K01·y)·Z/fx with y = (v - py)/fy, Y = y·Z. `K` is `[3, 3]`
    or `[..., 3, 3]` matching the leading dims of `u`; `u` and `v` may be integer pixel indices.
    """
    zt = _to_tensor(z, "z")
    ut = _to_tensor(u, "u", like=zt)
    vt = _to_tensor(v, "v", like=zt)
    k = _to_tensor(K, "K", like=zt)
    _check_last(k, (3, 3), "K")
    if zt.dim() < 1:
        raise ValueError(f"z must have shape [..., N], got {tuple(zt.shape)}")
    return _out(_backproject(ut, vt, zt, *_intrinsics(k, 1)), _returns_numpy(z))


def backproject(depth: Array, K: Array) -> Array:
    """Camera-frame points `[..., H, W, 3]` of a metric `depth` map `[..., H, W]`; depth 0 gives (0, 0, 0).

    Pixel (row r, column c) is at (u, v) = (c, r); see `backproject_pixels`. `K` is `[3, 3]` or `[..., 3, 3]`
    matching the depth's leading dims.
    """
    d = _to_tensor(depth, "depth")
    k = _to_tensor(K, "K", like=d)
    _check_last(k, (3, 3), "K")
    if d.dim() < 2:
        raise ValueError(f"depth must have shape [..., H, W], got {tuple(d.shape)}")
    H, W = d.shape[-2:]
    v, u = torch.meshgrid(torch.arange(H, dtype=d.dtype, device=d.device),
                          torch.arange(W, dtype=d.dtype, device=d.device), indexing="ij")
    return _out(_backproject(u, v, d, *_intrinsics(k, 2)), _returns_numpy(depth))


def box_extents(points: Array) -> Array:
    """Object extents `[..., 3]` = 2·max|coord| per axis of model `points` `[..., N, 3]` (zeros when N = 0)."""
    p = _to_tensor(points, "points")
    _check_last(p, (3,), "points")
    if p.dim() < 2:
        raise ValueError(f"points must have shape [..., N, 3], got {tuple(p.shape)}")
    if p.shape[-2] == 0:
        ext = p.new_zeros(p.shape[:-2] + (3,))
    else:
        ext = 2 * p.abs().amax(dim=-2)
    return _out(ext, _returns_numpy(points))


__all__ = [
    "ALLOCENTRIC_CONVENTIONS", "quat_to_mat", "mat_to_quat", "quat_multiply", "quat_conjugate",
    "rotation_angle_deg", "allo_to_ego", "ego_to_allo", "project_points", "project_uv", "transform_points",
    "backproject", "backproject_pixels", "box_extents",
]
