"""PoseCNN Hough voting: object centres, depths and boxes from the label and vertex maps.

This module is the PyTorch reference (the oracle); the compiled operators in ``cuda_ops/csrc/hough_voting*``
implement the same definition (see ``docs/voting.md``) and are checked against it.

Definition (inputs: ``labels`` int ``[B,H,W]``; ``vertex`` float ``[B,3C,H,W]``, read as float32; ``intrinsics``
``[3,3]`` or ``[B,3,3]``; ``extents`` ``[C,3]``, row 0 = background):

1. Voters. For image b and class c >= 1 whose pixel count > ``label_threshold``: the class's pixels in row-major
   order, those whose rank % ``skip_pixels`` == 0. Direction n = (vertex[3c], vertex[3c+1]) at the pixel, depth
   z = exp(vertex[3c+2]) (float64). A pixel whose n is zero or not finite, or whose z is not finite and > 0, does
   not vote. Radius r = ((radius_factor * max(fx, fy)) * max(extents[c])) / z. Labels outside [1, C) never vote.
2. Inlier predicate for voter p = (u, v) and cell (x, y) of the image, in float64: d = (x-u, y-v); inlier iff
   d != 0, |d|^2 <= r^2 and d.n > (inlier_threshold * |d|) * |n|. With ``check_same_label``, additionally at least
   ``same_label_fraction * S`` of the samples q_k = floor(p + d*k/(S+1) + 0.5), k = 1..S
   (S = ``same_label_samples``) lie inside the image and carry label c.
3. Votes V[b,c,y,x] = number of inlier voters.
4. Centres. Multi-instance mode (``vote_threshold`` not None): cells with V > vote_threshold and V equal to the
   maximum of V over the ``window`` x ``window`` neighbourhood clipped to the image. Over each centre's inlier
   voters: Tz = mean z, bw = max|u-x|, bh = max|v-y|; box = (x-bw, y-bh, x+bw, y+bh); kept if
   V / max(4*bw*bh, 1) >= per_threshold. Single-instance mode (``vote_threshold`` None): per (b, c) the first
   row-major argmax cell if its V > 0, same statistics, no per_threshold.
   Translation = (Tz*(x-px)/fx, Tz*(y-py)/fy, Tz).
5. NMS per (b, c): order by votes desc, then (y, x) row-major asc; a box whose IoU with a kept box > ``nms_iou`` is
   suppressed (IoU with areas (x2-x1)*(y2-y1), no +1; a zero-area box has IoU 0). Then at most ``max_instances``
   per image, by votes desc (stable). Output order: b, then c, then votes desc, then (y, x).

The reference never materialises voters x cells: for a voter the inlier cells of one image row form one contiguous
interval (cone of half-angle < 90 degrees, disk, line), computed analytically per (voter, row), its ends fixed
with the exact predicate, and accumulated with a difference array.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["VotingParams", "VotingOutput", "hough_voting", "vote_counts", "nms", "expand_training_rois"]

BACKENDS = ("auto", "torch", "cpp", "cuda")
_PAIR_CHUNK = 1 << 18  # (voter, row) pairs or (voter, cell) pairs per vectorised chunk


@dataclass(frozen=True)
class VotingParams:
    """Hough voting parameters; defaults are PoseCNN-PyTorch's test values (see the module docstring)."""

    label_threshold: int = 200
    skip_pixels: int = 10
    inlier_threshold: float = 0.9
    vote_threshold: int | None = 10
    per_threshold: float = 0.01
    window: int = 7
    max_instances: int = 128
    nms_iou: float = 0.5
    check_same_label: bool = False
    same_label_samples: int = 10
    same_label_fraction: float = 0.5
    radius_factor: float = 0.6
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
        integer("max_instances", 1)
        real("nms_iou", 0.0, 1.0)
        if not isinstance(self.check_same_label, bool):
            raise ValueError(f"VotingParams.check_same_label must be a bool, got {self.check_same_label!r}")
        integer("same_label_samples", 1)
        real("same_label_fraction", 0.0, 1.0)
        real("radius_factor", 0.0, math.inf, high_open=True)
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

    Returns ``labels`` int64 [B,H,W], ``vertex`` float32 [B,3C,H,W] (contiguous), ``intrinsics`` float64 [B,3,3]
    and ``extents`` float64 [C,3], all on the device of ``labels``.
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
    ext = extents.detach().to(device=labels.device, dtype=torch.float64)
    if not bool(torch.isfinite(ext).all()) or bool((ext < 0).any()):
        raise ValueError("extents must be finite and >= 0")
    if intrinsics.dim() == 2:
        intrinsics = intrinsics.unsqueeze(0).expand(B, 3, 3)
    if intrinsics.dim() != 3 or intrinsics.shape[1:] != (3, 3) or intrinsics.shape[0] != B:
        raise ValueError(f"intrinsics must be [3,3] or [B,3,3] with B={B}, got shape {tuple(intrinsics.shape)}")
    K = intrinsics.detach().to(device=labels.device, dtype=torch.float64).contiguous()
    f = torch.stack([K[:, 0, 0], K[:, 1, 1]], 1)
    pp = torch.stack([K[:, 0, 2], K[:, 1, 2]], 1)
    if not bool(torch.isfinite(f).all()) or not bool((f > 0).all()) or not bool(torch.isfinite(pp).all()):
        raise ValueError("intrinsics: fx and fy must be finite and > 0, px and py finite (got zeros, NaN or inf)")
    lab = labels.detach().to(torch.int64).contiguous()
    vtx = vertex.detach().to(torch.float32).contiguous()
    return lab, vtx, K, ext


