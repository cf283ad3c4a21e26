"""`PoseEstimator`: image + intrinsics (+ optional depth) → object poses, on CPU or CUDA.

The pipeline is PoseCNN's: dense network (labels + centre directions/depths) → Hough voting (centres, depths,
RoIs) → box head (class score, box deltas) → rotation head on the regressed boxes (allocentric quaternion) →
egocentric pose. See docs/estimator_api.md for the contract other components rely on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, model_from_checkpoint
from .geometry import allo_to_ego, mat_to_quat, quat_to_mat
from .network import PIXEL_MEANS_BGR, PoseCNN
from .objects import ObjectSet, load_object_set, matching_object_sets_hint
from .refine import RefineOptions, refine_poses
from .voting import VotingParams, hough_voting

BOX_DELTA_STDS = (0.1, 0.1, 0.2, 0.2)


class InputError(ValueError):
    """An input image, intrinsics matrix or depth map that cannot be processed."""


class ModelError(ValueError):
    """A checkpoint or object set that cannot be used (missing, corrupt, or not matching each other)."""


@dataclass(frozen=True)
class EstimatorConfig:
    """Inference settings. `score_threshold` applies to the box head's class probability. `refine` runs depth
    refinement (ICP, `posecnn_core.refine`) whenever a depth image is passed to `estimate`."""

    voting: VotingParams = field(default_factory=VotingParams)
    score_threshold: float = 0.2
    max_instances: int = 20
    backend: str = "auto"
    amp: bool = False
    refine: bool = True
    refine_options: RefineOptions = field(default_factory=RefineOptions)

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if self.max_instances < 1:
            raise ValueError(f"max_instances must be >= 1, got {self.max_instances}")
        if self.backend not in ("auto", "torch", "cpp", "cuda"):
            raise ValueError(f"backend must be auto, torch, cpp or cuda, got {self.backend!r}")


@dataclass
class ObjectPose:
    """One detected object instance; pose in the camera optical frame (X_cam = R·X_obj + t)."""

    class_id: int
    class_name: str
    instance: int
    score: float
    votes: int
    roi: np.ndarray
    center: np.ndarray
    depth: float
    R: np.ndarray
    t: np.ndarray
    quaternion: np.ndarray
    refined: bool = False
    refine_inlier_fraction: float = 0.0
    refine_status: str = ""
    R_initial: np.ndarray | None = None
    t_initial: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.R_initial is None:
            self.R_initial = self.R.copy()
        if self.t_initial is None:
            self.t_initial = self.t.copy()


@dataclass
class EstimationResult:
    """Everything one frame produced."""

    objects: list[ObjectPose]
    label: np.ndarray
    timings_ms: dict[str, float]


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' → CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ModelError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return dev


def check_intrinsics(K: np.ndarray | torch.Tensor) -> np.ndarray:
    """Return K as float64 [3, 3] or raise InputError naming what is wrong."""
    K = np.asarray(K.detach().cpu() if isinstance(K, torch.Tensor) else K, dtype=np.float64)
    if K.shape == (9,):
        K = K.reshape(3, 3)
    if K.shape != (3, 3):
        raise InputError(f"intrinsics K must be 3x3, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise InputError("intrinsics K contains NaN or inf")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"intrinsics K has non-positive focal length (fx={K[0, 0]}, fy={K[1, 1]})")
    return K


def check_image(rgb: np.ndarray) -> np.ndarray:
    """Return the image as uint8 [H, W, 3] or raise InputError naming what is wrong."""
    if not isinstance(rgb, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise InputError(f"image must be uint8 RGB, got dtype {rgb.dtype}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"image must have shape [H, W, 3], got {rgb.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InputError(f"image is empty ({rgb.shape[1]}x{rgb.shape[0]})")
    return rgb


def check_depth(depth: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return depth as float32 metres [H, W] (0 = no reading) or raise InputError."""
    depth = np.asarray(depth)
    if depth.shape != shape:
        raise InputError(f"depth shape {depth.shape} does not match the image {shape}")
    depth = depth.astype(np.float32)
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)


def apply_box_deltas(boxes: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Standard R-CNN box regression with PoseCNN's delta stds; boxes and deltas [R, 4]."""
    stds = deltas.new_tensor(BOX_DELTA_STDS)
    d = deltas * stds
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    cx = boxes[:, 0] + 0.5 * w
    cy = boxes[:, 1] + 0.5 * h
    pcx = d[:, 0] * w + cx
    pcy = d[:, 1] * h + cy
    pw = torch.exp(d[:, 2].clamp(max=math.log(1000.0 / 16))) * w
    ph = torch.exp(d[:, 3].clamp(max=math.log(1000.0 / 16))) * h
    return torch.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw - 1.0, pcy + 0.5 * ph - 1.0], dim=1)


