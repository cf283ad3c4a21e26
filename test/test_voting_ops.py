"""The compiled Hough voting operators (cuda_ops/csrc/hough_voting_*) against the PyTorch reference."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _voting_helpers import make_K, random_scene, render_instances  # noqa: E402

from posecnn_core.ops.extension import has_op, load_error, load_ops  # noqa: E402
from posecnn_core.voting import VotingParams, hough_voting, vote_counts  # noqa: E402

if not load_ops() or not has_op("hough_voting", "cpu"):
    pytest.skip(f"posecnn operator library unavailable: {load_error()}", allow_module_level=True)

CUDA = torch.cuda.is_available() and has_op("hough_voting", "cuda")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add contention on a shared machine (restored afterwards)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _instance_scene(seed: int, B: int = 2, H: int = 48, W: int = 64, C: int = 5, noise: float = 0.15):
    """Several instances per image (two of one class, some on the border), noisy directions and depths."""
    g = torch.Generator().manual_seed(seed)
    insts = []
    for b in range(B):
        for k in range(4):
            cls = 1 + (k % (C - 1)) if k < 3 else 1
            cx = float(torch.rand(1, generator=g)) * (W - 1)
            cy = float(torch.rand(1, generator=g)) * (H - 1)
            if k == 2:
                cx = 0.0  # touches the left border
            radius = 4.0 + 6.0 * float(torch.rand(1, generator=g))
            depth = 0.5 + float(torch.rand(1, generator=g))
            insts.append(dict(b=b, cls=cls, center=(cx, cy), depth=depth, shape=("disc", radius)))
    labels, vertex = render_instances(H, W, C, insts, B=B)
    vertex[:, 0::3] += noise * torch.randn(vertex[:, 0::3].shape, generator=g)
    vertex[:, 1::3] += noise * torch.randn(vertex[:, 1::3].shape, generator=g)
    vertex[:, 2::3] += 0.05 * torch.randn(vertex[:, 2::3].shape, generator=g)
    labels[0, 0, W - 1] = C - 1  # a one-pixel object in the corner
    vertex[0, 3 * (C - 1), 0, W - 1] = -1.0
    extents = torch.full((C, 3), 0.05)
    extents[0] = 0
    K = torch.stack([make_K(80.0, 82.0, W / 2 - 0.3, H / 2 + 0.4), make_K(90.0, 85.0, W / 2, H / 2)])[:B]
    return labels, vertex, K, extents


SCENES = {
    "random": lambda s: random_scene(s, B=2, H=30, W=40),
    "instances": lambda s: _instance_scene(s),
}

PARAMS = {
    "multi": VotingParams(label_threshold=0, skip_pixels=2, vote_threshold=3, per_threshold=0.0),
    "multi_default_thr": VotingParams(label_threshold=20, skip_pixels=1),
    "single": VotingParams(label_threshold=0, skip_pixels=3, vote_threshold=None),
    "wide_cone": VotingParams(label_threshold=0, skip_pixels=1, inlier_threshold=0.0, vote_threshold=5,
                              max_instances=3, nms_iou=0.3),
    "same_label": VotingParams(label_threshold=0, skip_pixels=2, vote_threshold=2, check_same_label=True,
                               same_label_samples=6, same_label_fraction=0.5),
    "same_label_single": VotingParams(label_threshold=0, skip_pixels=2, vote_threshold=None, check_same_label=True),
}


def _assert_same(a, b) -> None:
    assert a.rois.shape == b.rois.shape, (a.rois, b.rois)
    torch.testing.assert_close(a.rois, b.rois, rtol=0, atol=0)
    torch.testing.assert_close(a.centers, b.centers, rtol=0, atol=0)
    torch.testing.assert_close(a.translations, b.translations, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("scene", sorted(SCENES))
@pytest.mark.parametrize("pname", sorted(PARAMS))
def test_cpp_equals_reference(scene: str, pname: str) -> None:
    p = PARAMS[pname]
    found = 0
    for seed in range(2):
        labels, vertex, K, extents = SCENES[scene](seed)
        V_ref = vote_counts(labels, vertex, K, extents, p, backend="torch")
        V_cpp = vote_counts(labels, vertex, K, extents, p, backend="cpp")
        assert V_cpp.dtype == torch.int32 and V_cpp.shape == V_ref.shape
        assert torch.equal(V_cpp, V_ref)
        ref = hough_voting(labels, vertex, K, extents, p, backend="torch")
        cpp = hough_voting(labels, vertex, K, extents, p, backend="cpp")
        _assert_same(ref, cpp)
        found += ref.rois.shape[0]
    if pname != "same_label":
        assert found > 0  # the comparison is not vacuous


def test_edge_cases() -> None:
    H, W, C = 16, 20, 4
    extents = torch.tensor([[0, 0, 0], [0.1, 0.1, 0.1], [0.05, 0.05, 0.05], [0.2, 0.1, 0.1]])
    K = make_K(50.0, 50.0, 10.0, 8.0)
    p = VotingParams(label_threshold=0, skip_pixels=1, vote_threshold=0, per_threshold=0.0)
    # all background
    labels = torch.zeros(1, H, W, dtype=torch.int64)
    vertex = torch.randn(1, 3 * C, H, W)
    for backend in ("torch", "cpp"):
        out = hough_voting(labels, vertex, K, extents, p, backend=backend)
        assert out.rois.shape == (0, 7) and out.centers.shape == (0, 2) and out.translations.shape == (0, 3)
        assert int(vote_counts(labels, vertex, K, extents, p, backend=backend).abs().sum()) == 0
    # one-pixel objects, at the border, labels outside [0, C), non-finite and zero directions
    labels[0, 0, 0] = 1
    labels[0, H - 1, W - 1] = 2
    labels[0, 5, 0:4] = 3
    labels[0, 7, 7] = 9
    labels[0, 8, 8] = -1
    vertex[0, 9, 5, 1] = float("nan")
    vertex[0, 9:11, 5, 2] = 0.0
    vertex[0, 11, 5, 3] = -800.0  # depth underflows to 0: no vote
    vertex[:, 2::3] = vertex[:, 2::3].clamp(-1, 1)
    for q in (p, VotingParams(label_threshold=0, skip_pixels=1, vote_threshold=None)):
        ref = hough_voting(labels, vertex, K, extents, q, backend="torch")
        _assert_same(ref, hough_voting(labels, vertex, K, extents, q, backend="cpp"))
        assert torch.equal(vote_counts(labels, vertex, K, extents, q, backend="torch"),
                           vote_counts(labels, vertex, K, extents, q, backend="cpp"))
    # a 1 x 1 image
    one = hough_voting(labels[:, :1, :1], vertex[:, :, :1, :1], K, extents, p, backend="cpp")
    assert one.rois.shape == (0, 7)


def test_auto_backend_uses_extension_and_matches() -> None:
    labels, vertex, K, extents = _instance_scene(5)
    p = PARAMS["multi"]
    _assert_same(hough_voting(labels, vertex, K, extents, p, backend="torch"),
                 hough_voting(labels, vertex, K, extents, p, backend="auto"))
    with pytest.raises(RuntimeError):  # the operator checks its own arguments too
        torch.ops.posecnn.hough_voting(labels.int(), vertex, K.double(), extents.double(), 0, 1, 0.9, 3, 0.0, 7,
                                       128, 0.5, False, 10, 0.5, 0.6)


def test_many_candidates_and_plateaus() -> None:
    """Constant fields give plateaus of equal votes: every plateau cell is a window maximum."""
    H, W, C = 24, 32, 3
    labels = torch.ones(1, H, W, dtype=torch.int64)
    labels[0, :, W // 2:] = 2
    vertex = torch.zeros(1, 3 * C, H, W)
    vertex[0, 3] = 1.0
    vertex[0, 7] = -1.0
    vertex[0, 5] = vertex[0, 8] = math.log(0.5)
    extents = torch.tensor([[0, 0, 0], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]])
    K = make_K(40.0, 40.0, 16.0, 12.0)
    p = VotingParams(label_threshold=0, skip_pixels=1, vote_threshold=1, per_threshold=0.0, nms_iou=1.0,
                     max_instances=1000)
    ref = hough_voting(labels, vertex, K, extents, p, backend="torch")
    assert ref.rois.shape[0] > 10
    _assert_same(ref, hough_voting(labels, vertex, K, extents, p, backend="cpp"))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device and the CUDA operators")
@pytest.mark.parametrize("scene", sorted(SCENES))
@pytest.mark.parametrize("pname", sorted(PARAMS))
def test_cuda_equals_cpu(scene: str, pname: str) -> None:
    p = PARAMS[pname]
    for seed in range(2):
        labels, vertex, K, extents = SCENES[scene](seed)
        dev = [t.cuda() for t in (labels, vertex, K, extents)]
        assert torch.equal(vote_counts(*dev, p, backend="cuda").cpu(),
                           vote_counts(labels, vertex, K, extents, p, backend="cpp"))
        cuda = hough_voting(*dev, p, backend="cuda")
        assert cuda.rois.device.type == "cuda"
        _assert_same(hough_voting(labels, vertex, K, extents, p, backend="cpp"),
                     type(cuda)(*(t.cpu() for t in cuda)))
