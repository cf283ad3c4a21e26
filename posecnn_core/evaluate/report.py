"""Matching estimates to ground truth and the ADD / ADD-S / AUC report (YCB-Video toolbox definitions).

Matching (per frame and class): PT evaluates, for each annotated object, the detection of its class with the best
box IoU. With several instances of a class we match one-to-one: (ground truth, detection) pairs of the class are
taken in order of decreasing IoU (ties: higher score) while both are free, so every object gets a detection as
long as unassigned detections of its class remain, as in PT when there is one instance. An object without a
detection is a miss: its ADD and ADD-S are inf. AUC is ``metrics.vocap_auc`` over 0–10 cm (distances above
10 cm and misses count as failures), ×100. "ADD(-S)" uses ADD-S for the object set's ``symmetric`` classes (the
toolbox's choice for YCB-Video) and ADD otherwise; both ADD and ADD-S are reported for every class.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ..boxes import box_iou
from ..metrics import accuracy_curve, add, adds, rotation_error_deg, symmetric_rotation_error_deg, vocap_auc
from ..objects import ObjectSet
from ..symmetry import rotation_error_up_to_deg
from .results import Detection, FrameResults, GroundTruth

__all__ = ["InstanceResult", "ClassSummary", "Report", "match_frame", "frame_instances", "unmatched_detections",
           "build_report", "evaluate_results", "ray_split", "MAX_DISTANCE"]

MAX_DISTANCE = 0.1  # metres, the toolbox's AUC range


def match_frame(gt: GroundTruth, detections: Sequence[Detection]) -> list[int | None]:
    """For each ground-truth object the index of its matched detection, or None (see module docstring)."""
    match: list[int | None] = [None] * gt.classes.size
    used: set[int] = set()
    pairs = []
    if len(detections) and gt.classes.size:
        iou = box_iou(torch.as_tensor(np.asarray(gt.boxes, dtype=np.float64).reshape(-1, 4)),
                      torch.as_tensor(np.stack([np.asarray(d.roi, dtype=np.float64) for d in detections])),
                      plus_one=True).numpy()
    for g, c in enumerate(gt.classes):
        for d, det in enumerate(detections):
            if det.class_id == int(c):
                pairs.append((-float(iou[g, d]), -det.score, g, d))
    for _, _, g, d in sorted(pairs):
        if match[g] is None and d not in used:
            match[g] = d
            used.add(d)
    return match


@dataclass
class InstanceResult:
    """One annotated object: its errors (metres; inf when missed, nan when the class has no model points), the
    matched detection's score and its index in the frame's detections (None when missed). ``t_error`` is the
    translation error (m); ``rot_error_deg`` the geodesic rotation error and ``rot_error_sym_deg`` the rotation
    error up to the object's symmetries (symmetric classes only, equal to ``rot_error_deg`` otherwise): up to the
    declared finite symmetry (``symmetry_order`` > 1, ``symmetry.rotation_error_up_to_deg``), else up to the
    shape's symmetries (``metrics.symmetric_rotation_error_deg``); rotation errors are nan when missed.
    ``t_along`` (signed, m) and ``t_across`` split the translation error along the camera ray through the true
    centre (the depth part, positive = estimated too far) and across it; ``depth_ratio`` is estimated over true
    distance along that ray. All three are nan when missed."""

    frame_id: str
    gt_index: int
    class_id: int
    class_name: str
    symmetric: bool
    detected: bool
    score: float
    add: float
    adds: float
    detection: int | None = None
    t_error: float = math.inf
    rot_error_deg: float = math.nan
    rot_error_sym_deg: float = math.nan
    symmetry_order: int = 1
    t_along: float = math.nan
    t_across: float = math.nan
    depth_ratio: float = math.nan

    @property
    def add_or_adds(self) -> float:
        return self.adds if self.symmetric else self.add

    @property
    def rotation_defined(self) -> bool:
        """True when the object has finitely many correct rotations (not symmetric, or a declared symmetry)."""
        return not self.symmetric or self.symmetry_order > 1


@dataclass
class ClassSummary:
    """AUCs (0–100) of one class, or of a pooled/average row (class_id -1); the median rotation error (degrees,
    up to the shape's symmetries for symmetric classes) and translation error (m) of its detected objects (nan
    when none); false_positives: detections of the class matched to no annotated object."""

    class_id: int
    name: str
    symmetric: bool
    count: int
    detected: int
    add_auc: float
    adds_auc: float
    add_or_adds_auc: float
    rot_median_deg: float = math.nan
    t_median_m: float = math.nan
    false_positives: int = 0


def _median(values: Sequence[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return float(np.median(vals)) if vals else math.nan


def _summary(class_id: int, name: str, symmetric: bool, rows: Sequence[InstanceResult],
             false_positives: int = 0) -> ClassSummary:
    found = [r for r in rows if r.detected]
    return ClassSummary(class_id=class_id, name=name, symmetric=symmetric, count=len(rows),
                        detected=len(found),
                        add_auc=vocap_auc([r.add for r in rows], MAX_DISTANCE),
                        adds_auc=vocap_auc([r.adds for r in rows], MAX_DISTANCE),
                        add_or_adds_auc=vocap_auc([r.add_or_adds for r in rows], MAX_DISTANCE),
                        rot_median_deg=_median([r.rot_error_sym_deg for r in found]),
                        t_median_m=_median([r.t_error for r in found]), false_positives=false_positives)


@dataclass
class Report:
    """Everything ``posecnn-eval`` prints and writes. ``per_class`` lists the classes with annotated objects;
    ``mean`` averages their AUCs; ``pooled`` computes the AUCs over all objects together (the "ALL" of
    PoseCNN's tables)."""

    instances: list[InstanceResult]
    per_class: list[ClassSummary]
    mean: ClassSummary
    pooled: ClassSummary
    num_frames: int
    title: str = "PoseCNN evaluation"
    notes: list[str] = field(default_factory=list)
    false_positive_kinds: dict[str, int] = field(default_factory=dict)  # FALSE_POSITIVE_KINDS -> count

    @property
    def false_positives_per_frame(self) -> float:
        return self.pooled.false_positives / self.num_frames if self.num_frames else 0.0

    @property
    def rot_median_nonsymmetric_deg(self) -> float:
        """Median rotation error of the detected objects of the non-symmetric classes (nan when none)."""
        return _median([r.rot_error_deg for r in self.instances if r.detected and not r.symmetric])

    @property
    def rot_median_defined_deg(self) -> float:
        """Median rotation error of the detected objects with finitely many correct rotations: the non-symmetric
        ones and those with a declared finite symmetry, up to it (nan when none)."""
        return _median([r.rot_error_sym_deg for r in self.instances if r.detected and r.rotation_defined])

    # -- text ----------------------------------------------------------------------------------------------
    HEADER = ("object", "sym", "objects", "detected", "ADD AUC", "ADD-S AUC", "ADD(-S) AUC", "rot med (deg)",
              "t med (cm)", "false pos.")

    def rows(self) -> list[tuple[str, ...]]:
        def num(v: float, scale: float = 1.0) -> str:
            return f"{v * scale:.1f}" if math.isfinite(v) else "-"

        def fmt(s: ClassSummary) -> tuple[str, ...]:
            return (s.name, "yes" if s.symmetric else ("" if s.class_id >= 0 else "-"), str(s.count),
                    str(s.detected), f"{s.add_auc:.1f}", f"{s.adds_auc:.1f}", f"{s.add_or_adds_auc:.1f}",
                    num(s.rot_median_deg), num(s.t_median_m, 100.0), str(s.false_positives))
        return [fmt(s) for s in self.per_class] + [fmt(self.mean), fmt(self.pooled)]

    def summary_lines(self) -> list[str]:
        """The headline figures: mean AUCs, rotation of the non-symmetric objects, false positives per frame."""
        def deg(v: float) -> str:
            return f"{v:.1f} deg" if math.isfinite(v) else "- (none detected)"

        lines = [f"mean ADD AUC {self.mean.add_auc:.1f}, mean ADD-S AUC {self.mean.adds_auc:.1f}, "
                 f"lowest ADD-S AUC {min((s.adds_auc for s in self.per_class), default=0.0):.1f}",
                 "median rotation error of the non-symmetric objects: " + deg(self.rot_median_nonsymmetric_deg)]
        if any(r.symmetric and r.symmetry_order > 1 for r in self.instances):
            lines.append("median rotation error of the objects with finitely many correct rotations (non-symmetric, "
                         "and finite symmetries up to them): " + deg(self.rot_median_defined_deg))
        lines += self.translation_lines()
        fp = (f"false positives: {self.pooled.false_positives} in {self.num_frames} frames "
              f"({self.false_positives_per_frame:.2f} per frame)")
        if self.pooled.false_positives and self.false_positive_kinds:
            fp += ": " + ", ".join(f"{self.false_positive_kinds.get(k, 0)} {text}"
                                   for k, text in FALSE_POSITIVE_KINDS.items())
        return lines + [fp]

    def translation_lines(self) -> list[str]:
        """Where the translation error lies: its median along the camera ray (the depth) and across it, and the
        spread of estimated over true depth (empty when no object was detected)."""
        found = [r for r in self.instances if r.detected and math.isfinite(r.t_along)]
        if not found:
            return []
        ratio = np.percentile([r.depth_ratio for r in found], [10, 50, 90])
        return [f"translation error of the detected objects: median {100 * _median([r.t_error for r in found]):.1f} cm"
                f"; along the camera ray (depth) {100 * _median([abs(r.t_along) for r in found]):.1f} cm, across it "
                f"{100 * _median([r.t_across for r in found]):.1f} cm; estimated / true depth {ratio[1]:.3f} "
                f"(10th-90th percentile {ratio[0]:.3f}-{ratio[2]:.3f})"]

    def table(self) -> str:
        """Fixed-width per-object table."""
        rows = [self.HEADER] + self.rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEADER))]
        lines = []
        for k, r in enumerate(rows):
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
            lines.append("  ".join(cells))
            if k == 0 or k == len(self.per_class):
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def markdown(self) -> str:
        out = [f"# {self.title}", "",
               f"{self.num_frames} frames, {self.pooled.count} annotated objects, {self.pooled.detected} detected. "
               "AUC of accuracy vs. threshold over 0–10 cm (YCB-Video toolbox VOCap), ×100; misses and errors "
               "> 10 cm count as failures. ADD(-S) uses ADD-S for symmetric objects. MEAN averages the per-object "
               "AUCs; ALL pools every object. Rotation medians of symmetric objects are up to their declared "
               "symmetry (object set's `symmetry`), else up to their shape's symmetries; false positives are "
               "detections matched to no annotated object.", ""]
        out += [f"- {line}" for line in self.summary_lines()]
        out += ["",
               "| " + " | ".join(self.HEADER) + " |",
               "|" + "|".join([":---"] + ["---:"] * (len(self.HEADER) - 1)) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in self.rows()]
        if self.notes:
            out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    # -- files ---------------------------------------------------------------------------------------------
    def write_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["class_id", "object", "symmetric", "objects", "detected", "add_auc", "adds_auc",
                        "add_or_adds_auc", "rot_median_deg", "t_median_m", "false_positives"])
            for s in [*self.per_class, self.mean, self.pooled]:
                w.writerow([s.class_id, s.name, int(s.symmetric), s.count, s.detected, f"{s.add_auc:.4f}",
                            f"{s.adds_auc:.4f}", f"{s.add_or_adds_auc:.4f}", f"{s.rot_median_deg:.3f}",
                            f"{s.t_median_m:.5f}", s.false_positives])
        return path

    def write_instances_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["frame_id", "gt_index", "class_id", "object", "symmetric", "detected", "score",
                        "add_m", "adds_m", "t_error_m", "rot_error_deg", "rot_error_sym_deg", "t_along_m",
                        "t_across_m", "depth_ratio"])
            for r in self.instances:
                w.writerow([r.frame_id, r.gt_index, r.class_id, r.class_name, int(r.symmetric), int(r.detected),
                            f"{r.score:.4f}", "inf" if math.isinf(r.add) else f"{r.add:.6f}",
                            "inf" if math.isinf(r.adds) else f"{r.adds:.6f}",
                            "inf" if math.isinf(r.t_error) else f"{r.t_error:.6f}",
                            f"{r.rot_error_deg:.3f}", f"{r.rot_error_sym_deg:.3f}", f"{r.t_along:.6f}",
                            f"{r.t_across:.6f}", f"{r.depth_ratio:.5f}"])
        return path

    def plot(self, path: str | Path, num_thresholds: int = 201) -> Path:
        """PNG with accuracy vs. threshold (0–10 cm) per object and for all objects: ADD and ADD-S panels."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        thr = np.linspace(0.0, MAX_DISTANCE, num_thresholds)
        fig = Figure(figsize=(11, 4.6), dpi=100)
        FigureCanvasAgg(fig)
        names = {s.class_id: s.name for s in self.per_class}
        for k, (metric, key) in enumerate((("ADD", "add"), ("ADD-S", "adds"))):
            ax = fig.add_subplot(1, 2, k + 1)
            for s in self.per_class:
                d = [getattr(r, key) for r in self.instances if r.class_id == s.class_id]
                auc = getattr(s, f"{key}_auc")
                ax.plot(thr * 100, accuracy_curve(d, thr), lw=1.0, label=f"{names[s.class_id]} ({auc:.1f})")
            d_all = [getattr(r, key) for r in self.instances]
            ax.plot(thr * 100, accuracy_curve(d_all, thr), "k", lw=2.2,
                    label=f"ALL ({getattr(self.pooled, f'{key}_auc'):.1f})")
            ax.set_xlim(0, MAX_DISTANCE * 100)
            ax.set_ylim(0, 1.0)
            ax.set_xlabel("distance threshold (cm)")
            ax.set_ylabel("accuracy")
            ax.set_title(f"{metric} (AUC in legend)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        fig.suptitle(self.title)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, format="png")
        return path

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write per_object.csv, instances.csv, report.md and accuracy.png into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(self.markdown())
        return {"csv": self.write_csv(out / "per_object.csv"),
                "instances": self.write_instances_csv(out / "instances.csv"),
                "markdown": out / "report.md", "plot": self.plot(out / "accuracy.png")}


def ray_split(t_est: np.ndarray, t_gt: np.ndarray) -> tuple[float, float, float]:
    """The error t_est - t_gt along the unit ray through t_gt (signed), its length across that ray, and the ratio
    of t_est's and t_gt's distances along the ray; nan for a true centre at the camera's origin."""
    dist = float(np.linalg.norm(t_gt))
    if not dist > 0.0:
        return math.nan, math.nan, math.nan
    ray = t_gt / dist
    err = t_est - t_gt
    along = float(err @ ray)
    across = float(np.linalg.norm(err - along * ray))
    return along, across, (dist + along) / dist


