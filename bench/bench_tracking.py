"""Tracking on vs off on a sequence bag with object identities: id switches, jitter, ADD/ADD-S, added latency.

Runs the PoseEstimator once per frame of the bag (RGB only; results cached with --cache), then scores the
per-frame results (ids `<class>_<k>`, k the frame-local index) and the tracked ones (`<class>_<track id>`,
filtered poses) with posecnn_core.tracking.metrics: id switches, frame-to-frame jitter of the static objects
(the estimate's motion minus the true motion, translation and rotation), mean ADD and ADD-S, recall (estimates
matched to a true object / true objects), and the tracker's own time per frame. --sweep adds rows with other
settings (to choose the defaults). --depth N also runs the first N frames with depth: per-frame refinement
(rotation search) vs tracked refinement (confirmed tracks refined by local ICP from their predicted pose):
refinement time per frame and ADD/ADD-S.

    python bench/bench_tracking.py [--bag data/bags/demo_sequence] [--cache /tmp/seq.pkl] [--sweep] [--depth 20]
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from posecnn_core.estimator import PoseEstimator  # noqa: E402
from posecnn_core.resources import DEMO_CHECKPOINT, DEMO_OBJECTS, resource_path  # noqa: E402
from posecnn_core.tracking import Tracker, TrackerConfig  # noqa: E402
from posecnn_core.tracking.metrics import SequenceScorer, TruthObject  # noqa: E402


def _tool():
    spec = importlib.util.spec_from_file_location("make_sample_bag", ROOT / "tools" / "make_sample_bag.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_bag(bag: Path, class_names: list[str]) -> list[dict]:
    """Frames of a bag written by tools/make_sample_bag.py: rgb, depth (m), K, stamp (s), truths."""
    from rosbags.rosbag2 import Reader
    from scipy.spatial.transform import Rotation

    store = _tool().make_typestore()
    frames: dict[int, dict] = {}
    with Reader(bag) as reader:
        for conn, stamp, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            f = frames.setdefault(stamp, {"stamp": stamp * 1e-9})
            if conn.topic == "/image":
                f["rgb"] = msg.data.reshape(msg.height, msg.width, 3).copy()
            elif conn.topic == "/depth":
                f["depth"] = msg.data.view("<u2").reshape(msg.height, msg.width).astype(np.float32) * 0.001
            elif conn.topic == "/camera_info":
                f["K"] = np.asarray(msg.k, np.float64).reshape(3, 3)
            elif conn.topic == "/ground_truth":
                truths = []
                for det in msg.detections:
                    p = det.results[0].pose.pose
                    R = Rotation.from_quat([p.orientation.x, p.orientation.y, p.orientation.z,
                                            p.orientation.w]).as_matrix()
                    t = np.array([p.position.x, p.position.y, p.position.z])
                    truths.append(TruthObject(det.id, class_names.index(det.results[0].hypothesis.class_id), R, t))
                f["truths"] = truths
    return [frames[k] for k in sorted(frames)]


def static_identities(frames: list[dict], tolerance: float = 0.01) -> set[str]:
    """Identities that keep their distance (within `tolerance` m) to some other object over the sequence: the
    static ones (a moving camera moves all of them alike); the moved object keeps it to none."""
    dist: dict[tuple[str, str], list[float]] = {}
    for f in frames:
        for g in f["truths"]:
            for h in f["truths"]:
                if g.identity < h.identity:
                    dist.setdefault((g.identity, h.identity), []).append(float(np.linalg.norm(g.t - h.t)))
    return {name for pair, d in dist.items() if max(d) - min(d) <= tolerance for name in pair}


def run_estimator(est: PoseEstimator, frames: list[dict], depth: bool = False, tracker: Tracker | None = None
                  ) -> list[tuple[list, dict]]:
    out = []
    for f in frames:
        res = est.estimate(f["rgb"], f["K"], f["depth"] if depth else None, tracker=tracker, stamp=f["stamp"],
                           frame_id="camera")
        out.append((res.objects, dict(res.timings_ms)))
    return out


def score(frames: list[dict], per_frame: list[list], points, static: set[str], cfg: TrackerConfig | None
          ) -> tuple[dict, float]:
    """Scores of the per-frame estimates (cfg None) or of a tracker with cfg run over them; tracker ms/frame."""
    scorer = SequenceScorer(points, static)
    tracker = Tracker(cfg, symmetric=SYMMETRIC, points=points) if cfg is not None else None
    spent = 0.0
    for f, objects in zip(frames, per_frame):
        if tracker is not None:
            start = time.perf_counter()
            objects = tracker.update(objects, stamp=f["stamp"], frame_id="camera", image_size=f["rgb"].shape[:2])
            spent += time.perf_counter() - start
            ids = [f"{o.class_name}_{o.track_id}" for o in objects]
        else:
            ids = [f"{o.class_name}_{o.instance}" for o in objects]
        scorer.add_frame(objects, ids, f["truths"], f["K"])
    return scorer.score.summary(), 1e3 * spent / len(frames)


SYMMETRIC: list[bool] = []
COLUMNS = ("id_switches", "recall", "jitter_t_mm", "jitter_r_deg", "add_mm", "adds_mm")


def step_response(cfg: TrackerConfig, frames: int = 30) -> dict[str, int]:
    """Frames until the filtered pose covers 90 % of a sudden change (a 2 cm sideways or along-ray move, a 10
    degree turn) of a still object seen at 0.7 m, one frame per time unit: the filter's lag in frames."""
    from scipy.spatial.transform import Rotation

    from posecnn_core.tracking import PoseFilter
    from posecnn_core.tracking.pose_filter import angle_deg

    out = {}
    t0 = np.array([0.0, 0.0, 0.7])
    for name, dt, dR in (("sideways 2 cm", np.array([0.02, 0, 0]), np.eye(3)),
                         ("along the ray 2 cm", np.array([0, 0, 0.02]), np.eye(3)),
                         ("turn 10 deg", np.zeros(3), Rotation.from_euler("y", 10, degrees=True).as_matrix())):
        f = PoseFilter(np.eye(3), t0, cfg)
        for _ in range(5):
            f.update(np.eye(3), t0, 1.0)
        for k in range(1, frames + 1):
            f.update(dR, t0 + dt, 1.0)
            moved = np.linalg.norm(f.t - t0) / max(np.linalg.norm(dt), 1e-12) if dt.any() else \
                angle_deg(f.R, np.eye(3)) / 10.0
            if moved >= 0.9:
                break
        out[name] = k
    return out


