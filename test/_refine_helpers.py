"""Synthetic depth frames and pose-error metrics for the refinement tests and benchmark."""
from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from _depth_render import render_scene

# Half-resolution YCB-Video camera (320x240).
K_SMALL = np.array([[533.389, 0.0, 156.493], [0.0, 533.744, 120.655], [0.0, 0.0, 1.0]])


def box_mesh(extents=(0.16, 0.21, 0.06)) -> trimesh.Trimesh:
    """A cracker-box-like box, subdivided so that its triangles stay small."""
    return trimesh.creation.box(extents=extents).subdivide().subdivide()


def cylinder_mesh(radius: float = 0.034, height: float = 0.10) -> trimesh.Trimesh:
    """A soup-can-like cylinder, symmetric about its z axis."""
    return trimesh.creation.cylinder(radius=radius, height=height, sections=48)


def l_block_mesh() -> trimesh.Trimesh:
    """An L-shaped block with unequal arms (16 and 11 cm; two boxes meeting face to face): no rotational
    symmetry, so only one pose fits."""
    long = trimesh.creation.box(extents=(0.16, 0.06, 0.06))
    foot = trimesh.creation.box(extents=(0.06, 0.05, 0.06))
    foot.apply_translation((0.05, 0.055, 0.0))
    return trimesh.util.concatenate([long.subdivide().subdivide(), foot.subdivide().subdivide()])


def model_points(mesh: trimesh.Trimesh, count: int = 1500, seed: int = 0) -> np.ndarray:
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, dtype=np.float64)


def look_pose(t, euler_deg=(20.0, -30.0, 10.0)) -> tuple[np.ndarray, np.ndarray]:
    return Rotation.from_euler("xyz", euler_deg, degrees=True).as_matrix(), np.asarray(t, dtype=np.float64)


def perturb(R, t, trans_m: float, rot_deg: float, seed: int, axis=None) -> tuple[np.ndarray, np.ndarray]:
    """Move t by trans_m in a random direction and rotate by rot_deg about a random (or given object) axis."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    a = rng.normal(size=3) if axis is None else R @ np.asarray(axis, dtype=np.float64)
    a /= np.linalg.norm(a)
    dR = Rotation.from_rotvec(np.deg2rad(rot_deg) * a).as_matrix()
    return dR @ R, t + trans_m * d


def frame(objects, K=K_SMALL, size=(240, 320), noise_m: float = 0.0, background_m: float | None = 1.5,
          seed: int = 0):
    """Render objects [(mesh, R, t)] → (depth [H, W] metres, masks [list of bool [H, W]])."""
    H, W = size
    depth, inst = render_scene([(m.vertices, m.faces, R, t) for m, R, t in objects], K, H, W)
    rng = np.random.default_rng(seed)
    if noise_m > 0:
        depth = np.where(depth > 0, depth + rng.normal(scale=noise_m, size=depth.shape), 0.0)
    if background_m is not None:
        depth = np.where(inst < 0, background_m, depth)
    masks = [inst == i for i in range(len(objects))]
    return depth, masks


def add_outliers(depth: np.ndarray, mask: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Replace `fraction` of the masked pixels by random depth readings between 0.3 and 2.0 m."""
    rng = np.random.default_rng(seed)
    rows, cols = np.nonzero(mask)
    pick = rng.choice(len(rows), int(round(fraction * len(rows))), replace=False)
    out = depth.copy()
    out[rows[pick], cols[pick]] = rng.uniform(0.3, 2.0, size=len(pick))
    return out


def rotation_error_deg(R_est, R_gt) -> float:
    c = (np.trace(np.asarray(R_est) @ np.asarray(R_gt).T) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def add(points, R_est, t_est, R_gt, t_gt) -> float:
    return float(np.linalg.norm(points @ np.asarray(R_est).T + t_est - (points @ np.asarray(R_gt).T + t_gt),
                                axis=1).mean())


def add_s(points, R_est, t_est, R_gt, t_gt) -> float:
    est = points @ np.asarray(R_est).T + t_est
    gt = points @ np.asarray(R_gt).T + t_gt
    d, _ = cKDTree(est).query(gt)
    return float(d.mean())