def frame_instances(gt: GroundTruth, detections: Sequence[Detection], class_names: Sequence[str],
                    symmetric: Sequence[bool], points: Sequence[np.ndarray | None],
                    symmetry_groups: Sequence[np.ndarray] | None = None) -> list[InstanceResult]:
    """Match one frame's detections to its annotated objects (`match_frame`) and compute each object's ADD and
    ADD-S. `class_names`, `symmetric`, `points` and `symmetry_groups` (declared finite symmetries, [K, 3, 3]
    each, identity first; None = none) are indexed by class; a class whose `points` entry is None gets nan errors
    (detected objects) instead of ADD/ADD-S. ValueError for class ids outside 1..C-1."""
    C = len(class_names)
    bad = [d.class_id for d in detections if not 0 < d.class_id < C]
    if bad:
        raise ValueError(f"frame {gt.frame_id}: detection class ids {bad} are outside 1..{C - 1}")
    match = match_frame(gt, detections)
    out = []
    for k, c in enumerate(gt.classes):
        c = int(c)
        if not 0 < c < C:
            raise ValueError(f"frame {gt.frame_id}: ground-truth class {c} is outside 1..{C - 1}")
        pts = points[c]
        group = None if symmetry_groups is None else np.asarray(symmetry_groups[c])
        order = 1 if group is None else len(group)
        R_gt, t_gt = gt.poses[k, :, :3], gt.poses[k, :, 3]
        e_t, e_rot, e_rot_sym = math.inf, math.nan, math.nan
        along = across = ratio = math.nan
        if match[k] is None:
            e_add = e_adds = math.inf
            score, detected = 0.0, False
        else:
            d = detections[match[k]]
            e_t = float(np.linalg.norm(np.asarray(d.t, dtype=np.float64) - t_gt))
            along, across, ratio = ray_split(np.asarray(d.t, dtype=np.float64), t_gt)
            e_rot = e_rot_sym = rotation_error_deg(d.R, R_gt)
            if symmetric[c] and order > 1:
                e_rot_sym = rotation_error_up_to_deg(d.R, R_gt, group)
            if pts is None:
                e_add = e_adds = math.nan
            else:
                e_add = add(pts, d.R, d.t, R_gt, t_gt)
                e_adds = adds(pts, d.R, d.t, R_gt, t_gt)
                if symmetric[c] and order == 1:
                    e_rot_sym = symmetric_rotation_error_deg(pts, d.R, R_gt)
            score, detected = d.score, True
        out.append(InstanceResult(gt.frame_id, k, c, class_names[c], bool(symmetric[c]), detected, score, e_add,
                                  e_adds, match[k], e_t, e_rot, e_rot_sym, order, along, across, ratio))
    return out


