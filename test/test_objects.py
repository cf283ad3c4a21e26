"""Tests for posecnn_core.objects and the bundled object sets in config/objects/."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from posecnn_core.camera import YCB_OBJECT_CAMERA, YCB_VIDEO_CAMERA, ReferenceCamera
from posecnn_core.objects import (BACKGROUND, ObjectSet, ObjectSetError, bundled_object_sets, load_object_set,
                                  matching_object_sets, matching_object_sets_hint, read_model_points,
                                  read_object_set_spec)

REPO = Path(__file__).resolve().parents[1]
YCB_YAML = REPO / "config" / "objects" / "ycb_video.yaml"
YCB_OBJECT_YAML = REPO / "config" / "objects" / "ycb_object.yaml"
YCB_NAMES = ["002_master_chef_can", "003_cracker_box", "004_sugar_box", "005_tomato_soup_can",
             "006_mustard_bottle", "007_tuna_fish_can", "008_pudding_box", "009_gelatin_box",
             "010_potted_meat_can", "011_banana", "019_pitcher_base", "021_bleach_cleanser", "024_bowl",
             "025_mug", "035_power_drill", "036_wood_block", "037_scissors", "040_large_marker",
             "051_large_clamp", "052_extra_large_clamp", "061_foam_brick"]


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """models/{can/points.xyz, box/textured.obj, brick/model.ply (mm)} under tmp_path."""
    root = tmp_path / "models"
    (root / "can").mkdir(parents=True)
    pts = np.array([[0.01, -0.02, 0.03], [-0.04, 0.01, -0.05], [0.0, 0.0, 0.0]])
    np.savetxt(root / "can" / "points.xyz", pts)
    (root / "box").mkdir()
    box = trimesh.creation.box(extents=[0.1, 0.2, 0.3])  # 8 vertices, 12 faces
    box.export(root / "box" / "textured.obj")
    (root / "brick").mkdir()
    trimesh.creation.box(extents=[50.0, 40.0, 30.0]).export(root / "brick" / "model.ply")  # millimetres
    return root


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BASIC = """
name: tiny
models_root: models
points: "{name}/points.xyz"
mesh: "{name}/textured.obj"
classes:
  - name: can
    symmetric: true
  - name: box
    symmetric: true
    symmetric_training: false
    extents: [0.5, 0.6, 0.7]
"""


def test_load_points_file_and_mesh(tmp_path, models):
    yml = _write(tmp_path / "tiny.yaml", BASIC)
    objs = load_object_set(yml, max_points=50)
    assert isinstance(objs, ObjectSet)
    assert objs.name == "tiny" and objs.class_names == [BACKGROUND, "can", "box"] and objs.num_classes == 3
    assert objs.index("box") == 2 and objs.index(BACKGROUND) == 0
    assert objs.points[0].shape == (0, 3) and objs.points[0].dtype == np.float32
    np.testing.assert_allclose(objs.points[1], np.loadtxt(models / "can" / "points.xyz"), rtol=1e-6)
    # extents computed from the points file: 2·max|coord|
    np.testing.assert_allclose(objs.extents[1], [0.08, 0.04, 0.10], rtol=1e-6)
    # explicit extents are used as given
    np.testing.assert_allclose(objs.extents[2], [0.5, 0.6, 0.7], rtol=1e-6)
    np.testing.assert_array_equal(objs.extents[0], 0)
    # box mesh: 8 vertices topped up with surface samples to 50 points, all on the box surface
    box = objs.points[2]
    assert box.shape == (50, 3)
    half = np.array([0.05, 0.1, 0.15])
    assert np.all(np.abs(box) <= half + 1e-6)
    assert np.all(np.min(np.abs(np.abs(box) - half), axis=1) < 1e-6)
    assert objs.mesh_paths[2] == models / "box" / "textured.obj" and objs.mesh_paths[1] is None
    np.testing.assert_array_equal(objs.symmetric, [False, True, True])
    np.testing.assert_array_equal(objs.symmetric_training, [False, True, False])  # defaults to symmetric
    # deterministic
    again = load_object_set(yml, max_points=50)
    np.testing.assert_array_equal(again.points[2], box)
    with pytest.raises(ValueError, match="no class 'cup'"):
        objs.index("cup")


def test_units_mm_and_per_class_override(tmp_path, models):
    yml = _write(tmp_path / "mm.yaml", """
