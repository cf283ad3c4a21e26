"""posecnn_core.train: config, data pipeline, RoI sampling, resume determinism, DDP (gloo, world size 1), CLI."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _train_helpers import write_object_set, write_toy_dataset  # noqa: E402

from posecnn_core.checkpoint import model_from_checkpoint, read_train_state  # noqa: E402
from posecnn_core.datasets.ycb import read_frame  # noqa: E402
from posecnn_core.objects import load_object_set  # noqa: E402
from posecnn_core.targets import compute_targets  # noqa: E402
from posecnn_core.train import ddp  # noqa: E402
from posecnn_core.train.cli import main as train_main  # noqa: E402
from posecnn_core.train.config import ConfigError, TrainConfig, apply_overrides, load_config  # noqa: E402
from posecnn_core.train.data import (EpochSampler, TrainDataset, collate, expand_vertex_targets,  # noqa: E402
                                     resize_frame)
from posecnn_core.boxes import BoxCoder, box_iou  # noqa: E402
from posecnn_core.train.loop import sample_rois  # noqa: E402
from posecnn_core.train.trainer import Trainer, TrainingError  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    yaml_path = write_object_set(root)
    write_toy_dataset(root / "ds", frames=4, test_frames=1)
    return root, yaml_path


def tiny_overrides(root: Path, yaml_path: Path, out: Path, *extra: str) -> list[str]:
    return [f"train_data=[{{root: {root / 'ds'}}}]", f"objects={yaml_path}", "vgg16_init=null",
            "trunk_width=0.125", "fc_dim=32", "device=cpu", "workers=0", "progress=false",
            f"output_dir={out}", "batch_size=1", *extra]


# -- config -------------------------------------------------------------------------------------------------

def test_defaults_are_pt_recipe():
    c = TrainConfig()
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.batch_size) == ("sgd", 1e-3, 0.9, 1e-4, 2)
    assert (c.epochs, c.lr_milestones, c.lr_gamma) == (16, [12], 0.1)
    assert (c.hard_label_threshold, c.vertex_loss_weight, c.vertex_inside_weight) == (0.9, 10.0, 10.0)
    assert (c.fc_dim, c.trunk_width, c.in_channels, c.dropout) == (4096, 1.0, 3, 0.5)
    assert (c.rotation_loss, c.hard_angle, c.roi_source, c.voting_label_threshold) == ("pt", 5.0, "voting", 100)
    assert (c.roi_fg_iou, c.pose_fg_iou, c.pose_loss_weight) == (0.5, 0.5, 1.0)
    assert (c.freeze_early_convs, c.amp, c.vgg16_init is not None) == (False, False, True)
    assert c.reference.focal == pytest.approx((1066.778 * 1067.487) ** 0.5)
    a = c.augment
    assert (a.hls_prob, a.hue, a.lightness, a.saturation) == (0.9, 18.0, 25.6, 25.6)
    assert (a.noise_or_blur_prob, a.blur_fraction, a.noise_sigma, a.blur_max_length) == (0.9, 0.1, 25.6, 15)
    assert (a.background_prob, a.background_prob_real, a.background_constant_prob, a.scale_prob) == (1, 0.5, 0.1, 0)


def test_lr_schedule_uses_pts_epoch_timing():
    from posecnn_core.train.trainer import pt_lr_factor

    ipe = 20000  # PT: MultiStepLR([12]) stepped at the start of every epoch -> 11 epochs at 1e-3, then 1e-4
    assert pt_lr_factor(0, ipe, [12], 0.1) == 1.0
    assert pt_lr_factor(11 * ipe - 1, ipe, [12], 0.1) == 1.0
    assert pt_lr_factor(11 * ipe, ipe, [12], 0.1) == pytest.approx(0.1)
    assert pt_lr_factor(16 * ipe - 1, ipe, [12], 0.1) == pytest.approx(0.1)
    assert pt_lr_factor(0, ipe, [1], 0.1) == pytest.approx(0.1)  # milestone 1: from the very first epoch
    assert pt_lr_factor(3 * ipe, ipe, [2, 4], 0.5) == pytest.approx(0.25)


def test_yaml_overrides_and_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.01\naugment: {noise_or_blur_prob: 0.0}\ntrain_data: [{root: /x, split: val, synthetic: true}]\n")
    c = load_config(p, ["augment.hls_prob=0.5", "max_iters=5", "input_size=[96, 128]", "augment.gray_prob=0.2"])
    assert c.augment.gray_prob == 0.2 and c.augment.for_source(True).gray_prob == 0.2
    assert TrainConfig().augment.gray_prob == 0.0  # off in PT's recipe
    assert c.lr == 0.01 and c.augment.noise_or_blur_prob == 0 and c.augment.hls_prob == 0.5 and c.max_iters == 5
    assert c.augment.for_source(False).background_prob == 0.5 and c.augment.for_source(True).background_prob == 1.0
    assert c.train_data[0].split == "val" and c.train_data[0].synthetic and c.input_size == [96, 128]
    for bad, word in ((["lrr=1"], "unknown field"), (["augment.nois=1"], "augment.nois"),
                      (["batch_size=0"], "batch_size"), (["trunk_width=0.5"], "vgg16_init"),
                      (["optimizer=rmsprop"], "optimizer"), (["input_size=[10, 20]"], "input_size"),
                      (["lr"], "key=value"), (["augment.blur_max_length=2"], "blur_max_length"),
                      (["rotation_loss=l2"], "rotation_loss"), (["roi_source=rpn"], "roi_source"),
                      (["reference_camera={fx: 0, fy: 500}"], "reference_camera"),
                      (["reference_camera=500"], "reference_camera"), (["augment.scale_min=2"], "scale_min"),
                      (["augment.gray_prob=1.5"], "gray_prob"),
                      (["hard_angle=-1"], "hard_angle"), (["pose_fg_iou=0"], "pose_fg_iou"),
                      (["dist_timeout_s=0"], "dist_timeout_s"), (["lr_scaling=sqrt"], "lr_scaling"),
                      (["lr_reference_batch=0"], "lr_reference_batch")):
        with pytest.raises(ConfigError, match=word):
            load_config(p, bad)
    with pytest.raises(ConfigError, match="train_data' is empty"):
        TrainConfig().check_ready()


def test_exponent_floats_are_numbers(tmp_path):
    """YAML 1.2 floats without a dot (2e-5) are numbers in config files and --set, as a user writes them."""
    p = tmp_path / "c.yaml"
    p.write_text("lr: 1e-4\nweight_decay: 5E-4\n")
    c = load_config(p, ["augment.gray_prob=2.5e-1"])
    assert c.lr == pytest.approx(1e-4) and c.weight_decay == pytest.approx(5e-4) and c.augment.gray_prob == 0.25
    assert load_config(None, ["lr=2e-5"]).lr == pytest.approx(2e-5)
    assert apply_overrides({}, ["output_dir=1e5run", "seed=12"]) == {"output_dir": "1e5run", "seed": 12}


def test_example_configs_load():
    root = Path(__file__).resolve().parents[1]
    demo = load_config(root / "config/train/demo.yaml")
    assert demo.trunk_width == 0.5 and demo.fc_dim == 256 and demo.vgg16_init is None
    demo_cpu = load_config(root / "config/train/demo_cpu.yaml")
    assert demo_cpu.device == "cpu" and demo_cpu.trunk_width == 0.25
    for d in (demo, demo_cpu):  # the demo data's camera: YCB-Video's at 320x240
        assert d.reference.focal == pytest.approx((533.389 * 533.7435) ** 0.5) and d.input_size == [240, 320]
    ycb = load_config(root / "config/train/ycb_video.yaml")
    assert ycb.fc_dim == 4096 and ycb.vgg16_init and ycb.iters_per_epoch == 20000
    # the file spells out PT's recipe: it equals the defaults wherever PT defines something
    pt = TrainConfig()
    for name in ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs", "lr_milestones", "lr_gamma",
                 "freeze_early_convs", "hard_label_threshold", "vertex_inside_weight", "vertex_loss_weight",
                 "rotation_loss", "hard_angle", "roi_source", "voting_label_threshold", "roi_fg_iou", "pose_fg_iou",
                 "dropout", "amp", "reference_camera", "augment", "lr_scaling", "lr_reference_batch"):
        assert getattr(ycb, name) == getattr(pt, name), name
    assert ycb.input_size == [480, 640]


# -- data -------------------------------------------------------------------------------------------------

def test_sample_targets_match_full_layout(toy):
    root, yaml_path = toy
    objects = load_object_set(yaml_path)
    cfg = load_config(None, tiny_overrides(root, yaml_path, root / "o"))
    ds = TrainDataset(cfg.train_data, objects, augment=cfg.augment, seed=0)
    assert len(ds) == 4
    s = ds[1]
    frame = read_frame(root / "ds", s.frame_id, load_depth=False)
    full = compute_targets(frame.label, frame.instance, frame.cls_indexes, frame.poses, frame.K, 3,
                           points_by_class={1: objects.points[1], 2: objects.points[2]})
    b = collate([s])
    vt, vw = expand_vertex_targets(b.vertex, b.vertex_mask, b.label, 3, 10.0)
    assert torch.allclose(vt[0], torch.from_numpy(full.vertex_targets))
    assert torch.allclose(vw[0], 10 * torch.from_numpy(full.vertex_weights))
    assert s.image.shape == (3, 48, 64) and s.image.dtype == np.float32
    assert np.allclose(s.boxes, full.boxes) and list(s.classes) == [1, 2]
    # augmentation is a function of (seed, epoch, index)
    assert np.array_equal(ds[1].image, s.image)
    ds.set_epoch(1)
    assert not np.array_equal(ds[1].image, s.image)


def test_resize_keeps_projection_consistent(toy):
    root, _ = toy
    f = read_frame(root / "ds", "0000/000000", load_depth=False)
    r = resize_frame(f, 96, 128)
    t = f.poses[0, :, 3]
    uv = r.K @ t
    assert np.allclose(uv[:2] / uv[2], r.centers[0])
    assert np.allclose(r.centers[0], 2 * f.centers[0] + 0.5)
    assert r.label.shape == (96, 128) and set(np.unique(r.label)) == set(np.unique(f.label))


def test_collate_pads_to_multiple_of_16():
    from posecnn_core.train.data import TrainSample

    def sample(h, w, n):
        return TrainSample(np.ones((3, h, w), np.float32), np.ones((h, w), np.int64), np.ones((3, h, w), np.float32),
                           np.ones((h, w), np.float32), np.ones(n, np.int64), np.zeros((n, 4), np.float32),
                           np.tile([1, 0, 0, 0], (n, 1)).astype(np.float32), np.ones((n, 3), np.float32),
                           np.full(n, 100), "x", np.diag([100.0 * h, 90.0, 1.0]))
    b = collate([sample(40, 50, 2), sample(30, 64, 1)])
    assert b.image.shape == (2, 3, 48, 64) and b.label.shape == (2, 48, 64)
    assert b.image_hw.tolist() == [[40, 50], [30, 64]] and b.K[:, 0, 0].tolist() == [4000.0, 3000.0]
    assert b.image[0, :, 40:].abs().sum() == 0 and b.label[1, 30:].sum() == 0
    assert b.inst_batch.tolist() == [0, 0, 1] and b.inst_box.shape == (3, 4)


def test_epoch_sampler_splits_ranks_and_resumes():
    a = EpochSampler(5, 6, seed=3, rank=0, world_size=2)
    b = EpochSampler(5, 6, seed=3, rank=1, world_size=2)
    ia, ib = list(a), list(b)
    assert len(ia) == len(ib) == 6
    both = ia + ib
    assert sorted(both[:0] + both) == sorted(both) and set(both) == set(range(5))  # 12 draws cover all 5
    a.set_epoch(0, start=4)
    assert list(a) == ia[4:]
    a.set_epoch(1)
    assert list(a) != ia
    with pytest.raises(ValueError, match="rank"):
        EpochSampler(5, 6, rank=2, world_size=2)
    # a sample's position in the epoch's global order does not depend on the world size: step k of 2 ranks x 3
    # samples takes the positions 6k .. 6k + 5 of the order one process with batch 6 takes
    one = EpochSampler(7, 12, seed=1)
    for rank in (0, 1):
        s = EpochSampler(7, 6, seed=1, rank=rank, world_size=2)
        pos = s.positions(1, 3)
        assert pos == [6 + rank, 8 + rank, 10 + rank]
        assert list(s.indices()[3:6]) == list(one.indices()[pos])


def test_sample_rois_labels_and_deltas(toy):
    root, yaml_path = toy
    objects = load_object_set(yaml_path)
    cfg = load_config(None, tiny_overrides(root, yaml_path, root / "o", "rois_per_object=3",
                                           "bg_rois_per_image=4", "min_visible_pixels=1", "roi_source=gt"))
    ds = TrainDataset(cfg.train_data, objects)
    b = collate([ds[0], ds[1]])
    roi = sample_rois(b, cfg, [np.random.default_rng(0), np.random.default_rng(1)])
    assert roi.rois.shape == (4 * 3 + 2 * 4, 5)
    fg = roi.classes > 0
    assert fg.sum() >= 8
    gt = roi.gt_index[fg]
    assert torch.equal(roi.classes[fg], b.inst_class[gt])
    assert torch.equal(roi.rois[fg, 0].long(), b.inst_batch[gt])  # RoIs stay in their own image
    iou = box_iou(roi.rois[fg, 1:].double(), b.inst_box.double(), plus_one=True)[torch.arange(int(fg.sum())), gt]
    assert (iou >= cfg.roi_fg_iou).all()
    assert (roi.box_deltas[~fg] == 0).all()
    # targets are boxes.BoxCoder's (PT's bbox_transform): decoding gives the ground truth (+1 in x2, y2, PT's way)
    dec = BoxCoder().decode(roi.rois[fg, 1:].double(), roi.box_deltas[fg].double())
    assert torch.allclose(dec, b.inst_box[gt].double() + torch.tensor([0, 0, 1.0, 1.0], dtype=torch.float64),
                          atol=1e-3)
    # an image's RoIs come from its own generator alone: the same as in a batch of that image only (what makes
    # data-parallel runs equal one process)
    alone = sample_rois(collate([ds[1]]), cfg, [np.random.default_rng(1)])
    mine = roi.rois[:, 0] == 1
    assert torch.equal(roi.rois[mine, 1:], alone.rois[:, 1:]) and torch.equal(roi.classes[mine], alone.classes)
    assert torch.equal(roi.box_deltas[mine], alone.box_deltas)
    with pytest.raises(ValueError, match="one random generator per image"):
        sample_rois(b, cfg, [np.random.default_rng(0)])


def _voting_inputs(b, C: int, reference_focal: float | None = None):
    """Perfect network outputs for batch ``b``: one-hot scores and the batch's own centre/depth targets."""
    scores = 10.0 * torch.nn.functional.one_hot(b.label, C).permute(0, 3, 1, 2).float()
    vertex, _ = expand_vertex_targets(b.vertex, b.vertex_mask, b.label, C, 1.0)
    return scores, vertex


