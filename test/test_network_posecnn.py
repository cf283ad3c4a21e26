"""Tests for posecnn_core.network: PT's parameter layout, output shapes, gradients, input normalisation."""
import numpy as np
import pytest
import torch
from torch import nn

from posecnn_core.network import PIXEL_MEANS_BGR, PoseCNN, normalize_bgr
from posecnn_core.roi_pool import roi_max_pool_torch

# PT's checkpoint keys and weight shapes for C = 22, fc_dim = 4096, written from the reference notes.
C22 = 22
PT_WEIGHT_SHAPES = {
    "features.0": (64, 3, 3, 3), "features.2": (64, 64, 3, 3),
    "features.5": (128, 64, 3, 3), "features.7": (128, 128, 3, 3),
    "features.10": (256, 128, 3, 3), "features.12": (256, 256, 3, 3), "features.14": (256, 256, 3, 3),
    "features.17": (512, 256, 3, 3), "features.19": (512, 512, 3, 3), "features.21": (512, 512, 3, 3),
    "features.24": (512, 512, 3, 3), "features.26": (512, 512, 3, 3), "features.28": (512, 512, 3, 3),
    "classifier.0": (4096, 25088), "classifier.3": (4096, 4096),
    "conv4_embed.0": (64, 512, 1, 1), "conv5_embed.0": (64, 512, 1, 1), "conv_score.0": (22, 64, 1, 1),
    "conv4_vertex_embed": (128, 512, 1, 1), "conv5_vertex_embed": (128, 512, 1, 1),
    "conv_vertex_score": (66, 128, 1, 1),
    "fc8.0": (22, 4096), "fc9": (88, 4096), "fc10": (88, 4096),
}


def pt_table():
    table = {}
    for layer, shape in PT_WEIGHT_SHAPES.items():
        table[f"{layer}.weight"] = shape
        table[f"{layer}.bias"] = (shape[0],)
    return table


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return PoseCNN(5, fc_dim=64).eval()


def test_state_dict_matches_pt_table():
    with torch.device("meta"):
        net = PoseCNN(C22)
    sd = net.state_dict()
    assert len(sd) == 48
    assert {k: tuple(v.shape) for k, v in sd.items()} == pt_table()
    assert not list(net.buffers())


def test_fc_dim_and_in_channels_scale_shapes():
    with torch.device("meta"):
        net = PoseCNN(3, in_channels=6, fc_dim=256)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["features.0.weight"] == (64, 6, 3, 3)
    assert shapes["classifier.0.weight"] == (256, 25088) and shapes["classifier.3.weight"] == (256, 256)
    assert shapes["fc8.0.weight"] == (3, 256) and shapes["fc9.weight"] == (12, 256)
    assert shapes["fc10.weight"] == (12, 256) and shapes["conv_vertex_score.weight"] == (9, 128, 1, 1)


def test_module_structure_follows_torchvision_vgg16():
    with torch.device("meta"):
        net = PoseCNN(4, fc_dim=8)
    convs = [i for i, m in enumerate(net.features) if isinstance(m, nn.Conv2d)]
    pools = [i for i, m in enumerate(net.features) if isinstance(m, nn.MaxPool2d)]
    assert len(net.features) == 30
    assert convs == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert pools == [4, 9, 16, 23]
    assert all(isinstance(net.features[i + 1], nn.ReLU) for i in convs)
    assert [type(m) for m in net.classifier] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout]
    assert isinstance(net.fc8[1], nn.LeakyReLU) and net.fc8[1].negative_slope == 0.1
    assert isinstance(net.conv_score[1], nn.ReLU) and isinstance(net.conv_vertex_score, nn.Conv2d)
    assert (net.num_classes, net.in_channels, net.fc_dim) == (4, 3, 8)


def test_dense_shapes_and_taps(small_net):
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        scores, vertex, conv4, conv5 = small_net.dense(x)
        assert scores.shape == (2, 5, 64, 96) and vertex.shape == (2, 15, 64, 96)
        assert conv4.shape == (2, 512, 8, 12) and conv5.shape == (2, 512, 4, 6)
        assert scores.min() >= 0  # conv_score ends with a ReLU
        assert vertex.min() < 0   # the vertex branch has no activation
        torch.testing.assert_close(conv4, small_net.features[:23](x))
        torch.testing.assert_close(conv5, small_net.features(x))
        again = small_net(x)
    assert all(torch.equal(a, b) for a, b in zip((scores, vertex, conv4, conv5), again))


def test_dense_upsampling_is_bilinear_without_align_corners(small_net):
    """conv5's embedding goes x2 then x8 with align_corners=False; check against a hand-built chain."""
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        scores, _, conv4, conv5 = small_net.dense(x)
        up = torch.nn.functional.interpolate
        e = small_net.conv4_embed(conv4) + up(small_net.conv5_embed(conv5), size=conv4.shape[-2:],
                                              mode="bilinear", align_corners=False)
        expected = small_net.conv_score(up(e, size=(32, 48), mode="bilinear", align_corners=False))
    torch.testing.assert_close(scores, expected)


@pytest.mark.parametrize("shape", [(1, 3, 60, 96), (1, 3, 64, 90), (1, 4, 64, 96), (3, 64, 96)])
def test_dense_rejects_bad_input(small_net, shape):
    with pytest.raises(ValueError, match="image"):
        small_net.dense(torch.zeros(shape))


