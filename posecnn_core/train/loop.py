"""One PoseCNN training step: dense losses (semantic, vertex) and RoI losses (box class, box deltas, rotation).

RoIs come from the ground-truth boxes, jittered, plus random background boxes; a RoI is foreground when its IoU
with a ground-truth box of its image reaches ``roi_fg_iou`` and then takes that object's class, box and pose.
Box deltas use the R-CNN parameterisation with the +1 pixel convention and stds (0.1, 0.1, 0.2, 0.2) that
``estimator.apply_box_deltas`` inverts. Rotation targets are allocentric (``geometry.ego_to_allo``, w >= 0) and
the rotation head is trained with PoseLoss, or ShapeMatch-Loss for the object set's ``symmetric_training``
classes. Unlike PT, several instances of a class in one image are fine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..geometry import ego_to_allo
from ..losses import box_loss, pose_loss, semantic_loss, vertex_loss
from ..network import PoseCNN
from .config import TrainConfig
from .data import Batch, expand_vertex_targets

__all__ = ["BOX_DELTA_STDS", "RoiTargets", "TrainModel", "LossWeights", "box_iou", "encode_box_deltas",
           "sample_rois", "compute_losses", "LOSS_NAMES"]

BOX_DELTA_STDS = (0.1, 0.1, 0.2, 0.2)
LOSS_NAMES = ("loss", "semantic", "vertex", "box_class", "box_reg", "pose")


@dataclass
class RoiTargets:
    """rois [R, 5] (batch, x1, y1, x2, y2); classes [R] (0 = background); gt_index [R] (-1 for background);
    box_deltas [R, 4] normalised regression targets (zeros for background)."""

    rois: Tensor
    classes: Tensor
    gt_index: Tensor
    box_deltas: Tensor


class TrainModel(nn.Module):
    """Wraps PoseCNN so that one ``forward`` runs everything a step needs (what DDP wraps).

    forward(image, rois) -> (scores [B, C, H, W], vertex [B, 3C, H, W], class_scores [R, C],
    box_deltas [R, 4C], quaternions [R, 4C]); the RoI features are computed once for both heads.
    """

    def __init__(self, net: PoseCNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor, rois: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        scores, vertex, conv4, conv5 = self.net.dense(image)
        feats = self.net.roi_features(conv4, conv5, rois)
        return scores, vertex, self.net.fc8(feats), self.net.fc9(feats), self.net.fc10(feats)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU [Na, Nb] of (x1, y1, x2, y2) boxes in pixel-inclusive convention (width = x2 − x1 + 1)."""
    wa = (a[:, 2] - a[:, 0] + 1).clamp(min=0)
    ha = (a[:, 3] - a[:, 1] + 1).clamp(min=0)
    wb = (b[:, 2] - b[:, 0] + 1).clamp(min=0)
    hb = (b[:, 3] - b[:, 1] + 1).clamp(min=0)
    iw = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0]) + 1).clamp(min=0)
    ih = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1]) + 1).clamp(min=0)
    inter = iw * ih
    union = (wa * ha)[:, None] + (wb * hb)[None, :] - inter
    return inter / union.clamp(min=1e-9)


def encode_box_deltas(rois: Tensor, gt: Tensor) -> Tensor:
    """R-CNN deltas of ``gt`` relative to ``rois`` ([R, 4] each), divided by BOX_DELTA_STDS; the inverse of
    ``estimator.apply_box_deltas``."""
    w = rois[:, 2] - rois[:, 0] + 1.0
    h = rois[:, 3] - rois[:, 1] + 1.0
    cx, cy = rois[:, 0] + 0.5 * w, rois[:, 1] + 0.5 * h
    gw = gt[:, 2] - gt[:, 0] + 1.0
    gh = gt[:, 3] - gt[:, 1] + 1.0
    gcx, gcy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    d = torch.stack([(gcx - cx) / w, (gcy - cy) / h, torch.log(gw / w), torch.log(gh / h)], dim=1)
    return d / d.new_tensor(BOX_DELTA_STDS)


