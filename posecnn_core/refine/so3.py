"""Batched rotation helpers of the refinement (torch): skew matrices, exponential map, angles, capping, and evenly
spread samples of SO(3)."""
from __future__ import annotations

import math

import torch

from ..geometry import mat_to_quat, quat_to_mat


_LEVI_CIVITA = torch.zeros(3, 3, 3, dtype=torch.float64)
for _i, _j, _k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
    _LEVI_CIVITA[_i, _j, _k], _LEVI_CIVITA[_j, _i, _k] = 1.0, -1.0


def _skew(w: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices [..., 3, 3] of vectors [..., 3]: [w]x_ij = -eps_ijk w_k (one product and one sum;
    each entry has a single non-zero term, so the values are exactly +-w_k or 0)."""
    eps = _LEVI_CIVITA.to(device=w.device, dtype=w.dtype)
    return -(w[..., None, None, :] * eps).sum(-1)


def _so3_exp(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] from axis-angle vectors [..., 3] (Rodrigues)."""
    theta = w.norm(dim=-1, keepdim=True).unsqueeze(-1)
    small = theta < 1e-8
    safe = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1 - theta ** 2 / 6, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - theta ** 2 / 24, (1 - torch.cos(safe)) / safe ** 2)
    S = _skew(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(S)
    return eye + a * S + b * (S @ S)


def _rotation_angle(R: torch.Tensor) -> torch.Tensor:
    """Angle (radians) of rotation matrices [..., 3, 3], stable near 0 and pi."""
    cos = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    sin = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]],
                      -1).norm(dim=-1) / 2
    return torch.atan2(sin, cos)


def _cap_rotation(R: torch.Tensor, R0: torch.Tensor, max_angle: torch.Tensor) -> torch.Tensor:
    """Shrink the rotation R·R0ᵀ to at most max_angle (radians, per batch element) about the same axis."""
    capped = torch.isfinite(max_angle)
    if not bool(capped.any()):  # nothing capped (no symmetric object in the batch)
        return R
    if not bool(capped.all()):  # only the capped elements need the work
        rows = torch.nonzero(capped).squeeze(1)
        out = R.clone()
        out[rows] = _cap_rotation(R[rows], R0[rows], max_angle[rows])
        return out
    # Quick test first (two ops): cos(angle) = (trace(R·R0ᵀ) − 1)/2, with trace(R·R0ᵀ) = Σ R∘R0. Only when some
    # element may be over its cap (1e-6 of slack covers rounding) does the exact test below run.
    cos_angle = ((R * R0).sum((-2, -1)) - 1) / 2
    if not bool((cos_angle < torch.cos(max_angle) + 1e-6).any()):
        return R
    q = mat_to_quat(R @ R0.transpose(-1, -2))
    angle = 2 * torch.atan2(q[..., 1:].norm(dim=-1), q[..., 0])
    over = angle > max_angle
    if not bool(over.any()):
        return R
    half = torch.where(over, max_angle, angle) / 2
    axis = q[..., 1:] / q[..., 1:].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    q_cap = torch.cat([torch.cos(half)[..., None], torch.sin(half)[..., None] * axis], -1)
    return torch.where(over[..., None, None], quat_to_mat(q_cap) @ R0, R)


def _so3_samples(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """n rotations [n, 3, 3] spread evenly over SO(3), deterministic: the super-Fibonacci spiral on the unit
    quaternions (Alexa, CVPR 2022)."""
    s = torch.arange(n, dtype=torch.float64) + 0.5
    r, r2 = torch.sqrt(s / n), torch.sqrt(1 - s / n)
    a = 2 * math.pi * s / math.sqrt(2.0)
    b = 2 * math.pi * s / 1.533751168755204288118041  # the real root > 1 of x^4 = x + 4
    q = torch.stack([r * torch.sin(a), r * torch.cos(a), r2 * torch.sin(b), r2 * torch.cos(b)], -1)
    return quat_to_mat(q).to(device=device, dtype=dtype)
