"""launch_testing: posecnn.launch.py on the bundled bag played with `ros2 bag play`; the node's estimates are scored
against the bag's ground truth (posecnn_ros.demo's scoring), and every process must exit cleanly.

The ground truth and camera intrinsics are read from the bag file itself (posecnn_ros.bag_player.read_topics, with
rosbags), so none is missed however late this test's subscriptions match; only the node's answers are received
live. The test starts `ros2 bag play` itself once discovery is done: the node subscribes the bag's image and
camera_info topics (it does so once its model is loaded) and this test's estimates subscription is matched with
the node's publisher; the player then waits PLAYER_DELAY_S before its first message, so that the node also matches
the player's publishers. It fails fast when the node does not come up, when a launched process or the player exits
with an error, or when the node answers nothing within a minute of the player's start.

Needs a real ROS 2 install (launch, launch_ros, launch_testing, ros2bag with the mcap plugin), `pip install
rosbags`, and the built package: `colcon test --packages-select posecnn_ros` or `launch_test
test/test_launch_posecnn.py`. Plain pytest skips it: in the pip/wheel environment launch_testing cannot be
imported, and setup.cfg disables the launch_testing pytest plugin (its releases before the pytest 9 fix stop
pytest >= 9 at start-up), so test/conftest.py marks these test cases skipped.
"""

from __future__ import annotations

import subprocess
import time
import unittest

import pytest

launch_testing = pytest.importorskip("launch_testing", reason="launch_testing cannot be imported (no ROS 2 "
                                                               "distro: the rclpy wheels do not include launch)")
import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.events.process import ProcessExited  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from launch_ros.substitutions import FindPackageShare  # noqa: E402
import numpy as np  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

from posecnn_core.resources import resource_path  # noqa: E402
from posecnn_ros import demo  # noqa: E402
from posecnn_ros.bag_player import read_topics  # noqa: E402
from posecnn_ros.msg import ObjectEstimateArray  # noqa: E402

# Bounds for the bundled demo model on the bundled bag (measured without ROS: found 108/125, median translation
# error 5.0 cm, 27 of 135 detections unmatched, 121 of 135 with a class of their frame). Matching and errors are the
# demo's (posecnn_core.evaluate: estimates matched to the ground truth by box IoU). Its rotations are still coarse
# (median 32 deg up to symmetries, README's demo-model section), so rotations are asserted by test_demo_bundled.py
# only, not here.
RATE = 0.25            # slow playback so that a CPU-only machine answers most frames
T_TOL_M = 0.07         # translation tolerance of matched detections (median over the bag)
MIN_FOUND = 0.75       # fraction of ground-truth objects of answered frames that must be found
MIN_PRECISION = 0.75   # fraction of detections whose class is in the frame's ground truth
NODE_READY_TIMEOUT_S = 120.0  # the node subscribes its inputs once the model is loaded (CPU)
PLAYER_DELAY_S = 3.0   # `ros2 bag play --delay`: the node matches the player's publishers before the first frame
FIRST_ANSWER_TIMEOUT_S = 60.0  # after the player started
QUIET_END_S = 15.0     # the player has finished and nothing new came for this long: done
TIMEOUT_S = 300.0


@pytest.mark.launch_test
def generate_test_description():
    share = FindPackageShare("posecnn_ros")
    posecnn = IncludeLaunchDescription(
        PythonLaunchDescriptionSource([share, "/launch/posecnn.launch.py"]),
        launch_arguments={"device": "cpu", "use_rviz": "false"}.items())
    return launch.LaunchDescription([posecnn, launch_testing.actions.ReadyToTest()])


def _key(msg):
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def _failed_process(proc_info) -> str | None:
    """The name and exit code of a launched process that has exited with an error, if any."""
    for action in proc_info.processes():
        event = proc_info[action]
        if isinstance(event, ProcessExited) and event.returncode != 0:
            return f"{action.process_details['name']} exited with code {event.returncode}"
    return None


