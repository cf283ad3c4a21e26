"""Time depth refinement per object on CPU (and CUDA when available) and print a table.

Synthetic 640x480 frames with the YCB-Video camera: a box-shaped object (cracker-box size) rendered with the
CPU rasteriser, 1 mm depth noise, the pose perturbed by 5 cm and 10 degrees (or 120 degrees: a rotation the
network got wrong) (1 object at 1 m, or 4 in a grid at 1.4 m). Rows vary the number of model points and of
observed depth points used (`max_points`) and the rotation search (`rotation_search` start rotations; 0 = local
ICP only), for one instance per call and for a batch of instances (refine_poses, reported per object).

    python bench/bench_refine.py [--repeats 3] [--devices cpu,cuda] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import trimesh
from scipy.spatial.transform import Rotation

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path[:0] = [_ROOT, os.path.join(_ROOT, "test")]  # the depth rasteriser is a test helper
from _depth_render import render_scene  # noqa: E402
from posecnn_core.refine import refine_poses  # noqa: E402

K_YCB = np.array([[1066.778, 0.0, 312.9869], [0.0, 1067.487, 241.3109], [0.0, 0.0, 1.0]])


def make_frame(n_objects: int, seed: int = 0):
    """n_objects boxes side by side; returns depth, masks, ground-truth poses and the mesh."""
    mesh = trimesh.creation.box(extents=(0.16, 0.21, 0.06)).subdivide().subdivide()
    rng = np.random.default_rng(seed)
    poses = []
    # One object in the middle at 1 m, or a 2-column grid at 1.4 m with little mutual occlusion.
    spots = [(0.0, 0.0, 1.0)] if n_objects == 1 else \
        [((i % 2 - 0.5) * 0.3, (i // 2 - (n_objects - 1) // 4) * 0.26, 1.4) for i in range(n_objects)]
    for spot in spots:
        R = Rotation.from_euler("xyz", rng.uniform(-30, 30, 3), degrees=True).as_matrix()
        poses.append((R, np.array(spot)))
    depth, inst = render_scene([(mesh.vertices, mesh.faces, R, t) for R, t in poses], K_YCB, 480, 640)
    depth = np.where(depth > 0, depth + rng.normal(scale=0.001, size=depth.shape), 1.5)
    return depth, [inst == i for i in range(n_objects)], poses, mesh


def perturbed(poses, seed: int, rot_deg: float):
    rng = np.random.default_rng(seed)
    out = []
    for R, t in poses:
        d, a = rng.normal(size=3), rng.normal(size=3)
        dR = Rotation.from_rotvec(np.deg2rad(rot_deg) * a / np.linalg.norm(a)).as_matrix()
        out.append((dR @ R, t + 0.05 * d / np.linalg.norm(d)))
    return out


def run(device: str, n_objects: int, n_model: int, max_points: int, search: int, rot_deg: float, repeats: int
        ) -> tuple[float, float, float, list[str]]:
    depth, masks, poses, mesh = make_frame(n_objects)
    pts, _ = trimesh.sample.sample_surface(mesh, n_model, seed=1)
    dev = torch.device(device)
    f32 = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32, device=dev)  # noqa: E731
    depth_t, K_t = f32(depth), f32(K_YCB)
    masks_t = [torch.as_tensor(m, device=dev) for m in masks]
    pts_t = [f32(pts)] * n_objects
    times, ok, err, reasons = [], 0, [], []
    for r in range(repeats + 1):  # the first run warms up
        init = perturbed(poses, seed=10 + r, rot_deg=rot_deg)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        res = refine_poses(depth_t, K_t, masks_t, [f32(R) for R, _ in init], [f32(t) for _, t in init], pts_t,
                           max_points=max_points, rotation_search=search)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if r == 0:
            continue
        times.append((time.perf_counter() - start) * 1000.0 / n_objects)
        ok += sum(x.success for x in res)
        reasons += [x.reason for x in res if not x.success]
        err += [float(np.linalg.norm(x.t.cpu().numpy() - t)) for x, (_, t) in zip(res, poses)]
    return float(np.median(times)), ok / (repeats * n_objects), float(np.median(err)) * 1000.0, reasons


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    if "cuda" in args.devices and "cuda" not in devices:
        print("CUDA not available: CPU only")
    configs = [(1, 1000, 500, 0, 10.0), (1, 2620, 1000, 0, 10.0), (1, 2620, 2000, 0, 10.0),
               (1, 5000, 2000, 0, 10.0), (4, 2620, 1000, 0, 10.0),
               (1, 2620, 1000, 72, 10.0), (1, 2620, 1000, 72, 120.0), (4, 2620, 1000, 72, 120.0)]
    print(f"{'device':<8}{'objects':>8}{'model pts':>10}{'obs pts':>9}{'search':>8}{'rot off':>8}{'ms/object':>11}"
          f"{'success':>9}{'med |dt| mm':>13}")
    for device in devices:
        name = torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
        print(f"# {name}")
        for n_obj, n_model, max_points, search, rot in configs:
            ms, success, err, reasons = run(device, n_obj, n_model, max_points, search, rot, args.repeats)
            print(f"{device:<8}{n_obj:>8}{n_model:>10}{max_points:>9}{search:>8}{rot:>8.0f}{ms:>11.1f}{success:>9.2f}"
                  f"{err:>13.2f}"
                  + (f"   declined: {'; '.join(sorted(set(reasons)))}" if reasons else ""))


if __name__ == "__main__":
    main()
