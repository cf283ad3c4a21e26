"""Offscreen rendering of textured object meshes with pyrender (CPU: OSMesa).

Needs ``pyrender`` (0.1.45), ``PyOpenGL`` >= 3.1.7 (pyrender pins 3.1.0, whose OSMesa binding is
broken) and the system library ``libosmesa6``. ``PYOPENGL_PLATFORM`` selects the GL backend and
must be set before OpenGL is first imported; this module sets it to ``osmesa`` when it is unset
(pass ``platform`` to choose ``egl`` on a GPU machine).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .assets import RenderAsset, find_texture
from .scene import Instance, Light

__all__ = ["RenderResult", "SceneRenderer", "load_textured_mesh"]

# OpenCV camera frame (x right, y down, z forward) -> OpenGL camera (x right, y up, z backward).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class RenderResult:
    """``color``: uint8 [H, W, 3] RGB (black where no object); ``depth``: float32 [H, W] metres
    along the optical axis, 0 where no object; ``instance``: int32 [H, W], k + 1 where the k-th
    instance is visible, 0 elsewhere (also the object mask for compositing: OSMesa has no
    alpha channel or multisampling)."""

    color: np.ndarray
    depth: np.ndarray
    instance: np.ndarray


def load_textured_mesh(path):
    """Load a mesh with trimesh and attach its ``map_Kd`` texture explicitly (if it has one and UVs)."""
    import trimesh
    from PIL import Image

    mesh = trimesh.load(path, process=False, force="mesh")
    tex = find_texture(path)
    uv = getattr(mesh.visual, "uv", None)
    if tex is not None and uv is not None and len(uv) == len(mesh.vertices):
        with Image.open(tex) as im:
            image = im.convert("RGB")
        mesh.visual = trimesh.visual.TextureVisuals(uv=np.asarray(uv), image=image)
    return mesh


def _pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t).reshape(3)
    return T


class SceneRenderer:
    """Renders instances of an object set's meshes; reuse one instance for many frames.

    Object poses and lights are given in the OpenCV camera frame; intrinsics follow
    docs/conventions.md (the centre of pixel (row r, column c) is at (u, v) = (c, r)).
    """

    def __init__(self, assets: Sequence[RenderAsset], width: int, height: int,
                 platform: str = "osmesa", znear: float = 0.02, zfar: float = 10.0) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        os.environ.setdefault("PYOPENGL_PLATFORM", platform)
        try:
            import pyrender  # after PYOPENGL_PLATFORM is set
        except ImportError as exc:
            raise ImportError("rendering needs pyrender==0.1.45 and PyOpenGL==3.1.10 (pip), and "
                              "libosmesa6 (apt) for PYOPENGL_PLATFORM=osmesa") from exc

        self._pr = pyrender
        self.width, self.height = int(width), int(height)
        self.znear, self.zfar = znear, zfar
        self._meshes = {a.class_index: pyrender.Mesh.from_trimesh(load_textured_mesh(a.mesh_path)) for a in assets}
        self._scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[0.3, 0.3, 0.3])
        # Keep every mesh in the scene (behind the camera, never visible) so pyrender does not
        # free and re-upload its buffers and textures between frames.
        hidden = _pose(np.eye(3), [0.0, 0.0, -100.0])
        for mesh in self._meshes.values():
            self._scene.add(mesh, pose=hidden)
        self._renderer = pyrender.OffscreenRenderer(self.width, self.height)

    def close(self) -> None:
        """Free the GL context."""
        if self._renderer is not None:
            self._renderer.delete()
            self._renderer = None

    def __enter__(self) -> "SceneRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def render(self, K: np.ndarray, instances: Sequence[Instance], lights: Sequence[Light] = (),
               ambient: Sequence[float] = (0.3, 0.3, 0.3)) -> RenderResult:
        """Render colour, depth and the instance map of one frame."""
        if self._renderer is None:
            raise RuntimeError("SceneRenderer was closed")
        if len(instances) > 65535:
            raise ValueError("at most 65535 instances per frame")
        pr = self._pr
        K = np.asarray(K, dtype=np.float64)
        scene = self._scene
        scene.ambient_light = np.asarray(ambient, dtype=np.float64)
        # pyrender puts pixel centres at half-integers; shift by 0.5 to our pixel convention.
        cam = pr.IntrinsicsCamera(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2] + 0.5, cy=K[1, 2] + 0.5,
                                  znear=self.znear, zfar=self.zfar)
        added = [scene.add(cam, pose=_CV_TO_GL)]
        seg_map = {}
        for k, inst in enumerate(instances):
            if inst.class_index not in self._meshes:
                raise ValueError(f"instances[{k}].class_index {inst.class_index} has no mesh")
            node = scene.add(self._meshes[inst.class_index], pose=_pose(inst.R, inst.t))
            added.append(node)
            seg_map[node] = ((k + 1) & 255, (k + 1) >> 8, 0)
        for light in lights:
            pl = pr.PointLight(color=np.asarray(light.color), intensity=float(light.intensity))
            added.append(scene.add(pl, pose=_pose(np.eye(3), light.position)))
        try:
            color, _ = self._renderer.render(scene)
            seg, depth = self._renderer.render(scene, flags=pr.RenderFlags.SEG, seg_node_map=seg_map)
        finally:
            for node in added:
                scene.remove_node(node)
        instance = seg[..., 0].astype(np.int32) + (seg[..., 1].astype(np.int32) << 8)
        depth = np.where(instance > 0, depth, 0.0).astype(np.float32)
        return RenderResult(color=np.ascontiguousarray(color[..., :3]), depth=depth, instance=instance)
