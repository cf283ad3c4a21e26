"""The estimator's GPU path: its options on the CPU (where they must change nothing or fall back cleanly) and,
with a CUDA device and the CUDA operators, CUDA == CPU, CUDA graphs == eager, bf16 close to fp32, warm-up, and at
most two device→host synchronisations per frame (one inside the voting operator, one for the results)."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from posecnn_core.boxes import BoxCoder
from posecnn_core.camera import ReferenceCamera
from posecnn_core.checkpoint import CheckpointMeta, save_checkpoint
from posecnn_core.estimator import EstimatorConfig, PoseEstimator
from posecnn_core.inference_runtime import DenseRunner, HostCopies, StageClock
from posecnn_core.network import PoseCNN
from posecnn_core.objects import BACKGROUND, ObjectSet
from posecnn_core.ops.extension import has_op, load_ops
from posecnn_core.roi_pool import roi_max_pool
from posecnn_core.voting import VotingParams

ROOT = Path(__file__).resolve().parents[1]
C = 5
H, W = 96, 128
K = np.array([[150.0, 0.0, 63.5], [0.0, 150.0, 47.5], [0.0, 0.0, 1.0]])
CUDA = torch.cuda.is_available()
CUDA_OPS = CUDA and load_ops() and has_op("hough_voting", "cuda") and has_op("roi_max_pool_forward", "cuda")
needs_cuda = pytest.mark.skipif(not CUDA_OPS, reason="needs a CUDA device and the CUDA operators")


def _object_set() -> ObjectSet:
    names = [BACKGROUND] + [f"object_{c}" for c in range(1, C)]
    extents = np.array([[0, 0, 0]] + [[0.1, 0.08, 0.12]] * (C - 1), np.float32)
    points = [np.zeros((0, 3), np.float32)] + [
        ((np.random.default_rng(c).random((100, 3)) - 0.5) * extents[c]).astype(np.float32) for c in range(1, C)]
    return ObjectSet("gpu-test", names, points, extents, np.zeros(C, bool),
                     reference_camera=ReferenceCamera(150.0, 150.0))


@pytest.fixture(scope="module")
def objects() -> ObjectSet:
    return _object_set()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, objects) -> Path:
    torch.manual_seed(0)
    net = PoseCNN(C, fc_dim=32, trunk_width=0.25)
    path = tmp_path_factory.mktemp("gpu_ckpt") / "tiny.pt"
    save_checkpoint(path, net, CheckpointMeta(num_classes=C, fc_dim=32, trunk_width=0.25,
                                              class_names=list(objects.class_names)))
    return path


def _scene(instances: tuple[tuple[int, float, float, float], ...] = ((1, 40.0, 35.0, 0.6), (3, 90.0, 60.0, 0.8))):
    """Scores and an exact centre field for discs of (class, u, v, Tz)."""
    scores = torch.zeros(1, C, H, W)
    scores[0, 0] = 1.0
    vertex = torch.zeros(1, 3 * C, H, W)
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    for c, cu, cv, z in instances:
        inside = (u - cu) ** 2 + (v - cv) ** 2 < (0.4 * 150.0 * 0.12 / z) ** 2
        scores[0, c][inside] = 5.0
        d = torch.stack([cu - u, cv - v])
        d = d / d.norm(dim=0).clamp(min=1e-6)
        vertex[0, 3 * c][inside], vertex[0, 3 * c + 1][inside] = d[0][inside], d[1][inside]
        vertex[0, 3 * c + 2][inside] = math.log(z)
    return scores, vertex


def _install_scene(est: PoseEstimator, scene=None) -> None:
    """The real network runs; its semantic and centre outputs are replaced by the analytic scene."""
    real = est.net.dense
    s0, v0 = (t.to(est.device) for t in (scene or _scene()))

    def dense(x):
        scores, vertex, conv4, conv5 = real(x)
        return s0 + 1e-30 * scores, v0 + 1e-30 * vertex, conv4, conv5

    est.net.dense = dense


def _config(**changes) -> EstimatorConfig:
    return EstimatorConfig(voting=VotingParams(label_threshold=50), score_threshold=None, **changes)


def _images(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def _poses(result) -> list[tuple]:
    """By class (the scenes have one instance per class), so that close scores cannot reorder the comparison."""
    return sorted(((o.class_id, o.score, o.t.copy(), o.R.copy(), o.roi.copy()) for o in result.objects),
                  key=lambda p: p[0])


def _assert_same_poses(a, b, t_atol=1e-6, r_deg=1e-3, score_atol=1e-5, roi_atol=1e-3) -> None:
    assert [p[0] for p in a] == [p[0] for p in b]
    assert len(a) > 0
    for (ca, sa, ta, Ra, ba), (cb, sb, tb, Rb, bb) in zip(a, b):
        np.testing.assert_allclose(ta, tb, atol=t_atol)
        cos = np.clip((np.trace(Ra.T @ Rb) - 1) / 2, -1, 1)
        assert math.degrees(math.acos(cos)) <= r_deg
        assert abs(sa - sb) <= score_atol
        np.testing.assert_allclose(ba, bb, atol=roi_atol)


# ---------------------------------------------------------------------------------------------------------- CPU


def test_new_options_are_validated() -> None:
    with pytest.raises(ValueError, match="amp_dtype"):
        EstimatorConfig(amp_dtype="float8")
    for name in ("amp", "channels_last", "cuda_graph", "compile"):
        with pytest.raises(ValueError, match=name):
            EstimatorConfig(**{name: 1})
    cfg = EstimatorConfig()
    assert (cfg.amp, cfg.amp_dtype, cfg.channels_last, cfg.cuda_graph, cfg.compile) == (
        False, "bfloat16", True, False, False)


def test_cuda_only_options_change_nothing_on_cpu(checkpoint, objects, caplog) -> None:
    est = PoseEstimator(checkpoint, objects, device="cpu", config=_config())
    _install_scene(est)
    img = _images(1)[0]
    ref = est.estimate(img, K)
    assert list(ref.timings_ms) == ["preprocess", "network", "voting", "rotation"]
    est.config = _config(cuda_graph=True)
    with caplog.at_level(logging.WARNING, logger="posecnn_core.estimator"):
        got = est.estimate(img, K)
        est.estimate(img, K)
    assert sum("cuda_graph applies to CUDA devices only" in r.message for r in caplog.records) == 1
    _assert_same_poses(_poses(ref), _poses(got), t_atol=0, r_deg=0, score_atol=0, roi_atol=0)
    np.testing.assert_array_equal(ref.label, got.label)
    assert est._dense_runner.graphs == 0
    # amp is not CUDA-only any more: on the CPU it runs the dense network in bfloat16 (oneDNN), close to float32
    est.config = _config(amp=True)
    low = est.estimate(img, K)
    _assert_same_poses(_poses(ref), _poses(low), t_atol=5e-3, r_deg=2.0, score_atol=0.05, roi_atol=2.0)


def test_channels_last_option_switches_the_layout(checkpoint, objects) -> None:
    est = PoseEstimator(checkpoint, objects, device="cpu", config=_config())
    _install_scene(est)
    img = _images(1)[0]
    ref = est.estimate(img, K)
    assert est.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    est.config = _config(channels_last=False)
    got = est.estimate(img, K)
    assert est.net.features[0].weight.is_contiguous()
    assert not est.net.features[2].weight.is_contiguous(memory_format=torch.channels_last)
    _assert_same_poses(_poses(ref), _poses(got), t_atol=1e-6, r_deg=0.05, score_atol=1e-4, roi_atol=1e-2)
    est.config = _config()
    again = est.estimate(img, K)
    _assert_same_poses(_poses(ref), _poses(again), t_atol=0, r_deg=0, score_atol=0, roi_atol=0)


def test_warmup_runs_the_heads_too(checkpoint, objects, monkeypatch) -> None:
    est = PoseEstimator(checkpoint, objects, device="cpu", config=_config())
    calls = []
    real_box, real_rot = est.net.box_head, est.net.rotation_head
    monkeypatch.setattr(est.net, "box_head", lambda *a, **k: calls.append("box") or real_box(*a, **k))
    monkeypatch.setattr(est.net, "rotation_head", lambda *a, **k: calls.append("rot") or real_rot(*a, **k))
    est.warmup(40, 56)
    assert "box" in calls and "rot" in calls  # a blank frame alone has no detections


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog) -> None:
    def broken_compile(fn, **kwargs):
        def run(*a, **k):
            raise RuntimeError("inductor exploded")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    runner = DenseRunner(lambda x, scale: x * scale)
    x = torch.arange(4.0)
    with caplog.at_level(logging.WARNING):
        out, from_graph = runner(x, compile=True, scale=2.0)
        out2, _ = runner(x, compile=True, scale=3.0)
    assert torch.equal(out, x * 2) and torch.equal(out2, x * 3) and not from_graph
    assert runner.compile_failed
    assert sum("torch.compile of the dense forward failed" in r.message for r in caplog.records) == 1
    with pytest.raises(ValueError):  # the model's own input errors are not swallowed
        DenseRunner(lambda x: (_ for _ in ()).throw(ValueError("bad image")))(x, compile=False)


def test_cpu_stage_clock_and_host_copies() -> None:
    sink: dict[str, float] = {}
    clock = StageClock(torch.device("cpu"), sink)
    clock.lap("a")
    clock.lap("b")
    clock.resolve()  # no-op on the CPU
    assert list(sink) == ["a", "b"] and all(v >= 0 for v in sink.values())
    copies = HostCopies(torch.device("cpu"))
    i = copies.add(torch.arange(3, dtype=torch.int32))
    copies.wait()
    np.testing.assert_array_equal(copies.numpy(i), [0, 1, 2])
    with pytest.raises(RuntimeError):
        copies.add(torch.zeros(1))


class _FakeEvent:
    """Stands in for torch.cuda.Event on a machine without CUDA: a timestamp at record()."""

    synchronized = 0

    def __init__(self, enable_timing: bool = False) -> None:
        self.t = None

    def record(self) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        _FakeEvent.synchronized += 1

    def elapsed_time(self, other: "_FakeEvent") -> float:
        return (other.t - self.t) * 1000.0


def test_cuda_bookkeeping_of_clock_and_copies(monkeypatch) -> None:
    """The CUDA branches of StageClock and HostCopies, with fake events and unpinned memory: stages in lap order
    from event intervals, the host time after the synchronisation added to the last device stage, one
    synchronisation for all copies, no result before it."""
    import posecnn_core.inference_runtime as rt

    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(rt, "_pinned_empty", lambda shape, dtype: torch.empty(shape, dtype=dtype))
    cuda = torch.device("cuda")
    sink: dict[str, float] = {}
    clock = StageClock(cuda, sink)
    copies = HostCopies(cuda)
    time.sleep(0.01)
    clock.lap("a")
    i = copies.add(torch.arange(4))
    j = copies.add(torch.ones(2, 3))
    with pytest.raises(RuntimeError, match="before wait"):
        copies.numpy(i)
    time.sleep(0.02)
    clock.lap("b")
    assert sink == {}  # nothing is read before the synchronisation
    _FakeEvent.synchronized = 0
    copies.wait()
    copies.wait()
    assert _FakeEvent.synchronized == 1
    clock.device_done()
    time.sleep(0.03)
    clock.resolve()
    clock.lap("c")  # wall clock after resolve
    assert list(sink) == ["a", "b", "c"]
    assert sink["a"] >= 9 and sink["b"] >= 49 and sink["c"] >= 0  # sleeps: 10 ms; 20 ms + 30 ms after the sync
    np.testing.assert_array_equal(copies.numpy(i), [0, 1, 2, 3])
    assert copies.numpy(j).shape == (2, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_box_decode_is_bitwise_the_tensor_formula(dtype) -> None:
    """decode() multiplies by the stds as 0-dim host tensors (no host→device copy); the result must be bit for
    bit that of the multiplication by a stds tensor of the deltas' dtype."""
    g = torch.Generator().manual_seed(1)
    rois = (torch.rand(500, 4, generator=g) * 300).to(dtype)
    rois[:, 2:] += rois[:, :2]
    deltas = (torch.randn(500, 4, generator=g) * 2).to(dtype)
    d = deltas * deltas.new_tensor(BoxCoder().stds)
    w, h = rois[:, 2] - rois[:, 0] + 1.0, rois[:, 3] - rois[:, 1] + 1.0
    cx, cy = rois[:, 0] + 0.5 * w, rois[:, 1] + 0.5 * h
    pcx, pcy, pw, ph = d[:, 0] * w + cx, d[:, 1] * h + cy, torch.exp(d[:, 2]) * w, torch.exp(d[:, 3]) * h
    expected = torch.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], dim=1)
    assert torch.equal(BoxCoder().decode(rois, deltas), expected)


