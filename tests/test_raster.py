"""The moderngl rasteriser against closed-form shapes and the camera convention of camera.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from humanref_cli.render.camera import camera_to_world, orthographic_rays, world_to_pixel
from humanref_cli.render.raster import MeshRasterizer, vertex_normals

RES = 128
RADIUS = 0.6


@pytest.fixture(scope="module")
def rasterizer():
    with MeshRasterizer(RES, RES) as r:
        yield r


@pytest.fixture(scope="module")
def sphere():
    return trimesh.creation.icosphere(subdivisions=4, radius=RADIUS)


def _plane_coords(res: int):
    j, i = np.mgrid[0:res, 0:res]
    x = (i + 0.5 - res / 2) * 2 / res
    y = -(j + 0.5 - res / 2) * 2 / res
    return x, y


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("azimuth", [0.0, 180.0, 63.0])
def test_sphere_mask_is_the_disc(rasterizer, sphere, azimuth):
    x, y = _plane_coords(RES)
    disc = x**2 + y**2 < RADIUS**2
    mask = rasterizer.mask(sphere.vertices, sphere.faces, camera_to_world(azimuth, 0.0))
    assert mask.shape == (RES, RES) and mask.dtype == np.float32
    assert _iou(mask >= 0.5, disc) > 0.98


def test_supersampled_mask_is_soft_at_the_edge(sphere):
    with MeshRasterizer(RES, RES, supersample=3) as r:
        mask = r.mask(sphere.vertices, sphere.faces, camera_to_world(0.0, 0.0))
    x, y = _plane_coords(RES)
    assert _iou(mask >= 0.5, x**2 + y**2 < RADIUS**2) > 0.98
    assert ((mask > 0.05) & (mask < 0.95)).sum() > 50  # anti-aliased rim
    assert mask.min() == 0.0 and mask.max() == 1.0


@pytest.mark.parametrize("azimuth", [0.0, 180.0])
def test_sphere_normals_are_analytic(rasterizer, sphere, azimuth):
    c2w = camera_to_world(azimuth, 0.0)
    normals = rasterizer.normals(sphere.vertices, sphere.faces, c2w)
    x, y = _plane_coords(RES)
    inside = x**2 + y**2 < (0.95 * RADIUS) ** 2
    right, up, back = (c2w[:3, k].numpy() for k in range(3))
    z = np.sqrt(np.clip(RADIUS**2 - x**2 - y**2, 0, None))
    analytic = (x[..., None] * right + y[..., None] * up + z[..., None] * back) / RADIUS
    cos = (normals[inside] * analytic[inside]).sum(-1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).mean() < 1.5
    np.testing.assert_allclose(np.linalg.norm(normals[inside], axis=-1), 1.0, atol=1e-5)
    assert np.all(normals[~(x**2 + y**2 < (1.05 * RADIUS) ** 2)] == 0.0)


def test_vertex_projects_onto_its_face_id_and_depth(rasterizer, sphere):
    c2w = camera_to_world(30.0, 20.0)
    ids, depth = rasterizer.face_ids(sphere.vertices, sphere.faces, c2w)
    verts = torch.as_tensor(sphere.vertices, dtype=torch.float32)
    uv, vdepth = world_to_pixel(verts, c2w, RES, RES)
    origins, dirs = orthographic_rays(c2w, RES, RES)
    facing = sphere.vertex_normals @ c2w[:3, 2].numpy() > 0.3
    checked = 0
    for k in np.flatnonzero(facing)[::7]:
        u, v = uv[k].numpy()
        i, j = int(np.floor(u)), int(np.floor(v))
        adjacent = set(sphere.vertex_faces[k][sphere.vertex_faces[k] >= 0] + 1)
        assert ids[j, i] in adjacent
        assert abs(depth[j, i] - float(vdepth[k])) < 0.05
        # exact: the depth of the ray through the pixel centre hitting the visible face's plane
        a, b, c = sphere.vertices[sphere.faces[ids[j, i] - 1]]
        n = np.cross(b - a, c - a)
        o, d = origins[j, i].numpy(), dirs[j, i].numpy()
        assert abs(depth[j, i] - n @ (a - o) / (n @ d)) < 1e-3
        checked += 1
    assert checked > 50
    assert ids[0, 0] == 0 and depth[0, 0] == 0.0


def test_front_and_back_silhouettes_are_mirrors(rasterizer):
    # an off-centre, asymmetric box: the back silhouette is the front one flipped left-right
    box = trimesh.creation.box(extents=(0.3, 0.5, 0.9))
    box.apply_translation((0.1, 0.3, -0.2))
    front = rasterizer.mask(box.vertices, box.faces, camera_to_world(0.0, 0.0)) > 0.5
    back = rasterizer.mask(box.vertices, box.faces, camera_to_world(180.0, 0.0)) > 0.5
    np.testing.assert_array_equal(front, back[:, ::-1])
    # front camera: world +y is image right, +z is image up
    cols = np.flatnonzero(front.any(0))
    rows = np.flatnonzero(front.any(1))

    def covered(lo, hi):  # pixels whose centre i + 0.5 lies in [lo, hi]
        return int(np.ceil(lo - 0.5)), int(np.floor(hi - 0.5))

    assert (cols.min(), cols.max()) == covered((0.05 + 1) * RES / 2, (0.55 + 1) * RES / 2)
    assert (rows.min(), rows.max()) == covered((1 - 0.25) * RES / 2, (1 + 0.65) * RES / 2)


def test_labels_follow_faces(rasterizer):
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    # label each triangle by the axis its normal points along: +x -> 1, other -> 2
    face_labels = np.where(box.face_normals[:, 0] > 0.5, 1, 2)
    front = rasterizer.labels(box.vertices, box.faces, face_labels, camera_to_world(0.0, 0.0))
    back = rasterizer.labels(box.vertices, box.faces, face_labels, camera_to_world(180.0, 0.0))
    assert set(np.unique(front)) == {0, 1} and set(np.unique(back)) == {0, 2}
    assert (front == 1).sum() == (RES // 2) ** 2


def test_colors_and_shading(rasterizer, sphere):
    c2w = camera_to_world(0.0, 0.0)
    colors = np.where(sphere.vertices[:, 1:2] > 0, [1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    rgb = rasterizer.colors(sphere.vertices, sphere.faces, colors, c2w, background=(0.2, 0.3, 0.4))
    assert rgb.shape == (RES, RES, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb[0, 0], (0.2, 0.3, 0.4), atol=1e-6)
    np.testing.assert_allclose(rgb[RES // 2, RES - 30], (1, 0, 0), atol=1e-6)  # +y side on image right
    np.testing.assert_allclose(rgb[RES // 2, 30], (0, 0, 1), atol=1e-6)
    light = np.array([1.0, 0.0, 0.0])
    shaded, alpha = rasterizer.shaded(
        sphere.vertices,
        sphere.faces,
        np.full((len(sphere.vertices), 3), 0.8),
        c2w,
        light_dir=light,
        ambient=0.25,
    )
    x, y = _plane_coords(RES)
    inside = x**2 + y**2 < (0.9 * RADIUS) ** 2
    nx = np.sqrt(np.clip(RADIUS**2 - x**2 - y**2, 0, None)) / RADIUS
    expected = 0.8 * (0.25 + 0.75 * nx)
    np.testing.assert_allclose(shaded[..., 0][inside], expected[inside], atol=0.01)
    np.testing.assert_array_equal(alpha >= 0.5, rasterizer.mask(sphere.vertices, sphere.faces, c2w) >= 0.5)


def test_renders_are_bit_stable(sphere):
    c2w = camera_to_world(45.0, 10.0)
    outs = []
    for _ in range(2):
        with MeshRasterizer(RES, RES, supersample=2) as r:
            rgb, _ = r.shaded(sphere.vertices, sphere.faces, np.full((len(sphere.vertices), 3), 0.7), c2w)
            outs.append((rgb, r.normals(sphere.vertices, sphere.faces, c2w)))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_vertex_normals_point_outwards(sphere):
    n = vertex_normals(sphere.vertices, sphere.faces)
    radial = sphere.vertices / np.linalg.norm(sphere.vertices, axis=1, keepdims=True)
    assert (n * radial).sum(1).min() > 0.99
