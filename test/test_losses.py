"""Tests for posecnn_core.losses."""
import math

import pytest
import torch
import torch.nn.functional as F

from posecnn_core.geometry import mat_to_quat, quat_multiply, quat_to_mat
from posecnn_core.losses import (box_loss, point_matching_loss, point_matching_weights, pose_loss,  # noqa: I001
                                 semantic_loss, vertex_loss)

DT = torch.float64


def _axis_angle_quat(axis, angle: float) -> torch.Tensor:
    a = torch.tensor(axis, dtype=DT)
    a = a / a.norm()
    return torch.cat([torch.tensor([math.cos(angle / 2)], dtype=DT), math.sin(angle / 2) * a])


def _random_unit_quats(n: int, seed: int) -> torch.Tensor:
    q = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=DT)
    return q / q.norm(dim=1, keepdim=True)


# ------------------------------------------------------------------ semantic

def test_semantic_loss_ignores_easy_pixels():
    # C = 2, one row of 3 pixels, all labelled class 1:
    # pixel 0 easy (p_gt = sigmoid(5) > 0.9), pixel 1 p_gt = 0.5, pixel 2 p_gt = sigmoid(-1)
    scores = torch.tensor([[[[0.0, 0.0, 1.0]], [[5.0, 0.0, 0.0]]]], dtype=DT, requires_grad=True)
    labels = torch.ones(1, 1, 3, dtype=torch.long)
    loss = semantic_loss(scores, labels)
    expected = (-math.log(0.5) - math.log(1 / (1 + math.e))) / 2
    assert abs(loss.item() - expected) < 1e-9  # eps 1e-10 in the denominators
    loss.backward()
    assert torch.all(scores.grad[0, :, 0, 0] == 0)  # easy pixel gets no gradient
    assert torch.all(scores.grad[0, :, 0, 1:] != 0)


def test_semantic_loss_all_hard_is_cross_entropy_and_all_easy_is_zero():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 4, 5, 6, generator=g, dtype=DT)
    labels = torch.randint(0, 4, (2, 5, 6), generator=g)
    full = semantic_loss(scores, labels, hard_threshold=1.01)
    assert torch.allclose(full, F.cross_entropy(scores, labels))
    easy = (20 * F.one_hot(labels, 4).permute(0, 3, 1, 2).to(DT)).requires_grad_()
    zero = semantic_loss(easy, labels)
    assert zero.item() == 0.0
    zero.backward()
    assert easy.grad is not None and torch.all(easy.grad == 0)


def test_semantic_loss_validates_labels():
    with pytest.raises(ValueError, match="labels must lie"):
        semantic_loss(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 3))
    with pytest.raises(ValueError, match="labels must have shape"):
        semantic_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 3, dtype=torch.long))


# ------------------------------------------------------------------ vertex

def test_vertex_loss_hand_case_with_weights():
    # C = 1 (3 channels), 1x2 image; pixel 0 weighted 10, pixel 1 weighted 0 with a huge error
    pred = torch.tensor([[[[0.05, 100.0]], [[-0.2, 100.0]], [[0.0, 100.0]]]], dtype=DT, requires_grad=True)
    target = torch.zeros_like(pred)
    w = torch.zeros_like(pred)
    w[..., 0] = 10.0
    loss = vertex_loss(pred, target, w)
    # w·diff = (0.5, -2, 0) → smooth-L1 = 0.125 + 1.5 + 0 = 1.625; Σw = 30
    assert abs(loss.item() - 1.625 / 30) < 1e-9  # eps 1e-10 in the denominators
    loss.backward()
    assert torch.all(pred.grad[..., 1] == 0)
    # broadcast weights [B, 1, H, W] count once per channel in Σw
    w1 = torch.tensor([[[[10.0, 0.0]]]], dtype=DT)
    assert abs(vertex_loss(pred, target, w1).item() - 1.625 / 30) < 1e-9  # eps 1e-10 in the denominators