def test_roi_pool_batch_check_can_be_skipped_by_trusted_callers() -> None:
    if not (load_ops() and has_op("roi_max_pool_forward", "cpu")):
        pytest.skip("compiled RoI pooling unavailable")
    feats = torch.randn(1, 2, 8, 8)
    rois = torch.tensor([[0, 0.0, 0.0, 40.0, 40.0], [1, 0.0, 0.0, 40.0, 40.0]])
    with pytest.raises(ValueError, match="batch"):
        roi_max_pool(feats, rois, 2, 1 / 8, backend="cpp")
    out = roi_max_pool(feats, rois, 2, 1 / 8, backend="cpp", check_batch=False)
    assert torch.equal(out[0], roi_max_pool(feats, rois[:1], 2, 1 / 8, backend="cpp")[0])
    assert torch.equal(out[1], torch.zeros_like(out[1]))  # out-of-range image: empty bins


# --------------------------------------------------------------------------------------------------------- CUDA


@pytest.fixture
def exact_float32():
    """CUDA == CPU comparisons: no TF32 in convolutions and matrix products (restored afterwards)."""
    prev = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = prev


@needs_cuda
def test_cuda_network_input_matches_cpu(checkpoint, objects, tmp_path) -> None:
    img = _images(1)[0][:90, :125]
    cpu = PoseEstimator(checkpoint, objects, device="cpu")
    gpu = PoseEstimator(checkpoint, objects, device="cuda")
    with torch.inference_mode():
        a = cpu._network_input(img, K, None)
        b = gpu._network_input(img, K, None)
    assert b.is_cuda and b.shape == a.shape == (1, 3, 96, 128)
    torch.testing.assert_close(a, b.cpu(), rtol=0, atol=1e-6)  # CUDA divides by 255 as a product by 1/255
    torch.manual_seed(0)
    net6 = PoseCNN(C, in_channels=6, fc_dim=32, trunk_width=0.25)
    path = tmp_path / "rgbd.pt"
    save_checkpoint(path, net6, CheckpointMeta(num_classes=C, in_channels=6, fc_dim=32, trunk_width=0.25,
                                               class_names=list(objects.class_names)))
    depth = np.random.default_rng(2).uniform(0.3, 2.0, (90, 125)).astype(np.float32)
    with torch.inference_mode():
        a6 = PoseEstimator(path, objects, device="cpu")._network_input(img, K, depth)
        b6 = PoseEstimator(path, objects, device="cuda")._network_input(img, K, depth)
    torch.testing.assert_close(a6, b6.cpu(), rtol=1e-6, atol=1e-6)


