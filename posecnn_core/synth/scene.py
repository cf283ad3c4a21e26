"""Random scene sampling for synthetic frames: intrinsics, object poses, lights, distractors (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["SceneConfig", "Instance", "Light", "Scene", "Distractor", "DISTRACTOR_SHAPES", "LIGHT_STYLES",
           "default_intrinsics", "sample_intrinsics", "sample_instances", "sample_lights", "sample_distractors",
           "sample_scene", "temperature_to_rgb", "FX_REFERENCE_WIDTH"]

# YCB-Video camera at 640x480; scaled to other image sizes.
_YCB_K = np.array([[1066.778, 0.0, 312.9869], [0.0, 1067.487, 241.3109], [0.0, 0.0, 1.0]])
# ``SceneConfig.fx_range`` is given in pixels at this image width and scaled to the output width.
FX_REFERENCE_WIDTH = 320
DISTRACTOR_SHAPES = ("box", "sphere", "cylinder", "cone", "capsule")
LIGHT_STYLES = ("basic", "varied")


@dataclass
class SceneConfig:
    """Parameters of the random scenes.

    Objects are placed around a random cluster centre (so they occlude each other) at depths
    in ``depth_range`` metres; classes are drawn with replacement, so a class can appear up to
    ``max_instances_per_class`` times.

    Intrinsics (one of):

    - default: YCB-Video's camera scaled to the image size (fixed);
    - ``camera = (fx, fy, cx, cy)``: that fixed camera (pixels at ``width`` x ``height``);
    - ``fx_range = (lo, hi)``: per frame, fx log-uniform in ``lo..hi`` pixels at an image width of
      ``FX_REFERENCE_WIDTH`` (320; scaled by ``width / 320``), fy = fx * (1 + u) with |u| <=
      ``aspect_jitter``, principal point within ``principal_jitter`` x the image size of the centre;
    - ``random_intrinsics`` (older option): YCB-Video's focal lengths scaled by a factor in
      ``focal_scale_range``, principal point jittered as above.

    Lights: ``light_style`` "basic" (1-3 tinted point lights around the objects, the original
    sampler) or "varied" (``min_lights``..``max_lights`` point and directional lights, colour
    temperatures in ``light_temperature_range`` kelvin, a wider intensity range, some from behind).

    Distractors: ``min_distractors``..``max_distractors`` random primitives (see
    :func:`sample_distractors`) that occlude objects and never count as objects.

    Backgrounds: ``background_kinds`` (see ``posecnn_core.synth.backgrounds``), chosen per frame
    with ``background_weights`` (uniform when None); kind "photo" crops photographs from
    ``photo_dir``.
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
    fx_range: tuple[float, float] | None = None
    aspect_jitter: float = 0.02
    camera: tuple[float, float, float, float] | None = None
    min_lights: int = 1
    max_lights: int = 3
    light_style: str = "basic"
    light_temperature_range: tuple[float, float] = (2700.0, 7500.0)
    min_distractors: int = 0
    max_distractors: int = 0
    distractor_size_range: tuple[float, float] = (0.01, 0.05)  # half-extent, metres
    distractor_textures: int = 24  # size of the renderer's distractor texture bank
    background_kinds: tuple[str, ...] = ("gradient", "noise", "shapes", "stripes")
    background_weights: tuple[float, ...] | None = None
    photo_dir: str | None = None

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
        if self.fx_range is not None:
            if len(self.fx_range) != 2 or not 0 < self.fx_range[0] <= self.fx_range[1]:
                raise ValueError(f"fx_range must be (min, max) with 0 < min <= max, got {self.fx_range}")
        if not 0 <= self.aspect_jitter < 0.5:
            raise ValueError(f"aspect_jitter must be in [0, 0.5), got {self.aspect_jitter}")
        if not 0 <= self.principal_jitter < 0.5:
            raise ValueError(f"principal_jitter must be in [0, 0.5), got {self.principal_jitter}")
        if self.camera is not None:
            if len(self.camera) != 4 or self.camera[0] <= 0 or self.camera[1] <= 0:
                raise ValueError(f"camera must be (fx, fy, cx, cy) with positive focal lengths, got {self.camera}")
            if self.fx_range is not None or self.random_intrinsics:
                raise ValueError("camera (a fixed camera) cannot be combined with fx_range or random_intrinsics")
        if self.fx_range is not None and self.random_intrinsics:
            raise ValueError("choose one of fx_range and random_intrinsics")
        if self.light_style not in LIGHT_STYLES:
            raise ValueError(f"light_style must be one of {LIGHT_STYLES}, got {self.light_style!r}")
        tlo, thi = self.light_temperature_range
        if not 1000 <= tlo <= thi <= 15000:
            raise ValueError(f"light_temperature_range must lie in 1000..15000 K and be ordered, "
                             f"got {self.light_temperature_range}")
        if not 0 <= self.min_distractors <= self.max_distractors:
            raise ValueError(f"need 0 <= min_distractors <= max_distractors, "
                             f"got {self.min_distractors}, {self.max_distractors}")
        if not 0 < self.distractor_size_range[0] <= self.distractor_size_range[1]:
            raise ValueError(f"distractor_size_range must be positive and ordered, got {self.distractor_size_range}")
        if self.distractor_textures < 1:
            raise ValueError(f"distractor_textures must be >= 1, got {self.distractor_textures}")
        from .backgrounds import ALL_BACKGROUND_KINDS  # local: keeps this module free of OpenCV

        if not self.background_kinds:
            raise ValueError("background_kinds must name at least one kind")
        for kind in self.background_kinds:
            if kind not in ALL_BACKGROUND_KINDS:
                raise ValueError(f"background kind {kind!r} is not one of {ALL_BACKGROUND_KINDS}")
        if self.background_weights is not None:
            w = self.background_weights
            if len(w) != len(self.background_kinds) or any(x < 0 for x in w) or sum(w) <= 0:
                raise ValueError(f"background_weights must be one non-negative weight per kind with a positive "
                                 f"sum, got {w} for {self.background_kinds}")


