"""The README demo: replay a bag into the PoseCNN node and score its estimates against the bag's ground truth.

Starts the node (`python -m posecnn_ros.node`, or --node-command) as a subprocess, with the bundled checkpoint and
object set unless given and on CPU by default, plays the bag with posecnn_ros.bag_player (stored bytes, recorded
timing scaled by --rate) and scores every answered frame with posecnn_core.evaluate, as `posecnn-eval` does: the
node's ~/estimates (class, score, RoI, pose) are matched to /ground_truth by box IoU (ground-truth boxes from the
projected model points), and each object gets its translation error, its rotation error (also up to the model's
symmetries for symmetric objects, `posecnn_core.metrics.symmetric_rotation_error_deg`) and ADD (ADD-S for
symmetric objects). Prints every frame and a summary and writes, to --out: summary.json (every number of the
summary and every frame), report.md with ADD/ADD-S AUC per object (when the object set has model points) and the
node's overlays overlay_NNNN.png. Needs rclpy and the interface packages, not a ROS distro.

    python -m posecnn_ros.demo [--bag data/bags/demo] [--rate 1.0] [--lockstep] [--depth] [--out out/demo]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posecnn_core.evaluate import (Detection, GroundTruth, InstanceResult, build_report, frame_instances,
                                   unmatched_detections)
from posecnn_core.geometry import quat_to_mat
from posecnn_core.targets import boxes_from_points

DEMO_BAG = "data/bags/demo"
NODE_NAME = "posecnn"
ESTIMATES = "/posecnn/estimates"
LABEL_INFO = "/posecnn/label_info"
OVERLAY = "/posecnn/overlay"
GROUND_TRUTH = "/ground_truth"
GROUND_TRUTH_ECHO = GROUND_TRUTH + "_demo_echo"  # private, so that it cannot be mistaken for the node's output
CAMERA_INFO = "/camera_info"
ADD_S_GOOD_M = 0.02  # the summary counts the objects with ADD(-S) below this ("below_2cm")


class DemoError(RuntimeError):
    """The demo cannot go on (the node exited or did not come up); `code` is the exit code to return."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------------------------- scoring
@dataclass
class Models:
    """What scoring needs of the object set, by class index: names, symmetry flags and model points (None when
    the object set has none; then ground-truth boxes come from each object's 3D box and ADD(-S) is not
    reported, `note` says why)."""

    class_names: list[str]
    symmetric: list[bool]
    points: list[np.ndarray | None]
    note: str = ""
    symmetry_groups: list[np.ndarray] | None = None  # declared finite symmetries, [K, 3, 3] per class

    @property
    def have_points(self) -> bool:
        return any(p is not None for p in self.points[1:])

    def class_index(self, name: str) -> int:
        try:
            return self.class_names.index(name)
        except ValueError:
            raise ValueError(f"class {name!r} is not in the object set {self.class_names[1:]}") from None

    @classmethod
    def load(cls, objects: str, class_names: Sequence[str] | None = None) -> Models:
        """The object set `objects` (the bundled demo set when empty). When it cannot be loaded (for instance it
        has no model points) and `class_names` (e.g. the node's ~/label_info) are given, those names without
        points; ValueError when both are there and differ."""
        from posecnn_core.objects import ObjectSetError, load_object_set
        from posecnn_core.resources import DEMO_OBJECTS, resource_path

        try:
            objs = load_object_set(objects or resource_path(DEMO_OBJECTS))
        except (ObjectSetError, OSError) as exc:
            if class_names is None:
                raise
            n = len(class_names)
            return cls(list(class_names), [False] * n, [None] * n, note=str(exc))
        if class_names is not None and list(class_names) != list(objs.class_names):
            raise ValueError(f"the node's classes {list(class_names)} are not those of the object set "
                             f"{list(objs.class_names)}")
        return cls(list(objs.class_names), [bool(s) for s in objs.symmetric],
                   [None] + [np.asarray(objs.points[c], np.float64) for c in range(1, objs.num_classes)],
                   symmetry_groups=list(objs.symmetry_groups))


def _box_corners(size: np.ndarray) -> np.ndarray:
    half = 0.5 * np.asarray(size, np.float64)
    return np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half


