"""Reader for datasets in the YCB-Video layout (real YCB-Video and our synthetic data).

Layout: ``<root>/data/<seq>/<NNNNNN>-color.png``, ``-depth.png`` (uint16), ``-label.png``,
``-meta.mat`` (cls_indexes, poses 3x4xN, intrinsic_matrix, factor_depth, center), optionally
``-instance.png`` (our synthetic data; see ``posecnn_core.synth.writer``). Frame lists are
``<root>/image_sets/<split>.txt`` or ``<root>/<split>.txt`` with one ``<seq>/<NNNNNN>`` per line.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import scipy.io

from ..geometry import project_points

__all__ = ["BadFrameFileError", "Frame", "YCBVideoDataset", "read_frame", "read_frame_list", "frame_files"]

log = logging.getLogger(__name__)

DEFAULT_FACTOR_DEPTH = 10000.0
_REQUIRED_META = ("cls_indexes", "poses", "intrinsic_matrix")


class BadFrameFileError(ValueError):
    """A frame file is missing, unreadable or inconsistent; ``path`` names it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class Frame:
    """One frame. ``color_bgr`` uint8 [H, W, 3] (OpenCV order, as the network takes it);
    ``depth`` float32 [H, W] metres (0 = no measurement) or None when not loaded; ``label``
    int64 [H, W] class index; ``instance`` int32 [H, W], k + 1 on the pixels of the k-th object
    (0 elsewhere); ``cls_indexes`` int64 [N]; ``poses`` float64 [N, 3, 4] (X_cam = R X + t);
    ``K`` float64 [3, 3]; ``centers`` float64 [N, 2] projected object origins (u, v)."""

    frame_id: str
    color_bgr: np.ndarray
    depth: np.ndarray | None
    label: np.ndarray
    instance: np.ndarray
    cls_indexes: np.ndarray
    poses: np.ndarray
    K: np.ndarray
    factor_depth: float
    centers: np.ndarray

    @property
    def num_objects(self) -> int:
        return int(self.cls_indexes.size)


def frame_files(root: str | Path, frame_id: str) -> dict[str, Path]:
    """Paths of a frame's files by kind: color, depth, label, meta, instance."""
    prefix = Path(root) / "data" / frame_id
    return {kind: Path(f"{prefix}-{kind}.{'mat' if kind == 'meta' else 'png'}")
            for kind in ("color", "depth", "label", "meta", "instance")}


def read_frame_list(root: str | Path, split: str) -> list[str]:
    """Frame ids of ``split`` from ``<root>/image_sets/<split>.txt`` or ``<root>/<split>.txt``."""
    root = Path(root)
    candidates = [root / "image_sets" / f"{split}.txt", root / f"{split}.txt"]
    for path in candidates:
        if path.is_file():
            ids = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            for ln in ids:
                if ".." in Path(ln).parts or Path(ln).is_absolute():
                    raise BadFrameFileError(path, f"frame id {ln!r} leaves the dataset root")
            return ids
    raise FileNotFoundError(f"no frame list for split {split!r}: tried {', '.join(map(str, candidates))}")


def _read_png(path: Path, flags: int) -> np.ndarray:
    if not path.is_file():
        raise BadFrameFileError(path, "file is missing")
    img = cv2.imread(str(path), flags)
    if img is None:
        raise BadFrameFileError(path, "cannot decode image (corrupt or not a PNG)")
    return img


def _read_color(path: Path) -> np.ndarray:
    """8-bit BGR colour image; a 4-channel (BGRA) image has its alpha = 0 pixels set to black first and its
    alpha dropped, as PoseCNN-PyTorch reads YCB-Video's synthetic frames."""
    img = _read_png(path, cv2.IMREAD_UNCHANGED)
    if img.ndim == 3 and img.shape[2] == 4 and img.dtype == np.uint8:
        color = np.ascontiguousarray(img[..., :3])
        color[img[..., 3] == 0] = 0
        return color
    if img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8:
        return img
    return _read_png(path, cv2.IMREAD_COLOR)  # grey or 16-bit: OpenCV's conversion