units: mm
classes:
  - name: brick
    points: models/{name}/model.ply
    extents: [50, 40, 30]
""")
    objs = load_object_set(yml, max_points=8)
    assert objs.name == "mm"  # defaults to the file name
    np.testing.assert_allclose(objs.extents[1], [0.05, 0.04, 0.03], rtol=1e-6)
    np.testing.assert_allclose(np.abs(objs.points[1]).max(axis=0), [0.025, 0.02, 0.015], rtol=1e-6)
    assert objs.points[1].shape == (8, 3)


def test_models_root_argument_overrides_yaml(tmp_path, models):
    yml = _write(tmp_path / "other.yaml", "models_root: /nonexistent\npoints: '{name}/points.xyz'\nclasses: [can]\n")
    objs = load_object_set(yml, models_root=models)
    assert objs.points[1].shape == (3, 3)


def test_missing_model_file_names_class_and_path(tmp_path, models):
    yml = _write(tmp_path / "missing.yaml", """
models_root: models
points: "{name}/points.xyz"
mesh: "{name}/textured.obj"
classes: [can, mug]
""")
    with pytest.raises(FileNotFoundError) as err:
        load_object_set(yml)
    msg = str(err.value)
    assert "'mug'" in msg and str(models / "mug" / "points.xyz") in msg and str(models / "mug" / "textured.obj") in msg
    # an explicitly listed file that is missing is an error even if another source exists
    yml2 = _write(tmp_path / "explicit.yaml", """
models_root: models
mesh: "{name}/textured.obj"
classes:
  - name: box
    points: box/typo.xyz