# Where a false positive lies (its box against the annotated objects' boxes, IoU as in matching):
FALSE_POSITIVE_KINDS = {
    "own_class": "on an annotated object of their class (a second detection of it)",
    "other_class": "on an annotated object of another class",
    "elsewhere": "elsewhere (background, distractors, or IoU < 0.3 with every annotated object)",
}
FALSE_POSITIVE_IOU = 0.3


def false_positive_kind(gt: GroundTruth, detection: Detection) -> str:
    """The FALSE_POSITIVE_KINDS key of an unmatched detection: the class of the annotated object its box overlaps
    most (IoU >= FALSE_POSITIVE_IOU), if any."""
    if gt.classes.size == 0:
        return "elsewhere"
    iou = box_iou(torch.as_tensor(np.asarray(gt.boxes, dtype=np.float64).reshape(-1, 4)),
                  torch.as_tensor(np.asarray(detection.roi, dtype=np.float64).reshape(1, 4)), plus_one=True).numpy()[:, 0]
    g = int(np.argmax(iou))
    if iou[g] < FALSE_POSITIVE_IOU:
        return "elsewhere"
    return "own_class" if int(gt.classes[g]) == detection.class_id else "other_class"


def unmatched_detections(instances: Sequence[InstanceResult], detections: Sequence[Detection]) -> list[int]:
    """Indices of the frame's detections that ``frame_instances`` matched to no annotated object."""
    matched = {r.detection for r in instances if r.detection is not None}
    return [i for i in range(len(detections)) if i not in matched]


