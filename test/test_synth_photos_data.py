"""Tests for photo backgrounds and the tools that build the photo collections (no rendering)."""
import importlib.util
import io
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from posecnn_core.synth import frame_rng
from posecnn_core.synth.backgrounds import sample_background
from posecnn_core.synth.photos import PhotoCollection, find_photos

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))


def _write(path: Path, bgr: tuple[int, int, int], size=(40, 60)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((*size, 3), np.uint8)
    img[:] = bgr
    img[:, : size[1] // 2] //= 2  # some structure
    assert cv2.imwrite(str(path), img)


def test_find_and_load_photos(tmp_path):
    _write(tmp_path / "flat.png", (0, 0, 255))
    _write(tmp_path / "scenes" / "a.jpg", (0, 255, 0))
    _write(tmp_path / "surfaces" / "b.png", (255, 0, 0))
    (tmp_path / "notes.txt").write_text("not an image")
    scenes, surfaces = find_photos(tmp_path)
    assert [p.name for p in scenes] == ["flat.png", "a.jpg"] and [p.name for p in surfaces] == ["b.png"]
    photos = PhotoCollection.load(tmp_path)
    assert len(photos) == 3 and photos.scenes[0][0, -1].tolist() == [255, 0, 0]  # RGB
    with pytest.raises(FileNotFoundError, match="no background photos"):
        PhotoCollection.load(tmp_path / "scenes" / "missing")
    (tmp_path / "surfaces" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png"):
        PhotoCollection.load(tmp_path)


def test_photo_samples_come_from_the_photos_and_are_deterministic(tmp_path):
    _write(tmp_path / "scenes" / "green.png", (30, 220, 30), size=(100, 300))  # a panorama-shaped photo
    _write(tmp_path / "surfaces" / "blue.png", (220, 30, 30))
    photos = PhotoCollection.load(tmp_path)
    kinds = set()
    for i in range(40):
        img = photos.sample(frame_rng(0, i), 24, 32)
        assert img.shape == (24, 32, 3) and img.dtype == np.uint8
        np.testing.assert_array_equal(img, photos.sample(frame_rng(0, i), 24, 32))
        mean = img.reshape(-1, 3).mean(0)
        kinds.add("green" if mean[1] > mean[2] + 20 else "blue" if mean[2] > mean[1] + 20 else "mixed")
        top, bottom = img[:3].reshape(-1, 3).mean(0), img[-3:].reshape(-1, 3).mean(0)
        if top[1] > top[2] + 20 and bottom[2] > bottom[1] + 20:
            kinds.add("tabletop")  # scene above, surface below
    assert {"green", "blue", "tabletop"} <= kinds
    tex = photos.texture(frame_rng(0, 0), 16)
    assert tex.shape == (16, 16, 3)
    img = sample_background(frame_rng(1, 0), 24, 32, ("photo",), None, photos)
    np.testing.assert_array_equal(img, sample_background(frame_rng(1, 0), 24, 32, ("photo",), None, photos))
    with pytest.raises(ValueError, match="photo collection"):
        sample_background(frame_rng(1, 0), 24, 32, ("photo",))


def _fake_deb(path: Path, files: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    out = bytearray(b"!<arch>\n")
    for name, body in (("debian-binary", b"2.0\n"), ("control.tar.xz", b"x"), ("data.tar.xz", buf.getvalue())):
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode() + body
        if len(body) % 2:
            out += b"\n"
    path.write_bytes(bytes(out))


def test_deb_members_and_tone_map(tmp_path):
    from fetch_backgrounds import deb_members, tone_map

    deb = tmp_path / "pkg.deb"
    _fake_deb(deb, {"usr/share/x/a.exr": b"AAA", "usr/share/x/license.txt": b"CC0", "usr/share/y/b": b"B"})
    assert deb_members(deb, "usr/share/x/") == {"a.exr": b"AAA", "license.txt": b"CC0"}
    (tmp_path / "bad.deb").write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="not a Debian package"):
        deb_members(tmp_path / "bad.deb", "usr/")
    hdr = np.exp(np.linspace(-6, 4, 200 * 3)).reshape(10, 20, 3).astype(np.float32)
    ldr = tone_map(hdr)
    assert ldr.dtype == np.uint8 and ldr.min() < 20 and ldr.max() == 255
    flat = ldr.reshape(-1)
    assert np.all(np.diff(flat.astype(int)) >= 0)  # monotone in the input


def test_fetch_wallpapers_extracts_pinned_photographs(tmp_path, monkeypatch):
    import hashlib

    import fetch_wallpapers as fw

    big = np.zeros((1200, 2400, 3), np.uint8)
    big[:, :1200] = (10, 200, 30)
    ok, jpg = cv2.imencode(".jpg", big)
    assert ok
    deb = tmp_path / "debs" / "walls_1.0_all.deb"
    deb.parent.mkdir()
    _fake_deb(deb, {"usr/share/walls/Hill/contents/images/2560x1600.jpg": jpg.tobytes(),
                    "usr/share/walls/flower.jpg": jpg.tobytes(),
                    "usr/share/doc/walls-extra/copyright": b"License: CC0-1.0"})
    sha = hashlib.sha256(deb.read_bytes()).hexdigest()
    pkg = fw.Package("walls-extra", "1.0", deb.name, sha, "usr/share/walls/",
                     ("Hill/contents/images/2560x1600.jpg", "flower.jpg"), "CC0-1.0")
    monkeypatch.setattr(fw, "PACKAGES", (pkg,))
    written = fw.extract(deb.parent, tmp_path / "out")
    assert written == ["walls_Hill.png", "walls_flower.png"]
    img = cv2.imread(str(tmp_path / "out" / "walls_Hill.png"))
    assert img.shape == (512, 1024, 3)  # downscaled to 1024 px on the long side
    assert abs(int(img[256, 100, 1]) - 200) < 8 and int(img[256, 900, 1]) < 8  # left half green, BGR kept
    assert "walls-extra` 1.0" in (tmp_path / "out" / "LICENSES.md").read_text()
    assert (tmp_path / "out" / "copyright.walls-extra").read_text() == "License: CC0-1.0"
    assert len((tmp_path / "out" / "SHA256SUMS").read_text().splitlines()) == 2
    bad = fw.Package("walls-extra", "1.0", deb.name, "0" * 64, "usr/share/walls/", ("flower.jpg",), "CC0-1.0")
    monkeypatch.setattr(fw, "PACKAGES", (bad,))
    with pytest.raises(ValueError, match="does not match the pinned"):
        fw.extract(deb.parent, tmp_path / "out2")
    missing = fw.Package("walls-extra", "1.0", deb.name, sha, "usr/share/walls/", ("tree.jpg",), "CC0-1.0")
    monkeypatch.setattr(fw, "PACKAGES", (missing,))
    with pytest.raises(ValueError, match="no usr/share/walls/tree.jpg"):
        fw.extract(deb.parent, tmp_path / "out3")


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="scikit-image not installed")
def test_collect_eval_backgrounds(tmp_path):
    from collect_eval_backgrounds import MATPLOTLIB_IMAGES, SKIMAGE_IMAGES, collect

    written = collect(tmp_path)
    assert len(written) == len(SKIMAGE_IMAGES) + len(MATPLOTLIB_IMAGES)
    scenes, surfaces = find_photos(tmp_path)
    assert len(scenes) == len(written) and surfaces == []
    for path in written:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 128
