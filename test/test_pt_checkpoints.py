"""PoseCNN-PyTorch checkpoints out of the box: synthetic state_dicts in PT's key/shape layout (written from PT's
layout, not from our network) load strictly with the bundled object set of their family, the wrong set gives an
error naming the right one, detection-only files are recognised, and `posecnn-inspect` reports all of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from posecnn_core.checkpoint import (CheckpointError, CheckpointMeta, CheckpointMismatchError, check_layout,
                                     has_rotation_head, infer_meta, model_from_checkpoint, read_checkpoint,
                                     save_checkpoint)
from posecnn_core.estimator import ModelError, PoseEstimator
from posecnn_core.inspect_checkpoint import describe_state_dict, main
from posecnn_core.network import PoseCNN
from posecnn_core.objects import ObjectSet, load_object_set, read_object_set_spec

ROOT = Path(__file__).resolve().parents[1]
OBJECTS = ROOT / "config" / "objects"
VGG16_CONVS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
SMALL_CONVS = [8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64]  # trunk_width 0.125
CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def pt_table(num_classes: int, fc: int = 4096, convs: list[int] = VGG16_CONVS, in_channels: int = 3,
             rotation: bool = True) -> dict[str, tuple[int, ...]]:
    """PT's state_dict keys and shapes (PoseCNN-PyTorch lib/networks/PoseCNN.py layout), in its key order."""
    C, T = num_classes, convs[-1]
    table: dict[str, tuple[int, ...]] = {}
    prev = in_channels
    for i, out in zip(CONV_INDICES, convs):
        table[f"features.{i}.weight"], table[f"features.{i}.bias"] = (out, prev, 3, 3), (out,)
        prev = out
    table.update({"classifier.0.weight": (fc, T * 49), "classifier.0.bias": (fc,),
                  "classifier.3.weight": (fc, fc), "classifier.3.bias": (fc,)})
    for name, out, inp in (("conv4_embed.0", 64, T), ("conv5_embed.0", 64, T), ("conv_score.0", C, 64),
                           ("conv4_vertex_embed", 128, T), ("conv5_vertex_embed", 128, T),
                           ("conv_vertex_score", 3 * C, 128)):
        table[f"{name}.weight"], table[f"{name}.bias"] = (out, inp, 1, 1), (out,)
    heads = [("fc8.0", C), ("fc9", 4 * C)] + ([("fc10", 4 * C)] if rotation else [])
    for name, out in heads:
        table[f"{name}.weight"], table[f"{name}.bias"] = (out, fc), (out,)
    return table


def random_state_dict(table: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.05 for k, shape in table.items()}


def meta_state_dict(table: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, shape in table.items()}


# ------------------------------------------------------------------------------------------------ full size
@pytest.mark.parametrize("num_classes", [21, 22])
@pytest.mark.parametrize("fc", [4096, 256])
def test_full_size_pt_layout_matches_network_without_allocating(num_classes, fc):
    """PT's released sizes (VGG16 trunk; 4096-wide or 'slim' 256-wide classifier), checked on the meta device."""
    table = pt_table(num_classes, fc)
    assert len(table) == 48
    sd = meta_state_dict(table)
    meta = infer_meta(sd, "pt.pth")
    assert (meta.num_classes, meta.in_channels, meta.fc_dim, meta.trunk_width) == (num_classes, 3, fc, 1.0)
    report = check_layout(sd, meta)
    assert report.complete and sorted(report.loaded) == sorted(table)
    with torch.device("meta"):
        ours = PoseCNN(num_classes, fc_dim=fc).state_dict()
    assert list(ours) == list(table) and all(tuple(v.shape) == table[k] for k, v in ours.items())
    # the detection-only variant: everything but fc10
    det = meta_state_dict(pt_table(num_classes, fc, rotation=False))
    assert not has_rotation_head(det) and has_rotation_head(sd)
    report = check_layout(det, infer_meta(det, "det.pth"))
    assert set(report.missing) == {"fc10.weight", "fc10.bias"} and not report.unexpected
    assert report.missing["fc10.weight"] == (4 * num_classes, fc)
    info = describe_state_dict(det, None, "pt_model", "det.pth")
    assert not info.rotation_head and info.layout_problems == [] and info.num_tensors == 46
    assert info.trunk_convs == VGG16_CONVS and info.fc_dim == fc
    assert [s.name for s in info.matches] == ["ycb_object" if num_classes == 21 else "ycb_video"]


def test_full_size_parameter_count():
    info = describe_state_dict(meta_state_dict(pt_table(22)), None, "pt_plain")
    # VGG16 trunk 14,714,688 + classifier 102,764,544 + 16,781,312 + dense heads + fc8/9/10
    dense = 2 * (64 * 512 + 64) + (22 * 64 + 22) + 2 * (128 * 512 + 128) + (66 * 128 + 66)
    heads = (22 * 4096 + 22) + 2 * (88 * 4096 + 88)
    assert info.num_parameters == 14_714_688 + 102_764_544 + 16_781_312 + dense + heads


