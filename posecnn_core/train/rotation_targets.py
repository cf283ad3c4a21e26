"""Which rotation loss each class trains with and which target it aims at (``rotation_targets`` in the config).

``labelled`` (PoseCNN-PyTorch): every RoI aims at its labelled rotation; ``symmetric_training`` classes take the
shape-match variant of the loss. ``nearest_symmetric`` (ours, off by default): classes with a declared finite
symmetry (``symmetry`` in the object set, ``posecnn_core.symmetry``) aim at the symmetric equivalent of their
label nearest the prediction, with the plain point-matching loss, so that look-alike views no longer get
contradicting targets while the texture still decides every rotation the symmetry does not cover.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..objects import ObjectSet
from ..symmetry import group_quaternions, nearest_symmetric_targets

__all__ = ["RotationTargets", "ROTATION_TARGETS"]

ROTATION_TARGETS = ("labelled", "nearest_symmetric")


class RotationTargets:
    """Per class: shape-match loss or not (``symmetric`` bool [C]) and the targets' symmetry groups."""

    def __init__(self, objects: ObjectSet, mode: str, device: torch.device | str) -> None:
        if mode not in ROTATION_TARGETS:
            raise ValueError(f"rotation_targets must be one of {', '.join(ROTATION_TARGETS)}, got {mode!r}")
        sym = np.asarray(objects.symmetric_training if objects.symmetric_training is not None
                         else objects.symmetric, dtype=bool)
        self.groups: Tensor | None = None
        if mode == "nearest_symmetric":
            finite = np.array([len(g) > 1 for g in objects.symmetry_groups], dtype=bool)
            sym = sym & ~finite
            self.groups = group_quaternions(objects.symmetry_groups, device)
        self.symmetric = torch.as_tensor(sym, device=device)

    def targets(self, q_pred: Tensor, q_gt: Tensor, classes: Tensor) -> Tensor:
        """The targets the loss compares ``q_pred`` [R, 4] with: ``q_gt`` [R, 4] itself, or its nearest
        symmetric equivalent for the classes with a declared symmetry (``nearest_symmetric``)."""
        if self.groups is None:
            return q_gt
        return nearest_symmetric_targets(q_pred, q_gt, self.groups[classes])
