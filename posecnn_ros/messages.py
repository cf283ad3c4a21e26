"""EstimationResult -> ROS messages. Pure functions: no node, no publishing, unit-testable.

Every builder takes the image's `header` and stamps its output with it (same stamp, same optical frame id).
An object's id is `<class>_<k>` (k = its instance index among the frame's objects of that class), or
`<class>_<track id>` when the object comes from a tracker (its `track_id` is set); it is the Detection3D id, the
ObjectEstimate id, the TF child frame suffix and the marker text (and the track id the marker id).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import Pose, TransformStamped
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import (Detection2D, Detection2DArray, Detection3D, Detection3DArray, LabelInfo,
                             ObjectHypothesisWithPose, VisionClass)
from visualization_msgs.msg import Marker, MarkerArray

from posecnn_ros.image_conversion import label_to_image
from posecnn_ros.msg import ObjectEstimate, ObjectEstimateArray, StageLatency
from posecnn_core.overlay import class_colour

MARKER_NS_MESH = "posecnn_objects"
MARKER_NS_TEXT = "posecnn_labels"


def detection_id(class_name: str, instance: int) -> str:
    """The per-frame instance id `<class>_<k>`."""
    return f"{class_name}_{int(instance)}"


def object_id(obj: Any) -> str:
    """`<class>_<track id>` for a tracked object, else the per-frame `<class>_<k>`."""
    track = getattr(obj, "track_id", None)
    return detection_id(obj.class_name, obj.instance if track is None else track)


def pose_msg(obj: Any) -> Pose:
    """ObjectPose (t in metres, quaternion w, x, y, z) -> geometry_msgs/Pose."""
    pose = Pose()
    t = np.asarray(obj.t, np.float64)
    q = np.asarray(obj.quaternion, np.float64)
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError(f"object {obj.class_name}_{obj.instance} has an invalid quaternion {q.tolist()}")
    q = q / norm
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in t)
    pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = (float(v) for v in q)
    return pose


def _hypothesis(obj: Any, pose: Pose) -> ObjectHypothesisWithPose:
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = str(obj.class_name)
    hyp.hypothesis.score = float(obj.score)
    hyp.pose.pose = pose
    return hyp


def detections_3d(objects: Iterable[Any], header: Header, extents: np.ndarray) -> Detection3DArray:
    """One Detection3D per object: class name + score, pose in the optical frame, bbox = pose + extents[class]."""
    out = Detection3DArray(header=header)
    for obj in objects:
        pose = pose_msg(obj)
        det = Detection3D(header=header, id=object_id(obj))
        det.results.append(_hypothesis(obj, pose))
        det.bbox.center = pose
        size = np.asarray(extents[int(obj.class_id)], np.float64)
        det.bbox.size.x, det.bbox.size.y, det.bbox.size.z = (float(v) for v in size)
        out.detections.append(det)
    return out


def detections_2d(objects: Iterable[Any], header: Header) -> Detection2DArray:
    """One Detection2D per object: the RoI (pixels) as bbox, class name + score, and the 3D pose."""
    out = Detection2DArray(header=header)
    for obj in objects:
        x1, y1, x2, y2 = (float(v) for v in obj.roi)
        det = Detection2D(header=header, id=object_id(obj))
        det.results.append(_hypothesis(obj, pose_msg(obj)))
        det.bbox.center.position.x = 0.5 * (x1 + x2)
        det.bbox.center.position.y = 0.5 * (y1 + y2)
        det.bbox.size_x = max(x2 - x1, 0.0)
        det.bbox.size_y = max(y2 - y1, 0.0)
        out.detections.append(det)
    return out


def estimates(objects: Iterable[Any], header: Header, stages: Sequence[tuple[str, float]],
              total_latency_ms: float, device: str, processed: int, dropped: int,
              rejected: int) -> ObjectEstimateArray:
    """The package's own ObjectEstimateArray: votes, RoI, centre, voted depth, refinement, latency, counters."""
    out = ObjectEstimateArray(header=header, device=str(device), total_latency_ms=float(total_latency_ms),
                              frames_processed=int(processed), frames_dropped=int(dropped),
                              frames_rejected=int(rejected))
    for obj in objects:
        est = ObjectEstimate(id=object_id(obj), class_name=str(obj.class_name),
                             class_id=int(obj.class_id), instance=int(obj.instance), score=float(obj.score),
                             votes=int(obj.votes), depth=float(obj.depth), pose=pose_msg(obj),
                             refined=bool(getattr(obj, "refined", False)),
                             refinement_inlier_fraction=float(getattr(obj, "refine_inlier_fraction", 0.0)),
                             refinement_status=str(getattr(obj, "refine_status", "")))
        est.roi = np.asarray(obj.roi, np.float32).reshape(4)
        est.center = np.asarray(obj.center, np.float32).reshape(2)
        out.estimates.append(est)
    out.stages = [StageLatency(stage=str(name), ms=float(ms)) for name, ms in stages]
    return out


