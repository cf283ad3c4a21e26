"""posecnn_core.boxes: IoU conventions, PT's box transform, clipping and per-class NMS on hand-worked boxes."""
import pytest
import torch

from posecnn_core.boxes import BOX_DELTA_STDS, BoxCoder, box_area, box_iou, clip_boxes, nms


def test_iou_conventions_hand_worked():
    a = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    b = torch.tensor([[5.0, 0.0, 14.0, 9.0]])
    # +1: areas 100 and 100, intersection 5 x 10 = 50 -> 50 / 150
    assert box_iou(a, b, plus_one=True).item() == pytest.approx(50 / 150)
    # continuous: areas 81 and 81, intersection 4 x 9 = 36 -> 36 / 126
    assert box_iou(a, b, plus_one=False).item() == pytest.approx(36 / 126)
    assert box_area(a, plus_one=True).item() == 100.0
    assert box_area(a, plus_one=False).item() == 81.0


def test_iou_degenerate_boxes():
    z = torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    assert box_iou(z, z, plus_one=False).item() == 0.0      # empty union
    assert box_iou(z, z, plus_one=True).item() == 1.0       # a one-pixel box in PT's convention
    far = torch.tensor([[100.0, 100.0, 110.0, 110.0]])
    assert box_iou(z, far, plus_one=True).item() == 0.0


def test_box_coder_matches_pt_formulas():
    coder = BoxCoder()
    assert coder.stds == BOX_DELTA_STDS == (0.1, 0.1, 0.2, 0.2)
    rois = torch.tensor([[10.0, 20.0, 29.0, 59.0]])  # w 20, h 40, centre (20, 40)
    deltas = torch.tensor([[1.0, -0.5, 2.0, 0.0]])   # x0.1 -> dx 0.1, dy -0.05, dw 0.4, dh 0
    out = coder.decode(rois, deltas)[0]
    import math
    pw = math.exp(0.4) * 20
    assert out[0].item() == pytest.approx(20 + 0.1 * 20 - 0.5 * pw)
    assert out[2].item() == pytest.approx(20 + 0.1 * 20 + 0.5 * pw)  # no -1
    assert out[1].item() == pytest.approx(40 - 0.05 * 40 - 20)
    assert out[3].item() == pytest.approx(40 - 0.05 * 40 + 20)
    # encode is the inverse up to PT's +1 asymmetry of decode
    gt = torch.tensor([[12.0, 18.0, 40.0, 70.0]])
    back = coder.decode(rois, coder.encode(rois, gt))
    assert torch.allclose(back, gt + torch.tensor([0.0, 0.0, 1.0, 1.0]), atol=1e-4)


def test_decode_does_not_clamp_large_deltas():
    rois = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    out = BoxCoder().decode(rois, torch.tensor([[0.0, 0.0, 50.0, 0.0]]))  # dw = 10 -> exp(10) * 10 wide
    assert (out[0, 2] - out[0, 0]).item() == pytest.approx(10 * torch.exp(torch.tensor(10.0)).item(), rel=1e-5)


def test_clip_boxes():
    out = clip_boxes(torch.tensor([[-5.0, -1.0, 700.0, 300.0]]), height=240, width=320)
    assert out.tolist() == [[0.0, 0.0, 319.0, 239.0]]


def test_nms_per_class_plus_one_and_ties():
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [1.0, 0.0, 10.0, 9.0], [0.0, 0.0, 9.0, 9.0], [50.0, 50, 60, 60]])
    scores = torch.tensor([0.5, 0.9, 0.5, 0.1])
    classes = torch.tensor([1, 1, 2, 1])
    # box 1 (best) suppresses box 0 (same class, IoU 90/110 > 0.5); box 2 is another class; box 3 is far away
    assert nms(boxes, scores, 0.5, classes).tolist() == [1, 2, 3]
    # without classes box 2 is suppressed by box 1 as well
    assert nms(boxes, scores, 0.5).tolist() == [1, 3]
    # equal scores: lower index first; IoU exactly at the threshold is kept (suppression needs >)
    same = torch.tensor([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 9.0]])
    assert nms(same, torch.tensor([0.3, 0.3]), 1.0).tolist() == [0, 1]
    assert nms(same, torch.tensor([0.3, 0.3]), 0.99).tolist() == [0]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="boxes must be"):
        box_area(torch.zeros(3, 5), plus_one=True)
    with pytest.raises(ValueError, match="scores must be"):
        nms(torch.zeros(2, 4), torch.zeros(3), 0.5)
