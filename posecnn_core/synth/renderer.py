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
from .scene import DISTRACTOR_SHAPES, Distractor, Instance, Light

__all__ = ["RenderResult", "SceneRenderer", "load_textured_mesh", "primitive_mesh"]

# OpenCV camera frame (x right, y down, z forward) -> OpenGL camera (x right, y up, z backward).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class RenderResult:
    """``color``: uint8 [H, W, 3] RGB (black where no object); ``depth``: float32 [H, W] metres
    along the optical axis, 0 where no object; ``instance``: int32 [H, W], k + 1 where the k-th
    instance is visible, 0 elsewhere; ``distractor``: bool [H, W], where a distractor is visible
    (its depth is in ``depth`` too). ``instance > 0 | distractor`` is the rendered mask for
    compositing (OSMesa has no alpha channel or multisampling)."""

    color: np.ndarray
    depth: np.ndarray
    instance: np.ndarray
    distractor: np.ndarray


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


def _pose(R: np.ndarray, t: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R if scale is None else R * np.asarray(scale).reshape(1, 3)
    T[:3, 3] = np.asarray(t).reshape(3)
    return T


def _release_freed_memory() -> None:
    """Return freed heap memory to the system (glibc's ``malloc_trim``; a no-op elsewhere): without it the
    memory of deleted GL contexts stays in the process and its resident size keeps growing."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _frame_with_z(z: np.ndarray) -> np.ndarray:
    """A rotation whose third column is the unit vector ``z``."""
    z = np.asarray(z, dtype=np.float64) / np.linalg.norm(z)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def primitive_mesh(shape: str):
    """A trimesh primitive of half-extent 1 along x, y, z (roughly, for the capsule) with UV
    coordinates: planar per face for the box, cylindrical around z for the round shapes."""
    import trimesh

    if shape == "box":
        mesh = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
        mesh.unmerge_vertices()
        v = mesh.vertices
        axis = np.abs(mesh.face_normals).argmax(axis=1)
        uv = np.zeros((len(v), 2))
        for f, a in zip(mesh.faces, axis):
            u_ax, v_ax = [i for i in range(3) if i != a]
            uv[f] = 0.5 + 0.5 * v[f][:, [u_ax, v_ax]]
        return mesh, uv
    if shape == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    elif shape == "cylinder":
        mesh = trimesh.creation.cylinder(radius=1.0, height=2.0, sections=24)
    elif shape == "cone":
        mesh = trimesh.creation.cone(radius=1.0, height=2.0, sections=24)
        mesh.apply_translation([0.0, 0.0, -1.0])
    elif shape == "capsule":
        mesh = trimesh.creation.capsule(height=1.0, radius=0.5, count=[16, 8])
    else:
        raise ValueError(f"unknown distractor shape {shape!r}; expected one of {DISTRACTOR_SHAPES}")
    v = mesh.vertices
    uv = np.stack([0.5 + np.arctan2(v[:, 1], v[:, 0]) / (2 * np.pi), 0.5 + 0.5 * np.clip(v[:, 2], -1, 1)], axis=1)
    return mesh, uv


class SceneRenderer:
    """Renders instances of an object set's meshes; reuse one instance for many frames.

    Object poses and lights are given in the OpenCV camera frame; intrinsics follow
    docs/conventions.md (the centre of pixel (row r, column c) is at (u, v) = (c, r)).
    """

    RENEW_EVERY = 25

    def __init__(self, assets: Sequence[RenderAsset], width: int, height: int,
                 platform: str = "osmesa", znear: float = 0.02, zfar: float = 10.0,
                 distractor_textures: Sequence[np.ndarray] = ()) -> None:
        """``distractor_textures``: RGB uint8 images, the bank :attr:`Distractor.texture` indexes."""
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
        # Mesh nodes are pooled per class and only moved between frames: adding and removing mesh nodes
        # every frame leaks memory inside pyrender (measured: tens of MB per frame with these meshes).
        # Unused pool nodes wait behind the camera, where they are never visible.
        self._hidden = _pose(np.eye(3), [0.0, 0.0, -100.0])
        self._pool: dict[int, list] = {c: [self._scene.add(mesh, pose=self._hidden)] for c, mesh in self._meshes.items()}
        self._renderer = pyrender.OffscreenRenderer(self.width, self.height)
        self._renders = 0
        self._distractor_textures = [np.ascontiguousarray(t, dtype=np.uint8) for t in distractor_textures]
        # distractor meshes per (shape, texture index or -1), created on first use; nodes pooled like objects'
        self._distractor_meshes: dict[tuple[str, int], object] = {}
        self._distractor_pool: dict[tuple[str, int], list] = {}

    def _renew_context(self) -> None:
        """Replace the GL context every RENEW_EVERY frames: pyrender 0.1.45's colour pass on OSMesa leaks a few
        MB per frame (tens with these textured meshes) that only deleting the context gives back."""
        self._renders += 1
        if self._renders % self.RENEW_EVERY == 0:
            self._renderer.delete()
            _release_freed_memory()
            self._renderer = self._pr.OffscreenRenderer(self.width, self.height)

    def _mesh_nodes(self, instances: Sequence[Instance]) -> list:
        """One pooled node per instance (growing a class's pool when a frame needs more)."""
        used: dict[int, int] = {}
        nodes = []
        for k, inst in enumerate(instances):
            if inst.class_index not in self._meshes:
                raise ValueError(f"instances[{k}].class_index {inst.class_index} has no mesh")
            pool = self._pool[inst.class_index]
            j = used.get(inst.class_index, 0)
            used[inst.class_index] = j + 1
            if j == len(pool):
                pool.append(self._scene.add(self._meshes[inst.class_index], pose=self._hidden))
            nodes.append(pool[j])
        return nodes

    def _distractor_mesh(self, shape: str, texture: int):
        key = (shape, texture)
        if key not in self._distractor_meshes:
            pr = self._pr
            if texture >= len(self._distractor_textures):
                raise ValueError(f"distractor texture {texture} not in the bank of {len(self._distractor_textures)}")
            mesh, uv = primitive_mesh(shape)
            tex = None
            if texture >= 0:
                tex = pr.Texture(source=self._distractor_textures[texture], source_channels="RGB",
                                 sampler=pr.Sampler(wrapS=pr.constants.GLTF.MIRRORED_REPEAT,
                                                    wrapT=pr.constants.GLTF.MIRRORED_REPEAT))
            material = pr.MetallicRoughnessMaterial(baseColorFactor=[1.0, 1.0, 1.0, 1.0], baseColorTexture=tex,
                                                    metallicFactor=0.0, roughnessFactor=0.8)
            normals = np.asarray(mesh.vertex_normals if shape != "box" else
                                 np.repeat(mesh.face_normals, 3, axis=0), dtype=np.float32)
            prim = pr.Primitive(positions=np.asarray(mesh.vertices, np.float32), normals=normals,
                                texcoord_0=np.asarray(uv, np.float32) if tex is not None else None,
                                indices=np.asarray(mesh.faces, np.uint32), material=material)
            self._distractor_meshes[key] = pr.Mesh([prim])
            self._distractor_pool[key] = []
        return self._distractor_meshes[key]

    def _all_meshes(self) -> list:
        return list(self._meshes.values()) + list(self._distractor_meshes.values())

    def _distractor_nodes(self, distractors: Sequence[Distractor]) -> list:
        used: dict[tuple[str, int], int] = {}
        nodes = []
        for d in distractors:
            key = (d.shape, int(d.texture))
            mesh = self._distractor_mesh(*key)
            pool = self._distractor_pool[key]
            j = used.get(key, 0)
            used[key] = j + 1
            if j == len(pool):
                pool.append(self._scene.add(mesh, pose=self._hidden))
            nodes.append(pool[j])
            mat = mesh.primitives[0].material  # shared by the key's nodes: the last distractor's colour wins
            mat.baseColorFactor = np.array([*np.asarray(d.color, float), 1.0])
            mat.metallicFactor = float(d.metallic)
            mat.roughnessFactor = float(d.roughness)
        return nodes

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
               ambient: Sequence[float] = (0.3, 0.3, 0.3), distractors: Sequence[Distractor] = ()) -> RenderResult:
        """Render colour, depth, the instance map and the distractor mask of one frame."""
        if self._renderer is None:
            raise RuntimeError("SceneRenderer was closed")
        self._renew_context()
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
        nodes = self._mesh_nodes(instances)
        seg_map = {}
        for k, (inst, node) in enumerate(zip(instances, nodes)):
            scene.set_pose(node, _pose(inst.R, inst.t))
            seg_map[node] = ((k + 1) & 255, (k + 1) >> 8, 0)
        dnodes = self._distractor_nodes(distractors)
        # Only meshes used in this frame are drawn: pyrender draws every visible mesh of the scene (pool
        # nodes behind the camera too), which costs time and, on OSMesa, memory until the context renewal.
        used = {id(node.mesh) for node in nodes + dnodes}
        for mesh in self._all_meshes():
            mesh.is_visible = id(mesh) in used
        for d, node in zip(distractors, dnodes):
            scene.set_pose(node, _pose(d.R, d.t, d.scale))
            seg_map[node] = (0, 0, 255)  # occludes objects in the instance map, never an instance itself
        for light in lights:
            if light.kind == "directional":
                dl = pr.DirectionalLight(color=np.asarray(light.color), intensity=float(light.intensity))
                # a directional light shines along its node's -z axis
                added.append(scene.add(dl, pose=_pose(_frame_with_z(-np.asarray(light.direction)), light.position)))
            elif light.kind == "point":
                pl = pr.PointLight(color=np.asarray(light.color), intensity=float(light.intensity))
                added.append(scene.add(pl, pose=_pose(np.eye(3), light.position)))
            else:
                raise ValueError(f"unknown light kind {light.kind!r}")
        try:
            color, _ = self._renderer.render(scene)
            seg, depth = self._renderer.render(scene, flags=pr.RenderFlags.SEG, seg_node_map=seg_map)
        finally:
            for node in added:
                scene.remove_node(node)
            for node in nodes + dnodes:
                scene.set_pose(node, self._hidden)
        instance = seg[..., 0].astype(np.int32) + (seg[..., 1].astype(np.int32) << 8)
        distractor = seg[..., 2] == 255
        depth = np.where((instance > 0) | distractor, depth, 0.0).astype(np.float32)
        return RenderResult(color=np.ascontiguousarray(color[..., :3]), depth=depth, instance=instance,
                            distractor=distractor)
