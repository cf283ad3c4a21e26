"""The compiled Hough voting operators (cuda_ops/csrc/hough_voting_*) against the PyTorch reference."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _voting_helpers import make_K, pt_scene, pt_voting, random_scene, render_instances  # noqa: E402

from posecnn_core.ops.extension import _missing_toolchain, has_op, load_error, load_ops  # noqa: E402
from posecnn_core.voting import VotingOutput, VotingParams, hough_voting, vote_counts  # noqa: E402

if _missing_toolchain() is not None and not load_ops():
    pytest.skip(f"no C++ toolchain to build the operators: {_missing_toolchain()}", allow_module_level=True)


def test_operator_library_loads() -> None:
    """With a compiler present the library must build: a compile error fails here instead of skipping."""
    assert load_ops(), f"posecnn operator library failed to build or load: {load_error()}"
    assert has_op("hough_voting", "cpu") and has_op("hough_vote_counts", "cpu")

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
    "pt": lambda s: pt_scene(s),
    "pt_quantised": lambda s: pt_scene(s + 2, quantise=True),
    "random": lambda s: random_scene(s, B=2, H=30, W=40),
    "instances": lambda s: _instance_scene(s),
}

PARAMS = {
    "multi": VotingParams(label_threshold=0, skip_pixels=2, vote_threshold=3, per_threshold=0.0),
    "multi_default_thr": VotingParams(label_threshold=20, skip_pixels=1),
    "single": VotingParams(label_threshold=0, skip_pixels=3, vote_threshold=None),
    "wide_cone": VotingParams(label_threshold=0, skip_pixels=1, inlier_threshold=0.0, vote_threshold=5,
                              max_peaks=3, check_same_label=False),
    "no_same_label": VotingParams(label_threshold=0, skip_pixels=2, vote_threshold=2, check_same_label=False),
    "same_label_6": VotingParams(label_threshold=0, skip_pixels=2, vote_threshold=2, same_label_samples=6,
                                 same_label_fraction=0.5),
    "single": VotingParams(label_threshold=0, skip_pixels=2, vote_threshold=None),
    "train": VotingParams(label_threshold=0, skip_pixels=2, vote_threshold=2, mode="train"),
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
    assert found > 0  # the comparison is not vacuous


@pytest.mark.parametrize("seed", [0, 1])
def test_cpp_equals_pt_transcription(seed: int) -> None:
    for p in (VotingParams(label_threshold=20, skip_pixels=3, vote_threshold=3),
              VotingParams(label_threshold=20, skip_pixels=2, vote_threshold=2, mode="train")):
        labels, vertex, K, extents = pt_scene(seed + 5, quantise=seed == 1)
        V_pt, peaks = pt_voting(labels, vertex, K, extents, p)
        assert torch.equal(vote_counts(labels, vertex, K, extents, p, backend="cpp"), torch.from_numpy(V_pt).int())
        out = hough_voting(labels, vertex, K, extents, p, backend="cpp")
        step = 9 if p.mode == "train" else 1
        got = [(int(r[0]), int(r[1]), int(c[0]), int(c[1]), int(r[6]))
               for r, c in zip(out.rois[::step].tolist(), out.centers[::step].tolist())]
        assert got == [pk[:5] for pk in peaks] and len(peaks) > 0


def test_edge_cases() -> None:
    H, W, C = 16, 20, 4
    extents = torch.tensor([[0, 0, 0], [0.1, 0.1, 0.1], [0.05, 0.05, 0.05], [0.2, 0.1, 0.1]])
    K = make_K(50.0, 50.0, 10.0, 8.0)
    p = VotingParams(label_threshold=0, skip_pixels=1, vote_threshold=0, per_threshold=0.0, check_same_label=False)
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
    for q in (p, VotingParams(label_threshold=0, skip_pixels=1, vote_threshold=None),
              VotingParams(label_threshold=0, skip_pixels=1, vote_threshold=0, per_threshold=0.0)):
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
                                       128, True, False, 10, 0.5, 0.6)


def test_many_candidates_and_plateaus() -> None:
    """Constant fields give plateaus of equal votes: in training mode every plateau cell is a peak, in test mode
    the tie rule keeps the bottom-right ones."""
    H, W, C = 24, 32, 3
    labels = torch.ones(1, H, W, dtype=torch.int64)
    labels[0, :, W // 2:] = 2
    vertex = torch.zeros(1, 3 * C, H, W)
    vertex[0, 3] = 1.0
    vertex[0, 7] = -1.0
    vertex[0, 5] = vertex[0, 8] = math.log(0.5)
    extents = torch.tensor([[0, 0, 0], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]])
    K = make_K(40.0, 40.0, 16.0, 12.0)
    found = {}
    for mode in ("train", "test"):
        p = VotingParams(label_threshold=0, skip_pixels=1, vote_threshold=1, per_threshold=0.0, max_peaks=1000,
                         check_same_label=False, mode=mode)
        ref = hough_voting(labels, vertex, K, extents, p, backend="torch")
        _assert_same(ref, hough_voting(labels, vertex, K, extents, p, backend="cpp"))
        found[mode] = ref.rois.shape[0] // (9 if mode == "train" else 1)
    assert found["train"] > 10 and 1 <= found["test"] < found["train"]


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


def _crowded_scene(seed: int):
    """Many overlapping discs whose voting windows are much larger than the objects, noisy directions."""
    g = torch.Generator().manual_seed(seed)
    H, W, C = 96, 128, 8
    insts = []
    for k in range(12):
        insts.append(dict(b=0, cls=1 + k % (C - 1), center=(float(torch.rand(1, generator=g)) * (W - 1),
                                                         float(torch.rand(1, generator=g)) * (H - 1)),
                          depth=0.6 + 0.6 * float(torch.rand(1, generator=g)),
                          shape=("disc", 6.0 + 12.0 * float(torch.rand(1, generator=g)))))
    labels, vertex = render_instances(H, W, C, insts, B=1)
    vertex[:, 0::3] += 0.2 * torch.randn(vertex[:, 0::3].shape, generator=g)
    vertex[:, 1::3] += 0.2 * torch.randn(vertex[:, 1::3].shape, generator=g)
    extents = torch.full((C, 3), 0.12)
    extents[0] = 0
    K = make_K(150.0, 150.0, W / 2, H / 2)[None]
    return labels, vertex, K, extents, VotingParams(label_threshold=0, skip_pixels=2, vote_threshold=3)


def _crowded_counts(seed: int) -> torch.Tensor:
    labels, vertex, K, extents, p = _crowded_scene(seed)
    return vote_counts(labels, vertex, K, extents, p, backend="cpp")


@pytest.mark.parametrize("seed", [7, 11])
def test_crowded_scene_vote_counts_equal_reference(seed: int) -> None:
    """Most cone cells of the crowded scene fail the same-label rule, and most of the CPU kernel's row spans cross
    class borders, where it counts the samples over the label runs; the counts stay exact."""
    labels, vertex, K, extents, p = _crowded_scene(seed)
    V_ref = vote_counts(labels, vertex, K, extents, p, backend="torch")
    assert int(V_ref.sum()) > 1000  # the comparison is not vacuous
    assert torch.equal(_crowded_counts(seed), V_ref)
    # PT's rules transcribed: seed 7 has a voter whose cosine sits on the inlier threshold, where torch.sqrt's
    # 1-ulp error once flipped the reference's vote
    assert torch.equal(torch.from_numpy(pt_voting(labels, vertex, K, extents, p)[0]).int(), V_ref)
    _assert_same(hough_voting(labels, vertex, K, extents, p, backend="torch"),
                 hough_voting(labels, vertex, K, extents, p, backend="cpp"))


def _fragmented_scene(seed: int):
    """One class broken into thin stripes and speckle (1-3 pixel runs), with a second class woven through it: every
    sample row a voter's cells read crosses many label runs, and the runs end exactly on cells of the span."""
    g = torch.Generator().manual_seed(seed)
    H, W, C = 72, 96, 3
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    widths = torch.randint(1, 4, (W,), generator=g)
    stripe = (torch.cumsum(widths, 0)[xx] // 3) % 2 == 0  # stripes of uneven width
    labels = torch.zeros(1, H, W, dtype=torch.int64)
    blob = ((xx - 48) ** 2 + (yy - 36) ** 2) < 30 ** 2
    labels[0][blob & stripe] = 1
    labels[0][blob & ~stripe & (torch.rand(H, W, generator=g) < 0.5)] = 2
    labels[0][torch.rand(H, W, generator=g) < 0.05] = 1  # speckle, also outside the blob
    vertex = torch.zeros(1, 3 * C, H, W)
    for c, (cx, cy) in ((1, (44.0, 33.0)), (2, (52.0, 40.0))):
        dx, dy = cx - xx.float(), cy - yy.float()
        n = torch.sqrt(dx * dx + dy * dy).clamp(min=1e-6)
        vertex[0, 3 * c] = dx / n + 0.1 * torch.randn(H, W, generator=g)
        vertex[0, 3 * c + 1] = dy / n + 0.1 * torch.randn(H, W, generator=g)
        vertex[0, 3 * c + 2] = math.log(0.7)
    extents = torch.full((C, 3), 0.15)
    extents[0] = 0
    K = make_K(200.0, 200.0, W / 2, H / 2)[None]
    return labels, vertex, K, extents, VotingParams(label_threshold=0, skip_pixels=3, vote_threshold=3)


@pytest.mark.parametrize("seed", [0, 1])
def test_fragmented_labels_vote_counts_equal_reference(seed: int) -> None:
    """The CPU kernel counts the same-label samples of a whole row span over the label runs (one interval of cells
    per run and sample); with labels cut into 1-3 pixel runs the intervals are many and short, and the counts must
    still equal the reference cell by cell."""
    labels, vertex, K, extents, p = _fragmented_scene(seed)
    V_ref = vote_counts(labels, vertex, K, extents, p, backend="torch")
    V_cpp = vote_counts(labels, vertex, K, extents, p, backend="cpp")
    assert int(V_ref[0, 1].sum()) > 1000 and int(V_ref[0, 2].sum()) > 1000
    assert torch.equal(V_cpp, V_ref)
    # the same-label rule matters here: without it the counts differ
    p_off = VotingParams(label_threshold=0, skip_pixels=3, vote_threshold=3, check_same_label=False)
    assert not torch.equal(vote_counts(labels, vertex, K, extents, p_off, backend="cpp"), V_ref)


@pytest.mark.parametrize("seed", range(8))
def test_cpu_counts_equal_reference_under_other_parameters(seed: int) -> None:
    """The CPU kernel's shortcuts (span counting, certain intervals, the voter's safe radius) depend on the sample
    count, the fraction, the inlier threshold and the voter spacing; under random values of them the counts still
    equal the reference's, on random, crowded and fragmented scenes."""
    import random

    rng = random.Random(seed)
    scenes = [random_scene(seed, B=2, H=30, W=40)[:4], _crowded_scene(seed)[:4], _fragmented_scene(seed)[:4]]
    votes = 0
    for labels, vertex, K, extents in scenes:
        if K.dim() == 2:
            K = K[None].expand(labels.shape[0], 3, 3)
        p = VotingParams(label_threshold=0, skip_pixels=rng.choice([1, 2, 3]),
                         inlier_threshold=rng.choice([0.0, 0.3, 0.7, 0.9, 0.99]),
                         same_label_samples=rng.choice([1, 2, 3, 7, 10, 17]),
                         same_label_fraction=rng.choice([0.0, 0.1, 0.5, 0.6, 1.0]), vote_threshold=1)
        V_ref = vote_counts(labels, vertex, K, extents, p, backend="torch")
        assert torch.equal(vote_counts(labels, vertex, K, extents, p, backend="cpp"), V_ref), p
        votes += int(V_ref.sum())
    assert votes > 1000  # not vacuous


def test_portable_loops_give_the_same_counts(tmp_path: Path) -> None:
    """The CPU kernel's span counting uses AVX2 where the CPU has it; the portable loop (other CPUs; forced here by
    POSECNN_OPS_PORTABLE, in fresh processes) gives the same counts on the crowded scene."""
    code = ("import sys, torch\n"
            "sys.path[:0] = [sys.argv[1], sys.argv[1] + '/test']\n"
            "import test_voting_ops as t\n"
            "torch.save(t._crowded_counts(11), sys.argv[2])\n")
    root = Path(__file__).resolve().parents[1]
    out = {}
    for name, extra in (("default", {}), ("portable", {"POSECNN_OPS_PORTABLE": "1"})):
        env = {k: v for k, v in os.environ.items() if k != "POSECNN_OPS_PORTABLE"}
        path = tmp_path / f"counts_{name}.pt"
        subprocess.run([sys.executable, "-c", code, str(root), str(path)], check=True, env={**env, **extra})
        out[name] = torch.load(path)
    assert int(out["default"].sum()) > 1000
    assert torch.equal(out["default"], out["portable"])


def test_cpu_kernel_gives_the_same_counts_on_several_threads() -> None:
    """The CPU kernel runs its (class, row) tasks in parallel (OpenMP): the counts must not depend on it."""
    labels, vertex, K, extents = _instance_scene(3, B=2, H=64, W=96)
    p = VotingParams(label_threshold=0, skip_pixels=1, vote_threshold=3)
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = vote_counts(labels, vertex, K, extents, p, backend="cpp")
        torch.set_num_threads(2)
        two = vote_counts(labels, vertex, K, extents, p, backend="cpp")
    finally:
        torch.set_num_threads(prev)
    assert int(one.sum()) > 0 and torch.equal(one, two)

