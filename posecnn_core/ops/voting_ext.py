"""Python face of the compiled Hough voting operators (``torch.ops.posecnn.hough_voting`` / ``hough_vote_counts``).

Inputs are expected as ``posecnn_core.voting.prepare_inputs`` returns them (labels int64, vertex float32,
intrinsics float64 [B,3,3], extents float64 [C,3], one device); ``posecnn_core.voting.hough_voting`` with
``backend="cpp"``/``"cuda"`` calls these.
"""

from __future__ import annotations

import torch

from posecnn_core.ops.extension import load_error, load_ops
from posecnn_core.voting import VotingOutput, VotingParams


def _ops():
    if not load_ops():
        raise RuntimeError(f"posecnn compiled operators are unavailable: {load_error()}")
    return torch.ops.posecnn


def hough_voting_ext(labels: torch.Tensor, vertex: torch.Tensor, intrinsics: torch.Tensor, extents: torch.Tensor,
                     params: VotingParams) -> VotingOutput:
    """Hough voting with the compiled operator of the tensors' device (see docs/voting.md)."""
    p = params
    rois, centers, translations = _ops().hough_voting(
        labels, vertex, intrinsics, extents, p.label_threshold, p.skip_pixels, p.inlier_threshold,
        p.vote_threshold, p.per_threshold, p.window, p.max_instances, p.nms_iou, p.check_same_label,
        p.same_label_samples, p.same_label_fraction, p.radius_factor)
    return VotingOutput(rois, centers, translations)


def hough_vote_counts_ext(labels: torch.Tensor, vertex: torch.Tensor, intrinsics: torch.Tensor,
                          extents: torch.Tensor, params: VotingParams) -> torch.Tensor:
    """Vote map [B,C,H,W] int32 with the compiled operator of the tensors' device."""
    p = params
    return _ops().hough_vote_counts(
        labels, vertex, intrinsics, extents, p.label_threshold, p.skip_pixels, p.inlier_threshold,
        p.check_same_label, p.same_label_samples, p.same_label_fraction, p.radius_factor)
