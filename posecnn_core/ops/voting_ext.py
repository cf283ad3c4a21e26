"""Python face of the compiled Hough voting operators (``torch.ops.posecnn.hough_voting`` / ``hough_vote_counts``).

Inputs are expected as ``posecnn_core.voting.prepare_inputs`` returns them (labels int64, vertex float32,
intrinsics float32 [B,3,3], extents float32 [C,3], one device); ``posecnn_core.voting.hough_voting`` with
``backend="cpp"``/``"cuda"`` calls these. Parameters are read from a ``VotingParams``; results are returned as plain
tensors, so this module does not import ``posecnn_core.voting`` (no import cycle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from posecnn_core.ops.extension import load_error, load_ops

if TYPE_CHECKING:
    from posecnn_core.voting import VotingParams


def _ops():
    if not load_ops():
        raise RuntimeError(f"posecnn compiled operators are unavailable: {load_error()}")
    return torch.ops.posecnn


def hough_voting_ext(labels: torch.Tensor, vertex: torch.Tensor, intrinsics: torch.Tensor, extents: torch.Tensor,
                     params: VotingParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rois [N,7], centers [N,2], translations [N,3]) from the compiled operator of the tensors' device."""
    p = params
    return _ops().hough_voting(
        labels, vertex, intrinsics, extents, p.label_threshold, p.skip_pixels, p.inlier_threshold,
        p.vote_threshold, p.per_threshold, p.window, p.max_peaks, p.mode == "test", p.check_same_label,
        p.same_label_samples, p.same_label_fraction, p.box_factor)


def hough_vote_counts_ext(labels: torch.Tensor, vertex: torch.Tensor, intrinsics: torch.Tensor,
                          extents: torch.Tensor, params: VotingParams) -> torch.Tensor:
    """Vote map [B,C,H,W] int32 with the compiled operator of the tensors' device."""
    p = params
    return _ops().hough_vote_counts(
        labels, vertex, intrinsics, extents, p.label_threshold, p.skip_pixels, p.inlier_threshold,
        p.check_same_label, p.same_label_samples, p.same_label_fraction, p.box_factor)
