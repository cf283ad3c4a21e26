"""sensor_msgs Image / CameraInfo <-> numpy, without cv_bridge.

Every decoder respects `step` (row padding) and `is_bigendian`, and raises `ImageError` (a ValueError) whose
`cause` is a short stable key (for per-cause throttled logging) and whose message says what is wrong.

Colour input: the 8- and 16-bit RGB/BGR(A) and mono encodings, packed YUV 4:2:2 (`uyvy`/`yuv422`: U Y V Y;
`yuyv`/`yuv422_yuy2`: Y U Y V; BT.601 limited range, as cv_bridge converts them) and 8/16-bit Bayer mosaics
(edge-aware demosaicing by OpenCV). 16-bit values become 8-bit as round(v / 257) (0 -> 0, 65535 -> 255).
"""

from __future__ import annotations

import array
import math
from typing import Any

import cv2
import numpy as np

# encoding -> (channels, bytes per channel)
COLOR_ENCODINGS: dict[str, tuple[int, int]] = {
    "rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1), "mono8": (1, 1),
    "rgb16": (3, 2), "bgr16": (3, 2), "rgba16": (4, 2), "bgra16": (4, 2), "mono16": (1, 2),
    "uyvy": (2, 1), "yuv422": (2, 1), "yuyv": (2, 1), "yuv422_yuy2": (2, 1),
    **{f"bayer_{p}{bits}": (1, bits // 8) for p in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)},
}
# OpenCV names a Bayer pattern by the 2x2 block starting at the second row and column: ROS's rggb is its BG.
_BAYER_TO_RGB = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB, "gbrg": cv2.COLOR_BayerGR2RGB,
                 "grbg": cv2.COLOR_BayerGB2RGB}
_YUV422_TO_RGB = {"uyvy": cv2.COLOR_YUV2RGB_UYVY, "yuv422": cv2.COLOR_YUV2RGB_UYVY,
                  "yuyv": cv2.COLOR_YUV2RGB_YUY2, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2}
DEPTH_ENCODINGS: dict[str, np.dtype] = {"16UC1": np.dtype(np.uint16), "32FC1": np.dtype(np.float32),
                                        "mono16": np.dtype(np.uint16)}


class ImageError(ValueError):
    """Bad image / camera info input. `cause` groups errors for throttled logging."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


def _rows(msg: Any, channels: int, dtype: np.dtype, what: str) -> np.ndarray:
    """View msg.data as [height, width, channels] of `dtype`, honouring step, checking sizes."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageError("empty", f"{what} is empty ({width}x{height})")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageError("bad_step", f"{what} step {step} is smaller than width*pixel size {row_bytes} "
                                     f"({width} px, encoding {msg.encoding})")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < step * (height - 1) + row_bytes:
        raise ImageError("truncated", f"{what} data is truncated: {buf.size} bytes for {width}x{height} "
                                      f"{msg.encoding} with step {step} (need {step * height})")
    if step % dtype.itemsize == 0 and buf.size >= step * height:
        rows = buf[: step * height].reshape(height, step)
    else:  # last row unpadded, or odd step: copy row by row into a packed buffer
        rows = np.empty((height, row_bytes), np.uint8)
        for r in range(height):
            rows[r] = buf[r * step: r * step + row_bytes]
    rows = rows[:, :row_bytes]
    if dtype.itemsize > 1:
        order = ">" if msg.is_bigendian else "<"
        rows = np.ascontiguousarray(rows).view(dtype.newbyteorder(order))
    return rows.reshape(height, width, channels)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """16-bit intensities -> uint8 as round(v / 257): the full 16-bit range onto the full 8-bit range."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image in any of COLOR_ENCODINGS -> contiguous uint8 RGB array [H, W, 3]."""
    enc = str(msg.encoding)
    if enc not in COLOR_ENCODINGS:
        raise ImageError("encoding", f"image encoding {enc!r} is not supported; use one of "
                                     f"{', '.join(COLOR_ENCODINGS)}")
    channels, size = COLOR_ENCODINGS[enc]
    if enc in _YUV422_TO_RGB and int(msg.width) % 2:
        raise ImageError("odd_width", f"{enc} image width {msg.width} is odd; 4:2:2 pixels come in pairs")
    px = _rows(msg, channels, np.dtype(np.uint8 if size == 1 else np.uint16), "image")
    try:
        if enc in _YUV422_TO_RGB:
            return cv2.cvtColor(np.ascontiguousarray(px), _YUV422_TO_RGB[enc])
        if enc.startswith("bayer_"):
            rgb = cv2.cvtColor(np.ascontiguousarray(px[:, :, 0]), _BAYER_TO_RGB[enc[6:10]])
            return rgb if size == 1 else to_uint8(rgb)
    except cv2.error as exc:
        raise ImageError("conversion", f"cannot convert the {msg.width}x{msg.height} {enc} image to RGB: "
                                       f"{str(exc).strip().splitlines()[-1]}") from exc
    if size == 2:
        px = to_uint8(px)
    if enc.startswith("rgb"):
        return np.ascontiguousarray(px[:, :, :3])
    if enc.startswith("bgr"):
        return np.ascontiguousarray(px[:, :, 2::-1])
    return np.ascontiguousarray(np.repeat(px, 3, axis=2))  # mono8, mono16


