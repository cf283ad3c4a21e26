"""Tests for posecnn_core.roi_pool: PT's RoI max pooling semantics, gradients and backend dispatch."""
import math
import sys
import types

import numpy as np
import pytest
import torch

from posecnn_core import roi_pool
from posecnn_core.roi_pool import roi_bin_bounds, roi_max_pool, roi_max_pool_torch

f32 = np.float32


def naive_pool(features: torch.Tensor, rois: torch.Tensor, P: int, scale: float):
    """Element-by-element transcription of PT's kernel (float32 scalars); returns (out, argmax flat index)."""
    feat = features.detach().numpy()
    B, C, H, W = feat.shape
    out = np.zeros((rois.shape[0], C, P, P), dtype=feat.dtype)
    arg = -np.ones((rois.shape[0], C, P, P), dtype=np.int64)
    s = f32(scale)
    for n, row in enumerate(rois.numpy().astype(np.float32)):
        b = int(row[0])
        sw, sh, ew, eh = row[1] * s, row[2] * s, row[3] * s, row[4] * s
        rw = int(max(float(ew - sw + f32(1)), 1.0))
        rh = int(max(float(eh - sh + f32(1)), 1.0))
        bw, bh = f32(rw) / f32(P), f32(rh) / f32(P)
        for c in range(C):
            for ph in range(P):
                for pw in range(P):
                    hs = int(math.floor(f32(ph) * bh))
                    he = int(math.ceil(f32(ph + 1) * bh))
                    ws = int(math.floor(f32(pw) * bw))
                    we = int(math.ceil(f32(pw + 1) * bw))
                    hs = min(max(int(f32(hs) + sh), 0), H)
                    he = min(max(int(f32(he) + sh), 0), H)
                    ws = min(max(int(f32(ws) + sw), 0), W)
                    we = min(max(int(f32(we) + sw), 0), W)
                    if he <= hs or we <= ws:
                        continue
                    best, idx = -np.inf, -1
                    for h in range(hs, he):
                        for w in range(ws, we):
                            if feat[b, c, h, w] > best:
                                best, idx = feat[b, c, h, w], h * W + w
                    out[n, c, ph, pw], arg[n, c, ph, pw] = best, idx
    return torch.from_numpy(out), arg


def grid(h, w):
    return torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)


def test_whole_map_two_bins():
    out = roi_max_pool_torch(grid(4, 4), torch.tensor([[0, 0.0, 0, 3, 3]]), 2, 1.0)
    assert out.tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]


def test_overlapping_bins_from_ceil_and_floor():
    # roi 4 wide, P = 3: bin = 4/3 -> bins [0,2), [1,3), [2,4) in both directions
    hs, he, ws, we = roi_bin_bounds(torch.tensor([[0, 0.0, 0, 3, 3]]), 3, 1.0, 4, 4)
    assert hs.tolist() == [[0, 1, 2]] and he.tolist() == [[2, 3, 4]]
    assert ws.tolist() == hs.tolist() and we.tolist() == he.tolist()
    out = roi_max_pool_torch(grid(4, 4), torch.tensor([[0, 0.0, 0, 3, 3]]), 3, 1.0)
    assert out[0, 0].tolist() == [[5, 6, 7], [9, 10, 11], [13, 14, 15]]


def test_clipping_at_far_border_gives_empty_bins_zero():
    # roi (2,2)-(5,5) on a 4x4 map, P = 2: bins [2,4) and [4,6) -> the latter is clipped to [4,4), empty
    out = roi_max_pool_torch(grid(4, 4) - 100.0, torch.tensor([[0, 2.0, 2, 5, 5]]), 2, 1.0)
    assert out.tolist() == [[[[15.0 - 100.0, 0.0], [0.0, 0.0]]]]


def test_negative_start_clips_to_zero():
    # start -3, width 5, bin 2.5: bin 0 = [int(0-3), int(3-3)) -> [0, 0) empty; bin 1 = [int(2-3), int(5-3)) -> [0, 2)
    hs, he, ws, we = roi_bin_bounds(torch.tensor([[0, -3.0, -3, 1, 1]]), 2, 1.0, 4, 4)
    assert hs.tolist() == [[0, 0]] and he.tolist() == [[0, 2]]
    out = roi_max_pool_torch(grid(4, 4), torch.tensor([[0, -3.0, -3, 1, 1]]), 2, 1.0)
    assert out.tolist() == [[[[0.0, 0.0], [0.0, 5.0]]]]


