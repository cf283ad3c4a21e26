"""Temporally coherent synthetic sequences for tracking: a camera moving smoothly around static objects, one
object moved by a hand-like motion, and an occluder that comes and goes.

World frame = the camera frame of the first frame. The scene (objects, lights, background) is drawn once with
:func:`posecnn_core.synth.scene.sample_scene`, with at least two objects of one class (so that their ids can be
confused). Per frame k (u = k / (frames - 1)):

- camera: turned by ``orbit_deg`` x s(u) about the vertical axis (optical -y) through the objects' centre, and
  raised and lowered by ``bob`` metres (s: smoothstep), so objects move smoothly across the image;
- the moved object (the last one; ``moving`` in the meta): between ``move_window`` (fractions of the sequence)
  lifted by ``lift`` metres, shifted sideways by ``shift`` metres and turned by ``turn_deg`` about the vertical,
  with a capsule "hand" above it while it moves;
- the occluder: a box crossing in front of the objects from left to right during ``occluder_window``.

Each frame is written in the YCB-Video layout (``posecnn_core.synth.writer``) with, in its meta, ``object_ids``
[N, 1] (the object's identity over the whole sequence, 0-based index in the scene) and ``moving`` [N, 1] (1 for
the moved object); objects with fewer than ``min_visible_pixels`` visible pixels are left out of that frame.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from .assets import read_render_assets
from .backgrounds import sample_background
from .generate import composite
from .output import INFO_FILE, frame_id, plan_output
from .scene import Distractor, Instance, Scene, SceneConfig, sample_scene
from .writer import DEFAULT_FACTOR_DEPTH, make_meta, write_classes, write_frame, write_image_set

__all__ = ["SequenceConfig", "sequence_frame", "generate_sequence"]


@dataclass(frozen=True)
class SequenceConfig:
    """The motion of a sequence (lengths in metres, angles in degrees, windows as fractions of the sequence)."""

    frames: int = 48
    orbit_deg: float = 35.0
    bob: float = 0.03
    move_window: tuple[float, float] = (0.3, 0.6)
    lift: float = 0.06
    shift: float = 0.08
    turn_deg: float = 60.0
    occluder_window: tuple[float, float] = (0.55, 0.85)
    occluder_size: float = 0.02

    def validate(self) -> None:
        if self.frames < 2:
            raise ValueError(f"a sequence needs at least 2 frames, got {self.frames}")
        for name in ("move_window", "occluder_window"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(f"{name} must satisfy 0 <= start < end <= 1, got {(lo, hi)}")


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _window(u: float, window: tuple[float, float]) -> float:
    """0 before the window, 1 after it, smooth in between."""
    return _smoothstep((u - window[0]) / (window[1] - window[0]))


def _camera_motion(u: float, seq: SequenceConfig, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) mapping a world point to frame u's camera: X_cam = A·X + b."""
    angle = math.radians(seq.orbit_deg) * (_smoothstep(u) - 0.5)
    Ra = Rotation.from_rotvec([0.0, angle, 0.0]).as_matrix()  # about the optical y axis (vertical)
    lift = np.array([0.0, seq.bob * math.sin(2 * math.pi * u), 0.0])
    A = Ra.T
    return A, centre - A @ centre + lift


def sequence_frame(scene: Scene, k: int, seq: SequenceConfig) -> tuple[list[Instance], list[Distractor]]:
    """The objects and distractors of frame k in its camera frame (scene: frame 0's world)."""
    u = k / (seq.frames - 1)
    centre = np.mean([inst.t for inst in scene.instances], axis=0)
    A, b = _camera_motion(u, seq, centre)
    instances = []
    moving = len(scene.instances) - 1
    m = _window(u, seq.move_window)
    for i, inst in enumerate(scene.instances):
        R, t = inst.R, inst.t
        if i == moving:  # lift (optical -y is up), shift sideways and turn about the vertical
            t = t + np.array([seq.shift * m, -seq.lift * math.sin(math.pi * m), 0.0])
            R = Rotation.from_rotvec([0.0, math.radians(seq.turn_deg) * m, 0.0]).as_matrix() @ R
        instances.append(Instance(class_index=inst.class_index, R=A @ R, t=A @ t + b))
    distractors = []
    moved = instances[moving]
    if 0.0 < m < 1.0:  # the hand: a capsule just above the moved object, following it
        hand_t = moved.t + np.array([0.0, -0.07, -0.02])
        distractors.append(Distractor(shape="capsule", scale=np.array([0.025, 0.025, 0.05]),
                                      R=Rotation.from_rotvec([math.pi / 2, 0, 0]).as_matrix(), t=hand_t,
                                      texture=-1, color=np.array([0.8, 0.55, 0.45])))
    lo, hi = seq.occluder_window
    if lo <= u <= hi:  # the occluder: a box crossing in front of the objects, left to right
        x = (u - lo) / (hi - lo)
        z = 0.6 * centre[2]
        occ_t = np.array([centre[0] * 0.6 + (x - 0.5) * 0.4 * z, centre[1] * 0.6, z])
        distractors.append(Distractor(shape="box", scale=np.array([seq.occluder_size, 0.05, 0.01]),
                                      R=np.eye(3), t=occ_t, texture=-1, color=np.array([0.3, 0.35, 0.8])))
    return instances, distractors


