"""Read the render assets (textured meshes) of an object set YAML for the synthetic generator.

This reads only what rendering needs from the object-set format (see config/objects/*.yaml):
``models_root`` (relative to the YAML file unless absolute), the default ``mesh`` / ``points``
patterns with ``{name}``, per-class overrides, and ``symmetric``. The full loader with extents
and model points is ``posecnn_core.objects.load_object_set``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["RenderAsset", "read_render_assets", "find_texture"]


@dataclass(frozen=True)
class RenderAsset:
    """One object class to render: ``class_index`` >= 1 (0 is the background)."""

    name: str
    class_index: int
    mesh_path: Path
    radius: float  # metres, max distance of a mesh vertex from the object origin


def read_render_assets(yaml_path: str | Path) -> list[RenderAsset]:
    """Return the classes of an object-set YAML (in file order, class index from 1) with mesh paths.

    The file is parsed by :func:`posecnn_core.objects.read_object_set_spec` (its errors name the file and field);
    raises ValueError when the units are not metres or a class has no mesh, and FileNotFoundError naming a
    missing mesh file.
    """
    import trimesh  # local: only rendering needs it

    from ..objects import read_object_set_spec

    spec = read_object_set_spec(yaml_path)
    if spec.units != "m":
        raise ValueError(f"{yaml_path}: the renderer supports units 'm' only, got {spec.units!r}")
    assets = []
    for i, cls in enumerate(spec.classes, start=1):
        if cls.mesh_path is None:
            raise ValueError(f"{yaml_path}: class {cls.name!r} has no mesh to render")
        if not cls.mesh_path.is_file():
            raise FileNotFoundError(f"{yaml_path}: mesh of class {cls.name!r} not found: {cls.mesh_path}")
        mesh = trimesh.load(cls.mesh_path, process=False, force="mesh")
        radius = float(np.linalg.norm(np.asarray(mesh.vertices), axis=1).max())
        assets.append(RenderAsset(name=cls.name, class_index=i, mesh_path=cls.mesh_path, radius=radius))
    return assets


def find_texture(mesh_path: Path) -> Path | None:
    """The diffuse texture file named by an OBJ's material library (``map_Kd``), if any.

    trimesh does not always resolve relative texture paths, so the renderer loads them itself.
    """
    if mesh_path.suffix.lower() != ".obj":
        return None
    for line in mesh_path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "mtllib":
            mtl = mesh_path.parent / " ".join(parts[1:])
            if not mtl.is_file():
                raise FileNotFoundError(f"{mesh_path}: material library not found: {mtl}")
            for mline in mtl.read_text(errors="replace").splitlines():
                mparts = mline.split()
                if len(mparts) >= 2 and mparts[0] == "map_Kd":
                    tex = mtl.parent / mparts[-1]
                    if not tex.is_file():
                        raise FileNotFoundError(f"{mtl}: texture not found: {tex}")
                    return tex
    return None