def test_fractional_coordinates_truncate():
    # x: start 0.5, end 2.7 -> roi_w = int(3.2) = 3, bin 1.5
    #    -> [int(0.5), int(2.5)) = [0, 2) and [int(1.5), int(3.5)) = [1, 3)
    # y: start 0.5, end 1.2 -> roi_h = int(1.7) = 1, bin 0.5 -> both bins [0, 1)
    rois = torch.tensor([[0, 0.5, 0.5, 2.7, 1.2]])
    hs, he, ws, we = roi_bin_bounds(rois, 2, 1.0, 4, 4)
    assert (hs.tolist(), he.tolist(), ws.tolist(), we.tolist()) == ([[0, 0]], [[1, 1]], [[0, 1]], [[2, 3]])
    assert roi_max_pool_torch(grid(4, 4), rois, 2, 1.0).tolist() == [[[[1.0, 2.0], [1.0, 2.0]]]]


def test_degenerate_roi_is_one_pixel_wide():
    # x2 < x1: roi_w = max(., 1) = 1; bins of 0.5 -> [int(0+2), int(1+2)) = [2, 3) for both
    rois = torch.tensor([[0, 2.0, 1.0, 0.0, 1.0]])
    out = roi_max_pool_torch(grid(4, 4), rois, 2, 1.0)
    assert out.tolist() == [[[[6.0, 6.0], [6.0, 6.0]]]]


def test_scale_one_eighth():
    # 64x64 image -> 8x8 map; roi (8,16)-(39,47): start (1, 2), end (4.875, 5.875), size int(4.875) = 4, bins of 2
    rois = torch.tensor([[0, 8.0, 16.0, 39.0, 47.0]])
    hs, he, ws, we = roi_bin_bounds(rois, 2, 1 / 8, 8, 8)
    assert (hs.tolist(), he.tolist(), ws.tolist(), we.tolist()) == ([[2, 4]], [[4, 6]], [[1, 3]], [[3, 5]])
    out = roi_max_pool_torch(grid(8, 8), rois, 2, 1 / 8)
    assert out.tolist() == [[[[26.0, 28.0], [42.0, 44.0]]]]


def test_scale_one_sixteenth():
    # 64x96 image -> 4x6 map; roi (20,10)-(70,50): start_w 1.25, end_w 4.375, roi_w = int(4.125) = 4, bin 4/3:
    # w bins [int(0+1.25), int(2+1.25)) = [1,3), [int(1+1.25), int(3+1.25)) = [2,4), [int(2+1.25), int(4+1.25)) = [3,5)
    # start_h 0.625, end_h 3.125, roi_h = int(3.5) = 3, bin 1: h bins [0,1), [1,2), [2,3)
    rois = torch.tensor([[0, 20.0, 10.0, 70.0, 50.0]])
    hs, he, ws, we = roi_bin_bounds(rois, 3, 1 / 16, 4, 6)
    assert (hs.tolist(), he.tolist()) == ([[0, 1, 2]], [[1, 2, 3]])
    assert (ws.tolist(), we.tolist()) == ([[1, 2, 3]], [[3, 4, 5]])
    out = roi_max_pool_torch(grid(4, 6), rois, 3, 1 / 16)
    assert out[0, 0].tolist() == [[2, 3, 4], [8, 9, 10], [14, 15, 16]]


def test_batch_index_and_channels():
    feats = torch.stack([grid(4, 4)[0], -grid(4, 4)[0]]).repeat(1, 2, 1, 1)  # [2, 2, 4, 4]
    feats[:, 1] += 1000
    rois = torch.tensor([[1, 0.0, 0, 3, 3], [0, 0.0, 0, 3, 3]])
    out = roi_max_pool_torch(feats, rois, 1, 1.0)
    assert out[:, :, 0, 0].tolist() == [[0.0, 1000.0], [15.0, 1015.0]]


