#!/usr/bin/env python3
"""Turn frames of a YCB-Video-layout split into a rosbag2 bag (mcap, zstd-compressed messages) for the demo and tests.

Input layout: <root>/data/<seq>/NNNNNN-color.png, -depth.png (uint16, metres = value / factor_depth), -meta.mat
(cls_indexes, poses 3x4xN, intrinsic_matrix, factor_depth). Topics written, all with the same stamp per frame and
frame id --frame-id:
  /image        sensor_msgs/Image rgb8
  /camera_info  sensor_msgs/CameraInfo (K from intrinsic_matrix, plumb_bob, no distortion)
  /depth        sensor_msgs/Image 16UC1 in millimetres (node parameter depth_scale 0.001)
  /ground_truth vision_msgs/Detection3DArray (class_id = class name, score 1, pose, bbox size = extents, id <class>_<k>;
                for a sequence whose meta holds object_ids (python -m posecnn_core.synth --sequence), id
                <class>_<object id>, the object's identity over the sequence)

    python tools/make_sample_bag.py --root SPLIT --objects config/objects/demo.yaml --out data/bags/demo --frames 30
    python tools/make_sample_bag.py --root SEQUENCE --objects config/objects/demo.yaml --out data/bags/demo_sequence
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import scipy.io
from scipy.spatial.transform import Rotation

FRAME_ID = "camera_color_optical_frame"
START_SEC = 1_700_000_000
TOPICS = {"/image": "sensor_msgs/msg/Image", "/camera_info": "sensor_msgs/msg/CameraInfo",
          "/depth": "sensor_msgs/msg/Image", "/ground_truth": "vision_msgs/msg/Detection3DArray"}


def vision_msgs_dir() -> Path:
    """The installed vision_msgs interface definitions (share/vision_msgs/msg)."""
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("vision_msgs")) / "msg"


def make_typestore(vision_msg_dir: Path | None = None) -> Any:
    """rosbags' Kilted typestore plus every vision_msgs .msg definition found in `vision_msg_dir`."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    folder = vision_msg_dir or vision_msgs_dir()
    types: dict[str, Any] = {}
    for path in sorted(folder.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    if "vision_msgs/msg/Detection3DArray" not in types:
        raise FileNotFoundError(f"no vision_msgs/Detection3DArray definition in {folder}")
    store.register(types)
    return store


def frame_ids(seq_dir: Path) -> list[str]:
    """Sorted frame prefixes (NNNNNN) of one sequence folder that have colour, depth and meta files."""
    ids = sorted(p.name[: -len("-color.png")] for p in seq_dir.glob("*-color.png"))
    return [i for i in ids if (seq_dir / f"{i}-depth.png").is_file() and (seq_dir / f"{i}-meta.mat").is_file()]


def read_frame(seq_dir: Path, frame: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(rgb uint8 [H, W, 3], depth metres float32 [H, W], meta dict) of one frame."""
    bgr = cv2.imread(str(seq_dir / f"{frame}-color.png"), cv2.IMREAD_COLOR)
    raw = cv2.imread(str(seq_dir / f"{frame}-depth.png"), cv2.IMREAD_UNCHANGED)
    if bgr is None or raw is None:
        raise ValueError(f"cannot read frame {frame} in {seq_dir}")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise ValueError(f"{frame}-depth.png must be single-channel uint16, got {raw.dtype} {raw.shape}")
    meta = scipy.io.loadmat(str(seq_dir / f"{frame}-meta.mat"))
    factor = float(np.asarray(meta["factor_depth"]).ravel()[0])
    depth = raw.astype(np.float32) / np.float32(factor)
    return np.ascontiguousarray(bgr[:, :, ::-1]), depth, meta


class FrameEncoder:
    """Builds the CDR bytes of one frame's messages with a rosbags typestore."""

    def __init__(self, store: Any, class_names: Sequence[str], extents: np.ndarray, frame_id: str = FRAME_ID):
        self.store = store
        self.t = store.types
        self.class_names = list(class_names)
        self.extents = np.asarray(extents, np.float64)
        self.frame_id = frame_id

    def _header(self, stamp_ns: int) -> Any:
        time_cls = self.t["builtin_interfaces/msg/Time"]
        return self.t["std_msgs/msg/Header"](stamp=time_cls(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
                                             frame_id=self.frame_id)

    def _image(self, arr: np.ndarray, encoding: str, stamp_ns: int) -> bytes:
        arr = np.ascontiguousarray(arr)
        msg = self.t["sensor_msgs/msg/Image"](header=self._header(stamp_ns), height=arr.shape[0], width=arr.shape[1],
                                              encoding=encoding, is_bigendian=0, step=arr.strides[0],
                                              data=np.frombuffer(arr.tobytes(), np.uint8))
        return bytes(self.store.serialize_cdr(msg, "sensor_msgs/msg/Image"))

    def image(self, rgb: np.ndarray, stamp_ns: int) -> bytes:
        return self._image(rgb, "rgb8", stamp_ns)

    def depth(self, depth_m: np.ndarray, stamp_ns: int) -> bytes:
        """16UC1 millimetres (0 = no reading)."""
        mm = np.clip(np.round(np.nan_to_num(depth_m, nan=0.0) * 1000.0), 0, 65535).astype("<u2")
        return self._image(mm, "16UC1", stamp_ns)

    def camera_info(self, K: np.ndarray, width: int, height: int, stamp_ns: int) -> bytes:
        K = np.asarray(K, np.float64).reshape(3, 3)
        P = np.zeros((3, 4))
        P[:, :3] = K
        roi = self.t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        msg = self.t["sensor_msgs/msg/CameraInfo"](
            header=self._header(stamp_ns), height=height, width=width, distortion_model="plumb_bob",
            d=np.zeros(5), k=K.ravel(), r=np.eye(3).ravel(), p=P.ravel(), binning_x=0, binning_y=0, roi=roi)
        return bytes(self.store.serialize_cdr(msg, "sensor_msgs/msg/CameraInfo"))

    def ground_truth(self, meta: dict[str, Any], stamp_ns: int) -> bytes:
        t = self.t
        header = self._header(stamp_ns)
        classes = np.asarray(meta["cls_indexes"]).ravel().astype(int)
        poses = np.asarray(meta["poses"], np.float64).reshape(3, 4, -1)
        identities = (np.asarray(meta["object_ids"]).ravel().astype(int) if "object_ids" in meta else None)
        detections, counts = [], {}
        for k, cls in enumerate(classes):
            if not 0 < cls < len(self.class_names):
                raise ValueError(f"cls_indexes holds {cls}, outside the object set's 1..{len(self.class_names) - 1}")
            name = self.class_names[cls]
            R, trans = poses[:, :3, k], poses[:, 3, k]
            x, y, z, w = Rotation.from_matrix(R).as_quat()
            pose = t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](x=trans[0], y=trans[1], z=trans[2]),
                                               orientation=t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w))
            hyp = t["vision_msgs/msg/ObjectHypothesisWithPose"](
                hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=name, score=1.0),
                pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)))
            size = t["geometry_msgs/msg/Vector3"](x=self.extents[cls, 0], y=self.extents[cls, 1], z=self.extents[cls, 2])
            instance = counts.get(name, 0)
            counts[name] = instance + 1
            detections.append(t["vision_msgs/msg/Detection3D"](
                header=header, results=[hyp], bbox=t["vision_msgs/msg/BoundingBox3D"](center=pose, size=size),
                id=f"{name}_{instance if identities is None else identities[k]}"))
        msg = t["vision_msgs/msg/Detection3DArray"](header=header, detections=detections)
        return bytes(self.store.serialize_cdr(msg, "vision_msgs/msg/Detection3DArray"))


