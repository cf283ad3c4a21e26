"""Camera inputs without a node: the encodings cameras publish, image_transport's compressed and compressedDepth
formats, rectification with CameraInfo (known pixels), the frame decoder and the diagnostics levels."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

import _node_helpers as helpers  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from posecnn_core.camera_model import CameraModel, Rectifier, load_camera_yaml  # noqa: E402
from posecnn_ros import compressed as cz  # noqa: E402
from posecnn_ros import diagnostics as dg  # noqa: E402
from posecnn_ros import image_conversion as ic  # noqa: E402
from posecnn_ros.frame_input import FrameDecoder, decode_color  # noqa: E402

H, W = 6, 8


def _msg(arr: np.ndarray, encoding: str, bigendian: bool = False, pad: int = 0) -> Image:
    h, w = arr.shape[:2]
    rows = np.ascontiguousarray(arr).reshape(h, -1).view(np.uint8).reshape(h, -1)
    data = np.zeros((h, rows.shape[1] + pad), np.uint8)
    data[:, : rows.shape[1]] = rows
    return Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=data.shape[1],
                 data=data.tobytes())


def _yuv601(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """BT.601 limited-range Y, U (Cb), V (Cr) of an RGB colour (what YUV 4:2:2 cameras send)."""
    r, g, b = (c / 255.0 for c in rgb)
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return y, u, v


# ------------------------------------------------------------------------------------------------ encodings
@pytest.mark.parametrize("encoding,order", [("uyvy", "UYVY"), ("yuv422", "UYVY"), ("yuyv", "YUYV"),
                                            ("yuv422_yuy2", "YUYV")])
def test_yuv422_flat_colours(encoding, order) -> None:
    for colour in [(200, 30, 60), (20, 180, 90), (128, 128, 128), (10, 40, 220)]:
        y, u, v = (int(round(c)) for c in _yuv601(colour))
        quad = {"UYVY": [u, y, v, y], "YUYV": [y, u, y, v]}[order]
        arr = np.tile(np.array(quad, np.uint8), (H, W // 2)).reshape(H, W, 2)
        out = ic.image_to_rgb(_msg(arr, encoding, pad=3))
        assert out.shape == (H, W, 3) and out.dtype == np.uint8
        np.testing.assert_allclose(out.reshape(-1, 3), np.tile(colour, (H * W, 1)), atol=3, err_msg=encoding)


def test_yuv422_luma_per_pixel_and_odd_width() -> None:
    # two pixels of a pair share U, V but have their own Y: a grey ramp keeps its per-pixel steps
    ys = np.array([30, 90, 150, 210], np.uint8)
    arr = np.zeros((1, 4, 2), np.uint8)
    arr[0, :, 0] = 128                      # U, V (alternating, both neutral)
    arr[0, :, 1] = ys                       # UYVY: Y is the second byte of each pixel
    out = ic.image_to_rgb(_msg(arr, "uyvy"))
    expected = np.clip(np.round((ys.astype(float) - 16) * 255 / 219), 0, 255)
    np.testing.assert_allclose(out[0, :, 0], expected, atol=2)
    odd = Image(height=1, width=3, encoding="yuyv", step=6, data=bytes(6))
    with pytest.raises(ic.ImageError) as err:
        ic.image_to_rgb(odd)
    assert err.value.cause == "odd_width"


def _bayer(pattern: str, rgb: tuple[int, int, int], dtype: str = "u1", h: int = 8, w: int = 10) -> np.ndarray:
    mosaic = np.zeros((h, w), np.dtype(dtype))
    idx = {"r": 0, "g": 1, "b": 2}
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = rgb[idx[pattern[2 * dy + dx]]]
    return mosaic


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_mosaics_of_a_known_colour(pattern) -> None:
    colour = (200, 60, 15)
    out = ic.image_to_rgb(_msg(_bayer(pattern, colour), f"bayer_{pattern}8"))
    assert out.shape == (8, 10, 3)
    np.testing.assert_array_equal(out[2:-2, 2:-2].reshape(-1, 3), np.tile(colour, (4 * 6, 1)))
    # 16-bit mosaic, big endian, scaled to 8 bit
    big = _bayer(pattern, tuple(c * 257 for c in colour), ">u2")
    out16 = ic.image_to_rgb(_msg(big, f"bayer_{pattern}16", bigendian=True))
    np.testing.assert_array_equal(out16[2:-2, 2:-2].reshape(-1, 3), np.tile(colour, (4 * 6, 1)))


def test_bayer_pattern_is_not_confused() -> None:
    # a red scene read with the wrong pattern would come out blue or green
    out = ic.image_to_rgb(_msg(_bayer("rggb", (250, 0, 0)), "bayer_rggb8"))
    assert out[4, 4, 0] == 250 and out[4, 4, 1] == 0 and out[4, 4, 2] == 0


def test_sixteen_bit_colour_scaled_and_byte_order_honoured() -> None:
    rng = np.random.default_rng(2)
    rgb16 = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    expected = np.round(rgb16 / 257.0).astype(np.uint8)
    alpha = np.full((H, W, 1), 12345, np.uint16)
    cases = {"rgb16": rgb16, "bgr16": rgb16[:, :, ::-1], "rgba16": np.concatenate([rgb16, alpha], 2),
             "bgra16": np.concatenate([rgb16[:, :, ::-1], alpha], 2)}
    for enc, arr in cases.items():
        for big in (False, True):
            stored = np.ascontiguousarray(arr).astype(">u2" if big else "<u2")
            out = ic.image_to_rgb(_msg(stored, enc, bigendian=big, pad=2))
            np.testing.assert_array_equal(out, expected, err_msg=f"{enc} big={big}")
    assert ic.to_uint8(np.array([0, 128, 257, 65535], np.uint16)).tolist() == [0, 0, 1, 255]
    mono = ic.image_to_rgb(_msg(rgb16[:, :, :1].astype(">u2"), "mono16", bigendian=True))
    np.testing.assert_array_equal(mono, np.repeat(expected[:, :, :1], 3, 2))


# ------------------------------------------------------------------------------------------------ compressed
def _compressed(fmt: str, data: bytes) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = data
    return msg


def test_compressed_formats_as_image_transport_writes_them() -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    png_bgr = cv2.imencode(".png", bgr)[1].tobytes()
    # PNG is lossless: exact pixels for every way the channel order can be declared
    assert np.array_equal(cz.compressed_to_rgb(_compressed("bgr8; png compressed bgr8", png_bgr)), rgb)
    assert np.array_equal(cz.compressed_to_rgb(_compressed("rgb8; png compressed bgr8", png_bgr)), rgb)
    assert np.array_equal(cz.compressed_to_rgb(_compressed("png", png_bgr)), rgb)
    png_rgb_order = cv2.imencode(".png", rgb)[1].tobytes()  # channels stored in RGB order
    assert np.array_equal(cz.compressed_to_rgb(_compressed("rgb8; png compressed rgb8", png_rgb_order)), rgb)
    bgra = np.concatenate([bgr, np.full((24, 32, 1), 7, np.uint8)], 2)
    png_bgra = cv2.imencode(".png", bgra)[1].tobytes()
    assert np.array_equal(cz.compressed_to_rgb(_compressed("bgra8; png compressed bgra8", png_bgra)), rgb)
    png16 = cv2.imencode(".png", bgr.astype(np.uint16) * 257)[1].tobytes()
    assert np.array_equal(cz.compressed_to_rgb(_compressed("rgb16; png compressed bgr16", png16)), rgb)
    mono = cv2.imencode(".png", rgb[:, :, 1])[1].tobytes()
    assert np.array_equal(cz.compressed_to_rgb(_compressed("mono8; png compressed ", mono)),
                          np.repeat(rgb[:, :, 1:2], 3, 2))
    # JPEG of a flat colour: right channel order within JPEG's error
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[:] = (220, 40, 90)
    fmt, data = cz.encode_compressed(flat, "jpeg", quality=95)
    assert fmt == "rgb8; jpeg compressed bgr8"
    for declared in (fmt, "jpeg", "bgr8; jpeg compressed bgr8"):
        out = cz.compressed_to_rgb(_compressed(declared, data))
        np.testing.assert_allclose(out.reshape(-1, 3).mean(0), (220, 40, 90), atol=3)


def test_bad_compressed_data_names_the_problem() -> None:
    good = cz.encode_compressed(np.zeros((8, 8, 3), np.uint8), "jpeg")[1]
    cases = [(_compressed("rgb8; jpeg compressed bgr8", b""), "compressed_empty"),
             (_compressed("rgb8; jpeg compressed bgr8", b"not a jpeg at all"), "compressed_decode"),
             (_compressed("rgb8; jpeg compressed bgr8", good[: len(good) // 3]), "compressed_decode"),
             (_compressed("16UC1; compressedDepth png", good), "compressed_format")]
    for msg, cause in cases:
        with pytest.raises(ic.ImageError) as err:
            cz.compressed_to_rgb(msg)
        assert err.value.cause == cause and "format" in str(err.value), (cause, str(err.value))


def test_compressed_depth_16uc1_and_32fc1() -> None:
    raw = np.array([[0, 500, 1000], [2500, 65535, 7]], np.uint16)
    fmt, data = cz.encode_compressed_depth(raw)
    assert fmt == "16UC1; compressedDepth png" and len(data) > 12
    assert struct.unpack("<iff", data[:12]) == (0, 0.0, 0.0)
    out = cz.compressed_depth_to_metres(_compressed(fmt, data), 0.001)
    kept = np.where(raw > 10000, 0, raw)  # the publisher's max-depth filter (10 m in millimetres)
    np.testing.assert_allclose(out, kept * 0.001, rtol=1e-6)
    older = cz.compressed_depth_to_metres(_compressed("16UC1; compressedDepth", data), 0.001)
    np.testing.assert_array_equal(older, out)

    metres = np.array([[0.0, 0.4, 1.0], [2.5, np.nan, 12.0]], np.float32)
    fmt, data = cz.encode_compressed_depth(metres, depth_max=10.0, depth_quantization=100.0)
    assert fmt == "32FC1; compressedDepth png"
    kind, quant_a, quant_b = struct.unpack("<iff", data[:12])
    assert kind == 0 and quant_a == pytest.approx(100 * 101) and quant_b == pytest.approx(1 - 10100 / 10.0)
    out = cz.compressed_depth_to_metres(_compressed(fmt, data), 0.001)
    # inverse-depth quantisation: error grows with depth (about z^2 / A per step)
    np.testing.assert_allclose(out[0, 1:], [0.4, 1.0], atol=2e-4)
    assert out[1, 0] == pytest.approx(2.5, abs=1e-3)
    assert out[0, 0] == 0 and out[1, 1] == 0 and out[1, 2] == 0  # no reading, NaN, beyond depth_max

    with pytest.raises(ic.ImageError) as err:
        cz.compressed_depth_to_metres(_compressed("16UC1; compressedDepth rvl", data), 0.001)
    assert err.value.cause == "compressed_depth_format" and "rvl" in str(err.value)
    with pytest.raises(ic.ImageError) as err:
        cz.compressed_depth_to_metres(_compressed(fmt, data[:10]), 0.001)
    assert err.value.cause == "compressed_empty"
    colour = cz.encode_compressed(np.zeros((4, 4, 3), np.uint8), "png")[1]
    with pytest.raises(ic.ImageError) as err:
        cz.compressed_depth_to_metres(_compressed("16UC1; compressedDepth png", bytes(12) + colour), 0.001)
    assert err.value.cause == "compressed_depth_png"


# ------------------------------------------------------------------------------------------------ rectification
K_RAW = np.array([[150.0, 0, 80.0], [0, 152.0, 60.0], [0, 0, 1]])
P_RECT = np.array([[130.0, 0, 78.0, 0], [0, 130.0, 62.0, 0], [0, 0, 1, 0]])
POINTS = np.array([[0.1, 0.05, 1.0], [-0.2, -0.1, 1.0], [0.0, 0.0, 1.0], [0.25, -0.15, 1.0], [-0.15, 0.18, 1.2]])
DISTORTIONS = {
    "plumb_bob": [-0.25, 0.08, 0.001, -0.002, 0.0],
    "rational_polynomial": [-0.2, 0.05, 0.001, 0.001, 0.0, 0.01, 0.0, 0.0],
    "equidistant": [0.05, -0.02, 0.01, 0.0],
}


def _distorted_projection(model: str, D: list[float], pts: np.ndarray) -> np.ndarray:
    if model == "equidistant":
        uv, _ = cv2.fisheye.projectPoints(pts[None].astype(np.float64), np.zeros(3), np.zeros(3), K_RAW,
                                          np.array(D))
    else:
        uv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K_RAW, np.array(D))
    return uv.reshape(-1, 2)


def _blobs(centres: np.ndarray, h: int = 120, w: int = 160) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w), np.float64)
    for u, v in centres:
        img += np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 1.5 ** 2))
    return (np.clip(img, 0, 1) * 250).astype(np.uint8)


def _centroid(img: np.ndarray, u: float, v: float, r: int = 5) -> tuple[float, float]:
    x0, y0 = int(round(u)), int(round(v))
    win = img[y0 - r:y0 + r + 1, x0 - r:x0 + r + 1].astype(np.float64)
    ys, xs = np.mgrid[y0 - r:y0 + r + 1, x0 - r:x0 + r + 1]
    return float((win * xs).sum() / win.sum()), float((win * ys).sum() / win.sum())


@pytest.mark.parametrize("model", list(DISTORTIONS))
def test_rectification_moves_distorted_points_to_their_rectified_projection(model) -> None:
    D = DISTORTIONS[model]
    raw = _blobs(_distorted_projection(model, D, POINTS))
    rect = Rectifier(CameraModel(160, 120, K_RAW, D, np.eye(3), P_RECT, model))
    out = rect.rectify_image(np.repeat(raw[:, :, None], 3, 2))
    np.testing.assert_array_equal(rect.K, P_RECT[:, :3])
    expected = POINTS @ P_RECT[:, :3].T
    expected = expected[:, :2] / expected[:, 2:]
    for (u, v), (du, dv) in zip(expected, _distorted_projection(model, D, POINTS)):
        got = _centroid(out[:, :, 0], u, v)
        assert got == pytest.approx((u, v), abs=0.15), (model, (u, v), got)
        if np.hypot(du - u, dv - v) > 2:  # the distortion moved this point: the raw image has it elsewhere
            assert raw[int(round(v)), int(round(u))] < 0.2 * 250


def test_depth_is_rectified_without_mixing_values() -> None:
    D = DISTORTIONS["plumb_bob"]
    depth = np.full((120, 160), 0.8, np.float32)
    depth[:, 80:] = 2.0  # a step: bilinear interpolation would create in-between depths
    rect = Rectifier(CameraModel(160, 120, K_RAW, D, np.eye(3), P_RECT, "plumb_bob"))
    out = rect.rectify_depth(depth)
    assert set(np.unique(out).tolist()) <= {0.0, np.float32(0.8).item(), 2.0}
    assert (out == 2.0).any() and (out == np.float32(0.8)).any()


def test_camera_model_defaults_and_errors() -> None:
    uncalibrated = CameraModel(64, 48, K_RAW, [], np.zeros((3, 3)), np.zeros((3, 4)), "")
    assert not uncalibrated.is_distorted
    np.testing.assert_array_equal(uncalibrated.R, np.eye(3))
    np.testing.assert_array_equal(uncalibrated.rectified_K, K_RAW)
    with pytest.raises(ValueError, match="distortion model 'kannala' is not supported"):
        Rectifier(CameraModel(64, 48, K_RAW, [0.1, 0, 0, 0], distortion_model="kannala"))
    with pytest.raises(ValueError, match="non-zero terms beyond the 5th"):
        Rectifier(CameraModel(64, 48, K_RAW, [0.1, 0, 0, 0, 0, 0.2, 0, 0], distortion_model="plumb_bob"))
    with pytest.raises(ValueError, match="K has no valid focal length"):
        CameraModel(64, 48, np.zeros((3, 3)))


def test_load_camera_yaml(tmp_path) -> None:
    text = """image_width: 160
