"""PoseCNN training losses: semantic labels, center/vertex regression, RoI boxes and rotations.

All inputs are torch tensors; every loss returns a scalar that is differentiable with respect to the
network outputs (also when it is zero because nothing contributes).

Every loss is a normalised sum (hard pixels, weights, hard RoIs). The ``*_sum`` variants return it as a
:class:`LossSum` (the sum and its normaliser, the count), so that data-parallel training can divide each
process's sum by the count of the whole global batch (``LossSum.mean(global_count)``); ``loss(...)`` is
``loss_sum(...).mean()`` with the same floating-point operations.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .geometry import quat_to_mat

_EPS = 1e-10


@dataclass(frozen=True)
class LossSum:
    """A loss as ``total / (count + eps)``: ``total`` the differentiable sum, ``count`` its (detached) normaliser.

    ``eps`` > 0: the loss's own guard against an empty selection (PT's); ``eps`` = 0: the count is a number of
    items, and no item at all gives 0 (``total`` is then a differentiable zero)."""

    total: torch.Tensor
    count: torch.Tensor
    eps: float = _EPS

    def mean(self, count: torch.Tensor | None = None) -> torch.Tensor:
        """``total`` normalised by ``count`` (default: its own count; data-parallel: the global batch's)."""
        c = self.count if count is None else count.to(device=self.total.device, dtype=self.total.dtype)
        if self.eps > 0:
            return self.total / (c + self.eps)
        return self.total / c.clamp(min=1)


def _count(value: float | int | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device).detach()


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _smooth_l1(x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Element-wise smooth-L1 (Huber with transition at `beta`) of residuals `x`."""
    ax = x.abs()
    return torch.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def semantic_loss(scores: torch.Tensor, labels: torch.Tensor, hard_threshold: float = 0.9) -> torch.Tensor:
    """Cross-entropy over hard pixels, the mean of -log softmax(scores)[gt] over those pixels (see
    :func:`semantic_loss_sum`)."""
    return semantic_loss_sum(scores, labels, hard_threshold).mean()


def semantic_loss_sum(scores: torch.Tensor, labels: torch.Tensor, hard_threshold: float = 0.9) -> LossSum:
    """Cross-entropy over hard pixels as (Σ over hard pixels of -log softmax(scores)[gt], number of hard pixels).

    scores: `[B, C, H, W]` unnormalised class scores; labels: int `[B, H, W]` in [0, C).
    A pixel is hard when its predicted probability of the ground-truth class is below
    `hard_threshold` (PoseCNN-PyTorch: 0.9); the selection itself carries no gradient. No hard pixel → 0.
    """
    _require(scores.dim() == 4, f"scores must have shape [B, C, H, W], got {tuple(scores.shape)}")
    B, C, H, W = scores.shape
    _require(tuple(labels.shape) == (B, H, W), f"labels must have shape {(B, H, W)}, got {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= C):
        raise ValueError(f"labels must lie in [0, {C}), got range [{int(labels.min())}, {int(labels.max())}]")
    logp = F.log_softmax(scores, dim=1)
    logp_gt = logp.gather(1, labels.unsqueeze(1)).squeeze(1)
    hard = (logp_gt.detach().exp() < hard_threshold).to(logp.dtype)
    return LossSum(-(logp_gt * hard).sum(), hard.sum().detach())


def vertex_loss(vertex_pred: torch.Tensor, vertex_target: torch.Tensor,
                vertex_weights: torch.Tensor) -> torch.Tensor:
    """Σ smoothL1(w ⊙ (pred − target)) / (Σ w + eps), smooth-L1 with beta 1 (PoseCNN-PyTorch); see
    :func:`vertex_loss_sum`."""
    return vertex_loss_sum(vertex_pred, vertex_target, vertex_weights).mean()


def vertex_loss_sum(vertex_pred: torch.Tensor, vertex_target: torch.Tensor,
                    vertex_weights: torch.Tensor) -> LossSum:
    """(Σ smoothL1(w ⊙ (pred − target)), Σ w), smooth-L1 with beta 1 (PoseCNN-PyTorch).

    vertex_pred, vertex_target: `[B, 3C, H, W]`; vertex_weights broadcastable to them (PT: 10 on the three
    channels of a pixel's class, 0 elsewhere). Σ w counts the weights broadcast to the full shape.
    """
    _require(vertex_pred.dim() == 4, f"vertex_pred must have shape [B, 3C, H, W], got {tuple(vertex_pred.shape)}")
    _require(vertex_pred.shape[1] % 3 == 0,
             f"vertex_pred must have a multiple of 3 channels, got {vertex_pred.shape[1]}")
    _require(vertex_target.shape == vertex_pred.shape,
             f"vertex_target must have shape {tuple(vertex_pred.shape)}, got {tuple(vertex_target.shape)}")
    try:
        w = torch.broadcast_to(vertex_weights, vertex_pred.shape).to(vertex_pred.dtype)
    except RuntimeError as exc:
        raise ValueError(f"vertex_weights of shape {tuple(vertex_weights.shape)} does not broadcast to "
                         f"{tuple(vertex_pred.shape)}") from exc
    return LossSum(_smooth_l1(w * (vertex_pred - vertex_target)).sum(), w.sum().detach())


def box_loss(class_scores: torch.Tensor, box_deltas: torch.Tensor, gt_classes: torch.Tensor,
             gt_deltas: torch.Tensor, weights: torch.Tensor | None = None,
             hard_threshold: float | None = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """RoI classification and box-regression losses → (cross-entropy, smooth-L1); see :func:`box_loss_sums`."""
    ce, l1 = box_loss_sums(class_scores, box_deltas, gt_classes, gt_deltas, weights, hard_threshold)
    return ce.mean(), l1.mean()


def box_loss_sums(class_scores: torch.Tensor, box_deltas: torch.Tensor, gt_classes: torch.Tensor,
                  gt_deltas: torch.Tensor, weights: torch.Tensor | None = None,
                  hard_threshold: float | None = 0.9) -> tuple[LossSum, LossSum]:
    """RoI classification and box-regression losses as sums → (cross-entropy, smooth-L1).

    class_scores: `[R, C]` unnormalised; box_deltas: `[R, 4C]` (class c at columns 4c..4c+3);
    gt_classes: int `[R]` (0 = background); gt_deltas: `[R, 4]` normalised regression targets;
    weights: `[R]` or `[R, 4]` on the gt class's deltas, default 1 for foreground and 0 for background RoIs.
    ce = Σ over hard RoIs of −log softmax(scores)[gt] / (number of hard RoIs + eps), a RoI being hard when
    its probability of its gt class (background included) is below `hard_threshold` (PoseCNN-PyTorch's
    hard_label layer with its sampling off; the selection carries no gradient); `hard_threshold` None = the
    plain mean over all RoIs. smooth_l1 = Σ smoothL1(w ⊙ (Δ_gt − target)) / (Σ w + eps) with w broadcast to
    `[R, 4]` (PoseCNN-PyTorch). R = 0 → both 0.
    """
    _require(class_scores.dim() == 2, f"class_scores must have shape [R, C], got {tuple(class_scores.shape)}")
    R, C = class_scores.shape
    _require(tuple(box_deltas.shape) == (R, 4 * C),
             f"box_deltas must have shape {(R, 4 * C)}, got {tuple(box_deltas.shape)}")
    _require(tuple(gt_classes.shape) == (R,), f"gt_classes must have shape {(R,)}, got {tuple(gt_classes.shape)}")
    _require(tuple(gt_deltas.shape) == (R, 4), f"gt_deltas must have shape {(R, 4)}, got {tuple(gt_deltas.shape)}")
    _require(hard_threshold is None or (isinstance(hard_threshold, (int, float))
                                        and not isinstance(hard_threshold, bool) and 0 <= hard_threshold <= 1),
             f"hard_threshold must be a probability in [0, 1] or None, got {hard_threshold!r}")
    if gt_classes.is_floating_point():
        raise TypeError(f"gt_classes must be an integer tensor, got {gt_classes.dtype}")
    gt = gt_classes.long()
    if R and (int(gt.min()) < 0 or int(gt.max()) >= C):
        raise ValueError(f"gt_classes must lie in [0, {C}), got range [{int(gt.min())}, {int(gt.max())}]")
    if weights is None:
        w = (gt > 0).to(box_deltas.dtype).unsqueeze(1).expand(R, 4)
    else:
        _require(tuple(weights.shape) in ((R,), (R, 4)),
                 f"weights must have shape {(R,)} or {(R, 4)}, got {tuple(weights.shape)}")
        w = (weights.unsqueeze(1) if weights.dim() == 1 else weights).to(box_deltas.dtype).expand(R, 4)
    if R == 0:
        zero = class_scores.sum() * 0 + box_deltas.sum() * 0
        return LossSum(zero, _count(0, zero), eps=0.0), LossSum(zero.clone(), _count(0, zero), eps=0.0)
    logp_gt = F.log_softmax(class_scores, dim=1).gather(1, gt.unsqueeze(1)).squeeze(1)
    if hard_threshold is None:
        ce = LossSum(-logp_gt.sum(), _count(R, logp_gt), eps=0.0)
    else:
        hard = (logp_gt.detach().exp() < hard_threshold).to(logp_gt.dtype)
        ce = LossSum(-(logp_gt * hard).sum(), hard.sum().detach())
    idx = (4 * gt).unsqueeze(1) + torch.arange(4, device=gt.device)
    pred = box_deltas.gather(1, idx)
    l1 = LossSum(_smooth_l1(w * (pred - gt_deltas.to(pred.dtype))).sum(), w.sum().detach())
    return ce, l1


def _nearest_indices(a: torch.Tensor, b: torch.Tensor, valid_b: torch.Tensor, chunk: int) -> torch.Tensor:
    """For each point of a `[R, N, 3]` the index of its nearest valid point of b `[R, N, 3]` (no grad).

    Each step holds at most `chunk`·N distances: `chunk` query points of one RoI, or whole RoIs batched
    together when N <= chunk.
    """
    R, N, _ = a.shape
    out = torch.empty(R, N, dtype=torch.long, device=a.device)
    b_sq = (b * b).sum(-1)  # [R, N]
    b_sq = torch.where(valid_b, b_sq, torch.full_like(b_sq, float("inf")))
    step = min(chunk, N)
    rois_per_step = max(1, chunk // N)
    for r in range(0, R, rois_per_step):
        rs = slice(r, r + rois_per_step)
        for s in range(0, N, step):
            a_c = a[rs, s:s + step]  # [g, c, 3]
            # ‖a‖² is constant per query, so the argmin of ‖b‖² − 2 a·b is the nearest neighbour.
            d = b_sq[rs].unsqueeze(1) - 2 * a_c @ b[rs].transpose(1, 2)  # [g, c, N]
            out[rs, s:s + step] = d.argmin(dim=-1)
    return out


def _check_pose_inputs(q_pred: torch.Tensor, q_gt: torch.Tensor, points: torch.Tensor,
                       point_counts: torch.Tensor | None, symmetric: torch.Tensor, chunk: int) -> torch.Tensor:
    """Validate the common inputs of the rotation losses; returns the valid-point counts `[R]` (int64)."""
    _require(q_pred.dim() == 2 and q_pred.shape[1] == 4, f"q_pred must have shape [R, 4], got {tuple(q_pred.shape)}")
    R = q_pred.shape[0]
    _require(tuple(q_gt.shape) == (R, 4), f"q_gt must have shape {(R, 4)}, got {tuple(q_gt.shape)}")
    _require(points.dim() == 3 and points.shape[0] == R and points.shape[2] == 3,
             f"points must have shape [{R}, N, 3], got {tuple(points.shape)}")
    _require(tuple(symmetric.shape) == (R,), f"symmetric must have shape {(R,)}, got {tuple(symmetric.shape)}")
    _require(isinstance(chunk, int) and chunk > 0, f"chunk must be a positive int, got {chunk!r}")
    N = points.shape[1]
    if point_counts is None:
        return torch.full((R,), N, dtype=torch.long, device=points.device)
    _require(tuple(point_counts.shape) == (R,),
             f"point_counts must have shape {(R,)}, got {tuple(point_counts.shape)}")
    counts = point_counts.to(device=points.device, dtype=torch.long)
    if R and (int(counts.min()) < 1 or int(counts.max()) > N):
        raise ValueError(f"point_counts must lie in [1, {N}], got range [{int(counts.min())}, {int(counts.max())}]")
    return counts


def _rotated_pairs(q_pred: torch.Tensor, q_gt: torch.Tensor, pts: torch.Tensor, valid: torch.Tensor,
                   symmetric: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R(q̃)x, its target) per point, `[R, N, 3]` each: R(q)x, or for symmetric RoIs the point of R(q)·points
    nearest to R(q̃)x (searched without autograd; the loss on the matched pair has the min's value and gradient).
    Both quaternions are normalised by ``quat_to_mat``."""
    R, N, _ = pts.shape
    x_pred = pts @ quat_to_mat(q_pred).transpose(1, 2)
    x_gt = pts @ quat_to_mat(q_gt.to(pts.dtype)).transpose(1, 2)
    sym = symmetric.to(device=pts.device, dtype=torch.bool)
    match = torch.arange(N, device=pts.device).expand(R, N)
    if bool(sym.any()):
        with torch.no_grad():
            nn_idx = _nearest_indices(x_pred[sym], x_gt[sym], valid[sym], chunk)
        match = match.clone()
        match[sym] = nn_idx
    return x_pred, x_gt.gather(1, match.unsqueeze(-1).expand(R, N, 3))


def pose_loss(q_pred: torch.Tensor, q_gt: torch.Tensor, points: torch.Tensor,
              point_counts: torch.Tensor | None, symmetric: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Mean over RoIs of PoseLoss (non-symmetric) or ShapeMatch-Loss (symmetric); see :func:`pose_loss_sum`."""
    return pose_loss_sum(q_pred, q_gt, points, point_counts, symmetric, chunk).mean()


def pose_loss_sum(q_pred: torch.Tensor, q_gt: torch.Tensor, points: torch.Tensor,
                  point_counts: torch.Tensor | None, symmetric: torch.Tensor, chunk: int = 1024) -> LossSum:
    """(Σ over RoIs, number of RoIs) of PoseLoss (non-symmetric) or ShapeMatch-Loss (symmetric), in the points'
    units² (the paper).

    PLoss = 1/(2m) Σ_x ‖R(q̃)x − R(q)x‖²; SLoss = 1/(2m) Σ_{x1} min_{x2} ‖R(q̃)x1 − R(q)x2‖².
    q_pred, q_gt: `[R, 4]` (w, x, y, z), both normalised here; points: `[R, N, 3]` model points per RoI,
    the first `point_counts[r]` of row r valid (None = all N); symmetric: bool `[R]`.
    The nearest-neighbour search runs without autograd in steps of at most `chunk`·N distances, so its
    memory is O(chunk·N) beside the O(R·N) points; the loss is then evaluated on the matched pairs, which gives
    the same value and gradient as the min. R = 0 → 0.
    """
    counts = _check_pose_inputs(q_pred, q_gt, points, point_counts, symmetric, chunk)
    R, N = points.shape[:2]
    if R == 0 or N == 0:
        zero = q_pred.sum() * 0
        return LossSum(zero, _count(0, zero), eps=0.0)
    dtype = q_pred.dtype
    pts = points.to(dtype)
    valid = torch.arange(N, device=pts.device).unsqueeze(0) < counts.unsqueeze(1)  # [R, N]
    x_pred, target = _rotated_pairs(q_pred, q_gt, pts, valid, symmetric, chunk)
    sq = ((x_pred - target) ** 2).sum(-1) * valid.to(dtype)  # [R, N]
    per_roi = sq.sum(1) / (2 * counts.to(dtype))
    return LossSum(per_roi.sum(), _count(R, per_roi), eps=0.0)


def point_matching_weights(extents: torch.Tensor, symmetric: torch.Tensor) -> torch.Tensor:
    """PoseCNN-PyTorch's per-class scale of the model points in its point-matching loss, `[R]`:
    max(10, 10 / max(extent)), times 4 for symmetric classes (so an object spans about 10 units)."""
    _require(extents.dim() == 2 and extents.shape[1] == 3,
             f"extents must have shape [R, 3], got {tuple(extents.shape)}")
    _require(tuple(symmetric.shape) == (extents.shape[0],),
             f"symmetric must have shape {(extents.shape[0],)}, got {tuple(symmetric.shape)}")
    largest = extents.amax(dim=1)
    if extents.shape[0] and not bool(torch.isfinite(largest).all() and (largest > 0).all()):
        bad = torch.nonzero(~(torch.isfinite(largest) & (largest > 0))).flatten().tolist()
        raise ValueError(f"extents must be positive and finite; rows {bad} are not")
    w = torch.clamp(10.0 / largest, min=10.0)
    return torch.where(symmetric.to(device=w.device, dtype=torch.bool), 4.0 * w, w)


def rotation_angle_from_quats(q_a: torch.Tensor, q_b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees `[R]` between the rotations of quaternions `q_a`, `q_b` `[R, 4]` (normalised here):
    acos(2⟨q_a, q_b⟩² − 1), as PoseCNN-PyTorch measures it to pick hard RoIs. No gradient."""
    with torch.no_grad():
        a = F.normalize(q_a.detach(), dim=1)
        b = F.normalize(q_b.detach().to(a.dtype), dim=1)
        d = (a * b).sum(1)
        return torch.rad2deg(torch.acos((2 * d * d - 1).clamp(-1.0, 1.0)))


def point_matching_loss(q_pred: torch.Tensor, q_gt: torch.Tensor, points: torch.Tensor, extents: torch.Tensor,
                        symmetric: torch.Tensor, hard_angle: float = 5.0,
                        point_counts: torch.Tensor | None = None, chunk: int = 1024) -> torch.Tensor:
    """PoseCNN-PyTorch's point-matching rotation loss (the loss its checkpoints were trained with); see
    :func:`point_matching_loss_sum` for the rules."""
    return point_matching_loss_sum(q_pred, q_gt, points, extents, symmetric, hard_angle, point_counts, chunk).mean()


def point_matching_loss_sum(q_pred: torch.Tensor, q_gt: torch.Tensor, points: torch.Tensor, extents: torch.Tensor,
                            symmetric: torch.Tensor, hard_angle: float = 5.0,
                            point_counts: torch.Tensor | None = None, chunk: int = 1024) -> LossSum:
    """PoseCNN-PyTorch's point-matching rotation loss as (Σ over hard RoIs, number of hard RoIs).

    q_pred: `[R, 4]` raw (w, x, y, z) outputs, L2-normalised here (the gradient flows through the
    normalisation); q_gt: `[R, 4]` targets; points: `[R, N, 3]` model points in metres, the first
    `point_counts[r]` of row r valid (None = all N); extents: `[R, 3]` object extents in metres; symmetric:
    bool `[R]`. Rules:

    1. points are scaled by :func:`point_matching_weights` (max(10, 10 / max extent), ×4 if symmetric);
    2. per point, smooth-L1 (beta 1) of each coordinate of R(q̃)x − R(q)x', summed over x, y, z, averaged over
       the valid points; x' = x, or for symmetric RoIs the point of R(q)·points nearest to R(q̃)x;
    3. only hard RoIs count, those with acos(2⟨q̃, q⟩² − 1) > `hard_angle` degrees;
    4. loss = Σ over hard RoIs / number of hard RoIs, a differentiable 0 when there is none.
    """
    counts = _check_pose_inputs(q_pred, q_gt, points, point_counts, symmetric, chunk)
    R, N = points.shape[:2]
    _require(tuple(extents.shape) == (R, 3), f"extents must have shape {(R, 3)}, got {tuple(extents.shape)}")
    _require(isinstance(hard_angle, (int, float)) and not isinstance(hard_angle, bool) and hard_angle >= 0,
             f"hard_angle must be a number >= 0 (degrees), got {hard_angle!r}")
    zero = q_pred.sum() * 0
    if R == 0 or N == 0:
        return LossSum(zero, _count(0, zero), eps=0.0)
    dtype = q_pred.dtype
    hard = rotation_angle_from_quats(q_pred, q_gt) > hard_angle
    if not bool(hard.any()):
        return LossSum(zero, _count(0, zero), eps=0.0)
    scale = point_matching_weights(extents.to(device=points.device, dtype=dtype), symmetric)
    pts = points.to(dtype) * scale[:, None, None]
    valid = torch.arange(N, device=pts.device).unsqueeze(0) < counts.unsqueeze(1)  # [R, N]
    q_unit = F.normalize(q_pred, dim=1)
    h = torch.nonzero(hard).flatten()
    sym = symmetric.to(device=pts.device, dtype=torch.bool)
    x_pred, target = _rotated_pairs(q_unit[h], q_gt[h], pts[h], valid[h], sym[h], chunk)
    per_point = _smooth_l1(x_pred - target).sum(-1) * valid[h].to(dtype)  # [H, N]
    per_roi = per_point.sum(1) / counts[h].to(dtype)
    return LossSum(per_roi.sum() + zero, _count(h.numel(), per_roi), eps=0.0)