@needs_cuda
def test_cuda_estimator_matches_cpu(checkpoint, objects, exact_float32) -> None:
    cpu = PoseEstimator(checkpoint, objects, device="cpu", config=_config())
    gpu = PoseEstimator(checkpoint, objects, device="cuda", config=_config())
    for est in (cpu, gpu):
        _install_scene(est)
    for img in _images(2):
        a, b = cpu.estimate(img, K), gpu.estimate(img, K)
        np.testing.assert_array_equal(a.label, b.label)
        _assert_same_poses(_poses(a), _poses(b), t_atol=1e-5, r_deg=0.05, score_atol=1e-4, roi_atol=1e-2)
    assert list(b.timings_ms) == ["preprocess", "network", "voting", "rotation", "transfer"]
    assert all(v >= 0 for v in b.timings_ms.values())


@needs_cuda
def test_cuda_graph_equals_eager_and_is_captured_once_per_size(checkpoint, objects) -> None:
    eager = PoseEstimator(checkpoint, objects, device="cuda", config=_config())
    graph = PoseEstimator(checkpoint, objects, device="cuda", config=_config(cuda_graph=True))
    for est in (eager, graph):
        _install_scene(est)
    graph.warmup(H, W)
    assert graph._dense_runner.graphs == 1
    for img in _images(3):  # different images: the static input buffer must be refreshed every frame
        a, b = eager.estimate(img, K), graph.estimate(img, K)
        np.testing.assert_array_equal(a.label, b.label)
        _assert_same_poses(_poses(a), _poses(b), t_atol=1e-5, r_deg=0.05, score_atol=1e-4, roi_atol=1e-2)
    assert graph._dense_runner.graphs == 1
    # the dense outputs themselves, graph against eager, on a real (not substituted) forward
    plain = PoseEstimator(checkpoint, objects, device="cuda", config=_config(cuda_graph=True))
    with torch.inference_mode():
        x = plain._network_input(_images(1)[0], K, None)
        (l1, v1, c41, c51), from_graph = plain._dense_runner(x, graph=True, hn=H, wn=W, amp_dtype=None,
                                                             cache_enabled=False)
        l1, v1, c41 = l1.clone(), v1.clone(), c41.clone()
        l2, v2, c42, _ = plain._dense_core(x, H, W, None)
    assert from_graph
    assert torch.equal(l1, l2)
    torch.testing.assert_close(v1, v2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c41, c42, rtol=1e-5, atol=1e-5)
    # a change of layout drops the graphs (they hold the weights' addresses)
    graph.config = _config(cuda_graph=True, channels_last=False)
    graph.estimate(_images(1)[0], K)
    assert graph._dense_runner.graphs == 1


