"""Scene builders and a brute-force oracle shared by the Hough voting tests."""

from __future__ import annotations

import math

import numpy as np
import torch

from posecnn_core.voting import VotingParams


def make_K(fx: float, fy: float, px: float, py: float) -> torch.Tensor:
    return torch.tensor([[fx, 0.0, px], [0.0, fy, py], [0.0, 0.0, 1.0]], dtype=torch.float32)


def render_instances(H: int, W: int, C: int, instances: list[dict], B: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and an exact vertex field for instances.

    Each instance: dict(b=0, cls, center=(cx, cy), depth, shape=('disc', radius) | ('rect', x1, y1, x2, y2)).
    Later instances paint over earlier ones; each pixel's vertex points at its own instance's centre.
    """
    labels = torch.zeros(B, H, W, dtype=torch.int64)
    vertex = torch.zeros(B, 3 * C, H, W, dtype=torch.float32)
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                            indexing="ij")
    for inst in instances:
        b, c = inst.get("b", 0), inst["cls"]
        cx, cy = inst["center"]
        shape = inst["shape"]
        if shape[0] == "disc":
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= shape[1] ** 2
        else:
            _, x1, y1, x2, y2 = shape
            mask = (xx >= x1) & (xx <= x2) & (yy >= y1) & (yy <= y2)
        dx, dy = cx - xx, cy - yy
        norm = torch.sqrt(dx * dx + dy * dy).clamp(min=1e-12)
        labels[b][mask] = c
        vertex[b, 3 * c][mask] = (dx / norm)[mask].float()
        vertex[b, 3 * c + 1][mask] = (dy / norm)[mask].float()
        vertex[b, 3 * c + 2][mask] = math.log(inst["depth"])
    return labels, vertex


def _pt_threshold(ext: np.ndarray, d: np.ndarray, fx: np.float32, fy: np.float32, px: np.float32,
                  py: np.float32, factor: np.float32) -> np.ndarray:
    """PT's project_box written plainly in numpy float32 (one depth per entry of ``d``)."""
    f = np.float32
    xh, yh, zh = f(ext[0]) * f(0.5), f(ext[1]) * f(0.5), f(ext[2]) * f(0.5)
    corners = [(xh, yh, zh), (-xh, yh, zh), (xh, -yh, zh), (-xh, -yh, zh),
               (xh, yh, -zh), (-xh, yh, -zh), (xh, -yh, -zh), (-xh, -yh, -zh)]
    min_x = np.full(d.shape, f(1e8), f)
    max_x = np.full(d.shape, f(-1e8), f)
    min_y, max_y = min_x.copy(), max_x.copy()
    with np.errstate(all="ignore"):
        for X, Y, Z in corners:
            z = (Z + d).astype(f)
            x = (fx * (X / z).astype(f)).astype(f) + px
            y = (fy * (Y / z).astype(f)).astype(f) + py
            min_x, max_x = np.fmin(min_x, x), np.fmax(max_x, x)
            min_y, max_y = np.fmin(min_y, y), np.fmax(max_y, y)
        w = ((max_x - min_x).astype(f) + f(1)).astype(f)
        h = ((max_y - min_y).astype(f) + f(1)).astype(f)
    return (np.fmax(w, h) * factor).astype(f)


def pt_voting(labels: torch.Tensor, vertex: torch.Tensor, K: torch.Tensor, extents: torch.Tensor,
              p: VotingParams) -> tuple[np.ndarray, list[tuple]]:
    """An independent transcription of PoseCNN-PyTorch's voting kernel (test mode unless ``p.mode`` is "train"):
    every cell of the image against every voter, float32 numpy, PT's float32 running depth sum.

    Returns (V [B, C, H, W] int64, peaks) with peaks as (b, c, x, y, votes, depth, bb_w, bb_h) in (b, c, y, x)
    order, at most ``max_peaks // B`` per image; training-mode copies are not expanded here.
    """
    f = np.float32
    B, H, W = labels.shape
    C = extents.shape[0]
    Kb = (K.expand(B, 3, 3) if K.dim() == 2 else K).float().numpy()
    ext = extents.float().numpy()
    lab = labels.numpy()
    vtx = vertex.float().numpy()
    V = np.zeros((B, C, H, W), dtype=np.int64)
    cy_all, cx_all = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    cx_all, cy_all = cx_all.reshape(-1, 1), cy_all.reshape(-1, 1)  # [HW, 1]
    inlier, factor, per = f(p.inlier_threshold), f(p.box_factor), f(p.per_threshold)
    S = p.same_label_samples
    peaks: list[tuple] = []
    for b in range(B):
        fx, fy, px, py = f(Kb[b, 0, 0]), f(Kb[b, 1, 1]), f(Kb[b, 0, 2]), f(Kb[b, 1, 2])
        taken = 0
        for c in range(1, C):
            pix = np.flatnonzero(lab[b].reshape(-1) == c)
            if pix.size <= p.label_threshold:
                continue
            pix = pix[::p.skip_pixels]
            ys, xs = (pix // W).reshape(1, -1), (pix % W).reshape(1, -1)  # [1, N]
            u = vtx[b, 3 * c].reshape(-1)[pix].reshape(1, -1)
            v = vtx[b, 3 * c + 1].reshape(-1)[pix].reshape(1, -1)
            d = np.exp(vtx[b, 3 * c + 2].reshape(-1)[pix].astype(np.float64)).astype(f).reshape(1, -1)
            with np.errstate(all="ignore"):
                dx = (cx_all - xs).astype(f)
                dy = (cy_all - ys).astype(f)
                n1 = np.sqrt((u * u).astype(f) + (v * v).astype(f)).astype(f)
                n2 = np.sqrt((dx * dx).astype(f) + (dy * dy).astype(f)).astype(f)
                dot = ((u * dx).astype(f) + (v * dy).astype(f)).astype(f)
                angle_ok = (dot / (n1 * n2).astype(f)).astype(f) > inlier
            if p.check_same_label:
                count = np.zeros(dx.shape, dtype=np.int64)
                for i in range(1, S + 1):
                    step = f(f(i) / f(S))
                    qx = np.trunc((xs.astype(f) + (step * dx).astype(f)).astype(f)).astype(np.int64)
                    qy = np.trunc((ys.astype(f) + (step * dy).astype(f)).astype(f)).astype(np.int64)
                    inside = (qx >= 0) & (qx < W) & (qy >= 0) & (qy < H)
                    count += inside & (lab[b][qy.clip(0, H - 1), qx.clip(0, W - 1)] == c)
                angle_ok &= ~((count.astype(f) / f(S)).astype(f).astype(np.float64) < p.same_label_fraction)
            adx = np.abs(cx_all - xs).astype(f)
            ady = np.abs(cy_all - ys).astype(f)
            thr_v = _pt_threshold(ext[c], d, fx, fy, px, py, factor)
            vote = angle_ok & (adx < thr_v) & (ady < thr_v)
            votes = vote.sum(1)
            V[b, c] = votes.reshape(H, W)
            depth = np.zeros(H * W, dtype=f)
            for n in range(d.shape[1]):  # PT's float32 running sum, in voter order
                depth = np.where(vote[:, n], (depth + d[0, n]).astype(f), depth)
            with np.errstate(all="ignore"):
                depth = np.where(votes > 0, (depth / votes.astype(f)).astype(f), f(0))
            thr_c = _pt_threshold(ext[c], depth.reshape(-1, 1), fx, fy, px, py, factor)
            box = angle_ok & (adx < thr_c) & (ady < thr_c)
            bw = np.where(box, adx, f(-1)).max(1) * f(2)
            bh = np.where(box, ady, f(-1)).max(1) * f(2)
            Vc = V[b, c]
            if p.vote_threshold is None:
                cell = int(np.argmax(Vc.reshape(-1)))
                if Vc.reshape(-1)[cell] > 0:
                    peaks.append((b, c, cell % W, cell // W, int(Vc.reshape(-1)[cell]), float(depth[cell]),
                                  float(bw[cell]), float(bh[cell])))
                continue
            half = p.window // 2
            for cell in range(H * W):
                y, x = divmod(cell, W)
                val = Vc[y, x]
                if not (val > p.vote_threshold and bh[cell] > 0 and bw[cell] > 0):
                    continue
                win = Vc[max(y - half, 0):y + half + 1, max(x - half, 0):x + half + 1]
                if (win > val).any():
                    continue
                if p.mode == "test":
                    yy, xx = np.nonzero(win == val)
                    lin = (yy + max(y - half, 0)) * W + (xx + max(x - half, 0))
                    if (lin > cell).any():
                        continue
                if f(f(val) / f(bh[cell] * bw[cell])) < per:
                    continue
                if taken >= max(p.max_peaks // B, 1):
                    continue
                taken += 1
                peaks.append((b, c, x, y, int(val), float(depth[cell]), float(bw[cell]), float(bh[cell])))
    return V, peaks


def pt_scene(seed: int, B: int = 2, H: int = 36, W: int = 48, C: int = 4,
             quantise: bool = False) -> tuple[torch.Tensor, ...]:
    """Several objects per image (two of one class, overlapping so that later ones occlude earlier ones), noisy
    directions and depths, stray label noise; with ``quantise`` the directions snap to 8 compass directions, which
    makes many cells tie in votes."""
    g = torch.Generator().manual_seed(seed)
    insts = []
    for b in range(B):
        for k in range(4):
            cls = 1 + (k % (C - 1)) if k < 3 else 1
            cx = 6.0 + float(torch.rand(1, generator=g)) * (W - 12)
            cy = 6.0 + float(torch.rand(1, generator=g)) * (H - 12)
            r = 5.0 + 4.0 * float(torch.rand(1, generator=g))
            depth = 0.6 + float(torch.rand(1, generator=g))
            shape = ("disc", r) if k % 2 == 0 else ("rect", cx - r, cy - 0.7 * r, cx + r, cy + 0.7 * r)
            insts.append(dict(b=b, cls=cls, center=(cx, cy), depth=depth, shape=shape))
    labels, vertex = render_instances(H, W, C, insts, B=B)
    u, v = vertex[:, 0::3].clone(), vertex[:, 1::3].clone()
    if quantise:
        ang = torch.round(torch.atan2(v, u) / (math.pi / 4)) * (math.pi / 4)
        on = (u != 0) | (v != 0)
        u = torch.where(on, torch.cos(ang), u)
        v = torch.where(on, torch.sin(ang), v)
    else:
        u = u + 0.1 * torch.randn(u.shape, generator=g)
        v = v + 0.1 * torch.randn(v.shape, generator=g)
    vertex[:, 0::3], vertex[:, 1::3] = u, v
    vertex[:, 2::3] += 0.02 * torch.randn(vertex[:, 2::3].shape, generator=g)
    stray = torch.rand(B, H, W, generator=g) < 0.03
    labels[stray] = torch.randint(1, C, (int(stray.sum()),), generator=g)
    extents = 0.05 + 0.1 * torch.rand(C, 3, generator=g)
    extents[0] = 0
    K = torch.stack([make_K(110.0 + 20 * float(torch.rand(1, generator=g)), 115.0, W / 2 - 0.3, H / 2 + 0.4)
                     for _ in range(B)])
    return labels, vertex, K, extents


def random_scene(seed: int, B: int = 1, H: int = 20, W: int = 24, C: int = 4) -> tuple[torch.Tensor, ...]:
    """Random labels (blobs + noise), random directions (some zero, some axis-aligned), random depths."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (B, H, W), generator=g)
    vertex = torch.randn(B, 3 * C, H, W, generator=g)
    axis = torch.rand(B, C, H, W, generator=g) < 0.1
    vertex[:, 0::3][axis] = torch.sign(vertex[:, 0::3][axis])
    vertex[:, 1::3][axis] = 0.0
    zero = torch.rand(B, C, H, W, generator=g) < 0.05
    vertex[:, 0::3][zero] = 0.0
    vertex[:, 1::3][zero] = 0.0
    vertex[:, 2::3] = torch.rand(B, C, H, W, generator=g) * 3.0 - 1.5
    extents = torch.rand(C, 3, generator=g) * 0.1
    extents[0] = 0
    K = make_K(100.0 + 50 * float(torch.rand(1, generator=g)), 110.0, W / 2, H / 2)
    return labels, vertex, K, extents
