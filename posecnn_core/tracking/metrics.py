"""Scores of estimates over a sequence with object identities: id switches, frame-to-frame jitter, ADD/ADD-S.

Per frame the estimates are matched to the ground-truth objects of their class by the distance of their projected
centres (optimal assignment, at most ``max_pixels`` apart). Then, per ground-truth object (its identity):

- id switches: the number of times the id of its matched estimate differs from the id it had the last time it was
  matched (CLEAR-MOT's IDSW; a frame without a match is not a switch);
- jitter: over consecutive frames where it was matched both times, the difference between the estimate's motion
  and the true motion: translation ||(t_k - t_k-1) - (t*_k - t*_k-1)|| and rotation angle(R_k R_k-1ᵀ, R*_k R*_k-1ᵀ)
  (a moving camera or object moves the true pose too; only what the estimate adds counts);
- ADD and ADD-S of every matched estimate (metres).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..metrics import add, adds
from .pose_filter import angle_deg


@dataclass(frozen=True)
class TruthObject:
    """One ground-truth object in one frame: ``identity`` names it over the sequence."""

    identity: str
    class_id: int
    R: np.ndarray
    t: np.ndarray


@dataclass
class SequenceScore:
    """Accumulated scores (see the module docstring); ``static`` restricts jitter to the identities given."""

    id_switches: int = 0
    matched: int = 0
    truths: int = 0
    estimates: int = 0
    jitter_t: list[float] = field(default_factory=list)
    jitter_r: list[float] = field(default_factory=list)
    add: list[float] = field(default_factory=list)
    adds: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        def mean(v: list[float]) -> float:
            return float(np.mean(v)) if v else float("nan")

        return {"id_switches": self.id_switches, "recall": self.matched / max(self.truths, 1),
                "estimates": self.estimates, "jitter_t_mm": 1e3 * mean(self.jitter_t),
                "jitter_r_deg": mean(self.jitter_r), "add_mm": 1e3 * mean(self.add), "adds_mm": 1e3 * mean(self.adds)}


def project(t: np.ndarray, K: np.ndarray) -> np.ndarray:
    p = np.asarray(K, np.float64) @ np.asarray(t, np.float64).reshape(3)
    return p[:2] / p[2]


def match_frame(estimates: Sequence[Any], truths: Sequence[TruthObject], K: np.ndarray,
                max_pixels: float = 20.0) -> list[tuple[int, int]]:
    """(estimate index, truth index) pairs: same class, projected centres at most max_pixels apart, optimal."""
    if not estimates or not truths:
        return []
    cost = np.full((len(estimates), len(truths)), 1e6)
    for i, e in enumerate(estimates):
        for j, g in enumerate(truths):
            if int(e.class_id) == g.class_id:
                d = float(np.linalg.norm(project(e.t, K) - project(g.t, K)))
                if d <= max_pixels:
                    cost[i, j] = d
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if cost[i, j] < 1e6]


class SequenceScorer:
    """Feed frames in order with :meth:`add_frame`; ``score`` holds the totals. ``ids(estimate)`` gives the id
    an estimate is published with; ``points[c]`` the model points; ``static``: identities whose jitter counts
    (None: all)."""

    def __init__(self, points: Sequence[np.ndarray], static: set[str] | None = None, max_pixels: float = 20.0):
        self.points = points
        self.static = static
        self.max_pixels = max_pixels
        self.score = SequenceScore()
        self._last_id: dict[str, str] = {}
        self._prev: dict[str, tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._frame = 0

    def add_frame(self, estimates: Sequence[Any], ids: Sequence[str], truths: Sequence[TruthObject],
                  K: np.ndarray) -> None:
        s = self.score
        s.truths += len(truths)
        s.estimates += len(estimates)
        for i, j in match_frame(estimates, truths, K, self.max_pixels):
            e, g = estimates[i], truths[j]
            s.matched += 1
            last = self._last_id.get(g.identity)
            if last is not None and last != ids[i]:
                s.id_switches += 1
            self._last_id[g.identity] = ids[i]
            R, t = np.asarray(e.R, np.float64), np.asarray(e.t, np.float64).reshape(3)
            pts = self.points[g.class_id]
            s.add.append(add(pts, R, t, g.R, g.t))
            s.adds.append(adds(pts, R, t, g.R, g.t))
            prev = self._prev.get(g.identity)
            if prev is not None and prev[0] == self._frame - 1 and (self.static is None or g.identity in self.static):
                _, Rp, tp, Rgp, tgp = prev
                s.jitter_t.append(float(np.linalg.norm((t - tp) - (g.t - tgp))))
                s.jitter_r.append(angle_deg(R @ Rp.T, g.R @ Rgp.T))
            self._prev[g.identity] = (self._frame, R, t, g.R, np.asarray(g.t, np.float64))
        self._frame += 1
