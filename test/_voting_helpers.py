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


def brute_vote_counts(labels: torch.Tensor, vertex: torch.Tensor, K: torch.Tensor, extents: torch.Tensor,
                      p: VotingParams) -> np.ndarray:
    """Vote map by evaluating the float64 predicate for every (voter, cell): the definition, written plainly."""
    B, H, W = labels.shape
    C = extents.shape[0]
    K = K.double().expand(B, 3, 3) if K.dim() == 2 else K.double()
    lab = labels.numpy()
    vtx = vertex.float().numpy()
    out = np.zeros((B, C, H, W), dtype=np.int64)
    ys, xs = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    for b in range(B):
        f = max(float(K[b, 0, 0]), float(K[b, 1, 1]))
        for c in range(1, C):
            pix = np.flatnonzero(lab[b].reshape(-1) == c)
            if pix.size <= p.label_threshold:
                continue
            emax = float(extents[c].double().max())
            for rank, q in enumerate(pix):
                if rank % p.skip_pixels:
                    continue
                v, u = divmod(int(q), W)
                nx, ny = float(vtx[b, 3 * c, v, u]), float(vtx[b, 3 * c + 1, v, u])
                z = float(torch.exp(torch.tensor(float(vtx[b, 3 * c + 2, v, u]), dtype=torch.float64)))
                if not (math.isfinite(nx) and math.isfinite(ny)) or (nx == 0 and ny == 0):
                    continue
                if not (math.isfinite(z) and z > 0):
                    continue
                r = ((p.radius_factor * f) * emax) / z
                nn = math.sqrt(nx * nx + ny * ny)
                dx = (xs - u).astype(np.float64)
                dy = (ys - v).astype(np.float64)
                d2 = dx * dx + dy * dy
                ok = (d2 > 0) & (d2 <= r * r) & (dx * nx + dy * ny > (p.inlier_threshold * np.sqrt(d2)) * nn)
                if p.check_same_label:
                    S = p.same_label_samples
                    hits = np.zeros((H, W), dtype=np.int64)
                    for k in range(1, S + 1):
                        qx = np.floor(u + (xs - u) * k / (S + 1) + 0.5).astype(np.int64)
                        qy = np.floor(v + (ys - v) * k / (S + 1) + 0.5).astype(np.int64)
                        inside = (qx >= 0) & (qx < W) & (qy >= 0) & (qy < H)
                        hits += inside & (lab[b][qy.clip(0, H - 1), qx.clip(0, W - 1)] == c)
                    ok &= hits >= p.same_label_fraction * S
                out[b, c] += ok
    return out


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
