"""Training samples from YCB-Video-layout frames: resize, rescale, augment, targets, batching and the epoch sampler.

A sample keeps the vertex targets compact (3 channels for each pixel's own class plus a mask); the training step
expands them to PT's [B, 3C, H, W] layout on the device (:func:`expand_vertex_targets`), which keeps the data
loader's traffic independent of the number of classes. Depth targets are relative to the reference focal length
(``posecnn_core.targets``): log(Tz · f_ref / f_frame) with f_frame = √(fx·fy) of the frame's final K.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from ..augment import BackgroundImages, augment
from ..camera import scale_intrinsics
from ..geometry import backproject
from ..datasets.ycb import Frame, YCBVideoDataset
from ..network import PIXEL_MEANS_BGR
from ..objects import ObjectSet
from ..targets import compute_targets
from .config import AugmentConfig, DataSource

__all__ = ["TrainSample", "Batch", "TrainDataset", "collate", "EpochSampler", "resize_frame", "crop_frame",
           "rescale_frame", "expand_vertex_targets", "image_to_input"]


@dataclass
class TrainSample:
    """One augmented frame with its targets (numpy). image: float32 [Cin, H, W] network input (normalised BGR,
    + x, y, z from depth when Cin = 6); label int64 [H, W]; vertex float32 [3, H, W] = (nx, ny, log Tz) of each
    pixel's instance (log Tz normalised to the reference focal length); vertex_mask float32 [H, W]; K float64
    [3, 3] the frame's intrinsics after resizing/rescaling; per instance: classes [N], boxes [N, 4] (x1, y1, x2,
    y2), quaternions [N, 4] egocentric (w, x, y, z), translations [N, 3], visible [N] labelled pixel counts."""

    image: np.ndarray
    label: np.ndarray
    vertex: np.ndarray
    vertex_mask: np.ndarray
    classes: np.ndarray
    boxes: np.ndarray
    quaternions: np.ndarray
    translations: np.ndarray
    visible: np.ndarray
    frame_id: str
    K: np.ndarray


@dataclass
class Batch:
    """A padded batch (H, W multiples of 16); instance rows carry their image index in ``inst_batch``."""

    image: Tensor          # [B, Cin, H, W]
    label: Tensor          # [B, H, W] int64
    vertex: Tensor         # [B, 3, H, W]
    vertex_mask: Tensor    # [B, H, W]
    inst_batch: Tensor     # [N] int64
    inst_class: Tensor     # [N] int64
    inst_box: Tensor       # [N, 4]
    inst_quat: Tensor      # [N, 4] egocentric
    inst_t: Tensor         # [N, 3]
    inst_visible: Tensor   # [N] int64
    frame_ids: list[str]
    K: Tensor              # [B, 3, 3] float32, each frame's intrinsics
    image_hw: Tensor       # [B, 2] int64, each frame's size before padding

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        moved = {k: (v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v)
                 for k, v in self.__dict__.items()}
        return Batch(**moved)

    def pin_memory(self) -> "Batch":
        return Batch(**{k: (v.pin_memory() if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()})


def resize_frame(frame: Frame, height: int, width: int) -> Frame:
    """Frame resized to ``height`` x ``width``: colour bilinear, label/instance/depth nearest, K from
    ``camera.scale_intrinsics`` (pixel centres stay consistent: u' = s·u + (s − 1)/2). Poses are unchanged."""
    h, w = frame.label.shape
    if (h, w) == (height, width):
        return frame
    sx, sy = width / w, height / h
    K = scale_intrinsics(frame.K, sx, sy)
    near = cv2.INTER_NEAREST
    color = cv2.resize(frame.color_bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(frame.label.astype(np.int32), (width, height), interpolation=near).astype(np.int64)
    inst = cv2.resize(frame.instance.astype(np.int32), (width, height), interpolation=near)
    depth = None if frame.depth is None else cv2.resize(frame.depth, (width, height), interpolation=near)
    centers = frame.centers * np.array([sx, sy]) + 0.5 * (np.array([sx, sy]) - 1)
    return Frame(frame_id=frame.frame_id, color_bgr=color, depth=depth, label=label, instance=inst,
                 cls_indexes=frame.cls_indexes, poses=frame.poses, K=K, factor_depth=frame.factor_depth,
                 centers=centers)


def crop_frame(frame: Frame, x0: int, y0: int, height: int, width: int) -> Frame:
    """The ``height`` x ``width`` window of ``frame`` whose top-left pixel is (x0, y0); the window may reach
    outside the frame (negative offsets or beyond the far edges), which is filled with zeros (label 0, no
    instance, no depth). K's principal point moves by (−x0, −y0); poses are unchanged."""
    h, w = frame.label.shape
    ys, xs = slice(max(0, y0), min(h, y0 + height)), slice(max(0, x0), min(w, x0 + width))
    yd, xd = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)

    def window(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        out = np.zeros((height, width) + a.shape[2:], dtype=a.dtype)
        if ys.stop > ys.start and xs.stop > xs.start:
            out[yd, xd] = a[ys, xs]
        return out

    K = frame.K.copy()
    K[0, 2] -= x0
    K[1, 2] -= y0
    return Frame(frame_id=frame.frame_id, color_bgr=window(frame.color_bgr), depth=window(frame.depth),
                 label=window(frame.label), instance=window(frame.instance), cls_indexes=frame.cls_indexes,
                 poses=frame.poses, K=K, factor_depth=frame.factor_depth,
                 centers=frame.centers - np.array([x0, y0], dtype=np.float64))


def rescale_frame(frame: Frame, scale: float, rng: np.random.Generator) -> Frame:
    """Scale augmentation: ``frame`` resized by ``scale`` (K adjusted exactly, ``camera.scale_intrinsics``), then
    cropped (scale > 1, random window) or zero-padded (scale < 1, at a random position) back to its size. The
    objects look as through a camera with ``scale`` times the focal length."""
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    h, w = frame.label.shape
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    scaled = resize_frame(frame, nh, nw)
    x0 = int(rng.integers(0, nw - w + 1)) if nw >= w else -int(rng.integers(0, w - nw + 1))
    y0 = int(rng.integers(0, nh - h + 1)) if nh >= h else -int(rng.integers(0, h - nh + 1))
    return crop_frame(scaled, x0, y0, h, w)


def image_to_input(color_bgr: np.ndarray, depth: np.ndarray | None, K: np.ndarray, in_channels: int
                   ) -> np.ndarray:
    """BGR uint8 [H, W, 3] (+ depth, metres) -> float32 [Cin, H, W] as the estimator builds it: BGR/255 minus
    PIXEL_MEANS_BGR, then for Cin = 6 the camera-frame x, y, z of each pixel (zeros without depth)."""
    img = color_bgr.astype(np.float32) / 255.0 - np.asarray(PIXEL_MEANS_BGR, np.float32)
    chans = [img.transpose(2, 0, 1)]
    if in_channels == 6:
        if depth is None:
            raise ValueError("in_channels 6 needs depth images: the frame has none (load_depth off?)")
        xyz = backproject(depth.astype(np.float32), np.asarray(K, dtype=np.float32))
        chans.append(np.ascontiguousarray(np.asarray(xyz, dtype=np.float32).transpose(2, 0, 1)))
    elif in_channels != 3:
        raise ValueError(f"in_channels must be 3 or 6, got {in_channels}")
    return np.ascontiguousarray(np.concatenate(chans, axis=0))


class TrainDataset(torch.utils.data.Dataset):
    """All frames of the configured sources as :class:`TrainSample` s.

    Randomness (augmentation) comes from ``numpy.random.default_rng([seed, epoch, index])``, so a sample is the
    same whichever worker makes it and a resumed run sees the same data; call :meth:`set_epoch` each epoch.
    """

    def __init__(self, sources: Sequence[DataSource], objects: ObjectSet, *, in_channels: int = 3,
                 input_size: Sequence[int] | None = None, augment: AugmentConfig | None = None,
                 seed: int = 0, skip_bad: bool = True, reference_focal: float | None = None) -> None:
        if not sources:
            raise ValueError("sources must name at least one dataset")
        self.objects = objects
        self.in_channels = in_channels
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        settings = augment or AugmentConfig(enabled=False)
        self.augment = settings
        self.reference_focal = reference_focal
        self.seed = seed
        self.epoch = 0
        self.parts: list[tuple[YCBVideoDataset, bool]] = []
        for src in sources:
            ds = YCBVideoDataset(src.root, src.split, load_depth=in_channels == 6, skip_bad=skip_bad)
            if len(ds) == 0:
                raise ValueError(f"dataset {src.root} split {src.split!r} has no usable frames")
            if ds.class_names is not None and ds.class_names != list(objects.class_names):
                raise ValueError(f"dataset {src.root} lists classes {ds.class_names[1:]} "
                                 f"(image_sets/classes.txt) but the object set {objects.name!r} has "
                                 f"{list(objects.class_names[1:])}; class indices would not match")
            self.parts.append((ds, src.synthetic))
        self._ops = {syn: settings.for_source(syn) for syn in (False, True)}
        needs_backgrounds = any(op.background_prob > 0 for op in self._ops.values())
        self._backgrounds = BackgroundImages(settings.background_dir) if needs_backgrounds else None
        self._offsets = np.cumsum([0] + [len(ds) for ds, _ in self.parts])
        self._points = {c: objects.points[c] for c in range(1, objects.num_classes)}

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def locate(self, index: int) -> tuple[YCBVideoDataset, bool, int]:
        part = int(np.searchsorted(self._offsets, index, side="right")) - 1
        ds, synthetic = self.parts[part]
        return ds, synthetic, index - int(self._offsets[part])

    def __getitem__(self, index: int) -> TrainSample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} frames")
        ds, synthetic, local = self.locate(index)
        frame = ds[local]
        return self.make_sample(frame, np.random.default_rng([self.seed, self.epoch, index]), synthetic)

    def make_sample(self, frame: Frame, rng: np.random.Generator, synthetic: bool) -> TrainSample:
        C = self.objects.num_classes
        if frame.cls_indexes.size and int(frame.cls_indexes.max()) >= C:
            raise ValueError(f"frame {frame.frame_id}: class index {int(frame.cls_indexes.max())} is not in the "
                             f"object set {self.objects.name!r} ({C - 1} classes)")
        if self.input_size is not None:
            frame = resize_frame(frame, *self.input_size)
        a = self.augment
        if a.enabled and a.scale_prob > 0 and rng.random() < a.scale_prob:
            frame = rescale_frame(frame, float(rng.uniform(a.scale_min, a.scale_max)), rng)
        label = frame.label
        if label.max(initial=0) >= C:
            raise ValueError(f"frame {frame.frame_id}: label value {int(label.max())} >= num_classes {C}")
        tg = compute_targets(label, frame.instance, frame.cls_indexes, frame.poses, frame.K, C,
                             points_by_class=self._points, reference_focal=self.reference_focal)
        H, W = label.shape
        vt = tg.vertex_targets.reshape(C, 3, H, W)
        vw = tg.vertex_weights.reshape(C, 3, H, W)[:, 0]
        idx = label[None, None]  # pixel's own class
        vertex = np.take_along_axis(vt, np.broadcast_to(idx, (1, 3, H, W)), axis=0)[0]
        mask = np.take_along_axis(vw, label[None], axis=0)[0]
        color = augment(frame.color_bgr, rng, self._ops[synthetic], label=label, backgrounds=self._backgrounds)
        image = image_to_input(color, frame.depth, frame.K, self.in_channels)
        return TrainSample(image=image, label=label.astype(np.int64), vertex=np.ascontiguousarray(vertex),
                           vertex_mask=np.ascontiguousarray(mask, dtype=np.float32), classes=tg.classes,
                           boxes=tg.boxes, quaternions=tg.quaternions, translations=tg.poses[:, :, 3].copy(),
                           visible=tg.visible_pixels, frame_id=frame.frame_id, K=np.asarray(frame.K, np.float64))


def collate(samples: Sequence[TrainSample]) -> Batch:
    """Stack samples, zero-padding every image to the largest height/width rounded up to a multiple of 16."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    H = max(s.label.shape[0] for s in samples)
    W = max(s.label.shape[1] for s in samples)
    H, W = -(-H // 16) * 16, -(-W // 16) * 16
    B, cin = len(samples), samples[0].image.shape[0]
    image = torch.zeros(B, cin, H, W)
    label = torch.zeros(B, H, W, dtype=torch.int64)
    vertex = torch.zeros(B, 3, H, W)
    mask = torch.zeros(B, H, W)
    for i, s in enumerate(samples):
        h, w = s.label.shape
        image[i, :, :h, :w] = torch.from_numpy(s.image)
        label[i, :h, :w] = torch.from_numpy(s.label)
        vertex[i, :, :h, :w] = torch.from_numpy(s.vertex)
        mask[i, :h, :w] = torch.from_numpy(s.vertex_mask)

    def cat(name: str, dtype: torch.dtype, width: int | None) -> Tensor:
        parts = [torch.as_tensor(np.asarray(getattr(s, name)), dtype=dtype) for s in samples]
        out = torch.cat(parts) if parts else torch.zeros(0)
        return out.reshape(-1, width) if width else out.reshape(-1)

    inst_batch = torch.cat([torch.full((len(s.classes),), i, dtype=torch.int64) for i, s in enumerate(samples)])
    return Batch(image=image, label=label, vertex=vertex, vertex_mask=mask, inst_batch=inst_batch,
                 inst_class=cat("classes", torch.int64, None), inst_box=cat("boxes", torch.float32, 4),
                 inst_quat=cat("quaternions", torch.float32, 4), inst_t=cat("translations", torch.float32, 3),
                 inst_visible=cat("visible", torch.int64, None), frame_ids=[s.frame_id for s in samples],
                 K=torch.as_tensor(np.stack([s.K for s in samples]), dtype=torch.float32),
                 image_hw=torch.tensor([s.label.shape for s in samples], dtype=torch.int64))


class EpochSampler(torch.utils.data.Sampler):
    """Sample indices for one epoch of one process, reproducible from (seed, epoch).

    The epoch's global order is a function of (seed, epoch) alone: concatenated fresh permutations of the data
    (so an epoch may be longer than the data, as PT's 20k-iteration epochs are), of which the epoch takes its
    first ``samples_per_rank · world_size``. Rank r gets every world_size-th one starting at r, like
    DistributedSampler, so that with batches of b samples per rank, step k of all ranks together takes the
    global positions [k·G, (k+1)·G), G = b · world_size, whatever the world size: within one pass over the data
    the ranks' samples are disjoint. ``start`` skips the first samples of this rank's share (resuming mid-epoch:
    step k of the epoch starts at start = k · b).
    """

    def __init__(self, num_items: int, samples_per_rank: int, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True) -> None:
        if num_items < 1 or samples_per_rank < 1:
            raise ValueError(f"num_items and samples_per_rank must be >= 1, got {num_items}, {samples_per_rank}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.num_items, self.samples_per_rank = num_items, samples_per_rank
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.samples_per_rank:
            raise ValueError(f"start must be in [0, {self.samples_per_rank}], got {start}")
        self.epoch, self.start = int(epoch), int(start)

    def indices(self) -> np.ndarray:
        total = self.samples_per_rank * self.world_size
        cycles = math.ceil(total / self.num_items)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = np.concatenate([rng.permutation(self.num_items) for _ in range(cycles)])
        else:
            order = np.tile(np.arange(self.num_items), cycles)
        return order[:total][self.rank::self.world_size]

    def positions(self, step: int, count: int) -> list[int]:
        """Positions in the epoch's global order (0-based) of the ``count`` samples of this rank's ``step``-th
        batch of the epoch (a step takes the global positions [step·G, (step+1)·G), G = count · world_size, rank r
        those ≡ r mod world_size): the same sample has the same position whatever the world size."""
        base = step * count * self.world_size + self.rank
        return [base + self.world_size * j for j in range(count)]

    def __iter__(self) -> Iterator[int]:
        return iter(int(i) for i in self.indices()[self.start:])

    def __len__(self) -> int:
        return self.samples_per_rank - self.start


def expand_vertex_targets(vertex: Tensor, mask: Tensor, label: Tensor, num_classes: int,
                          inside_weight: float) -> tuple[Tensor, Tensor]:
    """Compact [B, 3, H, W] targets + [B, H, W] mask -> PT's ([B, 3C, H, W] targets, [B, 3C, H, W] weights):
    class c's channels 3c..3c+2 hold the pixel's targets where the pixel's label is c (weights = mask ·
    inside_weight there), zeros elsewhere."""
    B, _, H, W = vertex.shape
    onehot = torch.nn.functional.one_hot(label, num_classes).permute(0, 3, 1, 2).to(vertex.dtype)  # [B, C, H, W]
    targets = (onehot[:, :, None] * vertex[:, None]).reshape(B, 3 * num_classes, H, W)
    weights = (onehot * (mask * inside_weight)[:, None])[:, :, None].expand(B, num_classes, 3, H, W)
    return targets, weights.reshape(B, 3 * num_classes, H, W)
