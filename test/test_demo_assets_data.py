"""Checks of the committed demo object set (data/objects/demo, config/objects/demo.yaml)."""
from pathlib import Path

import cv2
import numpy as np
import yaml

from posecnn_core.synth.assets import find_texture, read_render_assets

REPO = Path(__file__).resolve().parents[1]
NAMES = ["bottle", "bread", "can", "cereal", "lemon", "milk"]


def test_yaml_lists_the_six_objects_with_symmetry_flags():
    spec = yaml.safe_load((REPO / "config/objects/demo.yaml").read_text())
    assert [c["name"] for c in spec["classes"]] == NAMES
    sym = {c["name"]: c["symmetric"] for c in spec["classes"]}
    assert sym == {"bottle": True, "bread": True, "can": False, "cereal": False, "lemon": True, "milk": True}
    assets = read_render_assets(REPO / "config/objects/demo.yaml")
    assert [(a.name, a.class_index) for a in assets] == list(zip(NAMES, range(1, 7)))


def test_models_are_centred_metric_and_textured():
    root = REPO / "data/objects/demo/models"
    for name in NAMES:
        obj = root / name / "textured.obj"
        verts = np.array([[float(x) for x in ln.split()[1:4]] for ln in obj.read_text().splitlines()
                          if ln.startswith("v ")])
        np.testing.assert_allclose((verts.min(0) + verts.max(0)) / 2, 0, atol=1e-6)
        size = verts.max(0) - verts.min(0)
        assert 0.02 < size.max() < 0.2, name  # household objects in metres
        pts = np.loadtxt(root / name / "points.xyz")
        assert pts.shape == (2000, 3)
        assert np.all(pts >= verts.min(0) - 1e-6) and np.all(pts <= verts.max(0) + 1e-6)
        tex = find_texture(obj)
        assert tex == root / name / "texture.png"
        assert max(cv2.imread(str(tex)).shape[:2]) <= 512
    assert "MIT License" in (REPO / "data/objects/demo/LICENSE.robosuite").read_text()
