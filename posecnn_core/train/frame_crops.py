"""Crops of annotated objects cut from training frames, the way the estimator cuts detections for the rotation head
(``posecnn_core.rotation_crops``, ``rotation_crop_size``): the crop stream's second source (``crops.frame_fraction``).

Bank crops (``crops.py``) give many views of each object over photographs; frame crops give fewer, but exactly what
the estimator shows the rotation head at inference: rendered scenes with their lights, clutter, occluders and
aliasing, small objects resampled up. The target is the allocentric rotation of the object's annotated pose
(``geometry.ego_to_allo`` with its translation), which does not depend on where the crop was cut.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..datasets.ycb import YCBVideoDataset
from ..geometry import ego_to_allo, mat_to_quat
from ..rotation_crops import crop_windows, cut_crops
from ..targets import boxes_from_mask
from .config import DataSource

__all__ = ["FrameCrops"]


class FrameCrops:
    """Objects of the frames of ``sources`` with at least ``min_visible`` labelled pixels, cut into ``canvas``-pixel
    crops with their box's long side log-uniform in [``size_min``, ``size_max``] and the crop's centre shifted by
    ``jitter`` × the box size (the detection's own error)."""

    def __init__(self, sources: Sequence[DataSource], canvas: int, size_min: float, size_max: float,
                 jitter: float = 0.1, min_visible: int = 200) -> None:
        if not sources:
            raise ValueError("frame crops need at least one dataset (crops.frame_data or train_data)")
        self.datasets = [YCBVideoDataset(s.root, s.split, load_depth=False, skip_bad=True) for s in sources]
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets])
        if self.offsets[-1] == 0:
            raise ValueError("frame crops: the datasets hold no usable frames")
        self.canvas, self.size_min, self.size_max = canvas, size_min, size_max
        self.jitter, self.min_visible = jitter, min_visible

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def sample(self, rng: np.random.Generator, tries: int = 8
               ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray] | None:
        """One crop -> (BGR uint8 [S, S, 3], the object's visible box in the crop (x1, y1, x2, y2), class index,
        allocentric quaternion); None when ``tries`` frames in a row showed no object large enough."""
        for _ in range(tries):
            index = int(rng.integers(len(self)))
            part = int(np.searchsorted(self.offsets, index, side="right")) - 1
            frame = self.datasets[part][index - int(self.offsets[part])]
            boxes = boxes_from_mask(frame.instance, frame.num_objects)
            n = frame.num_objects
            visible = np.bincount(frame.instance.ravel(), minlength=n + 1)[1:n + 1]  # one pass for all objects
            candidates = np.flatnonzero(visible >= self.min_visible)
            if candidates.size == 0:
                continue
            k = int(candidates[rng.integers(candidates.size)])
            box = boxes[k].astype(np.float64)
            w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
            shift = rng.normal(0.0, self.jitter, 2) * [w, h]
            window = box + np.concatenate([shift, shift])  # the crop is centred on a slightly wrong box
            size = float(np.exp(rng.uniform(np.log(self.size_min), np.log(self.size_max))))
            crops, _ = cut_crops(frame.color_bgr, window[None], size, self.canvas)
            M = crop_windows(window[None], size, self.canvas)[0][0]
            corners = M @ np.array([[box[0], box[2]], [box[1], box[3]], [1.0, 1.0]])  # columns: the two corners
            exact = np.clip([corners[0, 0], corners[1, 0], corners[0, 1], corners[1, 1]], 0.0, self.canvas - 1.0)
            R, t = frame.poses[k, :, :3], frame.poses[k, :, 3]
            q = np.asarray(ego_to_allo(mat_to_quat(R), t), dtype=np.float64)
            return crops[0], exact.astype(np.float32), int(frame.cls_indexes[k]), q
        return None
