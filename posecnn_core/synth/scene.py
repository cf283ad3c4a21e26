"""Random scene sampling for synthetic frames: intrinsics, object poses, lights (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["SceneConfig", "Instance", "Light", "Scene", "default_intrinsics", "sample_intrinsics",
           "sample_instances", "sample_lights", "sample_scene"]

# YCB-Video camera at 640x480; scaled to other image sizes.
_YCB_K = np.array([[1066.778, 0.0, 312.9869], [0.0, 1067.487, 241.3109], [0.0, 0.0, 1.0]])


@dataclass
class SceneConfig:
    """Parameters of the random scenes.

    Objects are placed around a random cluster centre (so they occlude each other) at depths
    in ``depth_range`` metres; classes are drawn with replacement, so a class can appear up to
    ``max_instances_per_class`` times. With ``random_intrinsics`` the focal lengths are scaled
    by a factor in ``focal_scale_range`` and the principal point moves by up to
    ``principal_jitter`` of the image size.
    """

    width: int = 320
    height: int = 240
    min_objects: int = 2
    max_objects: int = 6
    max_instances_per_class: int = 3
    depth_range: tuple[float, float] = (0.45, 1.0)
    cluster_radius: float = 0.12
    min_separation: float = 0.7  # centres at least this fraction of the sum of the radii apart
    random_intrinsics: bool = False
    focal_scale_range: tuple[float, float] = (0.8, 1.25)
    principal_jitter: float = 0.03
    min_lights: int = 1
    max_lights: int = 3

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        if self.width < 8 or self.height < 8:
            raise ValueError(f"width/height must be >= 8, got {self.width}x{self.height}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if self.max_instances_per_class < 1:
            raise ValueError(f"max_instances_per_class must be >= 1, got {self.max_instances_per_class}")
        lo, hi = self.depth_range
        if not 0 < lo <= hi:
            raise ValueError(f"depth_range must satisfy 0 < min <= max, got {self.depth_range}")
        if hi * 10000 > 65535:
            raise ValueError(f"depth_range max {hi} m exceeds the uint16 depth range at factor 10000")
        if not 0 < self.focal_scale_range[0] <= self.focal_scale_range[1]:
            raise ValueError(f"focal_scale_range must be positive and ordered, got {self.focal_scale_range}")
        if not 1 <= self.min_lights <= self.max_lights:
            raise ValueError(f"need 1 <= min_lights <= max_lights, got {self.min_lights}, {self.max_lights}")


@dataclass(frozen=True)
class Instance:
    """One placed object: X_cam = R @ X_obj + t (camera optical frame, metres)."""

    class_index: int
    R: np.ndarray
    t: np.ndarray


@dataclass(frozen=True)
class Light:
    """A point light in the camera optical frame; ``color`` RGB in 0..1, ``intensity`` in pyrender units."""

    position: np.ndarray
    color: np.ndarray
    intensity: float


@dataclass
class Scene:
    K: np.ndarray
    instances: list[Instance]
    lights: list[Light]
    ambient: np.ndarray = field(default_factory=lambda: np.full(3, 0.3))


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """YCB-Video intrinsics scaled from 640x480 to ``width`` x ``height``."""
    K = _YCB_K.copy()
    K[0] *= width / 640.0
    K[1] *= height / 480.0
    return K


def sample_intrinsics(rng: np.random.Generator, cfg: SceneConfig) -> np.ndarray:
    """Default intrinsics, or randomly scaled/shifted ones when ``cfg.random_intrinsics``."""
    K = default_intrinsics(cfg.width, cfg.height)
    if cfg.random_intrinsics:
        s = rng.uniform(*cfg.focal_scale_range)
        K[0, 0] *= s * rng.uniform(0.98, 1.02)
        K[1, 1] *= s * rng.uniform(0.98, 1.02)
        K[0, 2] = (cfg.width - 1) / 2 + rng.uniform(-1, 1) * cfg.principal_jitter * cfg.width
        K[1, 2] = (cfg.height - 1) / 2 + rng.uniform(-1, 1) * cfg.principal_jitter * cfg.height
    return K


def _pick_classes(rng: np.random.Generator, num_classes: int, count: int, max_per_class: int) -> list[int]:
    counts = np.zeros(num_classes, dtype=int)
    picked = []
    for _ in range(count):
        free = np.flatnonzero(counts < max_per_class)
        if free.size == 0:
            break
        c = int(rng.choice(free))
        counts[c] += 1
        picked.append(c + 1)
    return picked


def sample_instances(rng: np.random.Generator, K: np.ndarray, radii: Sequence[float],
                     cfg: SceneConfig, max_tries: int = 30) -> list[Instance]:
    """Random objects in a cluster in front of the camera, their centres inside the image.

    ``radii[c-1]`` is the bounding radius of class c. Placement avoids gross interpenetration
    (centre distance >= ``min_separation`` x the sum of radii) where it can within ``max_tries``.
    """
    count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    classes = _pick_classes(rng, len(radii), count, cfg.max_instances_per_class)
    Kinv = np.linalg.inv(K)
    margin = 0.1
    z0 = rng.uniform(*cfg.depth_range)
    uv = np.array([rng.uniform(margin, 1 - margin) * cfg.width, rng.uniform(margin, 1 - margin) * cfg.height, 1.0])
    centre = Kinv @ uv * z0
    placed: list[Instance] = []
    for c in classes:
        r = radii[c - 1]
        best, best_gap = None, -np.inf
        for _ in range(max_tries):
            t = centre + rng.normal(scale=cfg.cluster_radius / 2, size=3)
            t[2] = np.clip(t[2], *cfg.depth_range)
            u, v, _ = K @ t / t[2]
            if not (0 <= u <= cfg.width - 1 and 0 <= v <= cfg.height - 1):
                continue
            gap = min((np.linalg.norm(t - p.t) / (cfg.min_separation * (r + radii[p.class_index - 1]))
                       for p in placed), default=np.inf)
            if gap > best_gap:
                best, best_gap = t, gap
            if gap >= 1.0:
                break
        if best is None:  # no in-image sample: put it on the cluster centre's ray
            best = centre.copy()
        R = Rotation.random(rng=rng).as_matrix()
        placed.append(Instance(class_index=c, R=R, t=best))
    return placed


def sample_lights(rng: np.random.Generator, cfg: SceneConfig, target: np.ndarray) -> tuple[list[Light], np.ndarray]:
    """Point lights around ``target`` (mostly on the camera side) and an ambient colour."""
    lights = []
    for _ in range(int(rng.integers(cfg.min_lights, cfg.max_lights + 1))):
        direction = rng.normal(size=3)
        direction[2] = -abs(direction[2]) - 0.3  # towards the camera from the target
        direction /= np.linalg.norm(direction)
        dist = rng.uniform(0.5, 2.0)
        tint = 1.0 - rng.uniform(0.0, 0.3, size=3)
        lights.append(Light(position=target + dist * direction, color=tint,
                            intensity=float(rng.uniform(2.0, 8.0) * dist ** 2)))
    ambient = np.full(3, rng.uniform(0.2, 0.6)) * (1.0 - rng.uniform(0.0, 0.2, size=3))
    return lights, ambient


def sample_scene(rng: np.random.Generator, radii: Sequence[float], cfg: SceneConfig) -> Scene:
    """Intrinsics, objects and lights of one random frame."""
    K = sample_intrinsics(rng, cfg)
    instances = sample_instances(rng, K, radii, cfg)
    target = np.mean([inst.t for inst in instances], axis=0)
    lights, ambient = sample_lights(rng, cfg, target)
    return Scene(K=K, instances=instances, lights=lights, ambient=ambient)
