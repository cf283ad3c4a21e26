"""Launch the PoseCNN node (and optionally rviz).

    ros2 launch posecnn_ros posecnn.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info device:=cuda use_rviz:=true
    ros2 launch posecnn_ros posecnn.launch.py image_transport:=compressed      # <image>/compressed (JPEG/PNG)
    ros2 launch posecnn_ros posecnn.launch.py lifecycle:=true autostart:=false # managed node, left unconfigured

Arguments left empty keep the value of the parameters file (default: the package's config/posecnn.yaml),
whose own defaults are the bundled demo checkpoint and object set. With lifecycle:=true the managed
`posecnn_lifecycle_node` runs instead; autostart:=true (default) configures it and, once it is inactive, activates it.
"""

import lifecycle_msgs.msg
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("checkpoint", "", "model checkpoint (.pt); empty = from the parameters file (bundled demo by default)"),
    ("objects", "", "object set YAML matching the checkpoint; empty = from the parameters file"),
    ("image", "image", "input image topic (sensor_msgs/Image)"),
    ("camera_info", "camera_info", "input camera info topic"),
    ("depth", "depth", "input depth topic (used when use_depth is true)"),
    ("use_depth", "", "true/false: pair depth images with the images; empty = from the parameters file"),
    ("image_transport", "", "raw or compressed (subscribe <image>/compressed and <depth>/compressedDepth); "
                            "empty = from the parameters file"),
    ("rectify", "", "true/false: undistort with CameraInfo's D (image_proc's way); empty = from the parameters file"),
    ("device", "", "auto, cuda, cuda:N or cpu; empty = from the parameters file"),
    ("namespace", "", "namespace of the node (its outputs are <namespace>/posecnn/...)"),
    ("params_file", "", "parameters file; empty = the package's config/posecnn.yaml"),
    ("use_rviz", "false", "also start rviz2 with the package's config/posecnn.rviz"),
    ("log_level", "info", "node log level"),
    ("lifecycle", "false", "run the managed (lifecycle) node posecnn_lifecycle_node"),
    ("autostart", "true", "with lifecycle: configure and activate the managed node at launch"),
]


def _true(text: str) -> bool:
    return text.lower() in ("true", "1", "yes")


def _node(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    share = FindPackageShare("posecnn_ros").perform(context)
    params_file = arg("params_file") or f"{share}/config/posecnn.yaml"
    overrides = {}
    for name in ("checkpoint", "objects", "device"):
        if arg(name):
            overrides[name] = arg(name)
    for name in ("use_depth", "rectify"):
        if arg(name):
            overrides[name] = _true(arg(name))
    if arg("image_transport"):
        overrides["image_transport"] = arg("image_transport")
    common = dict(
        package="posecnn_ros",
        name="posecnn",
        namespace=arg("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[params_file, overrides] if overrides else [params_file],
        remappings=[("image", arg("image")), ("camera_info", arg("camera_info")), ("depth", arg("depth"))],
        arguments=["--ros-args", "--log-level", arg("log_level")],
    )
    if not _true(arg("lifecycle")):
        return [Node(executable="posecnn_node", **common)]
    node = LifecycleNode(executable="posecnn_lifecycle_node", **common)
    if not _true(arg("autostart")):
        return [node]

    def transition(transition_id: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    activate_when_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[transition(lifecycle_msgs.msg.Transition.TRANSITION_ACTIVATE)]))
    return [node, activate_when_configured, transition(lifecycle_msgs.msg.Transition.TRANSITION_CONFIGURE)]


def generate_launch_description() -> LaunchDescription:
    rviz_config = PathJoinSubstitution([FindPackageShare("posecnn_ros"), "config", "posecnn.rviz"])
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [
            OpaqueFunction(function=_node),
            Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz_config],
                 output="screen", condition=IfCondition(LaunchConfiguration("use_rviz"))),
        ])