@needs_cuda
def test_cuda_bf16_is_close_to_fp32(checkpoint, objects) -> None:
    ref = PoseEstimator(checkpoint, objects, device="cuda", config=_config())
    amp = PoseEstimator(checkpoint, objects, device="cuda", config=_config(amp=True))
    amp_graph = PoseEstimator(checkpoint, objects, device="cuda", config=_config(amp=True, cuda_graph=True))
    for est in (ref, amp, amp_graph):
        _install_scene(est)
    img = _images(1)[0]
    a, b, c = ref.estimate(img, K), amp.estimate(img, K), amp_graph.estimate(img, K)
    # labels and centres come from the substituted scene: voting is identical; the RoI heads see bf16 features
    _assert_same_poses(_poses(a), _poses(b), t_atol=1e-6, r_deg=10.0, score_atol=0.05, roi_atol=3.0)
    _assert_same_poses(_poses(b), _poses(c), t_atol=1e-6, r_deg=0.05, score_atol=1e-4, roi_atol=1e-2)
    with torch.inference_mode():
        x = amp._network_input(img, K, None)
        lab, vtx, c4, _ = amp._dense_core(x, H, W, torch.bfloat16)
    assert vtx.dtype == torch.float32 and c4.dtype == torch.bfloat16


@needs_cuda
@pytest.mark.parametrize("changes", [{}, {"cuda_graph": True, "amp": True}])
def test_cuda_frame_synchronises_at_most_twice(checkpoint, objects, changes) -> None:
    """Counted with PyTorch's GPU trace in a process of its own: one synchronisation inside the voting operator
    (it sizes its output), one for the frame's results; none per stage, none in the RoI heads."""
    script = textwrap.dedent(f"""
        import json, sys, numpy as np, torch
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'test')!r}]
        import test_estimator_gpu as t
        from posecnn_core.estimator import PoseEstimator
        from posecnn_core.inference_runtime import count_syncs
        est = PoseEstimator({str(checkpoint)!r}, t._object_set(), device="cuda", config=t._config(**{changes!r}))
        t._install_scene(est)
        est.warmup(t.H, t.W)
        imgs = t._images(3)
        for img in imgs:
            est.estimate(img, t.K)
        out = []
        for img in imgs:
            with count_syncs() as n:
                res = est.estimate(img, t.K)
            out.append(dict(n, objects=len(res.objects)))
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = json.loads(proc.stdout.strip().splitlines()[-1])
    for f in frames:
        assert f["objects"] > 0
        assert f["stream"] + f["event"] + f["device"] <= 2, frames
        assert f["device"] == 0, frames