@dataclass(frozen=True)
class Instance:
    """One placed object: X_cam = R @ X_obj + t (camera optical frame, metres)."""

    class_index: int
    R: np.ndarray
    t: np.ndarray


@dataclass(frozen=True)
class Light:
    """A light in the camera optical frame; ``color`` RGB in 0..1, ``intensity`` in pyrender units.

    ``kind`` "point" (at ``position``) or "directional" (shining along ``direction``, a unit vector;
    ``position`` is then only where it is drawn from)."""

    position: np.ndarray
    color: np.ndarray
    intensity: float
    kind: str = "point"
    direction: np.ndarray | None = None


@dataclass(frozen=True)
class Distractor:
    """A random primitive that is rendered and occludes objects but is never an object.

    ``shape`` one of DISTRACTOR_SHAPES with half-extents ``scale`` (metres, along its own axes),
    pose X_cam = R @ X + t. ``texture`` indexes the renderer's texture bank (-1: plain colour);
    ``color`` is the base colour (plain) or the tint multiplied into the texture, RGB 0..1."""

    shape: str
    scale: np.ndarray
    R: np.ndarray
    t: np.ndarray
    texture: int
    color: np.ndarray
    metallic: float = 0.0
    roughness: float = 0.8


@dataclass
class Scene:
    K: np.ndarray
    instances: list[Instance]
    lights: list[Light]
    ambient: np.ndarray = field(default_factory=lambda: np.full(3, 0.3))
    distractors: list[Distractor] = field(default_factory=list)


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """YCB-Video intrinsics scaled from 640x480 to ``width`` x ``height``."""
    K = _YCB_K.copy()
    K[0] *= width / 640.0
    K[1] *= height / 480.0
    return K


