"""Finite appearance symmetries of objects: the rotations S (object frame) for which R·S looks exactly like R.

An object set may declare, per class, a cyclic group ``symmetry: {axis: [x, y, z], order: n}``: the n rotations
by 2πk/n about the axis through the model's origin (docs/object_sets.md). A box printed alike on its front and
back is the usual case (order 2 about its long axis). Such a pose has n correct answers, so:

- its rotation error is the angle to the nearest of them (``rotation_error_up_to_deg``);
- a training option (``rotation_targets: nearest_symmetric``) points the rotation loss at the one nearest the
  prediction (``nearest_symmetric_targets``) instead of the shape-match loss PoseCNN-PyTorch uses.

The identity is always element 0 of a group; a class without a declared symmetry has the group {I}.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .geometry import mat_to_quat, quat_multiply

__all__ = ["cyclic_group", "group_quaternions", "nearest_symmetric_targets", "rotation_error_up_to_deg"]


def cyclic_group(axis: Sequence[float], order: int) -> np.ndarray:
    """The ``order`` rotations about ``axis`` by 2πk/order, k = 0..order-1, as float64 [order, 3, 3]."""
    a = np.asarray(axis, dtype=np.float64).reshape(-1)
    if a.shape != (3,) or not np.all(np.isfinite(a)) or np.linalg.norm(a) == 0:
        raise ValueError(f"axis must be 3 finite numbers, not all zero, got {list(np.ravel(axis))}")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")
    a = a / np.linalg.norm(a)
    K = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    out = np.empty((int(order), 3, 3))
    for k in range(int(order)):
        th = 2.0 * math.pi * k / order
        out[k] = np.eye(3) + math.sin(th) * K + (1.0 - math.cos(th)) * (K @ K)  # Rodrigues
    out[0] = np.eye(3)
    return out


def group_quaternions(groups: Sequence[np.ndarray], device: torch.device | str | None = None) -> Tensor:
    """Per-class groups ([K_c, 3, 3] each) as unit quaternions (w, x, y, z) float32 [C, K, 4], K = max K_c;
    shorter groups are padded with the identity (which changes no minimum)."""
    K = max(len(g) for g in groups)
    out = np.zeros((len(groups), K, 4), np.float32)
    out[..., 0] = 1.0
    for c, g in enumerate(groups):
        for k, S in enumerate(np.asarray(g, dtype=np.float64)):
            out[c, k] = mat_to_quat(S)
    return torch.from_numpy(out).to(device)


@torch.no_grad()
def nearest_symmetric_targets(q_pred: Tensor, q_gt: Tensor, group: Tensor) -> Tensor:
    """For each row, the target q_gt·s_k (the pose R_gt·S_k) nearest to the prediction in rotation angle.

    q_pred: [R, 4] raw predictions (normalised here); q_gt: [R, 4] unit targets; group: [R, K, 4] the symmetry
    quaternions of each row's class (identity first). Allocentric targets work as egocentric ones: the
    allocentric correction multiplies from the left, a symmetry from the right. Ties go to the lowest k, so a
    class without symmetry (K rows of the identity) keeps its target. No gradient flows through the choice."""
    if q_pred.shape != q_gt.shape or q_pred.dim() != 2 or q_pred.shape[1] != 4:
        raise ValueError(f"q_pred and q_gt must both have shape [R, 4], got {tuple(q_pred.shape)} and "
                         f"{tuple(q_gt.shape)}")
    if group.dim() != 3 or group.shape[0] != q_gt.shape[0] or group.shape[2] != 4:
        raise ValueError(f"group must have shape [{q_gt.shape[0]}, K, 4], got {tuple(group.shape)}")
    cand = quat_multiply(q_gt[:, None, :].to(group.dtype), group)  # [R, K, 4]
    p = torch.nn.functional.normalize(q_pred.detach().to(group.dtype), dim=1)
    closeness = (cand * p[:, None, :]).sum(-1).abs()  # |cos(angle / 2)|
    best = closeness.argmax(dim=1)
    return cand[torch.arange(cand.shape[0], device=cand.device), best].to(q_gt.dtype)


def rotation_error_up_to_deg(R_est: np.ndarray, R_gt: np.ndarray, group: np.ndarray) -> float:
    """The geodesic angle (degrees) between R_est and the nearest of R_gt·S, S in ``group`` [K, 3, 3]."""
    R_est = np.asarray(R_est, dtype=np.float64)
    R_gt = np.asarray(R_gt, dtype=np.float64)
    best = -1.0
    for S in np.asarray(group, dtype=np.float64):
        c = (np.trace((R_gt @ S).T @ R_est) - 1.0) / 2.0
        best = max(best, float(np.clip(c, -1.0, 1.0)))
    return math.degrees(math.acos(best))
