"""Dynamic TF broadcasting: tf2_ros.TransformBroadcaster when importable, else the same wire behaviour by hand.

The fallback publishes tf2_msgs/TFMessage on `/tf` with tf2_ros's dynamic-broadcaster QoS: reliable, volatile,
keep-last 100 — so tf2 listeners, rviz and `ros2 run tf2_ros tf2_echo` see no difference.
"""

from __future__ import annotations

from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

TF_TOPIC = "/tf"
TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)


class TfPublisher:
    """Send a TFMessage's transforms on /tf. `backend` is "tf2_ros" or "publisher"."""

    def __init__(self, node: Node, prefer_tf2_ros: bool = True) -> None:
        self._node = node
        self._broadcaster: Any = None
        self._publisher: Any = None
        if prefer_tf2_ros:
            try:
                from tf2_ros import TransformBroadcaster

                self._broadcaster = TransformBroadcaster(node, qos=TF_QOS)
            except ImportError:
                self._broadcaster = None
        if self._broadcaster is None:
            self._publisher = node.create_publisher(TFMessage, TF_TOPIC, TF_QOS)
        self.backend = "tf2_ros" if self._broadcaster is not None else "publisher"

    def send(self, message: TFMessage) -> None:
        """Broadcast every transform of `message` (nothing is sent for an empty message)."""
        if not message.transforms:
            return
        if self._broadcaster is not None:
            self._broadcaster.sendTransform(list(message.transforms))
        else:
            self._publisher.publish(message)

    def publishers(self) -> list[Any]:
        """The /tf publisher (none once destroyed), e.g. to wait until subscribers have what it sent."""
        publisher = self._publisher if self._publisher is not None else getattr(self._broadcaster, "pub_tf", None)
        return [publisher] if publisher is not None else []

    def destroy(self) -> None:
        """Remove the /tf publisher from the node (a managed node's cleanup)."""
        for publisher in self.publishers():
            self._node.destroy_publisher(publisher)
        self._publisher = self._broadcaster = None