def _voting_step(tmp_path: Path):
    """A two-frame toy batch with perfect dense outputs: (objects, cfg, batch, scores, vertex, extents)."""
    yaml_path = write_object_set(tmp_path)
    write_toy_dataset(tmp_path / "ds", frames=2, h=96, w=128)
    objects = load_object_set(yaml_path)
    cfg = load_config(None, tiny_overrides(tmp_path, yaml_path, tmp_path / "o", "voting_backend=torch",
                                           "voting_label_threshold=20"))
    ds = TrainDataset(cfg.train_data, objects, reference_focal=cfg.reference.focal)
    b = collate([ds[0], ds[1]])
    scores, vertex = _voting_inputs(b, 3)
    return objects, cfg, b, scores, vertex, torch.from_numpy(objects.extents)


def test_voting_rois_follow_pts_roi_and_pose_target_layers(tmp_path):
    from posecnn_core.train.loop import RoiPlanner, label_rois, pose_targets_from_boxes, voting_rois

    objects, cfg, b, scores, vertex, extents = _voting_step(tmp_path)
    rows = voting_rois(scores, vertex, b, extents, cfg.reference.focal, cfg)
    assert rows.shape[0] >= 2 * 9 and rows.shape[0] % 9 == 0  # each peak and its 8 shifted copies
    planner = RoiPlanner(b, cfg, [], extents, cfg.reference.focal)  # voting draws nothing
    box = planner.box_targets(scores, vertex)
    assert torch.equal(box.roi_classes, rows[:, 1].long()) and torch.equal(box.rois[:, 1:], rows[:, 2:6])
    # PT's roi_target_layer: the best-IoU ground-truth box of the RoI's image, foreground at IoU >= 0.5
    gt_boxes = b.inst_box.double()
    for r in range(box.rois.shape[0]):
        same = torch.nonzero(b.inst_batch == box.rois[r, 0].long()).flatten()
        iou = box_iou(box.rois[r:r + 1, 1:].double(), gt_boxes[same], plus_one=True)[0]
        k = int(same[iou.argmax()])
        if float(iou.max()) >= 0.5:
            assert box.classes[r] == b.inst_class[k] and box.gt_index[r] == k
        else:
            assert box.classes[r] == 0 and box.gt_index[r] == -1
    assert (box.classes > 0).sum() >= 9
    # the box head's deltas for each RoI's voting class regress the box; zero deltas keep it (+1 in x2, y2)
    C = 3
    deltas = torch.zeros(box.rois.shape[0], 4 * C)
    pose = pose_targets_from_boxes(box, deltas, b, 0.5)
    # PT's pose_target_layer labels the REGRESSED boxes (here the RoIs + 1 in x2, y2) by their best-IoU box
    regressed = box.rois[:, 1:].double() + torch.tensor([0, 0, 1.0, 1.0], dtype=torch.float64)
    want = torch.zeros(box.rois.shape[0], dtype=torch.bool)
    want_cls = torch.zeros(box.rois.shape[0], dtype=torch.long)
    for r in range(box.rois.shape[0]):
        same = torch.nonzero(b.inst_batch == box.rois[r, 0].long()).flatten()
        iou = box_iou(regressed[r:r + 1], gt_boxes[same], plus_one=True)[0]
        k = int(same[iou.argmax()])
        want_cls[r] = b.inst_class[k]
        want[r] = float(iou.max()) >= 0.5 and int(b.inst_class[k]) == int(box.roi_classes[r])
    assert pose.rois.shape[0] == int(want.sum()) > 0
    assert torch.allclose(pose.rois[:, 1:].double(), regressed[want])
    assert torch.equal(pose.classes, want_cls[want])
    # deltas of another class do not move the box; large deltas of the voting class push it out of the foreground
    cls = box.roi_classes
    other = torch.zeros_like(deltas)
    other.view(-1, C, 4)[torch.arange(len(cls)), 3 - cls, 0] = 50.0
    assert torch.equal(pose_targets_from_boxes(box, other, b, 0.5).rois, pose.rois)
    far = torch.zeros_like(deltas)
    far.view(-1, C, 4)[torch.arange(len(cls)), cls, 0] = 50.0
    assert pose_targets_from_boxes(box, far, b, 0.5).rois.shape[0] == 0
    # a RoI whose voting class differs from its ground-truth class gets no rotation target
    wrong = label_rois(box.rois, b, 0.5, roi_classes=3 - box.roi_classes)
    assert pose_targets_from_boxes(wrong, deltas, b, 0.5).rois.shape[0] == 0
    # nothing voted (an untrained network): no RoI, no rotation RoI
    empty = planner.box_targets(torch.zeros_like(scores), vertex)
    assert empty.rois.shape == (0, 5) and planner.pose_targets(empty, torch.zeros(0, 4 * C)).rois.shape == (0, 5)


