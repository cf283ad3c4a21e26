#!/usr/bin/env python3
"""Build a second, more varied set of background photographs from Debian's desktop-wallpaper packages.

The training frames of the demo model carry the 61 photographs of ``tools/fetch_backgrounds.py`` (material
surfaces and eight panoramas). Its false positives on the held-out split lie on photographs of other kinds, so
this set adds 37 photographs of other subjects (landscapes, plants and flowers, water, an interior, tools, food,
architecture) for the frame augmentation's background replacement (``augment.background_dir``). Drawings and
abstract renders in the same packages are left out.

Writes (git-ignored) ``data/backgrounds/wallpapers/``:

    <package>_<name>.png   downscaled to at most 1024 px
    LICENSES.md            each file's package, path, author and licence (GPL-2+, CC-BY(-SA) 3.0/4.0, CC0)
    copyright.<package>    the packages' Debian copyright files
    SHA256SUMS

Each package is pinned by version and sha256 (``apt-get download``, Debian 12 "bookworm"); already downloaded
packages can be given with ``--debs DIR``.

Usage: python tools/fetch_wallpapers.py [--out data/backgrounds/wallpapers] [--debs DIR]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_backgrounds import _check, _write_png, deb_members, sha256_of  # noqa: E402


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    deb: str
    sha256: str
    prefix: str                 # folder inside the package the files are taken from
    files: tuple[str, ...]      # paths under prefix
    licence: str                # per the package's copyright file


PACKAGES = (
    Package("plasma-workspace-wallpapers", "4:5.27.5-2", "plasma-workspace-wallpapers_4%3a5.27.5-2_all.deb",
            "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b", "usr/share/wallpapers/",
            tuple(f"{n}/contents/images/2560x1600.jpg" for n in (
                "BytheWater", "ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
                "OneStandsOut", "Path", "summer_1am")) + ("Volna/contents/images/5120x2880.jpg",),
            "GPL-2+ (KDE Visual Design Group)"),
    Package("lomiri-wallpapers-16.04", "20.04.0-2", "lomiri-wallpapers-16.04_20.04.0-2_all.deb",
            "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab", "usr/share/backgrounds/",
            ("Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
             "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
             "analogpattern_by_Peter_Nerlich.jpg", "free_by_Peter_Nerlich.jpg",
             "friends_by_Aitzol_Berasategi.jpg", "life_by_Aitzol_Berasategi.jpg",
             "picosdeeuropa_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
             "sunset_by_Aitzol_Berasategi.jpg"),
            "CC-BY-4.0, CC-BY-SA-4.0 or CC0-1.0 per file, authors in the file names (copyright.lomiri-wallpapers-16.04)"),
    Package("lomiri-wallpapers-20.04", "20.04.0-2", "lomiri-wallpapers-20.04_20.04.0-2_all.deb",
            "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709", "usr/share/backgrounds/",
            ("Kleiber_by_Lukas_Baubkus.jpg",), "CC-BY-SA-3.0 (Lukas Baubkus, 2021)"),
    Package("mate-backgrounds", "1.26.0-1", "mate-backgrounds_1.26.0-1_all.deb",
            "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04", "usr/share/backgrounds/mate/nature/",
            ("Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg", "GreenMeadow.jpg",
             "LadyBird.jpg", "RainDrops.jpg", "Storm.jpg", "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg"),
            "GPL-2+, authors per file in copyright.mate-backgrounds"),
)


def output_name(pkg: Package, path: str) -> str:
    """``plasma-workspace-wallpapers`` + ``Kite/contents/images/1920x1080.jpg`` -> ``plasma_Kite.png``."""
    tag = pkg.name.split("-")[0]
    stem = path.split("/", 1)[0] if "/" in path else path.rsplit(".", 1)[0]
    return f"{tag}_{stem}.png"


def extract(debs: Path, out: Path) -> list[str]:
    """Decode, downscale and write every selected photograph of the packages in ``debs``."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for pkg in PACKAGES:
        deb = debs / pkg.deb
        _check(deb, pkg.sha256)
        members = deb_members(deb, pkg.prefix)
        for path in pkg.files:
            if path not in members:
                raise ValueError(f"{pkg.deb}: no {pkg.prefix}{path}")
            img = cv2.imdecode(np.frombuffer(members[path], np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{pkg.deb}: cannot decode {pkg.prefix}{path}")
            rel = output_name(pkg, path)
            if rel in written:
                raise ValueError(f"two photographs would be written to {rel}")
            _write_png(img[..., ::-1], out / rel)
            written.append(rel)
        doc = deb_members(deb, f"usr/share/doc/{pkg.name}/")
        (out / f"copyright.{pkg.name}").write_bytes(doc["copyright"])
    lines = ["# Background photographs from Debian wallpaper packages (built by tools/fetch_wallpapers.py)", ""]
    for pkg in PACKAGES:
        lines.append(f"- `{pkg.name}` {pkg.version} (`{pkg.deb}`, sha256 {pkg.sha256}), `{pkg.prefix}`: "
                     f"{', '.join(output_name(pkg, p) for p in pkg.files)}. Licence: {pkg.licence}.")
    lines += ["", "Downscaled to at most 1024 px. The packages' copyright files are copied alongside.", ""]
    (out / "LICENSES.md").write_text("\n".join(lines))
    sums = [f"{sha256_of(out / rel)}  {rel}" for rel in sorted(written)]
    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return written


def _apt_download(dest: Path) -> None:
    specs = [f"{p.name}={p.version}" for p in PACKAGES]
    try:
        subprocess.run(["apt-get", "download", *specs], cwd=dest, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"could not download {', '.join(specs)} with apt-get ({exc}); download them from a "
                           f"Debian mirror and pass --debs") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "data/backgrounds/wallpapers")
    parser.add_argument("--debs", type=Path, help="a folder holding the already downloaded packages")
    args = parser.parse_args(argv)
    if args.debs is not None:
        written = extract(args.debs, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            _apt_download(Path(tmp))
            written = extract(Path(tmp), args.out)
    print(f"wrote {len(written)} photographs to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
