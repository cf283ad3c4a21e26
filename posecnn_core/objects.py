"""Object sets: class names, model points, extents, symmetry flags and reference camera, read from a YAML file.

The file format is documented in docs/object_sets.md. The sets bundled in `config/objects/` (YCB-Video, the
21-object set of PoseCNN-PyTorch's ycb_object checkpoints, the demo) are listed by `bundled_object_sets`, and
`matching_object_sets` finds the ones a checkpoint of a given class count (and names) fits.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .camera import ReferenceCamera
from .resources import search_roots
from .symmetry import cyclic_group

BACKGROUND = "__background__"
UNITS = {"m": 1.0, "mm": 1e-3}
_TOP_KEYS = {"name", "models_root", "points", "mesh", "units", "reference_camera", "classes"}
BUNDLED_DIR = "config/objects"
_CLASS_KEYS = {"name", "symmetric", "symmetric_training", "symmetry", "points", "mesh", "extents"}
_POINT_FILE_SUFFIXES = {".xyz", ".txt", ".pts"}
_SAMPLE_SEED = 0


class ObjectSetError(ValueError):
    """A malformed object-set YAML file or model file."""


# --------------------------------------------------------------------------------------------------
# the loaded object set
# --------------------------------------------------------------------------------------------------

@dataclass
class ObjectSet:
    """Classes of a detector, background first, with model points (metres) and per-class metadata.

    points[c]: float32 `[N_c, 3]` (points[0] is empty); extents: float32 `[C, 3]` (row 0 zeros);
    symmetric: bool `[C]` used for evaluation (ADD-S); symmetric_training: bool `[C]` used for the
    ShapeMatch-Loss (defaults to `symmetric`); symmetry_groups[c]: float64 `[K_c, 3, 3]`, the rotations S
    (identity first) for which R·S looks like R (`posecnn_core.symmetry`; default: the identity alone);
    mesh_paths[c]: the model's mesh file, if any; reference_camera: the camera the set's checkpoints were
    trained with (None = not stated).
    """

    name: str
    class_names: list[str]
    points: list[np.ndarray]
    extents: np.ndarray
    symmetric: np.ndarray
    symmetric_training: np.ndarray | None = None
    mesh_paths: list[Path | None] = field(default_factory=list)
    reference_camera: ReferenceCamera | None = None
    symmetry_groups: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.class_names = list(self.class_names)
        C = len(self.class_names)
        if C == 0 or self.class_names[0] != BACKGROUND:
            raise ValueError(f"class_names must start with {BACKGROUND!r}, got {self.class_names[:1]}")
        if len(set(self.class_names)) != C:
            raise ValueError("class_names must be unique")
        if len(self.points) != C:
            raise ValueError(f"points must hold one array per class ({C}), got {len(self.points)}")
        pts = []
        for c, p in enumerate(self.points):
            p = np.asarray(p, dtype=np.float32)
            if p.ndim != 2 or p.shape[1] != 3:
                raise ValueError(f"points[{c}] ({self.class_names[c]}) must have shape [N, 3], got {p.shape}")
            pts.append(p)
        self.points = pts
        self.extents = np.asarray(self.extents, dtype=np.float32)
        if self.extents.shape != (C, 3):
            raise ValueError(f"extents must have shape {(C, 3)}, got {self.extents.shape}")
        self.symmetric = self._flags(self.symmetric, "symmetric")
        self.symmetric_training = (self.symmetric.copy() if self.symmetric_training is None
                                   else self._flags(self.symmetric_training, "symmetric_training"))
        if not self.symmetry_groups:
            self.symmetry_groups = [np.eye(3)[None] for _ in range(C)]
        if len(self.symmetry_groups) != C:
            raise ValueError(f"symmetry_groups must hold one group per class ({C}), got {len(self.symmetry_groups)}")
        groups = []
        for c, g in enumerate(self.symmetry_groups):
            g = np.asarray(g, dtype=np.float64)
            if g.ndim != 3 or g.shape[1:] != (3, 3) or len(g) == 0 or not np.allclose(g[0], np.eye(3)):
                raise ValueError(f"symmetry_groups[{c}] ({self.class_names[c]}) must be [K, 3, 3] rotations with "
                                 f"the identity first, got shape {g.shape}")
            if len(g) > 1 and not self.symmetric[c]:
                raise ValueError(f"class {self.class_names[c]!r} has a symmetry group of {len(g)} rotations but is "
                                 "not marked symmetric")
            groups.append(g)
        self.symmetry_groups = groups
        if not self.mesh_paths:
            self.mesh_paths = [None] * C
        if len(self.mesh_paths) != C:
            raise ValueError(f"mesh_paths must hold one entry per class ({C}), got {len(self.mesh_paths)}")
        self.mesh_paths = [None if m is None else Path(m) for m in self.mesh_paths]
        if self.reference_camera is not None and not isinstance(self.reference_camera, ReferenceCamera):
            raise TypeError(f"reference_camera must be a ReferenceCamera or None, got "
                            f"{type(self.reference_camera).__name__}")

    def _flags(self, value: Any, name: str) -> np.ndarray:
        flags = np.asarray(value)
        if flags.shape != (len(self.class_names),):
            raise ValueError(f"{name} must have shape {(len(self.class_names),)}, got {flags.shape}")
        return flags.astype(bool)

    @property
    def num_classes(self) -> int:
        """Number of classes including the background."""
        return len(self.class_names)

    @property
    def finite_symmetry(self) -> np.ndarray:
        """bool `[C]`: classes whose correct rotations are finitely many (not symmetric, or symmetric with a
        declared symmetry group); the others (e.g. a shape turning about an axis) have no rotation to score."""
        return np.array([c > 0 and (not s or len(g) > 1)
                         for c, (s, g) in enumerate(zip(self.symmetric, self.symmetry_groups))], dtype=bool)

    def index(self, name: str) -> int:
        """Class index of `name` (0 for the background)."""
        try:
            return self.class_names.index(name)
        except ValueError:
            raise ValueError(f"object set {self.name!r} has no class {name!r}") from None

    def points_tensor(self, device: torch.device | str | None = None,
                      max_points: int = 2600) -> tuple[torch.Tensor, torch.Tensor]:
        """Model points padded to float32 `[C, M, 3]` plus int64 counts `[C]`, for the pose losses.

        Classes with more than `max_points` points get a fixed-seed random subset of `max_points`
        (kept in file order), so the result is the same on every call; padding rows are zeros.
        """
        if not isinstance(max_points, int) or max_points < 1:
            raise ValueError(f"max_points must be a positive int, got {max_points!r}")
        chosen = [subsample_points(p, max_points) for p in self.points]
        counts = [len(p) for p in chosen]
        M = max(counts)
        out = np.zeros((self.num_classes, M, 3), dtype=np.float32)
        for c, p in enumerate(chosen):
            out[c, : len(p)] = p
        return (torch.from_numpy(out).to(device),
                torch.tensor(counts, dtype=torch.int64, device=device))


def subsample_points(points: np.ndarray, max_points: int) -> np.ndarray:
    """At most `max_points` rows of `points`, chosen with a fixed seed and kept in their original order."""
    if len(points) <= max_points:
        return points
    idx = np.random.default_rng(_SAMPLE_SEED).choice(len(points), size=max_points, replace=False)
    return points[np.sort(idx)]


# --------------------------------------------------------------------------------------------------
# the YAML spec (no model files touched)
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ObjectClassSpec:
    """One class of an object-set YAML file, paths resolved, extents in metres (None = from points)."""

    name: str
    symmetric: bool
    symmetric_training: bool
    points_path: Path | None
    points_explicit: bool
    mesh_path: Path | None
    mesh_explicit: bool
    extents: tuple[float, float, float] | None
    symmetry: tuple[tuple[float, float, float], int] | None = None  # (axis, order) of a cyclic symmetry

    def symmetry_group(self) -> np.ndarray:
        """The class's symmetry rotations [K, 3, 3], identity first (the identity alone when none is declared)."""
        return np.eye(3)[None] if self.symmetry is None else cyclic_group(*self.symmetry)