def test_heads_shapes_and_roi_features(small_net):
    x = torch.randn(2, 3, 64, 96)
    rois = torch.tensor([[0, 4.0, 8.0, 60.0, 50.0], [1, 0.0, 0.0, 95.0, 63.0], [1, 30.5, 20.2, 41.7, 33.9]])
    with torch.no_grad():
        _, _, conv4, conv5 = small_net.dense(x)
        cls, deltas = small_net.box_head(conv4, conv5, rois)
        quat = small_net.rotation_head(conv4, conv5, rois)
        feats = small_net.roi_features(conv4, conv5, rois)
        pooled = roi_max_pool_torch(conv4, rois, 7, 1 / 8) + roi_max_pool_torch(conv5, rois, 7, 1 / 16)
        expected = small_net.classifier(pooled.flatten(1))
    assert cls.shape == (3, 5) and deltas.shape == (3, 20) and quat.shape == (3, 20) and feats.shape == (3, 64)
    torch.testing.assert_close(feats, expected)
    torch.testing.assert_close(quat, small_net.fc10(feats))
    torch.testing.assert_close(cls, torch.nn.functional.leaky_relu(small_net.fc8[0](feats), 0.1))
    with torch.no_grad():
        empty = small_net.box_head(conv4, conv5, torch.zeros(0, 5))
    assert empty[0].shape == (0, 5) and empty[1].shape == (0, 20)


def test_gradients_reach_trunk_and_heads():
    torch.manual_seed(1)
    net = PoseCNN(4, fc_dim=32).train()
    x = torch.randn(1, 3, 64, 64)
    rois = torch.tensor([[0, 8.0, 8.0, 56.0, 56.0], [0, 0.0, 16.0, 40.0, 63.0]])
    scores, vertex, conv4, conv5 = net.dense(x)
    cls, deltas = net.box_head(conv4, conv5, rois)
    quat = net.rotation_head(conv4, conv5, rois)
    (scores.mean() + vertex.mean() + cls.sum() + deltas.sum() + quat.sum()).backward()
    for name in ("features.0.weight", "fc10.weight", "fc8.0.weight", "classifier.0.weight",
                 "conv_vertex_score.weight", "conv4_embed.0.weight"):
        grad = dict(net.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_freeze_early_convs():
    net = PoseCNN(3, fc_dim=8)
    net.freeze_early_convs()
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {f"features.{i}.{k}" for i in (0, 2, 5, 7, 10, 12, 14) for k in ("weight", "bias")}
    net.freeze_early_convs(False)
    assert all(p.requires_grad for p in net.parameters())


def test_rgbd_network_runs():
    net = PoseCNN(3, in_channels=6, fc_dim=16).eval()
    with torch.no_grad():
        scores, vertex, conv4, conv5 = net.dense(torch.randn(1, 6, 32, 32))
        quat = net.rotation_head(conv4, conv5, torch.tensor([[0, 2.0, 2.0, 30.0, 28.0]]))
    assert scores.shape == (1, 3, 32, 32) and vertex.shape == (1, 9, 32, 32) and quat.shape == (1, 12)
    with pytest.raises(ValueError, match="6"):
        net.dense(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("kwargs,word", [({"num_classes": 1}, "num_classes"),
                                         ({"num_classes": 3, "in_channels": 0}, "in_channels"),
                                         ({"num_classes": 3, "fc_dim": 2.5}, "fc_dim")])
def test_constructor_validates(kwargs, word):
    with pytest.raises(ValueError, match=word):
        PoseCNN(**kwargs)


def test_normalize_bgr_uint8_and_float():
    img = np.zeros((2, 3, 3), dtype=np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 255, 51, 0  # B, G, R
    x = normalize_bgr(img)
    assert x.shape == (1, 3, 2, 3) and x.dtype == torch.float32
    means = PIXEL_MEANS_BGR
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([1 - means[0], 0.2 - means[1], -means[2]]))
    assert abs(means[0] - 102.98 / 255) < 1e-12 and abs(means[2] - 122.77 / 255) < 1e-12
    chw = torch.from_numpy(img).permute(2, 0, 1).float().div(255).unsqueeze(0).repeat(2, 1, 1, 1)
    torch.testing.assert_close(normalize_bgr(chw, channels_last=False), x.repeat(2, 1, 1, 1))
    with pytest.raises(ValueError, match="channels"):
        normalize_bgr(np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(TypeError, match="uint8 or floating"):
        normalize_bgr(np.zeros((4, 4, 3), dtype=np.int32))


def test_parts_name_trunk_convs_like_vgg_and_train_only_freezes_the_rest():
    net = PoseCNN(3, fc_dim=8)
    parts = net.parts()
    assert parts["conv1_1"] is net.features[0] and parts["conv4_3"] is net.features[21]
    assert parts["conv5_3"] is net.features[28] and parts["fc10"] is net.fc10
    assert "dropout" not in parts and "features" not in parts  # no parameters / not a part of its own
    net.train_only(["conv5_3", "fc10"])
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trained == {"features.28.weight", "features.28.bias", "fc10.weight", "fc10.bias"}
    with pytest.raises(ValueError, match=r"unknown network part\(s\) \['conv5_4'\]"):
        net.train_only(["conv5_4"])
