"""ROS 2 glue for PoseCNN.

In a colcon install this file is replaced by the one rosidl generates (which provides ``posecnn_ros.msg``). In a
source checkout, the path is extended so that an installed ``posecnn_ros.msg`` is found next to these modules.
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)