@dataclass(frozen=True)
class ObjectSetSpec:
    """An object-set YAML file read without loading any model file."""

    name: str
    source: Path
    models_root: Path
    units: str
    classes: tuple[ObjectClassSpec, ...]
    reference_camera: ReferenceCamera | None = None

    @property
    def class_names(self) -> list[str]:
        return [BACKGROUND] + [c.name for c in self.classes]

    @property
    def num_classes(self) -> int:
        return 1 + len(self.classes)

    @property
    def symmetric(self) -> np.ndarray:
        return np.array([False] + [c.symmetric for c in self.classes], dtype=bool)

    @property
    def symmetric_training(self) -> np.ndarray:
        return np.array([False] + [c.symmetric_training for c in self.classes], dtype=bool)


def _fail(source: Path, field_name: str, msg: str) -> ObjectSetError:
    return ObjectSetError(f"{source}: field '{field_name}' {msg}")


def _pattern(value: Any, source: Path, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, field_name, f"must be a non-empty string (a path pattern), got {value!r}")
    rest = value.replace("{name}", "")
    if "{" in rest or "}" in rest:
        raise _fail(source, field_name, f"may only use the placeholder {{name}}, got {value!r}")
    return value


def _resolve(pattern: str, name: str, root: Path) -> Path:
    p = Path(pattern.replace("{name}", name)).expanduser()
    return p if p.is_absolute() else root / p