def test_voting_in_training_sees_metric_depth(tmp_path):
    """Depth targets relative to f_ref; voting adds log(f / f_ref) back, so its translations are metric."""
    from posecnn_core.train.loop import voting_rois
    from posecnn_core.voting import VotingParams, hough_voting

    yaml_path = write_object_set(tmp_path)
    write_toy_dataset(tmp_path / "ds", frames=1, h=96, w=128)
    objects = load_object_set(yaml_path)
    f_ref = 2.5 * 1.1 * 128  # a reference camera with 2.5x the toy camera's focal length
    cfg = load_config(None, tiny_overrides(tmp_path, yaml_path, tmp_path / "o", "voting_backend=torch",
                                           "voting_label_threshold=20",
                                           f"reference_camera={{fx: {f_ref}, fy: {f_ref}}}"))
    ds = TrainDataset(cfg.train_data, objects, reference_focal=cfg.reference.focal)
    b = collate([ds[0]])
    scores, vertex = _voting_inputs(b, 3)
    on = b.vertex_mask > 0
    assert torch.allclose(b.vertex[:, 2][on].exp().max(), torch.tensor(0.65 * 2.5), rtol=0.1)  # scaled targets
    rows = voting_rois(scores, vertex, b, torch.from_numpy(objects.extents), f_ref, cfg)
    metric = vertex.clone()
    metric[:, 2::3] -= float(np.log(2.5))
    ref = hough_voting(b.label, metric, b.K, torch.from_numpy(objects.extents),
                       VotingParams(mode="train", label_threshold=20), backend="torch")
    assert rows.shape[0] > 0 and torch.equal(rows, ref.rois)
    # PT caps the peaks at 128 per batch; as part of a global batch of 128 this image may keep one peak (+ its 8
    # shifted copies), as in one process's batch of 128
    assert rows.shape[0] > 9  # several peaks (training mode keeps ties)
    capped = voting_rois(scores, vertex, b, torch.from_numpy(objects.extents), f_ref, cfg, global_batch=128)
    assert torch.equal(capped, rows[:9])
    unscaled = hough_voting(b.label, vertex, b.K, torch.from_numpy(objects.extents),
                            VotingParams(mode="train", label_threshold=20), backend="torch")
    assert not torch.equal(unscaled.rois, ref.rois)  # the depth matters to voting (its window size)
    assert ((ref.translations[:, 2] > 0.5) & (ref.translations[:, 2] < 0.7)).all()


