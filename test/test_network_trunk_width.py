"""trunk_width option of PoseCNN and half-precision / train-state checkpoints."""
from __future__ import annotations

import torch
import pytest

from posecnn_core.checkpoint import (CheckpointError, CheckpointMeta, model_from_checkpoint, read_state_dict,
                                     read_train_state, save_checkpoint)
from posecnn_core.network import PoseCNN, trunk_channels


def test_trunk_channels_rounding_and_floor():
    assert trunk_channels(1.0) == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert trunk_channels(0.5) == [32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256, 256]
    assert trunk_channels(0.125) == [8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64]
    assert trunk_channels(0.05)[:2] == [8, 8]  # 3.2 -> floor of 8
    for bad in (0, -1, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="trunk_width"):
            trunk_channels(bad)


def test_narrow_network_shapes_keys_and_forward():
    full = PoseCNN(4, fc_dim=32)
    net = PoseCNN(4, fc_dim=32, trunk_width=0.25)
    assert list(net.state_dict()) == list(full.state_dict())  # names unchanged
    sd = net.state_dict()
    assert tuple(sd["features.0.weight"].shape) == (16, 3, 3, 3)
    assert tuple(sd["features.28.weight"].shape) == (128, 128, 3, 3)
    assert tuple(sd["conv4_embed.0.weight"].shape) == (64, 128, 1, 1)
    assert tuple(sd["conv5_vertex_embed.weight"].shape) == (128, 128, 1, 1)
    assert tuple(sd["classifier.0.weight"].shape) == (32, 128 * 49)
    assert net.trunk_channels == 128 and net.trunk_width == 0.25
    x = torch.randn(1, 3, 32, 48)
    scores, vertex, conv4, conv5 = net.dense(x)
    assert scores.shape == (1, 4, 32, 48) and vertex.shape == (1, 12, 32, 48)
    assert conv4.shape == (1, 128, 4, 6) and conv5.shape == (1, 128, 2, 3)
    rois = torch.tensor([[0, 2.0, 3.0, 30.0, 20.0]])
    cls, deltas = net.box_head(conv4, conv5, rois)
    assert cls.shape == (1, 4) and deltas.shape == (1, 16)
    with pytest.raises(ValueError, match=r"\[B, 128, h, w\]"):
        net.roi_features(torch.zeros(1, 512, 4, 6), torch.zeros(1, 512, 2, 3), rois)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in full.parameters()) / 10


@pytest.mark.parametrize("width", [0.5, 0.3, 0.125])
def test_width_inferred_from_pt_style_state_dict(tmp_path, width):
    net = PoseCNN(3, fc_dim=16, trunk_width=width)
    torch.save(net.state_dict(), tmp_path / "pt.pth")
    model, meta = model_from_checkpoint(tmp_path / "pt.pth")
    assert meta.format_version == 0 and meta.fc_dim == 16
    assert trunk_channels(meta.trunk_width) == trunk_channels(width)
    for k, v in net.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_own_format_keeps_trunk_width_and_checks_it(tmp_path):
    net = PoseCNN(3, fc_dim=16, trunk_width=0.25)
    meta = CheckpointMeta(num_classes=3, fc_dim=16, trunk_width=0.25, class_names=["bg", "a", "b"])
    save_checkpoint(tmp_path / "m.pt", net, meta)
    model, got = model_from_checkpoint(tmp_path / "m.pt")
    assert got.trunk_width == 0.25 and model.trunk_channels == 128
    with pytest.raises(ValueError, match="trunk_width"):
        save_checkpoint(tmp_path / "x.pt", net, CheckpointMeta(num_classes=3, fc_dim=16))
    with pytest.raises(ValueError, match="trunk_width"):
        CheckpointMeta(num_classes=3, trunk_width=0)
    # metas written before trunk_width existed still read (default 1.0)
    assert CheckpointMeta.from_dict({"num_classes": 3}).trunk_width == 1.0


def test_half_precision_checkpoint_halves_size_and_loads_as_float32(tmp_path):
    net = PoseCNN(3, fc_dim=64, trunk_width=0.25)
    meta = CheckpointMeta(num_classes=3, fc_dim=64, trunk_width=0.25)
    full = save_checkpoint(tmp_path / "f.pt", net, meta)
    half = save_checkpoint(tmp_path / "h.pt", net, meta, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    raw = torch.load(half, weights_only=True)
    assert raw["weights_dtype"] == "float16" and raw["model"]["features.0.weight"].dtype == torch.float16
    sd, _ = read_state_dict(half)
    assert all(v.dtype == torch.float32 for v in sd.values())
    model, _ = model_from_checkpoint(half)
    for k, v in net.state_dict().items():
        assert torch.allclose(model.state_dict()[k], v, rtol=1e-3, atol=1e-4), k


def test_train_state_round_trip_and_validation(tmp_path):
    net = PoseCNN(3, fc_dim=16, trunk_width=0.125)
    meta = CheckpointMeta(num_classes=3, fc_dim=16, trunk_width=0.125)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.dense(torch.randn(1, 3, 32, 32))[0].sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "iteration": 7, "rng": torch.get_rng_state()}
    path = save_checkpoint(tmp_path / "s.pt", net, meta, train_state=state)
    back = read_train_state(path)
    assert back["iteration"] == 7 and torch.equal(back["rng"], state["rng"])
    opt2 = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(back["optimizer"])
    assert opt2.state_dict()["param_groups"][0]["lr"] == 0.1
    model_from_checkpoint(path)  # a training checkpoint is also a model checkpoint
    with pytest.raises(TypeError, match="only tensors and plain"):
        save_checkpoint(tmp_path / "bad.pt", net, meta, train_state={"x": object()})
    torch.save(net.state_dict(), tmp_path / "pt.pth")
    with pytest.raises(CheckpointError, match="no training state"):
        read_train_state(tmp_path / "pt.pth")
    assert read_train_state(save_checkpoint(tmp_path / "n.pt", net, meta)) is None