# ------------------------------------------------------------------------------------------------ small files
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Small PT-layout checkpoints (trunk 0.125, fc 64): 21 and 22 classes, wrapped, detection-only, 5 classes."""
    folder = tmp_path_factory.mktemp("pt")
    out = {}
    for name, table, wrap in (
            ("pt21", pt_table(21, 64, SMALL_CONVS), False),
            ("pt22", pt_table(22, 64, SMALL_CONVS), False),
            ("pt21_model", pt_table(21, 64, SMALL_CONVS), True),
            ("pt21_det", pt_table(21, 64, SMALL_CONVS, rotation=False), True),
            ("pt5", pt_table(5, 64, SMALL_CONVS), False)):
        sd = random_state_dict(table, seed=len(out))
        out[name] = folder / f"vgg16_{name}.checkpoint.pth"
        torch.save({"model": sd} if wrap else sd, out[name])
    return out


@pytest.fixture(scope="module")
def object_sets(tmp_path_factory) -> dict[str, ObjectSet]:
    """The bundled ycb_object / ycb_video sets with tiny stand-in models (points.xyz per object)."""
    root = tmp_path_factory.mktemp("models")
    names = read_object_set_spec(OBJECTS / "ycb_video.yaml").class_names[1:]
    for i, name in enumerate(names):
        (root / name).mkdir()
        s = 0.02 + 0.002 * i
        np.savetxt(root / name / "points.xyz", np.array([[s, 0, 0], [-s, 0, 0], [0, s, s], [0, -s, -s]]))
    return {family: load_object_set(OBJECTS / f"{family}.yaml", models_root=root)
            for family in ("ycb_object", "ycb_video")}


@pytest.mark.parametrize("name, family", [("pt21", "ycb_object"), ("pt22", "ycb_video"),
                                          ("pt21_model", "ycb_object")])
def test_pt_checkpoint_loads_strictly_with_its_object_set(files, object_sets, name, family):
    sd, meta, layout = read_checkpoint(files[name])
    assert meta is None and layout == ("pt_model" if name.endswith("_model") else "pt_plain")
    model, inferred = model_from_checkpoint(files[name])
    assert (inferred.num_classes, inferred.fc_dim, inferred.trunk_width) == (object_sets[family].num_classes,
                                                                             64, 0.125)
    loaded = model.state_dict()
    assert loaded.keys() == sd.keys() and all(torch.equal(loaded[k], sd[k]) for k in sd)
    est = PoseEstimator(files[name], object_sets[family], device="cpu")
    assert est.class_names == object_sets[family].class_names
    assert torch.equal(est.net.fc10.weight, sd["fc10.weight"])


@pytest.mark.parametrize("name, wrong, right", [("pt21", "ycb_video", "ycb_object"),
                                                ("pt22", "ycb_object", "ycb_video")])
def test_wrong_object_set_names_the_matching_bundled_set(files, object_sets, name, wrong, right):
    with pytest.raises(ModelError) as err:
        PoseEstimator(files[name], object_sets[wrong], device="cpu")
    msg = str(err.value)
    n = object_sets[right].num_classes
    assert f"has {n} classes" in msg and f"object set {wrong!r} has {object_sets[wrong].num_classes}" in msg
    assert f"bundled object set(s) for {n} classes: {right} ({OBJECTS / f'{right}.yaml'})" in msg


def test_no_bundled_set_for_an_unknown_class_count(files, object_sets):
    with pytest.raises(ModelError, match="no bundled object set has 5 classes"):
        PoseEstimator(files["pt5"], object_sets["ycb_object"], device="cpu")


def test_detection_only_checkpoint_is_recognised(files, object_sets):
    with pytest.raises(CheckpointMismatchError, match="detection-only checkpoint") as err:
        model_from_checkpoint(files["pt21_det"])
    assert "fc10.weight, fc10.bias absent" in str(err.value) and str(files["pt21_det"]) in str(err.value)
    with pytest.raises(ModelError, match="detection-only"):
        PoseEstimator(files["pt21_det"], object_sets["ycb_object"], device="cpu")


def test_detection_only_with_other_damage_lists_every_key(tmp_path):
    sd = random_state_dict(pt_table(21, 64, SMALL_CONVS, rotation=False), 0)
    sd["fc9.weight"] = sd["fc9.weight"][:-4]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError) as err:
        model_from_checkpoint(tmp_path / "bad.pth")
    msg = str(err.value)
    assert "detection-only" not in msg and "missing: fc10.weight" in msg and "shape mismatch: fc9.weight" in msg


def test_our_checkpoint_with_names_gets_the_hint_by_names(tmp_path, object_sets):
    names = object_sets["ycb_object"].class_names
    net = PoseCNN(21, fc_dim=16, trunk_width=0.125)
    path = save_checkpoint(tmp_path / "ours.pt", net, CheckpointMeta(num_classes=21, fc_dim=16, trunk_width=0.125,
                                                                     class_names=names))
    # a 21-class set with other names: the name check fails and points at the bundled set with these names
    base = object_sets["ycb_object"]
    renamed = ObjectSet(name="renamed", class_names=names[:-1] + ["teapot"], points=base.points,
                        extents=base.extents, symmetric=base.symmetric)
    with pytest.raises(ModelError) as err:
        PoseEstimator(path, renamed, device="cpu")
    assert "only in checkpoint: ['061_foam_brick']" in str(err.value)
    assert "bundled object set(s) for these 21 classes: ycb_object" in str(err.value)


def test_legacy_serialization_format_loads_and_inspects(tmp_path, capsys):
    """PT's checkpoints date from PyTorch < 1.6, whose torch.save wrote the legacy (non-zip) format."""
    sd = random_state_dict(pt_table(22, 64, SMALL_CONVS), seed=7)
    path = tmp_path / "legacy.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    loaded, meta, layout = read_checkpoint(path, mmap=True)  # mmap is skipped for the legacy format
    assert layout == "pt_plain" and meta is None and all(torch.equal(loaded[k], sd[k]) for k in sd)
    model, _ = model_from_checkpoint(path)
    assert torch.equal(model.conv_vertex_score.weight, sd["conv_vertex_score.weight"])
    assert main([str(path)]) == 0
    assert "ycb_video: " in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ posecnn-inspect