# ----------------------------------------------------------------------------------------------------------------
# voters and the inlier predicate


class _Voters(NamedTuple):
    slot: torch.Tensor  # int64, index of the voter's (b, c) in the participating list
    b: torch.Tensor
    c: torch.Tensor
    u: torch.Tensor  # int64 column
    v: torch.Tensor  # int64 row
    nx: torch.Tensor  # float64 (float32 values)
    ny: torch.Tensor
    nn: torch.Tensor  # |n|
    z: torch.Tensor  # float64 depth
    r2: torch.Tensor  # float64 squared radius


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
    nx = vflat[b, 3 * c, rem].double()
    ny = vflat[b, 3 * c + 1, rem].double()
    z = torch.exp(vflat[b, 3 * c + 2, rem].double())
    ok = torch.isfinite(nx) & torch.isfinite(ny) & ((nx != 0) | (ny != 0)) & torch.isfinite(z) & (z > 0)
    b, c, rem, key, nx, ny, z = b[ok], c[ok], rem[ok], key[ok], nx[ok], ny[ok], z[ok]
    nn = torch.sqrt(nx * nx + ny * ny)
    f = torch.maximum(K[:, 0, 0], K[:, 1, 1])[b]
    emax = extents.max(dim=1).values[c]
    r = ((p.radius_factor * f) * emax) / z
    slot = torch.searchsorted(keys, key)
    return _Voters(slot, b, c, rem % W, rem // W, nx, ny, nn, z, r * r)


def _inlier(vt: _Voters, i: torch.Tensor, x: torch.Tensor, y: torch.Tensor, thr: float) -> torch.Tensor:
    """Exact float64 inlier predicate (without the same-label rule) of voters ``i`` for cells (x, y)."""
    dx = (x - vt.u[i]).double()
    dy = (y - vt.v[i]).double()
    d2 = dx * dx + dy * dy
    dot = dx * vt.nx[i] + dy * vt.ny[i]
    return (d2 > 0) & (d2 <= vt.r2[i]) & (dot > (thr * torch.sqrt(d2)) * vt.nn[i])


def _same_label(labels: torch.Tensor, vt: _Voters, i: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                p: VotingParams) -> torch.Tensor:
    """PoseCNN-PyTorch's rule: enough samples on the voter->cell segment carry the voter's label."""
    _, H, W = labels.shape
    S = p.same_label_samples
    k = torch.arange(1, S + 1, device=labels.device, dtype=torch.int64)
    u, v = vt.u[i].unsqueeze(-1), vt.v[i].unsqueeze(-1)
    dx, dy = (x.unsqueeze(-1) - u), (y.unsqueeze(-1) - v)
    qx = torch.floor(u.double() + (dx * k).double() / (S + 1) + 0.5).long()
    qy = torch.floor(v.double() + (dy * k).double() / (S + 1) + 0.5).long()
    inside = (qx >= 0) & (qx < W) & (qy >= 0) & (qy < H)
    lab = labels[vt.b[i].unsqueeze(-1), qy.clamp(0, H - 1), qx.clamp(0, W - 1)]
    hits = (inside & (lab == vt.c[i].unsqueeze(-1))).sum(-1)
    return hits.double() >= p.same_label_fraction * S


def _full_inlier(labels: torch.Tensor, vt: _Voters, i: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 p: VotingParams) -> torch.Tensor:
    ok = _inlier(vt, i, x, y, p.inlier_threshold)
    if p.check_same_label:
        ok = ok & _same_label(labels, vt, i, x, y, p)
    return ok


# ----------------------------------------------------------------------------------------------------------------
# vote accumulation: per (voter, row) interval


def _cone_edges(vt: _Voters, thr: float) -> tuple[torch.Tensor, ...]:
    ux, uy = vt.nx / vt.nn, vt.ny / vt.nn
    ca, sa = thr, math.sqrt(1.0 - thr * thr)
    return ux * ca - uy * sa, ux * sa + uy * ca, ux * ca + uy * sa, -ux * sa + uy * ca  # e1 (x, y), e2 (x, y)


def _row_ranges(vt: _Voters, edges: tuple[torch.Tensor, ...], ra: torch.Tensor, thr: float,
                H: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [y0, y1] that the voter's sector (cone within the disk) can reach, padded by one row."""
    _, e1y, _, e2y = edges
    zero = torch.zeros_like(ra)
    uy = vt.ny / vt.nn
    lo = torch.minimum(torch.minimum(zero, ra * e1y), ra * e2y)
    hi = torch.maximum(torch.maximum(zero, ra * e1y), ra * e2y)
    lo = torch.where(-uy >= thr, -ra, lo)
    hi = torch.where(uy >= thr, ra, hi)
    y0 = (torch.floor(vt.v.double() + lo).long() - 1).clamp(min=0)
    y1 = (torch.ceil(vt.v.double() + hi).long() + 1).clamp(max=H - 1)
    return y0, y1


def _intervals(vt: _Voters, edges: tuple[torch.Tensor, ...], ra: torch.Tensor, i: torch.Tensor, y: torch.Tensor,
               W: int, thr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns [lo, hi] of the inlier cells of voter ``i`` on row ``y`` (empty when lo > hi)."""
    e1x, e1y, e2x, e2y = (e[i] for e in edges)
    u = vt.u[i]
    dy = (y - vt.v[i]).double()
    ra_i = ra[i]
    hw = torch.sqrt(torch.clamp(ra_i * ra_i - dy * dy, min=0.0))
    L, R = -hw, hw
    bA = e2x * dy / e2y  # cross(e2, d) > 0  <=>  e2x*dy - e2y*s > 0
    R = torch.where(e2y > 0, torch.minimum(R, bA), R)
    L = torch.where(e2y < 0, torch.maximum(L, bA), L)
    bB = dy * e1x / e1y  # cross(d, e1) > 0  <=>  s*e1y - dy*e1x > 0
    L = torch.where(e1y > 0, torch.maximum(L, bB), L)
    R = torch.where(e1y < 0, torch.minimum(R, bB), R)
    empty = ((e2y == 0) & ~(e2x * dy > 0)) | ((e1y == 0) & ~(-dy * e1x > 0))
    ud = u.double()
    lo = torch.ceil(torch.clamp(ud + L, -1.0, float(W))).long().clamp(min=0)
    hi = torch.floor(torch.clamp(ud + R, -1.0, float(W))).long().clamp(max=W - 1)
    lo = torch.where(empty, torch.full_like(lo, W), lo)
    hi = torch.where(empty, torch.full_like(hi, -1), hi)
    # fix the ends with the exact predicate: expand while the neighbour is an inlier, shrink while the end is not
    while True:
        m = (lo >= 1) & _inlier(vt, i, lo - 1, y, thr)
        if not bool(m.any()):
            break
        lo = lo - m.long()
    while True:
        m = (hi <= W - 2) & _inlier(vt, i, hi + 1, y, thr)
        if not bool(m.any()):
            break
        hi = hi + m.long()
    while True:
        m = (lo <= hi) & ~_inlier(vt, i, lo, y, thr)
        if not bool(m.any()):
            break
        lo = lo + m.long()
    while True:
        m = (hi >= lo) & ~_inlier(vt, i, hi, y, thr)
        if not bool(m.any()):
            break
        hi = hi - m.long()
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
    thr = p.inlier_threshold
    ra = torch.clamp(torch.sqrt(vt.r2), max=float(H + W))
    edges = _cone_edges(vt, thr)
    y0, y1 = _row_ranges(vt, edges, ra, thr, H)
    rows = (y1 - y0 + 1).clamp(min=0)
    if p.check_same_label:
        votes = torch.zeros(n_slots * H * W, dtype=torch.int32, device=dev)
    else:
        diff = torch.zeros(n_slots * H * (W + 1), dtype=torch.int32, device=dev)
    for a, e in _chunks(rows, _PAIR_CHUNK):
        j, y = _expand(rows[a:e], y0[a:e])
        i = j + a
        lo, hi = _intervals(vt, edges, ra, i, y, W, thr)
        keep = lo <= hi
        i, y, lo, hi = i[keep], y[keep], lo[keep], hi[keep]
        if not p.check_same_label:
            base = (vt.slot[i] * H + y) * (W + 1)
            one = torch.ones_like(base, dtype=torch.int32)
            diff.index_add_(0, base + lo, one)
            diff.index_add_(0, base + hi + 1, -one)
            continue
        width = hi - lo + 1
        for a2, e2 in _chunks(width, max(_PAIR_CHUNK // p.same_label_samples, 1)):
            k, x = _expand(width[a2:e2], lo[a2:e2])
            ii, yy = i[a2:e2][k], y[a2:e2][k]
            ok = _same_label(labels, vt, ii, x, yy, p)
            cell = (vt.slot[ii] * H + yy) * W + x
            votes.index_add_(0, cell[ok], torch.ones(int(ok.sum()), dtype=torch.int32, device=dev))
    if p.check_same_label:
        return votes.view(n_slots, H, W)
    return torch.cumsum(diff.view(n_slots, H, W + 1), dim=2, dtype=torch.int32)[:, :, :W].contiguous()


# ----------------------------------------------------------------------------------------------------------------
# centres, statistics, NMS


def _local_maxima(V: torch.Tensor, window: int) -> torch.Tensor:
    Vf = V.float().unsqueeze(1)  # exact: counts < 2**24
    mx = torch.nn.functional.max_pool2d(Vf, window, stride=1, padding=window // 2)
    return (Vf == mx).squeeze(1)


def _centre_stats(labels: torch.Tensor, vt: _Voters, slot_start: torch.Tensor, slot: int, x: torch.Tensor,
                  y: torch.Tensor, p: VotingParams) -> tuple[torch.Tensor, ...]:
    """Inlier count, sum of z, max|u-x|, max|v-y| over the inlier voters of ``slot`` for centres (x, y)."""
    a, e = int(slot_start[slot]), int(slot_start[slot + 1])
    nv = e - a
    dev = labels.device
    n = x.numel()
    cnt = torch.zeros(n, dtype=torch.int64, device=dev)
    zs = torch.zeros(n, dtype=torch.float64, device=dev)
    bw = torch.zeros(n, dtype=torch.int64, device=dev)
    bh = torch.zeros(n, dtype=torch.int64, device=dev)
    if nv == 0 or n == 0:
        return cnt, zs, bw, bh
    step = max(_PAIR_CHUNK // nv, 1)
    vi = torch.arange(a, e, device=dev)
    for s in range(0, n, step):
        xs, ys = x[s:s + step].unsqueeze(1), y[s:s + step].unsqueeze(1)
        ii = vi.unsqueeze(0).expand(xs.shape[0], nv)
        ok = _full_inlier(labels, vt, ii, xs, ys, p)
        cnt[s:s + step] = ok.sum(1)
        zs[s:s + step] = torch.where(ok, vt.z[ii], 0.0).sum(1)
        bw[s:s + step] = torch.where(ok, (vt.u[ii] - xs).abs(), 0).amax(1)
        bh[s:s + step] = torch.where(ok, (vt.v[ii] - ys).abs(), 0).amax(1)
    return cnt, zs, bw, bh


def box_iou_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes ``a`` [N,4] with ``b`` [N,4] (broadcastable), areas (x2-x1)*(y2-y1); zero-area boxes give 0."""
    a, b = a.double(), b.double()
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    union = area_a + area_b - inter
    ok = (area_a > 0) & (area_b > 0) & (union > 0)
    return torch.where(ok, inter / torch.where(ok, union, torch.ones_like(union)), torch.zeros_like(union))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS: indices of the kept boxes, by score desc (ties: lower index first).

    A box is suppressed when its IoU with an already kept box is > ``iou_threshold`` (see ``box_iou_pairs``).
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [N,4], got shape {tuple(boxes.shape)}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores must be [N] with N={boxes.shape[0]}, got shape {tuple(scores.shape)}")
    order = torch.argsort(scores, descending=True, stable=True)
    bx = boxes.detach()[order].double().cpu()
    n = bx.shape[0]
    keep: list[int] = []
    alive = torch.ones(n, dtype=torch.bool)
    for k in range(n):
        if not alive[k]:
            continue
        keep.append(k)
        if k + 1 < n:
            iou = box_iou_pairs(bx[k].unsqueeze(0), bx[k + 1:])
            alive[k + 1:] &= ~(iou > iou_threshold)
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


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
    rows = []
    for s in range(n_slots):
        if p.vote_threshold is None:
            flat = V[s].reshape(-1)
            arg = int(torch.argmax(flat))
            if int(flat[arg]) <= 0:
                continue
            cells = torch.tensor([arg], device=dev)
        else:
            mask = (V[s] > p.vote_threshold) & _local_maxima(V[s:s + 1], p.window)[0]
            cells = torch.nonzero(mask.reshape(-1)).squeeze(1)  # row-major
            if cells.numel() == 0:
                continue
        x, y = cells % W, cells // W
        votes = V[s].reshape(-1)[cells].long()
        cnt, zs, bw, bh = _centre_stats(labels, vt, slot_start, s, x, y, p)
        if p.vote_threshold is not None:
            density = votes.double() / torch.clamp(4 * bw * bh, min=1).double()
            ok = density >= p.per_threshold
            x, y, votes, cnt, zs, bw, bh = x[ok], y[ok], votes[ok], cnt[ok], zs[ok], bw[ok], bh[ok]
        if x.numel() == 0:
            continue
        boxes = torch.stack([x - bw, y - bh, x + bw, y + bh], 1)
        kept = nms(boxes, votes, p.nms_iou)
        key = int(keys[s])
        b, c = key // C, key % C
        x, y, votes, cnt, zs, boxes = x[kept], y[kept], votes[kept], cnt[kept], zs[kept], boxes[kept]
        tz = zs / cnt.double()
        fx, fy, px, py = K[b, 0, 0], K[b, 1, 1], K[b, 0, 2], K[b, 1, 2]
        trans = torch.stack([tz * (x.double() - px) / fx, tz * (y.double() - py) / fy, tz], 1)
        bc = torch.tensor([b, c], dtype=torch.float64, device=dev).expand(x.numel(), 2)
        rows.append((b, torch.cat([bc, boxes.double(), votes.double().unsqueeze(1)], 1),
                     torch.stack([x, y], 1).double(), trans))
    if not rows:
        return VotingOutput(torch.zeros(0, 7, device=dev), torch.zeros(0, 2, device=dev),
                            torch.zeros(0, 3, device=dev))
    img = torch.cat([torch.full((r[1].shape[0],), r[0], device=dev) for r in rows])
    rois = torch.cat([r[1] for r in rows])
    centers = torch.cat([r[2] for r in rows])
    trans = torch.cat([r[3] for r in rows])
    keep = torch.zeros(rois.shape[0], dtype=torch.bool, device=dev)
    for b in torch.unique(img).tolist():
        idx = torch.nonzero(img == b).squeeze(1)
        order = torch.argsort(rois[idx, 6], descending=True, stable=True)
        keep[idx[order[:p.max_instances]]] = True
    return VotingOutput(rois[keep].float(), centers[keep].float(), trans[keep].float())


# ----------------------------------------------------------------------------------------------------------------
# public face


def _resolve_backend(backend: str, device: torch.device, op: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        from posecnn_core.ops.extension import has_op

        return "ext" if has_op(op, device.type) else "torch"
    if backend == "cpp" and device.type != "cpu":
        raise ValueError(f"backend='cpp' needs CPU tensors, got {device}")
    if backend == "cuda" and device.type != "cuda":
        raise ValueError(f"backend='cuda' needs CUDA tensors, got {device}")
    return "torch" if backend == "torch" else "ext"


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


@torch.no_grad()
def hough_voting(labels: torch.Tensor, vertex: torch.Tensor, intrinsics: torch.Tensor, extents: torch.Tensor,
                 params: VotingParams | None = None, backend: str = "auto", **overrides) -> VotingOutput:
    """Detect object centres by Hough voting (definition in the module docstring and ``docs/voting.md``).

    ``overrides`` are ``VotingParams`` fields replacing those of ``params``. ``backend``: "torch" (this reference),
    "cpp"/"cuda" (compiled operators), "auto" (compiled when available for the device, else the reference).
    """
    p = _params(params, overrides)
    lab, vtx, K, ext = prepare_inputs(labels, vertex, intrinsics, extents)
    if _resolve_backend(backend, lab.device, "hough_voting") == "ext":
        from posecnn_core.ops.voting_ext import hough_voting_ext

        out = hough_voting_ext(lab, vtx, K, ext, p)
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
