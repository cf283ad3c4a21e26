"""Draw estimation results onto an RGB image: projected model points, object axes, RoIs and labels (OpenCV)."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from posecnn_core.geometry import project_points


def class_colour(class_id: int, num_classes: int) -> tuple[float, float, float]:
    """Deterministic, well separated RGB colour in [0, 1] for a class index (golden-ratio hue steps)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return float(r), float(g), float(b)


def project(points: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project object-frame points [N, 3] with pose (R, t) and intrinsics K -> (uv [N, 2], in_front mask [N])."""
    cam = points @ np.asarray(R, np.float64).T + np.asarray(t, np.float64)
    front = cam[:, 2] > 1e-6
    cam[~front] = (0.0, 0.0, 1.0)  # projected harmlessly; callers skip them
    return project_points(cam, np.asarray(K, np.float64)), front


def draw_overlay(rgb: np.ndarray, objects: Sequence[Any], K: np.ndarray, points: Sequence[np.ndarray],
                 extents: np.ndarray, max_points: int = 400) -> np.ndarray:
    """Return a copy of uint8 RGB `rgb` [H, W, 3] with each ObjectPose drawn.

    `points[c]` are class c's model points (metres, object frame), `extents` [C, 3] sets the axis length.
    Per object: subsampled model points, x/y/z axes (red/green/blue), the RoI box and "class_k score".
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    num_classes = max(len(points), 1)
    thick = max(1, round(min(h, w) / 240))
    for obj in objects:
        cls = int(obj.class_id)
        colour = tuple(int(255 * c) for c in class_colour(cls, num_classes))
        R, t = np.asarray(obj.R, np.float64), np.asarray(obj.t, np.float64)
        pts = np.asarray(points[cls], np.float64).reshape(-1, 3) if cls < len(points) else np.zeros((0, 3))
        if len(pts) > max_points:
            pts = pts[np.linspace(0, len(pts) - 1, max_points).astype(int)]
        if len(pts):
            uv, front = project(pts, R, t, K)
            uv = uv[front]
            keep = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
            for u, v in uv[keep].astype(int):
                out[v, u] = colour
        length = 0.5 * float(np.max(extents[cls])) if cls < len(extents) and np.max(extents[cls]) > 0 else 0.05
        axes = np.array([[0, 0, 0], [length, 0, 0], [0, length, 0], [0, 0, length]], np.float64)
        uv, front = project(axes, R, t, K)
        if front.all() and np.all(np.abs(uv) < 1e5):
            origin = tuple(int(x) for x in uv[0])
            for k, axis_colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
                cv2.line(out, origin, tuple(int(x) for x in uv[k + 1]), axis_colour, thick, cv2.LINE_AA)
        x1, y1, x2, y2 = (int(round(float(x))) for x in obj.roi)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        text = f"{obj.class_name}_{obj.instance} {float(obj.score):.2f}"
        cv2.putText(out, text, (max(x1, 0), max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, colour, thick,
                    cv2.LINE_AA)
    return out
