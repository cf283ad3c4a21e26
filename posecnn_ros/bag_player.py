"""Play a rosbag2 bag (mcap or sqlite3, written by rosbag2 or `rosbags`) into ROS with rclpy — no rosbag2 needed.

Messages are published as their stored CDR bytes (no deserialisation) with the bag's relative timing scaled by
`rate` (rate <= 0: as fast as possible). Message classes come from the installed interface packages, so bags
recorded with image_transport's compressed streams (sensor_msgs/CompressedImage on `.../compressed` and
`.../compressedDepth`) play as they are. `--compress jpeg|png` instead turns a bag's raw sensor_msgs/Image topics
into those streams on the fly, as image_transport's compressed and compressedDepth publishers would: colour images
on `<topic>/compressed`, 16UC1/32FC1 depth on `<topic>/compressedDepth` (to try a node's compressed input).

    python -m posecnn_ros.bag_player BAG [--rate 1.0] [--topics /image /camera_info] [--compress jpeg]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

PLAYER_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def message_class(msgtype: str) -> type:
    """The rclpy message class of a ROS type name such as "sensor_msgs/msg/Image" (or "sensor_msgs/Image")."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"msgtype must look like 'pkg/msg/Type', got {msgtype!r}")
    try:
        module = importlib.import_module(f"{parts[0]}.{parts[1]}")
        return getattr(module, parts[2])
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"message type {msgtype} is not installed: {exc}") from exc


def read_topics(bag: str | Path, topics: Iterable[str]) -> dict[str, list]:
    """Every message of `topics` in the bag, deserialised into the installed message classes, in bag order.
    FileNotFoundError for a missing bag, ValueError naming a topic the bag lacks."""
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader

    path, wanted = Path(bag), list(topics)
    if not path.exists():
        raise FileNotFoundError(f"bag {path} does not exist")
    out: dict[str, list] = {topic: [] for topic in wanted}
    with Reader(path) as reader:
        missing = set(wanted) - {c.topic for c in reader.connections}
        if missing:
            raise ValueError(f"bag {path} has no topic(s) {sorted(missing)}; it has "
                             f"{sorted({c.topic for c in reader.connections})}")
        conns = [c for c in reader.connections if c.topic in out]
        for conn, _, raw in reader.messages(connections=conns):
            out[conn.topic].append(deserialize_message(bytes(raw), message_class(conn.msgtype)))
    return out


@dataclass
class PlayStats:
    """What one playback did."""

    published: int = 0
    by_topic: dict[str, int] | None = None
    duration_s: float = 0.0
    bag_duration_s: float = 0.0