def test_vertex_loss_validates_shapes():
    with pytest.raises(ValueError, match="vertex_target"):
        vertex_loss(torch.zeros(1, 6, 2, 2), torch.zeros(1, 3, 2, 2), torch.ones(1, 6, 2, 2))
    with pytest.raises(ValueError, match="vertex_weights"):
        vertex_loss(torch.zeros(1, 6, 2, 2), torch.zeros(1, 6, 2, 2), torch.ones(1, 6, 3, 2))


# ------------------------------------------------------------------ boxes

def test_box_loss_hand_case():
    scores = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], dtype=DT, requires_grad=True)
    deltas = torch.zeros(2, 8, dtype=DT)
    deltas[0, 4:8] = torch.tensor([0.5, 0.0, 2.0, 0.0])  # RoI 0, class 1
    deltas[1, 0:4] = 50.0  # background RoI: not regressed
    deltas.requires_grad_()
    gt_classes = torch.tensor([1, 0])
    gt_deltas = torch.zeros(2, 4, dtype=DT)
    ce, l1 = box_loss(scores, deltas, gt_classes, gt_deltas)
    assert abs(ce.item() - (-math.log(0.5) - math.log(0.75)) / 2) < 1e-9
    assert abs(l1.item() - 1.625 / 4) < 1e-9  # eps 1e-10 in the denominators
    (ce + l1).backward()
    assert deltas.grad[0, 4] != 0 and torch.all(deltas.grad[1] == 0)
    # explicit weights, per RoI and per coordinate
    _, l1w = box_loss(scores, deltas, gt_classes, gt_deltas, torch.tensor([1.0, 0.0], dtype=DT))
    assert abs(l1w.item() - 1.625 / 4) < 1e-9  # eps 1e-10 in the denominators
    w4 = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]], dtype=DT)
    _, l1w4 = box_loss(scores, deltas, gt_classes, gt_deltas, w4)
    assert abs(l1w4.item() - 0.125 / 3) < 1e-9  # eps 1e-10 in the denominators


def test_box_loss_cross_entropy_counts_hard_rois_only():
    # p(gt) of the three RoIs: 0.95 (easy, background RoI), 0.5 and 0.25 (hard)
    scores = torch.tensor([[math.log(19.0), 0.0], [0.0, 0.0], [math.log(3.0), 0.0]], dtype=DT, requires_grad=True)
    gt_classes = torch.tensor([0, 1, 1])
    deltas, gt_deltas = torch.zeros(3, 8, dtype=DT), torch.zeros(3, 4, dtype=DT)
    ce, _ = box_loss(scores, deltas, gt_classes, gt_deltas)
    assert abs(ce.item() - (-math.log(0.5) - math.log(0.25)) / 2) < 1e-9  # eps 1e-10 in the denominator
    ce.backward()
    assert torch.all(scores.grad[0] == 0) and torch.all(scores.grad[1:] != 0)
    plain, _ = box_loss(scores, deltas, gt_classes, gt_deltas, hard_threshold=None)
    assert abs(plain.item() - (-math.log(0.95) - math.log(0.5) - math.log(0.25)) / 3) < 1e-12
    # a hard background RoI counts like any other
    ce_bg, _ = box_loss(scores, deltas, torch.tensor([1, 0, 1]), gt_deltas)
    assert abs(ce_bg.item() - (-math.log(0.05) - math.log(0.5) - math.log(0.25)) / 3) < 1e-9
    easy = box_loss(20 * torch.eye(2, dtype=DT)[[0, 1]], torch.zeros(2, 8, dtype=DT), torch.tensor([0, 1]),
                    torch.zeros(2, 4, dtype=DT))[0]
    assert easy.item() == 0.0
    with pytest.raises(ValueError, match="hard_threshold"):
        box_loss(scores, deltas, gt_classes, gt_deltas, hard_threshold=1.5)