def row(name: str, s: dict, ms: float) -> str:
    return (f"| {name} | {s['id_switches']} | {s['recall']:.2f} | {s['jitter_t_mm']:.1f} | {s['jitter_r_deg']:.1f} | "
            f"{s['add_mm']:.1f} | {s['adds_mm']:.1f} | {ms:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bag", type=Path, default=ROOT / "data" / "bags" / "demo_sequence")
    parser.add_argument("--checkpoint", default=str(resource_path(DEMO_CHECKPOINT)))
    parser.add_argument("--objects", default=str(resource_path(DEMO_OBJECTS)))
    parser.add_argument("--cache", type=Path, default=None, help="pickle of the per-frame estimates (reused)")
    parser.add_argument("--sweep", action="store_true", help="also score other tracker settings")
    parser.add_argument("--depth", type=int, default=0, help="first N frames with depth: tracked refinement")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    est = PoseEstimator(args.checkpoint, args.objects, device="cpu")
    names = list(est.class_names)
    points = [np.asarray(p, np.float64) for p in est.object_set.points]
    SYMMETRIC[:] = [bool(s) for s in est.object_set.symmetric]
    frames = read_bag(args.bag, names)
    static = static_identities(frames)
    if args.cache is not None and args.cache.is_file():
        per_frame, ms = pickle.loads(args.cache.read_bytes())
    else:
        start = time.perf_counter()
        per_frame = [objs for objs, _ in run_estimator(est, frames)]
        ms = 1e3 * (time.perf_counter() - start) / len(frames)
        if args.cache is not None:
            args.cache.write_bytes(pickle.dumps((per_frame, ms)))
    print(f"{args.bag.name}: {len(frames)} frames, {sum(len(f['truths']) for f in frames)} true objects, "
          f"static {sorted(static)}; estimator {ms:.0f} ms/frame (RGB, CPU, {args.threads} threads)\n")
    print("| tracking | id switches | recall | jitter t (mm) | jitter rot (deg) | ADD (mm) | ADD-S (mm) | "
          "tracker ms/frame |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(row("off (per frame)", *score(frames, per_frame, points, static, None)))
    print(row("on (defaults)", *score(frames, per_frame, points, static, TrackerConfig())))
    lag = step_response(TrackerConfig())
    print("\nFilter lag (defaults): frames to 90 % of a sudden change: "
          + ", ".join(f"{k} {v}" for k, v in lag.items()))
    if args.sweep:
        base = TrackerConfig()
        variants = {"ids only (filter off)": dict(filter=False), "min_hits 1": dict(min_hits=1),
                    "min_hits 3": dict(min_hits=3), "max_missed 3": dict(max_missed=3),
                    "max_distance 0.08": dict(max_distance=0.08), "max_distance 0.25": dict(max_distance=0.25),
                    "alpha 0.3/0.3": dict(position_alpha=0.3, rotation_alpha=0.3),
                    "alpha 0.7/0.6": dict(position_alpha=0.7, rotation_alpha=0.6),
                    "beta 0": dict(position_beta=0.0, rotation_beta=0.0),
                    "depth_alpha 0.1": dict(depth_alpha=0.1), "depth_alpha 0.35": dict(depth_alpha=0.35),
                    "depth_alpha 0.5 (isotropic)": dict(depth_alpha=0.5),
                    "depth_weight 0.5": dict(depth_weight=0.5), "depth_weight 1": dict(depth_weight=1.0),
                    "beta 0.3/0.1": dict(position_beta=0.3, rotation_beta=0.1),
                    "gates 0.05 m / 30 deg": dict(gate_translation=0.05, gate_rotation_deg=30.0),
                    "gates 0.2 m / 90 deg": dict(gate_translation=0.2, gate_rotation_deg=90.0),
                    "no symmetric alignment": dict(symmetric_alignment=False),
                    "depth_weight 0.5, gates 0.05 m": dict(depth_weight=0.5, gate_translation=0.05),
                    "depth_weight 0.5, max_distance 0.1": dict(depth_weight=0.5, max_distance=0.1),
                    "depth_weight 0.5, beta 0": dict(depth_weight=0.5, position_beta=0.0, rotation_beta=0.0)}
        for name, change in variants.items():
            print(row(name, *score(frames, per_frame, points, static, dataclasses.replace(base, **change))))
    if args.depth:
        sub = frames[: args.depth]
        print(f"\nDepth refinement, first {len(sub)} frames:\n")
        print("| refinement | refinement ms/frame | ADD (mm) | ADD-S (mm) | id switches | recall |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, tracker in (("per frame (rotation search)", None),
                              ("tracked (ICP from prediction)", Tracker(TrackerConfig(filter=False),
                                                                         est.object_set))):
            results = run_estimator(est, sub, depth=True, tracker=tracker)
            refine_ms = np.mean([t.get("refinement", 0.0) for _, t in results])
            scorer = SequenceScorer(points, static)
            for f, (objs, _) in zip(sub, results):
                ids = [f"{o.class_name}_{o.track_id if o.track_id is not None else o.instance}" for o in objs]
                scorer.add_frame(objs, ids, f["truths"], f["K"])
            s = scorer.score.summary()
            print(f"| {name} | {refine_ms:.0f} | {s['add_mm']:.1f} | {s['adds_mm']:.1f} | {s['id_switches']} | "
                  f"{s['recall']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
