"""Helpers shared by the data tests: a tiny hand-made YCB-layout dataset and renderer detection."""
from __future__ import annotations

import ctypes.util
import importlib.util
from pathlib import Path

import numpy as np
import trimesh

from posecnn_core.synth.writer import make_meta, write_classes, write_frame, write_image_set


def osmesa_available() -> bool:
    """True when pyrender and the OSMesa library are installed (without importing OpenGL)."""
    return importlib.util.find_spec("pyrender") is not None and ctypes.util.find_library("OSMesa") is not None


def write_box_object_set(root: Path, extents=(0.1, 0.1, 0.02), names=("plate",)) -> Path:
    """An object set YAML with untextured box meshes; returns the YAML path."""
    lines = ["name: boxes", "models_root: models", 'mesh: "{name}/textured.obj"',
             'points: "{name}/points.xyz"', "units: m", "classes:"]
    for name in names:
        d = root / "models" / name
        d.mkdir(parents=True, exist_ok=True)
        box = trimesh.creation.box(extents=extents)
        box.export(d / "textured.obj")
        np.savetxt(d / "points.xyz", box.vertices, fmt="%.6f")
        lines.append(f"  - name: {name}")
    path = root / "boxes.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def square_frame(h: int, w: int, K: np.ndarray, objects: list[tuple[int, np.ndarray, int]]):
    """Synthetic frame data: ``objects`` = (class, t, half-size px); each object is a square
    of pixels around its projected centre at depth t_z (later ones occlude earlier ones)."""
    label = np.zeros((h, w), np.uint8)
    inst = np.zeros((h, w), np.uint8)
    depth = np.zeros((h, w), np.float64)
    poses = []
    for k, (cls, t, half) in enumerate(objects, start=1):
        u, v = (K @ t / t[2])[:2]
        r0, r1 = max(int(round(v)) - half, 0), min(int(round(v)) + half + 1, h)
        c0, c1 = max(int(round(u)) - half, 0), min(int(round(u)) + half + 1, w)
        label[r0:r1, c0:c1] = cls
        inst[r0:r1, c0:c1] = k
        depth[r0:r1, c0:c1] = t[2]
        poses.append(np.hstack([np.eye(3), np.asarray(t, float).reshape(3, 1)]))
    color = np.random.default_rng(0).integers(0, 255, (h, w, 3)).astype(np.uint8)
    meta = make_meta([o[0] for o in objects], np.stack(poses), K)
    return color, depth, label, inst, meta


def write_tiny_dataset(root: Path, K: np.ndarray, h: int = 48, w: int = 64) -> list[str]:
    """Three hand-made frames (two instances of class 2 in frame 2); returns the frame ids."""
    frames = {
        "0000/000001": [(1, np.array([0.0, 0.0, 0.5]), 5)],
        "0000/000002": [(2, np.array([-0.1, 0.0, 0.6]), 4), (2, np.array([0.1, 0.02, 0.7]), 4),
                        (1, np.array([0.0, -0.05, 0.8]), 3)],
        "0001/000001": [(3, np.array([0.02, 0.03, 0.9]), 6)],
    }
    for fid, objs in frames.items():
        write_frame(root, fid, *square_frame(h, w, K, objs))
    write_image_set(root, "train", list(frames)[:2])
    write_image_set(root, "test", list(frames)[2:])
    write_classes(root, ["a", "b", "c"])
    return list(frames)
