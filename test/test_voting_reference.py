"""Tests of the PyTorch reference Hough voting (posecnn_core.voting): PoseCNN-PyTorch's rules, one by one on
hand-worked fields, and the whole kernel against an independent transcription (test/_voting_helpers.pt_voting)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _voting_helpers import make_K, pt_voting, pt_scene, render_instances  # noqa: E402

from posecnn_core.voting import (VotingOutput, VotingParams, expand_training_rois, hough_voting,  # noqa: E402
                                 project_threshold, vote_counts)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add contention on a shared machine (restored afterwards)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


# ----------------------------------------------------------------------------------------------------------------
# hand-worked single-voter fields: fx = fy = 100, depth 1 m, a class box 0.1 m wide -> projected width 10 px


def _one_voter(H: int, W: int, x: int, y: int, direction: tuple[float, float], depth: float,
               extent: tuple[float, float, float]) -> tuple[torch.Tensor, ...]:
    labels = torch.zeros(1, H, W, dtype=torch.int64)
    labels[0, y, x] = 1
    vertex = torch.zeros(1, 6, H, W)
    vertex[0, 3, y, x], vertex[0, 4, y, x] = direction
    vertex[0, 5, y, x] = math.log(depth)
    extents = torch.tensor([[0.0, 0.0, 0.0], list(extent)])
    return labels, vertex, make_K(100.0, 100.0, 20.0, 15.0), extents


ONE = VotingParams(label_threshold=0, skip_pixels=1, check_same_label=False)


def test_project_threshold_hand_worked() -> None:
    f = torch.tensor(100.0)
    # w = 100·0.1/1 + 1 = 11 -> thr = 6.6; the z extent makes the near face (z = 0.8) project 12.5 + 1 wide
    thr = project_threshold(torch.tensor([0.1, 0.1, 0.0]), torch.tensor(1.0), f, f, f * 0.2, f * 0.15, 0.6)
    assert float(thr) == pytest.approx(6.6, abs=1e-5)
    thr = project_threshold(torch.tensor([0.1, 0.1, 0.4]), torch.tensor(1.0), f, f, f * 0.2, f * 0.15, 0.6)
    assert float(thr) == pytest.approx(0.6 * 13.5, abs=1e-5)
    assert thr.dtype == torch.float32


def test_window_is_a_square_not_a_disk() -> None:
    labels, vertex, K, ext = _one_voter(30, 30, 10, 10, (math.sqrt(0.5), math.sqrt(0.5)), 1.0, (0.1, 0.1, 0.0))
    V = vote_counts(labels, vertex, K, ext, ONE)[0, 1]
    # thr = 6.6: the diagonal cell (16, 16) is 8.5 px away (outside a disk of 6.6) but |dx|, |dy| = 6 < 6.6
    assert int(V[16, 16]) == 1
    assert int(V[17, 17]) == 0 and int(V[16, 17]) == 0 and int(V[17, 16]) == 0
    assert int(V[10, 10]) == 0  # the voter's own cell never gets its vote


def test_plus_one_and_strict_comparison() -> None:
    labels, vertex, K, ext = _one_voter(20, 30, 10, 10, (1.0, 0.0), 1.0, (0.1, 0.1, 0.0))
    V = vote_counts(labels, vertex, K, ext, ONE)[0, 1]
    # thr = 0.6·(10 + 1) = 6.6: dx = 6 votes (without the +1, thr = 6 and |dx| < 6 would exclude it)
    assert [int(V[10, x]) for x in range(11, 18)] == [1, 1, 1, 1, 1, 1, 0]
    # exactly at the threshold: w = 10·(1/1.2)... use extents giving thr = 6 exactly: 0.6·(w+1) = 6 -> w = 9
    labels, vertex, K, ext = _one_voter(20, 30, 10, 10, (1.0, 0.0), 1.0, (0.09, 0.09, 0.0))
    V = vote_counts(labels, vertex, K, ext, ONE)[0, 1]
    thr = float(project_threshold(ext[1], torch.tensor(1.0), K[0, 0], K[1, 1], K[0, 2], K[1, 2], 0.6))
    assert thr == pytest.approx(6.0, abs=1e-5)
    reach = max(x - 10 for x in range(11, 30) if int(V[10, x]) == 1)
    assert reach == (5 if thr <= 6.0 else 6)  # |dx| < thr is strict


def test_z_extent_widens_the_window() -> None:
    flat = _one_voter(20, 30, 10, 10, (1.0, 0.0), 1.0, (0.1, 0.1, 0.0))
    deep = _one_voter(20, 30, 10, 10, (1.0, 0.0), 1.0, (0.1, 0.1, 0.4))
    Vf = vote_counts(*flat, ONE)[0, 1]
    Vd = vote_counts(*deep, ONE)[0, 1]
    # thr 6.6 -> reach 6; with the near face at 0.8 m: thr = 0.6·13.5 = 8.1 -> reach 8
    assert int(Vf[10, 16]) == 1 and int(Vf[10, 17]) == 0
    assert int(Vd[10, 18]) == 1 and int(Vd[10, 19]) == 0


def test_cone_cells_of_one_voter() -> None:
    labels, vertex, K, ext = _one_voter(20, 30, 10, 10, (1.0, 0.0), 1.0, (0.1, 0.1, 0.0))
    V = vote_counts(labels, vertex, K, ext, ONE)[0, 1]
    cells = {(int(x), int(y)) for y, x in torch.nonzero(V)}
    # cos > 0.9 within |dx|, |dy| <= 6: (2, 1) has cos 0.894, (3, 1) 0.949, (4, 2) 0.894, (5, 2) 0.928
    expect = {(11, 10), (12, 10), (13, 9), (13, 10), (13, 11), (14, 9), (14, 10), (14, 11)}
    expect |= {(x, y) for x in (15, 16) for y in range(8, 13)}
    assert cells == expect


def test_tie_goes_to_the_larger_linear_index() -> None:
    labels, vertex, K, ext = _one_voter(20, 30, 10, 10, (1.0, 0.0), 1.0, (0.1, 0.1, 0.0))
    p = VotingParams(label_threshold=0, skip_pixels=1, check_same_label=False, vote_threshold=0)
    out = hough_voting(labels, vertex, K, ext, p, backend="torch")
    # every cone cell has 1 vote: in test mode only the bottom-right one, (16, 12), is a peak
    assert out.centers.tolist() == [[16.0, 12.0]]
    # its box: the voter is 6 left and 2 up -> bb_w = 12, bb_h = 4; votes / (12·4) >= 0.01
    assert out.rois.tolist() == [[0.0, 1.0, 10.0, 10.0, 22.0, 14.0, 1.0]]
    assert out.translations[0, 2].item() == pytest.approx(1.0)
    assert out.translations[0].tolist() == pytest.approx([(16 - 20) / 100.0, (12 - 15) / 100.0, 1.0])
    # training mode keeps ties: every cone cell with a non-degenerate box (dy != 0), each with 8 copies
    train = hough_voting(labels, vertex, K, ext, p, backend="torch", mode="train")
    peaks = {(int(x), int(y)) for x, y in train.centers[::9].tolist()}
    assert peaks == {(x, y) for x in (13, 14, 15, 16) for y in range(8, 13) if y != 10 and (x >= 15 or abs(y - 10) == 1)}
    assert train.rois.shape[0] == 9 * len(peaks)


def test_same_label_sampling_truncates_and_counts_the_cell() -> None:
    H, W = 14, 12
    labels = torch.zeros(1, H, W, dtype=torch.int64)
    vertex = torch.zeros(1, 6, H, W)
    vertex[0, 5] = 0.0  # depth 1 m
    ext = torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.2, 0.0]])  # thr = 0.6·21 = 12.6
    K = make_K(100.0, 100.0, 6.0, 7.0)
    # voter (2, 2) aims at cell (5, 9): PT's samples int(2 + i/10·3), int(2 + i/10·7), i = 1..10, are
    # (2,2) (2,3) (2,4) (3,4) (3,5) (3,6) (4,6) (4,7) (4,8) (5,9)
    samples = [(2, 2), (2, 3), (2, 4), (3, 4), (3, 5)]
    for x, y in samples:
        labels[0, y, x] = 1  # the other labelled pixels have zero direction: they never vote
    vertex[0, 3, 2, 2], vertex[0, 4, 2, 2] = 3.0 / math.sqrt(58.0), 7.0 / math.sqrt(58.0)
    p = VotingParams(label_threshold=0, skip_pixels=1)
    V = vote_counts(labels, vertex, K, ext, p)[0, 1]
    assert int(V[9, 5]) == 1  # 5 of 10 samples (rounding instead of truncation would find 3)
    labels[0, 5, 3] = 0  # 4 of 10: void
    assert int(vote_counts(labels, vertex, K, ext, p)[0, 1, 9, 5]) == 0
    labels[0, 9, 5] = 1  # the cell itself is the 10th sample: 5 of 10 again
    assert int(vote_counts(labels, vertex, K, ext, p)[0, 1, 9, 5]) == 1
    off = vote_counts(labels, vertex, K, ext, p, check_same_label=False)
    assert int(off[0, 1, 9, 5]) == 1


# ----------------------------------------------------------------------------------------------------------------
# the whole kernel against the independent transcription


def _as_peaks(out: VotingOutput) -> list[tuple]:
    rows = []
    for roi, ctr, tr in zip(out.rois.tolist(), out.centers.tolist(), out.translations.tolist()):
        b, c, x1, y1, x2, y2, votes = roi
        rows.append((int(b), int(c), int(ctr[0]), int(ctr[1]), int(votes), tr[2], x2 - x1, y2 - y1, roi, tr))
    return rows


def assert_matches_pt(out: VotingOutput, peaks: list[tuple], K: torch.Tensor) -> None:
    got = _as_peaks(out)
    assert [g[:5] for g in got] == [p[:5] for p in peaks]
    for g, p in zip(got, peaks):
        b, c, x, y, votes, depth, bw, bh = p
        assert g[5] == pytest.approx(depth, rel=1e-5)
        assert g[8][2:6] == pytest.approx([x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2], abs=0.01)
        kb = (K if K.dim() == 2 else K[b]).double()
        tz = g[9][2]
        assert g[9][0] == pytest.approx((x - float(kb[0, 2])) / float(kb[0, 0]) * tz, rel=1e-5, abs=1e-6)
        assert g[9][1] == pytest.approx((y - float(kb[1, 2])) / float(kb[1, 1]) * tz, rel=1e-5, abs=1e-6)


PT_CASES = {
    "default": VotingParams(label_threshold=20, skip_pixels=3, vote_threshold=3),
    "no_same_label": VotingParams(label_threshold=20, skip_pixels=3, vote_threshold=3, check_same_label=False),
    "train": VotingParams(label_threshold=20, skip_pixels=3, vote_threshold=3, mode="train"),
    "single": VotingParams(label_threshold=20, skip_pixels=2, vote_threshold=None),
    "capped": VotingParams(label_threshold=10, skip_pixels=2, vote_threshold=1, per_threshold=0.0, max_peaks=7),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", sorted(PT_CASES))
def test_reference_equals_pt_transcription(seed: int, case: str) -> None:
    p = PT_CASES[case]
    labels, vertex, K, extents = pt_scene(seed)
    V_pt, peaks = pt_voting(labels, vertex, K, extents, p)
    V = vote_counts(labels, vertex, K, extents, p, backend="torch")
    np.testing.assert_array_equal(V.numpy(), V_pt)
    out = hough_voting(labels, vertex, K, extents, p, backend="torch")
    if p.mode == "train":
        assert out.rois.shape[0] == 9 * len(peaks)
        out = VotingOutput(out.rois[::9], out.centers[::9], out.translations[::9])
    assert_matches_pt(out, peaks, K)
    assert len(peaks) > 0  # the comparison is not vacuous


@pytest.mark.parametrize("seed", [2, 5])
def test_quantised_directions_produce_ties_that_the_rule_breaks(seed: int) -> None:
    labels, vertex, K, extents = pt_scene(seed, quantise=True)
    p = VotingParams(label_threshold=20, skip_pixels=2, vote_threshold=2)
    train = VotingParams(label_threshold=20, skip_pixels=2, vote_threshold=2, mode="train")
    _, peaks = pt_voting(labels, vertex, K, extents, p)
    _, peaks_train = pt_voting(labels, vertex, K, extents, train)
    assert len(peaks_train) > len(peaks)  # there are ties, and test mode breaks them
    assert_matches_pt(hough_voting(labels, vertex, K, extents, p, backend="torch"), peaks, K)
    out = hough_voting(labels, vertex, K, extents, train, backend="torch")
    assert_matches_pt(VotingOutput(out.rois[::9], out.centers[::9], out.translations[::9]), peaks_train, K)


# ----------------------------------------------------------------------------------------------------------------
# behaviour on rendered objects, edge cases, validation

H, W, C = 96, 128, 5
K = make_K(300.0, 310.0, 62.5, 47.0)
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
    for inst in INSTANCES:
        i = _match(out, inst)
        tz = float(out.translations[i, 2])
        assert abs(tz - inst["depth"]) <= 1e-5 * inst["depth"]
        x, y = out.centers[i].double()
        assert float(out.translations[i, 0]) == pytest.approx(tz * (float(x) - 62.5) / 300.0, rel=1e-5, abs=1e-7)
        x1, y1, x2, y2, votes = out.rois[i, 2:].tolist()
        assert x1 < float(x) < x2 and y1 < float(y) < y2 and votes > 10
        assert x2 - x1 == pytest.approx(2 * (float(x) - x1))
    # output order: image, class, then row-major
    keys = [(int(r[1]), int(c[1]), int(c[0])) for r, c in zip(out.rois, out.centers)]
    assert keys == sorted(keys)


def test_single_instance_mode() -> None:
    labels, vertex = render_instances(H, W, C, INSTANCES[2:])
    out = hough_voting(labels, vertex, K, EXTENTS, backend="torch", label_threshold=100, vote_threshold=None)
    assert out.rois[:, 1].tolist() == [2.0, 3.0]
    V = vote_counts(labels, vertex, K, EXTENTS, label_threshold=100)
    for i, inst in enumerate(INSTANCES[2:]):
        assert _match(out, inst) == i
        assert int(out.rois[i, 6]) == int(V[0, inst["cls"]].max())


def test_noise_gives_nothing() -> None:
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, C, (1, H, W), generator=g)
    vertex = torch.randn(1, 3 * C, H, W, generator=g)
    vertex[:, 2::3] = math.log(1.5)
    out = hough_voting(labels, vertex, K, EXTENTS * 0.5, backend="torch")
    assert out.rois.shape == (0, 7) and out.centers.shape == (0, 2) and out.translations.shape == (0, 3)


def test_no_nms_inside_voting() -> None:
    """Two peaks of one class whose boxes overlap heavily are both returned (PT leaves NMS to post-processing)."""
    insts = [dict(cls=1, center=(50.0, 40.0), depth=0.8, shape=("disc", 10)),
             dict(cls=1, center=(62.0, 40.0), depth=0.8, shape=("disc", 10))]
    labels, vertex = render_instances(H, W, C, insts)
    out = hough_voting(labels, vertex, K, EXTENTS, backend="torch", label_threshold=50)
    assert out.centers.tolist() == [[51.0, 40.0], [61.0, 40.0]]
    from posecnn_core.boxes import box_iou

    # PT's keyframe evaluation NMS (IoU 0.5, +1 areas) would drop one of them: voting must not
    assert float(box_iou(out.rois[:1, 2:6], out.rois[1:, 2:6], plus_one=True)) > 0.5


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


def test_batch_and_peak_cap() -> None:
    insts = INSTANCES + [dict(inst, b=1) for inst in INSTANCES[:2]]
    labels, vertex = render_instances(H, W, C, insts, B=2)
    out = hough_voting(labels, vertex, K, EXTENTS, backend="torch", label_threshold=100)
    assert out.rois[:, 0].tolist() == [0.0] * 4 + [1.0] * 2
    # PT's cap: max_peaks // B per image, the first ones in (class, row-major) order
    capped = hough_voting(labels, vertex, K, EXTENTS, backend="torch", label_threshold=100, max_peaks=5)
    assert capped.rois[:, 0].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert torch.equal(capped.rois[:2], out.rois[:2]) and torch.equal(capped.rois[2:], out.rois[4:6])


def test_training_mode_emits_pt_shifted_copies() -> None:
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
    with pytest.raises(ValueError, match="mode"):
        VotingParams(mode="eval")
