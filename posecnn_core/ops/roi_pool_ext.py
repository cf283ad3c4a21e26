"""RoI max pooling through the compiled ``posecnn::roi_max_pool_*`` operators (C++ on CPU, CUDA on GPU).

Semantics are PoseCNN-PyTorch's kernel (see ``cuda_ops/csrc/roi_pool_common.h``); gradients flow to the features
(routed to each bin's argmax), not to the RoIs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from posecnn_core.ops.extension import has_op, load_error, load_ops

_FORWARD = "roi_max_pool_forward"
_BACKWARD = "roi_max_pool_backward"


class RoiMaxPoolFunction(torch.autograd.Function):
    """Autograd wrapper: ``apply(features, rois, pooled_h, pooled_w, spatial_scale) -> [R, C, pooled_h, pooled_w]``."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, rois: torch.Tensor, pooled_h: int, pooled_w: int,
                spatial_scale: float) -> torch.Tensor:
        output, argmax = torch.ops.posecnn.roi_max_pool_forward(features, rois, pooled_h, pooled_w, spatial_scale)
        ctx.save_for_backward(argmax, rois)
        ctx.input_shape = tuple(features.shape)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None]:
        argmax, rois = ctx.saved_tensors
        grad_features = None
        if ctx.needs_input_grad[0]:
            grad_features = torch.ops.posecnn.roi_max_pool_backward(grad_output.contiguous(), argmax, rois,
                                                                    *ctx.input_shape)
        return grad_features, None, None, None, None


def _pooled_size(output_size: int | tuple[int, int]) -> tuple[int, int]:
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"output_size must be a positive int or a pair of them, got {output_size!r}")
    return size  # type: ignore[return-value]


def roi_max_pool_ext(features: torch.Tensor, rois: torch.Tensor, output_size: int | tuple[int, int] = 7,
                     spatial_scale: float = 1.0 / 16.0, *, check_batch: bool = True) -> torch.Tensor:
    """Max-pool each RoI of ``rois`` [R, 5] = (batch, x1, y1, x2, y2) (input pixels) from ``features`` [B, C, H, W].

    ``spatial_scale`` maps input pixels to feature cells (1/16 for VGG conv5). Returns [R, C, PH, PW] in the
    features' dtype; empty bins are 0. Raises RuntimeError when the compiled operators are unavailable for the
    features' device, ValueError for a batch index outside [0, B) unless ``check_batch=False`` (that check reads
    the RoIs on the host, i.e. waits for the GPU; without it such a RoI yields empty bins).
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 4 or not features.is_floating_point():
        raise ValueError(f"features must be a floating-point [B, C, H, W] tensor, got "
                         f"{getattr(features, 'shape', type(features))}")
    if not isinstance(rois, torch.Tensor) or rois.dim() != 2 or rois.shape[1] != 5 or not rois.is_floating_point():
        raise ValueError(f"rois must be a floating-point [R, 5] tensor, got {getattr(rois, 'shape', type(rois))}")
    if rois.device != features.device:
        raise ValueError(f"rois ({rois.device}) and features ({features.device}) must be on the same device")
    pooled_h, pooled_w = _pooled_size(output_size)
    if not float(spatial_scale) > 0.0:
        raise ValueError(f"spatial_scale must be positive, got {spatial_scale!r}")
    if check_batch and rois.shape[0] > 0:
        batch = rois[:, 0].detach()
        if not bool(((batch >= 0) & (batch < features.shape[0])).all()):
            raise ValueError(f"rois[:, 0] holds batch indices outside [0, {features.shape[0]})")
    device_type = features.device.type
    if not load_ops():
        raise RuntimeError(f"compiled posecnn ops unavailable: {load_error()}")
    if not (has_op(_FORWARD, device_type) and has_op(_BACKWARD, device_type)):
        raise RuntimeError(f"compiled posecnn::{_FORWARD} has no kernel for device type {device_type!r}")
    return RoiMaxPoolFunction.apply(features, rois.detach(), pooled_h, pooled_w, float(spatial_scale))
