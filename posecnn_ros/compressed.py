"""sensor_msgs/CompressedImage <-> numpy, as image_transport's `compressed` and `compressedDepth` plugins write them.

`compressed` (colour): `format` is "<encoding>; <jpeg|png> compressed <bgr8|rgb8|...>" (e.g. "rgb8; jpeg compressed
bgr8", "bgr8; png compressed bgr8", "mono8; jpeg compressed "), or a bare "jpeg"/"png" from older publishers and
cameras that stream JPEG themselves. The stream decodes to what OpenCV reads; "compressed bgr..." means its channels
are in BGR order (OpenCV's), anything else after the ';' means RGB order, and a bare format means BGR — the rules of
image_transport's subscriber.

`compressedDepth`: `format` is "<16UC1|32FC1>; compressedDepth png" (older: "...; compressedDepth"); `data` is a
12-byte header — int32 compression format (0 = inverse depth), float32 depthQuantA, float32 depthQuantB, little
endian — followed by a 16-bit PNG. 16UC1 stores the raw values; 32FC1 stores quantised inverse depth q, with
depth = A / (q - B) and q = 0 meaning no reading. The RVL codec ("compressedDepth rvl") is not supported.

Decoders raise `ImageError` (cause + message), like those of sensor_msgs/Image.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import cv2
import numpy as np

from posecnn_ros.image_conversion import _BAYER_TO_RGB, ImageError, to_uint8

DEPTH_HEADER = struct.Struct("<iff")  # compressionFormat, depthParam[0], depthParam[1]
INV_DEPTH = 0
# compressed_depth_image_transport's publisher defaults
DEPTH_MAX_M = 10.0
DEPTH_QUANTIZATION = 100.0


def _describe(msg: Any) -> str:
    return f"format {str(msg.format)!r}, {len(msg.data)} bytes"


def _decode(data: bytes, what: str, msg: Any) -> np.ndarray:
    if len(data) == 0:
        raise ImageError("compressed_empty", f"{what} has no data ({_describe(msg)})")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise ImageError("compressed_decode", f"{what} cannot be decoded ({_describe(msg)}): not a complete "
                                              f"JPEG/PNG stream")
    return img


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, or another format OpenCV reads) -> uint8 RGB [H, W, 3]."""
    fmt = str(msg.format)
    img = _decode(bytes(msg.data), "compressed image", msg)
    encoding, sep, rest = fmt.partition(";")
    encoding = encoding.strip()
    if "compresseddepth" in rest.lower():
        raise ImageError("compressed_format", f"compressed image has a compressedDepth format ({fmt!r}); "
                                              f"is the depth topic connected to the image input?")
    stored_bgr = not sep or "compressed bgr" in rest
    if img.dtype == np.uint16:
        img = to_uint8(img)
    elif img.dtype != np.uint8:
        raise ImageError("compressed_depth", f"compressed image decodes to {img.dtype} pixels ({_describe(msg)}); "
                                             f"expected 8- or 16-bit colour")
    if img.ndim == 2 or img.shape[2] == 1:
        gray = img.reshape(img.shape[0], img.shape[1])
        if encoding.startswith("bayer_") and encoding[6:10] in _BAYER_TO_RGB:
            return cv2.cvtColor(gray, _BAYER_TO_RGB[encoding[6:10]])
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if img.shape[2] not in (3, 4):
        raise ImageError("compressed_channels", f"compressed image has {img.shape[2]} channels ({_describe(msg)})")
    rgb = img[:, :, 2::-1] if stored_bgr else img[:, :, :3]
    return np.ascontiguousarray(rgb)