def _pose(p: Any) -> tuple[np.ndarray, np.ndarray]:
    q = np.array([p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z])
    return quat_to_mat(q), np.array([p.position.x, p.position.y, p.position.z])


def ground_truth(frame_id: str, msg: Any, K: np.ndarray, models: Models) -> tuple[GroundTruth, list[str]]:
    """vision_msgs/Detection3DArray (class_id = class name, pose, bbox size = extents) -> GroundTruth with boxes
    of the projected model points (of the 3D box where the class has none), and the objects' ids."""
    n = len(msg.detections)
    classes = np.zeros(n, np.int64)
    poses = np.zeros((n, 3, 4))
    boxes = np.zeros((n, 4))
    for k, det in enumerate(msg.detections):
        c = models.class_index(det.results[0].hypothesis.class_id)
        R, t = _pose(det.bbox.center)
        classes[k], poses[k, :, :3], poses[k, :, 3] = c, R, t
        pts = models.points[c]
        if pts is None:
            s = det.bbox.size
            pts = _box_corners(np.array([s.x, s.y, s.z]))
        boxes[k] = boxes_from_points({c: pts}, classes[k:k + 1], poses[k:k + 1], K)[0]
    return GroundTruth(frame_id, classes, poses, boxes), [d.id for d in msg.detections]


def detections(msg: Any) -> tuple[list[Detection], list[str]]:
    """posecnn_ros/ObjectEstimateArray -> evaluate Detections (class index, score, RoI, pose) and their ids."""
    dets, ids = [], []
    for e in msg.estimates:
        R, t = _pose(e.pose)
        dets.append(Detection(class_id=int(e.class_id), score=float(e.score), roi=np.asarray(e.roi), R=R, t=t))
        ids.append(e.id)
    return dets, ids


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass
class ObjectScore:
    """One ground-truth object of a frame: the detection matched to it (None = missed) and its errors (None when
    missed; add_s None also without model points). rotation_error_sym_deg: up to the model's symmetries for a
    symmetric class with model points, else the plain rotation error."""

    id: str
    class_name: str
    symmetric: bool
    detection: str | None = None
    score: float | None = None
    translation_error_m: float | None = None
    rotation_error_deg: float | None = None
    rotation_error_sym_deg: float | None = None
    add_s_m: float | None = None


@dataclass
class FrameScore:
    index: int
    stamp: str
    detections: int
    objects: list[ObjectScore]
    false_positives: list[str]


def score_frame(index: int, stamp: str, gt: GroundTruth, gt_ids: Sequence[str], dets: Sequence[Detection],
                det_ids: Sequence[str], models: Models) -> tuple[FrameScore, list[InstanceResult]]:
    """Match and score one frame (posecnn_core.evaluate.frame_instances); also returns the evaluate instances
    (for the AUC report)."""
    instances = frame_instances(gt, list(dets), models.class_names, models.symmetric, models.points,
                                models.symmetry_groups)
    objects = []
    for r in instances:
        obj = ObjectScore(gt_ids[r.gt_index], r.class_name, r.symmetric)
        if r.detection is not None:
            obj.detection, obj.score = det_ids[r.detection], float(dets[r.detection].score)
            obj.translation_error_m = r.t_error
            obj.rotation_error_deg = r.rot_error_deg
            obj.rotation_error_sym_deg = r.rot_error_sym_deg
            obj.add_s_m = _finite(r.add_or_adds) if models.points[r.class_id] is not None else None
        objects.append(obj)
    extra = [det_ids[i] for i in unmatched_detections(instances, dets)]
    return FrameScore(index, stamp, len(dets), objects, extra), instances


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    return {"mean": float(np.mean(values)), "median": float(np.median(values))} if len(values) else None


