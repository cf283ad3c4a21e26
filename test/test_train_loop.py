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
from posecnn_core.train.config import ConfigError, TrainConfig, load_config  # noqa: E402
from posecnn_core.train.data import (EpochSampler, TrainDataset, collate, expand_vertex_targets,  # noqa: E402
                                     resize_frame)
from posecnn_core.train.loop import box_iou, encode_box_deltas, sample_rois  # noqa: E402
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


def test_yaml_overrides_and_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.01\naugment: {noise_or_blur_prob: 0.0}\ntrain_data: [{root: /x, split: val, synthetic: true}]\n")
    c = load_config(p, ["augment.hls_prob=0.5", "max_iters=5", "input_size=[96, 128]"])
    assert c.lr == 0.01 and c.augment.noise_or_blur_prob == 0 and c.augment.hls_prob == 0.5 and c.max_iters == 5
    assert c.augment.for_source(False).background_prob == 0 and c.augment.for_source(True).background_prob == 0.5
    assert c.train_data[0].split == "val" and c.train_data[0].synthetic and c.input_size == [96, 128]
    for bad, word in ((["lrr=1"], "unknown field"), (["augment.nois=1"], "augment.nois"),
                      (["batch_size=0"], "batch_size"), (["trunk_width=0.5"], "vgg16_init"),
                      (["optimizer=rmsprop"], "optimizer"), (["input_size=[10, 20]"], "input_size"),
                      (["lr"], "key=value"), (["augment.blur_max_length=2"], "blur_max_length")):
        with pytest.raises(ConfigError, match=word):
            load_config(p, bad)
    with pytest.raises(ConfigError, match="train_data' is empty"):
        TrainConfig().check_ready()


def test_example_configs_load():
    root = Path(__file__).resolve().parents[1]
    demo = load_config(root / "config/train/demo.yaml")
    assert demo.trunk_width == 0.5 and demo.fc_dim == 256 and demo.vgg16_init is None
    ycb = load_config(root / "config/train/ycb_video.yaml")
    assert ycb.fc_dim == 4096 and ycb.vgg16_init and ycb.iters_per_epoch == 20000


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
                           np.full(n, 100), "x")
    b = collate([sample(40, 50, 2), sample(30, 64, 1)])
    assert b.image.shape == (2, 3, 48, 64) and b.label.shape == (2, 48, 64)
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


def test_sample_rois_labels_and_deltas(toy):
    root, yaml_path = toy
    objects = load_object_set(yaml_path)
    cfg = load_config(None, tiny_overrides(root, yaml_path, root / "o", "rois_per_object=3",
                                           "bg_rois_per_image=4", "min_visible_pixels=1"))
    ds = TrainDataset(cfg.train_data, objects)
    b = collate([ds[0], ds[1]])
    roi = sample_rois(b, cfg, np.random.default_rng(0))
    assert roi.rois.shape == (4 * 3 + 2 * 4, 5)
    fg = roi.classes > 0
    assert fg.sum() >= 8
    gt = roi.gt_index[fg]
    assert torch.equal(roi.classes[fg], b.inst_class[gt])
    assert torch.equal(roi.rois[fg, 0].long(), b.inst_batch[gt])  # RoIs stay in their own image
    iou = box_iou(roi.rois[fg, 1:].double(), b.inst_box.double())[torch.arange(int(fg.sum())), gt]
    assert (iou >= cfg.roi_fg_iou).all()
    assert (roi.box_deltas[~fg] == 0).all()
    # deltas reproduce the ground-truth box through the estimator's decoding formula
    stds = torch.tensor([0.1, 0.1, 0.2, 0.2])
    r, d = roi.rois[fg, 1:].double(), roi.box_deltas[fg].double() * stds
    w, h = r[:, 2] - r[:, 0] + 1, r[:, 3] - r[:, 1] + 1
    cx, cy = r[:, 0] + 0.5 * w + d[:, 0] * w, r[:, 1] + 0.5 * h + d[:, 1] * h
    pw, ph = torch.exp(d[:, 2]) * w, torch.exp(d[:, 3]) * h
    dec = torch.stack([cx - 0.5 * pw, cy - 0.5 * ph, cx + 0.5 * pw - 1, cy + 0.5 * ph - 1], 1)
    assert torch.allclose(dec, b.inst_box[gt].double(), atol=1e-3)
    assert torch.allclose(encode_box_deltas(b.inst_box[:1], b.inst_box[:1]), torch.zeros(1, 4))


def test_box_deltas_invert_estimator_decoding():
    from posecnn_core.boxes import BoxCoder

    rois = torch.tensor([[10.0, 12.0, 40.0, 30.0], [0.0, 0.0, 5.0, 9.0]])
    gt = torch.tensor([[12.0, 10.0, 45.0, 33.0], [1.0, 2.0, 7.0, 8.0]])
    # PT's decoding has no -1 in x2/y2: decoding the encoded box gives it back shifted by one pixel there
    expect = gt + torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert torch.allclose(BoxCoder().decode(rois, encode_box_deltas(rois, gt)), expect, atol=1e-4)


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
