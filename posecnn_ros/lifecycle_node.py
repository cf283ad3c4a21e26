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

if __name__ == "__main__":  # handle SIGINT/SIGTERM already during the imports below
    from posecnn_ros import stop_signals

    stop_signals.install()

import sys
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from posecnn_ros.node import NODE_NAME, EstimatorFactory, PoseCnnGlue, run


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

    def _teardown(self) -> tuple[bool, bool]:
        """Whatever is up goes down: subscriptions, publishers, worker, model. Returns (the worker thread has
        ended, the model was freed)."""
        ended = True
        if self._active:
            self._stop()
        if self._opened:
            ended = self._close()
            self._opened = False
        return ended, self._release_model()

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
        _, freed = self._teardown()
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

    def close(self) -> bool:
        """Release everything (process exit); True when the worker thread has ended."""
        ended, _ = self._teardown()
        self._detach_core_log()
        return ended


def main(args: list[str] | None = None, estimator_factory: EstimatorFactory | None = None) -> int:
    """`posecnn_lifecycle_node`: start-up, signals and exit codes as posecnn_node (posecnn_ros.node.run)."""
    return run(lambda: PoseCnnLifecycleNode(estimator_factory), args)


if __name__ == "__main__":
    sys.exit(main())