def test_box_loss_empty_and_bad_shapes():
    scores = torch.zeros(0, 3, requires_grad=True)
    ce, l1 = box_loss(scores, torch.zeros(0, 12), torch.zeros(0, dtype=torch.long), torch.zeros(0, 4))
    assert ce.item() == 0 and l1.item() == 0
    ce.backward()
    with pytest.raises(ValueError, match="box_deltas"):
        box_loss(torch.zeros(2, 3), torch.zeros(2, 8), torch.zeros(2, dtype=torch.long), torch.zeros(2, 4))


# ------------------------------------------------------------------ pose

def _points(n: int, seed: int = 0) -> torch.Tensor:
    return 0.05 * torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=DT)


def test_pose_loss_zero_at_truth_and_monotonic_in_rotation_error():
    pts = _points(200)
    q_gt = _random_unit_quats(1, 1)
    no_sym = torch.tensor([False])
    assert pose_loss(q_gt, q_gt, pts[None], None, no_sym).item() < 1e-20
    assert pose_loss(-2.5 * q_gt, q_gt, pts[None], None, no_sym).item() < 1e-20  # sign and scale invariant
    losses = []
    for deg in range(0, 181, 10):
        dq = _axis_angle_quat([0.3, -1.0, 0.5], math.radians(deg))
        q_pred = quat_multiply(q_gt, dq[None])
        losses.append(pose_loss(q_pred, q_gt, pts[None], None, no_sym).item())
    assert losses[0] < 1e-20
    assert all(b > a for a, b in zip(losses, losses[1:]))


def test_shape_match_loss_zero_for_symmetry_equivalent_pose():
    half = _points(150, seed=3)
    rz180 = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=DT))
    pts = torch.cat([half, half @ rz180.T])[None]  # invariant under 180° about z
    q_gt = _random_unit_quats(1, 4)
    q_pred = quat_multiply(q_gt, _axis_angle_quat([0, 0, 1], math.pi)[None])
    s_loss = pose_loss(q_pred, q_gt, pts, None, torch.tensor([True]))
    p_loss = pose_loss(q_pred, q_gt, pts, None, torch.tensor([False]))
    assert s_loss.item() < 1e-20
    assert p_loss.item() > 1e-3
    # a generic wrong pose is penalised by both
    q_bad = quat_multiply(q_gt, _axis_angle_quat([1, 0, 0], 0.5)[None])
    assert pose_loss(q_bad, q_gt, pts, None, torch.tensor([True])).item() > 1e-5


def _brute_force(q_pred, q_gt, points, counts, symmetric):
    total = []
    for r in range(q_pred.shape[0]):
        x = points[r, : int(counts[r])]
        a = x @ quat_to_mat(q_pred[r]).T
        b = x @ quat_to_mat(q_gt[r]).T
        if symmetric[r]:
            d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).min(dim=1).values
        else:
            d = ((a - b) ** 2).sum(-1)
        total.append(d.sum() / (2 * x.shape[0]))
    return torch.stack(total).mean()


def test_chunked_shape_match_equals_brute_force_with_padding_and_gradients():
    R, N = 4, 120
    points = torch.stack([_points(N, seed=10 + r) for r in range(R)])
    counts = torch.tensor([120, 77, 5, 64])
    for r in range(R):  # padding is garbage that must be ignored
        points[r, counts[r]:] = 1e3
    q_gt = _random_unit_quats(R, 20)
    symmetric = torch.tensor([True, False, True, True])
    q1 = (1.7 * _random_unit_quats(R, 21)).requires_grad_()
    q2 = q1.detach().clone().requires_grad_()
    got = pose_loss(q1, q_gt, points, counts, symmetric, chunk=7)
    ref = _brute_force(q2 / q2.norm(dim=1, keepdim=True), q_gt, points, counts, symmetric)
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-14)
    got.backward()
    ref.backward()
    assert q1.grad.abs().sum() > 0
    assert torch.allclose(q1.grad, q2.grad, rtol=1e-8, atol=1e-12)
    # same value whatever the chunk size
    for chunk in (1, 64, 130, 250, 4096):  # one point per step ... several whole RoIs per step
        assert torch.allclose(pose_loss(q1.detach(), q_gt, points, counts, symmetric, chunk=chunk), ref.detach())


