"""How many training RoIs training-mode voting gives a checkpoint's heads (``roi_source: voting``).

python bench/voting_roi_coverage.py --checkpoint runs/demo_cpu/checkpoints/iter_0000500.pt \
    --config config/train/demo_cpu.yaml [--frames 32] [--set key=value ...]

On ``--frames`` training frames of the config's data (spread evenly, no augmentation) runs the checkpoint's dense
heads, training-mode Hough voting and PT's RoI/pose target rules exactly as a training step does
(``posecnn_core.train.loop``) and prints: objects (with >= min_visible_pixels labelled pixels), voting RoIs,
foreground RoIs of the box head, RoIs of the rotation head (regressed boxes of matching class) and how many
objects have at least one rotation RoI.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout, not an installed copy

from posecnn_core.checkpoint import model_from_checkpoint  # noqa: E402
from posecnn_core.objects import load_object_set  # noqa: E402
from posecnn_core.train.config import AugmentConfig, load_config  # noqa: E402
from posecnn_core.train.data import TrainDataset, collate  # noqa: E402
from posecnn_core.train.loop import label_rois, pose_targets_from_boxes, voting_rois  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, nargs="+")
    p.add_argument("--config", required=True)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    objects = load_object_set(cfg.objects, models_root=cfg.models_root)
    ds = TrainDataset(cfg.train_data, objects, in_channels=cfg.in_channels, input_size=cfg.input_size,
                      augment=AugmentConfig(enabled=False), reference_focal=cfg.reference.focal)
    extents = torch.from_numpy(objects.extents)
    idx = np.unique(np.linspace(0, len(ds) - 1, min(args.frames, len(ds))).round().astype(int))
    print(f"{'checkpoint':<48} {'objects':>7} {'rois':>6} {'fg rois':>7} {'rot rois':>8} {'objects w/ rot roi':>18}")
    for path in args.checkpoint:
        net, _ = model_from_checkpoint(path)
        net.eval()
        n_obj = n_rois = n_fg = n_pose = covered = 0
        with torch.no_grad():
            for s in range(0, len(idx), 2):
                b = collate([ds[int(i)] for i in idx[s:s + 2]])
                scores, vertex, conv4, conv5 = net.dense(b.image)
                rows = voting_rois(scores, vertex, b, extents, cfg.reference.focal, cfg)
                box = label_rois(torch.cat([rows[:, :1], rows[:, 2:6]], 1), b, cfg.roi_fg_iou,
                                 roi_classes=rows[:, 1].long())
                pose = pose_targets_from_boxes(box, net.fc9(net.roi_features(conv4, conv5, box.rois)), b,
                                               cfg.pose_fg_iou)
                visible = b.inst_visible >= max(cfg.min_visible_pixels, 1)
                n_obj += int(visible.sum())
                n_rois += rows.shape[0]
                n_fg += int((box.classes > 0).sum())
                n_pose += pose.rois.shape[0]
                covered += len(set(pose.gt_index.tolist()) & set(torch.nonzero(visible).flatten().tolist()))
        print(f"{str(path):<48} {n_obj:7d} {n_rois:6d} {n_fg:7d} {n_pose:8d} {covered:18d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
