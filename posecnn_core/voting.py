"""PoseCNN Hough voting: object centres, depths and boxes from the label and vertex maps.

This module is the PyTorch reference (the oracle) of PoseCNN-PyTorch's (PT's) voting kernel, reproduced rule for
rule; the compiled operators in ``cuda_ops/csrc/hough_voting*`` implement the same definition with the same
per-element functions (``hough_voting_common.h``) and are tested against it. The definition, with every rule and
its float32 operation order, is ``docs/voting.md``; in short (inputs: ``labels`` int ``[B,H,W]``, ``vertex``
``[B,3C,H,W]`` read as float32, ``intrinsics`` ``[3,3]`` or ``[B,3,3]`` and ``extents`` ``[C,3]`` read as float32):

1. Voters: for image b and class c >= 1 with more than ``label_threshold`` pixels, every ``skip_pixels``-th pixel
   of the class in row-major order. Voter (x, y) has direction (u, v) = vertex[3c:3c+2] and depth
   d = exp(vertex[3c+2]).
2. Voter p votes for cell (cx, cy) when the cosine between (u, v) and (cx − x, cy − y) exceeds
   ``inlier_threshold``; with ``check_same_label`` (PT: always) when at least ``same_label_fraction`` of the
   samples (int(x + i/S·dx), int(y + i/S·dy)), i = 1..S, carry class c; and when |dx| < thr and |dy| < thr
   (a square window), thr = ``box_factor`` · max(w, h) of the class's 3D box projected at depth d on the optical
   axis (w = maxX − minX + 1).
3. Per cell: votes V = number of such voters; depth = their mean d; box half-size = max |dx|, |dy| over the
   voters that pass 2 with thr recomputed at the mean depth.
4. Peaks (``vote_threshold`` given): V > vote_threshold, box width and height > 0, no cell of the ``window`` ×
   ``window`` neighbourhood (clipped to the image) with more votes, in test mode none with equal votes and a larger
   linear index, V / (box w · box h) >= ``per_threshold``; at most ``max_peaks // B`` per image, first in
   (class, row-major) order. Single-instance mode (``vote_threshold`` None): the first maximum of each class.
   No NMS inside voting. Training mode keeps ties and emits each peak with 8 copies shifted by ±5 %.

The reference never materialises voters × image: for a voter and a row, the cells it can vote for lie in the
window and, but for rounding, in an interval bounded by the cone's edge rays; that interval is computed in float64,
widened by two cells (the whole window row for |dy| <= 2, where the cone edge can run along the row), and every
cell in it is tested with the exact float32 predicate.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["VotingParams", "VotingOutput", "hough_voting", "vote_counts", "expand_training_rois",
           "prepare_inputs", "project_threshold"]

BACKENDS = ("auto", "torch", "cpp", "cuda")
_PAIR_CHUNK = 1 << 18   # (voter, cell) or (candidate, voter) pairs per vectorised chunk
_EXACT_ROWS = 2         # rows with |dy| <= this are scanned over the whole window row
_MARGIN = 2             # cells added on both sides of the analytic cone interval


@dataclass(frozen=True)
class VotingParams:
    """Hough voting parameters; defaults are PoseCNN-PyTorch's test values (``docs/voting.md``).

    ``check_same_label=False`` is the occlusion-robust option (votes may cross other labels); ``mode="train"`` is
    PT's training mode (ties kept, 9 RoIs per peak; PT trains with ``label_threshold=100``).
    """

    label_threshold: int = 200
    skip_pixels: int = 10
    inlier_threshold: float = 0.9
    vote_threshold: int | None = 10
    per_threshold: float = 0.01
    window: int = 7
    max_peaks: int = 128
    check_same_label: bool = True
    same_label_samples: int = 10
    same_label_fraction: float = 0.5
    box_factor: float = 0.6
    mode: str = "test"

    def __post_init__(self) -> None:
        def integer(name: str, low: int) -> None:
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < low:
                raise ValueError(f"VotingParams.{name} must be an integer >= {low}, got {val!r}")

        def real(name: str, low: float, high: float, high_open: bool = False) -> None:
            val = getattr(self, name)
            ok = isinstance(val, (int, float, np.floating)) and not isinstance(val, bool) and math.isfinite(val)
            ok = ok and low <= val and (val < high if high_open else val <= high)
            if not ok:
                bracket = ")" if high_open else "]"
                raise ValueError(f"VotingParams.{name} must be a finite number in [{low}, {high}{bracket}, got {val!r}")

        integer("label_threshold", 0)
        integer("skip_pixels", 1)
        real("inlier_threshold", 0.0, 1.0, high_open=True)
        if self.vote_threshold is not None:
            integer("vote_threshold", 0)
        real("per_threshold", 0.0, math.inf, high_open=True)
        integer("window", 1)
        if self.window % 2 != 1:
            raise ValueError(f"VotingParams.window must be odd, got {self.window}")
        integer("max_peaks", 1)
        if not isinstance(self.check_same_label, bool):
            raise ValueError(f"VotingParams.check_same_label must be a bool, got {self.check_same_label!r}")
        integer("same_label_samples", 1)
        real("same_label_fraction", 0.0, 1.0)
        real("box_factor", 0.0, math.inf, high_open=True)
        if self.mode not in ("test", "train"):
            raise ValueError(f"VotingParams.mode must be 'test' or 'train', got {self.mode!r}")


class VotingOutput(NamedTuple):
    """Voting result: ``rois`` [N,7] (b, c, x1, y1, x2, y2, votes), ``centers`` [N,2] (x, y),
    ``translations`` [N,3] (metres, camera frame); all float32, N may be 0."""

    rois: torch.Tensor
    centers: torch.Tensor
    translations: torch.Tensor


# ----------------------------------------------------------------------------------------------------------------
# input handling


def _params(params: VotingParams | None, overrides: dict) -> VotingParams:
    if params is None:
        params = VotingParams()
    elif not isinstance(params, VotingParams):
        raise TypeError(f"params must be a VotingParams or None, got {type(params).__name__}")
    if overrides:
        names = {f.name for f in dataclasses.fields(VotingParams)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown voting parameter(s): {', '.join(unknown)}")
        params = dataclasses.replace(params, **overrides)
    return params


def prepare_inputs(labels: torch.Tensor, vertex: torch.Tensor, intrinsics: torch.Tensor,
                   extents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate and normalise the voting inputs.

    Returns ``labels`` int64 [B,H,W], ``vertex`` float32 [B,3C,H,W], ``intrinsics`` float32 [B,3,3] and
    ``extents`` float32 [C,3] (PT keeps both in float32), all contiguous on the device of ``labels``.
    """
    for name, t in (("labels", labels), ("vertex", vertex), ("intrinsics", intrinsics), ("extents", extents)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if labels.dim() != 3:
        raise ValueError(f"labels must be [B,H,W], got shape {tuple(labels.shape)}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    B, H, W = labels.shape
    if vertex.dim() != 4:
        raise ValueError(f"vertex must be [B,3C,H,W], got shape {tuple(vertex.shape)}")
    if not vertex.is_floating_point():
        raise TypeError(f"vertex must be a floating tensor, got {vertex.dtype}")
    if vertex.shape[0] != B or vertex.shape[2] != H or vertex.shape[3] != W:
        raise ValueError(f"vertex {tuple(vertex.shape)} does not match labels {tuple(labels.shape)} in B, H, W")
    if vertex.device != labels.device:
        raise ValueError(f"vertex is on {vertex.device} but labels on {labels.device}")
    if extents.dim() != 2 or extents.shape[1] != 3:
        raise ValueError(f"extents must be [C,3], got shape {tuple(extents.shape)}")
    C = extents.shape[0]
    if vertex.shape[1] != 3 * C:
        raise ValueError(f"vertex has {vertex.shape[1]} channels but extents has C={C} classes (expected 3C={3 * C})")
    if not extents.is_floating_point():
        raise TypeError(f"extents must be a floating tensor, got {extents.dtype}")
    # the small tensors are checked where they are and then moved: a host tensor (pinned, for a truly
    # asynchronous copy) is checked without waiting for the GPU
    ext = extents.detach().to(torch.float32)
    if not bool(torch.isfinite(ext).all()) or bool((ext < 0).any()):
        raise ValueError("extents must be finite and >= 0")
    ext = ext.to(labels.device, non_blocking=True).contiguous()
    if intrinsics.dim() == 2:
        intrinsics = intrinsics.unsqueeze(0).expand(B, 3, 3)
    if intrinsics.dim() != 3 or intrinsics.shape[1:] != (3, 3) or intrinsics.shape[0] != B:
        raise ValueError(f"intrinsics must be [3,3] or [B,3,3] with B={B}, got shape {tuple(intrinsics.shape)}")
    K = intrinsics.detach().to(torch.float32)
    f = torch.stack([K[:, 0, 0], K[:, 1, 1]], 1)
    pp = torch.stack([K[:, 0, 2], K[:, 1, 2]], 1)
    if not bool(torch.isfinite(f).all()) or not bool((f > 0).all()) or not bool(torch.isfinite(pp).all()):
        raise ValueError("intrinsics: fx and fy must be finite and > 0, px and py finite (got zeros, NaN or inf)")
    K = K.to(labels.device, non_blocking=True).contiguous()
    lab = labels.detach().to(torch.int64).contiguous()
    vtx = vertex.detach().to(torch.float32).contiguous()
    return lab, vtx, K, ext


# ----------------------------------------------------------------------------------------------------------------
# the per-element rules (float32, PT's operation order; hough_voting_common.h has the same functions)

_F32 = torch.float32


def _f32(value: float, device: torch.device) -> torch.Tensor:
    return torch.tensor(value, dtype=_F32, device=device)


def project_threshold(extent: torch.Tensor, depth: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor,
                      px: torch.Tensor, py: torch.Tensor, factor: float) -> torch.Tensor:
    """PT's ``project_box``: window half-size thr = factor · max(w, h) in float32.

    ``extent`` [..., 3] and ``depth``, ``fx``.. [...] float32. The 8 corners (±ex/2, ±ey/2, d ± ez/2) are projected
    with x = fx·(X/Z) + px, y = fy·(Y/Z) + py; w = maxX − minX + 1, h = maxY − minY + 1 (min/max starting at ±1e8
    and ignoring NaN, like fmin/fmax).
    """
    half = extent * 0.5
    xs, ys = [], []
    for sz in (1.0, -1.0):
        z = half[..., 2] * sz + depth  # zHalf + d, then -zHalf + d
        for sx, sy in ((1.0, 1.0), (-1.0, 1.0), (1.0, -1.0), (-1.0, -1.0)):
            xs.append(fx * ((half[..., 0] * sx) / z) + px)
            ys.append(fy * ((half[..., 1] * sy) / z) + py)
    big = torch.full_like(depth, 1e8)
    min_x, max_x, min_y, max_y = big, -big, big, -big
    for x, y in zip(xs, ys):
        min_x, max_x = torch.fmin(min_x, x), torch.fmax(max_x, x)
        min_y, max_y = torch.fmin(min_y, y), torch.fmax(max_y, y)
    w = (max_x - min_x) + 1.0
    h = (max_y - min_y) + 1.0
    return torch.fmax(w, h) * _f32(factor, depth.device)


def _window_reach(thr: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Largest integer offset k with k < thr (ceil(thr) − 1), −1 when thr is not > 0, capped at max(H, W)."""
    t = thr.double()
    k = torch.where(t > 0, torch.ceil(t.clamp(max=float(max(H, W)) + 1.0)) - 1.0, torch.full_like(t, -1.0))
    return k.long().clamp(max=max(H, W))


class _Voters(NamedTuple):
    slot: torch.Tensor  # int64, index of the voter's (b, c) in the participating list
    b: torch.Tensor
    c: torch.Tensor
    x: torch.Tensor     # int64 column
    y: torch.Tensor     # int64 row
    u: torch.Tensor     # float32 direction
    v: torch.Tensor
    n1: torch.Tensor    # float32 |(u, v)|
    d: torch.Tensor     # float32 depth
    thr: torch.Tensor   # float32 window half-size at d
    reach: torch.Tensor  # int64 window reach (see _window_reach)


def _sqrt_f32(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded float32 square root (IEEE, as C's sqrtf and numpy give it). torch.sqrt of float32 on
    the CPU may be 1 ulp off (its vectorised kernel): e.g. sqrt(0.58675873) gives 0.7660018 instead of 0.76600176,
    enough to flip a cosine that sits on the inlier threshold. Through float64 the result is exact (53 >= 2 * 24 + 2
    bits: rounding twice cannot differ from rounding once for a square root)."""
    return torch.sqrt(x.double()).to(_F32)


def _direction_ok(vt: _Voters, i: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
                  inlier: torch.Tensor) -> torch.Tensor:
    """cos((u, v), (cx − x, cy − y)) > inlier in float32: dot / (|n|·|d|), NaN (same cell, zero n) never passes."""
    dx = (cx - vt.x[i]).to(_F32)
    dy = (cy - vt.y[i]).to(_F32)
    n2 = _sqrt_f32(dx * dx + dy * dy)
    dot = vt.u[i] * dx + vt.v[i] * dy
    return dot / (vt.n1[i] * n2) > inlier


def _same_label_ok(labels: torch.Tensor, vt: _Voters, i: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
                   p: VotingParams) -> torch.Tensor:
    """PT's sampling: q_i = (int(x + i/S·dx), int(y + i/S·dy)), i = 1..S (float32, truncation toward zero);
    the vote stands unless count/S < same_label_fraction."""
    _, H, W = labels.shape
    S = p.same_label_samples
    dev = labels.device
    step = torch.arange(1, S + 1, device=dev, dtype=_F32) / _f32(float(S), dev)  # [S]
    x, y = vt.x[i].unsqueeze(-1), vt.y[i].unsqueeze(-1)
    dx = (cx.unsqueeze(-1) - x).to(_F32)
    dy = (cy.unsqueeze(-1) - y).to(_F32)
    qx = (x.to(_F32) + step * dx).trunc().long()
    qy = (y.to(_F32) + step * dy).trunc().long()
    inside = (qx >= 0) & (qx < W) & (qy >= 0) & (qy < H)
    lab = labels[vt.b[i].unsqueeze(-1), qy.clamp(0, H - 1), qx.clamp(0, W - 1)]
    count = (inside & (lab == vt.c[i].unsqueeze(-1))).sum(-1)
    ratio = count.to(_F32) / _f32(float(S), dev)
    return ~(ratio.double() < p.same_label_fraction)


def _in_window(vt: _Voters, i: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    return ((vt.x[i] - cx).abs().to(_F32) < thr) & ((vt.y[i] - cy).abs().to(_F32) < thr)


def _label_and_direction(labels: torch.Tensor, vt: _Voters, i: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
                         p: VotingParams) -> torch.Tensor:
    ok = _direction_ok(vt, i, cx, cy, _f32(p.inlier_threshold, labels.device))
    if p.check_same_label:
        ok = ok & _same_label_ok(labels, vt, i, cx, cy, p)
    return ok


# ----------------------------------------------------------------------------------------------------------------
# voters


def _participating(labels: torch.Tensor, C: int, label_threshold: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (b, c) pixel counts [B*C] and the sorted keys b*C+c of the participating pairs."""
    B = labels.shape[0]
    lab = labels.reshape(B, -1)
    valid = (lab >= 1) & (lab < C)
    key = (torch.arange(B, device=labels.device).unsqueeze(1) * C + lab)[valid]
    counts = torch.bincount(key, minlength=B * C)
    keys = torch.nonzero(counts > label_threshold).squeeze(1)
    return counts, keys


def _select_voters(labels: torch.Tensor, vertex: torch.Tensor, K: torch.Tensor, extents: torch.Tensor,
                   p: VotingParams, keys: torch.Tensor, counts: torch.Tensor) -> _Voters:
    """The voting pixels grouped by slot, row-major within a slot; pixels that can never vote (zero or non-finite
    direction, a window that is not > 0) are dropped — they would not change any count."""
    B, H, W = labels.shape
    C = extents.shape[0]
    dev = labels.device
    flat = labels.reshape(-1)
    pix = torch.nonzero((flat >= 1) & (flat < C)).squeeze(1)  # row-major within each image, images in order
    key = (pix // (H * W)) * C + flat[pix]
    key, order = torch.sort(key, stable=True)
    pix = pix[order]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(key.numel(), device=dev) - starts[key]
    take = (counts[key] > p.label_threshold) & (rank % p.skip_pixels == 0)
    key, pix = key[take], pix[take]
    b = pix // (H * W)
    rem = pix % (H * W)
    c = key % C
    vflat = vertex.reshape(B, 3 * C, H * W)
    u = vflat[b, 3 * c, rem]
    v = vflat[b, 3 * c + 1, rem]
    d = torch.exp(vflat[b, 3 * c + 2, rem].double()).to(_F32)
    n1 = _sqrt_f32(u * u + v * v)
    Kb = K[b]
    thr = project_threshold(extents[c], d, Kb[:, 0, 0], Kb[:, 1, 1], Kb[:, 0, 2], Kb[:, 1, 2], p.box_factor)
    reach = _window_reach(thr, H, W)
    ok = torch.isfinite(n1) & (n1 > 0) & (reach >= 0)
    slot = torch.searchsorted(keys, key)
    return _Voters(slot[ok], b[ok], c[ok], rem[ok] % W, rem[ok] // W, u[ok], v[ok], n1[ok], d[ok], thr[ok],
                   reach[ok])


# ----------------------------------------------------------------------------------------------------------------
# vote accumulation


def _cone_edges(vt: _Voters, inlier: float) -> tuple[torch.Tensor, ...]:
    """Unit edge rays of the cone (float64): the direction rotated by ± acos(inlier)."""
    ux, uy = vt.u.double() / vt.n1.double(), vt.v.double() / vt.n1.double()
    ca, sa = inlier, math.sqrt(1.0 - inlier * inlier)
    return ux * ca - uy * sa, ux * sa + uy * ca, ux * ca + uy * sa, -ux * sa + uy * ca  # e1 (x, y), e2 (x, y)


def _candidate_columns(vt: _Voters, edges: tuple[torch.Tensor, ...], i: torch.Tensor, y: torch.Tensor,
                       W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns [lo, hi] that may hold cells voter ``i`` votes for on row ``y`` (a superset; empty when lo > hi)."""
    x, reach = vt.x[i], vt.reach[i]
    lo = (x - reach).clamp(min=0)
    hi = (x + reach).clamp(max=W - 1)
    dy_i = y - vt.y[i]
    e1x, e1y, e2x, e2y = (e[i] for e in edges)
    dy = dy_i.double()
    big = float(W + 1)
    L = torch.full_like(dy, -big)
    R = torch.full_like(dy, big)
    bA = e2x * dy / torch.where(e2y == 0, torch.ones_like(e2y), e2y)  # cross(e2, d) > 0 <=> e2x·dy − e2y·s > 0
    R = torch.where(e2y > 0, torch.minimum(R, bA), R)
    L = torch.where(e2y < 0, torch.maximum(L, bA), L)
    bB = dy * e1x / torch.where(e1y == 0, torch.ones_like(e1y), e1y)  # cross(d, e1) > 0 <=> s·e1y − dy·e1x > 0
    L = torch.where(e1y > 0, torch.maximum(L, bB), L)
    R = torch.where(e1y < 0, torch.minimum(R, bB), R)
    empty = ((e2y == 0) & ~(e2x * dy > 0)) | ((e1y == 0) & ~(-dy * e1x > 0)) | (L > R)
    xd = x.double()
    clo = torch.floor(torch.clamp(xd + L, -big, 2 * big)).long() - _MARGIN
    chi = torch.ceil(torch.clamp(xd + R, -big, 2 * big)).long() + _MARGIN
    exact_row = dy_i.abs() <= _EXACT_ROWS
    lo = torch.where(exact_row, lo, torch.maximum(lo, clo))
    hi = torch.where(exact_row, hi, torch.minimum(hi, chi))
    hi = torch.where(empty & ~exact_row, lo - 1, hi)
    return lo, hi


def _chunks(lengths: torch.Tensor, budget: int):
    """Split items with ``lengths`` into consecutive ranges whose total length is about ``budget``."""
    n = lengths.numel()
    if n == 0:
        return
    cum = torch.cumsum(lengths, 0).cpu()
    start = 0
    while start < n:
        base = int(cum[start - 1]) if start > 0 else 0
        end = int(torch.searchsorted(cum, base + budget, right=True))
        end = min(max(end, start + 1), n)
        yield start, end
        start = end


def _expand(counts: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For items with ``counts``: (item index, offsets[item] + j) for j < counts[item]."""
    idx = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    first = torch.cumsum(counts, 0) - counts
    j = torch.arange(idx.numel(), device=counts.device) - first[idx]
    return idx, offsets[idx] + j


def _accumulate(labels: torch.Tensor, vt: _Voters, n_slots: int, p: VotingParams) -> torch.Tensor:
    """Vote counts [n_slots, H, W] int32 for the participating (b, c) slots."""
    _, H, W = labels.shape
    dev = labels.device
    inlier = float(np.float32(p.inlier_threshold))
    edges = _cone_edges(vt, inlier)
    y0 = (vt.y - vt.reach).clamp(min=0)
    y1 = (vt.y + vt.reach).clamp(max=H - 1)
    rows = (y1 - y0 + 1).clamp(min=0)
    votes = torch.zeros(n_slots * H * W, dtype=torch.int32, device=dev)
    for a, e in _chunks(rows, _PAIR_CHUNK):
        j, y = _expand(rows[a:e], y0[a:e])
        i = j + a
        lo, hi = _candidate_columns(vt, edges, i, y, W)
        width = (hi - lo + 1).clamp(min=0)
        per_cell = p.same_label_samples if p.check_same_label else 1
        for a2, e2 in _chunks(width, max(_PAIR_CHUNK // per_cell, 1)):
            k, x = _expand(width[a2:e2], lo[a2:e2])
            ii, yy = i[a2:e2][k], y[a2:e2][k]
            ok = _direction_ok(vt, ii, x, yy, _f32(p.inlier_threshold, dev))
            ok &= _in_window(vt, ii, x, yy, vt.thr[ii])
            if p.check_same_label:
                sel = torch.nonzero(ok).squeeze(1)
                ok[sel] = _same_label_ok(labels, vt, ii[sel], x[sel], yy[sel], p)
            cell = (vt.slot[ii] * H + yy) * W + x
            votes.index_add_(0, cell[ok], torch.ones(int(ok.sum()), dtype=torch.int32, device=dev))
    return votes.view(n_slots, H, W)


# ----------------------------------------------------------------------------------------------------------------
# peaks and their statistics


def _peak_cells(V: torch.Tensor, p: VotingParams) -> torch.Tensor:
    """Mask [S, H, W] of the cells that pass the vote tests: V > vote_threshold, no larger V in the window, and in
    test mode no equal V at a larger linear index (the tie goes to the bottom-right)."""
    S, H, W = V.shape
    half = p.window // 2
    big = torch.iinfo(torch.int32).min
    padded = torch.nn.functional.pad(V, (half, half, half, half), value=big)
    ok = V > p.vote_threshold
    for oy in range(-half, half + 1):
        for ox in range(-half, half + 1):
            if ox == 0 and oy == 0:
                continue
            other = padded[:, half + oy:half + oy + H, half + ox:half + ox + W]
            ok &= ~(other > V)
            if p.mode == "test" and (oy > 0 or (oy == 0 and ox > 0)):
                ok &= ~(other == V)
    return ok


class _Stats(NamedTuple):
    count: torch.Tensor   # int64 votes recounted
    depth: torch.Tensor   # float32 mean depth
    bw: torch.Tensor      # float32 box width 2·max|dx| (−2 when no voter is in the box window)
    bh: torch.Tensor      # float32 box height


def _peak_stats(labels: torch.Tensor, vt: _Voters, K: torch.Tensor, extents: torch.Tensor,
                slot_start: torch.Tensor, slot: int, b: int, c: int, x: torch.Tensor, y: torch.Tensor,
                p: VotingParams) -> _Stats:
    """PT's per-cell statistics for cells (x, y) of ``slot``: mean depth of the voters, then the box pass with the
    window recomputed at that mean depth. Depths are summed in float64 in voter order."""
    a, e = int(slot_start[slot]), int(slot_start[slot + 1])
    nv = e - a
    dev = labels.device
    n = x.numel()
    count = torch.zeros(n, dtype=torch.int64, device=dev)
    zsum = torch.zeros(n, dtype=torch.float64, device=dev)
    bw = torch.full((n,), -1.0, dtype=_F32, device=dev)
    bh = torch.full((n,), -1.0, dtype=_F32, device=dev)
    if nv and n:
        step = max(_PAIR_CHUNK // (nv * (p.same_label_samples if p.check_same_label else 1)), 1)
        vi = torch.arange(a, e, device=dev)
        kb = K[b]
        for s in range(0, n, step):
            xs, ys = x[s:s + step].unsqueeze(1), y[s:s + step].unsqueeze(1)
            ii = vi.unsqueeze(0).expand(xs.shape[0], nv)
            base = _label_and_direction(labels, vt, ii, xs, ys, p)
            ok = base & _in_window(vt, ii, xs, ys, vt.thr[ii])
            count[s:s + step] = ok.sum(1)
            zsum[s:s + step] = torch.cumsum(torch.where(ok, vt.d[ii].double(), 0.0), dim=1)[:, -1]
            cnt = count[s:s + step].clamp(min=1).double()
            mean = (zsum[s:s + step] / cnt).to(_F32)
            thr_c = project_threshold(extents[c].expand(mean.shape[0], 3), mean, kb[0, 0], kb[1, 1], kb[0, 2],
                                      kb[1, 2], p.box_factor)
            box = base & _in_window(vt, ii, xs, ys, thr_c.unsqueeze(1))
            adx = (vt.x[ii] - xs).abs().to(_F32)
            ady = (vt.y[ii] - ys).abs().to(_F32)
            neg = torch.full_like(adx, -1.0)
            bw[s:s + step] = torch.where(box, adx, neg).amax(1)
            bh[s:s + step] = torch.where(box, ady, neg).amax(1)
    mean = torch.where(count > 0, (zsum / count.clamp(min=1).double()).to(_F32), torch.zeros_like(bw))
    return _Stats(count, mean, bw * 2.0, bh * 2.0)


def _reference(labels: torch.Tensor, vertex: torch.Tensor, K: torch.Tensor, extents: torch.Tensor,
               p: VotingParams) -> VotingOutput:
    B, H, W = labels.shape
    C = extents.shape[0]
    dev = labels.device
    counts, keys = _participating(labels, C, p.label_threshold)
    vt = _select_voters(labels, vertex, K, extents, p, keys, counts)
    n_slots = keys.numel()
    V = _accumulate(labels, vt, n_slots, p)
    slot_start = torch.cumsum(torch.bincount(vt.slot, minlength=n_slots), 0)
    slot_start = torch.cat([slot_start.new_zeros(1), slot_start]).cpu()
    multi = p.vote_threshold is not None
    peaks = _peak_cells(V, p) if multi and n_slots else None
    cap = max(p.max_peaks // B, 1)
    taken = [0] * B
    rows: list[torch.Tensor] = []
    for s in range(n_slots):
        key = int(keys[s])
        b, c = key // C, key % C
        if multi:
            cells = torch.nonzero(peaks[s].reshape(-1)).squeeze(1)  # row-major
        else:
            flat = V[s].reshape(-1)
            arg = int(torch.argmax(flat))  # the first maximum
            cells = torch.tensor([arg], device=dev) if int(flat[arg]) > 0 else flat.new_zeros(0, dtype=torch.long)
        if cells.numel() == 0:
            continue
        x, y = cells % W, cells // W
        votes = V[s].reshape(-1)[cells]
        st = _peak_stats(labels, vt, K, extents, slot_start, s, b, c, x, y, p)
        if multi:
            vf = votes.to(_F32)
            keep = (st.bw > 0) & (st.bh > 0) & ~(vf / (st.bh * st.bw) < _f32(p.per_threshold, dev))
            idx = torch.nonzero(keep).squeeze(1)[: cap - taken[b]]
        else:
            idx = torch.arange(cells.numel(), device=dev)
        if idx.numel() == 0:
            continue
        taken[b] += idx.numel()
        x, y, votes = x[idx], y[idx], votes[idx]
        tz, bw, bh = st.depth[idx], st.bw[idx], st.bh[idx]
        xf, yf = x.to(_F32), y.to(_F32)
        kb = K[b]
        rx = (xf - kb[0, 2]) / kb[0, 0]
        ry = (yf - kb[1, 2]) / kb[1, 1]
        n = idx.numel()
        rows.append(torch.stack([
            torch.full((n,), float(b), dtype=_F32, device=dev), torch.full((n,), float(c), dtype=_F32, device=dev),
            xf - bw * 0.5, yf - bh * 0.5, xf + bw * 0.5, yf + bh * 0.5, votes.to(_F32),
            xf, yf, rx * tz, ry * tz, tz], dim=1))
    if not rows:
        return VotingOutput(torch.zeros(0, 7, device=dev), torch.zeros(0, 2, device=dev),
                            torch.zeros(0, 3, device=dev))
    out = torch.cat(rows)
    return VotingOutput(out[:, :7].contiguous(), out[:, 7:9].contiguous(), out[:, 9:12].contiguous())


# ----------------------------------------------------------------------------------------------------------------
# training mode

# PT's order of the 8 shifted copies of a training RoI: (x, y) shift signs in units of 5 % of the box size.
_TRAIN_SHIFTS = ((-1, -1), (1, -1), (-1, 1), (1, 1), (0, -1), (-1, 0), (0, 1), (1, 0))


def expand_training_rois(out: VotingOutput) -> VotingOutput:
    """PT's training-mode output: each peak's row followed by 8 copies of its box shifted by ±5 % of its width
    and height (order (−,−), (+,−), (−,+), (+,+), (0,−), (−,0), (0,+), (+,0)); centres and translations repeat.

    As in PT's kernel, the shifted x1 = x1 + s·0.05·w is computed in float64 and stored as float32, and
    x2 = x1' + w in float32 (w = x2 − x1 of the peak's box).
    """
    n = out.rois.shape[0]
    if n == 0:
        return out
    rois = out.rois.float()
    ww = rois[:, 4] - rois[:, 2]
    hh = rois[:, 5] - rois[:, 3]
    copies = [rois]
    for sx, sy in _TRAIN_SHIFTS:
        r = rois.clone()
        r[:, 2] = (rois[:, 2].double() + sx * 0.05 * ww.double()).float()
        r[:, 3] = (rois[:, 3].double() + sy * 0.05 * hh.double()).float()
        r[:, 4] = r[:, 2] + ww
        r[:, 5] = r[:, 3] + hh
        copies.append(r)
    rows = torch.stack(copies, dim=1).reshape(9 * n, 7)
    return VotingOutput(rows, out.centers.repeat_interleave(9, dim=0),
                        out.translations.repeat_interleave(9, dim=0))


# ----------------------------------------------------------------------------------------------------------------
# public face


def _resolve_backend(backend: str, device: torch.device, op: str) -> str:
    from posecnn_core.ops.backend import resolve_backend

    return resolve_backend(backend, device, op)


@torch.no_grad()
def hough_voting(labels: torch.Tensor, vertex: torch.Tensor, intrinsics: torch.Tensor, extents: torch.Tensor,
                 params: VotingParams | None = None, backend: str = "auto", **overrides) -> VotingOutput:
    """Detect object centres by Hough voting (definition in the module docstring and ``docs/voting.md``).

    ``overrides`` are ``VotingParams`` fields replacing those of ``params``. ``backend``: "torch" (this reference),
    "cpp"/"cuda" (compiled operators), "auto" (compiled when available for the device, else the reference).
    Output order: image, class, then row-major (y, x); in training mode each peak is followed by its 8 copies.
    """
    p = _params(params, overrides)
    lab, vtx, K, ext = prepare_inputs(labels, vertex, intrinsics, extents)
    if _resolve_backend(backend, lab.device, "hough_voting") == "ext":
        from posecnn_core.ops.voting_ext import hough_voting_ext

        out = VotingOutput(*hough_voting_ext(lab, vtx, K, ext, p))
    else:
        out = _reference(lab, vtx, K, ext, p)
    return expand_training_rois(out) if p.mode == "train" else out


@torch.no_grad()
def vote_counts(labels: torch.Tensor, vertex: torch.Tensor, intrinsics: torch.Tensor, extents: torch.Tensor,
                params: VotingParams | None = None, backend: str = "torch", **overrides) -> torch.Tensor:
    """Vote map V [B,C,H,W] int32 (step 3 of the definition); zero for classes that do not take part."""
    p = _params(params, overrides)
    lab, vtx, K, ext = prepare_inputs(labels, vertex, intrinsics, extents)
    if _resolve_backend(backend, lab.device, "hough_vote_counts") == "ext":
        from posecnn_core.ops.voting_ext import hough_vote_counts_ext

        return hough_vote_counts_ext(lab, vtx, K, ext, p)
    B, H, W = lab.shape
    C = ext.shape[0]
    counts, keys = _participating(lab, C, p.label_threshold)
    vt = _select_voters(lab, vtx, K, ext, p, keys, counts)
    V = _accumulate(lab, vt, keys.numel(), p)
    out = torch.zeros(B * C, H, W, dtype=torch.int32, device=lab.device)
    out[keys] = V
    return out.view(B, C, H, W)
