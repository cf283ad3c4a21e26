"""How much gradient each rotation loss gives the rotation head, per class of an object set.

python bench/rotation_loss_gradients.py [--objects config/objects/demo.yaml] [--rois 256] [--hard-angle 5]

For random (predicted, ground-truth) quaternion pairs, prints per class the mean loss and the mean norm of its
gradient with respect to the raw quaternion output, for PoseCNN-PyTorch's point-matching loss (``pt``) and the
paper's PoseLoss / ShapeMatch-Loss in metres (``paper``), and the ratio of the gradient norms.
"""
from __future__ import annotations

import argparse
import sys

import torch

from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # time this checkout, not an installed copy

from posecnn_core.losses import point_matching_loss, pose_loss  # noqa: E402
from posecnn_core.objects import load_object_set  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", default="config/objects/demo.yaml")
    p.add_argument("--rois", type=int, default=256, help="random quaternion pairs per class")
    p.add_argument("--hard-angle", type=float, default=5.0)
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    objs = load_object_set(args.objects)
    pts, counts = objs.points_tensor(max_points=args.points)
    ext = torch.from_numpy(objs.extents)
    sym = torch.from_numpy(objs.symmetric_training)
    g = torch.Generator().manual_seed(args.seed)
    print(f"{'class':<24} {'sym':>3} {'max ext m':>9} {'pt loss':>8} {'pt |grad|':>10} {'paper loss':>11} "
          f"{'paper |grad|':>12} {'ratio':>8}")
    for c in range(1, objs.num_classes):
        R = args.rois
        q_gt = torch.nn.functional.normalize(torch.randn(R, 4, generator=g), dim=1)
        q_raw = torch.randn(R, 4, generator=g)
        cls = torch.full((R,), c)
        stats = []
        for name in ("pt", "paper"):
            q = q_raw.clone().requires_grad_()
            if name == "pt":
                loss = point_matching_loss(q, q_gt, pts[cls], ext[cls], sym[cls], args.hard_angle, counts[cls])
            else:
                loss = pose_loss(q, q_gt, pts[cls], counts[cls], sym[cls])
            loss.backward()
            stats.append((loss.item(), q.grad.norm(dim=1).mean().item()))
        (lp, gp), (lq, gq) = stats
        print(f"{objs.class_names[c]:<24} {'yes' if sym[c] else '':>3} {ext[c].max().item():9.3f} {lp:8.3f} "
              f"{gp:10.4f} {lq:11.2e} {gq:12.2e} {gp / max(gq, 1e-30):8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