def sample_intrinsics(rng: np.random.Generator, cfg: SceneConfig) -> np.ndarray:
    """The frame's intrinsics per ``cfg`` (see :class:`SceneConfig`); draws nothing for a fixed camera."""
    if cfg.camera is not None:
        fx, fy, cx, cy = (float(v) for v in cfg.camera)
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if cfg.fx_range is not None:
        lo, hi = (float(v) * cfg.width / FX_REFERENCE_WIDTH for v in cfg.fx_range)
        fx = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        fy = fx * (1.0 + rng.uniform(-1, 1) * cfg.aspect_jitter)
        cx = (cfg.width - 1) / 2 + rng.uniform(-1, 1) * cfg.principal_jitter * cfg.width
        cy = (cfg.height - 1) / 2 + rng.uniform(-1, 1) * cfg.principal_jitter * cfg.height
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
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


def temperature_to_rgb(kelvin: float) -> np.ndarray:
    """Linear RGB (max component 1) of a black body at ``kelvin`` (1000..15000 K).

    Planckian locus in CIE 1960 (u, v) by Krystek's rational approximation, then CIE xy -> XYZ
    (Y = 1) -> linear sRGB (D65 white at about 6500 K)."""
    if not 1000 <= kelvin <= 15000:
        raise ValueError(f"colour temperature must be in 1000..15000 K, got {kelvin}")
    T = float(kelvin)
    u = (0.860117757 + 1.54118254e-4 * T + 1.28641212e-7 * T * T) / (1 + 8.42420235e-4 * T + 7.08145163e-7 * T * T)
    v = (0.317398726 + 4.22806245e-5 * T + 4.20481691e-8 * T * T) / (1 - 2.89741816e-5 * T + 1.61456053e-7 * T * T)
    d = 2 * u - 8 * v + 4
    x, y = 3 * u / d, 2 * v / d
    xyz = np.array([x / y, 1.0, (1 - x - y) / y])
    m = np.array([[3.2404542, -1.5371385, -0.4985314],
                  [-0.9692660, 1.8760108, 0.0415560],
                  [0.0556434, -0.2040259, 1.0572252]])
    rgb = np.clip(m @ xyz, 0.0, None)
    return rgb / rgb.max()


def _camera_light_colour(kelvin: float) -> np.ndarray:
    """Colour of a light of ``kelvin`` as a camera records it after its (partial) auto white balance:
    the black body's gamma-encoded RGB moved 40 % towards white."""
    return 1.0 - 0.6 * (1.0 - temperature_to_rgb(kelvin) ** (1 / 2.2))


def _sample_varied_lights(rng: np.random.Generator, cfg: SceneConfig,
                          target: np.ndarray) -> tuple[list[Light], np.ndarray]:
    """Point and directional lights of random colour temperature, intensity and direction."""
    lights = []
    for _ in range(int(rng.integers(cfg.min_lights, cfg.max_lights + 1))):
        direction = rng.normal(size=3)
        # mostly from the camera's side (towards the camera from the target), sometimes from behind
        direction[2] = abs(direction[2]) + 0.1 if rng.random() < 0.15 else -abs(direction[2]) - 0.3
        direction /= np.linalg.norm(direction)
        color = _camera_light_colour(rng.uniform(*cfg.light_temperature_range))
        if rng.random() < 0.4:
            lights.append(Light(position=target + 2.0 * direction, color=color,
                                intensity=float(np.exp(rng.uniform(np.log(1.0), np.log(6.0)))),
                                kind="directional", direction=-direction))
        else:
            dist = rng.uniform(0.4, 2.5)
            radiance = float(np.exp(rng.uniform(np.log(1.5), np.log(12.0))))
            lights.append(Light(position=target + dist * direction, color=color, intensity=radiance * dist ** 2))
    ambient = rng.uniform(0.05, 0.6) * _camera_light_colour(rng.uniform(*cfg.light_temperature_range))
    return lights, ambient


