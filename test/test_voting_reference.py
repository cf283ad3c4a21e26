"""Tests of the PyTorch reference Hough voting (posecnn_core.voting)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _voting_helpers import brute_vote_counts, make_K, random_scene, render_instances  # noqa: E402

from posecnn_core.voting import VotingOutput, VotingParams, hough_voting, nms, vote_counts  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add contention on a shared machine (restored afterwards)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


H, W, C = 96, 128, 5
K = make_K(300.0, 310.0, 62.5, 47.0)
# object sizes consistent with the rendered shapes: f * max(extent) / depth ~ the shape's diameter
EXTENTS = torch.tensor([[0, 0, 0], [0.065, 0.05, 0.04], [0.11, 0.08, 0.05], [0.054, 0.05, 0.03], [0.1, 0.1, 0.1]])

INSTANCES = [
    dict(cls=1, center=(25.0, 22.0), depth=0.8, shape=("disc", 12)),
    dict(cls=1, center=(95.0, 70.0), depth=1.3, shape=("disc", 8)),
    dict(cls=2, center=(70.0, 26.0), depth=1.1, shape=("rect", 55, 14, 86, 37)),
    dict(cls=3, center=(30.0, 72.0), depth=0.6, shape=("disc", 14)),
]


def _match(out: VotingOutput, inst: dict) -> int:
    hits = [i for i in range(out.rois.shape[0])
            if int(out.rois[i, 1]) == inst["cls"]
            and abs(float(out.centers[i, 0]) - inst["center"][0]) <= 1.0
            and abs(float(out.centers[i, 1]) - inst["center"][1]) <= 1.0]
    assert len(hits) == 1, (inst, out)
    return hits[0]


def test_recovers_instances() -> None:
    labels, vertex = render_instances(H, W, C, INSTANCES)
    out = hough_voting(labels, vertex, K, EXTENTS, backend="torch", label_threshold=100)
    assert isinstance(out, VotingOutput)
    assert out.rois.shape == (len(INSTANCES), 7) and out.rois.dtype == torch.float32
    assert out.centers.shape == (len(INSTANCES), 2) and out.translations.shape == (len(INSTANCES), 3)
    for inst in INSTANCES:
        i = _match(out, inst)
        tz = float(out.translations[i, 2])
        assert abs(tz - inst["depth"]) <= 0.01 * inst["depth"]
        x, y = out.centers[i].double()
        assert float(out.translations[i, 0]) == pytest.approx(tz * (float(x) - 62.5) / 300.0, rel=1e-5, abs=1e-7)
        assert float(out.translations[i, 1]) == pytest.approx(tz * (float(y) - 47.0) / 310.0, rel=1e-5, abs=1e-7)
        x1, y1, x2, y2, votes = out.rois[i, 2:].tolist()
        assert x1 < float(x) < x2 and y1 < float(y) < y2 and votes > 10
        assert x2 - x1 == pytest.approx(2 * (float(x) - x1))
    # output order: b, then class, then votes desc
    cls = out.rois[:, 1].tolist()
    assert cls == sorted(cls)
    two = out.rois[out.rois[:, 1] == 1, 6]
    assert float(two[0]) >= float(two[1])


def test_single_instance_mode() -> None:
    labels, vertex = render_instances(H, W, C, INSTANCES[2:])
    out = hough_voting(labels, vertex, K, EXTENTS, backend="torch", label_threshold=100, vote_threshold=None)
    assert out.rois[:, 1].tolist() == [2.0, 3.0]
    for inst in INSTANCES[2:]:
        i = _match(out, inst)
        assert abs(float(out.translations[i, 2]) - inst["depth"]) <= 0.01 * inst["depth"]
    V = vote_counts(labels, vertex, K, EXTENTS, label_threshold=100)
    for i in range(2):
        c = int(out.rois[i, 1])
        assert int(out.rois[i, 6]) == int(V[0, c].max())


def test_noise_gives_nothing() -> None:
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, C, (1, H, W), generator=g)
    vertex = torch.randn(1, 3 * C, H, W, generator=g)
    vertex[:, 2::3] = math.log(1.5)
    out = hough_voting(labels, vertex, K, EXTENTS * 0.5, backend="torch")
    assert out.rois.shape == (0, 7) and out.centers.shape == (0, 2) and out.translations.shape == (0, 3)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_interval_method_matches_brute_force(seed: int) -> None:
    labels, vertex, Kr, ext = random_scene(seed, B=2)
    for p in (VotingParams(label_threshold=0, skip_pixels=2),
              VotingParams(label_threshold=5, skip_pixels=1, inlier_threshold=0.0),
              VotingParams(label_threshold=0, skip_pixels=3, inlier_threshold=0.5, check_same_label=True)):
        V = vote_counts(labels, vertex, Kr, ext, p, backend="torch")
        assert V.dtype == torch.int32 and V.shape == (2, 4, 20, 24)
        np.testing.assert_array_equal(V.numpy(), brute_vote_counts(labels, vertex, Kr, ext, p))
    assert int(V.sum()) > 0


def test_empty_inputs() -> None:
    labels = torch.zeros(2, H, W, dtype=torch.int64)
    vertex = torch.randn(2, 3 * C, H, W)
    out = hough_voting(labels, vertex, K, EXTENTS, backend="torch")
    assert out.rois.shape == (0, 7) and out.rois.dtype == torch.float32
    assert int(vote_counts(labels, vertex, K, EXTENTS).abs().sum()) == 0
    # classes below the pixel threshold do not take part
    labels_small, vertex_small = render_instances(H, W, C, [dict(cls=2, center=(40.0, 40.0), depth=3.0,
                                                                  shape=("disc", 5))])
    assert hough_voting(labels_small, vertex_small, K, EXTENTS, backend="torch").rois.shape == (0, 7)
    small = hough_voting(labels_small, vertex_small, K, EXTENTS, backend="torch", label_threshold=10,
                         skip_pixels=1)
    assert small.rois.shape == (1, 7) and small.centers.tolist() == [[40.0, 40.0]]


def test_batch_and_max_instances() -> None:
    insts = INSTANCES + [dict(inst, b=1) for inst in INSTANCES[:2]]
    labels, vertex = render_instances(H, W, C, insts, B=2)
    out = hough_voting(labels, vertex, K, EXTENTS, backend="torch", label_threshold=100)
    assert out.rois[:, 0].tolist() == [0.0] * 4 + [1.0] * 2
    capped = hough_voting(labels, vertex, K, EXTENTS, backend="torch", label_threshold=100, max_instances=2)
    assert capped.rois[:, 0].tolist() == [0.0, 0.0, 1.0, 1.0]
    top2 = torch.sort(out.rois[:4, 6], descending=True).values[:2]
    assert sorted(capped.rois[:2, 6].tolist()) == sorted(top2.tolist())


def test_nms_hand_case() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 4], [5, 5, 5, 9]],
                         dtype=torch.float32)
    scores = torch.tensor([5.0, 9.0, 3.0, 9.0, 1.0])
    # order: 1 (9), 3 (9), 0 (5), 2 (3), 4 (1); IoU(1,0) = 81/119 > 0.5 -> 0 suppressed; IoU(1,3) = 27/113
    assert nms(boxes, scores, 0.5).tolist() == [1, 3, 2, 4]
    assert nms(boxes, scores, 0.2).tolist() == [1, 2, 4]  # 27/113 > 0.2
    assert nms(boxes, scores, 0.7).tolist() == [1, 3, 0, 2, 4]
    assert nms(boxes[:0], scores[:0], 0.5).numel() == 0


def test_same_label_rule_on_occluded_centre() -> None:
    obj = dict(cls=1, center=(60.0, 48.0), depth=0.42, shape=("disc", 24))
    labels, vertex = render_instances(H, W, C, [obj])
    occluded = ((torch.arange(W) - 60.0).abs() <= 14).unsqueeze(0) & ((torch.arange(H) - 48.0).abs() <= 14).unsqueeze(1)
    labels[0][occluded] = 4
    # a narrow cone: only distant voters remain, the default cone would leave a plateau of several pixels
    off = hough_voting(labels, vertex, K, EXTENTS, backend="torch", inlier_threshold=0.998)
    on = hough_voting(labels, vertex, K, EXTENTS, backend="torch", inlier_threshold=0.998, check_same_label=True)
    _match(off, obj)
    near = (on.rois[:, 1] == 1) & ((on.centers - torch.tensor([60.0, 48.0])).abs().max(1).values <= 3)
    assert not bool(near.any())


def test_input_validation() -> None:
    labels, vertex = render_instances(H, W, C, INSTANCES[:1])
    with pytest.raises(ValueError, match="extents"):
        hough_voting(labels, vertex, K, EXTENTS[:4], backend="torch")
    with pytest.raises(ValueError, match="vertex"):
        hough_voting(labels, vertex[:, :, :-1], K, EXTENTS, backend="torch")
    with pytest.raises(TypeError, match="labels"):
        hough_voting(labels.float(), vertex, K, EXTENTS, backend="torch")
    with pytest.raises(ValueError, match="intrinsics"):
        hough_voting(labels, vertex, torch.zeros(3, 3), EXTENTS, backend="torch")
    with pytest.raises(ValueError, match="intrinsics"):
        hough_voting(labels, vertex, K * float("nan"), EXTENTS, backend="torch")
    with pytest.raises(ValueError, match="intrinsics"):
        hough_voting(labels, vertex, K.expand(3, 3, 3), EXTENTS, backend="torch")
    with pytest.raises(ValueError, match="window"):
        hough_voting(labels, vertex, K, EXTENTS, backend="torch", window=4)
    with pytest.raises(TypeError, match="unknown"):
        hough_voting(labels, vertex, K, EXTENTS, backend="torch", windw=5)
    with pytest.raises(ValueError, match="backend"):
        hough_voting(labels, vertex, K, EXTENTS, backend="gpu")
    with pytest.raises(ValueError, match="inlier_threshold"):
        VotingParams(inlier_threshold=1.0)


def test_training_mode_emits_pt_shifted_copies():
    from posecnn_core.voting import VotingOutput, expand_training_rois

    out = VotingOutput(torch.tensor([[0, 2, 10.0, 20.0, 30.0, 60.0, 42.0]]), torch.tensor([[20.0, 40.0]]),
                       torch.tensor([[0.1, 0.2, 0.9]]))
    ex = expand_training_rois(out)
    assert ex.rois.shape == (9, 7) and ex.centers.shape == (9, 2) and ex.translations.shape == (9, 3)
    assert ex.rois[0].tolist() == out.rois[0].tolist()
    # w = 20, h = 40: shifts of 1 and 2 pixels in PT's order (-,-), (+,-), (-,+), (+,+), (0,-), (-,0), (0,+), (+,0)
    expect = [(-1, -2), (1, -2), (-1, 2), (1, 2), (0, -2), (-1, 0), (0, 2), (1, 0)]
    for row, (dx, dy) in zip(ex.rois[1:], expect):
        assert row[2:6].tolist() == pytest.approx([10 + dx, 20 + dy, 30 + dx, 60 + dy])
        assert row[:2].tolist() == [0, 2] and row[6].item() == 42.0
    assert torch.equal(ex.translations, out.translations.expand(9, 3))
