"""One PoseCNN training step: dense losses (semantic, vertex) and RoI losses (box class, box deltas, rotation).

RoIs for the heads (``roi_source``):

- ``voting`` (PoseCNN-PyTorch, PT): Hough voting in training mode on the network's own labels and centre maps
  (each peak and 8 copies shifted by 5 %). The box head's targets follow PT's ``roi_target_layer``: a RoI takes
  the class of the ground-truth box of its image with which it has the largest IoU (+1 pixel convention) when that
  IoU is >= ``roi_fg_iou``, else it is background; box regression targets (``boxes.BoxCoder``) for the foreground.
  The rotation head follows PT's ``pose_target_layer``: each RoI's box is regressed with the box head's deltas
  for the RoI's voting class, and a regressed box trains the rotation head when its best-IoU ground-truth box
  has IoU >= ``pose_fg_iou`` and the RoI's class; the rotation head re-pools on the regressed boxes. When voting
  finds nothing in an image (early training) the heads get no RoI from it.
- ``gt`` (our option): jittered ground-truth boxes plus random background boxes, labelled by IoU the same way; the
  rotation head trains on the foreground ones directly.

Rotation targets are allocentric (``geometry.ego_to_allo``, w >= 0); the rotation loss is PT's point-matching loss
(``rotation_loss: pt``) or the paper's PoseLoss/ShapeMatch-Loss (``paper``), ShapeMatch for the object set's
``symmetric_training`` classes. Several instances of a class in one image are fine (PT assumes one).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..boxes import BoxCoder, box_iou, clip_boxes
from ..geometry import ego_to_allo
from ..losses import (LossSum, box_loss_sums, point_matching_loss_sum, pose_loss_sum, semantic_loss_sum,
                      vertex_loss_sum)
from ..network import PoseCNN, label_map
from ..voting import VotingParams, hough_voting
from .config import TrainConfig
from .data import Batch, expand_vertex_targets

__all__ = ["RoiTargets", "PoseTargets", "StepOutputs", "RoiPlanner", "TrainModel", "LossWeights", "sample_rois",
           "label_rois", "pose_targets_from_boxes", "voting_rois", "compute_losses", "LOSS_NAMES"]

LOSS_NAMES = ("loss", "semantic", "vertex", "box_class", "box_reg", "pose")
_CODER = BoxCoder()


@dataclass
class RoiTargets:
    """RoIs of the box head. rois [R, 5] float32 (batch, x1, y1, x2, y2); classes [R] (0 = background); gt_index
    [R] (-1 for background); box_deltas [R, 4] normalised regression targets (zeros for background); roi_classes
    [R] the class voting gave each RoI (-1 for ground-truth-box RoIs)."""

    rois: Tensor
    classes: Tensor
    gt_index: Tensor
    box_deltas: Tensor
    roi_classes: Tensor


@dataclass
class PoseTargets:
    """RoIs of the rotation head: rois [P, 5] (batch, x1, y1, x2, y2), classes [P] (> 0), gt_index [P];
    ``box_rows`` [P] the box-head RoIs they come from when the rotation head reuses their features (gt RoIs),
    else None (voting: the head re-pools on the regressed boxes)."""

    rois: Tensor
    classes: Tensor
    gt_index: Tensor
    box_rows: Tensor | None = None


@dataclass
class StepOutputs:
    """Network outputs of one step: scores [B, C, H, W], vertex [B, 3C, H, W], class_scores [R, C],
    box_deltas [R, 4C], quaternions [P, 4C], and the RoI targets they belong to."""

    scores: Tensor
    vertex: Tensor
    class_scores: Tensor
    box_deltas: Tensor
    quaternions: Tensor
    box_targets: RoiTargets
    pose_targets: PoseTargets


def _gt_boxes(batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    """Ground-truth boxes [N, 4] (float64), their image [N] and class [N], on the CPU."""
    return (batch.inst_box.detach().cpu().double(), batch.inst_batch.detach().cpu(),
            batch.inst_class.detach().cpu())


def _best_gt(boxes: Tensor, owner: Tensor, gt_boxes: Tensor, gt_batch: Tensor) -> tuple[Tensor, Tensor]:
    """(best IoU [R], index of that ground-truth box [R]) over the ground-truth boxes of each box's own image
    (IoU with the +1 pixel convention, as PT's bbox_overlaps); IoU 0 and index 0 where there is none."""
    R = boxes.shape[0]
    if R == 0 or gt_boxes.shape[0] == 0:
        return torch.zeros(R, dtype=torch.float64), torch.zeros(R, dtype=torch.long)
    iou = box_iou(boxes, gt_boxes, plus_one=True)
    iou = torch.where(owner[:, None] == gt_batch[None, :], iou, torch.zeros_like(iou))
    return iou.max(dim=1)


def label_rois(rois: Tensor, batch: Batch, fg_iou: float, roi_classes: Tensor | None = None) -> RoiTargets:
    """PT's roi_target_layer: ``rois`` [R, 5] (batch, x1, y1, x2, y2) labelled by their best-IoU ground-truth box
    of the same image (foreground when IoU >= ``fg_iou``), with box regression targets for the foreground."""
    rois = rois.detach().cpu().double()
    R = rois.shape[0]
    gt_boxes, gt_batch, gt_class = _gt_boxes(batch)
    owner = rois[:, 0].long()
    best, arg = _best_gt(rois[:, 1:], owner, gt_boxes, gt_batch)
    fg = best >= fg_iou
    classes = torch.zeros(R, dtype=torch.long)
    gt_index = torch.full((R,), -1, dtype=torch.long)
    deltas = torch.zeros(R, 4, dtype=torch.float64)
    if bool(fg.any()):
        gt_index[fg] = arg[fg]
        classes[fg] = gt_class[arg[fg]]
        deltas[fg] = _CODER.encode(rois[fg, 1:], gt_boxes[arg[fg]])
    return RoiTargets(rois=rois.float(), classes=classes, gt_index=gt_index, box_deltas=deltas.float(),
                      roi_classes=(torch.full((R,), -1, dtype=torch.long) if roi_classes is None
                                   else roi_classes.detach().cpu().long()))


def sample_rois(batch: Batch, cfg: TrainConfig, rngs: Sequence[np.random.Generator]) -> RoiTargets:
    """Ground-truth RoIs (our option): per image, ``rois_per_object`` jittered copies of each of its ground-truth
    boxes with at least ``min_visible_pixels`` labelled pixels, then ``bg_rois_per_image`` random boxes, clipped to
    the image and labelled by :func:`label_rois`. ``rngs``: one generator per image, so that an image's RoIs do
    not depend on the other images of its batch (data-parallel runs equal one process). CPU tensors."""
    B, _, H, W = batch.image.shape
    if len(rngs) != B:
        raise ValueError(f"sample_rois needs one random generator per image: {len(rngs)} for {B} images")
    gt_boxes, gt_batch, _ = _gt_boxes(batch)
    gt_ok = (batch.inst_visible.detach().cpu() >= max(cfg.min_visible_pixels, 1)) \
        & (gt_boxes[:, 2] > gt_boxes[:, 0]) & (gt_boxes[:, 3] > gt_boxes[:, 1])
    boxes: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    for b in range(B):
        rng = rngs[b]
        for k in torch.nonzero(gt_ok & (gt_batch == b)).flatten().tolist():
            x1, y1, x2, y2 = gt_boxes[k].tolist()
            w, h = x2 - x1 + 1, y2 - y1 + 1
            n = cfg.rois_per_object
            shift = rng.normal(0.0, cfg.roi_jitter, size=(n, 2)) * [w, h]
            scale = np.exp(rng.normal(0.0, cfg.roi_jitter, size=(n, 2)))
            cx, cy = x1 + 0.5 * w + shift[:, 0], y1 + 0.5 * h + shift[:, 1]
            nw, nh = w * scale[:, 0], h * scale[:, 1]
            boxes.append(np.stack([cx - 0.5 * nw, cy - 0.5 * nh, cx + 0.5 * nw - 1, cy + 0.5 * nh - 1], 1))
            owners.append(np.full(n, b))
        n = cfg.bg_rois_per_image
        if n == 0:
            continue
        bw = rng.uniform(16, max(17.0, W / 2), size=n)
        bh = rng.uniform(16, max(17.0, H / 2), size=n)
        x1 = rng.uniform(0, np.maximum(W - bw, 1))
        y1 = rng.uniform(0, np.maximum(H - bh, 1))
        boxes.append(np.stack([x1, y1, x1 + bw - 1, y1 + bh - 1], 1))
        owners.append(np.full(n, b))
    if boxes:
        box = torch.from_numpy(np.concatenate(boxes)).double()
        owner = torch.from_numpy(np.concatenate(owners)).long()
    else:
        box, owner = torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    box = clip_boxes(box, H, W)
    # only the well-visible instances label these RoIs (a jittered box must not take a hidden object's class)
    keep = torch.nonzero(gt_ok).flatten()
    sub = Batch(**{**batch.__dict__, "inst_box": batch.inst_box[keep.to(batch.inst_box.device)],
                   "inst_batch": batch.inst_batch[keep.to(batch.inst_batch.device)],
                   "inst_class": batch.inst_class[keep.to(batch.inst_class.device)]})
    out = label_rois(torch.cat([owner[:, None].double(), box], dim=1), sub, cfg.roi_fg_iou)
    out.gt_index = torch.where(out.gt_index >= 0, keep[out.gt_index.clamp(min=0)], out.gt_index)
    return out


def voting_rois(scores: Tensor, vertex: Tensor, batch: Batch, extents: Tensor, reference_focal: float,
                cfg: TrainConfig, global_batch: int | None = None) -> Tensor:
    """PT's training-mode Hough voting on the network's own outputs -> rows [N, 7] (b, cls, x1, y1, x2, y2,
    votes) on the CPU. Labels are the argmax of ``scores`` (0 outside each image's own size); the depth channels,
    trained relative to ``reference_focal``, are made metric for this frame's camera first (+ log(f / f_ref)).
    Voting treats each image alone except for PT's cap of ``max_peaks`` (128) peaks per batch, max_peaks // B per
    image; ``global_batch`` (data-parallel: this batch is part of a larger one) applies the global batch's cap,
    max_peaks // global_batch per image, as one process with the whole global batch would."""
    B = scores.shape[0]
    per_image = max(VotingParams().max_peaks // (global_batch or B), 1)
    with torch.no_grad():
        labels = label_map(scores.detach())
        B, H, W = labels.shape
        hw = batch.image_hw.to(labels.device)
        rows = torch.arange(H, device=labels.device)[None, :, None] < hw[:, 0, None, None]
        cols = torch.arange(W, device=labels.device)[None, None, :] < hw[:, 1, None, None]
        labels = labels * (rows & cols)
        v = vertex.detach().float().clone()
        K = batch.K.to(device=v.device, dtype=torch.float64)
        f = torch.sqrt(K[:, 0, 0] * K[:, 1, 1])
        v[:, 2::3] += torch.log(f / reference_focal).to(v.dtype)[:, None, None, None]
        params = VotingParams(mode="train", label_threshold=cfg.voting_label_threshold, max_peaks=per_image * B)
        out = hough_voting(labels, v, batch.K.to(v.device).float(), extents.to(v.device), params,
                           backend=cfg.voting_backend)
    return out.rois.detach().float().cpu()


def pose_targets_from_boxes(box: RoiTargets, box_deltas: Tensor, batch: Batch, fg_iou: float) -> PoseTargets:
    """PT's pose_target_layer: each voting RoI's box regressed with the deltas of its voting class (not clipped),
    kept when its best-IoU ground-truth box of the same image has IoU >= ``fg_iou`` and the RoI's class."""
    rois = box.rois.detach().cpu().double()
    R = rois.shape[0]
    if R == 0:
        return PoseTargets(rois=torch.zeros(0, 5), classes=torch.zeros(0, dtype=torch.long),
                           gt_index=torch.zeros(0, dtype=torch.long))
    cls = box.roi_classes.detach().cpu().long()
    if bool((cls < 1).any()):
        raise ValueError("pose targets from regressed boxes need the RoIs' voting classes (>= 1)")
    d = box_deltas.detach().cpu().double().view(R, -1, 4)[torch.arange(R), cls]
    regressed = _CODER.decode(rois[:, 1:], d)
    gt_boxes, gt_batch, gt_class = _gt_boxes(batch)
    owner = rois[:, 0].long()
    best, arg = _best_gt(regressed, owner, gt_boxes, gt_batch)
    labels = torch.zeros(R, dtype=torch.long)
    if gt_boxes.shape[0]:
        labels = torch.where(best >= fg_iou, gt_class[arg], labels)
    keep = torch.nonzero((labels > 0) & (labels == cls) & torch.isfinite(regressed).all(1)).flatten()
    return PoseTargets(rois=torch.cat([owner[keep, None].double(), regressed[keep]], dim=1).float(),
                       classes=labels[keep], gt_index=arg[keep])


class RoiPlanner:
    """Makes the RoIs and their targets of one step from the batch and the network's (detached) outputs.
    ``rngs``: one random generator per image of the batch (ground-truth RoIs); ``global_batch``: the images of
    the whole step when this batch is one process's part of it (voting's peak cap), None = this batch."""

    def __init__(self, batch: Batch, cfg: TrainConfig, rngs: Sequence[np.random.Generator], extents: Tensor,
                 reference_focal: float, global_batch: int | None = None) -> None:
        self.batch, self.cfg, self.rngs, self.global_batch = batch, cfg, list(rngs), global_batch
        self.extents, self.reference_focal = extents, reference_focal

    def box_targets(self, scores: Tensor, vertex: Tensor) -> RoiTargets:
        if self.cfg.roi_source == "gt":
            return sample_rois(self.batch, self.cfg, self.rngs)
        rows = voting_rois(scores, vertex, self.batch, self.extents, self.reference_focal, self.cfg,
                           global_batch=self.global_batch)
        rois = torch.cat([rows[:, :1], rows[:, 2:6]], dim=1)
        return label_rois(rois, self.batch, self.cfg.roi_fg_iou, roi_classes=rows[:, 1].long())

    def pose_targets(self, box: RoiTargets, box_deltas: Tensor) -> PoseTargets:
        if self.cfg.roi_source == "gt":
            fg = torch.nonzero(box.classes > 0).flatten()
            return PoseTargets(rois=box.rois[fg], classes=box.classes[fg], gt_index=box.gt_index[fg], box_rows=fg)
        return pose_targets_from_boxes(box, box_deltas, self.batch, self.cfg.pose_fg_iou)


class TrainModel(nn.Module):
    """Wraps PoseCNN so that one ``forward`` runs everything a step needs (what DDP wraps): the dense pass, the
    RoIs (``planner``), the box head on them and the rotation head on the rotation RoIs."""

    def __init__(self, net: PoseCNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor, planner: RoiPlanner) -> StepOutputs:
        net = self.net
        scores, vertex, conv4, conv5 = net.dense(image)
        box_t = planner.box_targets(scores, vertex)
        dev = scores.device
        box_t = RoiTargets(**{k: v.to(dev) for k, v in box_t.__dict__.items()})
        feats = net.roi_features(conv4, conv5, box_t.rois)
        class_scores, box_deltas = net.fc8(feats), net.fc9(feats)
        pose_t = planner.pose_targets(box_t, box_deltas)
        pose_t = PoseTargets(**{k: (None if v is None else v.to(dev)) for k, v in pose_t.__dict__.items()})
        if pose_t.box_rows is not None:
            quats = net.fc10(feats[pose_t.box_rows])
        else:
            quats = net.fc10(net.roi_features(conv4, conv5, pose_t.rois))
        return StepOutputs(scores, vertex, class_scores, box_deltas, quats, box_t, pose_t)


@dataclass(frozen=True)
class LossWeights:
    semantic: float = 1.0
    vertex: float = 10.0
    box_class: float = 1.0
    box_reg: float = 1.0
    pose: float = 1.0

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "LossWeights":
        return cls(cfg.semantic_loss_weight, cfg.vertex_loss_weight, cfg.box_class_loss_weight,
                   cfg.box_reg_loss_weight, cfg.pose_loss_weight)


def compute_losses(out: StepOutputs, batch: Batch, points: Tensor, point_counts: Tensor,
                   symmetric_training: Tensor, extents: Tensor, cfg: TrainConfig,
                   reduce_counts: Callable[[Tensor], Tensor] | None = None,
                   targets: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None) -> dict[str, Tensor]:
    """Every loss of the step (float32) -> {"loss": weighted total, "semantic", "vertex", "box_class", "box_reg",
    "pose"} (the parts unweighted). ``points`` [C, M, 3], ``point_counts`` [C], ``symmetric_training`` bool [C],
    ``extents`` [C, 3] on the outputs' device.

    Each loss is a sum over this batch's pixels or RoIs divided by a count (hard pixels, weights, hard RoIs).
    ``reduce_counts`` (data-parallel training) maps this process's counts [5] (float64) to those of the global
    batch (the sum over processes); every loss is then this process's sum over the global count, its share of
    the global batch's loss, so that the shares of all processes add up to the loss one process would compute on
    the whole global batch. None: the batch is the global batch. ``targets(q_pred, q_gt, classes)`` may replace
    the rotation targets (``RotationTargets.targets``; None: the labelled ones).
    """
    scores, vertex = out.scores.float(), out.vertex.float()
    class_scores, box_deltas, quats = out.class_scores.float(), out.box_deltas.float(), out.quaternions.float()
    dev = scores.device
    C = scores.shape[1]
    sums: dict[str, LossSum] = {"semantic": semantic_loss_sum(scores, batch.label, cfg.hard_label_threshold)}
    vt, vw = expand_vertex_targets(batch.vertex, batch.vertex_mask, batch.label, C, cfg.vertex_inside_weight)
    sums["vertex"] = vertex_loss_sum(vertex, vt, vw)
    box_t, pose_t = out.box_targets, out.pose_targets
    sums["box_class"], sums["box_reg"] = box_loss_sums(class_scores, box_deltas, box_t.classes.to(dev),
                                                       box_t.box_deltas.to(dev),
                                                       hard_threshold=cfg.hard_label_threshold)
    P = pose_t.classes.shape[0]
    if P:
        c = pose_t.classes.to(dev)
        q_pred = quats.view(P, C, 4)[torch.arange(P, device=dev), c]
        gt = pose_t.gt_index.to(dev)
        q_gt = ego_to_allo(batch.inst_quat[gt].float(), batch.inst_t[gt].float())
        if targets is not None:
            q_gt = targets(q_pred, q_gt, c)
        if cfg.rotation_loss == "pt":
            sums["pose"] = point_matching_loss_sum(q_pred, q_gt, points[c], extents[c], symmetric_training[c],
                                                   hard_angle=cfg.hard_angle, point_counts=point_counts[c])
        else:
            sums["pose"] = pose_loss_sum(q_pred, q_gt, points[c], point_counts[c], symmetric_training[c])
    else:
        zero = quats.sum() * 0.0
        sums["pose"] = LossSum(zero, torch.zeros((), dtype=zero.dtype, device=dev), eps=0.0)
    if reduce_counts is None:
        parts = {k: v.mean() for k, v in sums.items()}
    else:
        counts = reduce_counts(torch.stack([v.count.to(torch.float64) for v in sums.values()]))
        parts = {k: v.mean(counts[i]) for i, (k, v) in enumerate(sums.items())}
    w = LossWeights.from_config(cfg)
    total = (w.semantic * parts["semantic"] + w.vertex * parts["vertex"] + w.box_class * parts["box_class"]
             + w.box_reg * parts["box_reg"] + w.pose * parts["pose"])
    return {"loss": total, **parts}