image_height: 120
camera_name: cam
camera_matrix: {rows: 3, cols: 3, data: [150, 0, 80, 0, 152, 60, 0, 0, 1]}
distortion_model: plumb_bob
distortion_coefficients: {rows: 1, cols: 5, data: [-0.25, 0.08, 0.001, -0.002, 0]}
rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}
projection_matrix: {rows: 3, cols: 4, data: [130, 0, 78, 0, 0, 130, 62, 0, 0, 0, 1, 0]}
"""
    (tmp_path / "cam.yaml").write_text(text)
    cam = load_camera_yaml(tmp_path / "cam.yaml")
    assert (cam.width, cam.height, cam.distortion_model) == (160, 120, "plumb_bob")
    np.testing.assert_array_equal(cam.K, K_RAW)
    np.testing.assert_array_equal(cam.P, P_RECT)
    assert cam.is_distorted and cam.D.tolist() == [-0.25, 0.08, 0.001, -0.002, 0]
    (tmp_path / "bad.yaml").write_text("image_width: 10\n")
    with pytest.raises(ValueError, match="bad.yaml: missing camera_matrix"):
        load_camera_yaml(tmp_path / "bad.yaml")
    (tmp_path / "short.yaml").write_text("camera_matrix: {data: [1, 2, 3]}\n")
    with pytest.raises(ValueError, match="K needs 9 values, got 3"):
        load_camera_yaml(tmp_path / "short.yaml")


# ------------------------------------------------------------------------------------------------ frame decoder
def _info(model: str = "plumb_bob", D: list[float] | None = None):
    info = helpers.make_camera_info(160, 120, k=K_RAW)
    info.distortion_model = model
    info.d = list(D if D is not None else DISTORTIONS[model])
    info.r = np.eye(3).ravel().tolist()
    info.p = P_RECT.ravel().tolist()
    return info


def test_frame_decoder_rectifies_with_p_and_warns_once_otherwise() -> None:
    warnings: list[str] = []
    decoder = FrameDecoder(warnings.append)
    raw = _blobs(_distorted_projection("plumb_bob", DISTORTIONS["plumb_bob"], POINTS))
    image = _msg(np.repeat(raw[:, :, None], 3, 2), "rgb8")
    image.header.frame_id = "cam"
    depth = _msg(np.full((120, 160), 900, np.uint16), "16UC1")
    frame = decoder.frame(image, _info(), depth, 0.001, rectify=True)
    np.testing.assert_array_equal(frame.K, P_RECT[:, :3])
    assert frame.header.frame_id == "cam" and frame.depth.dtype == np.float32
    assert set(np.unique(frame.depth).tolist()) == {0.0, (np.float32(900) * np.float32(0.001)).item()}
    u, v = POINTS[0, :2] / POINTS[0, 2] * [130, 130] + [78, 62]
    assert _centroid(frame.rgb[:, :, 0], u, v) == pytest.approx((u, v), abs=0.15)
    first = decoder._rectifier
    decoder.frame(image, _info(), None, 0.001, rectify=True)
    assert decoder._rectifier is first  # maps cached per CameraInfo
    assert warnings == []
    for _ in range(3):
        unrect = decoder.frame(image, _info(), None, 0.001, rectify=False)
    np.testing.assert_array_equal(unrect.K, K_RAW)
    np.testing.assert_array_equal(unrect.rgb, np.repeat(raw[:, :, None], 3, 2))
    assert len(warnings) == 1 and "lens distortion" in warnings[0] and "rectify" in warnings[0]
    # no distortion, P = K: nothing to do and nothing to warn about
    plain = FrameDecoder(warnings.append)
    info = _info(D=[0, 0, 0, 0, 0])
    info.p = np.hstack([K_RAW, np.zeros((3, 1))]).ravel().tolist()
    out = plain.frame(image, info, None, 0.001, rectify=True)
    np.testing.assert_array_equal(out.rgb, np.repeat(raw[:, :, None], 3, 2))
    assert len(warnings) == 1


def test_frame_decoder_compressed_inputs_and_size_checks() -> None:
    decoder = FrameDecoder(lambda text: None)
    rgb = np.zeros((120, 160, 3), np.uint8)
    rgb[:, :, 0] = 200
    fmt, data = cz.encode_compressed(rgb, "png")
    image = _compressed(fmt, data)
    image.header.frame_id = "optical"
    dfmt, ddata = cz.encode_compressed_depth(np.full((120, 160), 1500, np.uint16))
    frame = decoder.frame(image, _info(D=[0] * 5), _compressed(dfmt, ddata), 0.001, rectify=False)
    assert np.array_equal(frame.rgb, rgb) and frame.header.frame_id == "optical"
    np.testing.assert_allclose(frame.depth, 1.5)
    assert np.array_equal(decode_color(image), rgb)
    small = _compressed(*cz.encode_compressed(rgb[:60, :80], "png"))
    with pytest.raises(ic.ImageError, match="image is 80x60 but camera_info says 160x120"):
        decoder.frame(small, _info(D=[0] * 5), None, 0.001, rectify=False)
    small_depth = _compressed(*cz.encode_compressed_depth(np.ones((60, 80), np.uint16)))
    with pytest.raises(ic.ImageError, match="depth image is 80x60 but the image is 160x120"):
        decoder.frame(image, _info(D=[0] * 5), small_depth, 0.001, rectify=False)


# ------------------------------------------------------------------------------------------------ diagnostics
def test_diagnostics_levels() -> None:
    now = [100.0]
    stats = dg.FrameStats(clock=lambda: now[0])
    info = [("device", "cpu")]
    level, text, values = dg.evaluate(stats.snapshot(0, 0), None, True, "/image", info)
    assert level == dg.WARN and "no image received yet on /image" in text
    for i in range(11):  # 5 Hz, latencies 100..200 ms
        now[0] = 100.0 + 0.2 * i
        stats.received()
        stats.processed(100.0 + 10 * i)
    snap = stats.snapshot(0, 0)
    level, text, values = dg.evaluate(snap, None, True, "/image", info)
    kv = dict(values)
    assert level == dg.OK and "processing at 5.0 Hz" in text
    assert float(kv["rate (Hz)"]) == pytest.approx(5.0)
    assert float(kv["latency p50 (ms)"]) == pytest.approx(150.0)
    assert float(kv["latency p90 (ms)"]) == pytest.approx(190.0)
    assert kv["frames processed"] == "11" and kv["device"] == "cpu"
    level, text, _ = dg.evaluate(stats.snapshot(4, 1), snap, True, "/image", info)
    assert level == dg.WARN and "4 frame(s) dropped" in text and "1 frame(s) rejected" in text
    now[0] += 6.0
    level, text, _ = dg.evaluate(stats.snapshot(4, 1), stats.snapshot(4, 1), True, "/image", info)
    assert level == dg.WARN and "no image on /image for 6 s" in text
    for _ in range(dg.ERROR_AFTER_FAILURES):
        stats.received()
        stats.failed("RuntimeError: CUDA out of memory")
    level, text, _ = dg.evaluate(stats.snapshot(4, 4), None, True, "/image", info)
    assert level == dg.ERROR and "failed on the last 3 frames: RuntimeError: CUDA out of memory" in text
    assert dg.evaluate(stats.snapshot(4, 4), None, False, "/image", info)[0] == dg.OK  # inactive
    stats.processed(50.0)
    assert dg.evaluate(stats.snapshot(4, 4), stats.snapshot(4, 4), True, "/image", info)[0] == dg.OK
    msg = dg.status_message("posecnn: pose estimation", "cpu", dg.ERROR, "x", [("a", "1")])
    assert msg.level == b"\x02" and msg.values[0].key == "a" and msg.hardware_id == "cpu"