def write_bag(root: Path, out: Path, class_names: Sequence[str], extents: np.ndarray, *, sequences: Sequence[str] = (),
              max_frames: int = 0, rate_hz: float = 5.0, compress: bool = True, vision_msg_dir: Path | None = None,
              overwrite: bool = False) -> int:
    """Write the bag; returns the number of frames. Sequences default to every folder under root/data."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    if rate_hz <= 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
    data = root / "data"
    seqs = list(sequences) or sorted(p.name for p in data.iterdir() if p.is_dir())
    frames = [(data / s, f) for s in seqs for f in frame_ids(data / s)]
    if max_frames > 0:
        frames = frames[:max_frames]
    if not frames:
        raise ValueError(f"no complete frames (color, depth, meta) under {data} for sequences {seqs}")
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists (use --overwrite)")
        shutil.rmtree(out)
    store = make_typestore(vision_msg_dir)
    enc = FrameEncoder(store, class_names, extents)
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    if compress:
        writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
    with writer:
        conns = {topic: writer.add_connection(topic, msgtype, typestore=store) for topic, msgtype in TOPICS.items()}
        for n, (seq_dir, frame) in enumerate(frames):
            rgb, depth, meta = read_frame(seq_dir, frame)
            stamp = START_SEC * 10**9 + round(n * 1e9 / rate_hz)
            K = np.asarray(meta["intrinsic_matrix"], np.float64)
            h, w = rgb.shape[:2]
            writer.write(conns["/camera_info"], stamp, enc.camera_info(K, w, h, stamp))
            writer.write(conns["/depth"], stamp, enc.depth(depth, stamp))
            writer.write(conns["/ground_truth"], stamp, enc.ground_truth(meta, stamp))
            writer.write(conns["/image"], stamp, enc.image(rgb, stamp))
    return len(frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="split root (holds data/<seq>/...)")
    parser.add_argument("--out", type=Path, required=True, help="bag folder to write")
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument("--objects", type=Path, help="object set YAML (class names and extents)")
    names.add_argument("--class-names", help="comma-separated class names, background first (extents left 0)")
    parser.add_argument("--sequences", nargs="*", default=[], help="sequence folders (default: all)")
    parser.add_argument("--frames", type=int, default=0, help="at most this many frames (0 = all)")
    parser.add_argument("--rate", type=float, default=5.0, help="frame rate of the stamps (Hz)")
    parser.add_argument("--no-compress", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.objects is not None:
        from posecnn_core.objects import load_object_set

        objset = load_object_set(args.objects)
        class_names, extents = list(objset.class_names), np.asarray(objset.extents)
    else:
        class_names = [n.strip() for n in args.class_names.split(",")]
        extents = np.zeros((len(class_names), 3))
    count = write_bag(args.root, args.out, class_names, extents, sequences=args.sequences, max_frames=args.frames,
                      rate_hz=args.rate, compress=not args.no_compress, overwrite=args.overwrite)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {count} frames to {args.out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