def test_pose_loss_gradient_reaches_q_pred_and_empty():
    pts = _points(50)[None].float()
    for sym in (False, True):
        q = _random_unit_quats(1, 30).float().requires_grad_()
        pose_loss(q, _random_unit_quats(1, 31).float(), pts, None, torch.tensor([sym])).backward()
        assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    q = torch.zeros(0, 4, requires_grad=True)
    loss = pose_loss(q, torch.zeros(0, 4), torch.zeros(0, 10, 3), None, torch.zeros(0, dtype=torch.bool))
    assert loss.item() == 0
    loss.backward()


def test_pose_loss_validates_inputs():
    q = torch.tensor([[1.0, 0, 0, 0]])
    with pytest.raises(ValueError, match="points"):
        pose_loss(q, q, torch.zeros(1, 10, 2), None, torch.tensor([False]))
    with pytest.raises(ValueError, match="point_counts"):
        pose_loss(q, q, torch.zeros(1, 10, 3), torch.tensor([11]), torch.tensor([False]))
    with pytest.raises(ValueError, match="chunk"):
        pose_loss(q, q, torch.zeros(1, 10, 3), None, torch.tensor([False]), chunk=0)


def test_mat_to_quat_is_consistent_with_loss_inputs():
    # a ground-truth quaternion from a rotation matrix gives zero loss against that matrix's pose
    Rm = quat_to_mat(_random_unit_quats(3, 40))
    q = mat_to_quat(Rm)
    pts = torch.stack([_points(30, seed=s) for s in range(3)])
    assert pose_loss(q, _random_unit_quats(3, 40), pts, None, torch.zeros(3, dtype=torch.bool)).item() < 1e-20


# ------------------------------------------------------------------ point matching (PoseCNN-PyTorch)

def _pt_rotation(q):
    """PoseCNN-PyTorch's rotation formula for a unit quaternion (s, u, v, w), element by element."""
    s, u, v, w = q[0], q[1], q[2], q[3]
    return [[s * s + u * u - v * v - w * w, 2 * (u * v - s * w), 2 * (u * w + s * v)],
            [2 * (u * v + s * w), s * s - u * u + v * v - w * w, 2 * (v * w - s * u)],
            [2 * (u * w - s * v), 2 * (v * w + s * u), s * s - u * u - v * v + w * w]]


def _apply(Rm, x):
    return [Rm[i][0] * x[0] + Rm[i][1] * x[1] + Rm[i][2] * x[2] for i in range(3)]


