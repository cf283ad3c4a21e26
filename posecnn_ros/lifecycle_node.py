"""`posecnn_lifecycle_node` (node name `posecnn`): the PoseCNN node as a managed (lifecycle) node.

Same parameters, topics and frame handling as `posecnn_node` (both run posecnn_ros.node.PoseCnnGlue), in steps:

- unconfigured: parameters declared (a bad one ends the process at start, as for posecnn_node); no model.
- configure: loads the model and creates the publishers (lifecycle publishers), the worker and the diagnostics
  timer; a missing or mismatching model fails the transition (the node stays unconfigured, the log says why).
- activate: publishers on, subscriptions created: frames are processed.
- deactivate: subscriptions removed (the frame in progress finishes), publishers off.
- cleanup: publishers and worker removed, the model released (GPU memory returned with torch.cuda.empty_cache).
- shutdown (from any state) and errors release everything.

    ros2 run posecnn_ros posecnn_lifecycle_node          # then: ros2 lifecycle set /posecnn configure, activate
    ros2 launch posecnn_ros posecnn.launch.py lifecycle:=true autostart:=true
"""

from __future__ import annotations

import sys
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from posecnn_ros.node import EXIT_FATAL, NODE_NAME, EstimatorFactory, PoseCnnGlue


class PoseCnnLifecycleNode(PoseCnnGlue, LifecycleNode):
    """The managed PoseCNN node; `estimator_factory` as for PoseCnnNode. Raises ParameterError for bad
    parameters at construction; model errors surface as a failed configure transition."""

    def __init__(self, estimator_factory: EstimatorFactory | None = None, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self._factory = estimator_factory
        self._opened = False
        self._declare()
        self.get_logger().info("unconfigured: configure loads the model, activate starts processing")

    def destroy_publisher(self, publisher: Any) -> bool:
        # lifecycle publishers must leave the managed entities too
        if publisher in self._managed_entities:
            self._managed_entities.discard(publisher)
        return super().destroy_publisher(publisher)

    def _teardown(self) -> bool:
        """Whatever is up goes down: subscriptions, publishers, worker, model. True if the model was freed."""
        if self._active:
            self._stop()
        if self._opened:
            self._close()
            self._opened = False
        return self._release_model()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._load_model(self._factory)
        except (ValueError, OSError, ImportError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self._release_model()
            return TransitionCallbackReturn.FAILURE
        self._open(self.create_lifecycle_publisher)
        self._opened = True
        self.get_logger().info(f"configured: model loaded on {self.device} ({len(self._class_names) - 1} classes)")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # lifecycle publishers on
        self._start()
        self.get_logger().info("active, " + self._ready_message())
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self.get_logger().info("inactive: not processing")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        freed = self._teardown()
        self.get_logger().info("cleaned up: model released" if freed else
                               "cleaned up: model released by the node but still referenced elsewhere")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        self.get_logger().info(f"shut down from {state.label}")
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        self.get_logger().error(f"error during a transition from {state.label}: everything released, unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Release everything (process exit)."""
        self._teardown()


def main(args: list[str] | None = None, estimator_factory: EstimatorFactory | None = None) -> int:
    """Run the managed node until SIGINT/SIGTERM (exit 0); bad parameters exit with EXIT_FATAL."""
    rclpy.init(args=args if args is not None else sys.argv)
    logger = rclpy.logging.get_logger(NODE_NAME)
    try:
        node = PoseCnnLifecycleNode(estimator_factory)
    except (ValueError, OSError, ImportError) as exc:
        logger.fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return EXIT_FATAL
    except (KeyboardInterrupt, ExternalShutdownException):
        rclpy.try_shutdown()
        return 0
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
