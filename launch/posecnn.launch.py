"""Launch the PoseCNN node (and optionally rviz).

    ros2 launch posecnn_ros posecnn.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info device:=cuda use_rviz:=true

Arguments left empty keep the value of the parameters file (default: the package's config/posecnn.yaml),
whose own defaults are the bundled demo checkpoint and object set.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("checkpoint", "", "model checkpoint (.pt); empty = from the parameters file (bundled demo by default)"),
    ("objects", "", "object set YAML matching the checkpoint; empty = from the parameters file"),
    ("image", "image", "input image topic (sensor_msgs/Image)"),
    ("camera_info", "camera_info", "input camera info topic"),
    ("depth", "depth", "input depth topic (used when use_depth is true)"),
    ("use_depth", "", "true/false: pair depth images with the images; empty = from the parameters file"),
    ("device", "", "auto, cuda, cuda:N or cpu; empty = from the parameters file"),
    ("namespace", "", "namespace of the node (its outputs are <namespace>/posecnn/...)"),
    ("params_file", "", "parameters file; empty = the package's config/posecnn.yaml"),
    ("use_rviz", "false", "also start rviz2 with the package's config/posecnn.rviz"),
    ("log_level", "info", "node log level"),
]


def _node(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    share = FindPackageShare("posecnn_ros").perform(context)
    params_file = arg("params_file") or f"{share}/config/posecnn.yaml"
    overrides = {}
    for name in ("checkpoint", "objects", "device"):
        if arg(name):
            overrides[name] = arg(name)
    if arg("use_depth"):
        overrides["use_depth"] = arg("use_depth").lower() in ("true", "1", "yes")
    return [Node(
        package="posecnn_ros",
        executable="posecnn_node",
        name="posecnn",
        namespace=arg("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[params_file, overrides] if overrides else [params_file],
        remappings=[("image", arg("image")), ("camera_info", arg("camera_info")), ("depth", arg("depth"))],
        arguments=["--ros-args", "--log-level", arg("log_level")],
    )]


def generate_launch_description() -> LaunchDescription:
    rviz_config = PathJoinSubstitution([FindPackageShare("posecnn_ros"), "config", "posecnn.rviz"])
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [
            OpaqueFunction(function=_node),
            Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz_config],
                 output="screen", condition=IfCondition(LaunchConfiguration("use_rviz"))),
        ])
