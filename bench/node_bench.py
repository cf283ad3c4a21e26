#!/usr/bin/env python3
"""ROS-side costs of the PoseCNN node, without the model's own time. Prints tables.

  overhead  per-frame decode + message building + publishing inside the node at WxH (target <= 1 ms at
            640x480 for decode + detections/TF/estimates; image outputs listed separately)
  latency   end to end: image published by a peer process -> detections received (node in its own process)
  soak      N frames (default 10,000) through a node process; RSS growth after warm-up (target < 5 %)

By default the node runs the deterministic stand-in estimator of the test suite (zero model time) so that only
ROS costs are measured; `--checkpoint/--objects` run the real estimator instead (use a tiny model for soak).

    python bench/node_bench.py overhead --size 640x480 --frames 200
    python bench/node_bench.py latency --frames 100
    python bench/node_bench.py soak --frames 10000 --size 160x120
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "test")]


import _node_helpers as helpers  # noqa: E402


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def _model(args: argparse.Namespace) -> tuple[str, str, bool]:
    if args.checkpoint:
        return args.checkpoint, args.objects, False
    ckpt, objs = helpers.write_fake_model(Path(tempfile.mkdtemp(prefix="posecnn_bench_")))
    return str(ckpt), str(objs), True


def _table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{title}\n" + "-" * (width + 16))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _stats_ms(values: list[float]) -> str:
    v = sorted(values)
    return (f"median {statistics.median(v):7.3f} ms   p90 {v[int(0.9 * (len(v) - 1))]:7.3f} ms   "
            f"mean {statistics.fmean(v):7.3f} ms")


def overhead(args: argparse.Namespace) -> None:
    """Run PoseCnnNode in-process and time its stages on identical frames; subscribers make image outputs real."""
    import rclpy
    from sensor_msgs.msg import Image

    from posecnn_ros import node as node_mod

    width, height = _size(args.size)
    ckpt, objs, fake = _model(args)
    rclpy.init(args=["bench", "--ros-args", "-p", f"checkpoint:={ckpt}", "-p", f"objects:={objs}",
                     "-p", "device:=cpu"])
    factory = helpers.make_fake_estimator if fake else None
    node = node_mod.PoseCnnNode(factory)
    image = helpers.make_image(width, height, "rgb8")
    info = helpers.make_camera_info(width, height)
    results: dict[str, list[float]] = {}

    def run(label: str) -> None:
        stages: dict[str, list[float]] = {}
        for i in range(args.frames + 10):
            t0 = time.perf_counter()
            node._process((image, info, t0))
            total = 1e3 * (time.perf_counter() - t0)
            if i >= 10:
                stages.setdefault("total - model", []).append(total - model_ms[0])
        results[label] = stages["total - model"]

    real_estimate = node.estimator.estimate
    model_ms = [0.0]

    def timed_estimate(*a, **k):  # the model's own time, subtracted from the frame's total
        t0 = time.perf_counter()
        out = real_estimate(*a, **k)
        model_ms[0] = 1e3 * (time.perf_counter() - t0)
        return out

    node.estimator.estimate = timed_estimate
    run("decode + detections + TF + estimates (no image-output subscribers)")
    subs = [node.create_subscription(Image, "/posecnn/overlay", lambda m: None, 1),
            node.create_subscription(Image, "/posecnn/label", lambda m: None, 1)]
    from visualization_msgs.msg import MarkerArray
    subs.append(node.create_subscription(MarkerArray, "/posecnn/markers", lambda m: None, 1))
    time.sleep(0.5)
    run("all outputs incl. label, overlay, markers (subscribed)")
    node.close()
    node.destroy_node()
    rclpy.shutdown()
    _table(f"ROS overhead per frame beyond the model, {width}x{height} rgb8, {args.frames} frames, "
           f"{'stand-in' if fake else 'real'} estimator ({len(helpers.DEFAULT_POSES)} objects)",
           [(k, _stats_ms(v)) for k, v in results.items()] + [("target", "<= 1 ms (first row)")])


def _peer_and_node(args: argparse.Namespace, width: int, height: int):
    ckpt, objs, fake = _model(args)
    domain = helpers.session_domain_id(60)
    proc = helpers.NodeProcess(domain, {"checkpoint": ckpt, "objects": objs, "image_qos": "reliable",
                                        "device": "cpu"}, fake=fake)
    peer = helpers.Peer(domain)
    if not (proc.wait_for_output("ready on", 120) and peer.wait_for_node(60)):
        raise RuntimeError(f"node did not start:\n{proc.output}")
    peer.pub_info.publish(helpers.make_camera_info(width, height))
    time.sleep(0.3)
    return proc, peer


def latency(args: argparse.Namespace) -> None:
    """One frame at a time: publish, wait for its detections, record the wall time."""
    width, height = _size(args.size)
    proc, peer = _peer_and_node(args, width, height)
    image = helpers.make_image(width, height)
    times: list[float] = []
    node_ms: list[float] = []
    try:
        for i in range(args.frames + 5):
            image.header.stamp.sec = 10 + i
            peer.clear()
            t0 = time.perf_counter()
            peer.pub_image.publish(image)
            ok = peer.wait_until(lambda: peer.count("detections") > 0, 30)
            dt = 1e3 * (time.perf_counter() - t0)
            if not ok:
                raise RuntimeError(f"no answer to frame {i}:\n{proc.output}")
            if i >= 5:
                times.append(dt)
                if peer.wait_until(lambda: peer.count("estimates") > 0, 5):
                    node_ms.append(peer.messages("estimates")[0].total_latency_ms)
    finally:
        code = proc.stop()
        peer.close()
    _table(f"End-to-end latency image -> detections, {width}x{height}, {args.frames} frames (node exit {code})",
           [("peer publish -> peer receives detections", _stats_ms(times)),
            ("inside the node (receive -> published)", _stats_ms(node_ms) if node_ms else "n/a")])


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def soak(args: argparse.Namespace) -> None:
    """Stream frames through the node (waiting for each answer keeps it honest) and track its RSS."""
    width, height = _size(args.size)
    proc, peer = _peer_and_node(args, width, height)
    image = helpers.make_image(width, height)
    step = max(1, args.frames // 10)
    warm = step  # RSS growth is measured from the first sample on
    samples: list[tuple[int, int]] = []
    start = time.perf_counter()
    try:
        for i in range(args.frames):
            image.header.stamp.sec = 100 + i
            peer.pub_image.publish(image)
            if not peer.wait_until(lambda: any(m.header.stamp.sec == 100 + i for m in peer.messages("estimates")),
                                   30):
                raise RuntimeError(f"no answer to frame {i}:\n{proc.output[-2000:]}")
            peer.clear()
            if (i + 1) % step == 0:
                samples.append((i + 1, _rss_kb(proc.proc.pid)))
    finally:
        elapsed = time.perf_counter() - start
        code = proc.stop()
        peer.close()
    base = dict(samples)[warm]
    end = samples[-1][1]
    rows = [(f"after {n} frames", f"RSS {kb / 1024:8.1f} MiB") for n, kb in samples]
    rows += [("growth after warm-up", f"{100 * (end - base) / base:+.2f} %  (target < 5 %)"),
             ("frames / s", f"{args.frames / elapsed:.0f}"), ("node exit code", str(code))]
    _table(f"Soak: {args.frames} frames {width}x{height} through the node process", rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("overhead", "latency", "soak"))
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--frames", type=int, default=0, help="default: 200 / 100 / 10000 by mode")
    parser.add_argument("--checkpoint", default="", help="real checkpoint (default: stand-in estimator)")
    parser.add_argument("--objects", default="")
    args = parser.parse_args()
    args.frames = args.frames or {"overhead": 200, "latency": 100, "soak": 10_000}[args.mode]
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    {"overhead": overhead, "latency": latency, "soak": soak}[args.mode](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