def compressed_depth_to_metres(msg: Any, depth_scale: float) -> np.ndarray:
    """compressedDepth CompressedImage -> float32 metres [H, W]; no reading (0, NaN, inf, negative) becomes 0.

    16UC1 values are multiplied by `depth_scale` (metres per unit), 32FC1 is metres."""
    fmt = str(msg.format)
    encoding, _, rest = fmt.partition(";")
    encoding, rest = encoding.strip(), rest.strip()
    if encoding not in ("16UC1", "32FC1", "mono16"):
        raise ImageError("depth_encoding", f"compressed depth encoding {encoding!r} is not supported ({fmt!r}); "
                                           f"use 16UC1 or 32FC1")
    if rest not in ("", "compressedDepth", "compressedDepth png"):
        raise ImageError("compressed_depth_format", f"compressed depth format {fmt!r} is not supported; the node "
                                                    f"reads '<16UC1|32FC1>; compressedDepth png'")
    if not (depth_scale > 0 and math.isfinite(depth_scale)):
        raise ValueError(f"depth_scale must be a positive finite number, got {depth_scale!r}")
    data = bytes(msg.data)
    if len(data) <= DEPTH_HEADER.size:
        raise ImageError("compressed_empty", f"compressed depth image is too short for its {DEPTH_HEADER.size}-byte "
                                             f"header ({_describe(msg)})")
    kind, quant_a, quant_b = DEPTH_HEADER.unpack_from(data)
    raw = _decode(data[DEPTH_HEADER.size:], "compressed depth image", msg)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise ImageError("compressed_depth_png", f"compressed depth image holds {raw.dtype} x "
                                                 f"{1 if raw.ndim == 2 else raw.shape[2]} channels "
                                                 f"({_describe(msg)}); expected a 16-bit single-channel PNG")
    if encoding == "32FC1":
        if kind != INV_DEPTH or not (math.isfinite(quant_a) and math.isfinite(quant_b)) or quant_a <= 0:
            raise ImageError("compressed_depth_header", f"compressed 32FC1 depth has an invalid header (format "
                                                        f"{kind}, quantisation {quant_a}, {quant_b})")
        q = raw.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.where(raw > 0, np.float32(quant_a) / (q - np.float32(quant_b)), np.float32(0.0))
    else:
        depth = raw.astype(np.float32) * np.float32(depth_scale)
    depth = depth.astype(np.float32)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


# ------------------------------------------------------------------------------------------------ encoders
def encode_compressed(rgb: np.ndarray, codec: str = "jpeg", quality: int = 90) -> tuple[str, bytes]:
    """uint8 RGB [H, W, 3] -> (format, data) of a CompressedImage as the `compressed` plugin publishes an rgb8
    image: "rgb8; jpeg compressed bgr8" or "rgb8; png compressed bgr8"."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    if codec not in ("jpeg", "png"):
        raise ValueError(f"codec must be jpeg or png, got {codec!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(".jpg" if codec == "jpeg" else ".png", np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape[1]}x{rgb.shape[0]} image as {codec}")
    return f"rgb8; {codec} compressed bgr8", buf.tobytes()


def encode_compressed_depth(depth: np.ndarray, depth_max: float = DEPTH_MAX_M,
                            depth_quantization: float = DEPTH_QUANTIZATION) -> tuple[str, bytes]:
    """A depth image -> (format, data) of a compressedDepth CompressedImage, as the plugin encodes it.

    uint16 [H, W] -> "16UC1; compressedDepth png" (values taken as millimetres: above depth_max become 0 like the
    plugin's max-depth filter; zero header parameters);
    float32 metres [H, W] -> "32FC1; compressedDepth png" (inverse depth quantised with `depth_quantization`;
    depths >= `depth_max`, NaN and <= 0 become no reading)."""
    if depth.ndim != 2:
        raise ValueError(f"depth must be [H, W], got shape {depth.shape}")
    if depth.dtype == np.uint16:
        stored = np.where(depth > np.uint16(min(depth_max * 1000.0, 65535)), np.uint16(0), depth).astype(np.uint16)
        encoding, header = "16UC1", DEPTH_HEADER.pack(INV_DEPTH, 0.0, 0.0)
    elif depth.dtype == np.float32:
        quant_a = np.float32(depth_quantization * (depth_quantization + 1.0))
        quant_b = np.float32(1.0 - quant_a / np.float32(depth_max))
        valid = np.isfinite(depth) & (depth > 0) & (depth < depth_max)
        inv = np.zeros(depth.shape, np.float32)
        inv[valid] = quant_a / depth[valid] + quant_b
        stored = np.clip(inv, 0, 65535).astype(np.uint16)  # truncation, as the C++ assignment does
        encoding, header = "32FC1", DEPTH_HEADER.pack(INV_DEPTH, float(quant_a), float(quant_b))
    else:
        raise ValueError(f"depth must be uint16 or float32, got {depth.dtype}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(stored), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("OpenCV could not encode the depth image as PNG")
    return f"{encoding}; compressedDepth png", header + buf.tobytes()
