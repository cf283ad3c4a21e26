"""Per-stage times of one camera frame through the node's path on the CPU; prints a table.

    python bench/bench_stages.py [--repeat 5] [--threads 2] [--dataset data/synthetic/demo_v2_heldout]
                                 [--checkpoint CKPT --objects YAML] [--amp]

Rows: 320x240 and 640x480, RGB and RGB-D, the 1 or 5 most confident detections (EstimatorConfig.max_instances).
Columns: decode (the node's sensor_msgs/Image -> numpy conversion of the colour and, with depth, the depth image),
the estimator's stages (preprocess, dense network, voting, RoI heads, depth refinement), publish (building the
node's detection, estimate, TF and marker messages; sending them is in bench/node_bench.py) and the total, all
medians in ms; "dense % peak" is the trunk's FLOP rate over the CPU's measured float32 matmul peak.

Frames: the first frame with at least 5 objects of a dataset in the YCB-Video layout (default: the held-out split
of the demo data, docs/data.md), resized to each size with its intrinsics scaled; without one, the first colour
frame of the bundled bag with a flat depth image (refinement then mostly declines: its time is not
representative). Default model: the bundled demo checkpoint and object set. Times on a shared machine vary:
compare rows of one run, and state the load (uptime) with the numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from bench_dense import trunk_gflop  # noqa: E402
from posecnn_core.estimator import EstimatorConfig, PoseEstimator  # noqa: E402
from posecnn_core.resources import resource_path  # noqa: E402

STAGES = ("decode", "preprocess", "network", "voting", "rotation", "refinement", "publish")
HEADERS = ("decode", "prep", "dense", "voting", "heads", "refine", "publish")


def dataset_frame(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(rgb, depth metres, K) of the first frame with at least 5 objects, or None."""
    from posecnn_core.datasets.ycb import read_frame, read_frame_list

    if not root.is_dir():
        return None
    for split in ("test", "train"):
        try:
            ids = read_frame_list(root, split)
        except (OSError, ValueError):
            continue
        for fid in ids[:50]:
            f = read_frame(root, fid)
            if f.num_objects >= 5 and f.depth is not None:
                return np.ascontiguousarray(f.color_bgr[:, :, ::-1]), f.depth, f.K
    return None


def bag_frame() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from bench_depth_modes import bag_frame as first_bag_image

    rgb = first_bag_image()
    K = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])
    return rgb, np.full(rgb.shape[:2], 1.0, np.float32), K


def resized(rgb, depth, K, w: int, h: int):
    sx, sy = w / rgb.shape[1], h / rgb.shape[0]
    S = np.diag([sx, sy, 1.0])
    K2 = S @ K
    K2[0, 2] = (K[0, 2] + 0.5) * sx - 0.5  # pixel centres stay pixel centres
    K2[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return (cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR),
            cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST), K2)


def ros_stages(rgb: np.ndarray, depth: np.ndarray | None):
    """(decode(), publish(objects)) closures timing the node's conversions, or None without ROS messages."""
    try:
        from std_msgs.msg import Header
        from sensor_msgs.msg import Image

        from posecnn_ros import image_conversion as ic
        from posecnn_ros import messages
    except ImportError:
        return None
    h, w = rgb.shape[:2]
    img = Image(height=h, width=w, encoding="rgb8", step=3 * w, data=rgb.tobytes())
    dimg = None
    if depth is not None:
        mm = np.round(depth * 1000).astype(np.uint16)
        dimg = Image(height=h, width=w, encoding="16UC1", step=2 * w, data=mm.tobytes())
    header = Header(frame_id="camera")

    def decode():
        ic.image_to_rgb(img)
        if dimg is not None:
            ic.depth_to_metres(dimg, 0.001)

    def publish(objects, extents, stages):
        messages.detections_3d(objects, header, extents)
        messages.detections_2d(objects, header)
        messages.estimates(objects, header, stages, 0.0, "cpu", 0, 0, 0)
        messages.transforms(objects, header, "posecnn")
        messages.markers(objects, header, extents, [None] * len(extents), len(extents))

    return decode, publish


