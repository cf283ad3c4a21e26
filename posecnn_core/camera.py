"""Pinhole camera helpers: focal length, intrinsics under image resizing, and reference cameras.

PoseCNN's depth head learns depth from apparent size, and apparent size depends on the focal length in pixels.
A checkpoint is therefore tied to the focal length ``f_ref`` of the camera it was trained with; a
:class:`ReferenceCamera` records it (in our checkpoint meta and in object sets for PT's checkpoint families).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ReferenceCamera", "YCB_VIDEO_CAMERA", "YCB_OBJECT_CAMERA", "focal_length", "scale_intrinsics"]


def focal_length(K: np.ndarray) -> float:
    """Geometric-mean focal length √(fx·fy) of a 3×3 intrinsics matrix, in pixels."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    return float(math.sqrt(K[0, 0] * K[1, 1]))


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics of the image resized by (sx, sy) with pixel centres aligned (OpenCV's ``resize``):
    x' = (x + 0.5)·sx − 0.5, so fx' = fx·sx and cx' = (cx + 0.5)·sx − 0.5 (same for y)."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3).copy()
    K[0, 0] *= sx
    K[0, 1] *= sx
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 1] *= sy
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


@dataclass(frozen=True)
class ReferenceCamera:
    """The camera a checkpoint's depth head was trained with: focal lengths in pixels at the network's input
    resolution (``width`` × ``height``, for documentation) and an optional principal point."""

    fx: float
    fy: float
    width: int = 0
    height: int = 0
    cx: float | None = None
    cy: float | None = None

    def __post_init__(self) -> None:
        for name in ("fx", "fy"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) or val <= 0:
                raise ValueError(f"ReferenceCamera.{name} must be a positive finite number, got {val!r}")
        for name in ("width", "height"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                raise ValueError(f"ReferenceCamera.{name} must be an integer >= 0, got {val!r}")

    @property
    def focal(self) -> float:
        """f_ref = √(fx·fy) in pixels."""
        return math.sqrt(self.fx * self.fy)

    def to_dict(self) -> dict:
        out: dict = {"fx": float(self.fx), "fy": float(self.fy), "width": int(self.width), "height": int(self.height)}
        if self.cx is not None and self.cy is not None:
            out.update(cx=float(self.cx), cy=float(self.cy))
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "ReferenceCamera":
        if not isinstance(data, dict):
            raise ValueError(f"reference camera must be a mapping with fx, fy (width, height, cx, cy optional), "
                             f"got {type(data).__name__}")
        unknown = sorted(set(data) - {"fx", "fy", "width", "height", "cx", "cy"})
        if unknown:
            raise ValueError(f"reference camera: unknown field(s) {unknown}; allowed: fx, fy, width, height, cx, cy")
        if "fx" not in data or "fy" not in data:
            raise ValueError("reference camera needs fx and fy (pixels)")

        def num(key: str) -> float | None:
            val = data.get(key)
            if val is None:
                return None
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise ValueError(f"reference camera {key} must be a number, got {val!r}")
            return float(val)

        def integer(key: str) -> int:
            val = data.get(key, 0)
            if isinstance(val, bool) or not isinstance(val, int):
                raise ValueError(f"reference camera {key} must be an integer, got {val!r}")
            return val

        return cls(fx=num("fx"), fy=num("fy"), width=integer("width"), height=integer("height"),
                   cx=num("cx"), cy=num("cy"))


# The YCB-Video camera (PT's YCB-Video checkpoints; also the default for PT checkpoints without meta).
YCB_VIDEO_CAMERA = ReferenceCamera(fx=1066.778, fy=1067.487, width=640, height=480, cx=312.9869, cy=241.3109)
# The camera PT's ycb_object checkpoints were rendered with (PT lib/datasets/ycb_object.py).
YCB_OBJECT_CAMERA = ReferenceCamera(fx=524.7918, fy=489.3564, width=640, height=480, cx=332.5213, cy=281.2340)
