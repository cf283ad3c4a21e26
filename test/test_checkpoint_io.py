"""Tests for posecnn_core.checkpoint: PT/own formats, strict and partial loading, ImageNet VGG16 init."""
import logging
import pickle

import pytest
import torch

from posecnn_core.checkpoint import (CheckpointError, CheckpointMeta, CheckpointMismatchError, LoadReport,
                                     load_vgg16_imagenet, load_weights, model_from_checkpoint, read_state_dict,
                                     read_train_state, save_checkpoint)
from posecnn_core.network import PoseCNN

NAMES = ["__background__", "a", "b", "c", "d"]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return PoseCNN(5, fc_dim=64)


def fresh():
    return PoseCNN(5, fc_dim=64)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_pt_plain_dict_loads_strictly_with_inferred_size(net, tmp_path):
    path = tmp_path / "pt.pth"
    torch.save(net.state_dict(), path)
    model, meta = model_from_checkpoint(path)
    assert (meta.num_classes, meta.in_channels, meta.fc_dim) == (5, 3, 64)
    assert meta.class_names is None and meta.format_version == 0
    assert same_weights(model, net) and not model.training


def test_pt_model_wrapper_loads_strictly(net, tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"model": net.state_dict()}, path)
    sd, meta = read_state_dict(path)
    assert meta is None and sd.keys() == net.state_dict().keys()
    model = fresh()
    report = load_weights(model, sd)
    assert report.complete and len(report.loaded) == 48
    assert same_weights(model, net)


def test_module_prefix_is_stripped_and_logged(net, tmp_path, caplog):
    path = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    with caplog.at_level(logging.WARNING, logger="posecnn_core.checkpoint"):
        sd, _ = read_state_dict(path)
    assert sd.keys() == net.state_dict().keys()
    assert "module." in caplog.text and str(path) in caplog.text


def test_own_format_round_trip_keeps_meta(net, tmp_path):
    meta = CheckpointMeta(num_classes=5, in_channels=3, fc_dim=64, class_names=NAMES,
                          extra={"epoch": 3, "config": {"lr": 1e-3, "steps": [12, 16], "note": None}})
    path = save_checkpoint(tmp_path / "sub" / "ours.pth", net, meta)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ours.pth"]  # no temp file left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "posecnn_ros" and raw["format_version"] == 1
    sd, meta2 = read_state_dict(path)
    assert meta2 == meta
    model, meta3 = model_from_checkpoint(path)
    assert meta3.class_names == NAMES and meta3.extra["config"]["steps"] == [12, 16]
    assert same_weights(model, net)
    # overwriting an existing file goes through the same atomic path
    meta.extra["epoch"] = 4
    save_checkpoint(path, net, meta)
    assert read_state_dict(path)[1].extra["epoch"] == 4



def test_saved_checkpoints_are_readable_as_the_umask_allows(net, tmp_path):
    """Not the owner-only mode of the temporary file it is written through (a shared model would be unreadable)."""
    import os

    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "shared.pt", net, CheckpointMeta(num_classes=5, fc_dim=64))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_save_rejects_inconsistent_or_unsafe_meta(net, tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        save_checkpoint(tmp_path / "x.pth", net, CheckpointMeta(num_classes=6, fc_dim=64))
    with pytest.raises(TypeError, match="extra"):
        CheckpointMeta(num_classes=5, extra={"when": object()})
    with pytest.raises(ValueError, match="class_names"):
        CheckpointMeta(num_classes=5, class_names=["bg", "a"])
    assert not list(tmp_path.iterdir())


def test_strict_load_names_every_offending_key(net):
    sd = dict(net.state_dict())
    sd["fc10.weight_renamed"] = sd.pop("fc10.weight")
    sd["fc9.weight"] = torch.zeros(7, 64)
    sd["extra.bias"] = torch.zeros(3)
    model = fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(model, sd)
    msg = str(info.value)
    assert "missing: fc10.weight (model expects [20, 64])" in msg
    assert "unexpected: fc10.weight_renamed" in msg
    assert "shape mismatch: fc9.weight (model expects [20, 64], checkpoint has [7, 64])" in msg
    assert "unexpected: extra.bias" in msg
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


@pytest.mark.parametrize("change,key", [("rename", "conv_score.0.bias"), ("shape", "features.0.weight"),
                                        ("extra", "fc11.weight")])
def test_model_from_checkpoint_fails_naming_the_key(net, tmp_path, change, key):
    sd = dict(net.state_dict())
    if change == "rename":
        sd["conv_score.bias"] = sd.pop(key)
    elif change == "shape":
        sd[key] = torch.zeros(64, 3, 5, 5)
    else:
        sd[key] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError, match=key.replace(".", r"\.")) as info:
        model_from_checkpoint(path)
    assert str(path) in str(info.value)


