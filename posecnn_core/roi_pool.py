"""RoI max pooling with the exact bin semantics of PoseCNN-PyTorch's (PT's) CUDA kernel.

``roi_max_pool_torch`` is the pure-PyTorch reference (differentiable through autograd); ``roi_max_pool`` is
the one public face and dispatches to a compiled extension when one is available.

Exact semantics (the oracle for the C++/CUDA twin)
--------------------------------------------------
Inputs: ``features`` [B, C, H, W], ``rois`` [R, 5] rows (b, x1, y1, x2, y2) in input-image pixels,
``P = output_size``, ``s = spatial_scale``. (PT's kernel reads the box from columns 2..5 of a 7-column
voting row; our rows hold the same box in columns 1..4, see docs/conventions.md.) All coordinate arithmetic
is IEEE float32, exactly as in PT's kernel: the RoI row and ``s`` are first rounded to float32.

For RoI r and output cell (c, ph, pw)::

    start_w = x1 * s            start_h = y1 * s            (float32, not rounded)
    end_w   = x2 * s            end_h   = y2 * s
    roi_w   = int(max(end_w - start_w + 1, 1))              (C truncation; the value is >= 1)
    roi_h   = int(max(end_h - start_h + 1, 1))
    bin_w   = float(roi_w) / float(P)                       (float32 division)
    bin_h   = float(roi_h) / float(P)
    hstart  = min(max(int(floor(ph * bin_h) + start_h), 0), H)
    hend    = min(max(int(ceil((ph + 1) * bin_h) + start_h), 0), H)
    wstart  = min(max(int(floor(pw * bin_w) + start_w), 0), W)
    wend    = min(max(int(ceil((pw + 1) * bin_w) + start_w), 0), W)

Here ``floor(.)``/``ceil(.)`` of the float32 product give an integer, which is added to the float32 start in
float32 and converted back with ``int(.)``, i.e. truncation toward zero (so -0.5 becomes 0, not -1).
The bin covers rows ``hstart <= h < hend`` and columns ``wstart <= w < wend`` of ``features[b, c]``:

    out[r, c, ph, pw] = 0                                       if hend <= hstart or wend <= wstart
                      = max of features[b, c, h, w] over the bin otherwise

The argmax (which receives the whole gradient of the output cell) is the first maximum in row-major scan order
(h outer, w inner). Gradients of several cells/RoIs landing on one input element add up.

Notes: with power-of-two scales (1/8, 1/16 in PoseCNN) every product above is exact, so the bins do not depend
on whether a compiler contracts ``a*b + c`` into a fused multiply-add; for other scales this reference uses
separate float32 roundings. Features are assumed finite: PT's kernel starts from -FLT_MAX and skips NaN, here a
NaN in a bin propagates. PT's own backward kernel recomputes bins with *rounded* RoI coordinates and can drop
gradient where those bins disagree with the forward's; this reference routes every cell's gradient to the
argmax the forward actually used.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["roi_bin_bounds", "roi_max_pool_torch", "roi_max_pool", "BACKENDS"]

from .ops.backend import BACKENDS

# Upper bound on the number of gathered feature elements held at once by the reference.
_CHUNK_ELEMENTS = 1 << 24


def _check_output_size(output_size: int) -> int:
    if isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 1:
        raise ValueError(f"output_size must be a positive int, got {output_size!r}")
    return output_size


def _check_scale(spatial_scale: float) -> float:
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, (int, float)):
        raise TypeError(f"spatial_scale must be a float, got {type(spatial_scale).__name__}")
    scale = float(spatial_scale)
    if not math.isfinite(scale) or scale <= 0.0:
        raise ValueError(f"spatial_scale must be finite and > 0, got {spatial_scale!r}")
    return scale


def _check_inputs(features: Tensor, rois: Tensor) -> None:
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if not isinstance(rois, Tensor):
        raise TypeError(f"rois must be a torch.Tensor, got {type(rois).__name__}")
    if features.dim() != 4:
        raise ValueError(f"features must be [B, C, H, W], got shape {tuple(features.shape)}")
    if features.shape[2] == 0 or features.shape[3] == 0:
        raise ValueError(f"features must have a non-empty H x W map, got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"features must be a floating tensor, got {features.dtype}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must be [R, 5] = (batch, x1, y1, x2, y2), got shape {tuple(rois.shape)}")
    if rois.is_complex() or rois.dtype == torch.bool:
        raise TypeError(f"rois must be a real tensor, got {rois.dtype}")
    if rois.device != features.device:
        raise ValueError(f"rois are on {rois.device} but features are on {features.device}")


def _check_batch_index(rois: Tensor, batch_size: int) -> Tensor:
    """Batch column as int64, after checking it holds integers in [0, batch_size)."""
    r = rois.detach()
    if r.numel() and not bool(torch.isfinite(r.to(torch.float64)).all()):
        raise ValueError("rois contain non-finite values")
    b = r[:, 0].to(torch.float64)
    if b.numel():
        if not bool((b == b.round()).all()):
            raise ValueError("rois[:, 0] (batch index) must hold integer values")
        lo, hi = int(b.min()), int(b.max())
        if lo < 0 or hi >= batch_size:
            raise ValueError(f"rois[:, 0] (batch index) must lie in [0, {batch_size}), got range [{lo}, {hi}]")
    return b.to(torch.int64)


def roi_bin_bounds(rois: Tensor, output_size: int, spatial_scale: float, height: int, width: int
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bin limits of PT's kernel: (hstart, hend, wstart, wend), each int64 [R, P], on ``rois.device``.

    A bin covers rows [hstart, hend) and columns [wstart, wend); see the module docstring for the formula.
    """
    P = _check_output_size(output_size)
    scale = torch.tensor(_check_scale(spatial_scale), dtype=torch.float32, device=rois.device)
    r = rois.detach().to(torch.float32)
    start_w, start_h = r[:, 1] * scale, r[:, 2] * scale
    end_w, end_h = r[:, 3] * scale, r[:, 4] * scale
    roi_w = torch.clamp((end_w - start_w) + 1.0, min=1.0).trunc()
    roi_h = torch.clamp((end_h - start_h) + 1.0, min=1.0).trunc()
    p = torch.arange(P, dtype=torch.float32, device=rois.device)
    bins = []
    for roi_len, start, limit in ((roi_h, start_h, height), (roi_w, start_w, width)):
        bin_size = (roi_len / float(P))[:, None]
        lo = torch.floor(p * bin_size)
        hi = torch.ceil((p + 1.0) * bin_size)
        lo = (lo + start[:, None]).trunc().clamp(0, limit).to(torch.int64)
        hi = (hi + start[:, None]).trunc().clamp(0, limit).to(torch.int64)
        bins += [lo, hi]
    return bins[0], bins[1], bins[2], bins[3]


