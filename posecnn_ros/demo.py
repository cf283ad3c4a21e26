"""The README demo: replay a bag into the PoseCNN node and check its detections against the bag's ground truth.

Starts `python -m posecnn_ros.node` (bundled checkpoint and object set unless given, CPU by default) as a
subprocess, plays the bag with posecnn_ros.bag_player (stored bytes, recorded timing scaled by --rate), prints
every frame's detections with their error against /ground_truth, writes the node's overlay images to --out, and
ends with a summary. Needs rclpy and the interface packages, not a ROS distro.

    python -m posecnn_ros.demo [--bag data/bags/demo] [--rate 1.0] [--lockstep] [--out out/demo]
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEMO_BAG = "data/bags/demo"
DETECTIONS = "/posecnn/detections"
OVERLAY = "/posecnn/overlay"
ESTIMATES = "/posecnn/estimates"
GROUND_TRUTH = "/ground_truth"


# ----------------------------------------------------------------------------------------------- pose errors
@dataclass(frozen=True)
class Obj:
    """One detected or ground-truth object: class name, id, score, position (m), quaternion (w, x, y, z)."""

    class_name: str
    id: str
    score: float
    t: np.ndarray
    q: np.ndarray


def rotation_error_deg(q1: np.ndarray, q2: np.ndarray) -> float:
    """Angle (degrees) of the rotation between two unit quaternions (w, x, y, z); sign-invariant."""
    a, b = np.asarray(q1, np.float64), np.asarray(q2, np.float64)
    if a.shape != (4,) or b.shape != (4,):
        raise ValueError(f"quaternions must have shape (4,), got {a.shape} and {b.shape}")
    dot = abs(float(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b))))
    return math.degrees(2.0 * math.acos(min(1.0, dot)))


@dataclass(frozen=True)
class Model:
    """What the ADD(-S) error needs of an object class: model points [N, 3] (m) and whether it is symmetric."""

    points: np.ndarray
    symmetric: bool


@dataclass
class Match:
    """A ground-truth object and the detection matched to it (None = missed). add_m: ADD (ADD-S for a
    symmetric object) in metres; inf when missed or when the class has no model."""

    truth: Obj
    detection: Obj | None
    t_err_m: float = math.inf
    r_err_deg: float = math.inf
    add_m: float = math.inf


def add_error(model: Model, d: Obj, g: Obj) -> float:
    """ADD of detection d against ground truth g (ADD-S when the model is symmetric), metres."""
    from posecnn_core.geometry import quat_to_mat
    from posecnn_core.metrics import add, adds

    metric = adds if model.symmetric else add
    return float(metric(model.points, quat_to_mat(d.q), d.t, quat_to_mat(g.q), g.t))


def match_objects(detections: Sequence[Obj], truths: Sequence[Obj], models: dict[str, Model] | None = None
                  ) -> tuple[list[Match], list[Obj]]:
    """Greedy matching per class by translation distance (closest pairs first); with ``models`` (by class name)
    each match also gets its ADD(-S) error.

    Returns one Match per ground-truth object and the unmatched detections (false positives)."""
    pairs = sorted(((float(np.linalg.norm(d.t - g.t)), i, j) for i, d in enumerate(detections)
                    for j, g in enumerate(truths) if d.class_name == g.class_name))
    used_d: set[int] = set()
    matches = {j: Match(g, None) for j, g in enumerate(truths)}
    for dist, i, j in pairs:
        if i in used_d or matches[j].detection is not None:
            continue
        used_d.add(i)
        d = detections[i]
        model = (models or {}).get(d.class_name)
        matches[j] = Match(truths[j], d, dist, rotation_error_deg(d.q, truths[j].q),
                           add_error(model, d, truths[j]) if model is not None else math.inf)
    return [matches[j] for j in range(len(truths))], [d for i, d in enumerate(detections) if i not in used_d]


def objects_from_msg(msg: Any) -> list[Obj]:
    """vision_msgs/Detection3DArray -> [Obj] (first hypothesis of each detection; pose = bbox centre)."""
    out = []
    for det in msg.detections:
        p = det.bbox.center
        hyp = det.results[0].hypothesis if det.results else None
        out.append(Obj(hyp.class_id if hyp else "", det.id, float(hyp.score) if hyp else 0.0,
                       np.array([p.position.x, p.position.y, p.position.z]),
                       np.array([p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z])))
    return out


@dataclass
class Summary:
    """Accumulated demo results."""

    frames_played: int = 0
    frames_answered: int = 0
    detections: int = 0
    false_positives: int = 0
    matches: list[Match] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    dropped: int = 0
    rejected: int = 0

    def lines(self, t_tol_m: float, r_tol_deg: float) -> list[str]:
        found = [m for m in self.matches if m.detection is not None]
        t = np.array([m.t_err_m for m in found]) if found else np.zeros(0)
        r = np.array([m.r_err_deg for m in found]) if found else np.zeros(0)
        ok = sum(m.t_err_m <= t_tol_m and m.r_err_deg <= r_tol_deg for m in found)
        out = [f"frames played {self.frames_played}, answered {self.frames_answered}, dropped by the node "
               f"{self.dropped}, rejected {self.rejected}",
               f"ground-truth objects {len(self.matches)}: found {len(found)}, missed {len(self.matches) - len(found)}"
               f"; detections {self.detections}, false positives {self.false_positives}"]
        if found:
            out.append(f"translation error: mean {100 * t.mean():.1f} cm, median {100 * np.median(t):.1f} cm; "
                       f"rotation error: mean {r.mean():.1f} deg, median {np.median(r):.1f} deg")
            out.append(f"within {100 * t_tol_m:.0f} cm and {r_tol_deg:.0f} deg: {ok}/{len(self.matches)}")
            e = np.array([m.add_m for m in found])
            if np.isfinite(e).any():
                out.append(f"ADD(-S) error (ADD-S for symmetric objects): median {100 * np.median(e):.1f} cm; "
                           f"below 2 cm: {int((e < 0.02).sum())}/{len(self.matches)}")
            out.append("(rotation errors ignore symmetries; ADD-S does not)")
        if self.latencies_ms:
            lat = np.array(self.latencies_ms)
            out.append(f"latency image -> results: mean {lat.mean():.0f} ms, max {lat.max():.0f} ms")
        return out


# ----------------------------------------------------------------------------------------------- runner
def node_command(checkpoint: str, objects: str, device: str, use_depth: bool = False,
                 extra: Sequence[str] = ()) -> list[str]:
    """The node's command line with the demo's parameters."""
    cmd = [sys.executable, "-m", "posecnn_ros.node", "--ros-args", "-p", f"device:={device}",
           "-p", "image_qos:=reliable", "-p", f"use_depth:={'true' if use_depth else 'false'}",
           "-p", "depth_scale:=0.001"]
    if checkpoint:
        cmd += ["-p", f"checkpoint:={checkpoint}"]
    if objects:
        cmd += ["-p", f"objects:={objects}"]
    return cmd + list(extra)


def load_models(objects: str) -> dict[str, Model]:
    """Model points and symmetry of every class of the object set (the bundled demo set when empty); an empty
    dict, with a line saying why, when the set has no model points (then no ADD(-S) is reported)."""
    from posecnn_core.objects import ObjectSetError, load_object_set
    from posecnn_core.resources import DEMO_OBJECTS, resource_path

    try:
        objs = load_object_set(objects or resource_path(DEMO_OBJECTS))
    except (ObjectSetError, OSError) as exc:
        print(f"[demo] ADD(-S) errors not reported: {exc}", flush=True)
        return {}
    return {objs.class_names[c]: Model(np.asarray(objs.points[c], np.float64), bool(objs.symmetric[c]))
            for c in range(1, objs.num_classes)}


def run(args: argparse.Namespace) -> int:
    import cv2
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection3DArray

    from posecnn_core.resources import resource_path
    from posecnn_ros.bag_player import BagPlayer
    from posecnn_ros.image_conversion import image_to_rgb
    from posecnn_ros.msg import ObjectEstimateArray

    bag = Path(args.bag) if args.bag else resource_path(f"{DEMO_BAG}/metadata.yaml").parent
    models = load_models(args.objects)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    node_proc = subprocess.Popen(node_command(args.checkpoint, args.objects, args.device, args.depth, args.node_args),
                                 env=dict(os.environ, PYTHONUNBUFFERED="1"))
    rclpy.init()
    peer = rclpy.create_node("posecnn_demo")
    lock = threading.Condition()
    truths: dict[tuple[int, int], list[Obj]] = {}
    answered: dict[tuple[int, int], Any] = {}
    frame_index: dict[tuple[int, int], int] = {}
    summary = Summary()
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)

    def key(msg: Any) -> tuple[int, int]:
        return msg.header.stamp.sec, msg.header.stamp.nanosec

    def on_truth(msg: Detection3DArray) -> None:
        with lock:
            truths[key(msg)] = objects_from_msg(msg)

    def on_detections(msg: Detection3DArray) -> None:
        with lock:
            answered[key(msg)] = msg
            lock.notify_all()

    def on_estimates(msg: ObjectEstimateArray) -> None:
        with lock:
            summary.latencies_ms.append(float(msg.total_latency_ms))
            summary.dropped, summary.rejected = int(msg.frames_dropped), int(msg.frames_rejected)

    def on_overlay(msg: Image) -> None:
        with lock:
            idx = frame_index.get(key(msg), len(frame_index))
        cv2.imwrite(str(out / f"overlay_{idx:04d}.png"), image_to_rgb(msg)[:, :, ::-1])

    peer.create_subscription(Detection3DArray, GROUND_TRUTH + "_demo_echo", on_truth, reliable)
    det_sub = peer.create_subscription(Detection3DArray, DETECTIONS, on_detections, reliable)
    peer.create_subscription(ObjectEstimateArray, ESTIMATES, on_estimates, reliable)
    peer.create_subscription(Image, OVERLAY, on_overlay, reliable)
    stop_spin = threading.Event()

    def spin() -> None:
        while not stop_spin.is_set() and rclpy.ok():
            rclpy.spin_once(peer, timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    code = 1
    try:
        # ground truth is echoed to a private topic so that it cannot be mistaken for the node's output
        player = BagPlayer(peer, bag, remap={GROUND_TRUTH: GROUND_TRUTH + "_demo_echo"})
        print(f"[demo] bag {bag}: {player.message_count} messages on {sorted(player.topics)}, "
              f"{player.bag_duration_s:.1f} s; waiting for the node ...", flush=True)
        deadline = time.monotonic() + args.startup_timeout
        needed = [t for t in ("/image", "/camera_info", GROUND_TRUTH) + (("/depth",) if args.depth else ())
                  if t in player.topics]

        def ready() -> bool:
            counts = player.subscription_counts()
            return all(counts[t] > 0 for t in needed) and det_sub.get_publisher_count() > 0

        while not ready():
            if node_proc.poll() is not None:
                print(f"[demo] the node exited with code {node_proc.returncode} before it was ready", flush=True)
                return node_proc.returncode or 1
            if time.monotonic() > deadline:
                print("[demo] the node did not come up in time", flush=True)
                return 1
            time.sleep(0.1)
        time.sleep(0.2)

        def on_message(topic: str, stamp_ns: int) -> None:
            if topic != "/image":
                return
            k = (stamp_ns // 10**9, stamp_ns % 10**9)
            with lock:
                frame_index.setdefault(k, len(frame_index))
            summary.frames_played += 1
            if args.lockstep:
                with lock:
                    lock.wait_for(lambda: k in answered or node_proc.poll() is not None, args.frame_timeout)

        stats = player.play(args.rate, on_message=on_message)
        with lock:  # the last frame's answer
            last = max(frame_index, key=frame_index.get) if frame_index else None
            lock.wait_for(lambda: last is None or last in answered, args.frame_timeout)
        time.sleep(0.5)
        with lock:
            for k in sorted(answered, key=lambda s: frame_index.get(s, -1)):
                dets = objects_from_msg(answered[k])
                matches, extra = match_objects(dets, truths.get(k, []), models)
                summary.frames_answered += 1
                summary.detections += len(dets)
                summary.false_positives += len(extra) if k in truths else 0
                summary.matches += matches
                print(f"frame {frame_index.get(k, -1):4d} stamp {k[0]}.{k[1]:09d}: {len(dets)} detection(s)")
                for m in matches:
                    if m.detection is None:
                        print(f"    {m.truth.id:<28} MISSED")
                    else:
                        d = m.detection
                        print(f"    {d.id:<28} score {d.score:.2f}  t = ({d.t[0]:+.3f}, {d.t[1]:+.3f}, "
                              f"{d.t[2]:+.3f}) m  error {100 * m.t_err_m:5.1f} cm {m.r_err_deg:6.1f} deg")
                for d in extra:
                    print(f"    {d.id:<28} score {d.score:.2f}  (no ground truth match)")
        print(f"[demo] played {stats.published} messages in {stats.duration_s:.1f} s at rate {args.rate}")
        for line in summary.lines(args.t_tol, args.r_tol):
            print(f"[demo] {line}")
        print(f"[demo] overlays in {out}/")
        code = 0 if summary.frames_answered > 0 else 1
    finally:
        stop_spin.set()
        spinner.join(2.0)
        if node_proc.poll() is None:
            node_proc.send_signal(signal.SIGINT)
        try:
            node_code = node_proc.wait(15)
        except subprocess.TimeoutExpired:
            node_proc.kill()
            node_code = node_proc.wait()
        print(f"[demo] node exit code {node_code}", flush=True)
        peer.destroy_node()
        rclpy.try_shutdown()
    return code if node_code == 0 else (node_code or 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bag", default="", help=f"bag folder (default: the bundled {DEMO_BAG})")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (<= 0: no waiting)")
    parser.add_argument("--lockstep", action="store_true",
                        help="wait for each frame's detections before playing the next (no drops on slow CPUs)")
    parser.add_argument("--depth", action="store_true", help="pass the bag's depth to the node (refinement)")
    parser.add_argument("--out", default="out/demo", help="folder for the overlay images")
    parser.add_argument("--checkpoint", default="", help="checkpoint (default: bundled demo)")
    parser.add_argument("--objects", default="", help="object set YAML (default: bundled demo)")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--t-tol", type=float, default=0.05, help="translation tolerance of the summary (m)")
    parser.add_argument("--r-tol", type=float, default=20.0, help="rotation tolerance of the summary (deg)")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--frame-timeout", type=float, default=60.0)
    parser.add_argument("--node-args", nargs=argparse.REMAINDER, default=[],
                        help="further --ros-args for the node, e.g. --node-args -p score_threshold:=0.5")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