def test_partial_load_reports_skipped_keys(net):
    sd = dict(net.state_dict())
    del sd["fc10.weight"], sd["fc10.bias"]  # a detection-only checkpoint
    sd["fc8.0.weight"] = torch.zeros(3, 64)
    model = fresh()
    report = load_weights(model, sd, partial=True)
    assert isinstance(report, LoadReport) and not report.complete
    assert set(report.missing) == {"fc10.weight", "fc10.bias"}
    assert report.shape_mismatched == {"fc8.0.weight": ((5, 64), (3, 64))}
    assert not report.unexpected and len(report.loaded) == 45
    assert torch.equal(model.state_dict()["features.0.weight"], net.state_dict()["features.0.weight"])
    assert not torch.equal(model.state_dict()["fc8.0.weight"], sd["fc8.0.weight"])
    text = report.summary()
    assert "loaded 45" in text and "fc10.weight" in text and "fc8.0.weight" in text and "[3, 64]" in text


def test_unreadable_files_raise_checkpoint_error_naming_path(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    missing = tmp_path / "missing.pth"
    unsafe = tmp_path / "unsafe.pth"
    with open(unsafe, "wb") as f:
        pickle.dump({"x": CheckpointError("arbitrary object")}, f, protocol=2)
    for path in (corrupt, missing, unsafe):
        with pytest.raises(CheckpointError, match=str(path)):
            read_state_dict(path)
    notdict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], notdict)
    with pytest.raises(CheckpointError, match="list"):
        read_state_dict(notdict)
    odd = tmp_path / "odd.pth"
    torch.save({"epoch": 3, "weights": {"a": 1}}, odd)
    with pytest.raises(CheckpointError, match="unrecognised"):
        read_state_dict(odd)
    future = tmp_path / "future.pth"
    torch.save({"format": "posecnn_ros", "format_version": 99, "model": {"a": torch.zeros(1)}, "meta": {}}, future)
    with pytest.raises(CheckpointError, match="newer"):
        read_state_dict(future)


def test_not_a_regular_file_is_named_as_such(tmp_path):
    import os

    fifo = tmp_path / "pipe.pth"
    os.mkfifo(fifo)
    cases = {tmp_path: "is a directory, not a checkpoint file", "/dev/null": "is a character device, not a checkpoint",
             fifo: "is a FIFO (named pipe), not a checkpoint file", tmp_path / "missing.pt": "does not exist"}
    for path, expected in cases.items():
        with pytest.raises(CheckpointError) as info:
            read_state_dict(path)
        assert expected in str(info.value) and str(path) in str(info.value)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a checkpoint: empty file"):
        read_state_dict(empty)