class PoseEstimator:
    """Loads a checkpoint and an object set once; `estimate()` turns one image into object poses."""

    def __init__(
        self,
        checkpoint: str | Path,
        objects: str | Path | ObjectSet,
        *,
        device: str | torch.device = "auto",
        config: EstimatorConfig | None = None,
    ) -> None:
        self.config = config or EstimatorConfig()
        self.device = resolve_device(device)
        try:
            self.object_set = objects if isinstance(objects, ObjectSet) else load_object_set(objects)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load object set {objects}: {exc}") from exc
        try:
            net, meta = model_from_checkpoint(checkpoint, device=self.device)
        except (CheckpointError, OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load checkpoint {checkpoint}: {exc}") from exc
        self._check_match(net, meta, checkpoint)
        # channels_last roughly halves the VGG trunk's time on CPU (bench/bench_cpu.py) and suits tensor cores on GPU
        self.net: PoseCNN = net.eval().to(memory_format=torch.channels_last)
        self.class_names = list(self.object_set.class_names)
        self._extents = torch.as_tensor(self.object_set.extents, dtype=torch.float32, device=self.device)
        self._means = torch.tensor(PIXEL_MEANS_BGR, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def _check_match(self, net: PoseCNN, meta: object, checkpoint: str | Path) -> None:
        names = list(self.object_set.class_names)
        ckpt_names = getattr(meta, "class_names", None) if meta is not None else None
        if ckpt_names:
            if list(ckpt_names) != names:
                only_ckpt = [n for n in ckpt_names if n not in names]
                only_set = [n for n in names if n not in ckpt_names]
                raise ModelError(
                    f"object set {self.object_set.name!r} does not match checkpoint {checkpoint}: "
                    f"checkpoint classes {list(ckpt_names)}, object set classes {names}"
                    + (f"; only in checkpoint: {only_ckpt}" if only_ckpt else "")
                    + (f"; only in object set: {only_set}" if only_set else "")
                    + ("" if only_ckpt or only_set else "; same names in a different order")
                    + "; " + matching_object_sets_hint(len(ckpt_names), ckpt_names)
                )
        elif net.num_classes != len(names):
            raise ModelError(
                f"checkpoint {checkpoint} has {net.num_classes} classes (incl. background) but object set "
                f"{self.object_set.name!r} has {len(names)}; " + matching_object_sets_hint(net.num_classes)
            )
        if net.in_channels not in (3, 6):
            raise ModelError(f"checkpoint {checkpoint} expects {net.in_channels} input channels; 3 (RGB) or 6 (RGB-D)")

    # -- preprocessing -------------------------------------------------------------------------------------

    def _network_input(self, rgb: np.ndarray, K: np.ndarray, depth: np.ndarray | None) -> torch.Tensor:
        """Normalised BGR (+ XYZ from depth for RGB-D nets), padded to a multiple of 16: [1, C, H16, W16]."""
        h, w = rgb.shape[:2]
        img = torch.from_numpy(np.ascontiguousarray(rgb[:, :, ::-1])).to(self.device)
        img = img.permute(2, 0, 1).unsqueeze(0).float().div_(255.0).sub_(self._means)
        if self.net.in_channels == 6:
            if depth is None:
                raise InputError("this checkpoint is RGB-D (6 input channels): a depth image is required")
            xyz = backproject_depth(torch.from_numpy(depth).to(self.device), K)
            img = torch.cat([img, xyz.permute(2, 0, 1).unsqueeze(0)], dim=1)
        pad_h, pad_w = (-h) % 16, (-w) % 16
        if pad_h or pad_w:
            img = torch.nn.functional.pad(img, (0, pad_w, 0, pad_h))
        return img.contiguous(memory_format=torch.channels_last)

    # -- inference -------------------------------------------------------------------------------------------

    def warmup(self, height: int = 480, width: int = 640) -> None:
        """Run one dummy frame so that kernels and allocators are ready before real frames arrive."""
        K = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)
        self.estimate(np.zeros((height, width, 3), np.uint8), K,
                      np.zeros((height, width), np.float32) if self.net.in_channels == 6 else None)

    def estimate(self, rgb: np.ndarray, K: np.ndarray, depth: np.ndarray | None = None) -> EstimationResult:
        """Detect the object set's objects in `rgb` (uint8 [H, W, 3], RGB) seen through intrinsics `K`."""
        rgb = check_image(rgb)
        K = check_intrinsics(K)
        h, w = rgb.shape[:2]
        if depth is not None:
            depth = check_depth(depth, (h, w))
        timings: dict[str, float] = {}
        clock = _StageClock(self.device, timings)
        with torch.inference_mode():
            x = self._network_input(rgb, K, depth)
            clock.lap("preprocess")
            with torch.autocast(self.device.type, enabled=self.config.amp and self.device.type == "cuda"):
                scores, vertex, conv4, conv5 = self.net.dense(x)
            labels = scores.argmax(dim=1)
            labels[:, h:, :] = 0
            labels[:, :, w:] = 0
            clock.lap("network")
            K_t = torch.as_tensor(K, dtype=torch.float32, device=self.device)
            votes = hough_voting(labels, vertex.float(), K_t, self._extents, self.config.voting,
                                 backend=self.config.backend)
            clock.lap("voting")
            objects = self._heads(votes, conv4, conv5)
            clock.lap("rotation")
        label = labels[0, :h, :w].to(torch.int32).cpu().numpy()
        if depth is not None and self.config.refine and objects:
            self._refine(objects, depth, K, label)
            clock.lap("refinement")
        return EstimationResult(objects=objects, label=label, timings_ms=timings)

    def _refine(self, objects: list[ObjectPose], depth: np.ndarray, K: np.ndarray, label: np.ndarray) -> None:
        """Depth refinement of every object in place; an object whose refinement declines keeps its pose."""
        h, w = label.shape
        masks = []
        for obj in objects:
            x1, y1, x2, y2 = obj.roi
            box = np.zeros((h, w), dtype=bool)
            box[max(0, int(np.floor(y1))):max(0, int(np.ceil(y2)) + 1),
                max(0, int(np.floor(x1))):max(0, int(np.ceil(x2)) + 1)] = True
            masks.append((label == obj.class_id) & box)
        results = refine_poses(
            depth, K, masks, [o.R for o in objects], [o.t for o in objects],
            [self.object_set.points[o.class_id] for o in objects], self.config.refine_options,
            symmetric=[bool(self.object_set.symmetric[o.class_id]) for o in objects])
        for obj, res in zip(objects, results):
            obj.refine_inlier_fraction = float(res.inlier_fraction) if np.isfinite(res.inlier_fraction) else 0.0
            obj.refine_status = "ok" if res.success else res.reason
            if res.success:
                obj.refined = True
                obj.R = np.asarray(res.R, dtype=np.float64)
                obj.t = np.asarray(res.t, dtype=np.float64)
                obj.quaternion = np.asarray(mat_to_quat(obj.R), dtype=np.float64)

    def _heads(self, votes, conv4: torch.Tensor, conv5: torch.Tensor) -> list[ObjectPose]:
        """Box head (score, box deltas) on the voted RoIs, rotation head on the regressed boxes."""
        n = votes.rois.shape[0]
        if n == 0:
            return []
        rows = votes.rois.float()
        cls = rows[:, 1].long()
        rois = torch.cat([rows[:, :1], rows[:, 2:6]], dim=1)
        with torch.autocast(self.device.type, enabled=self.config.amp and self.device.type == "cuda"):
            class_scores, box_deltas = self.net.box_head(conv4, conv5, rois)
        probs = torch.softmax(class_scores.float(), dim=1).gather(1, cls[:, None])[:, 0]
        keep = torch.nonzero(probs >= self.config.score_threshold).flatten()
        if keep.numel() == 0:
            return []
        keep = keep[torch.argsort(probs[keep], descending=True, stable=True)][: self.config.max_instances]
        cls, probs, rows = cls[keep], probs[keep], rows[keep]
        deltas = box_deltas.float()[keep].view(len(keep), -1, 4)[torch.arange(len(keep)), cls]
        boxes = apply_box_deltas(rows[:, 2:6], deltas)
        with torch.autocast(self.device.type, enabled=self.config.amp and self.device.type == "cuda"):
            quats = self.net.rotation_head(conv4, conv5, torch.cat([rows[:, :1], boxes], dim=1))
        q = quats.float().view(len(keep), -1, 4)[torch.arange(len(keep)), cls]
        q = torch.nn.functional.normalize(q, dim=1)
        t = votes.translations.float()[keep]
        q_ego = allo_to_ego(q, t)
        R = quat_to_mat(q_ego)
        out: list[ObjectPose] = []
        counts: dict[int, int] = {}
        for i in range(len(keep)):
            c = int(cls[i])
            k = counts.get(c, 0)
            counts[c] = k + 1
            out.append(ObjectPose(
                class_id=c,
                class_name=self.class_names[c],
                instance=k,
                score=float(probs[i]),
                votes=int(round(float(rows[i, 6]))),
                roi=rows[i, 2:6].cpu().numpy().astype(np.float32),
                center=votes.centers[keep[i]].float().cpu().numpy(),
                depth=float(t[i, 2]),
                R=R[i].cpu().numpy().astype(np.float64),
                t=t[i].cpu().numpy().astype(np.float64),
                quaternion=q_ego[i].cpu().numpy().astype(np.float64),
            ))
        return out


def backproject_depth(depth: torch.Tensor, K: np.ndarray) -> torch.Tensor:
    """Depth [H, W] metres → camera-frame points [H, W, 3] (zeros where depth is 0)."""
    h, w = depth.shape
    v, u = torch.meshgrid(torch.arange(h, device=depth.device, dtype=torch.float32),
                          torch.arange(w, device=depth.device, dtype=torch.float32), indexing="ij")
    x = (u - float(K[0, 2])) / float(K[0, 0]) * depth
    y = (v - float(K[1, 2])) / float(K[1, 1]) * depth
    return torch.stack([x, y, depth], dim=-1)


class _StageClock:
    """Records wall-clock time per stage in ms (synchronising CUDA so the numbers are real)."""

    def __init__(self, device: torch.device, sink: dict[str, float]) -> None:
        self._cuda = device.type == "cuda"
        self._sink = sink
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        if self._cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self._sink[name] = (now - self._t) * 1000.0
        self._t = now
