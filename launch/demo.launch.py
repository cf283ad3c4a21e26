"""The demo: play the bundled sample bag with `ros2 bag play`, run the node on it and show the results in rviz.

    ros2 launch posecnn_ros demo.launch.py            # bundled bag, checkpoint and object set, CPU
    ros2 launch posecnn_ros demo.launch.py device:=cuda rate:=0.5 loop:=true
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, TimerAction
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("posecnn_ros")
    bag = LaunchConfiguration("bag")
    rate = LaunchConfiguration("rate")
    play = ["ros2", "bag", "play", bag, "--rate", rate]
    return LaunchDescription([
        DeclareLaunchArgument("bag", default_value=PathJoinSubstitution([share, "data", "bags", "demo"]),
                              description="rosbag2 folder with /image, /camera_info, /depth, /ground_truth"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("loop", default_value="false", description="replay the bag forever"),
        DeclareLaunchArgument("device", default_value="cpu", description="auto, cuda, cuda:N or cpu"),
        DeclareLaunchArgument("use_rviz", default_value="true", description="start rviz2"),
        DeclareLaunchArgument("start_delay", default_value="5.0",
                              description="seconds to give the node to load the model before playing"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "posecnn.launch.py"])),
            launch_arguments={"device": LaunchConfiguration("device"), "use_rviz": LaunchConfiguration("use_rviz"),
                              "use_depth": "false"}.items()),
        TimerAction(period=LaunchConfiguration("start_delay"), actions=[
            ExecuteProcess(cmd=play + ["--loop"], output="screen", condition=IfCondition(LaunchConfiguration("loop"))),
            ExecuteProcess(cmd=play, output="screen", condition=UnlessCondition(LaunchConfiguration("loop"))),
        ]),
    ])