def depth_values(msg: Any) -> np.ndarray:
    """A depth Image's values as stored, in native byte order: uint16 (16UC1, mono16) or float32 (32FC1) [H, W]."""
    enc = str(msg.encoding)
    if enc not in DEPTH_ENCODINGS:
        raise ImageError("depth_encoding", f"depth encoding {enc!r} is not supported; use 16UC1 or 32FC1")
    dtype = DEPTH_ENCODINGS[enc]
    return _rows(msg, 1, dtype, "depth image")[:, :, 0].astype(dtype.newbyteorder("="))


def depth_to_metres(msg: Any, depth_scale: float) -> np.ndarray:
    """Depth Image -> float32 metres [H, W]; invalid readings (0, NaN, inf, negative) become 0.

    16UC1 / mono16 values are multiplied by `depth_scale` (metres per unit, e.g. 0.001); 32FC1 is metres.
    """
    if not (depth_scale > 0 and math.isfinite(depth_scale)):
        raise ValueError(f"depth_scale must be a positive finite number, got {depth_scale!r}")
    raw = depth_values(msg)
    depth = raw.astype(np.float32) * np.float32(depth_scale) if raw.dtype.kind == "u" else raw.astype(np.float32)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def camera_matrix(msg: Any) -> np.ndarray:
    """CameraInfo -> K [3, 3] float64; raises ImageError for a K with zeros, NaN or inf where it matters."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(k)):
        raise ImageError("intrinsics_not_finite", f"camera_info K contains NaN or inf: {k.ravel().tolist()}")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ImageError("intrinsics_zero", f"camera_info K has no valid focal length (fx={k[0, 0]}, "
                                           f"fy={k[1, 1]}); is the camera calibrated?")
    if int(msg.width) <= 0 or int(msg.height) <= 0:
        raise ImageError("camera_info_resolution", f"camera_info has no resolution ({msg.width}x{msg.height})")
    return k


def check_image_matches(image: Any, info: Any) -> None:
    """Raise ImageError('size_mismatch') unless the image has CameraInfo's resolution."""
    if (int(image.width), int(image.height)) != (int(info.width), int(info.height)):
        raise ImageError("size_mismatch", f"image is {image.width}x{image.height} but camera_info says "
                                          f"{info.width}x{info.height}")


def _fill(msg: Any, array_2d_or_3d: np.ndarray, encoding: str, header: Any) -> Any:
    arr = np.ascontiguousarray(array_2d_or_3d)
    msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0 if arr.dtype.byteorder in ("<", "=", "|") else 1
    msg.step = int(arr.strides[0])
    msg.data = array.array("B", arr.tobytes())
    return msg


def rgb_to_image(msg: Any, rgb: np.ndarray, header: Any) -> Any:
    """Fill a sensor_msgs/Image `msg` from uint8 RGB [H, W, 3] as rgb8; returns msg."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    return _fill(msg, rgb, "rgb8", header)


def label_to_image(msg: Any, label: np.ndarray, header: Any, num_classes: int) -> Any:
    """Fill `msg` with a class-index image: mono8 when classes fit in a byte, else 16UC1 (little endian)."""
    if label.ndim != 2:
        raise ValueError(f"label must be [H, W], got shape {label.shape}")
    if num_classes <= 256:
        return _fill(msg, label.astype(np.uint8), "mono8", header)
    return _fill(msg, label.astype("<u2"), "16UC1", header)