def test_train_model_repools_rotation_head_on_regressed_boxes(tmp_path):
    """The whole RoI stage of a voting step on perfect dense outputs: box head on the voting RoIs, rotation head
    re-pooled on the regressed boxes, PT's losses (and the paper's), gradients into every RoI head."""
    from posecnn_core.network import PoseCNN
    from posecnn_core.train.loop import RoiPlanner, TrainModel, compute_losses

    objects, cfg, b, scores, vertex, extents = _voting_step(tmp_path)

    class PerfectOutputs(RoiPlanner):
        def box_targets(self, s, v):
            return super().box_targets(scores, vertex)

    torch.manual_seed(0)
    net = PoseCNN(3, trunk_width=0.125, fc_dim=32)
    model = TrainModel(net)
    out = model(b.image, PerfectOutputs(b, cfg, [], extents, cfg.reference.focal))
    assert out.pose_targets.box_rows is None and out.class_scores.shape[0] == out.box_targets.rois.shape[0] > 0
    P = out.pose_targets.rois.shape[0]
    assert P > 0 and out.quaternions.shape == (P, 12)
    # the rotation RoIs are the box head's regressions of the voting RoIs, labelled on the regressed boxes (PT)
    from posecnn_core.train.loop import pose_targets_from_boxes

    expected = pose_targets_from_boxes(out.box_targets, out.box_deltas.detach(), b, cfg.pose_fg_iou)
    assert torch.equal(out.pose_targets.rois, expected.rois) and torch.equal(out.pose_targets.classes,
                                                                             expected.classes)
    assert P <= out.box_targets.rois.shape[0]
    pts, counts = objects.points_tensor(max_points=64)
    sym = torch.from_numpy(objects.symmetric_training)
    for loss_name in ("pt", "paper"):
        cfg.rotation_loss = loss_name
        losses = compute_losses(out, b, pts, counts, sym, extents, cfg)
        assert all(torch.isfinite(v) for v in losses.values())
        assert losses["pose"] > 0 and losses["box_class"] > 0
    net.zero_grad()
    losses["loss"].backward()
    for m in (net.fc8[0], net.fc9, net.fc10, net.classifier[0], net.conv_score[0], net.conv_vertex_score):
        assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0


