"""Training targets for PoseCNN from one annotated frame, with several instances per class.

PoseCNN-PyTorch builds its targets assuming at most one instance per class; here every pixel
takes the centre and depth of its own instance (from the instance map), so repeated classes get
separate, correct targets. Layouts follow docs/conventions.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from .camera import focal_length
from .geometry import project_points

__all__ = ["FrameTargets", "compute_targets", "targets_from_frame", "boxes_from_mask", "boxes_from_points"]


@dataclass
class FrameTargets:
    """Targets of one frame (numpy; the training code moves them to torch).

    - ``label`` int64 [H, W]: class per pixel.
    - ``vertex_targets`` float32 [3C, H, W]: for a pixel of instance k with class c, channels
      3c, 3c+1 = unit vector (nx, ny) from the pixel (u, v) = (column, row) to the instance's
      projected origin, channel 3c+2 = log(t_z) of that instance (metres), or with a reference
      focal length f_ref the focal-length-normalised log(t_z · f_ref / f), f = √(fx·fy) of the
      frame's K (the depth the object would have seen through a camera with focal length f_ref);
      0 elsewhere. At the pixel that contains the centre exactly the direction is (0, 0).
    - ``vertex_weights`` float32 [3C, H, W]: 1 on those three channels of the pixel's class for
      every pixel of a listed instance, 0 elsewhere (PT's inside weights).
    - per instance (N, in meta order): ``classes`` int64 [N], ``boxes`` float32 [N, 4] (x1, y1,
      x2, y2), ``poses`` float32 [N, 3, 4], ``quaternions`` float32 [N, 4] egocentric (w, x, y, z)
      with w >= 0, ``centers`` float32 [N, 2], ``depths`` float32 [N] (t_z), ``symmetric`` bool
      [N], ``visible_pixels`` int64 [N].
    - ``instance`` int32 [H, W]: k + 1 on the pixels of instance k.
    """

    label: np.ndarray
    vertex_targets: np.ndarray
    vertex_weights: np.ndarray
    classes: np.ndarray
    boxes: np.ndarray
    poses: np.ndarray
    quaternions: np.ndarray
    centers: np.ndarray
    depths: np.ndarray
    symmetric: np.ndarray
    visible_pixels: np.ndarray
    instance: np.ndarray


def boxes_from_mask(instance: np.ndarray, num_instances: int) -> np.ndarray:
    """Tight boxes [N, 4] (x1, y1, x2, y2) of each instance's visible pixels (pixel centres);
    an instance with no pixels gets an all-zero box."""
    boxes = np.zeros((num_instances, 4), dtype=np.float32)
    rows, cols = np.nonzero(instance > 0)
    ids = instance[rows, cols] - 1
    for k in range(num_instances):
        sel = ids == k
        if np.any(sel):
            boxes[k] = (cols[sel].min(), rows[sel].min(), cols[sel].max(), rows[sel].max())
    return boxes


def boxes_from_points(points_by_class: Mapping[int, np.ndarray] | Sequence[np.ndarray | None],
                      classes: np.ndarray, poses: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Boxes [N, 4] of each instance's projected model points (the whole object, also where it
    is occluded or outside the image, as PT builds its box targets)."""
    boxes = np.zeros((len(classes), 4), dtype=np.float32)
    for k, c in enumerate(classes):
        pts = points_by_class[int(c)]
        if pts is None:
            raise ValueError(f"points_by_class has no points for class {int(c)}")
        X = np.asarray(pts, dtype=np.float64) @ poses[k, :, :3].T + poses[k, :, 3]
        if np.any(X[:, 2] <= 0):
            raise ValueError(f"instance {k}: model points behind the camera")
        uv = project_points(X, K)
        boxes[k] = (*uv.min(0), *uv.max(0))
    return boxes


def compute_targets(label: np.ndarray, instance: np.ndarray, classes: Sequence[int], poses: np.ndarray,
                    K: np.ndarray, num_classes: int, symmetric: Sequence[bool] | None = None,
                    points_by_class: Mapping[int, np.ndarray] | Sequence[np.ndarray | None] | None = None,
                    reference_focal: float | None = None) -> FrameTargets:
    """Build the targets of a frame.

    ``instance`` holds k + 1 on the pixels of the k-th object (meta order); ``classes`` [N] and
    ``poses`` [N, 3, 4] describe those objects; ``symmetric`` is per class index (length C,
    entry 0 = background). Boxes come from ``points_by_class`` (indexed by class) when given,
    else from the visible pixels. ``reference_focal`` (pixels): the depth channels hold
    log(t_z · reference_focal / focal_length(K)); None = metric log(t_z).
    """
    label = np.asarray(label)
    instance = np.asarray(instance)
    if label.ndim != 2 or instance.shape != label.shape:
        raise ValueError(f"label and instance must be equal [H, W] maps, got {label.shape} and {instance.shape}")
    cls = np.asarray(classes, dtype=np.int64).reshape(-1)
    n = cls.size
    P = np.asarray(poses, dtype=np.float64).reshape(-1, 3, 4)
    if P.shape[0] != n:
        raise ValueError(f"poses has {P.shape[0]} entries but classes has {n}")
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3x3, got {K.shape}")
    if reference_focal is not None and not (isinstance(reference_focal, (int, float))
                                            and not isinstance(reference_focal, bool)
                                            and np.isfinite(reference_focal) and reference_focal > 0):
        raise ValueError(f"reference_focal must be a positive number of pixels or None, got {reference_focal!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must count the background and at least one class, got {num_classes}")
    if n and (cls.min() < 1 or cls.max() >= num_classes):
        raise ValueError(f"classes must be in 1..{num_classes - 1}, got {cls.tolist()}")
    if instance.min(initial=0) < 0 or instance.max(initial=0) > n:
        raise ValueError(f"instance ids must be in 0..{n}, got max {instance.max(initial=0)}")
    sym_cls = np.zeros(num_classes, dtype=bool) if symmetric is None else np.asarray(symmetric, dtype=bool)
    if sym_cls.shape != (num_classes,):
        raise ValueError(f"symmetric must have one flag per class ({num_classes}), got {sym_cls.shape}")
    t = P[:, :, 3]
    if n and np.any(t[:, 2] <= 0):
        raise ValueError("every object must have positive depth t_z")
    centers = project_points(t, K) if n else np.zeros((0, 2))

    h, w = label.shape
    vt = np.zeros((3 * num_classes, h, w), dtype=np.float32)
    vw = np.zeros_like(vt)
    rows, cols = np.nonzero(instance > 0)
    k = instance[rows, cols].astype(np.int64) - 1
    c = cls[k]
    # only pixels whose label agrees with their instance's class get targets
    ok = label[rows, cols] == c
    rows, cols, k, c = rows[ok], cols[ok], k[ok], c[ok]
    dx = centers[k, 0] - cols
    dy = centers[k, 1] - rows
    norm = np.hypot(dx, dy)
    norm[norm == 0] = 1.0
    vt[3 * c, rows, cols] = dx / norm
    vt[3 * c + 1, rows, cols] = dy / norm
    log_focal_ratio = 0.0 if reference_focal is None else np.log(float(reference_focal) / focal_length(K))
    vt[3 * c + 2, rows, cols] = np.log(t[k, 2]) + log_focal_ratio
    for j in range(3):
        vw[3 * c + j, rows, cols] = 1.0

    boxes = (boxes_from_points(points_by_class, cls, P, K) if points_by_class is not None
             else boxes_from_mask(instance, n))
    quats = np.zeros((n, 4), dtype=np.float64)
    if n:
        xyzw = Rotation.from_matrix(P[:, :, :3]).as_quat()
        quats = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
        quats[quats[:, 0] < 0] *= -1
    return FrameTargets(
        label=label.astype(np.int64),
        vertex_targets=vt,
        vertex_weights=vw,
        classes=cls,
        boxes=boxes,
        poses=P.astype(np.float32),
        quaternions=quats.astype(np.float32),
        centers=centers.astype(np.float32),
        depths=t[:, 2].astype(np.float32),
        symmetric=sym_cls[cls],
        visible_pixels=np.bincount(k, minlength=n)[:n].astype(np.int64),
        instance=instance.astype(np.int32),
    )


def targets_from_frame(frame, num_classes: int, symmetric: Sequence[bool] | None = None,
                       points_by_class: Mapping[int, np.ndarray] | Sequence[np.ndarray | None] | None = None,
                       reference_focal: float | None = None) -> FrameTargets:
    """:func:`compute_targets` of a :class:`posecnn_core.datasets.ycb.Frame`."""
    return compute_targets(frame.label, frame.instance, frame.cls_indexes, frame.poses, frame.K,
                           num_classes, symmetric=symmetric, points_by_class=points_by_class,
                           reference_focal=reference_focal)
