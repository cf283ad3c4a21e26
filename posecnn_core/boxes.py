"""Axis-aligned boxes: IoU, the R-CNN box transform, clipping and per-class NMS, in one place.

Boxes are ``[N, 4]`` tensors ``(x1, y1, x2, y2)`` in input-image pixels. Two pixel conventions exist and every
function names the one it uses:

- ``plus_one=True`` — PoseCNN-PyTorch's (PT's) *pixel-inclusive* convention, width = x2 − x1 + 1. PT uses it in
  its box transform (``bbox_transform``/``bbox_transform_inv``), its training overlaps (``bbox_overlaps``) and its
  test-time NMS, so every place that reproduces PT uses it.
- ``plus_one=False`` — the continuous convention, width = x2 − x1 (torchvision's).

The box transform is one object, :class:`BoxCoder`, holding PT's delta stds (0.1, 0.1, 0.2, 0.2): training encodes
targets with it and inference decodes with it, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BOX_DELTA_STDS", "BoxCoder", "box_area", "box_iou", "clip_boxes", "nms"]

BOX_DELTA_STDS = (0.1, 0.1, 0.2, 0.2)


def _check_boxes(name: str, boxes: Tensor) -> None:
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must be [N, 4] (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")


def box_area(boxes: Tensor, *, plus_one: bool) -> Tensor:
    """Areas [N] of ``boxes`` [N, 4]; negative widths/heights count as 0."""
    _check_boxes("boxes", boxes)
    one = 1.0 if plus_one else 0.0
    return (boxes[:, 2] - boxes[:, 0] + one).clamp(min=0) * (boxes[:, 3] - boxes[:, 1] + one).clamp(min=0)


def box_iou(a: Tensor, b: Tensor, *, plus_one: bool) -> Tensor:
    """IoU matrix [Na, Nb] of ``a`` [Na, 4] and ``b`` [Nb, 4]; 0 where the union is empty."""
    _check_boxes("a", a)
    _check_boxes("b", b)
    one = 1.0 if plus_one else 0.0
    iw = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0]) + one).clamp(min=0)
    ih = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1]) + one).clamp(min=0)
    inter = iw * ih
    union = box_area(a, plus_one=plus_one)[:, None] + box_area(b, plus_one=plus_one)[None, :] - inter
    ok = union > 0
    return torch.where(ok, inter / torch.where(ok, union, torch.ones_like(union)), torch.zeros_like(union))


def clip_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """``boxes`` clipped to the image: x to [0, width − 1], y to [0, height − 1] (PT's ``clip_boxes``)."""
    _check_boxes("boxes", boxes)
    x = boxes[:, 0::2].clamp(0, width - 1)
    y = boxes[:, 1::2].clamp(0, height - 1)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)


@dataclass(frozen=True)
class BoxCoder:
    """PT's R-CNN box transform (pixel-inclusive widths) with its delta stds.

    ``encode(rois, gt)`` = ((gcx − cx)/w, (gcy − cy)/h, log(gw/w), log(gh/h)) / stds with w = x2 − x1 + 1 and
    cx = x1 + 0.5·w; ``decode`` is its inverse exactly as PT writes it: x1 = cx' − 0.5·w', x2 = cx' + 0.5·w'
    (no −1) and no clamping of dw/dh, so ``decode(rois, encode(rois, gt))`` is ``gt`` shifted by +1 in x2/y2 —
    PT's own asymmetry, kept because its checkpoints were trained with it.
    """

    stds: tuple[float, float, float, float] = BOX_DELTA_STDS

    def encode(self, rois: Tensor, gt: Tensor) -> Tensor:
        """Normalised regression targets [N, 4] of boxes ``gt`` relative to ``rois`` (both [N, 4])."""
        _check_boxes("rois", rois)
        _check_boxes("gt", gt)
        w = rois[:, 2] - rois[:, 0] + 1.0
        h = rois[:, 3] - rois[:, 1] + 1.0
        cx, cy = rois[:, 0] + 0.5 * w, rois[:, 1] + 0.5 * h
        gw = gt[:, 2] - gt[:, 0] + 1.0
        gh = gt[:, 3] - gt[:, 1] + 1.0
        gcx, gcy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
        d = torch.stack([(gcx - cx) / w, (gcy - cy) / h, torch.log(gw / w), torch.log(gh / h)], dim=1)
        return d / d.new_tensor(self.stds)

    def decode(self, rois: Tensor, deltas: Tensor) -> Tensor:
        """Boxes [N, 4] from ``rois`` [N, 4] and normalised ``deltas`` [N, 4] (PT's ``bbox_transform_inv``)."""
        _check_boxes("rois", rois)
        _check_boxes("deltas", deltas)
        # the stds as 0-dim host tensors (passed to kernels by value): a 1-D tensor would be copied to the GPU,
        # which waits for it
        dx, dy, dw, dh = (deltas[:, i] * torch.tensor(s, dtype=deltas.dtype) for i, s in enumerate(self.stds))
        w = rois[:, 2] - rois[:, 0] + 1.0
        h = rois[:, 3] - rois[:, 1] + 1.0
        cx = rois[:, 0] + 0.5 * w
        cy = rois[:, 1] + 0.5 * h
        pcx = dx * w + cx
        pcy = dy * h + cy
        pw = torch.exp(dw) * w
        ph = torch.exp(dh) * h
        return torch.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], dim=1)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, classes: Tensor | None = None, *,
        plus_one: bool = True) -> Tensor:
    """Greedy NMS -> indices of the kept boxes in order of decreasing score (ties: lower index first).

    A box is suppressed when its IoU (convention ``plus_one``; PT's test-time NMS uses the +1) with an already kept
    box of the same class (``classes`` [N]; None = one class) is > ``iou_threshold``.
    """
    _check_boxes("boxes", boxes)
    n = boxes.shape[0]
    if scores.shape != (n,):
        raise ValueError(f"scores must be [N] with N={n}, got shape {tuple(scores.shape)}")
    if classes is not None and classes.shape != (n,):
        raise ValueError(f"classes must be [N] with N={n}, got shape {tuple(classes.shape)}")
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores.detach(), descending=True, stable=True)
    bx = boxes.detach()[order].double().cpu()
    iou = box_iou(bx, bx, plus_one=plus_one)
    suppress = iou > iou_threshold
    if classes is not None:
        cl = classes.detach()[order].cpu()
        suppress &= cl[:, None] == cl[None, :]
    alive = torch.ones(n, dtype=torch.bool)
    keep: list[int] = []
    for k in range(n):
        if alive[k]:
            keep.append(k)
            alive &= ~suppress[k]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]
