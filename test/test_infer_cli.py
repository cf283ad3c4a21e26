"""posecnn-infer (posecnn_core.infer) on frames of the bundled bag with the bundled demo model: results equal the
estimator's, files, overwrite refusal, rectification, depth pairing and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from posecnn_core import infer

ROOT = Path(__file__).resolve().parent.parent
BAG = ROOT / "data" / "bags" / "demo"


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Two colour frames (PNG), the first one's depth (16-bit PNG, mm) and the bag's camera, from the sample bag."""
    pytest.importorskip("rosbags")
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    root = tmp_path_factory.mktemp("frames")
    (root / "images").mkdir()
    (root / "depth").mkdir()
    images, K, size = [], None, None
    with Reader(BAG) as reader:
        conns = [c for c in reader.connections if c.topic in ("/image", "/depth", "/camera_info")]
        depth_done = False
        for conn, _, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == "/camera_info" and K is None:
                K, size = msg.k.reshape(3, 3).copy(), (int(msg.width), int(msg.height))
            elif conn.topic == "/image" and len(images) < 2:
                rgb = msg.data.reshape(msg.height, msg.width, 3)
                path = root / "images" / f"{len(images):04d}-color.png"
                cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
                images.append((path, rgb.copy()))
            elif conn.topic == "/depth" and not depth_done:
                cv2.imwrite(str(root / "depth" / "0000-depth.png"), msg.data.view("<u2").reshape(msg.height, msg.width))
                depth_done = True
            if len(images) == 2 and depth_done and K is not None:
                break
    return root, images, K, size


def _camera_yaml(path: Path, K: np.ndarray, size: tuple[int, int], D=(0, 0, 0, 0, 0), P=None) -> Path:
    P = np.hstack([K, np.zeros((3, 1))]) if P is None else P
    path.write_text(
        f"image_width: {size[0]}\nimage_height: {size[1]}\ncamera_name: bag\n"
        f"camera_matrix: {{rows: 3, cols: 3, data: {np.asarray(K).ravel().tolist()}}}\n"
        f"distortion_model: plumb_bob\ndistortion_coefficients: {{rows: 1, cols: 5, data: {list(D)}}}\n"
        f"rectification_matrix: {{rows: 3, cols: 3, data: {np.eye(3).ravel().tolist()}}}\n"
        f"projection_matrix: {{rows: 3, cols: 4, data: {np.asarray(P).ravel().tolist()}}}\n")
    return path


def _run(capsys, *argv) -> tuple[int, str]:
    code = infer.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_results_equal_the_estimator_and_files_are_written(frames, tmp_path, capsys) -> None:
    from posecnn_core.estimator import PoseEstimator
    from posecnn_core.resources import DEMO_CHECKPOINT, DEMO_OBJECTS, resource_path

    root, images, K, size = frames
    camera = _camera_yaml(tmp_path / "camera_info.yaml", K, size)
    out = tmp_path / "out"
    code, err = _run(capsys, "--images", root / "images", "--camera", camera, "--out", out, "--device", "cpu")
    assert code == 0, err
    assert "2 of 2 image(s) done" in err and "100%" in err  # summary and progress bar
    assert sorted(p.name for p in out.iterdir()) == ["0000-color.json", "0000-color_overlay.png",
                                                    "0001-color.json", "0001-color_overlay.png"]
    est = PoseEstimator(str(resource_path(DEMO_CHECKPOINT)), str(resource_path(DEMO_OBJECTS)), device="cpu")
    total = 0
    for path, rgb in images:
        doc = json.loads((out / f"{path.stem}.json").read_text())
        assert (doc["width"], doc["height"], doc["rectified"]) == (size[0], size[1], False)
        np.testing.assert_allclose(doc["K"], K)
        direct = est.estimate(rgb, K)
        assert [o["class"] for o in doc["objects"]] == [o.class_name for o in direct.objects]
        for got, ref in zip(doc["objects"], direct.objects):
            np.testing.assert_allclose(got["t"], ref.t, atol=1e-6)
            np.testing.assert_allclose(got["R"], ref.R, atol=1e-6)
            np.testing.assert_allclose(got["box"], ref.roi, atol=1e-4)
            assert got["score"] == pytest.approx(ref.score, abs=1e-6)
            w, x, y, z = got["quaternion"]
            np.testing.assert_allclose(Rotation.from_quat([x, y, z, w]).as_matrix(), got["R"], atol=1e-6)
            assert 0 <= got["box"][0] <= got["box"][2] <= size[0]
        total += len(doc["objects"])
        overlay = cv2.imread(str(out / f"{path.stem}_overlay.png"))
        assert overlay.shape == (size[1], size[0], 3) and not np.array_equal(overlay[:, :, ::-1], rgb)
    assert total > 0, "the demo model found nothing on the bag's frames"

    # results exist: refused (one line, exit 2, nothing touched) unless --overwrite
    before = (out / "0000-color.json").stat().st_mtime_ns
    code, err = _run(capsys, "--images", root / "images", "--camera", camera, "--out", out)
    assert code == 2 and err.strip().count("\n") == 0
    assert "0000-color.json exists (and 1 more); pass --overwrite" in err
    assert (out / "0000-color.json").stat().st_mtime_ns == before
    code, err = _run(capsys, "--images", str(root / "images" / "0001-*.png"), "--fx", K[0, 0], "--fy", K[1, 1],
                     "--cx", K[0, 2], "--cy", K[1, 2], "--out", out, "--overwrite", "--device", "cpu")
    assert code == 0 and "1 of 1 image(s) done" in err, err