def test_rescale_frame_keeps_projection_consistent(toy):
    from posecnn_core.camera import focal_length
    from posecnn_core.train.data import crop_frame, rescale_frame

    root, _ = toy
    f = read_frame(root / "ds", "0000/000000", load_depth=True)
    t = f.poses[:, :, 3]
    for seed, s in ((0, 1.37), (1, 0.71), (2, 1.0)):
        r = rescale_frame(f, s, np.random.default_rng(seed))
        assert r.label.shape == f.label.shape and r.color_bgr.shape == f.color_bgr.shape
        uv = t @ r.K.T
        np.testing.assert_allclose(uv[:, :2] / uv[:, 2:3], r.centers, atol=1e-9)  # centres follow the new K
        sx = round(64 * s) / 64
        assert focal_length(r.K) == pytest.approx(focal_length(f.K) * sx, rel=0.02)
        # the labelled pixels still sit around their object's projected centre
        for k, c in enumerate(f.cls_indexes):
            pix = np.argwhere(r.instance == k + 1)
            if len(pix) > 20:
                assert np.abs(pix[:, ::-1].mean(0) - r.centers[k]).max() < 0.35 * s * 64
    # a window reaching outside the frame is zero there
    c = crop_frame(f, -5, 3, 48, 64)
    assert np.all(c.label[:, :5] == 0) and np.all(c.color_bgr[:, :5] == 0) and np.all(c.depth[-3:] == 0)
    np.testing.assert_array_equal(c.label[:45, 5:], f.label[3:, :59])
    np.testing.assert_allclose(c.K[:2, 2], f.K[:2, 2] + [5, -3])


