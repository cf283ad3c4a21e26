"""Tests for the YCB-Video-layout reader."""
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from _data_helpers import osmesa_available, write_tiny_dataset
from posecnn_core.datasets.ycb import BadFrameFileError, YCBVideoDataset, read_frame, read_frame_list
from posecnn_core.synth import default_intrinsics

K = default_intrinsics(64, 48)
REPO = Path(__file__).resolve().parents[1]


def _load_meta(path) -> dict:
    return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}


@pytest.fixture()
def tiny(tmp_path):
    write_tiny_dataset(tmp_path, K)
    return tmp_path


def test_reads_frames_and_fields(tiny):
    ds = YCBVideoDataset(tiny, "train")
    assert len(ds) == 2 and ds.frame_ids == ["0000/000001", "0000/000002"]
    assert ds.class_names == ["__background__", "a", "b", "c"]
    f = ds[1]
    assert f.frame_id == "0000/000002" and f.num_objects == 3
    assert f.color_bgr.shape == (48, 64, 3) and f.color_bgr.dtype == np.uint8
    np.testing.assert_array_equal(f.cls_indexes, [2, 2, 1])
    assert f.poses.shape == (3, 3, 4)
    np.testing.assert_allclose(f.poses[1, :, 3], [0.1, 0.02, 0.7])
    np.testing.assert_allclose(f.K, K)
    assert f.factor_depth == 10000.0
    # depth in metres, from the uint16 image and factor_depth
    np.testing.assert_allclose(f.depth[f.instance == 2], 0.7, atol=1e-4)
    assert np.all(f.depth[f.instance == 0] == 0)
    assert set(np.unique(f.label)) == {0, 1, 2} and f.label.dtype == np.int64
    np.testing.assert_allclose(f.centers[0], (K @ [-0.1, 0.0, 0.6] / 0.6)[:2])
    assert YCBVideoDataset(tiny, "test")[0].frame_id == "0001/000001"
    assert ds[-1].frame_id == "0000/000002"
    with pytest.raises(IndexError):
        ds[2]


def test_rgba_color_zeroes_transparent_pixels(tiny):
    import cv2

    path = tiny / "data" / "0000" / "000001-color.png"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    alpha = np.full(bgr.shape[:2], 255, np.uint8)
    alpha[:10, :20] = 0
    cv2.imwrite(str(path), np.dstack([bgr, alpha]))
    f = read_frame(tiny, "0000/000001", load_depth=False)
    assert f.color_bgr.shape == bgr.shape and f.color_bgr.dtype == np.uint8
    assert np.all(f.color_bgr[:10, :20] == 0)
    np.testing.assert_array_equal(f.color_bgr[10:], bgr[10:])


def test_depth_factor_comes_from_meta(tiny):
    meta_path = tiny / "data/0000/000001-meta.mat"
    meta = _load_meta(meta_path)
    meta["factor_depth"] = np.array([[5000.0]])
    scipy.io.savemat(meta_path, meta)
    f = read_frame(tiny, "0000/000001")
    np.testing.assert_allclose(f.depth[f.instance == 1], 1.0, atol=1e-4)  # 5000 stored / 5000


def test_real_ycb_style_frame_without_instance_png(tiny):
    prefix = tiny / "data/0001/000001"
    Path(f"{prefix}-instance.png").unlink()
    meta = _load_meta(f"{prefix}-meta.mat")
    meta["poses"] = meta["poses"][:, :, 0]  # MATLAB stores one object's poses as 3x4
    del meta["instance_ids"]
    scipy.io.savemat(f"{prefix}-meta.mat", meta)
    f = read_frame(tiny, "0001/000001")
    assert f.poses.shape == (1, 3, 4)
    np.testing.assert_array_equal(f.instance, (f.label == 3).astype(np.int32))
    # repeated classes cannot be separated without the instance image
    Path(tiny / "data/0000/000002-instance.png").unlink()
    with pytest.raises(BadFrameFileError, match="000002-instance.png"):
        read_frame(tiny, "0000/000002")