_now = time.perf_counter


class _ProcessClock:
    """Stands in for the `time` module of the estimator's stage clock: perf_counter reads the CPU time."""

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def perf_counter() -> float:
        return time.process_time()


def median_ms(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = _now()
        fn()
        samples.append((_now() - t0) * 1e3)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dataset", default="data/synthetic/demo_v2_heldout")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--objects", default=None)
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast for the dense network (amp)")
    ap.add_argument("--sizes", nargs="+", default=["320x240", "640x480"])
    ap.add_argument("--rotation-crop", type=float, default=None, metavar="SIZE",
                    help="EstimatorConfig.rotation_crop_size (0 = from the frame; default: as the checkpoint says)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: time every stage by the process's CPU time (all threads together) instead of the "
                         "wall clock; on a machine shared with other jobs, `--threads 1 --clock cpu` approximates "
                         "the one-thread time of an idle machine")
    args = ap.parse_args()
    if args.clock == "cpu":
        import posecnn_core.inference_runtime as runtime

        global _now
        _now = time.process_time
        runtime.time = _ProcessClock()
    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or resource_path("data/models/demo.pt")
    objects = args.objects or resource_path("config/objects/demo.yaml")
    frame = dataset_frame(Path(args.dataset)) or bag_frame()
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    median_ms(lambda: a @ b, 1)
    peak = 2 * 2048 ** 3 / (median_ms(lambda: a @ b, args.repeat) / 1e3) / 1e9  # float32 matmul GFLOP/s
    print(f"clock={args.clock}, threads={torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"float32 matmul peak {peak:.0f} GFLOP/s, load {os.getloadavg()[0]:.1f}, amp={args.amp}, "
          f"rotation_crop_size={'as the checkpoint says' if args.rotation_crop is None else args.rotation_crop}")
    cols = ["size", "input", "objects", *HEADERS, "total", "dense % peak", "found"]
    print(" | ".join(f"{c:>8}" for c in cols))
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        rgb, depth, K = resized(*frame, w, h)
        for use_depth in (False, True):
            for n in (1, 5):
                cfg = EstimatorConfig.preset("pt_demo", max_instances=n, amp=args.amp)
                if args.rotation_crop is not None:
                    cfg = dataclasses.replace(cfg, rotation_crop_size=args.rotation_crop or None)
                est = PoseEstimator(checkpoint, objects, device="cpu", config=cfg)
                ros = ros_stages(rgb, depth if use_depth else None)
                extents = est._extents.numpy()
                times: dict[str, list[float]] = {s: [] for s in STAGES}
                found = 0
                for r in range(args.repeat + 1):
                    if ros is not None:
                        t_dec = median_ms(ros[0], 1)
                    res = est.estimate(rgb, K, depth if use_depth else None)
                    if ros is not None:
                        t0 = _now()
                        ros[1](res.objects, extents, list(res.timings_ms.items()))
                        t_pub = (_now() - t0) * 1e3
                    if r == 0:
                        continue  # warm-up
                    found = len(res.objects)
                    for s in STAGES[1:-1]:
                        times[s].append(res.timings_ms.get(s, 0.0))
                    if ros is not None:
                        times["decode"].append(t_dec)
                        times["publish"].append(t_pub)
                med = {s: statistics.median(v) if v else float("nan") for s, v in times.items()}
                total = sum(v for v in med.values() if v == v)
                gf = trunk_gflop(est.net, h, w)
                share = 100 * gf / (med["network"] / 1e3) / peak
                row = [size, "RGB-D" if use_depth else "RGB", str(n), *(f"{med[s]:.1f}" for s in STAGES),
                       f"{total:.0f}", f"{share:.0f}", str(found)]
                print(" | ".join(f"{c:>8}" for c in row), flush=True)


if __name__ == "__main__":
    main()