def test_scale_augmentation_shifts_depth_targets_by_the_scale(toy):
    root, yaml_path = toy
    objects = load_object_set(yaml_path)
    cfg = load_config(None, tiny_overrides(root, yaml_path, root / "o", "augment.scale_prob=1.0",
                                           "augment.hls_prob=0", "augment.noise_or_blur_prob=0",
                                           "augment.background_prob=0", "augment.background_prob_real=0"))
    f_ref = 70.0
    plain = TrainDataset(cfg.train_data, objects, reference_focal=f_ref)
    scaled = TrainDataset(cfg.train_data, objects, augment=cfg.augment, reference_focal=f_ref, seed=3)
    a, b = plain[2], scaled[2]
    ratio = np.sqrt(b.K[0, 0] * b.K[1, 1] / (a.K[0, 0] * a.K[1, 1]))
    assert ratio != pytest.approx(1.0, abs=1e-3) and 0.8 - 0.02 <= ratio <= 1.25 + 0.02
    # every object's log-depth target moves by -log(scale): the object looks nearer by that factor
    for k in range(len(a.classes)):
        za = np.log(a.translations[k, 2]) + np.log(f_ref / np.sqrt(a.K[0, 0] * a.K[1, 1]))
        zb = np.log(b.translations[k, 2]) + np.log(f_ref / np.sqrt(b.K[0, 0] * b.K[1, 1]))
        assert zb - za == pytest.approx(-np.log(ratio), abs=1e-9)
    on = b.vertex_mask > 0
    want = np.log(b.translations[:, 2] * f_ref / np.sqrt(b.K[0, 0] * b.K[1, 1]))
    assert (np.abs(b.vertex[2][on][:, None] - want[None, :]).min(1) < 1e-5).all()


# -- trainer --------------------------------------------------------------------------------------------------

def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(path)))


