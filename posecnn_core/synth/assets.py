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
import yaml

__all__ = ["RenderAsset", "read_render_assets", "find_texture"]


@dataclass(frozen=True)
class RenderAsset:
    """One object class to render: ``class_index`` >= 1 (0 is the background)."""

    name: str
    class_index: int
    mesh_path: Path
    radius: float  # metres, max distance of a mesh vertex from the object origin


def _resolve(root: Path, pattern: str, name: str) -> Path:
    path = Path(pattern.format(name=name))
    return path if path.is_absolute() else root / path


def read_render_assets(yaml_path: str | Path) -> list[RenderAsset]:
    """Return the classes of an object-set YAML (in file order, class index from 1) with mesh paths.

    Raises ValueError naming the file or class when the YAML is malformed or a class has no
    mesh, and FileNotFoundError naming a missing mesh file.
    """
    import trimesh  # local: only rendering needs it

    yaml_path = Path(yaml_path)
    with open(yaml_path, "r", encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, dict) or not isinstance(spec.get("classes"), list) or not spec["classes"]:
        raise ValueError(f"{yaml_path}: expected a mapping with a non-empty 'classes' list")
    root = Path(spec.get("models_root", "."))
    if not root.is_absolute():
        root = yaml_path.parent / root
    scale = {"m": 1.0, "mm": 1e-3, "cm": 1e-2}.get(spec.get("units", "m"))
    if scale != 1.0:
        raise ValueError(f"{yaml_path}: the renderer supports units 'm' only, got {spec.get('units')!r}")
    assets = []
    for i, cls in enumerate(spec["classes"], start=1):
        if not isinstance(cls, dict) or "name" not in cls:
            raise ValueError(f"{yaml_path}: class entry {i} has no 'name'")
        name = str(cls["name"])
        pattern = cls.get("mesh", spec.get("mesh"))
        if pattern is None:
            raise ValueError(f"{yaml_path}: class {name!r} has no mesh to render")
        mesh_path = _resolve(root, str(pattern), name)
        if not mesh_path.is_file():
            raise FileNotFoundError(f"{yaml_path}: mesh of class {name!r} not found: {mesh_path}")
        mesh = trimesh.load(mesh_path, process=False, force="mesh")
        radius = float(np.linalg.norm(np.asarray(mesh.vertices), axis=1).max())
        assets.append(RenderAsset(name=name, class_index=i, mesh_path=mesh_path, radius=radius))
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
