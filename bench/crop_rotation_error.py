"""Rotation error of checkpoints' rotation heads on fresh crops from the view bank (the crop stream's own
distribution), next to which the trainer's held-out probe (train_rotation_eval.csv) tells whether a run learns
rotation at all or only fails to carry it over to frames.

    python bench/crop_rotation_error.py --config config/train/demo_v4_rot_cpu.yaml CKPT [CKPT ...] [--batches 4]
                                        [--set crops.size_min=80 ...] [--frames 40]

Crops come from iterations the run never reaches (a separate random stream: seed + 1), ground-truth boxes; errors
are the angle between predicted and target allocentric quaternions, up to a class's declared finite symmetry, over
the classes with finitely many correct rotations (``ObjectSet.finite_symmetry``); one column per such class.
Prints one row per checkpoint.
"""
from __future__ import annotations

import argparse

import torch

import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout, not an installed copy

from posecnn_core.checkpoint import load_weights, read_state_dict  # noqa: E402
from posecnn_core.network import PoseCNN, normalize_bgr  # noqa: E402
from posecnn_core.objects import load_object_set  # noqa: E402
from posecnn_core.symmetry import group_quaternions, nearest_symmetric_targets  # noqa: E402
from posecnn_core.train import ddp  # noqa: E402
from posecnn_core.train.config import load_config  # noqa: E402
from posecnn_core.train.crop_stream import CropStream  # noqa: E402
from posecnn_core.train.rotation_eval import summarize  # noqa: E402


def crop_errors(net: PoseCNN, stream: CropStream, batches: int, groups: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(angle errors in degrees [n], up to each class's symmetry group ``groups`` [C, K, 4]; class indices [n])
    of `batches` crop batches."""
    errors, classes = [], []
    with torch.no_grad():
        for b in range(batches):
            image, rois, cls, q_gt = stream.batch(10**9 + b).tensors(torch.device("cpu"))
            conv4, conv5 = net.trunk(normalize_bgr(image))
            q = net.rotation_head(conv4, conv5, rois)
            n = cls.shape[0]
            q_pred = torch.nn.functional.normalize(q.view(n, -1, 4)[torch.arange(n), cls].float(), dim=-1)
            q_gt = nearest_symmetric_targets(q_pred, q_gt.float(), groups[cls])
            cos_half = (q_pred * q_gt).sum(-1).abs().clamp(max=1.0)
            errors.append(torch.rad2deg(2 * torch.acos(cos_half)))
            classes.append(cls)
    return torch.cat(errors), torch.cat(classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the training config (object set, crop settings, network)")
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--batches", type=int, default=4, help="crop batches of the config's crops.batch_size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", type=int, default=0, help="also the probe on this many rotation_eval_data frames")
    ap.add_argument("--frame-crop", default=None, metavar="SIZE,CANVAS",
                    help="the frame probe also with each object in its own crop (posecnn_core.rotation_crops), "
                         "e.g. 90,112")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config overrides, e.g. crops.size_min=80 (the crops measured on)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.set)
    cfg = load_config(args.config, [*args.set, f"seed={cfg.seed + 1}"])
    objects = load_object_set(cfg.objects, models_root=cfg.models_root)
    stream = CropStream(cfg, objects, torch.device("cpu"), ddp.env_from_environ())
    scored = torch.as_tensor(objects.finite_symmetry)
    groups = group_quaternions(objects.symmetry_groups)
    names = [objects.class_names[c] for c in range(objects.num_classes) if objects.finite_symmetry[c]]
    probe = None
    if args.frames:
        from posecnn_core.train.trainer import make_rotation_probe

        probe_cfg = load_config(args.config, [*args.set, f"rotation_eval_frames={args.frames}"])
        probe = make_rotation_probe(probe_cfg, objects, torch.device("cpu"))
    frame_crop = None
    if probe is not None and args.frame_crop:
        size, canvas = args.frame_crop.split(",")
        frame_crop = (float(size), int(canvas))
    print(f"{'checkpoint':<52} | {'crops':>6} | {'median (deg)':>12} | {'< 30 deg':>8}"
          + "".join(f" | {n + ' median':>14}" for n in names)
          + (f" | {'frames: objects':>15} | {'median (deg)':>12}" if probe else "")
          + (f" | {'crops of frames':>15}" if frame_crop else ""))
    for path in args.checkpoints:
        state, meta = read_state_dict(path)  # the network's shape from the checkpoint, else the config's
        net = PoseCNN(objects.num_classes, in_channels=cfg.in_channels,
                      fc_dim=meta.fc_dim if meta is not None and meta.fc_dim else cfg.fc_dim,
                      trunk_width=meta.trunk_width if meta is not None and meta.trunk_width else cfg.trunk_width)
        load_weights(net, state)
        err, cls = crop_errors(net.eval(), stream, args.batches, groups)
        keep = scored[cls]
        e = err[keep]
        row = (f"{path:<52} | {int(keep.sum()):>6} | {float(e.median()):>12.1f} | "
               f"{100 * float((e < 30).float().mean()):>7.0f}%")
        row += "".join(f" | {float(err[cls == objects.index(n)].median()):>14.1f}" for n in names)
        if probe is not None:
            summary = summarize(probe.errors(net))
            row += f" | {summary.instances:>15} | {summary.median_deg:>12.1f}"
        if frame_crop is not None:
            row += f" | {summarize(probe.errors(net, crop=frame_crop)).median_deg:>15.1f}"
        print(row)


if __name__ == "__main__":
    main()