def _chunks(kh: list[int], kw: list[int], per_cell: int) -> list[tuple[int, int, int, int]]:
    """Split RoIs into runs [i, j) whose gathered block (run length x Kh x Kw x per_cell) stays bounded."""
    out: list[tuple[int, int, int, int]] = []
    i, mh, mw = 0, 1, 1
    for j in range(len(kh)):
        nh, nw = max(mh, kh[j]), max(mw, kw[j])
        if j > i and (j + 1 - i) * nh * nw * per_cell > _CHUNK_ELEMENTS:
            out.append((i, j, mh, mw))
            i, nh, nw = j, max(1, kh[j]), max(1, kw[j])
        mh, mw = nh, nw
    out.append((i, len(kh), mh, mw))
    return out


def roi_max_pool_torch(features: Tensor, rois: Tensor, output_size: int = 7,
                       spatial_scale: float = 1.0) -> Tensor:
    """Reference RoI max pooling: [B, C, H, W] features, [R, 5] rois -> [R, C, P, P] (features' dtype).

    Exactly PT's kernel (module docstring). Gradients flow to ``features`` (to each cell's argmax), not to
    ``rois``. Memory is bounded by gathering RoIs in chunks; each bin is reduced with two first-index maxima
    (over w, then over h), which picks the row-major first maximum.
    """
    _check_inputs(features, rois)
    P = _check_output_size(output_size)
    scale = _check_scale(spatial_scale)
    B, C, H, W = features.shape
    batch = _check_batch_index(rois, B).to(features.device)
    hs, he, ws, we = roi_bin_bounds(rois, P, scale, H, W)
    kh = (he - hs).clamp(min=0)
    kw = (we - ws).clamp(min=0)
    kh_max = kh.amax(dim=1).tolist() if rois.shape[0] else []
    kw_max = kw.amax(dim=1).tolist() if rois.shape[0] else []

    feat = features.permute(0, 2, 3, 1)  # [B, H, W, C]: gathers read contiguous channels
    neg_inf = torch.tensor(float("-inf"), dtype=features.dtype, device=features.device)
    outs = []
    for i, j, Kh, Kw in _chunks(kh_max, kw_max, P * P * C):
        rows = hs[i:j, :, None] + torch.arange(Kh, device=features.device)  # [n, P, Kh]
        cols = ws[i:j, :, None] + torch.arange(Kw, device=features.device)  # [n, P, Kw]
        valid = (rows < he[i:j, :, None])[:, :, :, None, None] & (cols < we[i:j, :, None])[:, None, None]
        rows = rows.clamp(max=H - 1)
        cols = cols.clamp(max=W - 1)
        b = batch[i:j, None, None, None, None]
        g = feat[b, rows[:, :, :, None, None], cols[:, None, None, :, :]]  # [n, P, Kh, P, Kw, C]
        g = torch.where(valid[..., None], g, neg_inf)
        g = g.max(dim=4).values.max(dim=2).values  # [n, P(h), P(w), C]
        empty = ((kh[i:j] == 0)[:, :, None] | (kw[i:j] == 0)[:, None, :])[..., None]
        g = torch.where(empty, torch.zeros((), dtype=g.dtype, device=g.device), g)
        outs.append(g.permute(0, 3, 1, 2))
    return torch.cat(outs, dim=0) if len(outs) > 1 else outs[0].contiguous()


def roi_max_pool(features: Tensor, rois: Tensor, output_size: int = 7, spatial_scale: float = 1.0,
                 backend: str = "auto") -> Tensor:
    """RoI max pooling ([B, C, H, W], [R, 5] -> [R, C, P, P]) with PT's semantics (see module docstring).

    backend: "torch" = the reference; "cpp"/"cuda" = the compiled extension for CPU/CUDA tensors (RuntimeError
    when it is not built or lacks the op); "auto" = the extension when it provides ``roi_max_pool_forward`` for
    ``features.device.type``, else the reference.
    """
    from .ops.backend import resolve_backend

    if resolve_backend(backend, features.device, "roi_max_pool_forward") == "torch":
        return roi_max_pool_torch(features, rois, output_size, spatial_scale)
    _check_inputs(features, rois)
    _check_output_size(output_size)
    _check_scale(spatial_scale)
    from .ops.roi_pool_ext import roi_max_pool_ext

    return roi_max_pool_ext(features, rois, output_size, spatial_scale)