def test_resume_continues_exactly(toy, tmp_path):
    root, yaml_path = toy
    a = Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path / "a", "max_iters=3",
                                                 "checkpoint_interval=2")))
    assert a.iters_per_epoch == 4  # 4 frames, batch 1: the checkpoint at 2 is mid-epoch
    a.train()
    rows_a = _rows(tmp_path / "a" / "train_iterations.csv")
    assert [r["iteration"] for r in rows_a] == ["1", "2", "3"]
    ckpt = tmp_path / "a" / "checkpoints" / "iter_0000002.pt"
    state = read_train_state(ckpt)
    assert state["iteration"] == 2 and isinstance(state["torch_rng"], torch.Tensor)
    assert (tmp_path / "a" / "checkpoints" / "latest.pt").is_file()
    model, meta = model_from_checkpoint(tmp_path / "a" / "model_final.pt")
    assert meta.class_names == ["__background__", "plate", "brick"] and meta.trunk_width == 0.125
    assert meta.extra["iteration"] == 3 and meta.extra["config"]["fc_dim"] == 32

    b = Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path / "b", "max_iters=3",
                                                 f"resume={ckpt}")))
    assert b.iteration == 2
    b.train()
    rows_b = _rows(tmp_path / "b" / "train_iterations.csv")
    assert [r["iteration"] for r in rows_b] == ["3"]
    for k in ("loss", "semantic", "vertex", "box_class", "box_reg", "pose", "lr"):
        assert float(rows_b[0][k]) == pytest.approx(float(rows_a[2][k]), rel=1e-4, abs=1e-7), k


def test_resume_in_the_same_folder_rewrites_the_logs_after_the_checkpoint(toy, tmp_path):
    """A run that had logged iterations 1-5 and epochs 0 and 1 (the last one partial) is resumed from its checkpoint
    at iteration 2 in the same folder, as after an interruption: the rows written after the checkpoint are dropped
    and written again, so each iteration and epoch is logged once."""
    root, yaml_path = toy
    out = tmp_path / "run"
    a = Trainer(load_config(None, tiny_overrides(root, yaml_path, out, "max_iters=5", "checkpoint_interval=2")))
    a.train()
    first = _rows(out / "train_iterations.csv")
    assert [r["iteration"] for r in first] == ["1", "2", "3", "4", "5"]
    assert [r["epoch"] for r in _rows(out / "train_epochs.csv")] == ["0", "1"]
    b = Trainer(load_config(None, tiny_overrides(root, yaml_path, out, "max_iters=5",
                                                 f"resume={out / 'checkpoints' / 'iter_0000002.pt'}")))
    b.train()
    again = _rows(out / "train_iterations.csv")
    assert [r["iteration"] for r in again] == ["1", "2", "3", "4", "5"]
    assert again[:2] == first[:2]  # the rows before the checkpoint are untouched
    for k in ("loss", "lr"):
        assert float(again[4][k]) == pytest.approx(float(first[4][k]), rel=1e-4, abs=1e-7), k
    epochs = _rows(out / "train_epochs.csv")
    # epoch 0: its last 2 iterations ran in the resumed process
    assert [(r["epoch"], r["iterations"]) for r in epochs] == [("0", "2"), ("1", "1")]


def test_meta_reference_camera_export_and_rotation_log(toy, tmp_path):
    from posecnn_core.camera import ReferenceCamera
    from posecnn_core.checkpoint import read_state_dict
    from posecnn_core.train.export import export_checkpoint

    root, yaml_path = toy
    cam = "reference_camera={fx: 70.4, fy: 70.4, width: 64, height: 48}"
    t = Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path, "max_iters=2", cam,
                                                 "rotation_eval_interval=1", "rotation_eval_frames=3",
                                                 "min_visible_pixels=1")))
    assert t.rotation_probe is not None and len(t.rotation_probe.batches) == 1
    out = t.train()
    _, meta = read_state_dict(out["final_checkpoint"])
    assert meta.reference_camera == ReferenceCamera(fx=70.4, fy=70.4, width=64, height=48)
    assert meta.extra["config"]["rotation_loss"] == "pt" and meta.extra["config"]["roi_source"] == "voting"
    _, exported = read_state_dict(export_checkpoint(tmp_path / "checkpoints" / "latest.pt", tmp_path / "x.pt"))
    assert exported.reference_camera == meta.reference_camera
    with pytest.raises(TrainingError, match="reference_camera focal length 70.400"):
        Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path / "r", "max_iters=3",
                                                 f"resume={tmp_path / 'checkpoints' / 'latest.pt'}")))
    rows = _rows(tmp_path / "train_rotation_eval.csv")
    assert [r["iteration"] for r in rows] == ["0", "1", "2"]
    # 3 frames x 1 non-symmetric plate each ("brick" is symmetric), errors in degrees
    assert all(int(r["instances"]) == 3 and 0 <= float(r["median_deg"]) <= 180 for r in rows)
    it = _rows(tmp_path / "train_iterations.csv")
    assert all(int(r["rois"]) >= int(r["fg_rois"]) >= 0 and int(r["pose_rois"]) >= 0 for r in it)


