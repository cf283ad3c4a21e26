"""Object-centred crops for the rotation head: views from a bank (``posecnn_core.synth.views``) composited onto
photographs, with occluders, an in-plane rotation and a random apparent size, each with its RoI and allocentric
rotation target.

Why: the rotation head learns from RoIs, and a frame of our synthetic scenes holds about four objects whose
views the network sees again every epoch. A bank of rendered views turned in the image plane, rescaled and
placed over random backgrounds gives new object views at the cost of a small crop each
(docs/training.md, "Rotations that generalise").

Geometry: a bank view shows its object on the optical axis at t = (0, 0, z). Turning the image by θ about the
principal point is the camera turning by θ about its optical axis, so the object's rotation becomes Rz(θ)·R with
t unchanged; the target is the allocentric quaternion of that pose (``geometry.ego_to_allo``, PT's convention).
Moving the view elsewhere in the crop leaves the allocentric rotation unchanged, which is what the allocentric
parametrisation assumes of the appearance.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from ..augment import AugmentConfig, augment
from ..geometry import ego_to_allo, mat_to_quat, quat_to_mat

if TYPE_CHECKING:
    from .frame_crops import FrameCrops

__all__ = ["ViewBank", "CropSettings", "CropBatch", "inplane_rotation", "compose_crop", "make_crop_batch"]


class ViewBank:
    """A view bank folder read through a memory map: ``views`` uint8 [N, S, S, 4] (RGB + mask), ``class_index``
    [N], ``quaternion`` [N, 4] (egocentric), ``z`` [N]; only the ``done`` views written so far are used."""

    def __init__(self, root: str | Path, class_names: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        self.class_names = None if class_names is None else list(class_names)
        self.refresh()

    def refresh(self) -> None:
        """(Re)read the bank: a bank still being rendered grows between calls."""
        root, class_names = self.root, self.class_names
        views, meta = root / "views.npy", root / "views_meta.npz"
        if not views.is_file() or not meta.is_file():
            raise FileNotFoundError(f"no view bank in {root} (views.npy and views_meta.npz; make one with "
                                    "python -m posecnn_core.synth.views)")
        with np.load(meta) as m:
            done = int(m["done"])
            self.classes = [str(c) for c in m["classes"]]
            self.class_index = m["class_index"][:done].astype(np.int64)
            self.quaternion = m["quaternion"][:done].astype(np.float64)
            self.z = m["z"][:done].astype(np.float64)
        if class_names is not None and list(class_names) != self.classes:
            raise ValueError(f"view bank {root} has classes {self.classes}, the model has {list(class_names)}")
        if done == 0:
            raise ValueError(f"view bank {root} holds no views yet")
        full = np.load(views, mmap_mode="r")
        self.views_total = int(full.shape[0])
        self.views = full[:done]
        self.size = int(self.views.shape[1])
        self.by_class = {c: np.flatnonzero(self.class_index == c) for c in np.unique(self.class_index)}

    def __len__(self) -> int:
        return len(self.class_index)

    def pick(self, rng: np.random.Generator) -> int:
        """A view index: a class uniformly among those in the bank, then one of its views."""
        keys = sorted(self.by_class)
        pool = self.by_class[keys[int(rng.integers(len(keys)))]]
        return int(pool[int(rng.integers(len(pool)))])


@dataclass(frozen=True)
class CropSettings:
    """How crops are made: ``canvas`` pixels square; the object's box long side log-uniform in
    [``size_min``, ``size_max``]; with ``occlusion_prob`` an occluder (another view or a photo patch) hides up to
    ``max_occlusion`` of the object; RoIs jittered by ``roi_jitter`` (centre shift std × size, log-scale std);
    ``resolution_min`` > 0: the crop is seen at a lower resolution, the object's long side log-uniform in
    [resolution_min, size] pixels, and resampled back up: how a small RoI cut from a frame and resampled to a
    canonical size looks (0 = off)."""

    canvas: int = 112
    size_min: float = 24.0
    size_max: float = 100.0
    occlusion_prob: float = 0.5
    max_occlusion: float = 0.6
    roi_jitter: float = 0.1
    resolution_min: float = 0.0


@dataclass
class CropBatch:
    """``image`` uint8 BGR [B, S, S, 3]; ``rois`` float32 [B, 5] (batch index, x1, y1, x2, y2); ``classes`` int64
    [B]; ``q_allo`` float32 [B, 4] allocentric targets (w >= 0); ``boxes`` float32 [B, 4] the exact object boxes."""

    image: np.ndarray
    rois: np.ndarray
    classes: np.ndarray
    q_allo: np.ndarray
    boxes: np.ndarray

    def tensors(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(uint8 image [B, S, S, 3], rois, classes, q_allo) as tensors on ``device``."""
        return (torch.from_numpy(self.image).to(device), torch.from_numpy(self.rois).to(device),
                torch.from_numpy(self.classes).to(device), torch.from_numpy(self.q_allo).to(device))