def _prepared(scene: Scene) -> Scene:
    """The scene centred on the optical axis (so that the camera's motion keeps the objects in view), with its
    second object of the first object's class (two look-alikes) and without the random distractors."""
    inst = list(scene.instances)
    centre = np.mean([i.t for i in inst], axis=0)
    shift = np.array([-centre[0], -centre[1], 0.0])
    inst = [Instance(class_index=i.class_index, R=i.R, t=i.t + shift) for i in inst]
    if len({i.class_index for i in inst}) == len(inst) and len(inst) >= 2:
        inst[1] = Instance(class_index=inst[0].class_index, R=inst[1].R, t=inst[1].t)
    return dataclasses.replace(scene, instances=inst, distractors=[])


def generate_sequence(objects: str | Path, out: str | Path, seq: SequenceConfig | None = None,
                      config: SceneConfig | None = None, seed: int = 0, min_visible_pixels: int = 50,
                      platform: str = "osmesa", mode: str = "new") -> list[str]:
    """Render one sequence of the object set YAML ``objects`` into ``out`` (YCB-Video layout, sequence
    ``0000``, every frame listed in ``image_sets/test.txt``); returns the frame ids."""
    from .renderer import SceneRenderer

    seq = seq or SequenceConfig()
    seq.validate()
    cfg = config or SceneConfig(min_objects=4, max_objects=5, max_instances_per_class=2, depth_range=(0.55, 0.8))
    cfg.validate()
    assets = read_render_assets(objects)
    class_names = [a.name for a in assets]
    root = Path(out)
    plan = plan_output(root, mode, class_names, cfg.width, cfg.height, seq.frames)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E0]))
    scene = _prepared(sample_scene(rng, [a.radius for a in assets], cfg))
    background = sample_background(rng, cfg.height, cfg.width, cfg.background_kinds, cfg.background_weights, None)
    plan.clear_replaced()
    ids = []
    renderer = SceneRenderer(assets, cfg.width, cfg.height, platform=platform)
    try:
        for k in range(seq.frames):
            instances, distractors = sequence_frame(scene, k, seq)
            res = renderer.render(scene.K, instances, scene.lights, scene.ambient, distractors)
            counts = np.bincount(res.instance.ravel(), minlength=len(instances) + 1)
            keep = [i for i in range(len(instances)) if counts[i + 1] >= min_visible_pixels]
            remap = np.zeros(len(instances) + 1, dtype=np.int32)
            remap[np.asarray(keep, dtype=int) + 1] = np.arange(1, len(keep) + 1)
            instance = remap[res.instance]
            cls = np.array([instances[i].class_index for i in keep], dtype=int)
            label = np.where(instance > 0, cls[np.maximum(instance - 1, 0)] if len(keep) else 0, 0).astype(np.uint8)
            rendered = (instance > 0) | res.distractor
            depth = np.where(rendered, res.depth, 0.0)
            poses = np.array([np.hstack([instances[i].R, instances[i].t.reshape(3, 1)])
                              for i in keep]).reshape(-1, 3, 4)
            meta = make_meta(cls, poses, scene.K, DEFAULT_FACTOR_DEPTH)
            meta["object_ids"] = np.asarray(keep, np.float64).reshape(-1, 1)
            meta["moving"] = np.array([[1.0 if i == len(instances) - 1 else 0.0] for i in keep]).reshape(-1, 1)
            fid = frame_id(k, seq.frames)
            write_frame(root, fid, composite(res.color, rendered, background), depth, label, instance, meta)
            ids.append(fid)
    finally:
        renderer.close()
    write_image_set(root, "train", [])
    write_image_set(root, "test", ids)
    write_classes(root, class_names)
    info = {"objects": str(Path(objects).resolve()), "classes": class_names, "frames": len(ids),
            "frames_per_sequence": seq.frames,
            "runs": [{"first_frame": 0, "frames": len(ids), "train": 0, "test": len(ids), "seed": seed,
                      "test_fraction": 1.0, "min_visible_pixels": min_visible_pixels,
                      "objects": str(Path(objects).resolve()), "scene": dataclasses.asdict(cfg),
                      "sequence": dataclasses.asdict(seq), "notes": []}]}
    (root / INFO_FILE).write_text(yaml.safe_dump(info, sort_keys=False))
    return ids
