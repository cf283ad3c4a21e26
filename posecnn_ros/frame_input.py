"""Input messages -> the frame the estimator sees: decoded RGB, intrinsics, optional depth in metres.

Every input path (sensor_msgs/Image in any supported encoding, image_transport's compressed CompressedImage, raw or
compressedDepth depth) ends in the same `Frame`. With `rectify` the image (bilinear) and the depth (nearest
neighbour) are undistorted and rectified with CameraInfo's K, D, R, P — maps cached per CameraInfo — and the frame
carries P's left 3x3 as intrinsics, as image_proc's rectified image does. Without it, a CameraInfo with non-zero
distortion gets one warning: the results then assume an already rectified image. Nothing here imports rclpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from posecnn_core.camera_model import CameraModel, Rectifier
from posecnn_ros.compressed import compressed_depth_to_metres, compressed_to_rgb
from posecnn_ros.image_conversion import ImageError, camera_matrix, check_image_matches, depth_to_metres, image_to_rgb


@dataclass
class Frame:
    """One frame ready for the estimator. `header` is the image message's (stamp and optical frame id)."""

    header: Any
    rgb: np.ndarray            # uint8 [H, W, 3]
    K: np.ndarray              # [3, 3] intrinsics of `rgb`
    depth: np.ndarray | None   # float32 metres [H, W], 0 = no reading


class _Size(NamedTuple):
    width: int
    height: int


def is_compressed(msg: Any) -> bool:
    """True for a sensor_msgs/CompressedImage (it has `format`, an Image has `encoding`)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def decode_color(msg: Any) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage -> uint8 RGB [H, W, 3] (ImageError when it cannot)."""
    return compressed_to_rgb(msg) if is_compressed(msg) else image_to_rgb(msg)


def decode_depth(msg: Any, depth_scale: float) -> np.ndarray:
    """Depth Image or compressedDepth CompressedImage -> float32 metres [H, W] (0 = no reading)."""
    return compressed_depth_to_metres(msg, depth_scale) if is_compressed(msg) else depth_to_metres(msg, depth_scale)


def _info_key(info: Any) -> tuple:
    return (int(info.width), int(info.height), str(info.distortion_model), tuple(np.asarray(info.k, float)),
            tuple(np.asarray(info.d, float)), tuple(np.asarray(info.r, float)), tuple(np.asarray(info.p, float)))


class FrameDecoder:
    """Builds Frames; keeps the rectification maps of the last CameraInfo. `warn(message)` is called once, the first
    time a distorted CameraInfo arrives while rectification is off."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self._warn = warn
        self._warned = False
        self._rectifier: Rectifier | None = None
        self._rectifier_key: tuple | None = None

    def _rectifier_for(self, info: Any) -> Rectifier | None:
        """The cached Rectifier of `info`, or None when rectification changes nothing (no distortion, R = I,
        P = K)."""
        key = _info_key(info)
        if key != self._rectifier_key:
            if (int(getattr(info, "binning_x", 0)) > 1 or int(getattr(info, "binning_y", 0)) > 1
                    or int(getattr(getattr(info, "roi", None), "width", 0)) > 0):
                raise ImageError("camera_info_binning", "camera_info uses binning or a region of interest; "
                                                        "rectify supports full-resolution images only")
            try:
                model = CameraModel.from_camera_info(info)
                needed = model.is_distorted or not np.allclose(model.R, np.eye(3)) or not np.allclose(
                    model.rectified_K, model.K)
                rectifier = Rectifier(model) if needed else None
            except ValueError as exc:
                raise ImageError("camera_info_rectify", f"cannot rectify with this camera_info: {exc}") from exc
            self._rectifier, self._rectifier_key = rectifier, key
        return self._rectifier

    def frame(self, image: Any, info: Any, depth: Any | None, depth_scale: float, rectify: bool) -> Frame:
        """The Frame of an image message, its CameraInfo and an optional depth message (ImageError: why not)."""
        K = camera_matrix(info)
        rgb = decode_color(image)
        check_image_matches(_Size(rgb.shape[1], rgb.shape[0]), info)
        depth_m = None
        if depth is not None:
            depth_m = decode_depth(depth, depth_scale)
            if depth_m.shape != rgb.shape[:2]:
                raise ImageError("depth_mismatch", f"depth image is {depth_m.shape[1]}x{depth_m.shape[0]} but the "
                                                   f"image is {rgb.shape[1]}x{rgb.shape[0]}")
        if rectify:
            rectifier = self._rectifier_for(info)
            if rectifier is not None:
                rgb = rectifier.rectify_image(rgb)
                depth_m = rectifier.rectify_depth(depth_m) if depth_m is not None else None
                K = rectifier.K
        elif not self._warned and np.any(np.asarray(info.d, float) != 0):
            self._warned = True
            self._warn(f"camera_info has lens distortion ({info.distortion_model} D="
                       f"{np.round(np.asarray(info.d, float), 6).tolist()}) but rectify is false: results assume "
                       f"the images are already rectified (use a rectified topic, or set rectify:=true)")
        return Frame(header=image.header, rgb=rgb, K=K, depth=depth_m)