@pytest.mark.parametrize("scale,P", [(1.0, 3), (1 / 8, 7), (1 / 16, 7), (0.3, 4)])
def test_matches_kernel_transcription_on_random_rois(scale, P):
    gen = torch.Generator().manual_seed(int(P / scale))
    B, C, H, W = 2, 3, 9, 11
    feats = torch.randn(B, C, H, W, generator=gen)
    img_h, img_w = H / scale, W / scale
    n = 40
    x = torch.rand(n, 2, generator=gen) * img_w * 1.3 - 0.15 * img_w
    y = torch.rand(n, 2, generator=gen) * img_h * 1.3 - 0.15 * img_h
    rois = torch.stack([torch.randint(0, B, (n,), generator=gen).float(),
                        x.min(1).values, y.min(1).values, x.max(1).values, y.max(1).values], dim=1)
    rois[:5, 3] = rois[:5, 1] - 3.0  # a few inverted boxes
    expected, _ = naive_pool(feats, rois, P, scale)
    torch.testing.assert_close(roi_max_pool_torch(feats, rois, P, scale), expected, rtol=0, atol=0)


def test_small_chunks_give_same_result(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(1, 4, 12, 12, generator=gen)
    rois = torch.tensor([[0, 0.0, 0, 11, 11], [0, 2.0, 3, 5, 9], [0, 1.0, 1, 2, 2], [0, 6.0, 0, 11, 5]])
    full = roi_max_pool_torch(feats, rois, 3, 1.0)
    monkeypatch.setattr(roi_pool, "_CHUNK_ELEMENTS", 1)
    torch.testing.assert_close(roi_max_pool_torch(feats, rois, 3, 1.0), full, rtol=0, atol=0)


def test_gradient_goes_to_first_max_in_row_major_order():
    feats = torch.zeros(1, 1, 3, 3)
    feats[0, 0, 1, 0] = 5.0
    feats[0, 0, 0, 2] = 5.0  # earlier in row-major order than (1, 0)
    feats[0, 0, 2, 2] = 5.0
    feats.requires_grad_(True)
    roi_max_pool_torch(feats, torch.tensor([[0, 0.0, 0, 2, 2]]), 1, 1.0).sum().backward()
    expected = torch.zeros(1, 1, 3, 3)
    expected[0, 0, 0, 2] = 1.0
    assert torch.equal(feats.grad, expected)
    # all equal: the top-left element of the bin takes the gradient
    flat = torch.ones(1, 1, 3, 3, requires_grad=True)
    roi_max_pool_torch(flat, torch.tensor([[0, 1.0, 1, 2, 2]]), 1, 1.0).sum().backward()
    assert flat.grad[0, 0].nonzero().tolist() == [[1, 1]]


def test_gradient_matches_kernel_argmax_and_accumulates():
    gen = torch.Generator().manual_seed(7)
    feats = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64)
    rois = torch.tensor([[0, 0.0, 0, 6, 5], [0, 1.0, 1, 4, 4], [1, 2.5, 0.5, 7.5, 6.5], [1, -2.0, 3.0, 2.0, 9.0]],
                        dtype=torch.float64)
    weights = torch.randn(4, 2, 3, 3, generator=gen, dtype=torch.float64)
    feats.requires_grad_(True)
    (roi_max_pool_torch(feats, rois, 3, 1.0) * weights).sum().backward()
    _, arg = naive_pool(feats, rois, 3, 1.0)
    expected = torch.zeros(2, 2, 6 * 7, dtype=torch.float64)
    for n in range(4):
        b = int(rois[n, 0])
        for c in range(2):
            for ph in range(3):
                for pw in range(3):
                    if arg[n, c, ph, pw] >= 0:
                        expected[b, c, arg[n, c, ph, pw]] += weights[n, c, ph, pw]
    torch.testing.assert_close(feats.grad, expected.view(2, 2, 6, 7))


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(11)
    feats = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.0, 0, 5, 4], [1, 1.5, 0.5, 4.0, 3.5], [0, 3.0, 2.0, 9.0, 9.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_max_pool_torch(f, rois, 3, 1.0), (feats,))
    assert torch.autograd.gradcheck(lambda f: roi_max_pool_torch(f, rois, 2, 0.5), (feats,))


def test_zero_rois():
    feats = torch.randn(1, 3, 4, 4, requires_grad=True)
    out = roi_max_pool_torch(feats, torch.zeros(0, 5), 7, 1 / 8)
    assert out.shape == (0, 3, 7, 7) and out.dtype == feats.dtype
    out.sum().backward()
    assert torch.equal(feats.grad, torch.zeros_like(feats))
    assert roi_max_pool(feats.detach(), torch.zeros(0, 5), 7, 1 / 8).shape == (0, 3, 7, 7)