@dataclass
class Summary:
    """Everything the demo reports; `to_json()` is what summary.json holds."""

    bag: str
    models: Models
    t_tol_m: float
    r_tol_deg: float
    frames_played: int = 0
    dropped_by_node: int = 0
    rejected_by_node: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    frames: list[FrameScore] = field(default_factory=list)
    instances: list[InstanceResult] = field(default_factory=list)
    node_exit_code: int | None = None

    def add_frame(self, frame: FrameScore, instances: Sequence[InstanceResult]) -> None:
        self.frames.append(frame)
        self.instances += instances

    def report(self) -> Any:
        """posecnn_core.evaluate's Report (ADD / ADD-S AUC per object) of the answered frames, or None without
        model points."""
        if not self.models.have_points:
            return None
        return build_report(self.instances, self.models.class_names, self.models.symmetric, len(self.frames),
                            title=f"PoseCNN demo on {self.bag}")

    def to_json(self) -> dict[str, Any]:
        objects = [o for f in self.frames for o in f.objects]
        found = [o for o in objects if o.detection is not None]
        t = [o.translation_error_m for o in found]
        r = [o.rotation_error_deg for o in found]
        r_sym = [o.rotation_error_sym_deg for o in found]
        add_s = [o.add_s_m if o.add_s_m is not None else math.inf for o in found]
        report = self.report()
        out: dict[str, Any] = {
            "bag": self.bag,
            "frames": {"played": self.frames_played, "answered": len(self.frames),
                       "dropped_by_node": self.dropped_by_node, "rejected_by_node": self.rejected_by_node},
            "objects": {"ground_truth": len(objects), "found": len(found), "missed": len(objects) - len(found)},
            "detections": {"total": sum(f.detections for f in self.frames),
                           "false_positives": sum(len(f.false_positives) for f in self.frames)},
            "translation_error_m": _stats(t),
            "rotation_error_deg": _stats(r),
            "rotation_error_sym_deg": _stats(r_sym),
            "within_tolerance": {"translation_m": self.t_tol_m, "rotation_deg": self.r_tol_deg,
                                 "objects": sum(a <= self.t_tol_m and b <= self.r_tol_deg for a, b in zip(t, r_sym))},
            "add_s": None if report is None else {
                "median_m": _finite(float(np.median(add_s))) if add_s else None,
                "below_2cm": int(sum(e < ADD_S_GOOD_M for e in add_s))},
            "add_s_not_reported": self.models.note if report is None else None,
            "auc": None if report is None else {
                "add": report.mean.add_auc, "adds": report.mean.adds_auc, "add_or_adds": report.mean.add_or_adds_auc,
                "per_object": {s.name: {"add": s.add_auc, "adds": s.adds_auc, "add_or_adds": s.add_or_adds_auc}
                               for s in report.per_class}},
            "latency_ms": ({"mean": float(np.mean(self.latencies_ms)), "max": float(np.max(self.latencies_ms))}
                           if self.latencies_ms else None),
            "node_exit_code": self.node_exit_code,
            "per_frame": [asdict(f) for f in self.frames],
        }
        return out

    def lines(self) -> list[str]:
        """The printed summary."""
        s = self.to_json()
        fr, ob, de = s["frames"], s["objects"], s["detections"]
        out = [f"frames played {fr['played']}, answered {fr['answered']}, dropped by the node {fr['dropped_by_node']}, "
               f"rejected {fr['rejected_by_node']}",
               f"ground-truth objects {ob['ground_truth']}: found {ob['found']}, missed {ob['missed']}; detections "
               f"{de['total']}, false positives {de['false_positives']}"]
        if s["translation_error_m"]:
            t, r, rs = s["translation_error_m"], s["rotation_error_deg"], s["rotation_error_sym_deg"]
            out.append(f"translation error: mean {100 * t['mean']:.1f} cm, median {100 * t['median']:.1f} cm; "
                       f"rotation error: median {r['median']:.1f} deg, up to symmetries {rs['median']:.1f} deg")
            out.append(f"within {100 * self.t_tol_m:.0f} cm and {self.r_tol_deg:.0f} deg (up to symmetries): "
                       f"{s['within_tolerance']['objects']}/{ob['ground_truth']}")
        if s["add_s"]:
            a, auc = s["add_s"], s["auc"]
            median = "-" if a["median_m"] is None else f"{100 * a['median_m']:.1f} cm"
            out.append(f"ADD(-S) (ADD-S for symmetric objects): median {median}; below 2 cm: "
                       f"{a['below_2cm']}/{ob['ground_truth']}; mean AUC ADD {auc['add']:.1f}, ADD-S {auc['adds']:.1f}")
        else:
            out.append(f"ADD(-S) errors not reported: {s['add_s_not_reported']}")
        if s["latency_ms"]:
            out.append(f"latency image -> results: mean {s['latency_ms']['mean']:.0f} ms, "
                       f"max {s['latency_ms']['max']:.0f} ms")
        return out


