"""Helpers for the training/evaluation tests: a tiny hand-drawn YCB-layout dataset (no renderer needed)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from posecnn_core.synth.writer import make_meta, write_classes, write_frame, write_image_set

BOX_SIZES = {"plate": (0.12, 0.08, 0.03), "brick": (0.05, 0.05, 0.10)}
COLOURS = {1: (220, 40, 40), 2: (40, 200, 60)}


def box_points(extents, n: int = 6) -> np.ndarray:
    """Points on a box's surface grid (model frame centred at the box centre)."""
    ex = np.asarray(extents) / 2
    g = np.linspace(-1, 1, n)
    pts = []
    for axis in range(3):
        a, b = [i for i in range(3) if i != axis]
        for s in (-1, 1):
            for u in g:
                for v in g:
                    p = np.zeros(3)
                    p[axis], p[a], p[b] = s, u, v
                    pts.append(p * ex)
    return np.unique(np.round(np.array(pts), 6), axis=0)


def write_object_set(root: Path, symmetric_training=("brick",)) -> Path:
    """Object-set YAML with two boxes (points files only); returns its path."""
    lines = ["name: toy", "models_root: models", 'points: "{name}/points.xyz"', "units: m", "classes:"]
    for name, ext in BOX_SIZES.items():
        d = root / "models" / name
        d.mkdir(parents=True, exist_ok=True)
        np.savetxt(d / "points.xyz", box_points(ext), fmt="%.6f")
        sym = "true" if name in symmetric_training else "false"
        lines += [f"  - name: {name}", f"    symmetric: {sym}", f"    symmetric_training: {sym}"]
    path = root / "toy.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def draw_frame(h: int, w: int, K: np.ndarray, objects, seed: int, noise: float = 0.0):
    """(color_rgb, depth, label, instance, meta) of boxes drawn as filled projected hulls, far to near.
    ``objects`` = [(class, R, t)]; ``noise``: std of Gaussian pixel noise (grey levels) added at the end."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(60, 190, 3)
    color = np.clip(base + 30 * np.sin(xx / 7.0 + rng.uniform(0, 6))[..., None], 0, 255).astype(np.uint8)
    label = np.zeros((h, w), np.uint8)
    inst = np.zeros((h, w), np.uint8)
    depth = np.zeros((h, w))
    names = list(BOX_SIZES)
    order = sorted(range(len(objects)), key=lambda k: -objects[k][2][2])
    for k in order:
        cls, R, t = objects[k]
        X = box_points(BOX_SIZES[names[cls - 1]], 2) @ R.T + t
        uv = X @ K.T
        uv = uv[:, :2] / uv[:, 2:3]
        hull = cv2.convexHull(np.round(uv).astype(np.int32))
        m = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(m, hull, 1)
        sel = m > 0
        color[sel] = COLOURS[cls]
        # a dark stripe along the projected model x axis makes the rotation visible
        a = K @ (t + R @ np.array([0.04, 0, 0]))
        c = K @ t
        cv2.line(color, tuple(int(v) for v in np.round(c[:2] / c[2])), tuple(int(v) for v in np.round(a[:2] / a[2])),
                 (20, 20, 20), 2)
        color[~sel] = np.where(m[..., None] > 0, color, color)[~sel]
        label[sel], inst[sel], depth[sel] = cls, k + 1, t[2]
    if noise > 0:
        color = np.clip(color + rng.normal(0, noise, color.shape), 0, 255).astype(np.uint8)
    poses = np.stack([np.hstack([R, np.asarray(t).reshape(3, 1)]) for _, R, t in objects])
    meta = make_meta([o[0] for o in objects], poses, K)
    return color, depth, label, inst, meta


def toy_K(h: int, w: int) -> np.ndarray:
    return np.array([[1.1 * w, 0, (w - 1) / 2], [0, 1.1 * w, (h - 1) / 2], [0, 0, 1]])


def write_toy_dataset(root: Path, frames: int = 3, h: int = 48, w: int = 64, seed: int = 0,
                      test_frames: int = 0, noise: float = 0.0) -> list[str]:
    """``frames`` train frames (+ ``test_frames``) with one plate and one brick each (random poses); ``noise``:
    Gaussian pixel noise (grey levels), so that no two image patches are equal."""
    rng = np.random.default_rng(seed)
    K = toy_K(h, w)
    ids = []
    for i in range(frames + test_frames):
        objs = []
        for cls, x in ((1, -0.07), (2, 0.07)):
            R = Rotation.from_rotvec(rng.normal(0, 0.6, 3)).as_matrix()
            t = np.array([x + rng.uniform(-0.01, 0.01), rng.uniform(-0.02, 0.02), rng.uniform(0.55, 0.65)])
            objs.append((cls, R, t))
        fid = f"0000/{i:06d}"
        write_frame(root, fid, *draw_frame(h, w, K, objs, seed + i, noise))
        ids.append(fid)
    write_image_set(root, "train", ids[:frames])
    write_image_set(root, "test", ids[frames:])
    write_classes(root, list(BOX_SIZES))
    return ids