@pytest.mark.parametrize("suffix", ["-color.png", "-depth.png", "-label.png", "-meta.mat", "-instance.png"])
def test_corrupt_file_error_names_it(tiny, suffix):
    path = tiny / f"data/0000/000002{suffix}"
    path.write_bytes(path.read_bytes()[:20])  # truncated
    ds = YCBVideoDataset(tiny, "train")
    with pytest.raises(BadFrameFileError) as info:
        ds[1]
    assert str(path) in str(info.value) and info.value.path == path
    ds[0]  # the good frame still reads


def test_missing_file_error_names_it(tiny):
    path = tiny / "data/0000/000001-label.png"
    path.unlink()
    with pytest.raises(BadFrameFileError, match="000001-label.png: file is missing"):
        YCBVideoDataset(tiny, "train")
    with pytest.raises(BadFrameFileError, match="000001-label.png"):
        read_frame(tiny, "0000/000001")


def test_skip_bad_records_and_logs(tiny, caplog):
    (tiny / "data/0000/000001-meta.mat").unlink()
    with caplog.at_level(logging.WARNING, logger="posecnn_core.datasets.ycb"):
        ds = YCBVideoDataset(tiny, "train", skip_bad=True)
    assert len(ds) == 1 and ds.num_skipped == 1
    assert "000001-meta.mat" in ds.bad_frames["0000/000001"]
    assert len(caplog.records) == 1 and "skipped 1 of 2 frames" in caplog.text


def test_skip_bad_replaces_corrupt_frame_with_next(tiny, caplog):
    bad = tiny / "data/0000/000001-color.png"
    bad.write_bytes(b"not a png")
    ds = YCBVideoDataset(tiny, "train", skip_bad=True)
    assert len(ds) == 2 and ds.num_skipped == 0
    with caplog.at_level(logging.WARNING, logger="posecnn_core.datasets.ycb"):
        f = ds[0]
    assert f.frame_id == "0000/000002"
    assert list(ds.bad_frames) == ["0000/000001"] and str(bad) in ds.bad_frames["0000/000001"]
    assert "0000/000001" in caplog.text
    ds2 = YCBVideoDataset(tiny, "train", skip_bad=True)
    assert list(ds2.scan()) == ["0000/000001"]


def test_missing_split_and_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="image_sets/val.txt"):
        read_frame_list(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        YCBVideoDataset(tmp_path / "nowhere")


def test_split_file_at_root_and_explicit_ids(tiny):
    (tiny / "val.txt").write_text("0001/000001\n\n")
    assert YCBVideoDataset(tiny, "val").frame_ids == ["0001/000001"]
    ds = YCBVideoDataset(tiny, frame_ids=["0000/000001"], load_depth=False)
    assert ds[0].depth is None


@pytest.mark.skipif(not osmesa_available(), reason="pyrender/OSMesa not installed")
def test_reads_generated_dataset(tmp_path):
    from posecnn_core.synth import SceneConfig, generate_dataset
    from posecnn_core.targets import targets_from_frame

    cfg = SceneConfig(width=64, height=48, min_objects=3, max_objects=5)
    generate_dataset(REPO / "config/objects/demo.yaml", tmp_path, 3, seed=2, config=cfg,
                     test_fraction=0.0, progress=False)
    ds = YCBVideoDataset(tmp_path, "train")
    assert len(ds) == 3 and ds.class_names[1:] == ["bottle", "bread", "can", "cereal", "lemon", "milk"]
    for f in (ds[i] for i in range(3)):
        assert f.instance.max() == f.num_objects
        obj = f.instance > 0
        assert np.all((f.depth > 0) == obj)
        # rendered surface depth is near each object's centre depth (objects are < 10 cm)
        for k in range(f.num_objects):
            z = f.depth[f.instance == k + 1]
            assert np.all(np.abs(z - f.poses[k, 2, 3]) < 0.1)
        tg = targets_from_frame(f, num_classes=7)
        assert tg.vertex_weights.sum() == 3 * obj.sum()