def build_report(instances: Sequence[InstanceResult], class_names: Sequence[str], symmetric: Sequence[bool],
                 num_frames: int, title: str = "PoseCNN evaluation", notes: Sequence[str] = (),
                 false_positives: Mapping[int, int] | None = None,
                 false_positive_kinds: Mapping[str, int] | None = None) -> Report:
    """Per-class, mean and pooled AUCs of `instances` (see Report); `false_positives` counts the unmatched
    detections per class id (``unmatched_detections``), `false_positive_kinds` by where they lie
    (``false_positive_kind``)."""
    notes = list(notes)
    instances = list(instances)
    fp = dict(false_positives or {})
    per_class = []
    for c in range(1, len(class_names)):
        rows = [r for r in instances if r.class_id == c]
        if rows or fp.get(c, 0):
            per_class.append(_summary(c, class_names[c], bool(symmetric[c]), rows, fp.get(c, 0)))
    if per_class:
        mean = ClassSummary(-1, "MEAN", False, sum(s.count for s in per_class), sum(s.detected for s in per_class),
                            float(np.mean([s.add_auc for s in per_class])),
                            float(np.mean([s.adds_auc for s in per_class])),
                            float(np.mean([s.add_or_adds_auc for s in per_class])),
                            _median([s.rot_median_deg for s in per_class]),
                            _median([s.t_median_m for s in per_class]), sum(fp.values()))
    else:
        mean = ClassSummary(-1, "MEAN", False, 0, 0, 0.0, 0.0, 0.0)
        notes.append("no annotated objects: every AUC is 0")
    pooled = _summary(-1, "ALL", False, instances, sum(fp.values()))
    return Report(instances=instances, per_class=per_class, mean=mean, pooled=pooled, num_frames=num_frames,
                  title=title, notes=notes, false_positive_kinds=dict(false_positive_kinds or {}))