def _read_meta(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise BadFrameFileError(path, "file is missing")
    try:
        meta = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for corrupt .mat files
        raise BadFrameFileError(path, f"cannot read MAT file ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:
        raise BadFrameFileError(path, f"missing fields {missing}")
    return meta


def meta_annotations(meta: dict[str, np.ndarray], path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cls_indexes int64 [N], poses float64 [N, 3, 4], intrinsics [3, 3]) of a loaded meta file, checked."""
    cls = np.asarray(meta["cls_indexes"]).reshape(-1).astype(np.int64)
    poses = np.asarray(meta["poses"], dtype=np.float64)
    if poses.ndim == 2:  # MATLAB drops the trailing singleton of a single object's 3x4x1
        poses = poses[:, :, None]
    if poses.shape != (3, 4, cls.size):
        raise BadFrameFileError(path, f"poses has shape {poses.shape}, expected (3, 4, {cls.size})")
    K = np.asarray(meta["intrinsic_matrix"], dtype=np.float64)
    if K.shape != (3, 3):
        raise BadFrameFileError(path, f"intrinsic_matrix has shape {K.shape}, expected (3, 3)")
    return cls, np.ascontiguousarray(np.transpose(poses, (2, 0, 1))), K


def read_meta_annotations(root: str | Path, frame_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ground truth of one frame from its meta file alone: (cls_indexes, poses [N, 3, 4], K)."""
    path = frame_files(root, frame_id)["meta"]
    return meta_annotations(_read_meta(path), path)


def read_frame(root: str | Path, frame_id: str, load_depth: bool = True,
               default_factor_depth: float = DEFAULT_FACTOR_DEPTH) -> Frame:
    """Read and check one frame; a missing, corrupt or inconsistent file raises BadFrameFileError
    naming it. Without an ``-instance.png`` (real YCB-Video) the instance map is derived from the
    label, which needs each class at most once in the frame."""
    files = frame_files(root, frame_id)
    meta = _read_meta(files["meta"])
    cls, poses, K = meta_annotations(meta, files["meta"])
    n = cls.size
    factor = float(np.asarray(meta["factor_depth"]).reshape(-1)[0]) if "factor_depth" in meta else default_factor_depth
    if not factor > 0:
        raise BadFrameFileError(files["meta"], f"factor_depth must be positive, got {factor}")
    if n and np.any(poses[:, 2, 3] <= 0):
        raise BadFrameFileError(files["meta"], "an object has non-positive depth t_z")
    t = poses[:, :, 3]
    centers = project_points(t, K) if n else np.zeros((0, 2))

    color = _read_color(files["color"])
    hw = color.shape[:2]
    label = _read_png(files["label"], cv2.IMREAD_UNCHANGED)
    if label.ndim == 3:  # some tools store the label as 3 equal channels
        label = label[..., 0]
    if label.shape != hw:
        raise BadFrameFileError(files["label"], f"size {label.shape} differs from the color image {hw}")
    depth = None
    if load_depth:
        raw = _read_png(files["depth"], cv2.IMREAD_UNCHANGED)
        if raw.shape != hw or raw.dtype != np.uint16:
            raise BadFrameFileError(files["depth"], f"expected uint16 {hw}, got {raw.dtype} {raw.shape}")
        depth = (raw.astype(np.float32) / np.float32(factor))
    if files["instance"].exists():
        inst = _read_png(files["instance"], cv2.IMREAD_UNCHANGED)
        if inst.shape != hw:
            raise BadFrameFileError(files["instance"], f"size {inst.shape} differs from the color image {hw}")
        instance = inst.astype(np.int32)
        if instance.max(initial=0) > n:
            raise BadFrameFileError(files["instance"], f"instance id {instance.max()} > number of objects {n}")
        if "instance_ids" in meta and not np.array_equal(
                np.asarray(meta["instance_ids"]).reshape(-1).astype(np.int64), np.arange(1, n + 1)):
            raise BadFrameFileError(files["meta"], "instance_ids must be 1..N in meta order")
    else:
        if len(set(cls.tolist())) != n:
            raise BadFrameFileError(files["instance"], "missing, and the label cannot separate repeated classes")
        instance = np.zeros(hw, dtype=np.int32)
        for k, c in enumerate(cls):
            instance[label == c] = k + 1
    return Frame(frame_id=frame_id, color_bgr=color, depth=depth, label=label.astype(np.int64),
                 instance=instance, cls_indexes=cls, poses=poses, K=K, factor_depth=factor, centers=centers)


class YCBVideoDataset:
    """Frames of one split of a YCB-Video-layout dataset, as a map-style dataset of :class:`Frame`.

    ``check_files`` stats each frame's files up front (missing files are found at construction).
    With ``skip_bad=False`` a bad frame raises BadFrameFileError naming the file. With
    ``skip_bad=True`` frames with missing files are dropped at construction, a frame found
    corrupt when read is replaced by the next good one, and both are recorded in
    ``bad_frames`` (frame id -> reason) and logged in one line each (``scan()`` decodes every
    frame to find them all up front). With DataLoader workers each worker records its own.
    """

    def __init__(self, root: str | Path, split: str = "train", frame_ids: Sequence[str] | None = None,
                 load_depth: bool = True, skip_bad: bool = False, check_files: bool = True,
                 default_factor_depth: float = DEFAULT_FACTOR_DEPTH) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root not found: {self.root}")
        self.split = split
        self.load_depth = load_depth
        self.skip_bad = skip_bad
        self.default_factor_depth = default_factor_depth
        self.bad_frames: dict[str, str] = {}
        ids = list(frame_ids) if frame_ids is not None else read_frame_list(self.root, split)
        if check_files:
            kinds = ("color", "label", "meta") + (("depth",) if load_depth else ())
            good = []
            for fid in ids:
                files = frame_files(self.root, fid)
                missing = [files[k] for k in kinds if not files[k].is_file()]
                if not missing:
                    good.append(fid)
                elif skip_bad:
                    self.bad_frames[fid] = f"{missing[0]}: file is missing"
                else:
                    raise BadFrameFileError(missing[0], "file is missing")
            if self.bad_frames:
                first = next(iter(self.bad_frames.values()))
                log.warning("%s/%s: skipped %d of %d frames with missing files (first: %s)",
                            self.root, split, len(self.bad_frames), len(ids), first)
            ids = good
        self.frame_ids = ids
        self.class_names = self._read_class_names()

    def _read_class_names(self) -> list[str] | None:
        path = self.root / "image_sets" / "classes.txt"
        if not path.is_file():
            return None
        return ["__background__"] + [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]

    @property
    def num_skipped(self) -> int:
        return len(self.bad_frames)

    def __len__(self) -> int:
        return len(self.frame_ids)

    def read(self, frame_id: str) -> Frame:
        """Read one frame by id (no skipping)."""
        return read_frame(self.root, frame_id, self.load_depth, self.default_factor_depth)

    def __getitem__(self, index: int) -> Frame:
        n = len(self.frame_ids)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} frames")
        index %= n
        for step in range(n):
            fid = self.frame_ids[(index + step) % n]
            if self.skip_bad and fid in self.bad_frames:
                continue
            try:
                return self.read(fid)
            except BadFrameFileError as exc:
                if not self.skip_bad:
                    raise
                self.bad_frames[fid] = str(exc)
                log.warning("skipping bad frame %s (%d bad so far): %s", fid, len(self.bad_frames), exc)
        raise BadFrameFileError(self.root, f"no readable frame in split {self.split!r}")

    def scan(self) -> dict[str, str]:
        """Decode every frame; with ``skip_bad`` record the bad ones (else raise on the first).
        Returns ``bad_frames``."""
        for fid in self.frame_ids:
            if fid in self.bad_frames:
                continue
            try:
                self.read(fid)
            except BadFrameFileError as exc:
                if not self.skip_bad:
                    raise
                self.bad_frames[fid] = str(exc)
        if self.bad_frames:
            log.warning("%s/%s: %d bad frames (first: %s)", self.root, self.split, len(self.bad_frames),
                        next(iter(self.bad_frames.values())))
        return self.bad_frames
