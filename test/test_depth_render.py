"""The CPU depth rasteriser of the tests and benchmarks (test/_depth_render.py)."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from _depth_render import render_depth, render_scene

K = np.array([[500.0, 0.0, 80.3], [0.0, 510.0, 60.7], [0.0, 0.0, 1.0]])
H, W = 120, 160


def test_tilted_plane_depth_is_exact():
    # A square through (0, 0, 1) with normal n; every hit pixel's depth is the ray/plane intersection's Z.
    n = np.array([0.3, -0.2, -1.0])
    n /= np.linalg.norm(n)
    a = np.cross(n, [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    c = np.array([0.0, 0.0, 1.0])
    verts = np.array([c - 0.1 * a - 0.1 * b, c + 0.1 * a - 0.1 * b, c + 0.1 * a + 0.1 * b, c - 0.1 * a + 0.1 * b])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    depth = render_depth(verts, faces, K, np.eye(3), np.zeros(3), H, W)
    rows, cols = np.nonzero(depth)
    assert len(rows) > 2000
    ray = np.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], np.ones(len(rows))], 1)
    expected = (n @ c) / (ray @ n)
    np.testing.assert_allclose(depth[rows, cols], expected, rtol=1e-9)


def test_box_front_face_coverage_and_depth():
    box = trimesh.creation.box(extents=(0.1, 0.08, 0.05))
    t = np.array([0.01, -0.02, 0.6])
    depth = render_depth(box.vertices, box.faces, K, np.eye(3), t, H, W)
    z = t[2] - 0.025
    u0, u1 = K[0, 0] * (t[0] - 0.05) / z + K[0, 2], K[0, 0] * (t[0] + 0.05) / z + K[0, 2]
    v0, v1 = K[1, 1] * (t[1] - 0.04) / z + K[1, 2], K[1, 1] * (t[1] + 0.04) / z + K[1, 2]
    cols = np.arange(W)
    rows = np.arange(H)
    inside = ((rows >= v0) & (rows <= v1))[:, None] & ((cols >= u0) & (cols <= u1))[None, :]
    np.testing.assert_array_equal(depth > 0, inside)
    np.testing.assert_allclose(depth[inside], z, rtol=1e-12)


def test_scene_occlusion_and_instances():
    box = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    small = trimesh.creation.box(extents=(0.04, 0.04, 0.04))
    near = (small.vertices, small.faces, np.eye(3), np.array([0.0, 0.0, 0.5]))
    far = (box.vertices, box.faces, np.eye(3), np.array([0.03, 0.0, 0.9]))
    depth, inst = render_scene([far, near], K, H, W)
    r, c = int(round(K[1, 2])), int(round(K[0, 2]))
    assert inst[r, c] == 1 and depth[r, c] == pytest.approx(0.48)
    assert inst[0, 0] == -1 and depth[0, 0] == 0.0
    assert set(np.unique(inst)) == {-1, 0, 1}
    assert np.all((depth > 0) == (inst >= 0))
    # The far box alone covers the pixels the near one hides.
    depth_far = render_depth(*far[:2], K, far[2], far[3], H, W)
    hidden = (inst == 1) & (depth_far > 0)
    assert hidden.sum() > 100 and np.all(depth[hidden] < depth_far[hidden])


def test_behind_camera_and_errors():
    box = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    assert not render_depth(box.vertices, box.faces, K, np.eye(3), [0, 0, -1.0], H, W).any()
    with pytest.raises(ValueError, match="faces"):
        render_depth(box.vertices, box.faces[:, :2], K, np.eye(3), [0, 0, 1.0], H, W)
    with pytest.raises(ValueError, match="outside"):
        render_depth(box.vertices, box.faces + 100, K, np.eye(3), [0, 0, 1.0], H, W)
    with pytest.raises(ValueError, match="K"):
        render_depth(box.vertices, box.faces, np.eye(4), np.eye(3), [0, 0, 1.0], H, W)
    with pytest.raises(ValueError, match="height and width"):
        render_depth(box.vertices, box.faces, K, np.eye(3), [0, 0, 1.0], 0, W)
