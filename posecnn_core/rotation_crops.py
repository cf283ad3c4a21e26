"""Rotation at a canonical apparent size (our option, off by default): each detection's box is cut from the image,
resampled so that its long side is ``size`` pixels and centred in a ``canvas``-pixel square, and the rotation head
runs on the trunk's features of those squares instead of the frame's.

Why: PoseCNN pools the rotation head's features from the frame, where a 30-pixel object covers 4 cells of conv4;
its rotation is then barely visible. A network whose rotation path was trained on crops of one apparent size
(``crops:`` in the training config) sees every object at that size. The allocentric rotation the head predicts
does not depend on where the object lies in the image, nor on its scale, so nothing else changes: the quaternion is
turned egocentric with the detection's translation as usual.

Cost: one trunk pass over M × canvas² pixels for M detections (112² is 16 % of a 320×240 frame).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ["crop_windows", "cut_crops", "crop_rotations"]


def crop_windows(boxes: np.ndarray, size: float, canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """For boxes [M, 4] (x1, y1, x2, y2, pixel centres, inclusive) -> (affine maps [M, 2, 3] from image to crop
    pixels, the boxes in crop pixels [M, 4]). A box's long side becomes ``size`` pixels (extent x2 − x1 + 1) and
    its centre the crop's centre."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx, cy = 0.5 * (b[:, 0] + b[:, 2]), 0.5 * (b[:, 1] + b[:, 3])
    long_side = np.maximum(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) + 1.0, 1.0)
    s = size / long_side
    half = 0.5 * canvas - 0.5  # the crop's centre in pixel-centre coordinates
    maps = np.zeros((len(b), 2, 3))
    maps[:, 0, 0] = maps[:, 1, 1] = s
    maps[:, 0, 2] = half - s * cx
    maps[:, 1, 2] = half - s * cy
    crop_boxes = np.stack([s * (b[:, 0] - cx), s * (b[:, 1] - cy), s * (b[:, 2] - cx), s * (b[:, 3] - cy)], 1) + half
    return maps, np.clip(crop_boxes, 0.0, canvas - 1.0)


def cut_crops(image: np.ndarray, boxes: np.ndarray, size: float, canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut the crops of ``boxes`` from ``image`` (uint8 [H, W, 3], any channel order, kept) -> (uint8
    [M, canvas, canvas, 3], boxes in crop pixels [M, 4]). Beyond the image border the edge pixels repeat;
    a crop that shrinks its box is first smoothed (area averaging) so that it does not alias."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {tuple(image.shape)}")
    maps, crop_boxes = crop_windows(boxes, size, canvas)
    out = np.empty((len(maps), canvas, canvas, 3), np.uint8)
    for i, M in enumerate(maps):
        s = M[0, 0]
        src, M = image, M.copy()
        if s < 0.75:  # shrink the image by area averaging to about the crop's scale first, then place
            f = s
            h, w = image.shape[:2]
            src = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
            fx, fy = src.shape[1] / w, src.shape[0] / h
            # crop = M · image = M · diag(1/fx, 1/fy) · (small + 0.5) - 0.5 offsets, pixel-centre convention
            A = np.array([[1.0 / fx, 0.0, 0.5 / fx - 0.5], [0.0, 1.0 / fy, 0.5 / fy - 0.5], [0.0, 0.0, 1.0]])
            M = (np.vstack([M, [0.0, 0.0, 1.0]]) @ A)[:2]
        out[i] = cv2.warpAffine(src, M, (canvas, canvas), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, crop_boxes


def crop_rotations(net: torch.nn.Module, rgb: np.ndarray, boxes: np.ndarray, classes: np.ndarray, size: float,
                   canvas: int, device: torch.device | str = "cpu", backend: str = "auto") -> Tensor:
    """The rotation head's allocentric quaternions [M, 4] (normalised, float32) for ``boxes`` [M, 4] of the RGB
    image ``rgb`` (uint8 [H, W, 3]), each seen in its own crop (see the module docstring); ``classes`` [M] pick
    each row's class. ``net`` is a :class:`~posecnn_core.network.PoseCNN` with 3 input channels."""
    from .network import normalize_bgr

    if getattr(net, "in_channels", 3) != 3:
        raise ValueError("rotation crops need an RGB network (3 input channels)")
    if canvas % 16 or canvas < 16 or not 0 < size <= canvas:
        raise ValueError(f"rotation crops need canvas a multiple of 16 and 0 < size <= canvas, got size {size}, "
                         f"canvas {canvas}")
    m = len(boxes)
    if m == 0:
        return torch.zeros(0, 4, device=device)
    crops, crop_boxes = cut_crops(rgb, boxes, size, canvas)
    x = normalize_bgr(torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).to(device))
    conv4, conv5 = net.trunk(x)
    rois = torch.cat([torch.arange(m, dtype=torch.float32)[:, None], torch.from_numpy(crop_boxes).float()], 1)
    q = net.rotation_head(conv4.float(), conv5.float(), rois.to(device), backend=backend)
    cls = torch.as_tensor(np.asarray(classes), dtype=torch.long, device=q.device)
    q = q.float().view(m, -1, 4)[torch.arange(m, device=q.device), cls]
    return torch.nn.functional.normalize(q, dim=1)