def sample_distractors(rng: np.random.Generator, K: np.ndarray, instances: Sequence[Instance],
                       radii: Sequence[float], cfg: SceneConfig) -> list[Distractor]:
    """``min_distractors``..``max_distractors`` random primitives around the objects.

    Each is an occluder (40 %: between the camera and a random object, at 45-85 % of its depth and
    near its line of sight, so it covers part of it), sits between the objects (30 %: at the
    cluster's depth, kept clear of the object centres where it can) or stands behind them (30 %).
    Shapes, sizes (half-extents in ``distractor_size_range``), rotations, textures (from the
    renderer's bank of ``distractor_textures``, or a plain colour) and material are random."""
    count = int(rng.integers(cfg.min_distractors, cfg.max_distractors + 1))
    if count == 0:
        return []
    Kinv = np.linalg.inv(K)
    centre = np.mean([inst.t for inst in instances], axis=0)
    lo_z = max(0.15, cfg.depth_range[0] * 0.4)
    out = []
    for _ in range(count):
        shape = DISTRACTOR_SHAPES[int(rng.integers(len(DISTRACTOR_SHAPES)))]
        size = rng.uniform(*cfg.distractor_size_range)
        scale = size * rng.uniform(0.4, 1.0, size=3)
        scale[int(rng.integers(3))] = size  # the largest axis is `size`
        if shape in ("sphere", "cylinder", "cone", "capsule"):
            scale[1] = scale[0]  # round cross-section
        role = rng.random()
        if role < 0.4:  # occluder in front of a random object
            inst = instances[int(rng.integers(len(instances)))]
            r = radii[inst.class_index - 1]
            z = max(lo_z, inst.t[2] * rng.uniform(0.45, 0.85))
            offset = rng.normal(size=2)
            offset *= rng.uniform(0.2, 1.2) * r / max(np.linalg.norm(offset), 1e-9)
            t = inst.t * (z / inst.t[2])
            t[:2] += offset * (z / inst.t[2])
        elif role < 0.7:  # between the objects
            best, best_gap = None, -np.inf
            for _ in range(10):
                cand = centre + rng.normal(scale=cfg.cluster_radius, size=3)
                cand[2] = max(cand[2], lo_z)
                gap = min(np.linalg.norm(cand - i.t) - radii[i.class_index - 1] for i in instances) - size
                if gap > best_gap:
                    best, best_gap = cand, gap
                if gap > 0:
                    break
            t = best
        else:  # behind the objects, anywhere in the image
            z = centre[2] + rng.uniform(0.1, 0.6)
            uv = np.array([rng.uniform(0, cfg.width), rng.uniform(0, cfg.height), 1.0])
            t = Kinv @ uv * z
        texture = -1 if rng.random() < 0.3 else int(rng.integers(cfg.distractor_textures))
        color = rng.uniform(0.05, 1.0, size=3) if texture < 0 else rng.uniform(0.6, 1.0, size=3)
        out.append(Distractor(shape=shape, scale=scale, R=Rotation.random(rng=rng).as_matrix(), t=np.asarray(t, float),
                              texture=texture, color=color, metallic=float(rng.uniform(0.0, 0.6) ** 2),
                              roughness=float(rng.uniform(0.3, 1.0))))
    return out


def sample_scene(rng: np.random.Generator, radii: Sequence[float], cfg: SceneConfig) -> Scene:
    """Intrinsics, objects, lights and distractors of one random frame."""
    K = sample_intrinsics(rng, cfg)
    instances = sample_instances(rng, K, radii, cfg)
    target = np.mean([inst.t for inst in instances], axis=0)
    if cfg.light_style == "varied":
        lights, ambient = _sample_varied_lights(rng, cfg, target)
    else:
        lights, ambient = sample_lights(rng, cfg, target)
    distractors = sample_distractors(rng, K, instances, radii, cfg)
    return Scene(K=K, instances=instances, lights=lights, ambient=ambient, distractors=distractors)
