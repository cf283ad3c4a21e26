"""Filtering one object's pose over time, and choosing among a symmetric object's equivalent rotations.

`PoseFilter`: an alpha-beta (constant-velocity) filter on the translation (with a smaller gain along the viewing
ray, where a monocular estimate is noisiest) and the same filter on the rotation in
its tangent space: the innovation is the rotation vector log(R_meas · R_predᵀ) (camera frame), the correction
exp(alpha · innovation) · R_pred, and the angular velocity learns beta · innovation / dt. Poses are in the camera
optical frame, so a moving camera shows up as object velocity, which the filter follows without lag in steady
state (the alpha-beta filter tracks a constant velocity exactly). A measurement beyond the gates is not used.

`SymmetryAligner`: the rotation R_meas·S closest to a reference rotation, where S maps the model's points onto
themselves (found by ICP of the model with itself); for an object without symmetries S stays the identity.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from .association import ray_distance
from .config import TrackerConfig

MIN_DT = 1e-3  # seconds; two frames with the same stamp count as this far apart


def rotvec(R: np.ndarray) -> np.ndarray:
    """Rotation vector (axis x angle, radians) of a rotation matrix."""
    return Rotation.from_matrix(R).as_rotvec()


def exp_rotation(v: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector."""
    return Rotation.from_rotvec(np.asarray(v, np.float64)).as_matrix()


def angle_deg(R1: np.ndarray, R2: np.ndarray) -> float:
    """Geodesic angle between two rotations, degrees."""
    c = (np.trace(np.asarray(R1).T @ np.asarray(R2)) - 1.0) / 2.0
    return math.degrees(math.acos(float(np.clip(c, -1.0, 1.0))))


def _kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The rotation R minimising sum ||R·src_i - dst_i||²."""
    U, _, Vt = np.linalg.svd(dst.T @ src)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


class SymmetryAligner:
    """Equivalent rotations of one object model (its points in the object frame, metres).

    ``closest(R_meas, R_ref)``: the rotation R_meas·S closest to R_ref among those that put the model's points
    where R_meas puts them (as a set, up to ``tolerance`` x the model's median point spacing, mean distance);
    R_meas itself when no such S other than the identity is near. ICP of the model with itself from
    S0 = R_measᵀ·R_ref (nearest model points, rotation about the object origin) on at most ``sample`` points.
    """

    def __init__(self, points: np.ndarray, tolerance: float = 2.0, sample: int = 100, max_points: int = 3000,
                 iterations: int = 15) -> None:
        pts = np.asarray(points, np.float64).reshape(-1, 3)
        if len(pts) < 4:
            raise ValueError(f"a symmetry needs at least 4 model points, got {len(pts)}")
        if len(pts) > max_points:
            pts = pts[np.linspace(0, len(pts) - 1, max_points).round().astype(int)]
        self.points = pts
        self.tree = cKDTree(pts)
        self.sample = pts[np.linspace(0, len(pts) - 1, min(sample, len(pts))).round().astype(int)]
        self.spacing = float(np.median(self.tree.query(pts, k=2)[0][:, 1]))
        self.tolerance = tolerance
        self.iterations = iterations

    def self_map(self, S0: np.ndarray) -> np.ndarray | None:
        """The model's symmetry S nearest to S0 (ICP), or None when the model does not map onto itself there."""
        S = np.asarray(S0, np.float64)
        x = self.sample
        for _ in range(self.iterations):
            _, idx = self.tree.query(x @ S.T, k=1)
            S_next = _kabsch(x, self.points[idx])
            done = angle_deg(S_next, S) < 0.05
            S = S_next
            if done:
                break
        residual = float(np.mean(self.tree.query(x @ S.T, k=1)[0]))
        return S if residual <= self.tolerance * self.spacing else None

    def closest(self, R_meas: np.ndarray, R_ref: np.ndarray) -> np.ndarray:
        """The equivalent of R_meas closest to R_ref (R_meas when that is itself)."""
        R_meas = np.asarray(R_meas, np.float64)
        S = self.self_map(R_meas.T @ np.asarray(R_ref, np.float64))
        if S is None:
            return R_meas
        candidate = R_meas @ S
        return candidate if angle_deg(candidate, R_ref) < angle_deg(R_meas, R_ref) else R_meas


class PoseFilter:
    """Constant-velocity filter of one pose (see the module docstring); times in seconds (or frames)."""

    def __init__(self, R: np.ndarray, t: np.ndarray, config: TrackerConfig) -> None:
        self.config = config
        self.restart(R, t)

    def restart(self, R: np.ndarray, t: np.ndarray) -> None:
        """Start over from this pose, at rest."""
        self.R = np.asarray(R, np.float64).copy()
        self.t = np.asarray(t, np.float64).reshape(3).copy()
        self.v = np.zeros(3)
        self.w = np.zeros(3)
        self.outliers = 0
        self._outlier: tuple[np.ndarray, np.ndarray] | None = None

    def _agrees(self, R: np.ndarray, t: np.ndarray) -> bool:
        """Whether an outlier lies within the gates of the previous outlier (both say the object moved there)."""
        if self._outlier is None:
            return False
        R_prev, t_prev = self._outlier
        cfg = self.config
        return (float(ray_distance(t_prev, t, cfg.depth_weight)[0, 0]) <= cfg.gate_translation
                and angle_deg(R_prev, R) <= cfg.gate_rotation_deg)

    def predict(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """The pose expected ``dt`` after the last update (the state is not changed)."""
        dt = max(float(dt), 0.0)
        return exp_rotation(self.w * dt) @ self.R, self.t + self.v * dt

    def update(self, R_meas: np.ndarray, t_meas: np.ndarray, dt: float) -> bool:
        """Fold in a measurement taken ``dt`` after the last update; False when it was gated out as an outlier
        (the state then moves on to the prediction, or restarts from the measurement after ``max_outliers``
        outliers in a row that agree with each other: the object really moved there)."""
        cfg = self.config
        dt = max(float(dt), MIN_DT)
        R_pred, t_pred = self.predict(dt)
        r_t = np.asarray(t_meas, np.float64).reshape(3) - t_pred
        r_R = rotvec(np.asarray(R_meas, np.float64) @ R_pred.T)
        far = float(ray_distance(t_pred, t_pred + r_t, cfg.depth_weight)[0, 0]) > cfg.gate_translation
        if far or math.degrees(np.linalg.norm(r_R)) > cfg.gate_rotation_deg:
            t_meas = np.asarray(t_meas, np.float64).reshape(3)
            R_meas = np.asarray(R_meas, np.float64)
            self.outliers = self.outliers + 1 if self._agrees(R_meas, t_meas) else 1
            self._outlier = (R_meas, t_meas)
            if self.outliers >= cfg.max_outliers:
                self.restart(R_meas, t_meas)
            else:
                self.R, self.t = R_pred, t_pred
            return False
        self.outliers = 0
        self._outlier = None
        ray = t_pred / max(float(np.linalg.norm(t_pred)), 1e-9)
        radial = float(r_t @ ray) * ray  # along the viewing ray: the noisy depth
        lateral = r_t - radial
        ratio = cfg.depth_alpha / cfg.position_alpha
        self.t = t_pred + cfg.position_alpha * lateral + cfg.depth_alpha * radial
        self.v = self.v + (cfg.position_beta / dt) * (lateral + ratio * radial)
        self.R = exp_rotation(cfg.rotation_alpha * r_R) @ R_pred
        self.w = self.w + (cfg.rotation_beta / dt) * r_R
        return True