def _pml_slow(q_pred, q_gt, points, extents, symmetric, hard_angle, counts):
    """Independent plain-loop implementation of PT's point-matching loss rules (autograd through torch scalars)."""
    total, n_hard = None, 0
    for r in range(q_pred.shape[0]):
        q = q_pred[r] / torch.sqrt(q_pred[r, 0] ** 2 + q_pred[r, 1] ** 2 + q_pred[r, 2] ** 2 + q_pred[r, 3] ** 2)
        g = q_gt[r] / math.sqrt(sum(float(v) ** 2 for v in q_gt[r]))
        d = sum(float(q[i].detach()) * float(g[i]) for i in range(4))
        angle = math.degrees(math.acos(max(-1.0, min(1.0, 2 * d * d - 1))))
        if not angle > hard_angle:
            continue
        weight = 10.0 / max(float(e) for e in extents[r])
        if weight < 10:
            weight = 10.0
        if symmetric[r]:
            weight *= 4
        Rp, Rg = _pt_rotation(q), _pt_rotation(g)
        m = int(counts[r])
        xs = [[weight * float(c) for c in points[r, p]] for p in range(m)]
        loss_r = 0
        for p in range(m):
            a = _apply(Rp, xs[p])
            if symmetric[r]:
                a_val = [float(c.detach()) for c in a]
                best, best_j = None, None
                for j in range(m):
                    b_j = _apply(Rg, xs[j])
                    dist = sum((a_val[k] - float(b_j[k])) ** 2 for k in range(3))
                    if best is None or dist < best:
                        best, best_j = dist, j
                b = _apply(Rg, xs[best_j])
            else:
                b = _apply(Rg, xs[p])
            for k in range(3):
                diff = a[k] - b[k]
                loss_r = loss_r + (0.5 * diff * diff if abs(float(diff.detach())) < 1 else abs(diff) - 0.5)
        total = loss_r / m if total is None else total + loss_r / m
        n_hard += 1
    return q_pred.sum() * 0 if n_hard == 0 else total / n_hard


def _pml_case(seed: int):
    g = torch.Generator().manual_seed(seed)
    R, N = 6, 14
    points = 0.06 * torch.randn(R, N, 3, generator=g, dtype=DT)
    points[1] *= 8.0        # a large object: max extent > 1 m, weight floors at 10
    counts = torch.tensor([14, 9, 14, 5, 11, 14])
    for r in range(R):
        points[r, counts[r]:] = 1e3  # padding must be ignored
    extents = 2 * points.abs().masked_fill(torch.arange(N)[None, :, None] >= counts[:, None, None], 0).amax(1)
    symmetric = torch.tensor([False, True, True, False, True, False])
    q_gt = _random_unit_quats(R, seed + 1)
    small = [3.0, 60.0, 2.0, 140.0, 35.0, 4.0]  # degrees: RoIs 0, 2 and 5 are easy (< 5 deg), 1, 3, 4 hard
    axes = torch.randn(R, 3, generator=g, dtype=DT)
    q_pred = torch.stack([quat_multiply(q_gt[r:r + 1], _axis_angle_quat(axes[r].tolist(), math.radians(small[r])))[0]
                          for r in range(R)])
    q_pred = q_pred * torch.tensor([1.0, 2.5, 0.7, 1.3, 0.4, 3.0], dtype=DT)[:, None]  # unnormalised outputs
    return q_pred, q_gt, points, extents, symmetric, counts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_matching_loss_value_and_gradient_match_slow_reference(seed):
    q_pred, q_gt, points, extents, symmetric, counts = _pml_case(seed)
    q1 = q_pred.clone().requires_grad_()
    q2 = q_pred.clone().requires_grad_()
    got = point_matching_loss(q1, q_gt, points, extents, symmetric, hard_angle=5.0, point_counts=counts, chunk=5)
    ref = _pml_slow(q2, q_gt, points, extents, symmetric, 5.0, counts)
    assert got.item() > 1.0  # scaled points: far above the metre-scale PoseLoss
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)
    got.backward()
    ref.backward()
    assert torch.allclose(q1.grad, q2.grad, rtol=1e-8, atol=1e-10)
    easy = torch.tensor([0, 2, 5])
    assert torch.all(q1.grad[easy] == 0) and torch.all(q1.grad[[1, 3, 4]].abs().sum(1) > 0)
    # the gradient is also the derivative of the value (finite differences in float64)
    eps = 1e-6
    for r, k in ((1, 0), (3, 2), (4, 3)):
        dq = torch.zeros_like(q_pred)
        dq[r, k] = eps
        f = lambda q: point_matching_loss(q, q_gt, points, extents, symmetric, 5.0, counts).item()  # noqa: E731
        assert (f(q_pred + dq) - f(q_pred - dq)) / (2 * eps) == pytest.approx(q1.grad[r, k].item(), rel=1e-4, abs=1e-7)