def test_ddp_world_size_one_gloo(toy, tmp_path):
    root, yaml_path = toy
    env = ddp.DistEnv(rank=0, world_size=1, local_rank=0, distributed=True)
    t = Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path, "max_iters=1")), env=env,
                init_method=f"file://{tmp_path / 'pg_store'}")
    try:
        assert isinstance(t.model, torch.nn.parallel.DistributedDataParallel)
        assert torch.distributed.get_world_size() == 1 and torch.distributed.get_backend() == "gloo"
        out = t.train()
    finally:
        t.close()
    assert not torch.distributed.is_initialized()
    assert out["iterations"] == 1 and np.isfinite(out["last_losses"]["loss"])
    model, _ = model_from_checkpoint(out["final_checkpoint"])  # no 'module.' keys
    assert not any(k.startswith("module.") for k in model.state_dict())


def test_lr_scaling_with_the_global_batch(toy, tmp_path):
    root, yaml_path = toy
    t = Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path, "batch_size=4", "lr=0.001")))
    assert t.global_batch == 4 and t.optimizer.param_groups[0]["lr"] == pytest.approx(0.001)  # PT: as given
    t = Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path, "batch_size=4", "lr=0.001",
                                                 "lr_scaling=linear")))
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.002)  # x 4 / lr_reference_batch 2


def test_env_from_environ():
    assert ddp.env_from_environ({}) == ddp.DistEnv()
    e = ddp.env_from_environ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (e.rank, e.world_size, e.local_rank, e.distributed, e.is_main) == (3, 4, 1, True, False)
    with pytest.raises(ValueError, match="RANK=4"):
        ddp.env_from_environ({"RANK": "4", "WORLD_SIZE": "4"})


def test_missing_vgg16_says_no_internet(toy, tmp_path):
    root, yaml_path = toy
    cfg = load_config(None, tiny_overrides(root, yaml_path, tmp_path, "trunk_width=1.0", "fc_dim=4096",
                                           f"vgg16_init={tmp_path / 'vgg16.pth'}"))
    with pytest.raises(TrainingError, match="no internet access.*vgg16_init: null"):
        Trainer(cfg)


def test_cli_trains_and_prints_config(toy, tmp_path, capsys):
    root, yaml_path = toy
    args = ["--set=" + s for s in tiny_overrides(root, yaml_path, tmp_path, "max_iters=1", "save_half=true")]
    assert train_main(args + ["--print-config"]) == 0
    assert "trunk_width: 0.125" in capsys.readouterr().out
    assert train_main(args) == 0
    assert "trained 1 iterations" in capsys.readouterr().out
    raw = torch.load(tmp_path / "model_final.pt", weights_only=True)
    assert raw["weights_dtype"] == "float16"
    assert train_main(["--set", "lrr=1"]) == 2
    assert "unknown field" in capsys.readouterr().err


def test_init_weights_starts_from_a_checkpoint_and_names_mismatches(toy, tmp_path):
    from posecnn_core.checkpoint import read_state_dict

    root, yaml_path = toy
    first = Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path / "a", "max_iters=1")))
    final = first.train()["final_checkpoint"]
    saved, _ = read_state_dict(final)
    t = Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path / "b", f"init_weights={final}",
                                                 "seed=7")))
    assert t.iteration == 0  # weights only: the schedule starts again
    for k, v in t.net.state_dict().items():
        assert torch.equal(v, saved[k].to(v.dtype)), k
    with pytest.raises(TrainingError, match=r"(?s)init_weights: .*classifier\.0\.weight.*fc10\.weight \(model expects \[12, 16\]"):
        Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path / "c", f"init_weights={final}",
                                                 "fc_dim=16")))
    with pytest.raises(TrainingError, match="init_weights: .*nothing.pt"):
        Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path / "d",
                                                 f"init_weights={tmp_path / 'nothing.pt'}")))
    with pytest.raises(ConfigError, match="'vgg16_init' and 'init_weights'"):
        load_config(None, tiny_overrides(root, yaml_path, tmp_path / "e", f"init_weights={final}",
                                         f"vgg16_init={final}", "trunk_width=1.0"))


def test_freeze_early_convs_applies_to_init_weights_and_refuses_random_weights(toy, tmp_path):
    from posecnn_core.network import _EARLY_CONVS

    root, yaml_path = toy
    final = Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path / "a", "max_iters=1"))).train()[
        "final_checkpoint"]
    t = Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path / "b", f"init_weights={final}",
                                                 "freeze_early_convs=true", "max_iters=2")))
    early = [t.net.features[i] for i in _EARLY_CONVS]
    before = [m.weight.detach().clone() for m in early]
    assert not any(p.requires_grad for m in early for p in m.parameters())
    t.train()
    assert all(torch.equal(b, m.weight) for b, m in zip(before, early))
    with pytest.raises(ConfigError, match="freeze_early_convs: true needs pretrained weights"):
        Trainer(load_config(None, tiny_overrides(root, yaml_path, tmp_path / "c", "freeze_early_convs=true")))
