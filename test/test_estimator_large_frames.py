"""PoseEstimator on a frame above max_input_pixels (the default, 1280x960): the network sees the frame downscaled with
the intrinsics scaled exactly, results come back in the frame's own pixels, and the downscale is logged once."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from posecnn_core.camera import scale_intrinsics
from posecnn_core.checkpoint import CheckpointMeta, save_checkpoint
from posecnn_core.estimator import EstimatorConfig, PoseEstimator
from posecnn_core.network import PoseCNN
from posecnn_core.objects import load_object_set
from posecnn_core.voting import VotingParams

DEMO_OBJECTS = Path(__file__).resolve().parents[1] / "config" / "objects" / "demo.yaml"


@pytest.fixture(scope="module")
def estimator(tmp_path_factory) -> PoseEstimator:
    objects = load_object_set(DEMO_OBJECTS)
    torch.manual_seed(0)
    net = PoseCNN(objects.num_classes, fc_dim=16, trunk_width=0.125)
    path = tmp_path_factory.mktemp("ckpt") / "narrow.pt"
    save_checkpoint(path, net, CheckpointMeta(num_classes=objects.num_classes, fc_dim=16, trunk_width=0.125,
                                              class_names=list(objects.class_names)))
    # random weights label nearly every pixel: few voters keep the test fast, and low thresholds still detect
    config = EstimatorConfig(voting=VotingParams(label_threshold=0, vote_threshold=0, per_threshold=0.0,
                                                 skip_pixels=200), score_threshold=0.0, max_instances=3)
    return PoseEstimator(path, objects, device="cpu", config=config)


def test_4000x3000_frame_is_downscaled_with_exact_intrinsics(estimator, monkeypatch, caplog) -> None:
    assert estimator.config.max_input_pixels == 1280 * 960  # the default
    W, H = 4000, 3000
    K = np.array([[3000.0, 0.0, 1999.5], [0.0, 2990.0, 1499.5], [0.0, 0.0, 1.0]])
    seen = []
    real_input = estimator._network_input

    def spy(rgb, K_net, depth, config=None):
        seen.append((rgb.shape, K_net.copy()))
        return real_input(rgb, K_net, depth, config)

    monkeypatch.setattr(estimator, "_network_input", spy)
    rgb = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="posecnn_core.estimator"):
        first = estimator.estimate(rgb, K)
        second = estimator.estimate(rgb, K)
    (shape, K_net), _ = seen
    assert shape == (960, 1280, 3)  # 12 Mpx -> exactly max_input_pixels, aspect ratio kept
    np.testing.assert_allclose(K_net, scale_intrinsics(K, 1280 / W, 960 / H), rtol=0, atol=1e-12)
    np.testing.assert_allclose(K_net[:2, :2], np.diag([3000.0 * 0.32, 2990.0 * 0.32]), atol=1e-9)
    for result in (first, second):
        assert result.label.shape == (H, W)  # mapped back to the frame's pixels
        assert result.objects, "permissive thresholds should yield detections"
        for obj in result.objects:
            assert 0 <= obj.roi[0] <= obj.roi[2] <= W - 1 and 0 <= obj.roi[1] <= obj.roi[3] <= H - 1
            assert 0 <= obj.center[0] < W and 0 <= obj.center[1] < H
    downscale = [r for r in caplog.records if "max_input_pixels" in r.getMessage()]
    assert len(downscale) == 1 and "4000x3000" in downscale[0].getMessage() \
        and "1280x960" in downscale[0].getMessage()  # logged once, not per frame


def test_the_limit_is_configurable_and_can_be_lifted(estimator, monkeypatch) -> None:
    import dataclasses

    seen = []
    real_input = estimator._network_input
    monkeypatch.setattr(estimator, "_network_input", lambda rgb, K, depth, config=None: seen.append(rgb.shape) or
                        real_input(rgb, K, depth, config))
    rgb = np.zeros((600, 800, 3), np.uint8)
    K = np.array([[700.0, 0, 399.5], [0, 700.0, 299.5], [0, 0, 1]])
    for limit in (640 * 480, None):
        monkeypatch.setattr(estimator, "config", dataclasses.replace(estimator.config, max_input_pixels=limit))
        assert estimator.estimate(rgb, K).label.shape == (600, 800)
    assert seen == [(480, 640, 3), (600, 800, 3)]
