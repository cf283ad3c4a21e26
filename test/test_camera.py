"""posecnn_core.camera: focal length, intrinsics under resizing, reference cameras."""
import numpy as np
import pytest

from posecnn_core.camera import YCB_OBJECT_CAMERA, YCB_VIDEO_CAMERA, ReferenceCamera, focal_length, scale_intrinsics


def test_focal_length_is_geometric_mean():
    K = np.array([[400.0, 0, 160], [0, 900.0, 120], [0, 0, 1]])
    assert focal_length(K) == pytest.approx(600.0)


def test_scale_intrinsics_aligns_pixel_centres():
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    K2 = scale_intrinsics(K, 0.5, 0.5)
    assert K2[0, 0] == 250 and K2[1, 1] == 250
    # the image centre stays the image centre: 640x480 -> 320x240, centre 159.5, 119.5
    assert K2[0, 2] == pytest.approx(159.5) and K2[1, 2] == pytest.approx(119.5)
    # a 3D point projects to the same place in the resized image's pixel convention
    X = np.array([0.1, -0.05, 0.8])
    p = K @ X / X[2]
    p2 = K2 @ X / X[2]
    assert p2[0] == pytest.approx((p[0] + 0.5) * 0.5 - 0.5)


def test_reference_cameras_and_dict_round_trip():
    assert YCB_VIDEO_CAMERA.focal == pytest.approx(np.sqrt(1066.778 * 1067.487))
    assert YCB_OBJECT_CAMERA.fx == 524.7918 and YCB_OBJECT_CAMERA.cy == 281.2340
    cam = ReferenceCamera.from_dict({"fx": 300, "fy": 310.5, "width": 320, "height": 240})
    assert ReferenceCamera.from_dict(cam.to_dict()) == cam
    with pytest.raises(ValueError, match="unknown field"):
        ReferenceCamera.from_dict({"fx": 1, "fy": 1, "f": 2})
    with pytest.raises(ValueError, match="fx"):
        ReferenceCamera(fx=-1.0, fy=1.0)


def test_checkpoint_meta_records_reference_camera(tmp_path):
    import torch
    from posecnn_core.checkpoint import CheckpointMeta, read_state_dict, save_checkpoint
    from posecnn_core.network import PoseCNN

    net = PoseCNN(3, fc_dim=16, trunk_width=0.125)
    meta = CheckpointMeta(num_classes=3, fc_dim=16, trunk_width=0.125,
                          reference_camera={"fx": 533.0, "fy": 533.0, "width": 320, "height": 240})
    assert meta.reference_camera == ReferenceCamera(533.0, 533.0, 320, 240)
    path = save_checkpoint(tmp_path / "m.pt", net, meta)
    _, back = read_state_dict(path)
    assert back.reference_camera == meta.reference_camera
    assert CheckpointMeta(num_classes=3).reference_camera is None
    with pytest.raises(TypeError, match="reference_camera"):
        CheckpointMeta(num_classes=3, reference_camera=5.0)
    del torch
