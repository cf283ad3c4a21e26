"""`PoseEstimator`: image + intrinsics (+ optional depth) → object poses, on CPU or CUDA.

The pipeline is PoseCNN-PyTorch's test-time path, rule for rule (docs/conventions.md): dense network (labels +
centre directions/depths) → Hough voting (centres, depths, RoIs) → box head on every voting RoI (class score,
box deltas decoded with PT's transform and clipped to the image) → score threshold and per-class NMS on the
regressed boxes → rotation head on the regressed boxes (allocentric quaternion) → egocentric pose with the voting
translation. Two additions, both about the camera: the depth head's output is relative to the focal length it was
trained with and is rescaled to the user's camera (focal-length-aware depth), and large frames can be downscaled.
See docs/estimator_api.md for the contract other components rely on.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch

from .boxes import BoxCoder, clip_boxes, nms
from .camera import YCB_VIDEO_CAMERA, ReferenceCamera, focal_length, scale_intrinsics
from .checkpoint import CheckpointError, CheckpointMeta, model_from_checkpoint
from .geometry import allo_to_ego, backproject, mat_to_quat, quat_to_mat
from .inference_runtime import DenseRunner, HostCopies, StageClock, pinned, upload
from .network import PIXEL_MEANS_BGR, PoseCNN, label_map
from .objects import ObjectSet, load_object_set, matching_object_sets_hint
from .ops.backend import BACKENDS, resolve_backend
from .refine import RefineOptions, refine_poses
from .rotation_crops import crop_rotations
from .tracking import Tracker
from .voting import VotingOutput, VotingParams, hough_voting

LOG = logging.getLogger(__name__)

DEPTH_MODES = ("scale", "resample")
PRESETS = ("pt_demo", "pt_ycb_eval")
AMP_DTYPES = ("bfloat16", "float16")


def tracked_refine_options(options: RefineOptions) -> RefineOptions:
    """Refinement of a tracked object from its predicted pose: local ICP from that one start (no rotation
    search, no further depth hypotheses); the acceptance rules stay."""
    return dataclasses.replace(options, rotation_search=0, tz_offsets=(0.0,), include_initial_tz=False,
                               center_hypothesis=False)


class InputError(ValueError):
    """An input image, intrinsics matrix or depth map that cannot be processed."""


class ModelError(ValueError):
    """A checkpoint or object set that cannot be used (missing, corrupt, or not matching each other)."""


@dataclass(frozen=True)
class EstimatorConfig:
    """Inference settings; the defaults are PoseCNN-PyTorch's image/ROS demo (preset ``pt_demo``).

    score_threshold: a detection is kept when its box-head probability is > this (None: no threshold).
    nms_iou: per-class NMS on the regressed boxes suppresses IoU > this (PT's +1 pixel areas).
    max_instances: most detections per frame, by score (128 = voting's cap, i.e. no extra limit).
    backend: implementation of voting and RoI pooling (``posecnn_core.ops.backend``).
    refine: depth refinement (ICP, ``posecnn_core.refine``) whenever a depth image is passed to ``estimate``.
    reference_camera: overrides the camera the checkpoint's depth head was trained with (see
    :meth:`PoseEstimator.reference_camera`).
    depth_mode: "scale" multiplies the network's depth by f_cam / f_ref; "resample" resizes the image so that its
    focal length is f_ref (objects appear at their training size), then scales what the resizing limits left.
    max_input_pixels: frames with more pixels are downscaled (K scaled exactly) before the network; None = never.
    max_resample_scale: largest upscale the "resample" mode applies.
    clip_boxes: clip the regressed boxes to the image (PT's test configuration).
    amp: run the dense network (trunk and dense heads) under autocast in ``amp_dtype``; the RoI heads run in
    float32 on the upcast features. Changes numerics slightly. On the CPU only bfloat16 applies (float16 is
    ignored there); it pays off for wide networks on CPUs with bfloat16 instructions (docs/node.md, "Speed").
    amp_dtype: "bfloat16" (default) or "float16".
    channels_last: keep the network and its input in channels-last memory layout (faster convolutions on CPU and
    on tensor cores; the same numbers either way up to floating-point summation order).
    cuda_graph: on CUDA, capture the dense forward once per input size in a CUDA graph and replay it (removes the
    per-kernel launch cost; same kernels, same numbers); ignored on CPU.
    compile: run the dense forward through ``torch.compile`` (fused kernels; changes numerics slightly); falls back
    to eager, with one warning, when compilation fails.
    rotation_crop_size: None (PT): the rotation head pools the frame's features in each detection's box; a number:
    each detection is cut from the image with its box's long side resampled to this many pixels, centred in a
    ``rotation_crop_canvas``-pixel square, and the rotation head runs on the trunk's features of those squares
    (``posecnn_core.rotation_crops``; for networks whose rotation path was trained on such crops); "auto" (the
    default): what the checkpoint's meta says (None for PoseCNN-PyTorch checkpoints, which carry no meta).
    """

    voting: VotingParams = field(default_factory=VotingParams)
    score_threshold: float | None = 0.1
    nms_iou: float = 0.2
    max_instances: int = 128
    backend: str = "auto"
    amp: bool = False
    refine: bool = True
    refine_options: RefineOptions = field(default_factory=RefineOptions)
    reference_camera: ReferenceCamera | None = None
    depth_mode: str = "scale"
    max_input_pixels: int | None = 1280 * 960
    max_resample_scale: float = 3.0
    clip_boxes: bool = True
    amp_dtype: str = "bfloat16"
    channels_last: bool = True
    cuda_graph: bool = False
    compile: bool = False
    rotation_crop_size: float | str | None = "auto"
    rotation_crop_canvas: int = 112

    def __post_init__(self) -> None:
        if not isinstance(self.voting, VotingParams):
            raise ValueError(f"voting must be a VotingParams, got {type(self.voting).__name__}")
        st = self.score_threshold
        if st is not None and (isinstance(st, bool) or not isinstance(st, (int, float)) or not 0.0 <= st <= 1.0):
            raise ValueError(f"score_threshold must be None or in [0, 1], got {st!r}")
        if not (isinstance(self.nms_iou, (int, float)) and 0.0 <= self.nms_iou <= 1.0):
            raise ValueError(f"nms_iou must be in [0, 1], got {self.nms_iou!r}")
        if isinstance(self.max_instances, bool) or not isinstance(self.max_instances, int) or self.max_instances < 1:
            raise ValueError(f"max_instances must be an integer >= 1, got {self.max_instances!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.reference_camera is not None and not isinstance(self.reference_camera, ReferenceCamera):
            raise ValueError("reference_camera must be a ReferenceCamera or None")
        if self.depth_mode not in DEPTH_MODES:
            raise ValueError(f"depth_mode must be one of {', '.join(DEPTH_MODES)}, got {self.depth_mode!r}")
        mp = self.max_input_pixels
        if mp is not None and (isinstance(mp, bool) or not isinstance(mp, int) or mp < 256):
            raise ValueError(f"max_input_pixels must be None or an integer >= 256, got {mp!r}")
        if not (isinstance(self.max_resample_scale, (int, float)) and 1.0 <= self.max_resample_scale <= 16.0):
            raise ValueError(f"max_resample_scale must be in [1, 16], got {self.max_resample_scale!r}")
        if self.amp_dtype not in AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {', '.join(AMP_DTYPES)}, got {self.amp_dtype!r}")
        for name in ("amp", "channels_last", "cuda_graph", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        canvas, size = self.rotation_crop_canvas, self.rotation_crop_size
        if isinstance(canvas, bool) or not isinstance(canvas, int) or canvas < 16 or canvas % 16:
            raise ValueError(f"rotation_crop_canvas must be a multiple of 16, got {canvas!r}")
        if size not in (None, "auto") and (isinstance(size, bool) or not isinstance(size, (int, float))
                                            or not 4 <= size <= canvas):
            raise ValueError(f"rotation_crop_size must be 'auto', None or a number in [4, rotation_crop_canvas = "
                             f"{canvas}], got {size!r}")

    @classmethod
    def preset(cls, name: str, **changes) -> "EstimatorConfig":
        """PT's two test configurations: ``pt_demo`` (image/ROS demo: score > 0.1, NMS IoU 0.2; the default) and
        ``pt_ycb_eval`` (YCB-Video keyframe evaluation: no score threshold, NMS IoU 0.5)."""
        if name == "pt_demo":
            base = cls()
        elif name == "pt_ycb_eval":
            base = cls(score_threshold=None, nms_iou=0.5)
        else:
            raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
        return dataclasses.replace(base, **changes) if changes else base


@dataclass
class ObjectPose:
    """One detected object instance; pose in the camera optical frame (X_cam = R·X_obj + t).

    roi: the regressed box (x1, y1, x2, y2) in image pixels; center: the voting centre; votes: its votes.
    track_id: the object's track (``posecnn_core.tracking``) when a tracker ran, else None; ``instance`` stays
    the frame-local index.
    """

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
    track_id: int | None = None

    def __post_init__(self) -> None:
        if self.R_initial is None:
            self.R_initial = self.R.copy()
        if self.t_initial is None:
            self.t_initial = self.t.copy()


@dataclass
class EstimationResult:
    """Everything one frame produced, and the settings it was produced with."""

    objects: list[ObjectPose]
    label: np.ndarray
    timings_ms: dict[str, float]
    config: EstimatorConfig | None = None


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' → CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(f"device must be auto, cpu or cuda[:N], got {device!r}") from exc
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


class InputGeometry(NamedTuple):
    """How a frame reaches the network: resized by ``scale`` (both axes) to ``size`` (h, w) with intrinsics
    ``K``; the network's depth is multiplied by ``depth_factor`` = f(K) / f_ref (1 when f_ref is unknown)."""

    scale: float
    size: tuple[int, int]
    K: np.ndarray
    depth_factor: float


def input_geometry(shape: tuple[int, int], K: np.ndarray, f_ref: float | None, cfg: EstimatorConfig) -> InputGeometry:
    """The resizing and depth scaling of one frame (see :class:`EstimatorConfig` for the modes)."""
    h, w = shape
    scale = 1.0
    if cfg.depth_mode == "resample" and f_ref is not None:
        scale = min(f_ref / focal_length(K), float(cfg.max_resample_scale))
    if cfg.max_input_pixels is not None and h * w * scale * scale > cfg.max_input_pixels:
        scale = math.sqrt(cfg.max_input_pixels / (h * w))
    size = (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
    if size == (h, w):
        scale, K_net = 1.0, K
    else:
        K_net = scale_intrinsics(K, size[1] / w, size[0] / h)
    factor = 1.0 if f_ref is None else focal_length(K_net) / f_ref
    return InputGeometry(scale, size, K_net, factor)


class _Detections(NamedTuple):
    """Per voting RoI, on the device: batch-free rows of the box head's verdict."""

    cls: torch.Tensor      # [N] int64
    score: torch.Tensor    # [N] float32, softmax(fc8)[cls]
    box: torch.Tensor      # [N, 4] regressed (and clipped) boxes, network-input pixels
    votes: torch.Tensor    # [N] float32
    center: torch.Tensor   # [N, 2] voting centres
    t: torch.Tensor        # [N, 3] voting translations (metres)


class PoseEstimator:
    """Loads a checkpoint and an object set once; `estimate()` turns one image into object poses.

    ``config`` may be replaced at any time (``estimator.config = new``): each ``estimate`` call takes one snapshot
    at its start, so a frame never mixes two settings.
    """

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
        for op in ("hough_voting", "roi_max_pool_forward"):
            try:
                resolve_backend(self.config.backend, self.device, op)
            except (ValueError, RuntimeError) as exc:
                raise ModelError(str(exc)) from exc
        try:
            self.object_set = objects if isinstance(objects, ObjectSet) else load_object_set(objects)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load object set {objects}: {exc}") from exc
        try:
            net, meta = model_from_checkpoint(checkpoint, device=self.device)
        except (CheckpointError, OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load checkpoint {checkpoint}: {exc}") from exc
        self._check_match(net, meta, checkpoint)
        self.meta: CheckpointMeta = meta
        # channels_last roughly halves the VGG trunk's time on CPU (bench/bench_cpu.py) and suits tensor cores on GPU
        self.net: PoseCNN = net.eval().to(memory_format=torch.channels_last)
        self._memory_format = torch.channels_last
        self.class_names = list(self.object_set.class_names)
        extents = torch.as_tensor(self.object_set.extents, dtype=torch.float32)
        # voting validates and uploads the extents itself: on CUDA it gets them in pinned host memory, so that
        # neither the check nor the copy waits for the GPU
        self._extents = pinned(extents) if self.device.type == "cuda" else extents
        self._means = torch.tensor(PIXEL_MEANS_BGR, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._coder = BoxCoder()
        self._warned: set[str] = set()
        self._dense_runner = DenseRunner(self._dense_core)

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

    # -- the camera ------------------------------------------------------------------------------------------

    def reference_camera(self, config: EstimatorConfig | None = None) -> tuple[ReferenceCamera | None, str]:
        """The camera the depth head is relative to, and where it came from. Precedence: the config's override,
        the checkpoint's meta, the object set's ``reference_camera``, the YCB-Video camera for PT checkpoints
        (which carry no meta); None (no rescaling) for our checkpoints that predate the field."""
        cfg = config or self.config
        if cfg.reference_camera is not None:
            return cfg.reference_camera, "config"
        if self.meta is not None and self.meta.reference_camera is not None:
            return self.meta.reference_camera, "checkpoint"
        from_set = getattr(self.object_set, "reference_camera", None)
        if from_set is not None:
            return from_set, f"object set {self.object_set.name!r}"
        if self.meta is None or self.meta.format_version == 0:
            return YCB_VIDEO_CAMERA, "PoseCNN-PyTorch default (YCB-Video camera)"
        return None, "unknown"

    def rotation_crop_size(self, config: EstimatorConfig | None = None) -> float | None:
        """The apparent size rotations are estimated at (``EstimatorConfig.rotation_crop_size``; "auto": the
        checkpoint meta's, None for checkpoints without one), or None: pooled from the frame, as PoseCNN does."""
        cfg = config or self.config
        size = cfg.rotation_crop_size
        if size == "auto":
            size = None if self.meta is None else self.meta.rotation_crop_size
            if size is not None and size > cfg.rotation_crop_canvas:
                raise ModelError(f"the checkpoint's rotation_crop_size {size} exceeds rotation_crop_canvas "
                                 f"{cfg.rotation_crop_canvas}")
        return None if size is None else float(size)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            LOG.warning(message, *args)

    # -- preprocessing -------------------------------------------------------------------------------------

    def _network_input(self, rgb: np.ndarray, K: np.ndarray, depth: np.ndarray | None,
                       config: EstimatorConfig | None = None) -> torch.Tensor:
        """Normalised BGR (+ XYZ from depth for RGB-D nets), padded to a multiple of 16: [1, C, H16, W16].
        As in PT, the padding is 0 in the raw image, i.e. minus the pixel means after normalisation. On CUDA the
        uint8 image is uploaded (pinned memory, asynchronously) and converted on the GPU."""
        cfg = config or self.config
        h, w = rgb.shape[:2]
        if self.device.type == "cuda":
            img = upload(rgb, self.device).flip(-1)
        else:
            img = torch.from_numpy(np.ascontiguousarray(rgb[:, :, ::-1]))
        img = img.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        pad_h, pad_w = (-h) % 16, (-w) % 16
        if pad_h or pad_w:
            img = torch.nn.functional.pad(img, (0, pad_w, 0, pad_h))
        img = img.sub_(self._means)
        if self.net.in_channels == 6:
            if depth is None:
                raise InputError("this checkpoint is RGB-D (6 input channels): a depth image is required")
            xyz = backproject(upload(depth, self.device), torch.as_tensor(K, dtype=torch.float32, device=self.device))
            xyz = torch.nn.functional.pad(xyz.permute(2, 0, 1).unsqueeze(0), (0, pad_w, 0, pad_h))
            img = torch.cat([img, xyz], dim=1)
        return img.contiguous(memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)

    def _apply_memory_format(self, channels_last: bool) -> None:
        """Convert the network's weights when the configured layout changed (drops captured CUDA graphs)."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        if fmt != self._memory_format:
            self.net.to(memory_format=fmt)
            self._memory_format = fmt
            self._dense_runner.reset()

    # -- inference -------------------------------------------------------------------------------------------

    def warmup(self, height: int = 480, width: int = 640) -> None:
        """Make everything ready before real frames arrive: one dummy frame of this size (kernels, allocator, cuDNN
        and, with ``cuda_graph`` / ``compile``, the graph capture / compilation for this size), then the RoI heads
        on one dummy box (a blank frame has no detections, so the frame alone would leave them cold)."""
        K = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)
        result = self.estimate(np.zeros((height, width, 3), np.uint8), K,
                               np.zeros((height, width), np.float32) if self.net.in_channels == 6 else None)
        cfg = result.config or self.config
        with torch.inference_mode():
            hn, wn = height + (-height) % 16, width + (-width) % 16
            T = self.net.trunk_channels
            conv4 = torch.zeros(1, T, hn // 8, wn // 8, device=self.device)
            conv5 = torch.zeros(1, T, hn // 16, wn // 16, device=self.device)
            box = [0.0, 1.0, 0.0, 0.0, float(min(31, width - 1)), float(min(31, height - 1)), 1.0]
            votes = VotingOutput(torch.tensor([box], device=self.device), torch.zeros(1, 2, device=self.device),
                                 torch.tensor([[0.0, 0.0, 1.0]], device=self.device))
            det = self._detections(votes, conv4, conv5, cfg, (height, width))
            self._rotations(conv4, conv5, det.cls, det.box, cfg)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)

    def estimate(self, rgb: np.ndarray, K: np.ndarray, depth: np.ndarray | None = None, *,
                 tracker: Tracker | None = None, stamp: float | None = None,
                 frame_id: str | None = None) -> EstimationResult:
        """Detect the object set's objects in `rgb` (uint8 [H, W, 3], RGB) seen through intrinsics `K`.

        With a `tracker` (``posecnn_core.tracking.Tracker``) the objects are those of its confirmed tracks, with
        track ids and filtered poses; `stamp` (seconds) and `frame_id` (the camera's) tell it the frame's time
        and source. With depth and the tracker's ``tracked_refinement``, an object matched to a confirmed track
        is refined from the track's predicted pose by local ICP only (no rotation search)."""
        cfg = self.config  # one snapshot for the whole frame
        rgb = check_image(rgb)
        K = check_intrinsics(K)
        h, w = rgb.shape[:2]
        if depth is not None:
            depth = check_depth(depth, (h, w))
        ref, source = self.reference_camera(cfg)
        if ref is None:
            self._warn_once("no-ref", "the checkpoint records no reference camera: depths are used as the network "
                            "gives them (set reference_camera to the camera it was trained with)")
        geo = input_geometry((h, w), K, None if ref is None else ref.focal, cfg)
        if geo.scale != 1.0 and cfg.max_input_pixels is not None and h * w > cfg.max_input_pixels:
            self._warn_once(f"downscale-{h}x{w}", "input %dx%d has more than max_input_pixels=%d pixels: "
                            "processing it at %dx%d (intrinsics scaled accordingly)",
                            w, h, cfg.max_input_pixels, geo.size[1], geo.size[0])
        self._apply_memory_format(cfg.channels_last)
        timings: dict[str, float] = {}
        clock = StageClock(self.device, timings)
        on_gpu = self.device.type == "cuda"
        copies = HostCopies(self.device)
        with torch.inference_mode():
            net_rgb = rgb if geo.scale == 1.0 else cv2.resize(rgb, (geo.size[1], geo.size[0]),
                                                             interpolation=cv2.INTER_AREA if geo.scale < 1
                                                             else cv2.INTER_LINEAR)
            net_depth = depth if depth is None or geo.scale == 1.0 else cv2.resize(
                depth, (geo.size[1], geo.size[0]), interpolation=cv2.INTER_NEAREST)
            x = self._network_input(net_rgb, geo.K, net_depth, cfg)
            clock.lap("preprocess")
            labels, vertex, conv4, conv5, owned = self._dense(x, geo.size, cfg)
            if geo.depth_factor != 1.0:
                vertex = vertex if owned else vertex.clone()
                vertex[:, 2::3] += math.log(geo.depth_factor)
            crop = self.rotation_crop_size(cfg)
            device_rows = on_gpu and crop is None  # rotation crops take the host path (the crops are cut there)
            if device_rows:  # lands while voting runs; uint8 is a quarter of the bytes (classes < 256)
                label_copy = copies.add(labels[0].to(torch.uint8 if self.net.num_classes <= 256 else torch.int32))
            clock.lap("network")
            K_t = torch.as_tensor(geo.K, dtype=torch.float32)
            votes = hough_voting(labels, vertex, pinned(K_t) if on_gpu else K_t, self._extents, cfg.voting,
                                 backend=cfg.backend)
            clock.lap("voting")
            if device_rows:
                rows = self._device_rows(votes, conv4, conv5, cfg, geo.size)
                clock.lap("rotation")
                row_copy = None if rows is None else copies.add(rows)
                clock.lap("transfer")
                copies.wait()  # the frame's one synchronisation of its own
                clock.device_done()
                label = copies.numpy(label_copy).astype(np.int32)  # a copy: pinned memory is not handed out
                objects = [] if row_copy is None else self._finish_rows(copies.numpy(row_copy), cfg, geo, (h, w))
                clock.resolve()
            else:
                objects = self._heads(votes, conv4, conv5, cfg, geo, (h, w), net_rgb, crop)
                clock.lap("rotation")
                label = labels[0].to(torch.int32).cpu().numpy()
        if geo.scale != 1.0:
            label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
        plan = tracker.begin(objects, stamp, frame_id, (h, w)) if tracker is not None else None
        if depth is not None and cfg.refine and objects:
            starts = plan.tracked_starts() if plan is not None and tracker.config.tracked_refinement else {}
            self._refine(objects, depth, K, label, cfg, starts)
            clock.lap("refinement")
        if plan is not None:
            objects = tracker.finish(plan, objects)
            clock.lap("tracking")
        return EstimationResult(objects=objects, label=label, timings_ms=timings, config=cfg)

    # -- dense network ---------------------------------------------------------------------------------------

    def _dense_core(self, x: torch.Tensor, hn: int, wn: int, amp_dtype: torch.dtype | None,
                    cache_enabled: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dense network on the padded input, cropped to the image: (labels [1, hn, wn] int64, vertex
        [1, 3C, hn, wn] float32 contiguous, conv4, conv5). Autocast in ``amp_dtype`` unless None."""
        with torch.autocast(self.device.type, dtype=amp_dtype, enabled=amp_dtype is not None,
                            cache_enabled=cache_enabled):
            scores, vertex, conv4, conv5 = self.net.dense(x)
        labels = label_map(scores[:, :, :hn, :wn])
        vertex = vertex[:, :, :hn, :wn].float().contiguous()
        return labels, vertex, conv4, conv5

    def _dense(self, x: torch.Tensor, size: tuple[int, int], cfg: EstimatorConfig
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """:meth:`_dense_core` eagerly, compiled and/or replayed from a CUDA graph as ``cfg`` asks; the last item
        tells whether the outputs are graph buffers (the caller may modify them in place)."""
        on_gpu = self.device.type == "cuda"
        # CPU autocast runs convolutions in bfloat16 through oneDNN (fast on CPUs with AVX-512 BF16 / AMX);
        # float16 on the CPU has no such kernels, so it is ignored there.
        amp_dtype = getattr(torch, cfg.amp_dtype) if cfg.amp and (on_gpu or cfg.amp_dtype == "bfloat16") else None
        if cfg.cuda_graph and not on_gpu:
            self._warn_once("graph-cpu", "cuda_graph applies to CUDA devices only; running the network eagerly "
                                         "on %s", self.device)
        # autocast's weight cast cache must be off inside a graph capture
        (labels, vertex, conv4, conv5), owned = self._dense_runner(
            x, compile=cfg.compile, graph=cfg.cuda_graph and on_gpu, hn=size[0], wn=size[1], amp_dtype=amp_dtype,
            cache_enabled=not (cfg.cuda_graph and on_gpu))
        return labels, vertex, conv4, conv5, owned

    # -- heads -----------------------------------------------------------------------------------------------

    def _trusted_rois(self) -> dict[str, bool]:
        """On CUDA the heads skip RoI pooling's batch-column check, which would wait for the GPU: the estimator
        writes that column itself (voting's image index, or zeros). On the CPU the check costs nothing."""
        return {"check_rois": False} if self.device.type == "cuda" else {}

    def _detections(self, votes: VotingOutput, conv4: torch.Tensor, conv5: torch.Tensor, cfg: EstimatorConfig,
                    size: tuple[int, int]) -> _Detections:
        """Box head on every voting RoI: score of the voting class and PT's decoded box for that class.
        The RoI heads run in float32 (on upcast features when the dense network ran under autocast)."""
        rows = votes.rois.float()
        n = rows.shape[0]
        cls = rows[:, 1].long()
        rois = torch.cat([rows[:, :1], rows[:, 2:6]], dim=1)
        class_scores, box_deltas = self.net.box_head(conv4.float(), conv5.float(), rois, backend=cfg.backend,
                                                     **self._trusted_rois())
        score = torch.softmax(class_scores.float(), dim=1).gather(1, cls[:, None])[:, 0]
        idx = torch.arange(n, device=rows.device)
        deltas = box_deltas.float().view(n, -1, 4)[idx, cls]
        box = self._coder.decode(rows[:, 2:6], deltas)
        if cfg.clip_boxes:
            box = clip_boxes(box, *size)
        return _Detections(cls, score, box, rows[:, 6], votes.centers.float(), votes.translations.float())

    @staticmethod
    def _select(cls: np.ndarray, score: np.ndarray, box: np.ndarray, cfg: EstimatorConfig) -> np.ndarray:
        """PT's filtering on the host: score > threshold, then per-class NMS on the regressed boxes by score;
        indices in order of decreasing score, at most ``max_instances``."""
        idx = np.arange(score.shape[0])
        if cfg.score_threshold is not None:
            idx = idx[score > cfg.score_threshold]
        if idx.size == 0:
            return idx
        keep = nms(torch.from_numpy(box[idx]), torch.from_numpy(score[idx]), cfg.nms_iou,
                   torch.from_numpy(cls[idx]), plus_one=True).numpy()
        return idx[keep][: cfg.max_instances]

    def _rotations(self, conv4: torch.Tensor, conv5: torch.Tensor, cls: torch.Tensor, box: torch.Tensor,
                   cfg: EstimatorConfig) -> torch.Tensor:
        """Rotation head pooled on the regressed boxes: the class's allocentric quaternion, normalised [M, 4]."""
        m = cls.shape[0]
        rois = torch.cat([torch.zeros(m, 1, device=box.device), box], dim=1)
        quats = self.net.rotation_head(conv4.float(), conv5.float(), rois, backend=cfg.backend,
                                       **self._trusted_rois())
        q = quats.float().view(m, -1, 4)[torch.arange(m, device=box.device), cls]
        return torch.nn.functional.normalize(q, dim=1)

    @staticmethod
    def _pack(det: _Detections, q: torch.Tensor | None = None) -> torch.Tensor:
        """Per-RoI rows [N, 12] (cls, score, box x1 y1 x2 y2, votes, centre u v, t xyz) or [N, 16] with the
        allocentric quaternion appended."""
        parts = [det.cls[:, None].float(), det.score[:, None], det.box, det.votes[:, None], det.center, det.t]
        return torch.cat(parts + ([q] if q is not None else []), dim=1)

    def _heads(self, votes: VotingOutput, conv4: torch.Tensor, conv5: torch.Tensor, cfg: EstimatorConfig,
               geo: InputGeometry, image_size: tuple[int, int], image: np.ndarray,
               crop: float | None = None) -> list[ObjectPose]:
        """CPU (and rotation crops on any device): box head on every voting RoI, selection on the host, rotation
        head on the selected boxes only, pooled from the frame's features or, with ``crop`` (the apparent size),
        from crops of ``image`` (the network's RGB input)."""
        if votes.rois.shape[0] == 0:
            return []
        conv4, conv5 = conv4.contiguous(), conv5.contiguous()  # once, rather than in every RoI pooling call
        det = self._detections(votes, conv4, conv5, cfg, geo.size)
        packed = self._pack(det).cpu().numpy()
        keep = self._select(packed[:, 0].astype(np.int64), packed[:, 1], packed[:, 2:6], cfg)
        if keep.size == 0:
            return []
        if crop is not None:
            q = crop_rotations(self.net, image, packed[keep, 2:6], packed[keep, 0].astype(np.int64), crop,
                               cfg.rotation_crop_canvas, self.device, cfg.backend)
            q = q.cpu().numpy()
        else:
            sel = torch.from_numpy(keep).to(self.device)
            q = self._rotations(conv4, conv5, det.cls[sel], det.box[sel], cfg).cpu().numpy()
        return self._records(packed[keep], q, geo, image_size)

    def _device_rows(self, votes: VotingOutput, conv4: torch.Tensor, conv5: torch.Tensor, cfg: EstimatorConfig,
                     size: tuple[int, int]) -> torch.Tensor | None:
        """CUDA: box head and rotation head on every voting RoI (as PT does), packed [N, 16] on the device, so
        that the host needs one copy and no synchronisation before it; None when voting found nothing."""
        if votes.rois.shape[0] == 0:
            return None
        conv4, conv5 = conv4.float().contiguous(), conv5.float().contiguous()
        det = self._detections(votes, conv4, conv5, cfg, size)
        return self._pack(det, self._rotations(conv4, conv5, det.cls, det.box, cfg))

    def _finish_rows(self, packed: np.ndarray, cfg: EstimatorConfig, geo: InputGeometry,
                     image_size: tuple[int, int]) -> list[ObjectPose]:
        """CUDA: selection and pose records from the host copy of :meth:`_device_rows`."""
        keep = self._select(packed[:, 0].astype(np.int64), packed[:, 1], packed[:, 2:6], cfg)
        if keep.size == 0:
            return []
        return self._records(packed[keep], packed[keep, 12:16], geo, image_size)

    def _records(self, rows: np.ndarray, q_allo: np.ndarray, geo: InputGeometry,
                 image_size: tuple[int, int]) -> list[ObjectPose]:
        """ObjectPose records from selected host rows (cls, score, box, votes, centre, t) and quaternions; boxes
        and centres are mapped back to the input image when the network saw a resized one."""
        t = rows[:, 9:12].astype(np.float64)
        q_ego = np.asarray(allo_to_ego(torch.from_numpy(q_allo).double(), torch.from_numpy(t)), dtype=np.float64)
        R = np.asarray(quat_to_mat(torch.from_numpy(q_ego)), dtype=np.float64)
        box, center = rows[:, 2:6].astype(np.float64), rows[:, 7:9].astype(np.float64)
        if geo.scale != 1.0:
            sx, sy = image_size[1] / geo.size[1], image_size[0] / geo.size[0]
            box = (box + 0.5) * np.array([sx, sy, sx, sy]) - 0.5
            center = (center + 0.5) * np.array([sx, sy]) - 0.5
        out: list[ObjectPose] = []
        counts: dict[int, int] = {}
        for i in range(rows.shape[0]):
            c = int(rows[i, 0])
            k = counts.get(c, 0)
            counts[c] = k + 1
            out.append(ObjectPose(
                class_id=c, class_name=self.class_names[c], instance=k, score=float(rows[i, 1]),
                votes=int(round(float(rows[i, 6]))), roi=box[i].astype(np.float32),
                center=center[i].astype(np.float32), depth=float(t[i, 2]), R=R[i], t=t[i], quaternion=q_ego[i]))
        return out

    def _refine(self, objects: list[ObjectPose], depth: np.ndarray, K: np.ndarray, label: np.ndarray,
                cfg: EstimatorConfig, starts: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        """Depth refinement of every object in place; an object whose refinement declines keeps its pose.
        ``starts``: object index -> (R, t) of a tracked object, refined from there by local ICP only
        (:func:`tracked_refine_options`) instead of from the network's pose with the full search."""
        starts = starts or {}
        h, w = label.shape
        masks = []
        for obj in objects:
            x1, y1, x2, y2 = obj.roi
            box = np.zeros((h, w), dtype=bool)
            box[max(0, int(np.floor(y1))):max(0, int(np.ceil(y2)) + 1),
                max(0, int(np.floor(x1))):max(0, int(np.ceil(x2)) + 1)] = True
            masks.append((label == obj.class_id) & box)
        results: list[Any] = [None] * len(objects)
        for group, options in ((sorted(set(range(len(objects))) - set(starts)), cfg.refine_options),
                               (sorted(starts), tracked_refine_options(cfg.refine_options))):
            if not group:
                continue
            init = [starts.get(i, (objects[i].R, objects[i].t)) for i in group]
            done = refine_poses(
                depth, K, [masks[i] for i in group], [p[0] for p in init], [p[1] for p in init],
                [self.object_set.points[objects[i].class_id] for i in group], options,
                symmetric=[bool(self.object_set.symmetric[objects[i].class_id]) for i in group])
            for i, res in zip(group, done):
                results[i] = res
        for obj, res in zip(objects, results):
            obj.refine_inlier_fraction = float(res.inlier_fraction) if np.isfinite(res.inlier_fraction) else 0.0
            obj.refine_status = "ok" if res.success else res.reason
            if res.success:
                obj.refined = True
                obj.R = np.asarray(res.R, dtype=np.float64)
                obj.t = np.asarray(res.t, dtype=np.float64)
                obj.quaternion = np.asarray(mat_to_quat(obj.R), dtype=np.float64)