""")
    with pytest.raises(FileNotFoundError, match=r"'box'.*typo\.xyz"):
        load_object_set(yml2)


def test_unreadable_model_file_names_class_and_path(tmp_path, models):
    (models / "can" / "points.xyz").write_text("1 2\nnot numbers\n")
    yml = _write(tmp_path / "bad.yaml", "models_root: models\npoints: '{name}/points.xyz'\nclasses: [can]\n")
    with pytest.raises(ObjectSetError, match=r"'can'.*points\.xyz"):
        load_object_set(yml)


@pytest.mark.parametrize("text, field", [
    ("classes: []\n", "classes"),
    ("- a\n- b\n", "classes"),
    ("points: x\nclasses:\n  - name: a\n    symetric: true\n", "classes[0].symetric"),
    ("points: x\nclasses:\n  - name: a\n    symmetric: yes please\n", "classes[0].symmetric"),
    ("points: x\nclasses:\n  - name: a\n    extents: [1, 2]\n", "classes[0].extents"),
    ("points: x\nunits: inch\nclasses: [a]\n", "units"),
    ("points: x\nclasses: [a, a]\n", "classes[1].name"),
    ("points: x\nclasses: [__background__]\n", "classes[0].name"),
    ("classes: [a]\n", "classes[0].points"),
    ("points: '{cls}/p.xyz'\nclasses: [a]\n", "points"),
    ("points: x\nclass: [a]\n", "class"),
    ("points: x\nclasses:\n  - 3\n", "classes[0]"),
    ("points: x\nreference_camera: {fx: 500}\nclasses: [a]\n", "reference_camera"),
    ("points: x\nreference_camera: {fx: 500, fy: 500, f: 3}\nclasses: [a]\n", "reference_camera"),
    ("points: x\nreference_camera: {fx: -5, fy: 500}\nclasses: [a]\n", "reference_camera"),
    ("points: x\nreference_camera: [500, 500]\nclasses: [a]\n", "reference_camera"),
])
def test_bad_yaml_names_the_field(tmp_path, text, field):
    yml = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ObjectSetError, match=re.escape(f"field '{field}'")):
        read_object_set_spec(yml)


def test_points_tensor_pads_and_subsamples(tmp_path, models):
    objs = ObjectSet(name="t", class_names=[BACKGROUND, "a", "b"],
                     points=[np.zeros((0, 3)), np.arange(30.0).reshape(10, 3), np.ones((4, 3))],
                     extents=np.zeros((3, 3)), symmetric=[False, False, True])
    pts, counts = objs.points_tensor(max_points=6)
    assert pts.shape == (3, 6, 3) and pts.dtype == torch.float32
    assert counts.tolist() == [0, 6, 4]
    rows = pts[1].numpy()
    assert len({tuple(r) for r in rows}) == 6  # distinct rows of class a, in file order
    assert np.all(np.diff(rows[:, 0]) > 0)
    assert torch.all(pts[2, 4:] == 0) and torch.all(pts[2, :4] == 1)
    pts2, _ = objs.points_tensor("cpu", max_points=6)
    assert torch.equal(pts, pts2)
    np.testing.assert_array_equal(objs.symmetric_training, objs.symmetric)
    with pytest.raises(ValueError, match="max_points"):
        objs.points_tensor(max_points=0)


def test_read_model_points_xyz_with_extra_columns(tmp_path):
    p = tmp_path / "n.xyz"
    np.savetxt(p, np.array([[1.0, 2.0, 3.0, 0.0, 0.0, 1.0]]))
    np.testing.assert_array_equal(read_model_points(p), [[1.0, 2.0, 3.0]])


def test_shipped_ycb_video_yaml_parses_without_models(tmp_path):
    spec = read_object_set_spec(YCB_YAML)
    assert spec.name == "ycb_video"
    assert spec.class_names == [BACKGROUND] + YCB_NAMES and spec.num_classes == 22
    eval_sym = {"024_bowl", "036_wood_block", "051_large_clamp", "052_extra_large_clamp", "061_foam_brick"}
    assert {n for n, s in zip(spec.class_names, spec.symmetric) if s} == eval_sym
    assert {n for n, s in zip(spec.class_names, spec.symmetric_training) if s} == {"036_wood_block", "061_foam_brick"}
    assert spec.models_root.resolve() == (REPO / "data" / "YCB_Video" / "models").resolve()
    assert spec.classes[0].points_path == spec.models_root / "002_master_chef_can" / "points.xyz"
    # without the models the error names the first class and where it looked
    with pytest.raises(FileNotFoundError, match=r"002_master_chef_can.*points\.xyz"):
        load_object_set(YCB_YAML, models_root=tmp_path / "nowhere")


def test_reference_camera_is_parsed_into_spec_and_object_set(tmp_path, models):
    yml = _write(tmp_path / "cam.yaml", BASIC + "reference_camera: {fx: 600.5, fy: 601, width: 640, height: 480}\n")
    cam = ReferenceCamera(fx=600.5, fy=601.0, width=640, height=480)
    assert read_object_set_spec(yml).reference_camera == cam
    assert load_object_set(yml).reference_camera == cam
    assert load_object_set(_write(tmp_path / "nocam.yaml", BASIC)).reference_camera is None
    with pytest.raises(TypeError, match="reference_camera"):
        ObjectSet(name="t", class_names=[BACKGROUND, "a"], points=[np.zeros((0, 3)), np.ones((2, 3))],
                  extents=np.zeros((2, 3)), symmetric=[False, False], reference_camera={"fx": 1, "fy": 1})


def test_shipped_ycb_video_yaml_reference_camera():
    assert read_object_set_spec(YCB_YAML).reference_camera == YCB_VIDEO_CAMERA


def test_shipped_ycb_object_yaml_is_ycb_video_without_the_large_clamp(tmp_path):
    """PoseCNN-PyTorch's ycb_object checkpoints: TRAIN.CLASSES (0..18, 20, 21) of the YCB-Video list, training
    symmetry (wood block, foam brick), evaluation symmetry of the toolbox, the rendering camera."""
    spec = read_object_set_spec(YCB_OBJECT_YAML)
    video = read_object_set_spec(YCB_YAML)
    assert spec.name == "ycb_object" and spec.num_classes == 21
    pt_classes = [0, *range(1, 19), 20, 21]
    assert spec.class_names == [video.class_names[i] for i in pt_classes]
    assert "051_large_clamp" not in spec.class_names
    np.testing.assert_array_equal(spec.symmetric, video.symmetric[pt_classes])
    np.testing.assert_array_equal(spec.symmetric_training, video.symmetric_training[pt_classes])
    # PT's TRAIN.SYMMETRY for these 21 classes, position by position
    assert spec.symmetric_training.astype(int).tolist() == [0] * 16 + [1, 0, 0, 0, 1]
    assert spec.reference_camera == YCB_OBJECT_CAMERA
    assert spec.models_root.resolve() == (REPO / "data" / "YCB_Object" / "models").resolve()
    assert spec.classes[0].points_path == spec.models_root / "002_master_chef_can" / "points.xyz"
    assert spec.classes[-1].mesh_path == spec.models_root / "061_foam_brick" / "textured_simple.obj"
    # with the models in PT's download layout (points.xyz per object) the set loads
    root = tmp_path / "models"
    for i, name in enumerate(spec.class_names[1:]):
        (root / name).mkdir(parents=True)
        np.savetxt(root / name / "points.xyz", np.array([[0.01 * (i + 1), 0.02, -0.03], [-0.01, 0.0, 0.03]]))
    objs = load_object_set(YCB_OBJECT_YAML, models_root=root)
    assert objs.num_classes == 21 and objs.reference_camera == YCB_OBJECT_CAMERA
    np.testing.assert_allclose(objs.extents[20], [0.4, 0.04, 0.06], rtol=1e-6)  # 2·max|x| of class 20
    assert objs.mesh_paths[1] is None  # no textured_simple.obj here: markers fall back to boxes


def test_bundled_object_sets_and_matching():
    specs = {s.name: s for s in bundled_object_sets()}
    assert set(specs) == {"demo", "ycb_object", "ycb_video"}
    assert all(s.source.parent == REPO / "config" / "objects" for s in specs.values())
    assert [s.name for s in matching_object_sets(22)] == ["ycb_video"]
    assert [s.name for s in matching_object_sets(21)] == ["ycb_object"]
    assert [s.name for s in matching_object_sets(7)] == ["demo"]
    assert matching_object_sets(5) == []
    names = specs["ycb_object"].class_names
    assert [s.name for s in matching_object_sets(21, names)] == ["ycb_object"]
    assert matching_object_sets(21, names[:1] + names[2:] + names[1:2]) == []  # order matters
    assert matching_object_sets(21, candidates=[specs["demo"]]) == []
    hint = matching_object_sets_hint(21)
    assert "ycb_object" in hint and str(YCB_OBJECT_YAML) in hint and "ycb_video" not in hint
    assert "no bundled object set has 5 classes" in matching_object_sets_hint(5)


def test_shipped_demo_yaml_reference_camera_is_the_training_camera():
    """The demo model was trained on synthetic 320x240 frames with the default intrinsics of posecnn_core.synth."""
    from posecnn_core.synth.scene import default_intrinsics

    cam = read_object_set_spec(REPO / "config" / "objects" / "demo.yaml").reference_camera
    K = default_intrinsics(320, 240)
    assert (cam.width, cam.height) == (320, 240)
    np.testing.assert_allclose([cam.fx, cam.fy, cam.cx, cam.cy], [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], rtol=1e-9)
