#!/usr/bin/env python3
"""Build the background photo collection of the synthetic generator from pinned packages.

Writes (git-ignored) ``data/backgrounds/photos/``:

    scenes/blender_<name>.png     8 real-world panoramas (city, courtyard, forest, interior, night,
                                  studio, sunrise, sunset), 1024 x 512, tone-mapped from the HDR
                                  originals; CC0 (Greg Zaal, HDRI Haven / Poly Haven), shipped by
                                  Debian's blender-data package
    surfaces/robosuite_<name>.png photographs of materials (wood, plaster, felt, tiles, metal, ...)
    surfaces/metaworld_<name>.png from the robosuite and Meta-World wheels (MIT), <= 1024 px
    LICENSES.md, LICENSE.* files  where each file came from and its licence

Each package is pinned by version and sha256 (``pip download --no-deps`` / ``apt-get download``);
already downloaded files can be given with ``--blender-deb``, ``--robosuite-wheel``,
``--metaworld-wheel``. Decoding the OpenEXR panoramas needs the ``OpenEXR`` package
(tools/requirements-render.txt). The textures the demo objects wear (bread, can, cereal, lemon,
soda, glass) are left out so that backgrounds never show an object's print.

Usage: python tools/fetch_backgrounds.py [--out data/backgrounds/photos]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_demo_assets import ROBOSUITE_VERSION, sha256_of  # noqa: E402
from fetch_demo_assets import WHEEL_NAME as ROBOSUITE_WHEEL  # noqa: E402
from fetch_demo_assets import WHEEL_SHA256 as ROBOSUITE_SHA256  # noqa: E402

BLENDER_DATA_VERSION = "3.4.1+dfsg-2"  # Debian 12 (bookworm)
BLENDER_DEB = "blender-data_3.4.1+dfsg-2_all.deb"
BLENDER_SHA256 = "5ceaf56a49ba3ded95c751d739aeec3d19e7fad76fba5cb70666986af9303b0e"
BLENDER_WORLD_DIR = "usr/share/blender/datafiles/studiolights/world/"
BLENDER_WORLDS = ("city", "courtyard", "forest", "interior", "night", "studio", "sunrise", "sunset")

METAWORLD_VERSION = "3.1.1"
METAWORLD_WHEEL = f"metaworld-{METAWORLD_VERSION}-py3-none-any.whl"
METAWORLD_SHA256 = "99e25d9baf97f2f1a19ca89c0d2ca9c6a2b396d9a9be81729de64eedc683f0d3"
METAWORLD_LICENSE = f"metaworld-{METAWORLD_VERSION}.dist-info/licenses/LICENSE"
ROBOSUITE_LICENSE = f"robosuite-{ROBOSUITE_VERSION}.dist-info/licenses/LICENSE"

ROBOSUITE_TEXTURES = "robosuite/models/assets/textures/"
# the demo objects' own prints and non-photographs are not backgrounds
ROBOSUITE_EXCLUDE = {"bread.png", "can.png", "cereal.png", "lemon.png", "soda.png", "glass.png"}
METAWORLD_TEXTURES = ("metaworld/assets/textures/", "metaworld/assets/scene/textures/")
METAWORLD_EXCLUDE = {"height1.png", "tennis.png", "navy_blue.png", "light_wood_v3.jpeg"}
MAX_SIDE = 1024


def _check(path: Path, expected: str) -> None:
    digest = sha256_of(path)
    if digest != expected:
        raise ValueError(f"{path}: sha256 {digest} does not match the pinned {expected}")


def _pip_download(requirement: str, dest: Path, name: str) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    requirement, "-d", str(dest)], check=True)
    return dest / name


def _apt_download(dest: Path) -> Path:
    try:
        subprocess.run(["apt-get", "download", f"blender-data={BLENDER_DATA_VERSION}"], cwd=dest, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"could not download blender-data {BLENDER_DATA_VERSION} with apt-get ({exc}); "
                           f"download {BLENDER_DEB} from a Debian mirror and pass --blender-deb") from exc
    return dest / BLENDER_DEB


def deb_members(deb: Path, prefix: str) -> dict[str, bytes]:
    """Files under ``prefix`` in a .deb's data.tar.xz (the ar archive is read here; no dpkg needed)."""
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb}: not a Debian package (ar archive)")
    pos, out = 8, {}
    while pos + 60 <= len(data):
        name = data[pos:pos + 16].decode().strip().rstrip("/")
        size = int(data[pos + 48:pos + 58].decode().strip())
        body = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            if name != "data.tar.xz":
                raise ValueError(f"{deb}: {name} is not supported (expected data.tar.xz)")
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:xz") as tf:
                for m in tf.getmembers():
                    path = m.name.removeprefix("./")
                    if m.isfile() and path.startswith(prefix):
                        out[path[len(prefix):]] = tf.extractfile(m).read()
            return out
    raise ValueError(f"{deb}: no data.tar member")