def test_files_that_are_not_checkpoints_are_named_as_such_not_as_pickles(tmp_path):
    model = PoseCNN(3, fc_dim=16, trunk_width=0.125)
    good = save_checkpoint(tmp_path / "good.pt", model, CheckpointMeta(num_classes=3, fc_dim=16, trunk_width=0.125))
    data = good.read_bytes()
    cases = {"text.pt": (b"corrupt", "not a checkpoint: text file starting with 'corrupt'"),
             "html.pt": (b"<html>\n  <body>404 Not Found</body>\n</html>\n",
                         "not a checkpoint: text file starting with '<html> <body>404 Not Found</body> </html>'"),
             "empty.pt": (b"", "not a checkpoint: empty file"),
             "cut.pt": (data[: len(data) // 2], f"not a checkpoint: truncated zip archive ({len(data) // 2} bytes")}
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        for reader in (read_state_dict, read_train_state):
            with pytest.raises(CheckpointError) as info:
                reader(path)
            text = str(info.value)
            assert text.startswith(f"{path}: ") and expected in text, text
            assert "pickled" not in text, text
    assert read_state_dict(good)[0].keys() == model.state_dict().keys()  # a real one still loads


def test_pickled_module_says_how_to_resave_without_unsafe_advice(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole module, pickled: not loadable as weights
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    text = str(info.value)
    assert str(path) in text and "torch.nn.modules.linear.Linear" in text
    assert "torch.save(model.state_dict()" in text and "posecnn_core.train.export" in text
    assert "weights_only=False" not in text and "weights_only` set to `False" not in text
    assert "add_safe_globals" not in text and "\n" not in text


def test_nonfinite_weights_are_fatal_naming_the_tensor(tmp_path):
    torch.manual_seed(0)
    model = PoseCNN(3, fc_dim=16, trunk_width=0.125)
    with torch.no_grad():
        model.conv_score[0].weight[0, 0, 0, 0] = float("nan")
        model.fc10.bias[2] = float("inf")
    path = save_checkpoint(tmp_path / "diverged.pt", model, CheckpointMeta(num_classes=3, fc_dim=16,
                                                                           trunk_width=0.125))
    with pytest.raises(CheckpointError, match="NaN or infinite weights") as info:
        model_from_checkpoint(path)
    text = str(info.value)
    assert "conv_score.0.weight (1 of " in text and "fc10.bias (1 of " in text and str(path) in text
    from posecnn_core.checkpoint import nonfinite_tensors

    assert nonfinite_tensors(read_state_dict(path)[0]) == {"conv_score.0.weight": 1, "fc10.bias": 1}
    assert nonfinite_tensors(model.state_dict() | {"x": torch.ones(3)}) != {}
    assert nonfinite_tensors({"a": torch.ones(3), "n": torch.zeros(0), "i": torch.arange(3)}) == {}


def _fake_vgg16(net, fc_rows):
    sd = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("features.")}
    sd["classifier.0.weight"], sd["classifier.0.bias"] = torch.randn(fc_rows, 25088), torch.randn(fc_rows)
    sd["classifier.3.weight"], sd["classifier.3.bias"] = torch.randn(fc_rows, fc_rows), torch.randn(fc_rows)
    sd["classifier.6.weight"], sd["classifier.6.bias"] = torch.randn(1000, fc_rows), torch.randn(1000)
    return sd


def test_vgg16_imagenet_init(net, tmp_path):
    path = tmp_path / "vgg16.pth"
    vgg = _fake_vgg16(net, 64)
    torch.save(vgg, path)
    model = fresh()
    report = load_vgg16_imagenet(model, path)
    assert len(report.loaded) == 30  # 26 trunk tensors + classifier.0/3
    assert set(report.unexpected) == {"classifier.6.weight", "classifier.6.bias"}
    assert "fc10.weight" in report.missing and "conv_score.0.weight" in report.missing
    sd = model.state_dict()
    assert torch.equal(sd["features.28.weight"], vgg["features.28.weight"])
    assert torch.equal(sd["classifier.3.weight"], vgg["classifier.3.weight"])
    # a different classifier width: skipped and reported, trunk still loads
    torch.save(_fake_vgg16(net, 32), path)
    report = load_vgg16_imagenet(fresh(), path)
    assert set(report.shape_mismatched) == {f"classifier.{i}.{k}" for i in (0, 3) for k in ("weight", "bias")}
    assert len(report.loaded) == 26 and "classifier.0.weight" in report.summary()


def test_vgg16_init_rgbd_duplicates_first_conv(net, tmp_path):
    path = tmp_path / "vgg16.pth"
    vgg = _fake_vgg16(net, 64)
    torch.save(vgg, path)
    model = PoseCNN(5, in_channels=6, fc_dim=64)
    report = load_vgg16_imagenet(model, path)
    w = model.state_dict()["features.0.weight"]
    assert torch.equal(w[:, :3], vgg["features.0.weight"]) and torch.equal(w[:, 3:], vgg["features.0.weight"])
    assert "features.0.weight" in report.loaded and any("both halves" in n for n in report.notes)


def test_vgg16_init_errors(net, tmp_path):
    missing = tmp_path / "nowhere" / "vgg16-397923af.pth"
    with pytest.raises(CheckpointError, match="internet") as info:
        load_vgg16_imagenet(fresh(), missing)
    assert str(missing) in str(info.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(CheckpointMismatchError, match="features.0.weight"):
        load_vgg16_imagenet(fresh(), wrong)