def test_output_dtype_follows_features_and_rois_may_be_float64():
    feats = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    out = roi_max_pool_torch(feats, torch.tensor([[0, 0, 0, 3, 3]], dtype=torch.float64), 2, 1.0)
    assert out.dtype == torch.float64
    assert out[0, 0, 0, 0] == feats[0, 0, :2, :2].max()


@pytest.mark.parametrize("feats,rois,kwargs,exc,word", [
    (torch.zeros(2, 4, 4), torch.zeros(1, 5), {}, ValueError, "features"),
    (torch.zeros(1, 2, 0, 4), torch.zeros(1, 5), {}, ValueError, "features"),
    (torch.zeros(1, 2, 4, 4, dtype=torch.int32), torch.zeros(1, 5), {}, TypeError, "features"),
    (torch.zeros(1, 2, 4, 4), torch.zeros(1, 4), {}, ValueError, "rois"),
    (torch.zeros(1, 2, 4, 4), torch.zeros(5), {}, ValueError, "rois"),
    (torch.zeros(1, 2, 4, 4), torch.tensor([[1.0, 0, 0, 1, 1]]), {}, ValueError, "batch index"),
    (torch.zeros(1, 2, 4, 4), torch.tensor([[0.5, 0, 0, 1, 1]]), {}, ValueError, "batch index"),
    (torch.zeros(1, 2, 4, 4), torch.tensor([[0, float("nan"), 0, 1, 1]]), {}, ValueError, "non-finite"),
    (torch.zeros(1, 2, 4, 4), torch.zeros(1, 5), {"output_size": 0}, ValueError, "output_size"),
    (torch.zeros(1, 2, 4, 4), torch.zeros(1, 5), {"spatial_scale": -1.0}, ValueError, "spatial_scale"),
])
def test_bad_input_is_named(feats, rois, kwargs, exc, word):
    with pytest.raises(exc, match=word):
        roi_max_pool_torch(feats, rois, **kwargs)


def test_dispatch_torch_and_bad_backend():
    feats, rois = torch.randn(1, 2, 5, 5), torch.tensor([[0, 0.0, 0, 4, 4]])
    ref = roi_max_pool_torch(feats, rois, 2, 1.0)
    assert torch.equal(roi_max_pool(feats, rois, 2, 1.0, backend="torch"), ref)
    with pytest.raises(ValueError, match="backend"):
        roi_max_pool(feats, rois, 2, 1.0, backend="gpu")
    with pytest.raises(ValueError, match="cuda"):
        roi_max_pool(feats, rois, 2, 1.0, backend="cuda")  # CPU tensors


def _fake_ops(monkeypatch, available: bool, calls: list):
    """The backend resolver sees an operator library that has (or lacks) the CPU RoI pooling kernel."""
    from posecnn_core.ops import backend, roi_pool_ext

    monkeypatch.setattr(backend, "has_op", lambda name, device: available and name == "roi_max_pool_forward"
                        and device == "cpu")
    monkeypatch.setattr(backend, "load_error", lambda: None if available else "library not built")

    def fake(features, rois, output_size, spatial_scale):
        calls.append((output_size, spatial_scale))
        return roi_max_pool_torch(features, rois, output_size, spatial_scale) + 1.0

    monkeypatch.setattr(roi_pool_ext, "roi_max_pool_ext", fake)


def test_auto_uses_extension_only_when_it_has_the_op(monkeypatch):
    feats, rois = torch.randn(1, 2, 5, 5), torch.tensor([[0, 0.0, 0, 4, 4]])
    ref = roi_max_pool_torch(feats, rois, 2, 0.5)
    calls = []
    _fake_ops(monkeypatch, True, calls)
    assert torch.equal(roi_max_pool(feats, rois, 2, 0.5), ref + 1.0)
    assert torch.equal(roi_max_pool(feats, rois, 2, 0.5, backend="cpp"), ref + 1.0)
    assert calls == [(2, 0.5), (2, 0.5)]
    _fake_ops(monkeypatch, False, calls)
    assert torch.equal(roi_max_pool(feats, rois, 2, 0.5), ref)
    with pytest.raises(RuntimeError, match="roi_max_pool_forward.*library not built"):
        roi_max_pool(feats, rois, 2, 0.5, backend="cpp")
    assert len(calls) == 2