def tone_map(rgb: np.ndarray) -> np.ndarray:
    """HDR linear RGB -> 8-bit sRGB-like: exposure at the log-average luminance (key 0.18), extended
    Reinhard with white at the 99.5th percentile, gamma 2.2."""
    x = np.nan_to_num(np.maximum(rgb.astype(np.float64), 0.0))
    lum = x @ np.array([0.2126, 0.7152, 0.0722])
    x *= 0.18 / np.exp(np.mean(np.log(lum + 1e-4)))
    white = np.percentile(x, 99.5)
    x = x * (1 + x / white ** 2) / (1 + x)
    return (np.clip(x, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)


def _write_png(rgb: np.ndarray, path: Path) -> None:
    scale = MAX_SIDE / max(rgb.shape[:2])
    if scale < 1.0:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")


def extract_blender(deb: Path, out: Path) -> list[str]:
    import OpenEXR  # only this step needs it

    _check(deb, BLENDER_SHA256)
    files = deb_members(deb, BLENDER_WORLD_DIR)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in BLENDER_WORLDS:
            exr = Path(tmp) / f"{name}.exr"
            exr.write_bytes(files[f"{name}.exr"])
            with OpenEXR.File(str(exr)) as f:
                rgb = f.channels()["RGB"].pixels
            _write_png(tone_map(rgb), out / "scenes" / f"blender_{name}.png")
            written.append(f"scenes/blender_{name}.png")
    (out / "LICENSE.blender-hdri.txt").write_text(files["license.txt"].decode())
    return written


def _extract_wheel_textures(wheel: Path, sha: str, prefixes: tuple[str, ...], exclude: set[str], tag: str,
                            out: Path, seen: set[str]) -> list[str]:
    _check(wheel, sha)
    written = []
    with zipfile.ZipFile(wheel) as zf:
        for member in sorted(zf.namelist()):
            base = member.rsplit("/", 1)[-1]
            prefix = next((p for p in prefixes if member.startswith(p)), None)
            if prefix is None or "/" in member[len(prefix):]:  # only files directly in the folders
                continue
            if not base.lower().endswith((".png", ".jpg", ".jpeg")) or base in exclude:
                continue
            data = zf.read(member)
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:  # the same image in two packages
                continue
            seen.add(digest)
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{wheel}: cannot decode {member}")
            stem = base.rsplit(".", 1)[0]
            rel, k = f"surfaces/{tag}_{stem}.png", 2
            while rel in written:  # same file name in two folders of a package
                rel, k = f"surfaces/{tag}_{stem}_{k}.png", k + 1
            _write_png(img[..., ::-1], out / rel)
            written.append(rel)
    return written


def extract(blender_deb: Path, robosuite_wheel: Path, metaworld_wheel: Path, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    written = extract_blender(blender_deb, out)
    seen: set[str] = set()
    written += _extract_wheel_textures(robosuite_wheel, ROBOSUITE_SHA256, (ROBOSUITE_TEXTURES,), ROBOSUITE_EXCLUDE,
                                       "robosuite", out, seen)
    written += _extract_wheel_textures(metaworld_wheel, METAWORLD_SHA256, METAWORLD_TEXTURES, METAWORLD_EXCLUDE,
                                       "metaworld", out, seen)
    with zipfile.ZipFile(robosuite_wheel) as zf:
        (out / "LICENSE.robosuite").write_text(zf.read(ROBOSUITE_LICENSE).decode())
    with zipfile.ZipFile(metaworld_wheel) as zf:
        (out / "LICENSE.metaworld").write_text(zf.read(METAWORLD_LICENSE).decode())
    (out / "LICENSES.md").write_text(
        "# Background photos (built by tools/fetch_backgrounds.py)\n\n"
        f"- `scenes/blender_*.png`: HDR panoramas by Greg Zaal (HDRI Haven, now Poly Haven), CC0; from Debian's\n"
        f"  `{BLENDER_DEB}` (sha256 {BLENDER_SHA256}), `{BLENDER_WORLD_DIR}`; tone-mapped to 8 bit.\n"
        f"  Licence note: LICENSE.blender-hdri.txt.\n"
        f"- `surfaces/robosuite_*.png`: textures of robosuite {ROBOSUITE_VERSION} (`{ROBOSUITE_WHEEL}`, sha256\n"
        f"  {ROBOSUITE_SHA256}), `{ROBOSUITE_TEXTURES}`; MIT, LICENSE.robosuite.\n"
        f"- `surfaces/metaworld_*.png`: textures of Meta-World {METAWORLD_VERSION} (`{METAWORLD_WHEEL}`, sha256\n"
        f"  {METAWORLD_SHA256}), `{'`, `'.join(METAWORLD_TEXTURES)}`; MIT, LICENSE.metaworld.\n\n"
        "Textures downscaled to at most 1024 px; exact duplicates across packages kept once.\n")
    lines = [f"{sha256_of(out / rel)}  {rel}" for rel in sorted(written)]
    (out / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data/backgrounds/photos")
    parser.add_argument("--blender-deb", type=Path, help=f"an already downloaded {BLENDER_DEB}")
    parser.add_argument("--robosuite-wheel", type=Path, help=f"an already downloaded {ROBOSUITE_WHEEL}")
    parser.add_argument("--metaworld-wheel", type=Path, help=f"an already downloaded {METAWORLD_WHEEL}")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        deb = args.blender_deb or _apt_download(tmp_path)
        rs = args.robosuite_wheel or _pip_download(f"robosuite=={ROBOSUITE_VERSION}", tmp_path, ROBOSUITE_WHEEL)
        mw = args.metaworld_wheel or _pip_download(f"metaworld=={METAWORLD_VERSION}", tmp_path, METAWORLD_WHEEL)
        written = extract(deb, rs, mw, args.out)
    scenes = sum(r.startswith("scenes/") for r in written)
    print(f"wrote {scenes} scene and {len(written) - scenes} surface photos to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