class TestDetections(unittest.TestCase):
    def test_detections_match_ground_truth(self, proc_info, proc_output):
        bag = resource_path(f"{demo.DEMO_BAG}/metadata.yaml").parent
        recorded = read_topics(bag, [demo.GROUND_TRUTH, demo.CAMERA_INFO])
        truths = {_key(m): m for m in recorded[demo.GROUND_TRUTH]}
        cameras = {_key(m): m for m in recorded[demo.CAMERA_INFO]}
        self.assertTrue(truths, "the bundled bag has no /ground_truth messages")
        rclpy.init()
        node = rclpy.create_node("posecnn_launch_test")
        answers = {}
        estimates = node.create_subscription(ObjectEstimateArray, demo.ESTIMATES,
                                             lambda m: answers.__setitem__(_key(m), m),
                                             QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        player = None
        try:
            # discovery first: the node subscribes the bag's inputs, and our subscription has matched its output
            started = time.monotonic()
            while not (node.count_subscribers("/image") > 0 and node.count_subscribers(demo.CAMERA_INFO) > 0
                       and estimates.get_publisher_count() > 0):
                rclpy.spin_once(node, timeout_sec=0.1)
                failed = _failed_process(proc_info)
                self.assertIsNone(failed, f"{failed}; see its output above")
                if time.monotonic() - started > NODE_READY_TIMEOUT_S:
                    self.fail(f"the node did not subscribe /image and {demo.CAMERA_INFO} (or publish "
                              f"{demo.ESTIMATES}) within {NODE_READY_TIMEOUT_S:.0f} s")
            player = subprocess.Popen(["ros2", "bag", "play", str(bag), "--rate", str(RATE),
                                       "--delay", str(PLAYER_DELAY_S)])
            started = time.monotonic()
            last_new, seen = started, 0
            while time.monotonic() - started < TIMEOUT_S:
                rclpy.spin_once(node, timeout_sec=0.1)
                now = time.monotonic()
                failed = _failed_process(proc_info)
                self.assertIsNone(failed, f"{failed}; see its output above")
                code = player.poll()
                self.assertIn(code, (None, 0), f"ros2 bag play exited with code {code}; see its output above")
                if len(answers) != seen:
                    seen, last_new = len(answers), now
                if not answers and now - started > PLAYER_DELAY_S + FIRST_ANSWER_TIMEOUT_S:
                    self.fail(f"no {demo.ESTIMATES} message within {FIRST_ANSWER_TIMEOUT_S:.0f} s of the player's "
                              "first message")
                if code == 0 and now - last_new > QUIET_END_S:
                    break  # the bag ended and the node is done
            self.assertTrue(answers, f"no {demo.ESTIMATES} messages")
            models = demo.Models.load("")  # the bundled demo object set, which the launch file's node uses
            found, total, detections, correct_class, t_err = 0, 0, 0, 0, []
            for stamp, msg in answers.items():
                self.assertIn(stamp, truths, "estimates carry a stamp that is not an image stamp of the bag")
                self.assertEqual(msg.header.frame_id, truths[stamp].header.frame_id)
                gt_classes = {d.results[0].hypothesis.class_id for d in truths[stamp].detections}
                detections += len(msg.estimates)
                correct_class += sum(e.class_name in gt_classes for e in msg.estimates)
                K = np.asarray(cameras[stamp].k, np.float64).reshape(3, 3)
                gt, gt_ids = demo.ground_truth(str(stamp), truths[stamp], K, models)
                dets, det_ids = demo.detections(msg)
                frame, _ = demo.score_frame(0, str(stamp), gt, gt_ids, dets, det_ids, models)
                total += len(frame.objects)
                for obj in frame.objects:
                    if obj.detection is not None:
                        found += 1
                        t_err.append(obj.translation_error_m)
            self.assertGreaterEqual(found, MIN_FOUND * total, f"found {found} of {total} objects")
            self.assertGreaterEqual(correct_class, MIN_PRECISION * detections,
                                    f"{correct_class} of {detections} detections have a class of the frame")
            t_err.sort()
            self.assertLessEqual(t_err[len(t_err) // 2], T_TOL_M)
        finally:
            if player is not None and player.poll() is None:
                player.terminate()
                player.wait(10)
            node.destroy_node()
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestExitCodes(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