def test_depth_and_rectification(frames, tmp_path, capsys) -> None:
    root, images, K, size = frames
    P = np.hstack([K * [[0.9], [0.9], [1]], np.zeros((3, 1))])
    distorted = _camera_yaml(tmp_path / "distorted.yaml", K, size, D=(-0.1, 0.02, 0, 0, 0), P=P)
    out = tmp_path / "rect"
    code, err = _run(capsys, "--images", root / "images" / "0000-color.png", "--camera", distorted,
                     "--depth", root / "depth", "--rectify", "--out", out, "--device", "cpu")
    assert code == 0, err
    doc = json.loads((out / "0000-color.json").read_text())
    assert doc["rectified"] is True and doc["depth"].endswith("0000-depth.png")
    np.testing.assert_allclose(doc["K"], P[:, :3])
    assert doc["objects"] and all(o["refine_status"] != "" for o in doc["objects"])  # depth reached refinement
    # without --rectify: one warning, raw K
    code, err = _run(capsys, "--images", root / "images" / "0000-color.png", "--camera", distorted,
                     "--out", tmp_path / "raw", "--device", "cpu", "--score-threshold", "0.5")
    assert code == 0 and err.count("lens distortion") == 1 and "--rectify is not set" in err, err
    doc = json.loads((tmp_path / "raw" / "0000-color.json").read_text())
    np.testing.assert_allclose(doc["K"], K)
    assert all(o["score"] > 0.5 for o in doc["objects"])


def test_errors_are_one_line_and_exit_2(frames, tmp_path, capsys) -> None:
    root, images, K, size = frames
    camera = _camera_yaml(tmp_path / "cam.yaml", K, size)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("image_width: 320\n")
    fx = ["--fx", 500, "--fy", 500, "--cx", 160, "--cy", 120]
    cases = [
        (["--images", root / "images", "--out", tmp_path / "o"], "the camera is needed"),
        (["--images", root / "images", "--out", tmp_path / "o", "--fx", 500], "missing --fy, --cx, --cy"),
        (["--images", root / "images", "--out", tmp_path / "o", "--camera", bad_yaml], "missing camera_matrix"),
        (["--images", root / "images", "--out", tmp_path / "o", "--camera", camera, *fx], "not both"),
        (["--images", str(tmp_path / "none" / "*.png"), "--out", tmp_path / "o", *fx], "no images found"),
        (["--images", tmp_path / "missing_dir", "--out", tmp_path / "o", *fx], "no such file, folder or pattern"),
        (["--images", root / "images", "--depth", root / "depth", "--out", tmp_path / "o", *fx],
         "no depth image for 0001-color.png"),
        (["--images", root / "images", "--out", tmp_path / "o", "--checkpoint", tmp_path / "nope.pt", *fx],
         "checkpoint"),
        (["--images", root / "images", "--out", tmp_path / "o", "--rectify", *fx], "--rectify needs a calibration"),
    ]
    for argv, expected in cases:
        code, err = _run(capsys, *argv)
        assert code == 2 and expected in err, (argv, err)
        assert err.strip().count("\n") == 0 and err.startswith("posecnn-infer: error: "), err
    assert not (tmp_path / "o").exists()  # nothing written when stopped up front

    # an unreadable image and one of the wrong size: reported, the good one done, exit 2
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a_broken.png").write_bytes(b"not a png")
    cv2.imwrite(str(mixed / "b_small.png"), np.zeros((10, 12, 3), np.uint8))
    cv2.imwrite(str(mixed / "c_good.png"), cv2.imread(str(images[0][0])))
    code, err = _run(capsys, "--images", mixed, "--camera", camera, "--out", tmp_path / "m", "--device", "cpu")
    assert code == 2
    assert "a_broken.png: cannot read it as an image" in err
    assert "b_small.png: image is 12x10 but the calibration is 320x240" in err
    assert "1 of 3 image(s) done" in err and "2 image(s) failed" in err
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["c_good.json", "c_good_overlay.png"]


def test_track_keeps_ids_over_a_sequence(frames, tmp_path, capsys) -> None:
    """--track on a still scene (one frame three times): new tracks are confirmed by the second frame and keep
    their ids; a per-frame run writes no track ids."""
    root, images, K, size = frames
    seq = tmp_path / "seq"
    seq.mkdir()
    for k in range(3):
        cv2.imwrite(str(seq / f"{k:04d}.png"), cv2.imread(str(images[0][0])))
    camera = _camera_yaml(tmp_path / "camera_info.yaml", K, size)
    out = tmp_path / "out"
    code, err = _run(capsys, "--images", seq, "--camera", camera, "--out", out, "--device", "cpu", "--track")
    assert code == 0, err
    docs = [json.loads((out / f"{k:04d}.json").read_text()) for k in range(3)]
    assert docs[0]["objects"] == []  # tentative until the second hit (TrackerConfig.min_hits = 2)
    ids = [o["track_id"] for o in docs[1]["objects"]]
    assert ids and sorted(ids) == list(range(len(ids)))
    assert [o["track_id"] for o in docs[2]["objects"]] == ids
    assert [o["class"] for o in docs[2]["objects"]] == [o["class"] for o in docs[1]["objects"]]
    for a, b in zip(docs[1]["objects"], docs[2]["objects"]):  # a still scene: the filtered pose stays put
        np.testing.assert_allclose(a["t"], b["t"], atol=1e-9)
    code, err = _run(capsys, "--images", seq, "--camera", camera, "--out", tmp_path / "plain", "--device", "cpu")
    assert code == 0, err
    plain = json.loads((tmp_path / "plain" / "0002.json").read_text())
    assert plain["objects"] and all(o["track_id"] is None for o in plain["objects"])
