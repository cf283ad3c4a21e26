"""Matching a frame's detections to the tracks: per class, by 3D centre distance and box overlap, optimally."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

GATED = 1e6  # cost of a pair that must not be matched (finite, so that the assignment always exists)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [N, M] of boxes a [N, 4] and b [M, 4] (x1, y1, x2, y2, continuous pixel coordinates)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def ray_distance(a: np.ndarray, b: np.ndarray, depth_weight: float) -> np.ndarray:
    """Distance [N, M] between points a [N, 3] and b [M, 3] (camera frame) with the part along the viewing ray
    weighted by depth_weight: sqrt(lateral² + (depth_weight · radial)²), where radial = |b| - |a| and lateral =
    the angle between the rays x |a|. A monocular estimate knows the direction of an object far better than its
    distance, so its errors lie mostly along the ray (depth_weight 1: the plain distance up to second order)."""
    a = np.asarray(a, np.float64).reshape(-1, 3)
    b = np.asarray(b, np.float64).reshape(-1, 3)
    na = np.linalg.norm(a, axis=1).clip(1e-9)
    nb = np.linalg.norm(b, axis=1).clip(1e-9)
    cos = np.clip((a / na[:, None]) @ (b / nb[:, None]).T, -1.0, 1.0)
    lateral = np.arccos(cos) * na[:, None]
    radial = nb[None, :] - na[:, None]
    return np.sqrt(lateral ** 2 + (depth_weight * radial) ** 2)


@dataclass(frozen=True)
class Match:
    """Result of one association: ``pairs`` (track index, detection index), and what stayed unmatched."""

    pairs: list[tuple[int, int]]
    unmatched_tracks: list[int]
    unmatched_detections: list[int]


def association_cost(track_classes: np.ndarray, track_centres: np.ndarray, track_boxes: np.ndarray,
                     det_classes: np.ndarray, det_centres: np.ndarray, det_boxes: np.ndarray,
                     max_distance: float, min_iou: float, iou_weight: float, depth_weight: float = 1.0
                     ) -> np.ndarray:
    """Cost [T, D]: distance / max_distance + iou_weight x (1 - IoU) for pairs of the same class whose centres
    are within max_distance (:func:`ray_distance` with depth_weight) or whose boxes overlap with IoU >= min_iou;
    GATED for every other pair."""
    dist = ray_distance(track_centres, det_centres, depth_weight)
    iou = box_iou(track_boxes, det_boxes)
    cost = dist / max_distance + iou_weight * (1.0 - iou)
    allowed = (np.asarray(track_classes)[:, None] == np.asarray(det_classes)[None, :]) & (
        (dist <= max_distance) | (iou >= min_iou))
    return np.where(allowed, cost, GATED)


def assign(cost: np.ndarray) -> Match:
    """Minimum-cost one-to-one assignment of rows (tracks) to columns (detections); gated pairs stay apart."""
    cost = np.asarray(cost, np.float64)
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return Match([], list(range(rows)), list(range(cols)))
    r, c = linear_sum_assignment(cost)
    pairs = [(int(i), int(j)) for i, j in zip(r, c) if cost[i, j] < GATED]
    matched_r = {i for i, _ in pairs}
    matched_c = {j for _, j in pairs}
    return Match(pairs, [i for i in range(rows) if i not in matched_r], [j for j in range(cols) if j not in matched_c])


def associate(track_classes: np.ndarray, track_centres: np.ndarray, track_boxes: np.ndarray,
              det_classes: np.ndarray, det_centres: np.ndarray, det_boxes: np.ndarray, *,
              max_distance: float, min_iou: float, iou_weight: float, depth_weight: float = 1.0) -> Match:
    """:func:`association_cost` then :func:`assign` (classes never mix: their pairs are gated)."""
    return assign(association_cost(track_classes, track_centres, track_boxes, det_classes, det_centres, det_boxes,
                                   max_distance, min_iou, iou_weight, depth_weight))