def frame_lines(frame: FrameScore) -> list[str]:
    """The printed lines of one frame."""
    out = [f"frame {frame.index:4d} stamp {frame.stamp}: {frame.detections} detection(s)"]
    for o in frame.objects:
        if o.detection is None:
            out.append(f"    {o.id:<28} MISSED")
            continue
        add_s = "" if o.add_s_m is None else f"  ADD(-S) {100 * o.add_s_m:5.1f} cm"
        sym = f" ({o.rotation_error_deg:.1f} deg ignoring symmetry)" if o.symmetric else ""
        out.append(f"    {o.id:<28} {o.detection:<12} score {o.score:.2f}  error {100 * o.translation_error_m:5.1f} cm "
                   f"{o.rotation_error_sym_deg:6.1f} deg{sym}{add_s}")
    out += [f"    {d:<28} (no ground truth match)" for d in frame.false_positives]
    return out


# ----------------------------------------------------------------------------------------------- runner
def node_command(checkpoint: str, objects: str, device: str, use_depth: bool = False, extra: Sequence[str] = (),
                 executable: Sequence[str] = ()) -> list[str]:
    """The node's command line with the demo's parameters (`executable`: default python -m posecnn_ros.node)."""
    cmd = [*(executable or (sys.executable, "-m", "posecnn_ros.node")), "--ros-args", "-p", f"device:={device}",
           "-p", "image_qos:=reliable", "-p", f"use_depth:={'true' if use_depth else 'false'}",
           "-p", "depth_scale:=0.001",
           # a bag's image and camera_info are played at once; on a busy CPU the second may come a moment later
           "-p", "camera_info_wait:=1.0"]
    if checkpoint:
        cmd += ["-p", f"checkpoint:={checkpoint}"]
    if objects:
        cmd += ["-p", f"objects:={objects}"]
    return cmd + list(extra)


def _key(header: Any) -> tuple[int, int]:
    return header.stamp.sec, header.stamp.nanosec