def evaluate_results(results: FrameResults | Mapping[str, Sequence[Detection]], gt: Sequence[GroundTruth],
                     object_set: ObjectSet, title: str = "PoseCNN evaluation") -> Report:
    """Match ``results`` to ``gt`` frame by frame and compute the report (see the module docstring).

    Frames of ``gt`` missing from ``results`` count as processed with no detections (their objects are misses).
    """
    frames = results.frames if isinstance(results, FrameResults) else results
    notes = []
    if isinstance(results, FrameResults) and results.class_names is not None \
            and list(results.class_names) != list(object_set.class_names):
        raise ValueError(f"results were made for classes {results.class_names}, the object set "
                         f"{object_set.name!r} has {list(object_set.class_names)}")
    missing = [g.frame_id for g in gt if g.frame_id not in frames]
    if missing:
        notes.append(f"{len(missing)} frames have no results entry; their objects count as misses "
                     f"(first: {missing[0]})")
    names, sym = list(object_set.class_names), np.asarray(object_set.symmetric, dtype=bool)
    instances: list[InstanceResult] = []
    false_positives: dict[int, int] = {}
    kinds = dict.fromkeys(FALSE_POSITIVE_KINDS, 0)
    for g in gt:
        dets = list(frames.get(g.frame_id, []))
        rows = frame_instances(g, dets, names, sym, object_set.points, object_set.symmetry_groups)
        instances += rows
        for i in unmatched_detections(rows, dets):
            false_positives[dets[i].class_id] = false_positives.get(dets[i].class_id, 0) + 1
            kinds[false_positive_kind(g, dets[i])] += 1
    return build_report(instances, names, sym, len(gt), title, notes, false_positives, kinds)
