"""Does the rotation head learn? Its rotation error on a fixed set of training frames, during training.

The rotation head runs (eval mode, no augmentation) on each object's ground-truth box, so the number measures the
rotation head alone, independent of detection: the class's quaternion, normalised, turned egocentric with the
ground-truth translation (``geometry.allo_to_ego``) and compared with the ground-truth rotation. Objects of the
object set's ``symmetric`` classes are left out (their rotation is ambiguous), as are objects with fewer than
``min_visible_pixels`` labelled pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..boxes import clip_boxes
from ..geometry import allo_to_ego, quat_to_mat, rotation_angle_deg
from ..network import PoseCNN
from .data import Batch, TrainDataset, collate

__all__ = ["RotationSummary", "RotationProbe", "summarize"]


@dataclass(frozen=True)
class RotationSummary:
    """Statistics of rotation errors in degrees over ``instances`` objects (NaN when there is none)."""

    instances: int
    median_deg: float
    mean_deg: float
    below_15: float   # fraction of objects with error < 15 degrees
    below_30: float

    def as_row(self) -> dict[str, float]:
        return {"instances": self.instances, "median_deg": self.median_deg, "mean_deg": self.mean_deg,
                "below_15": self.below_15, "below_30": self.below_30}


def summarize(errors: np.ndarray) -> RotationSummary:
    e = np.asarray(errors, dtype=np.float64)
    if e.size == 0:
        return RotationSummary(0, float("nan"), float("nan"), float("nan"), float("nan"))
    return RotationSummary(int(e.size), float(np.median(e)), float(e.mean()), float((e < 15).mean()),
                           float((e < 30).mean()))


class RotationProbe:
    """Rotation errors of a network on frames ``indices`` of ``dataset`` (build the dataset without
    augmentation); ``symmetric`` bool [C] marks the classes left out."""

    def __init__(self, dataset: TrainDataset, indices: Sequence[int], symmetric: np.ndarray,
                 min_visible_pixels: int, device: torch.device, batch_size: int = 4) -> None:
        if not len(indices):
            raise ValueError("RotationProbe needs at least one frame")
        self.device = device
        self.symmetric = torch.as_tensor(np.asarray(symmetric, dtype=bool))
        self.min_visible = max(int(min_visible_pixels), 1)
        idx = [int(i) for i in indices]
        self.batches: list[Batch] = [collate([dataset[i] for i in idx[s:s + batch_size]])
                                     for s in range(0, len(idx), batch_size)]

    def _selected(self, b: Batch) -> Tensor:
        cls = b.inst_class
        box = b.inst_box
        ok = (b.inst_visible >= self.min_visible) & ~self.symmetric[cls] & (box[:, 2] > box[:, 0]) \
            & (box[:, 3] > box[:, 1])
        return torch.nonzero(ok).flatten()

    @torch.no_grad()
    def errors(self, net: PoseCNN) -> np.ndarray:
        """Rotation error in degrees of every selected object of the probe frames."""
        was_training = net.training
        net.eval()
        out: list[np.ndarray] = []
        try:
            for b in self.batches:
                keep = self._selected(b)
                if keep.numel() == 0:
                    continue
                b = b.to(self.device)
                keep = keep.to(self.device)
                _, _, conv4, conv5 = net.dense(b.image)
                H, W = b.image.shape[2:]
                boxes = clip_boxes(b.inst_box[keep].float(), H, W)
                rois = torch.cat([b.inst_batch[keep, None].float(), boxes], dim=1)
                q = net.rotation_head(conv4, conv5, rois).float()
                cls = b.inst_class[keep]
                q = q.view(len(keep), -1, 4)[torch.arange(len(keep), device=q.device), cls]
                q = torch.nn.functional.normalize(q, dim=1)
                R_pred = quat_to_mat(allo_to_ego(q, b.inst_t[keep].float()))
                R_gt = quat_to_mat(b.inst_quat[keep].float())
                out.append(rotation_angle_deg(R_pred, R_gt).cpu().numpy())
        finally:
            net.train(was_training)
        return np.concatenate(out) if out else np.zeros(0)