class BagPlayer:
    """Publishes a bag's messages from `node` on their recorded topics, honouring timestamps."""

    def __init__(self, node: Node, bag: str | Path, topics: Iterable[str] | None = None,
                 remap: dict[str, str] | None = None, compress: str | None = None) -> None:
        from rosbags.rosbag2 import Reader

        if compress not in (None, "jpeg", "png"):
            raise ValueError(f"compress must be jpeg or png, got {compress!r}")
        self.path = Path(bag)
        if not self.path.exists():
            raise FileNotFoundError(f"bag {self.path} does not exist")
        self._reader_cls = Reader
        self._remap = dict(remap or {})
        with Reader(self.path) as reader:
            connections = [c for c in reader.connections if topics is None or c.topic in set(topics)]
            if topics is not None:
                missing = set(topics) - {c.topic for c in reader.connections}
                if missing:
                    raise ValueError(f"bag {self.path} has no topic(s) {sorted(missing)}; it has "
                                     f"{sorted({c.topic for c in reader.connections})}")
            self.topics = {c.topic: c.msgtype for c in connections}
            self.message_count = sum(c.msgcount for c in connections)
            self.bag_duration_s = reader.duration * 1e-9
            # raw image topic -> "compressed" or "compressedDepth" (decided by the first message's encoding)
            self._compressed: dict[str, str] = {}
            if compress:
                from rclpy.serialization import deserialize_message
                from sensor_msgs.msg import Image

                for conn in connections:
                    if conn.msgtype != "sensor_msgs/msg/Image":
                        continue
                    first = next(iter(reader.messages(connections=[conn])), None)
                    if first is not None:
                        encoding = deserialize_message(bytes(first[2]), Image).encoding
                        depth = encoding in ("16UC1", "32FC1", "mono16")
                        self._compressed[conn.topic] = "compressedDepth" if depth else "compressed"
        self._codec = compress
        self._publishers = {}
        for topic, msgtype in self.topics.items():
            name = self._remap.get(topic, topic)
            if topic in self._compressed:
                msgtype, name = "sensor_msgs/msg/CompressedImage", f"{name}/{self._compressed[topic]}"
            self._publishers[topic] = node.create_publisher(message_class(msgtype), name, PLAYER_QOS)

    def _compress(self, topic: str, raw: bytes) -> object:
        """A raw Image's CDR bytes -> the CompressedImage image_transport's plugin would publish."""
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import CompressedImage, Image

        from posecnn_ros.compressed import encode_compressed, encode_compressed_depth
        from posecnn_ros.image_conversion import depth_values, image_to_rgb

        image = deserialize_message(raw, Image)
        out = CompressedImage(header=image.header)
        if self._compressed[topic] == "compressedDepth":
            out.format, data = encode_compressed_depth(depth_values(image))
        else:
            out.format, data = encode_compressed(image_to_rgb(image), self._codec or "jpeg")
        out.data = data
        return out

    def subscription_counts(self) -> dict[str, int]:
        """Matched subscribers per (bag) topic."""
        return {topic: pub.get_subscription_count() for topic, pub in self._publishers.items()}

    def wait_delivered(self, timeout: float = 10.0) -> bool:
        """Wait until every message played so far is acknowledged by every matched subscriber (the player's QoS
        is reliable); False after `timeout` seconds. Call it before the player's node goes away, so that the last
        messages are not lost with it."""
        from rclpy.duration import Duration

        deadline = time.monotonic() + timeout
        for pub in self._publishers.values():
            left = max(0.0, deadline - time.monotonic())
            if not pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))):
                return False
        return True

    def play(self, rate: float = 1.0, stop: threading.Event | None = None,
             on_message: Callable[[str, int], None] | None = None) -> PlayStats:
        """Publish every selected message once; returns counts and timing. `stop` ends playback early."""
        stats = PlayStats(by_topic={t: 0 for t in self.topics}, bag_duration_s=self.bag_duration_s)
        start_wall = time.monotonic()
        first: int | None = None
        with self._reader_cls(self.path) as reader:
            conns = [c for c in reader.connections if c.topic in self.topics]
            for conn, stamp_ns, raw in reader.messages(connections=conns):
                if stop is not None and stop.is_set():
                    break
                first = stamp_ns if first is None else first
                if rate > 0:
                    delay = start_wall + (stamp_ns - first) * 1e-9 / rate - time.monotonic()
                    if delay > 0:
                        if stop is not None:
                            if stop.wait(delay):
                                break
                        else:
                            time.sleep(delay)
                if conn.topic in self._compressed:
                    self._publishers[conn.topic].publish(self._compress(conn.topic, bytes(raw)))
                else:
                    self._publishers[conn.topic].publish(bytes(raw))
                stats.published += 1
                stats.by_topic[conn.topic] += 1
                if on_message is not None:
                    on_message(conn.topic, stamp_ns)
        stats.duration_s = time.monotonic() - start_wall
        return stats


def main(argv: list[str] | None = None) -> int:
    """Command line: play a bag once (waits for subscribers to the first topic up to --wait seconds)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path)
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (<= 0: no waiting)")
    parser.add_argument("--topics", nargs="*", default=None, help="only these topics")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for any subscriber first")
    parser.add_argument("--compress", choices=("jpeg", "png"), default=None,
                        help="publish raw Image topics as image_transport's compressed / compressedDepth streams")
    args = parser.parse_args(rclpy.utilities.remove_ros_args(sys.argv if argv is None else argv)[1:])
    rclpy.init(args=sys.argv if argv is None else argv)
    node = rclpy.create_node("posecnn_bag_player")
    try:
        player = BagPlayer(node, args.bag, args.topics, compress=args.compress)
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline and not any(player.subscription_counts().values()):
            time.sleep(0.05)
        stats = player.play(args.rate)
        if not player.wait_delivered(args.wait):
            node.get_logger().warning(f"not every message was acknowledged by its subscribers within {args.wait} s")
        node.get_logger().info(f"published {stats.published} messages in {stats.duration_s:.2f} s "
                               f"(bag spans {stats.bag_duration_s:.2f} s): {stats.by_topic}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, FileNotFoundError) as exc:
        node.get_logger().error(str(exc))
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
