"""Per-frame pose estimates and ground truth as plain data, and the saved-results file formats.

Results file (JSON)::

    {"format": "posecnn_results", "version": 1, "class_names": ["__background__", ...],
     "frames": {"<seq>/<NNNNNN>": [{"class_id": 3, "score": 0.93, "roi": [x1, y1, x2, y2],
                                    "R": [[...], [...], [...]], "t": [tx, ty, tz]}, ...], ...}}

A frame listed with an empty list had no detections; a frame that is absent was not processed (its objects count
as misses). The ``.npz`` form holds the same in flat arrays: ``frame_ids`` [F] str, ``det_frame`` [N] int (index
into frame_ids), ``class_id`` [N], ``score`` [N], ``roi`` [N, 4], ``R`` [N, 3, 3], ``t`` [N, 3], ``class_names``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["Detection", "GroundTruth", "FrameResults", "ResultsError", "save_results", "load_results",
           "RESULTS_FORMAT"]

RESULTS_FORMAT = "posecnn_results"


class ResultsError(ValueError):
    """A results file that cannot be read; the message names the file and the problem."""


@dataclass
class Detection:
    """One estimated object: class index, score, RoI (x1, y1, x2, y2 pixels; for matching), pose R [3, 3], t [3]."""

    class_id: int
    score: float
    roi: np.ndarray
    R: np.ndarray
    t: np.ndarray

    def __post_init__(self) -> None:
        self.class_id = int(self.class_id)
        self.score = float(self.score)
        self.roi = np.asarray(self.roi, dtype=np.float64).reshape(4)
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)


@dataclass
class GroundTruth:
    """Annotated objects of one frame: classes [N], poses [N, 3, 4] (X_cam = R X + t), boxes [N, 4]."""

    frame_id: str
    classes: np.ndarray
    poses: np.ndarray
    boxes: np.ndarray

    def __post_init__(self) -> None:
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        n = self.classes.size
        self.poses = np.asarray(self.poses, dtype=np.float64).reshape(n, 3, 4)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(n, 4)


@dataclass
class FrameResults:
    """Detections by frame id, plus the class names they index (None = unknown)."""

    frames: dict[str, list[Detection]] = field(default_factory=dict)
    class_names: list[str] | None = None


def save_results(path: str | Path, results: FrameResults) -> Path:
    """Write ``.json`` or ``.npz`` (by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        doc = {"format": RESULTS_FORMAT, "version": 1, "class_names": results.class_names,
               "frames": {fid: [{"class_id": d.class_id, "score": d.score, "roi": d.roi.tolist(),
                                 "R": d.R.tolist(), "t": d.t.tolist()} for d in dets]
                          for fid, dets in results.frames.items()}}
        path.write_text(json.dumps(doc))
    elif path.suffix == ".npz":
        fids = list(results.frames)
        dets = [(i, d) for i, f in enumerate(fids) for d in results.frames[f]]
        np.savez_compressed(
            path, frame_ids=np.array(fids, dtype=str), det_frame=np.array([i for i, _ in dets], np.int64),
            class_id=np.array([d.class_id for _, d in dets], np.int64),
            score=np.array([d.score for _, d in dets], np.float64),
            roi=np.array([d.roi for _, d in dets], np.float64).reshape(-1, 4),
            R=np.array([d.R for _, d in dets], np.float64).reshape(-1, 3, 3),
            t=np.array([d.t for _, d in dets], np.float64).reshape(-1, 3),
            class_names=np.array(results.class_names or [], dtype=str))
    else:
        raise ValueError(f"results path must end in .json or .npz, got {path}")
    return path


def _det_from_json(item: Mapping, where: str) -> Detection:
    if not isinstance(item, Mapping):
        raise ResultsError(f"{where}: expected an object, got {type(item).__name__}")
    missing = [k for k in ("class_id", "R", "t") if k not in item]
    if missing:
        raise ResultsError(f"{where}: missing fields {missing}")
    try:
        return Detection(class_id=item["class_id"], score=item.get("score", 1.0),
                         roi=item.get("roi", [0, 0, 0, 0]), R=item["R"], t=item["t"])
    except (TypeError, ValueError) as exc:
        raise ResultsError(f"{where}: {exc}") from exc


def load_results(path: str | Path) -> FrameResults:
    """Read a results file written by :func:`save_results` (or by hand in the same layout)."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: results file does not exist")
    if path.suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ResultsError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(doc, Mapping) or doc.get("format") != RESULTS_FORMAT:
            raise ResultsError(f"{path}: not a {RESULTS_FORMAT} file (missing \"format\": \"{RESULTS_FORMAT}\")")
        frames = doc.get("frames")
        if not isinstance(frames, Mapping):
            raise ResultsError(f"{path}: 'frames' must map frame ids to lists of detections")
        out = FrameResults(class_names=doc.get("class_names"))
        for fid, dets in frames.items():
            if not isinstance(dets, list):
                raise ResultsError(f"{path}: frames[{fid!r}] must be a list")
            out.frames[str(fid)] = [_det_from_json(d, f"{path}: frames[{fid!r}][{i}]") for i, d in enumerate(dets)]
        return out
    if path.suffix == ".npz":
        try:
            z = np.load(path, allow_pickle=False)
            fids = [str(f) for f in z["frame_ids"]]
            out = FrameResults(frames={f: [] for f in fids},
                               class_names=[str(n) for n in z["class_names"]] or None)
            for i in range(len(z["class_id"])):
                out.frames[fids[int(z["det_frame"][i])]].append(
                    Detection(z["class_id"][i], z["score"][i], z["roi"][i], z["R"][i], z["t"][i]))
        except (KeyError, ValueError, IndexError, OSError) as exc:
            raise ResultsError(f"{path}: cannot read results ({type(exc).__name__}: {exc})") from exc
        return out
    raise ResultsError(f"{path}: results file must end in .json or .npz")

