"""A calibrated camera as ROS describes it (sensor_msgs/CameraInfo, the camera calibration YAML), and
rectification of its images the way image_proc does it.

The raw image is distorted by D (model `plumb_bob`/`rational_polynomial`: OpenCV's radial-tangential model with 5
or 8 coefficients; `equidistant`: OpenCV's fisheye model with 4) relative to K. Rectification maps it onto the ideal
pinhole camera P (its left 3x3; R rotates into the rectified frame, identity for a monocular camera), so the
rectified image's intrinsics are P[:, :3] — what a pose estimator must use with it. An all-zero R or P (an
uncalibrated camera) stands for identity / K, as in image_geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = ["DISTORTION_MODELS", "CameraModel", "Rectifier", "load_camera_yaml"]

# distortion model -> number of coefficients OpenCV uses (more are accepted when the extra ones are zero)
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


def _matrix(values: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    arr = np.asarray(values, np.float64)
    if arr.size != shape[0] * shape[1]:
        raise ValueError(f"{what} needs {shape[0] * shape[1]} values, got {arr.size}")
    arr = arr.reshape(shape)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or inf: {arr.ravel().tolist()}")
    return arr


@dataclass(frozen=True)
class CameraModel:
    """Resolution, intrinsics K [3, 3], distortion D, rectification R [3, 3] and projection P [3, 4]."""

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    P: np.ndarray = field(default_factory=lambda: np.zeros((3, 4)))
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        object.__setattr__(self, "K", _matrix(self.K, (3, 3), "K"))
        object.__setattr__(self, "D", np.asarray(self.D, np.float64).ravel())
        if not np.all(np.isfinite(self.D)):
            raise ValueError(f"D contains NaN or inf: {self.D.tolist()}")
        R = _matrix(self.R, (3, 3), "R")
        object.__setattr__(self, "R", np.eye(3) if not R.any() else R)
        P = _matrix(self.P, (3, 4), "P")
        if not P.any():
            P = np.hstack([self.K, np.zeros((3, 1))])
        object.__setattr__(self, "P", P)
        if self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            raise ValueError(f"K has no valid focal length (fx={self.K[0, 0]}, fy={self.K[1, 1]})")
        if self.P[0, 0] <= 0 or self.P[1, 1] <= 0:
            raise ValueError(f"P has no valid focal length (fx={self.P[0, 0]}, fy={self.P[1, 1]})")

    @classmethod
    def from_camera_info(cls, info: Any) -> CameraModel:
        """From a sensor_msgs/CameraInfo (or anything with its fields k, d, r, p, distortion_model, width, height)."""
        return cls(width=int(info.width), height=int(info.height), K=np.asarray(info.k), D=np.asarray(info.d),
                   R=np.asarray(info.r), P=np.asarray(info.p), distortion_model=str(info.distortion_model))

    @property
    def is_distorted(self) -> bool:
        """True when some distortion coefficient is non-zero (the raw image needs rectification)."""
        return bool(np.any(self.D != 0))

    @property
    def rectified_K(self) -> np.ndarray:
        """Intrinsics of the rectified image: the left 3x3 of P."""
        return self.P[:, :3].copy()

    def opencv_distortion(self) -> np.ndarray:
        """D as OpenCV wants it for this model; ValueError for an unknown model or extra non-zero terms."""
        if self.distortion_model not in DISTORTION_MODELS:
            raise ValueError(f"distortion model {self.distortion_model!r} is not supported; use one of "
                             f"{', '.join(DISTORTION_MODELS)}")
        n = DISTORTION_MODELS[self.distortion_model]
        if np.any(self.D[n:] != 0):
            raise ValueError(f"{self.distortion_model} has {n} coefficients but D has {len(self.D)} with non-zero "
                             f"terms beyond the {n}th: {self.D.tolist()}")
        return np.pad(self.D[:n], (0, max(0, n - len(self.D))))


class Rectifier:
    """Undistortion + rectification maps of one CameraModel (computed once): colour images are resampled
    bilinearly, depth images with nearest-neighbour interpolation (no depth mixed across object edges)."""

    def __init__(self, model: CameraModel) -> None:
        self.model = model
        D = model.opencv_distortion()
        size = (int(model.width), int(model.height))
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"camera resolution {size[0]}x{size[1]} is not valid")
        newK = model.rectified_K
        if model.distortion_model == "equidistant":
            self.map_x, self.map_y = cv2.fisheye.initUndistortRectifyMap(model.K, D, model.R, newK, size,
                                                                         cv2.CV_32FC1)
        else:
            self.map_x, self.map_y = cv2.initUndistortRectifyMap(model.K, D, model.R, newK, size, cv2.CV_32FC1)
        self.K = newK

    def _check(self, image: np.ndarray, what: str) -> None:
        if image.shape[:2] != (self.model.height, self.model.width):
            raise ValueError(f"{what} is {image.shape[1]}x{image.shape[0]} but the camera model is "
                             f"{self.model.width}x{self.model.height}")

    def rectify_image(self, image: np.ndarray) -> np.ndarray:
        """Rectified copy of a colour/grey image (bilinear; pixels from outside the raw image are black)."""
        self._check(image, "image")
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def rectify_depth(self, depth: np.ndarray) -> np.ndarray:
        """Rectified copy of a depth image (nearest neighbour; outside the raw image = 0, no reading)."""
        self._check(depth, "depth image")
        return cv2.remap(depth, self.map_x, self.map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0)


def load_camera_yaml(path: str | Path) -> CameraModel:
    """A ROS camera calibration YAML (camera_calibration / camera_info_manager format: image_width, image_height,
    camera_matrix, distortion_model, distortion_coefficients, rectification_matrix, projection_matrix; each matrix
    as {rows, cols, data}). ValueError names the file and what is missing or wrong."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"camera file {path}: cannot read it: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"camera file {path}: expected a mapping with camera_matrix etc., got "
                         f"{type(data).__name__}")

    def matrix(key: str, required: bool) -> Any:
        entry = data.get(key)
        if entry is None:
            if required:
                raise ValueError(f"camera file {path}: missing {key}")
            return None
        values = entry.get("data") if isinstance(entry, dict) else entry
        if not isinstance(values, list):
            raise ValueError(f"camera file {path}: {key} must be {{rows, cols, data: [...]}}")
        return values

    try:
        return CameraModel(width=int(data.get("image_width", 0)), height=int(data.get("image_height", 0)),
                           K=matrix("camera_matrix", True), D=matrix("distortion_coefficients", False) or [],
                           R=matrix("rectification_matrix", False) or np.eye(3),
                           P=matrix("projection_matrix", False) or np.zeros((3, 4)),
                           distortion_model=str(data.get("distortion_model", "plumb_bob")))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"camera file {path}: {exc}") from exc