def test_point_matching_loss_all_hard_and_hard_angle_threshold():
    q_pred, q_gt, points, extents, symmetric, counts = _pml_case(7)
    q = q_pred.clone().requires_grad_()
    all_hard = point_matching_loss(q, q_gt, points, extents, symmetric, hard_angle=0.0, point_counts=counts)
    ref = _pml_slow(q_pred.clone().requires_grad_(), q_gt, points, extents, symmetric, 0.0, counts)
    assert torch.allclose(all_hard, ref, rtol=1e-10)
    only_big = point_matching_loss(q_pred, q_gt, points, extents, symmetric, hard_angle=100.0, point_counts=counts)
    assert torch.allclose(only_big, _pml_slow(q_pred, q_gt, points, extents, symmetric, 100.0, counts), rtol=1e-10)
    # a mean over hard RoIs, not over all RoIs: RoI 3 (140 deg) alone
    alone = point_matching_loss(q_pred[3:4], q_gt[3:4], points[3:4], extents[3:4], symmetric[3:4], 100.0,
                                point_counts=counts[3:4])
    assert torch.allclose(only_big, alone)


def test_point_matching_loss_no_hard_roi_is_a_differentiable_zero():
    q_gt = _random_unit_quats(3, 5)
    q = (q_gt * 2.0).clone().requires_grad_()  # exact rotations, angle 0 < 5 deg
    pts = _points(20)[None].expand(3, 20, 3)
    loss = point_matching_loss(q, q_gt, pts, torch.full((3, 3), 0.1, dtype=DT), torch.tensor([True, False, False]))
    assert loss.item() == 0.0
    loss.backward()
    assert q.grad is not None and torch.all(q.grad == 0)
    empty = torch.zeros(0, 4, requires_grad=True)
    out = point_matching_loss(empty, torch.zeros(0, 4), torch.zeros(0, 5, 3), torch.zeros(0, 3),
                              torch.zeros(0, dtype=torch.bool))
    assert out.item() == 0
    out.backward()


def test_point_matching_weights_are_pts():
    ext = torch.tensor([[0.05, 0.1, 0.02], [2.0, 0.5, 0.5], [0.1, 0.1, 0.1], [0.25, 0.1, 0.1]], dtype=DT)
    w = point_matching_weights(ext, torch.tensor([False, False, True, True]))
    assert torch.allclose(w, torch.tensor([100.0, 10.0, 400.0, 160.0], dtype=DT))
    with pytest.raises(ValueError, match="extents must be positive"):
        point_matching_weights(torch.zeros(1, 3), torch.tensor([False]))


def test_point_matching_loss_is_invariant_to_quaternion_scale_and_sign():
    q_pred, q_gt, points, extents, symmetric, counts = _pml_case(3)
    a = point_matching_loss(q_pred, q_gt, points, extents, symmetric, point_counts=counts)
    b = point_matching_loss(-4.0 * q_pred, -q_gt, points, extents, symmetric, point_counts=counts)
    assert torch.allclose(a, b, rtol=1e-12)


def test_point_matching_loss_validates_inputs():
    q = torch.tensor([[1.0, 0, 0, 0]])
    pts, ext, sym = torch.zeros(1, 10, 3), torch.ones(1, 3), torch.tensor([False])
    with pytest.raises(ValueError, match="extents must have shape"):
        point_matching_loss(q, q, pts, torch.ones(1, 2), sym)
    with pytest.raises(ValueError, match="hard_angle"):
        point_matching_loss(q, q, pts, ext, sym, hard_angle=-1)
    with pytest.raises(ValueError, match="point_counts"):
        point_matching_loss(q, q, pts, ext, sym, point_counts=torch.tensor([0]))


# ------------------------------------------------------------------ sums over a split batch (data-parallel)