def _symmetry(value: Any, source: Path, field_name: str) -> tuple[tuple[float, float, float], int] | None:
    """``{axis: [x, y, z], order: n}`` (n >= 2) -> (axis, n); None when absent."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"axis", "order"}:
        raise _fail(source, field_name, f"must be a mapping with 'axis' ([x, y, z]) and 'order' (an integer "
                    f">= 2), got {value!r}")
    axis, order = value["axis"], value["order"]
    ok_axis = (isinstance(axis, list) and len(axis) == 3
               and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in axis)
               and any(v != 0 for v in axis))
    if not ok_axis:
        raise _fail(source, f"{field_name}.axis", f"must be a list of 3 numbers, not all zero, got {axis!r}")
    if isinstance(order, bool) or not isinstance(order, int) or order < 2:
        raise _fail(source, f"{field_name}.order", f"must be an integer >= 2, got {order!r}")
    return (float(axis[0]), float(axis[1]), float(axis[2])), order


def _bool(value: Any, source: Path, field_name: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(source, field_name, f"must be true or false, got {value!r}")
    return value


def read_object_set_spec(yaml_path: str | Path, models_root: str | Path | None = None) -> ObjectSetSpec:
    """Parse and validate an object-set YAML file without reading model files.

    Gives class names and symmetry flags even where the models are not installed. `models_root`
    overrides the file's `models_root` (a relative file value is relative to the YAML file's folder).
    Raises ObjectSetError (a ValueError) naming the offending field.
    """
    source = Path(yaml_path)
    try:
        text = source.read_text()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read object-set file {source}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ObjectSetError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ObjectSetError(f"{source}: the top level must be a mapping holding the field 'classes', "
                             f"got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - _TOP_KEYS)
    if unknown:
        raise _fail(source, unknown[0], f"is not a known field (known: {', '.join(sorted(_TOP_KEYS))})")

    name = data.get("name", source.stem)
    if not isinstance(name, str) or not name:
        raise _fail(source, "name", f"must be a non-empty string, got {name!r}")
    units = data.get("units", "m")
    if units not in UNITS:
        raise _fail(source, "units", f"must be one of {sorted(UNITS)}, got {units!r}")
    scale = UNITS[units]

    if models_root is not None:
        root = Path(models_root).expanduser()
    elif "models_root" in data:
        value = data["models_root"]
        if not isinstance(value, str) or not value:
            raise _fail(source, "models_root", f"must be a non-empty string, got {value!r}")
        root = Path(value).expanduser()
        root = root if root.is_absolute() else Path(os.path.normpath(source.parent / root))
    else:
        root = source.parent

    reference_camera = None
    if data.get("reference_camera") is not None:
        try:
            reference_camera = ReferenceCamera.from_dict(data["reference_camera"])
        except ValueError as exc:
            raise _fail(source, "reference_camera", f"is invalid: {exc}") from None

    default_points = _pattern(data["points"], source, "points") if data.get("points") is not None else None
    default_mesh = _pattern(data["mesh"], source, "mesh") if data.get("mesh") is not None else None

    entries = data.get("classes")
    if not isinstance(entries, list) or not entries:
        raise _fail(source, "classes", "must be a non-empty list of classes")
    classes: list[ObjectClassSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"classes[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            raise _fail(source, where, f"must be a mapping with a 'name' (or just the name), got {entry!r}")
        unknown = sorted(set(map(str, entry)) - _CLASS_KEYS)
        if unknown:
            raise _fail(source, f"{where}.{unknown[0]}",
                        f"is not a known field (known: {', '.join(sorted(_CLASS_KEYS))})")
        cname = entry.get("name")
        if not isinstance(cname, str) or not cname.strip():
            raise _fail(source, f"{where}.name", f"must be a non-empty string, got {cname!r}")
        if cname == BACKGROUND:
            raise _fail(source, f"{where}.name", f"must not be {BACKGROUND!r} (the background is added automatically)")
        if cname in seen:
            raise _fail(source, f"{where}.name", f"repeats the class {cname!r}")
        seen.add(cname)
        symmetric = _bool(entry.get("symmetric", False), source, f"{where}.symmetric")
        sym_train = _bool(entry.get("symmetric_training", symmetric), source, f"{where}.symmetric_training")

        symmetry = _symmetry(entry.get("symmetry"), source, f"{where}.symmetry")
        if symmetry is not None and not symmetric:
            raise _fail(source, f"{where}.symmetry", f"declares a symmetry of class {cname!r}, which needs "
                        "'symmetric: true' (its pose is then evaluated with ADD-S)")

        points_pat = entry.get("points")
        mesh_pat = entry.get("mesh")
        points_explicit, mesh_explicit = points_pat is not None, mesh_pat is not None
        points_pat = _pattern(points_pat, source, f"{where}.points") if points_explicit else default_points
        mesh_pat = _pattern(mesh_pat, source, f"{where}.mesh") if mesh_explicit else default_mesh
        if points_pat is None and mesh_pat is None:
            raise _fail(source, f"{where}.points",
                        f"is needed for class {cname!r}: set 'points' or 'mesh' (per class or as a default)")

        extents = entry.get("extents")
        if extents is not None:
            ok = (isinstance(extents, list) and len(extents) == 3
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in extents))
            if not ok:
                raise _fail(source, f"{where}.extents", f"must be a list of 3 positive numbers, got {extents!r}")
            extents = tuple(float(v) * scale for v in extents)

        classes.append(ObjectClassSpec(
            name=cname, symmetric=symmetric, symmetric_training=sym_train,
            points_path=None if points_pat is None else _resolve(points_pat, cname, root),
            points_explicit=points_explicit,
            mesh_path=None if mesh_pat is None else _resolve(mesh_pat, cname, root),
            mesh_explicit=mesh_explicit, extents=extents, symmetry=symmetry))
    return ObjectSetSpec(name=name, source=source, models_root=root, units=units, classes=tuple(classes),
                         reference_camera=reference_camera)


# --------------------------------------------------------------------------------------------------
# model files
# --------------------------------------------------------------------------------------------------

def _sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int) -> np.ndarray:
    """`count` area-weighted random surface points (fixed seed)."""
    tri = vertices[faces]  # [F, 3, 3]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if count <= 0 or area.sum() <= 0:
        return np.zeros((0, 3))
    rng = np.random.default_rng(_SAMPLE_SEED)
    f = rng.choice(len(faces), size=count, p=area / area.sum())
    r1, r2 = rng.random(count), rng.random(count)
    flip = r1 + r2 > 1
    r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
    t = tri[f]
    return t[:, 0] + r1[:, None] * (t[:, 1] - t[:, 0]) + r2[:, None] * (t[:, 2] - t[:, 0])


def read_model_points(path: str | Path, max_points: int = 2600) -> np.ndarray:
    """Model points `[N, 3]` (float64, file units) from a point file or a mesh.

    .xyz/.txt/.pts: whitespace-separated rows whose first three columns are x y z; all rows are kept.
    Any other file is read with trimesh: its (unique) vertices, subsampled with a fixed seed to
    `max_points` when there are more, or topped up to `max_points` with fixed-seed surface samples
    when there are fewer. Raises FileNotFoundError / ObjectSetError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix.lower() in _POINT_FILE_SUFFIXES:
        try:
            pts = np.loadtxt(path, ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise ObjectSetError(f"cannot parse point file {path}: {exc}") from exc
        if pts.shape[0] == 0 or pts.shape[1] < 3:
            raise ObjectSetError(f"point file {path} must hold rows of at least 3 numbers (x y z), got {pts.shape}")
        pts = pts[:, :3]
    else:
        import trimesh  # only needed for meshes

        try:
            geom = trimesh.load(str(path), process=False)
        except Exception as exc:  # trimesh raises many types for unreadable files
            raise ObjectSetError(f"cannot read mesh file {path}: {exc}") from exc
        if isinstance(geom, trimesh.Scene):
            if not geom.geometry:
                raise ObjectSetError(f"mesh file {path} holds no geometry")
            geom = geom.to_geometry()
        vertices = np.asarray(getattr(geom, "vertices", np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
        faces = getattr(geom, "faces", None)
        if len(vertices) == 0:
            raise ObjectSetError(f"mesh file {path} has no vertices")
        vertices = np.unique(vertices, axis=0)
        if len(vertices) >= max_points:
            pts = subsample_points(vertices, max_points)
        elif faces is not None and len(faces):
            extra = _sample_surface(np.asarray(geom.vertices, dtype=np.float64),
                                    np.asarray(faces, dtype=np.int64), max_points - len(vertices))
            pts = np.concatenate([vertices, extra])
        else:
            pts = vertices
    if not np.all(np.isfinite(pts)):
        raise ObjectSetError(f"model file {path} contains non-finite coordinates")
    return pts


def load_object_set(yaml_path: str | Path, models_root: str | Path | None = None,
                    max_points: int = 2600) -> ObjectSet:
    """Read an object-set YAML file and its model files into an ObjectSet (points in metres).

    Per class, points come from its points file if that exists, else from its mesh (see
    `read_model_points`; `max_points` applies to mesh-derived points only). An explicitly listed
    per-class file that is missing, or a class with neither file, raises FileNotFoundError naming the
    class and the path(s); a malformed YAML raises ObjectSetError naming the field.
    """
    if not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a positive int, got {max_points!r}")
    spec = read_object_set_spec(yaml_path, models_root)
    scale = UNITS[spec.units]
    points = [np.zeros((0, 3), dtype=np.float32)]
    extents = [np.zeros(3, dtype=np.float32)]
    meshes: list[Path | None] = [None]
    for cls in spec.classes:
        where = f"object set {spec.name!r} ({spec.source}), class {cls.name!r}"
        for path, explicit, kind in ((cls.points_path, cls.points_explicit, "points"),
                                     (cls.mesh_path, cls.mesh_explicit, "mesh")):
            if path is not None and explicit and not path.is_file():
                raise FileNotFoundError(f"{where}: {kind} file not found: {path}")
        mesh = cls.mesh_path if cls.mesh_path is not None and cls.mesh_path.is_file() else None
        if cls.points_path is not None and cls.points_path.is_file():
            source = cls.points_path
        elif mesh is not None:
            source = mesh
        else:
            tried = " or ".join(str(p) for p in (cls.points_path, cls.mesh_path) if p is not None)
            raise FileNotFoundError(f"{where}: no model file found at {tried} "
                                    f"(models_root = {spec.models_root}; pass models_root to override)")
        try:
            pts = read_model_points(source, max_points) * scale
        except (ObjectSetError, OSError) as exc:
            raise ObjectSetError(f"{where}: {exc}") from exc
        pts = pts.astype(np.float32)
        points.append(pts)
        extents.append(np.asarray(cls.extents if cls.extents is not None else 2 * np.abs(pts).max(axis=0),
                                  dtype=np.float32))
        meshes.append(mesh)
    return ObjectSet(name=spec.name, class_names=spec.class_names, points=points, extents=np.stack(extents),
                     symmetric=spec.symmetric, symmetric_training=spec.symmetric_training, mesh_paths=meshes,
                     reference_camera=spec.reference_camera,
                     symmetry_groups=[np.eye(3)[None]] + [c.symmetry_group() for c in spec.classes])


# --------------------------------------------------------------------------------------------------
# the bundled object sets
# --------------------------------------------------------------------------------------------------

def bundled_object_sets() -> list[ObjectSetSpec]:
    """Specs of the object sets shipped in `config/objects/` (sorted by file name), no model file read.

    The folder is taken from the first of `posecnn_core.resources.search_roots()` that has it (the source
    checkout, then the ament share directory, then `sys.prefix/share`). A malformed bundled file raises
    ObjectSetError naming it.
    """
    for root in search_roots():
        folder = root / BUNDLED_DIR
        if folder.is_dir():
            return [read_object_set_spec(p) for p in sorted(folder.glob("*.yaml"))]
    return []


def matching_object_sets(num_classes: int, class_names: Sequence[str] | None = None,
                         candidates: Sequence[ObjectSetSpec] | None = None) -> list[ObjectSetSpec]:
    """The object sets a checkpoint fits: `num_classes` (including the background) equal and, when the
    checkpoint records `class_names`, the same names in the same order. `candidates` defaults to
    `bundled_object_sets()`."""
    specs = bundled_object_sets() if candidates is None else candidates
    names = None if class_names is None else list(class_names)
    return [s for s in specs
            if s.num_classes == num_classes and (names is None or s.class_names == names)]


def matching_object_sets_hint(num_classes: int, class_names: Sequence[str] | None = None) -> str:
    """One sentence for error messages naming the bundled object set(s) a checkpoint fits, e.g.
    "bundled object set(s) for 21 classes: ycb_object (config/objects/ycb_object.yaml)"."""
    what = f"these {num_classes} classes" if class_names is not None else f"{num_classes} classes"
    try:
        found = matching_object_sets(num_classes, class_names)
    except (ObjectSetError, OSError) as exc:
        return f"(the bundled object sets could not be listed: {exc})"
    if not found:
        return (f"no bundled object set has {what}; write one for the checkpoint's classes, in its class order "
                "(docs/object_sets.md)")
    return f"bundled object set(s) for {what}: " + ", ".join(f"{s.name} ({s.source})" for s in found)


__all__ = ["BACKGROUND", "UNITS", "BUNDLED_DIR", "ObjectSet", "ObjectSetError", "ObjectClassSpec", "ObjectSetSpec",
           "read_object_set_spec", "read_model_points", "load_object_set", "subsample_points",
           "bundled_object_sets", "matching_object_sets", "matching_object_sets_hint"]
