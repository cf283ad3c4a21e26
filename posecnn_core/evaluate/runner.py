"""Ground truth of a dataset split and running a checkpoint (through ``PoseEstimator``) over it."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from ..augment import to_gray
from ..datasets.ycb import BadFrameFileError, YCBVideoDataset, frame_files, read_frame_list, read_meta_annotations
from ..objects import ObjectSet
from ..targets import boxes_from_points
from .results import Detection, FrameResults, GroundTruth

__all__ = ["read_ground_truth", "run_estimator"]


def read_ground_truth(root: str | Path, split: str, object_set: ObjectSet,
                      frame_ids: Sequence[str] | None = None) -> list[GroundTruth]:
    """Annotations of a split (meta files only): classes, poses and boxes of the projected model points."""
    root = Path(root)
    ids = list(frame_ids) if frame_ids is not None else read_frame_list(root, split)
    C = object_set.num_classes
    out = []
    for fid in ids:
        cls, poses, K = read_meta_annotations(root, fid)
        if cls.size and (cls.min() < 1 or cls.max() >= C):
            raise BadFrameFileError(frame_files(root, fid)["meta"],
                                    f"class indexes {cls.tolist()} outside the object set's 1..{C - 1}")
        boxes = boxes_from_points(object_set.points, cls, poses, K) if cls.size else np.zeros((0, 4))
        out.append(GroundTruth(frame_id=fid, classes=cls, poses=poses, boxes=boxes))
    return out


def run_estimator(estimator: Any, root: str | Path, split: str, frame_ids: Sequence[str] | None = None,
                  use_depth: bool = False, progress: bool = True,
                  initial: FrameResults | None = None, mono: bool = False) -> tuple[FrameResults, dict[str, float]]:
    """Run ``estimator.estimate`` (a :class:`~posecnn_core.estimator.PoseEstimator`) on every frame of the split.

    Returns (results, timing) with timing = {"frames", "seconds", "ms_per_frame"}. Frames are read with
    ``datasets.ycb``; a bad frame raises BadFrameFileError naming its file. With ``use_depth`` the estimator
    refines poses with the depth images; ``initial``, when given, receives the same detections with their poses
    before refinement, so one run yields the with/without comparison. With ``mono`` each colour frame is first
    turned into what a mono camera gives (its luminance on the three channels, as the node expands ``mono8``).
    """
    ds = YCBVideoDataset(root, split, frame_ids=frame_ids, load_depth=use_depth)
    results = FrameResults(class_names=list(estimator.class_names))
    t0 = time.perf_counter()
    for fid in tqdm(ds.frame_ids, desc="eval", disable=not progress, dynamic_ncols=True):
        frame = ds.read(fid)
        bgr = to_gray(frame.color_bgr) if mono else frame.color_bgr
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        est = estimator.estimate(rgb, frame.K, frame.depth if use_depth else None)
        results.frames[fid] = [Detection(class_id=o.class_id, score=o.score, roi=o.roi, R=o.R, t=o.t)
                               for o in est.objects]
        if initial is not None:
            initial.frames[fid] = [Detection(class_id=o.class_id, score=o.score, roi=o.roi, R=o.R_initial,
                                             t=o.t_initial) for o in est.objects]
    seconds = time.perf_counter() - t0
    n = len(ds.frame_ids)
    return results, {"frames": n, "seconds": seconds, "ms_per_frame": 1000.0 * seconds / max(n, 1)}