def inplane_rotation(image: np.ndarray, R: np.ndarray, theta: float, center: tuple[float, float]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Turn ``image`` by ``theta`` radians about ``center`` (the principal point) as the camera turning about its
    optical axis: a point at (u, v) moves to center + Rot(θ)·((u, v) − center) (v down, so a positive θ turns
    the picture clockwise on screen). Returns (turned image, Rz(θ) @ R)."""
    c, s = np.cos(theta), np.sin(theta)
    cx, cy = center
    M = np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy]])
    h, w = image.shape[:2]
    out = cv2.warpAffine(image, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return out, Rz @ R


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _scaled_view(bank: ViewBank, index: int, rng: np.random.Generator, size: float
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """A view turned by a random in-plane angle, cut to its mask's box and scaled so that the box's long side is
    ``size`` pixels -> (RGBA float32 [h, w, 4] with alpha in 0..1, rotation Rz(θ)·R); None if empty."""
    view = np.asarray(bank.views[index])
    R = quat_to_mat(bank.quaternion[index])
    c = (bank.size - 1) / 2.0
    view, R = inplane_rotation(view, R, float(rng.uniform(-np.pi, np.pi)), (c, c))
    box = _mask_box(view[..., 3] > 127)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    cut = view[y0:y1 + 1, x0:x1 + 1]
    scale = size / max(x1 - x0 + 1, y1 - y0 + 1)
    w = max(1, int(round(cut.shape[1] * scale)))
    h = max(1, int(round(cut.shape[0] * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.resize(cut, (w, h), interpolation=interp).astype(np.float32)
    out[..., 3] /= 255.0
    return out, R


def _paste(canvas: np.ndarray, rgba: np.ndarray, x: int, y: int) -> np.ndarray:
    """Alpha-composite ``rgba`` onto ``canvas`` (float32 RGB) with its top-left corner at (x, y), clipped;
    returns the pasted alpha in canvas coordinates."""
    H, W = canvas.shape[:2]
    h, w = rgba.shape[:2]
    alpha = np.zeros((H, W), np.float32)
    cx0, cy0, cx1, cy1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if cx1 <= cx0 or cy1 <= cy0:
        return alpha
    part = rgba[cy0 - y:cy1 - y, cx0 - x:cx1 - x]
    a = part[..., 3:4]
    canvas[cy0:cy1, cx0:cx1] = a * part[..., :3] + (1 - a) * canvas[cy0:cy1, cx0:cx1]
    alpha[cy0:cy1, cx0:cx1] = a[..., 0]
    return alpha


def _photo_patch(rng: np.random.Generator, background: np.ndarray, size: float) -> np.ndarray:
    """An occluder cut from a photograph: an ellipse or a polygon of about ``size`` pixels, RGBA float32."""
    s = max(4, int(size))
    tex = cv2.resize(background, (s, s), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    tex = tex * rng.uniform(0.5, 1.3) + rng.uniform(-40, 40, size=3)
    mask = np.zeros((s, s), np.uint8)
    if rng.random() < 0.5:
        axes = (max(1, int(s * rng.uniform(0.2, 0.5))), max(1, int(s * rng.uniform(0.2, 0.5))))
        cv2.ellipse(mask, (s // 2, s // 2), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    else:
        n = int(rng.integers(3, 7))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = s * rng.uniform(0.25, 0.5, n)
        pts = np.stack([s / 2 + rad * np.cos(ang), s / 2 + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255)
    return np.concatenate([np.clip(tex, 0, 255), mask[..., None].astype(np.float32) / 255.0], axis=2)


def compose_crop(bank: ViewBank, rng: np.random.Generator, settings: CropSettings, background: np.ndarray,
                 photometric: AugmentConfig | None = None) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """One crop: a bank view over ``background`` (RGB uint8 [S, S, 3]), maybe occluded, then PT's colour
    jitter and noise/blur (``photometric``, background replacement off). Returns (BGR uint8 image, exact box
    (x1, y1, x2, y2), class index, allocentric quaternion)."""
    S = settings.canvas
    if background.shape != (S, S, 3):
        raise ValueError(f"background must be [{S}, {S}, 3], got {background.shape}")
    while True:
        index = bank.pick(rng)
        size = float(np.exp(rng.uniform(np.log(settings.size_min), np.log(settings.size_max))))
        got = _scaled_view(bank, index, rng, size)
        if got is not None:
            break
    obj, R = got
    h, w = obj.shape[:2]
    x = int(rng.integers(0, max(1, S - w + 1)))
    y = int(rng.integers(0, max(1, S - h + 1)))
    canvas = background.astype(np.float32)
    alpha = _paste(canvas, obj, x, y)
    box = _mask_box(alpha > 0.5)
    if box is None:  # a one-pixel object scaled below half a pixel: take its placement box
        box = (x, y, x + w - 1, y + h - 1)
    if rng.random() < settings.occlusion_prob:
        _occlude(canvas, alpha, box, bank, rng, settings, background)
    if 0 < settings.resolution_min < size:
        canvas = _at_resolution(canvas, float(np.exp(rng.uniform(np.log(settings.resolution_min), np.log(size))))
                                / size)
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    if photometric is not None:
        image = augment(image, rng, photometric)
    t = np.array([0.0, 0.0, bank.z[index]])
    q = ego_to_allo(mat_to_quat(R), t)
    return np.ascontiguousarray(image[..., ::-1]), np.asarray(box, np.float32), int(bank.class_index[index]), q


def _at_resolution(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` scaled down by ``factor`` (< 1, area averaging) and back up to its size (bilinear)."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _occlude(canvas: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int], bank: ViewBank,
             rng: np.random.Generator, settings: CropSettings, background: np.ndarray) -> None:
    """Paste an occluder near the object, keeping at least 1 − ``max_occlusion`` of it visible (tries a few
    placements, else none)."""
    x0, y0, x1, y1 = box
    size = max(x1 - x0 + 1, y1 - y0 + 1)
    area = float((alpha > 0.5).sum())
    for _ in range(4):
        occ_size = size * rng.uniform(0.4, 1.0)
        if rng.random() < 0.5:
            got = _scaled_view(bank, bank.pick(rng), rng, occ_size)
            if got is None:
                continue
            occ = got[0]
        else:
            occ = _photo_patch(rng, background[::-1, ::-1], occ_size)
        ang = rng.uniform(0, 2 * np.pi)
        dist = size * rng.uniform(0.35, 0.9)
        cx = 0.5 * (x0 + x1) + dist * np.cos(ang)
        cy = 0.5 * (y0 + y1) + dist * np.sin(ang)
        ox, oy = int(cx - occ.shape[1] / 2), int(cy - occ.shape[0] / 2)
        occ_alpha = np.zeros_like(alpha)
        H, W = alpha.shape
        cx0, cy0 = max(ox, 0), max(oy, 0)
        cx1, cy1 = min(ox + occ.shape[1], W), min(oy + occ.shape[0], H)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        occ_alpha[cy0:cy1, cx0:cx1] = occ[cy0 - oy:cy1 - oy, cx0 - ox:cx1 - ox, 3]
        hidden = float(((alpha > 0.5) & (occ_alpha > 0.5)).sum())
        if area > 0 and hidden / area <= settings.max_occlusion:
            _paste(canvas, occ, ox, oy)
            return


def make_crop_batch(bank: ViewBank, rngs: Sequence[np.random.Generator], settings: CropSettings,
                    backgrounds: Sequence[np.ndarray], photometric: AugmentConfig | None = None,
                    frames: "FrameCrops | None" = None, frame_fraction: float = 0.0) -> CropBatch:
    """One crop per generator (crop i uses only ``rngs[i]`` and ``backgrounds[i]``), RoIs jittered as the
    ground-truth RoIs of training frames are (``roi_jitter``) and clipped to the crop. With ``frames``
    (``frame_crops.FrameCrops``), a crop comes from a training frame with probability ``frame_fraction``."""
    S = settings.canvas
    images, rois, classes, quats, boxes = [], [], [], [], []
    for i, (rng, bg) in enumerate(zip(rngs, backgrounds)):
        got = None
        if frames is not None and rng.random() < frame_fraction:
            got = frames.sample(rng)
            if got is not None and photometric is not None:
                got = (augment(got[0], rng, photometric), *got[1:])
        image, box, cls, q = got if got is not None else compose_crop(bank, rng, settings, bg, photometric)
        x1, y1, x2, y2 = box.tolist()
        w, h = x2 - x1 + 1, y2 - y1 + 1
        dx, dy = rng.normal(0.0, settings.roi_jitter, 2) * [w, h]
        sw, sh = np.exp(rng.normal(0.0, settings.roi_jitter, 2))
        cx, cy, nw, nh = x1 + 0.5 * w + dx, y1 + 0.5 * h + dy, w * sw, h * sh
        roi = np.clip([cx - 0.5 * nw, cy - 0.5 * nh, cx + 0.5 * nw - 1, cy + 0.5 * nh - 1], 0, S - 1)
        images.append(image)
        rois.append([i, *roi])
        classes.append(cls)
        quats.append(q)
        boxes.append(box)
    return CropBatch(np.stack(images), np.asarray(rois, np.float32), np.asarray(classes, np.int64),
                     np.asarray(quats, np.float32), np.asarray(boxes, np.float32))