def transforms(objects: Iterable[Any], header: Header, tf_prefix: str) -> TFMessage:
    """One TransformStamped per object: parent = image frame, child = `<tf_prefix><class>_<k>`."""
    out = TFMessage()
    for obj in objects:
        pose = pose_msg(obj)
        tf = TransformStamped(header=header, child_frame_id=tf_prefix + object_id(obj))
        tf.transform.translation.x = pose.position.x
        tf.transform.translation.y = pose.position.y
        tf.transform.translation.z = pose.position.z
        tf.transform.rotation = pose.orientation
        out.transforms.append(tf)
    return out


def mesh_uri(path: str | Path | None) -> str | None:
    """A mesh reference for rviz: keep `package://` / `file://` URIs, turn a file path into an absolute file:// URI."""
    if path is None or str(path) == "":
        return None
    text = str(path)
    if text.startswith(("package://", "file://")):
        return text
    return Path(text).resolve().as_uri()


def markers(objects: Iterable[Any], header: Header, extents: np.ndarray, mesh_uris: Sequence[str | None],
            num_classes: int) -> MarkerArray:
    """DELETEALL, then per object a MESH_RESOURCE marker (a CUBE of the object's extents when it has no mesh)
    at its pose, and a text marker `<class>_<k>` above it."""
    out = MarkerArray()
    out.markers.append(Marker(header=header, action=Marker.DELETEALL))
    for k, obj in enumerate(objects):
        cls = int(obj.class_id)
        r, g, b = class_colour(cls, num_classes)
        pose = pose_msg(obj)
        marker_id = k if getattr(obj, "track_id", None) is None else int(obj.track_id)
        body = Marker(header=header, ns=MARKER_NS_MESH, id=marker_id, action=Marker.ADD, pose=pose)
        body.color.r, body.color.g, body.color.b, body.color.a = r, g, b, 0.8
        uri = mesh_uris[cls] if cls < len(mesh_uris) else None
        if uri:
            body.type = Marker.MESH_RESOURCE
            body.mesh_resource = uri
            body.mesh_use_embedded_materials = True
            body.scale.x = body.scale.y = body.scale.z = 1.0
        else:
            body.type = Marker.CUBE
            size = np.maximum(np.asarray(extents[cls], np.float64), 1e-3)
            body.scale.x, body.scale.y, body.scale.z = (float(v) for v in size)
        out.markers.append(body)
        text = Marker(header=header, ns=MARKER_NS_TEXT, id=marker_id, action=Marker.ADD,
                      type=Marker.TEXT_VIEW_FACING, text=f"{object_id(obj)} {float(obj.score):.2f}")
        text.pose.position.x = pose.position.x
        text.pose.position.y = pose.position.y - 0.6 * float(np.max(extents[cls])) - 0.02  # optical y is down
        text.pose.position.z = pose.position.z
        text.pose.orientation.w = 1.0
        text.scale.z = 0.03
        text.color.r, text.color.g, text.color.b, text.color.a = r, g, b, 1.0
        out.markers.append(text)
    return out


def label_image(label: np.ndarray, header: Header, num_classes: int) -> Image:
    """Class-index image (mono8, or 16UC1 for more than 256 classes) with the image's header."""
    return label_to_image(Image(), label, header, num_classes)


def label_info(class_names: Sequence[str], header: Header, threshold: float) -> LabelInfo:
    """LabelInfo mapping every class index (0 = background) to its name; threshold = the score threshold."""
    out = LabelInfo(header=header, threshold=float(threshold))
    out.class_map = [VisionClass(class_id=i, class_name=str(name)) for i, name in enumerate(class_names)]
    return out