def test_loss_sums_split_over_processes_add_up_to_the_whole_batch():
    """Each loss as (sum, count): the parts of a batch split in two, each divided by the count of the whole batch
    (what data-parallel training does), add up to the loss of the whole batch, in value and gradient; the mean
    of the parts' own means does not."""
    from posecnn_core.losses import (box_loss_sums, point_matching_loss_sum, pose_loss_sum, semantic_loss_sum,
                                     vertex_loss_sum)

    g = torch.Generator().manual_seed(3)
    scores = torch.randn(2, 3, 4, 5, generator=g, dtype=DT, requires_grad=True)
    labels = torch.randint(0, 3, (2, 4, 5), generator=g)
    vpred = torch.randn(2, 9, 4, 5, generator=g, dtype=DT, requires_grad=True)
    vtarget = torch.randn(2, 9, 4, 5, generator=g, dtype=DT)
    keep = torch.tensor([0.3, 0.8], dtype=DT)[:, None, None, None]  # the two images get unequal weight counts
    vweight = (torch.rand(2, 9, 4, 5, generator=g, dtype=DT) > keep).to(DT)
    cls_scores = torch.randn(7, 3, generator=g, dtype=DT, requires_grad=True)
    deltas = torch.randn(7, 12, generator=g, dtype=DT, requires_grad=True)
    gt_cls = torch.tensor([0, 1, 2, 1, 0, 2, 2])
    gt_deltas = torch.randn(7, 4, generator=g, dtype=DT)
    q_gt = _random_unit_quats(5, 4)
    q_pred = (q_gt + 0.3 * torch.randn(5, 4, generator=g, dtype=DT)).requires_grad_(True)
    pts = _points(30, 5).expand(5, 30, 3).contiguous()
    ext = torch.tensor([[0.1, 0.2, 0.3]], dtype=DT).expand(5, 3)
    sym = torch.tensor([False, True, False, False, True])
    halves = {"semantic": (slice(0, 1), slice(1, 2)), "vertex": (slice(0, 1), slice(1, 2)),
              "box": (slice(0, 3), slice(3, 7)), "pose": (slice(0, 2), slice(2, 5))}

    def sums(part: str, s: slice):
        if part == "semantic":
            return [semantic_loss_sum(scores[s], labels[s], 0.9)]
        if part == "vertex":
            return [vertex_loss_sum(vpred[s], vtarget[s], vweight[s])]
        if part == "box":
            return list(box_loss_sums(cls_scores[s], deltas[s], gt_cls[s], gt_deltas[s]))
        return [point_matching_loss_sum(q_pred[s], q_gt[s], pts[s], ext[s], sym[s], hard_angle=5.0),
                pose_loss_sum(q_pred[s], q_gt[s], pts[s], None, sym[s])]

    everything = slice(None)
    for part, (a, b) in halves.items():
        for k, whole in enumerate(sums(part, everything)):
            sa, sb = sums(part, a)[k], sums(part, b)[k]
            assert float(sa.count) > 0 and float(sb.count) > 0, (part, k)
            count = sa.count + sb.count
            assert float(count) == pytest.approx(float(whole.count))
            shares = sa.mean(count) + sb.mean(count)
            loss = whole.mean()
            assert float(shares.detach()) == pytest.approx(float(loss.detach()), rel=1e-12), (part, k)
            ga = torch.autograd.grad(shares, [scores, vpred, cls_scores, deltas, q_pred], allow_unused=True)
            gb = torch.autograd.grad(loss, [scores, vpred, cls_scores, deltas, q_pred], allow_unused=True)
            for x, y in zip(ga, gb):
                assert (x is None) == (y is None) and (x is None or torch.allclose(x, y, rtol=1e-10, atol=1e-14))
            if part in ("vertex", "box", "pose") and k == 0:  # parts with unequal counts
                mean_of_means = float(0.5 * (sa.mean() + sb.mean()).detach())
                assert abs(mean_of_means - float(loss.detach())) > 1e-3 * abs(float(loss.detach())), part