def sample_rois(batch: Batch, cfg: TrainConfig, rng: np.random.Generator) -> RoiTargets:
    """Jittered ground-truth RoIs (``rois_per_object`` per visible instance) and ``bg_rois_per_image`` random
    ones per image, clipped to the image, labelled by IoU with the image's ground-truth boxes. CPU tensors."""
    B, _, H, W = batch.image.shape
    gt_boxes = batch.inst_box.detach().cpu().double()
    gt_batch = batch.inst_batch.detach().cpu()
    gt_ok = (batch.inst_visible.detach().cpu() >= max(cfg.min_visible_pixels, 1)) \
        & (gt_boxes[:, 2] > gt_boxes[:, 0]) & (gt_boxes[:, 3] > gt_boxes[:, 1])
    boxes: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    for k in torch.nonzero(gt_ok).flatten().tolist():
        x1, y1, x2, y2 = gt_boxes[k].tolist()
        w, h = x2 - x1 + 1, y2 - y1 + 1
        n = cfg.rois_per_object
        shift = rng.normal(0.0, cfg.roi_jitter, size=(n, 2)) * [w, h]
        scale = np.exp(rng.normal(0.0, cfg.roi_jitter, size=(n, 2)))
        cx, cy = x1 + 0.5 * w + shift[:, 0], y1 + 0.5 * h + shift[:, 1]
        nw, nh = w * scale[:, 0], h * scale[:, 1]
        boxes.append(np.stack([cx - 0.5 * nw, cy - 0.5 * nh, cx + 0.5 * nw - 1, cy + 0.5 * nh - 1], 1))
        owners.append(np.full(n, int(gt_batch[k])))
    for b in range(B):
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
    box[:, 0::2] = box[:, 0::2].clamp(0, W - 1)
    box[:, 1::2] = box[:, 1::2].clamp(0, H - 1)
    R = box.shape[0]
    classes = torch.zeros(R, dtype=torch.long)
    gt_index = torch.full((R,), -1, dtype=torch.long)
    deltas = torch.zeros(R, 4, dtype=torch.float64)
    valid_idx = torch.nonzero(gt_ok).flatten()
    if R and valid_idx.numel():
        iou = box_iou(box, gt_boxes[valid_idx])
        iou = torch.where(owner[:, None] == gt_batch[valid_idx][None, :], iou, torch.zeros_like(iou))
        best, arg = iou.max(dim=1)
        fg = best >= cfg.roi_fg_iou
        gt_index[fg] = valid_idx[arg[fg]]
        classes[fg] = batch.inst_class.detach().cpu()[gt_index[fg]]
        deltas[fg] = encode_box_deltas(box[fg], gt_boxes[gt_index[fg]])
    rois = torch.cat([owner[:, None].double(), box], dim=1).float()
    return RoiTargets(rois=rois, classes=classes, gt_index=gt_index, box_deltas=deltas.float())


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


def compute_losses(outputs: tuple[Tensor, Tensor, Tensor, Tensor, Tensor], batch: Batch, roi: RoiTargets,
                   points: Tensor, point_counts: Tensor, symmetric_training: Tensor, cfg: TrainConfig
                   ) -> dict[str, Tensor]:
    """Every loss of the step (float32) -> {"loss": weighted total, "semantic", "vertex", "box_class", "box_reg",
    "pose"} (the parts unweighted). ``points`` [C, M, 3], ``point_counts`` [C], ``symmetric_training`` bool [C]
    on the outputs' device; ``roi`` tensors are moved there."""
    scores, vertex, class_scores, box_deltas, quats = (o.float() for o in outputs)
    dev = scores.device
    C = scores.shape[1]
    loss_sem = semantic_loss(scores, batch.label, cfg.hard_label_threshold)
    vt, vw = expand_vertex_targets(batch.vertex, batch.vertex_mask, batch.label, C, cfg.vertex_inside_weight)
    loss_vtx = vertex_loss(vertex, vt, vw)
    classes = roi.classes.to(dev)
    loss_cls, loss_reg = box_loss(class_scores, box_deltas, classes, roi.box_deltas.to(dev))
    fg = torch.nonzero(classes > 0).flatten()
    if fg.numel():
        c = classes[fg]
        q_pred = quats[fg].view(-1, C, 4)[torch.arange(fg.numel(), device=dev), c]
        gt = roi.gt_index.to(dev)[fg]
        q_gt = ego_to_allo(batch.inst_quat[gt].float(), batch.inst_t[gt].float())
        loss_pose = pose_loss(q_pred, q_gt, points[c], point_counts[c], symmetric_training[c])
    else:
        loss_pose = quats.sum() * 0.0
    w = LossWeights.from_config(cfg)
    total = (w.semantic * loss_sem + w.vertex * loss_vtx + w.box_class * loss_cls + w.box_reg * loss_reg
             + w.pose * loss_pose)
    return {"loss": total, "semantic": loss_sem, "vertex": loss_vtx, "box_class": loss_cls, "box_reg": loss_reg,
            "pose": loss_pose}
