"""Does the rotation head learn? Its rotation error on a fixed set of training frames, during training.

The rotation head runs (eval mode, no augmentation) on each object's ground-truth box, so the number measures the
rotation head alone, independent of detection: the class's quaternion, normalised, turned egocentric with the
ground-truth translation (``geometry.allo_to_ego``) and compared with the ground-truth rotation, up to the class's
declared finite symmetry (``posecnn_core.symmetry``). Objects of symmetric classes without such a declaration are
left out (no single rotation to score), as are objects with fewer than ``min_visible_pixels`` labelled pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..boxes import clip_boxes
from ..geometry import allo_to_ego, quat_to_mat, rotation_angle_deg
from ..network import PIXEL_MEANS_BGR, PoseCNN
from ..rotation_crops import crop_rotations
from ..symmetry import group_quaternions, nearest_symmetric_targets
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
    augmentation); ``left_out`` bool [C] marks the classes not scored, ``symmetry_groups`` (one [K, 3, 3] per
    class, identity first; None = none) the rotations each error is taken up to."""

    def __init__(self, dataset: TrainDataset, indices: Sequence[int], left_out: np.ndarray,
                 min_visible_pixels: int, device: torch.device, batch_size: int = 4,
                 symmetry_groups: Sequence[np.ndarray] | None = None) -> None:
        if not len(indices):
            raise ValueError("RotationProbe needs at least one frame")
        self.device = device
        self.left_out = torch.as_tensor(np.asarray(left_out, dtype=bool))
        self.groups = None if symmetry_groups is None else group_quaternions(symmetry_groups)
        self.min_visible = max(int(min_visible_pixels), 1)
        idx = [int(i) for i in indices]
        self.batches: list[Batch] = [collate([dataset[i] for i in idx[s:s + batch_size]])
                                     for s in range(0, len(idx), batch_size)]

    def _selected(self, b: Batch) -> Tensor:
        cls = b.inst_class
        box = b.inst_box
        ok = (b.inst_visible >= self.min_visible) & ~self.left_out[cls] & (box[:, 2] > box[:, 0]) \
            & (box[:, 3] > box[:, 1])
        return torch.nonzero(ok).flatten()

    @torch.no_grad()
    def errors(self, net: PoseCNN, crop: tuple[float, int] | None = None) -> np.ndarray:
        """Rotation error in degrees of every selected object of the probe frames; ``crop`` (size, canvas): the
        rotation head sees each object in its own crop at that apparent size (``posecnn_core.rotation_crops``)."""
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
                H, W = b.image.shape[2:]
                boxes = clip_boxes(b.inst_box[keep].float(), H, W)
                cls = b.inst_class[keep]
                if crop is not None:
                    q = self._crop_quaternions(net, b, keep, boxes, cls, crop)
                else:
                    _, _, conv4, conv5 = net.dense(b.image)
                    rois = torch.cat([b.inst_batch[keep, None].float(), boxes], dim=1)
                    q = net.rotation_head(conv4, conv5, rois).float()
                    q = q.view(len(keep), -1, 4)[torch.arange(len(keep), device=q.device), cls]
                    q = torch.nn.functional.normalize(q, dim=1)
                q_gt = b.inst_quat[keep].float()
                q_ego = allo_to_ego(q, b.inst_t[keep].float())
                if self.groups is not None:  # the equivalent target nearest the prediction
                    q_gt = nearest_symmetric_targets(q_ego, q_gt, self.groups.to(q_gt.device)[cls])
                R_pred = quat_to_mat(q_ego)
                R_gt = quat_to_mat(q_gt)
                out.append(rotation_angle_deg(R_pred, R_gt).cpu().numpy())
        finally:
            net.train(was_training)
        return np.concatenate(out) if out else np.zeros(0)

    def _crop_quaternions(self, net: PoseCNN, b: Batch, keep: Tensor, boxes: Tensor, cls: Tensor,
                          crop: tuple[float, int]) -> Tensor:
        """Quaternions of the kept objects, each seen in its own crop of its (un-normalised) frame."""
        size, canvas = crop
        means = torch.as_tensor(PIXEL_MEANS_BGR, dtype=torch.float32, device=b.image.device).view(1, 3, 1, 1)
        frames = ((b.image[:, :3] + means) * 255.0).round().clamp(0, 255).to(torch.uint8)
        rgb = frames.flip(1).permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, 3] RGB
        q = torch.empty(len(keep), 4, device=b.image.device)
        index = b.inst_batch[keep]
        for i in torch.unique(index).tolist():
            rows = torch.nonzero(index == i).flatten()
            q[rows] = crop_rotations(net, rgb[i], boxes[rows].cpu().numpy(), cls[rows].cpu().numpy(), size,
                                     canvas, device=b.image.device).to(q.device)
        return q