class DemoRun:
    """One demo run: `start()` the node process and an rclpy peer, `wait_ready()`, `play()` the bag, `collect()`
    the scores; `close()` always (stops the node, returns its exit code)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from posecnn_core.resources import resource_path

        self.args = args
        self.bag = Path(args.bag) if args.bag else resource_path(f"{DEMO_BAG}/metadata.yaml").parent
        self.out = Path(args.out)
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Condition()
        self._truths: dict[tuple[int, int], Any] = {}
        self._K: dict[tuple[int, int], np.ndarray] = {}
        self._answers: dict[tuple[int, int], Any] = {}
        self._frame_index: dict[tuple[int, int], int] = {}
        self._class_names: list[str] | None = None
        self._stop = threading.Event()
        self.summary: Summary | None = None

    def start(self) -> None:
        import rclpy
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from vision_msgs.msg import Detection3DArray, LabelInfo

        from posecnn_ros.bag_player import BagPlayer
        from posecnn_ros.msg import ObjectEstimateArray

        a = self.args
        self.out.mkdir(parents=True, exist_ok=True)
        executable = shlex.split(a.node_command) if a.node_command else ()
        self.proc = subprocess.Popen(node_command(a.checkpoint, a.objects, a.device, a.depth, a.node_args, executable),
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        rclpy.init()
        self.peer = rclpy.create_node("posecnn_demo")
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.peer.create_subscription(Detection3DArray, GROUND_TRUTH_ECHO, self._store(self._truths), reliable)
        self.peer.create_subscription(CameraInfo, CAMERA_INFO, self._on_camera_info, reliable)
        self._est_sub = self.peer.create_subscription(ObjectEstimateArray, ESTIMATES, self._on_estimates, reliable)
        self.peer.create_subscription(LabelInfo, LABEL_INFO, self._on_label_info, latched)
        self.peer.create_subscription(Image, OVERLAY, self._on_overlay, reliable)
        self.player = BagPlayer(self.peer, self.bag, remap={GROUND_TRUTH: GROUND_TRUTH_ECHO})
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()
        print(f"[demo] bag {self.bag}: {self.player.message_count} messages on {sorted(self.player.topics)}, "
              f"{self.player.bag_duration_s:.1f} s; waiting for the node ...", flush=True)

    # callbacks (spinner thread)
    def _spin(self) -> None:
        import rclpy

        while not self._stop.is_set() and rclpy.ok():
            rclpy.spin_once(self.peer, timeout_sec=0.05)

    def _store(self, into: dict) -> Any:
        def store(msg: Any) -> None:
            with self._lock:
                into[_key(msg.header)] = msg
                self._lock.notify_all()
        return store

    def _on_camera_info(self, msg: Any) -> None:
        with self._lock:
            self._K[_key(msg.header)] = np.asarray(msg.k, np.float64).reshape(3, 3)

    def _on_estimates(self, msg: Any) -> None:
        with self._lock:
            self._answers[_key(msg.header)] = msg
            self._lock.notify_all()

    def _on_label_info(self, msg: Any) -> None:
        with self._lock:
            self._class_names = [c.class_name for c in sorted(msg.class_map, key=lambda c: c.class_id)]
            self._lock.notify_all()

    def _on_overlay(self, msg: Any) -> None:
        import cv2

        from posecnn_ros.image_conversion import image_to_rgb

        with self._lock:
            idx = self._frame_index.get(_key(msg.header), len(self._frame_index))
        cv2.imwrite(str(self.out / f"overlay_{idx:04d}.png"), image_to_rgb(msg)[:, :, ::-1])

    def _node_subscribes(self, topic: str) -> bool:
        return any(i.node_name == NODE_NAME for i in self.peer.get_subscriptions_info_by_topic(topic))

    def wait_ready(self) -> None:
        """Until the node subscribes the bag's input topics, publishes ~/estimates and has sent its classes;
        DemoError when it exits first or takes longer than --startup-timeout."""
        a = self.args
        inputs = [t for t in ("/image", CAMERA_INFO) + (("/depth",) if a.depth else ()) if t in self.player.topics]
        deadline = time.monotonic() + a.startup_timeout

        def ready() -> bool:
            with self._lock:
                have_classes = self._class_names is not None
            return (have_classes and all(self._node_subscribes(t) for t in inputs)
                    and self._est_sub.get_publisher_count() > 0
                    and self.player.subscription_counts().get(GROUND_TRUTH, 1) > 0)

        while not ready():
            if self.proc.poll() is not None:
                raise DemoError(f"the node exited with code {self.proc.returncode} before it was ready",
                                self.proc.returncode or 1)
            if time.monotonic() > deadline:
                raise DemoError("the node did not come up in time")
            time.sleep(0.1)
        time.sleep(0.2)

    def play(self) -> Any:
        """Play the bag (with --lockstep: each image waits for the node's answer)."""
        a = self.args

        def on_message(topic: str, stamp_ns: int) -> None:
            if topic != "/image":
                return
            k = (stamp_ns // 10**9, stamp_ns % 10**9)
            with self._lock:
                self._frame_index.setdefault(k, len(self._frame_index))
                if a.lockstep:
                    self._lock.wait_for(lambda: k in self._answers or self.proc.poll() is not None, a.frame_timeout)

        stats = self.player.play(a.rate, on_message=on_message)
        print(f"[demo] played {stats.published} messages in {stats.duration_s:.1f} s at rate {a.rate}", flush=True)
        return stats

    def collect(self) -> Summary:
        """Wait for the last frame's answer (and its ground truth), then score every answered frame."""
        a = self.args
        with self._lock:
            last = max(self._frame_index, key=self._frame_index.get) if self._frame_index else None
            self._lock.wait_for(lambda: last is None or last in self._answers, a.frame_timeout)
            self._lock.wait_for(lambda: last is None or last in self._truths, 2.0)
        time.sleep(0.5)
        with self._lock:
            models = Models.load(a.objects, self._class_names)
            summary = Summary(str(self.bag), models, a.t_tol, a.r_tol, frames_played=len(self._frame_index))
            for k in sorted(self._answers, key=lambda s: self._frame_index.get(s, -1)):
                answer = self._answers[k]
                stamp = f"{k[0]}.{k[1]:09d}"
                dets, det_ids = detections(answer)
                if k in self._truths:
                    K = self._K.get(k, next(reversed(self._K.values()), None))
                    if K is None:
                        raise DemoError("no camera_info received: ground-truth boxes cannot be projected")
                    gt, gt_ids = ground_truth(stamp, self._truths[k], K, models)
                else:  # no ground truth for this stamp: nothing to match
                    gt, gt_ids = GroundTruth(stamp, np.zeros(0), np.zeros((0, 3, 4)), np.zeros((0, 4))), []
                frame, instances = score_frame(self._frame_index.get(k, -1), stamp, gt, gt_ids, dets, det_ids,
                                               models)
                if k not in self._truths:
                    frame.false_positives = []  # unknown without ground truth
                summary.add_frame(frame, instances)
                summary.latencies_ms.append(float(answer.total_latency_ms))
                summary.dropped_by_node = max(summary.dropped_by_node, int(answer.frames_dropped))
                summary.rejected_by_node = max(summary.rejected_by_node, int(answer.frames_rejected))
        self.summary = summary
        return summary

    def close(self) -> int | None:
        """Stop the spinner and the node (SIGINT; killed after 15 s); the node's exit code."""
        import rclpy

        self._stop.set()
        if hasattr(self, "_spinner"):
            self._spinner.join(2.0)
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            try:
                code = self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
            print(f"[demo] node exit code {code}", flush=True)
        if hasattr(self, "peer"):
            self.peer.destroy_node()
        rclpy.try_shutdown()
        return code


def write_summary(summary: Summary, out: Path) -> Path:
    """summary.json (and report.md / per_object.csv when there are model points) in `out`."""
    path = out / "summary.json"
    path.write_text(json.dumps(summary.to_json(), indent=1) + "\n")
    report = summary.report()
    if report is not None:
        (out / "report.md").write_text(report.markdown())
        report.write_csv(out / "per_object.csv")
    return path


def run(args: argparse.Namespace) -> int:
    demo = DemoRun(args)
    summary: Summary | None = None
    code = 1
    try:
        demo.start()
        demo.wait_ready()
        demo.play()
        summary = demo.collect()
        code = 0 if summary.frames else 1
    except DemoError as exc:
        print(f"[demo] {exc}", flush=True)
        code = exc.code
    finally:
        node_code = demo.close()
    if summary is not None:
        summary.node_exit_code = node_code
        for frame in summary.frames:
            print("\n".join(frame_lines(frame)))
        for line in summary.lines():
            print(f"[demo] {line}")
        report = summary.report()
        if report is not None:
            print(report.table())
        print(f"[demo] summary: {write_summary(summary, demo.out)}; overlays in {demo.out}/", flush=True)
    return code if node_code == 0 else (node_code or 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bag", default="", help=f"bag folder (default: the bundled {DEMO_BAG})")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (<= 0: no waiting)")
    parser.add_argument("--lockstep", action="store_true",
                        help="wait for each frame's estimates before playing the next (no drops on slow CPUs)")
    parser.add_argument("--depth", action="store_true", help="pass the bag's depth to the node (refinement)")
    parser.add_argument("--out", default="out/demo", help="folder for summary.json, report.md and the overlays")
    parser.add_argument("--checkpoint", default="", help="checkpoint (default: bundled demo)")
    parser.add_argument("--objects", default="", help="object set YAML (default: bundled demo)")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--t-tol", type=float, default=0.05, help="translation tolerance of the summary (m)")
    parser.add_argument("--r-tol", type=float, default=20.0,
                        help="rotation tolerance of the summary (deg, up to the objects' symmetries)")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--frame-timeout", type=float, default=60.0)
    parser.add_argument("--node-command", default="",
                        help="command that starts the node, before its --ros-args (default: python -m "
                             "posecnn_ros.node; e.g. 'ros2 run posecnn_ros posecnn_node')")
    parser.add_argument("--node-args", nargs=argparse.REMAINDER, default=[],
                        help="further --ros-args for the node, e.g. --node-args -p score_threshold:=0.5")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
