"""The rotation head's targets do not depend on the camera: the same object pose seen through cameras with other
focal lengths and principal points (and through the scale augmentation) gives the same allocentric target, while
its box moves and scales with the intrinsics."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).parent))
from _train_helpers import draw_frame, write_object_set  # noqa: E402

from posecnn_core.geometry import ego_to_allo  # noqa: E402
from posecnn_core.objects import load_object_set  # noqa: E402
from posecnn_core.synth.writer import write_classes, write_frame, write_image_set  # noqa: E402
from posecnn_core.train.config import AugmentConfig  # noqa: E402
from posecnn_core.train.data import TrainDataset  # noqa: E402

CAMERAS = {"a": (300.0, 300.0, 79.5, 59.5), "b": (520.0, 515.0, 70.0, 66.0), "c": (260.0, 262.0, 88.0, 52.0)}


def test_allocentric_targets_are_the_same_through_every_camera(tmp_path):
    yaml_path = write_object_set(tmp_path)
    objects = [(1, Rotation.from_euler("xyz", [30, -20, 50], degrees=True).as_matrix(), np.array([-0.05, 0.02, 0.7])),
               (2, Rotation.from_euler("xyz", [-60, 10, 15], degrees=True).as_matrix(), np.array([0.06, -0.03, 0.8]))]
    ids = []
    for name, (fx, fy, cx, cy) in CAMERAS.items():
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        fid = f"{name}/000000"
        write_frame(tmp_path / "ds", fid, *draw_frame(120, 160, K, objects, seed=1))
        ids.append(fid)
    write_image_set(tmp_path / "ds", "train", ids)
    write_classes(tmp_path / "ds", ["plate", "brick"])
    objs = load_object_set(yaml_path)
    from posecnn_core.train.config import DataSource

    plain = TrainDataset([DataSource(str(tmp_path / "ds"))], objs, augment=AugmentConfig(enabled=False))
    scaled = TrainDataset([DataSource(str(tmp_path / "ds"))], objs,
                          augment=AugmentConfig(hls_prob=0, noise_or_blur_prob=0, background_prob=0, scale_prob=1.0,
                                                scale_min=0.7, scale_max=1.4))
    targets, centres = [], []
    for ds in (plain, scaled):
        for i in range(len(ds)):
            s = ds[i]
            targets.append(ego_to_allo(s.quaternions, s.translations))
            assert np.allclose(s.translations, [o[2] for o in objects], atol=1e-6)
            uv = s.translations @ s.K.T
            centres.append(uv[:, :2] / uv[:, 2:])
            # the boxes follow the camera: the projected centre lies inside each instance's box
            for (u, v), (x1, y1, x2, y2) in zip(centres[-1], s.boxes):
                assert x1 <= u <= x2 and y1 <= v <= y2
    for t in targets[1:]:
        assert np.allclose(t, targets[0], atol=1e-6)
    # while the objects' image positions differ between the cameras (so the test is not vacuous)
    assert np.abs(centres[1] - centres[0]).max() > 10 and np.abs(centres[2] - centres[0]).max() > 5
