"""PoseCNN training losses: semantic labels, center/vertex regression, RoI boxes and rotations.

All inputs are torch tensors; every loss returns a scalar that is differentiable with respect to the
network outputs (also when it is zero because nothing contributes).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .geometry import quat_to_mat

_EPS = 1e-10


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _smooth_l1(x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Element-wise smooth-L1 (Huber with transition at `beta`) of residuals `x`."""
    ax = x.abs()
    return torch.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def semantic_loss(scores: torch.Tensor, labels: torch.Tensor, hard_threshold: float = 0.9) -> torch.Tensor:
    """Cross-entropy over hard pixels, the mean of -log softmax(scores)[gt] over those pixels.

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
    return -(logp_gt * hard).sum() / (hard.sum() + _EPS)


def vertex_loss(vertex_pred: torch.Tensor, vertex_target: torch.Tensor,
                vertex_weights: torch.Tensor) -> torch.Tensor:
    """Σ smoothL1(w ⊙ (pred − target)) / (Σ w + eps), smooth-L1 with beta 1 (PoseCNN-PyTorch).

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
    return _smooth_l1(w * (vertex_pred - vertex_target)).sum() / (w.sum() + _EPS)


def box_loss(class_scores: torch.Tensor, box_deltas: torch.Tensor, gt_classes: torch.Tensor,
             gt_deltas: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """RoI classification and box-regression losses → (cross-entropy, smooth-L1).

    class_scores: `[R, C]` unnormalised; box_deltas: `[R, 4C]` (class c at columns 4c..4c+3);
    gt_classes: int `[R]` (0 = background); gt_deltas: `[R, 4]` normalised regression targets;
    weights: `[R]` or `[R, 4]` on the gt class's deltas, default 1 for foreground and 0 for background RoIs.
    ce = mean over RoIs of −log softmax(scores)[gt]; smooth_l1 = Σ smoothL1(w ⊙ (Δ_gt − target)) /
    (Σ w + eps) with w broadcast to `[R, 4]` (PoseCNN-PyTorch). R = 0 → both 0.
    """
    _require(class_scores.dim() == 2, f"class_scores must have shape [R, C], got {tuple(class_scores.shape)}")
    R, C = class_scores.shape
    _require(tuple(box_deltas.shape) == (R, 4 * C),
             f"box_deltas must have shape {(R, 4 * C)}, got {tuple(box_deltas.shape)}")
    _require(tuple(gt_classes.shape) == (R,), f"gt_classes must have shape {(R,)}, got {tuple(gt_classes.shape)}")
    _require(tuple(gt_deltas.shape) == (R, 4), f"gt_deltas must have shape {(R, 4)}, got {tuple(gt_deltas.shape)}")
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
        return zero, zero.clone()
    ce = F.cross_entropy(class_scores, gt)
    idx = (4 * gt).unsqueeze(1) + torch.arange(4, device=gt.device)
    pred = box_deltas.gather(1, idx)
    l1 = _smooth_l1(w * (pred - gt_deltas.to(pred.dtype))).sum() / (w.sum() + _EPS)
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


def pose_loss(q_pred: torch.Tensor, q_gt: torch.Tensor, points: torch.Tensor,
              point_counts: torch.Tensor | None, symmetric: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Mean over RoIs of PoseLoss (non-symmetric) or ShapeMatch-Loss (symmetric), in the points' units².

    PLoss = 1/(2m) Σ_x ‖R(q̃)x − R(q)x‖²; SLoss = 1/(2m) Σ_{x1} min_{x2} ‖R(q̃)x1 − R(q)x2‖².
    q_pred, q_gt: `[R, 4]` (w, x, y, z), both normalised here; points: `[R, N, 3]` model points per RoI,
    the first `point_counts[r]` of row r valid (None = all N); symmetric: bool `[R]`.
    The nearest-neighbour search runs without autograd in steps of at most `chunk`·N distances, so its
    memory is O(chunk·N) beside the O(R·N) points; the loss is then evaluated on the matched pairs, which gives the same value and gradient
    as the min. R = 0 → 0.
    """
    _require(q_pred.dim() == 2 and q_pred.shape[1] == 4, f"q_pred must have shape [R, 4], got {tuple(q_pred.shape)}")
    R = q_pred.shape[0]
    _require(tuple(q_gt.shape) == (R, 4), f"q_gt must have shape {(R, 4)}, got {tuple(q_gt.shape)}")
    _require(points.dim() == 3 and points.shape[0] == R and points.shape[2] == 3,
             f"points must have shape [{R}, N, 3], got {tuple(points.shape)}")
    _require(tuple(symmetric.shape) == (R,), f"symmetric must have shape {(R,)}, got {tuple(symmetric.shape)}")
    _require(isinstance(chunk, int) and chunk > 0, f"chunk must be a positive int, got {chunk!r}")
    N = points.shape[1]
    if point_counts is None:
        counts = torch.full((R,), N, dtype=torch.long, device=points.device)
    else:
        _require(tuple(point_counts.shape) == (R,),
                 f"point_counts must have shape {(R,)}, got {tuple(point_counts.shape)}")
        counts = point_counts.to(device=points.device, dtype=torch.long)
        if R and (int(counts.min()) < 1 or int(counts.max()) > N):
            raise ValueError(f"point_counts must lie in [1, {N}], got range [{int(counts.min())}, {int(counts.max())}]")
    if R == 0 or N == 0:
        return q_pred.sum() * 0
    dtype = q_pred.dtype
    pts = points.to(dtype)
    valid = torch.arange(N, device=pts.device).unsqueeze(0) < counts.unsqueeze(1)  # [R, N]
    Rp = quat_to_mat(q_pred)
    Rg = quat_to_mat(q_gt.to(dtype))
    x_pred = pts @ Rp.transpose(1, 2)  # R(q̃)x, [R, N, 3]
    x_gt = pts @ Rg.transpose(1, 2)  # R(q)x
    sym = symmetric.to(device=pts.device, dtype=torch.bool)
    match = torch.arange(N, device=pts.device).expand(R, N)
    if bool(sym.any()):
        with torch.no_grad():
            nn_idx = _nearest_indices(x_pred[sym], x_gt[sym], valid[sym], chunk)
        match = match.clone()
        match[sym] = nn_idx
    target = x_gt.gather(1, match.unsqueeze(-1).expand(R, N, 3))
    sq = ((x_pred - target) ** 2).sum(-1) * valid.to(dtype)  # [R, N]
    per_roi = sq.sum(1) / (2 * counts.to(dtype))
    return per_roi.mean()
