"""Cost of the two focal-length-aware depth modes at 640x480; prints a table.

    python bench/bench_depth_modes.py [--repeat 5] [--threads N] [--checkpoint CKPT --objects YAML]
                                      [--device cpu|cuda] [--ratios 0.6 1.0 1.6]

For each ratio f_cam / f_ref the same 640x480 frame runs through ``PoseEstimator.estimate`` with
``depth_mode="scale"`` (the network sees the frame as it is; its depth is multiplied by f_cam / f_ref) and
``depth_mode="resample"`` (the frame is resized by f_ref / f_cam, at most ``max_resample_scale``, so that objects
appear at their training size). Default model: the bundled demo checkpoint and object set, whose reference camera
the camera's focal length is derived from. The frame is the first image of the bundled sample bag
resized to 640x480 (random pixels with ``--random``). Ratios measured in one run; accuracy of the modes is in
docs/conventions.md ("Focal-length-aware depth").
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from bench_cpu import timed  # run as a script: bench/ is on sys.path
from posecnn_core.estimator import EstimatorConfig, PoseEstimator
from posecnn_core.resources import resource_path

H, W = 480, 640


def bag_frame() -> np.ndarray:
    """The first RGB image of the bundled sample bag, resized to 640x480."""
    from rosbags.highlevel import AnyReader

    with AnyReader([resource_path("data/bags/demo/metadata.yaml").parent]) as reader:
        for conn, _, raw in reader.messages():
            if conn.msgtype == "sensor_msgs/msg/Image":
                msg = reader.deserialize(raw, conn.msgtype)
                if msg.encoding in ("rgb8", "bgr8"):
                    img = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
                    img = img[:, :, ::-1] if msg.encoding == "bgr8" else img
                    return cv2.resize(np.ascontiguousarray(img), (W, H), interpolation=cv2.INTER_LINEAR)
    raise SystemExit("no rgb8/bgr8 image in the sample bag")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--checkpoint", default=None, help="default: the bundled demo checkpoint")
    parser.add_argument("--objects", default=None, help="default: the bundled demo object set")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.6, 1.0, 1.6],
                        help="f_cam / f_ref of the simulated camera")
    parser.add_argument("--random", action="store_true", help="random pixels instead of the sample bag's frame")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or resource_path("data/models/demo.pt")
    objects = args.objects or resource_path("config/objects/demo.yaml")
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8) if args.random else bag_frame()
    rows = []
    base = None
    for mode in ("scale", "resample"):
        est = PoseEstimator(checkpoint, objects, device=args.device, config=EstimatorConfig(depth_mode=mode))
        ref, source = est.reference_camera()
        if ref is None:
            raise SystemExit("the model records no reference camera: both modes would be the same")
        for ratio in args.ratios:
            f = ref.focal * ratio
            K = np.array([[f, 0, W / 2 - 0.5], [0, f, H / 2 - 0.5], [0, 0, 1]])
            size = est.estimate(rgb, K)  # warm-up, and the network's input size
            ms = timed(lambda: est.estimate(rgb, K), args.repeat)
            if mode == "scale" and ratio == 1.0:
                base = ms
            rows.append((mode, ratio, ms, size.timings_ms))
    print(f"{args.device}, {args.threads} thread(s), {W}x{H} frame, reference camera f = {ref.focal:.1f} px "
          f"({source}), median of {args.repeat}")
    print("mode     | f_cam/f_ref | total ms | network ms | voting ms | vs scale@1.0")
    print("---------|-------------|----------|------------|-----------|-------------")
    for mode, ratio, ms, t in rows:
        rel = f"{ms / base:.2f}x" if base else "n/a"
        print(f"{mode:<8} | {ratio:>11.2f} | {ms:8.1f} | {t['network']:10.1f} | {t['voting']:9.1f} | {rel:>11}")


if __name__ == "__main__":
    main()
