"""Write frames in the YCB-Video layout.

``<root>/data/<seq>/<NNNNNN>-color.png`` (RGB), ``-depth.png`` (uint16, metres x factor_depth),
``-label.png`` (uint8 class index per pixel, 0 background), ``-instance.png`` (0 background,
k = the k-th object of the meta file, 1-based; uint8, or uint16 above 255 objects) and
``-meta.mat`` (scipy.io.savemat): ``cls_indexes`` [N, 1], ``poses`` [3, 4, N] (X_cam = R X + t),
``intrinsic_matrix`` [3, 3], ``factor_depth`` [1, 1], ``center`` [N, 2] projected object origins
(u, v) in pixels, ``instance_ids`` [N, 1] (value of each object in the instance image).
Frame lists: ``<root>/image_sets/<split>.txt`` with one ``<seq>/<NNNNNN>`` per line, class
names in ``<root>/image_sets/classes.txt`` (one per line, background excluded, as YCB-Video).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import scipy.io

__all__ = ["DEFAULT_FACTOR_DEPTH", "frame_prefix", "encode_depth", "make_meta", "write_frame",
           "write_image_set", "write_classes", "project_centers"]

DEFAULT_FACTOR_DEPTH = 10000.0


def frame_prefix(root: str | Path, frame_id: str) -> Path:
    """``<root>/data/<seq>/<NNNNNN>`` for ``frame_id`` = ``"<seq>/<NNNNNN>"``."""
    return Path(root) / "data" / frame_id


def encode_depth(depth_m: np.ndarray, factor_depth: float = DEFAULT_FACTOR_DEPTH) -> np.ndarray:
    """Metres -> uint16 (value = metres x factor); non-finite, <= 0 or out-of-range depths become 0."""
    d = np.asarray(depth_m, dtype=np.float64)
    q = np.round(np.where(np.isfinite(d), d, 0.0) * factor_depth)
    q[(q <= 0) | (q > np.iinfo(np.uint16).max)] = 0
    return q.astype(np.uint16)


def project_centers(K: np.ndarray, translations: np.ndarray) -> np.ndarray:
    """Projected object origins [N, 2] (u, v) of translations [N, 3]."""
    t = np.asarray(translations, dtype=np.float64).reshape(-1, 3)
    if np.any(t[:, 2] <= 0):
        raise ValueError("translations must have positive z (in front of the camera)")
    uvw = t @ np.asarray(K, dtype=np.float64).T
    return uvw[:, :2] / uvw[:, 2:3]


def make_meta(cls_indexes: Sequence[int], poses: np.ndarray, K: np.ndarray,
              factor_depth: float = DEFAULT_FACTOR_DEPTH,
              instance_ids: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """The ``-meta.mat`` dictionary; ``poses`` is [N, 3, 4]; ``center`` is computed from K and t."""
    cls = np.asarray(cls_indexes, dtype=np.float64).reshape(-1, 1)
    P = np.asarray(poses, dtype=np.float64).reshape(-1, 3, 4)
    if P.shape[0] != cls.shape[0]:
        raise ValueError(f"poses has {P.shape[0]} entries but cls_indexes has {cls.shape[0]}")
    ids = np.arange(1, cls.shape[0] + 1) if instance_ids is None else np.asarray(instance_ids)
    if ids.size != cls.shape[0]:
        raise ValueError(f"instance_ids has {ids.size} entries but cls_indexes has {cls.shape[0]}")
    center = project_centers(K, P[:, :, 3]) if len(P) else np.zeros((0, 2))
    return {
        "cls_indexes": cls,
        "poses": np.transpose(P, (1, 2, 0)).copy(),
        "intrinsic_matrix": np.asarray(K, dtype=np.float64).reshape(3, 3),
        "factor_depth": np.array([[float(factor_depth)]]),
        "center": center,
        "instance_ids": ids.astype(np.float64).reshape(-1, 1),
    }


def _write_png(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def write_frame(root: str | Path, frame_id: str, color_rgb: np.ndarray, depth_m: np.ndarray,
                label: np.ndarray, instance: np.ndarray, meta: dict[str, np.ndarray]) -> Path:
    """Write one frame's five files; returns the path prefix ``<root>/data/<frame_id>``."""
    color = np.asarray(color_rgb)
    if color.ndim != 3 or color.shape[2] != 3 or color.dtype != np.uint8:
        raise ValueError(f"color_rgb must be uint8 [H, W, 3], got {color.dtype} {color.shape}")
    hw = color.shape[:2]
    for name, arr in (("depth_m", depth_m), ("label", label), ("instance", instance)):
        if np.asarray(arr).shape != hw:
            raise ValueError(f"{name} must have shape {hw}, got {np.asarray(arr).shape}")
    lab = np.asarray(label)
    if lab.min(initial=0) < 0 or lab.max(initial=0) > 255:
        raise ValueError("label values must be in 0..255")
    inst = np.asarray(instance)
    inst = inst.astype(np.uint8 if inst.max(initial=0) <= 255 else np.uint16)
    prefix = frame_prefix(root, frame_id)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    factor = float(np.asarray(meta["factor_depth"]).reshape(-1)[0])
    _write_png(Path(f"{prefix}-color.png"), cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
    _write_png(Path(f"{prefix}-depth.png"), encode_depth(depth_m, factor))
    _write_png(Path(f"{prefix}-label.png"), lab.astype(np.uint8))
    _write_png(Path(f"{prefix}-instance.png"), inst)
    scipy.io.savemat(f"{prefix}-meta.mat", meta, do_compression=True)
    return prefix


def write_image_set(root: str | Path, split: str, frame_ids: Iterable[str]) -> Path:
    """Write ``<root>/image_sets/<split>.txt``."""
    path = Path(root) / "image_sets" / f"{split}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{fid}\n" for fid in frame_ids))
    return path


def write_classes(root: str | Path, names: Sequence[str]) -> Path:
    """Write ``<root>/image_sets/classes.txt`` (object classes in index order, background excluded)."""
    path = Path(root) / "image_sets" / "classes.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n}\n" for n in names))
    return path