def test_inspect_plain_pt_checkpoint(files, capsys):
    assert main([str(files["pt21"])]) == 0
    out = capsys.readouterr().out
    assert "format:            PoseCNN-PyTorch, plain state_dict" in out
    assert "classes:           21 (including the background)" in out
    assert "fc width:          64" in out and "conv widths 8-8-16-16-32-32-32-64-64-64-64-64-64" in out
    assert "rotation head:     fc10 present" in out and "matches PoseCNN key for key" in out
    assert "class names:       none stored" in out and "reference camera:  none stored" in out
    assert f"ycb_object: {OBJECTS / 'ycb_object.yaml'}" in out and "ycb_video" not in out
    assert "fx 524.7918, fy 489.3564" in out


def test_inspect_wrapped_and_detection_only_as_json(files, capsys):
    assert main([str(files["pt21_det"]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["layout"] == "pt_model" and doc["layout_text"] == "PoseCNN-PyTorch, wrapped {'model': state_dict}"
    assert doc["num_classes"] == 21 and doc["rotation_head"] is False and doc["layout_problems"] == []
    assert doc["num_tensors"] == 46 and doc["fc_dim"] == 64 and doc["in_channels"] == 3
    assert [m["name"] for m in doc["matching_object_sets"]] == ["ycb_object"]
    assert doc["matching_object_sets"][0]["reference_camera"]["fx"] == 524.7918
    assert main([str(files["pt21_det"])]) == 0
    assert "fc10 ABSENT - detection-only" in capsys.readouterr().out
    assert main([str(files["pt22"]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["layout"] == "pt_plain" and doc["rotation_head"] is True
    assert [m["name"] for m in doc["matching_object_sets"]] == ["ycb_video"]
    assert doc["matching_object_sets"][0]["reference_camera"]["fx"] == 1066.778


def test_inspect_our_format_matches_by_names(tmp_path, capsys):
    names = read_object_set_spec(OBJECTS / "ycb_object.yaml").class_names
    net = PoseCNN(21, fc_dim=16, trunk_width=0.125)
    cam = {"fx": 500.0, "fy": 510.0, "width": 320, "height": 240}
    ok = save_checkpoint(tmp_path / "ok.pt", net, CheckpointMeta(num_classes=21, fc_dim=16, trunk_width=0.125,
                                                                 class_names=names, reference_camera=cam))
    assert main([str(ok)]) == 0
    out = capsys.readouterr().out
    assert "posecnn_ros (format_version <= 1, with meta)" in out and "matching by class names:" in out
    assert "fx 500, fy 510 (f_ref 505.0 px) at 320x240 (stored in the checkpoint)" in out
    swapped = names[:1] + names[2:3] + names[1:2] + names[3:]
    bad = save_checkpoint(tmp_path / "swapped.pt", net, CheckpointMeta(num_classes=21, fc_dim=16, trunk_width=0.125,
                                                                       class_names=swapped))
    assert main([str(bad)]) == 1
    assert "none with these class names" in capsys.readouterr().out


def test_inspect_exit_codes(files, tmp_path, capsys):
    assert main([str(files["pt5"])]) == 1
    assert "none with 5 classes" in capsys.readouterr().out
    own = tmp_path / "five.yaml"
    own.write_text("points: '{name}.xyz'\nclasses: [a, b, c, d]\n")
    assert main([str(files["pt5"]), "--objects", str(own)]) == 0
    assert f"five: {own}" in capsys.readouterr().out
    for name, content in (("garbage.pth", b"not a checkpoint"), ("other.pth", None)):
        path = tmp_path / name
        if content is None:
            torch.save({"weight": torch.zeros(2)}, path)  # a state_dict, but not PoseCNN's
        else:
            path.write_bytes(content)
        assert main([str(path)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith("posecnn-inspect: error: ")
        assert captured.err.count("\n") == 1 and "Traceback" not in captured.err and str(path) in captured.err
    assert main([str(tmp_path / "missing.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "missing.pth")
