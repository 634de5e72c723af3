"""Metrics against known answers: closest points, sphere distances, height scaling, PSNR/SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from humanref_cli.eval.metrics import (
    align_depth,
    closest_point_on_triangles,
    geometry_metrics,
    height_scale,
    point_to_surface,
    psnr,
    sample_surface,
    ssim,
)


def test_closest_point_matches_dense_search():
    rng = np.random.default_rng(0)
    n = 400
    a, b, c = rng.normal(size=(3, n, 3))
    p = rng.normal(size=(n, 3)) * 2
    q = closest_point_on_triangles(p, a, b, c)
    # Dense barycentric grid on each triangle: the exact answer can only be closer.
    u, v = np.meshgrid(np.linspace(0, 1, 201), np.linspace(0, 1, 201))
    keep = u + v <= 1
    u, v = u[keep], v[keep]
    grid = a[:, None] + u[None, :, None] * (b - a)[:, None] + v[None, :, None] * (c - a)[:, None]
    dense = np.linalg.norm(grid - p[:, None], axis=-1).min(axis=1)
    exact = np.linalg.norm(q - p, axis=1)
    assert np.all(exact <= dense + 1e-9)
    assert np.allclose(exact, dense, atol=2e-2)


def test_point_to_surface_on_a_sphere():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    rng = np.random.default_rng(1)
    dirs = rng.normal(size=(300, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    radii = rng.uniform(0.55, 0.8, size=300)
    d, normals = point_to_surface(dirs * radii[:, None], sphere.vertices, sphere.faces)
    assert np.allclose(d, radii - 0.5, atol=2e-3)  # icosphere level 4 is within ~1e-3 of the sphere
    assert np.mean(np.abs(np.sum(normals * dirs, axis=1))) > 0.99


def test_sample_surface_is_uniform_by_area():
    box = trimesh.creation.box(extents=(1.0, 2.0, 4.0))
    s = sample_surface(box.vertices, box.faces, 60000, seed=0)
    # Faces +-z have area 2 each out of a total 28: 1/7 of the samples.
    frac = np.mean(np.abs(s.normals[:, 2]) > 0.99)
    assert frac == pytest.approx(4 / 28, abs=0.01)
    assert np.allclose(np.abs(s.points).max(axis=0), (0.5, 1.0, 2.0), atol=1e-6)


def test_geometry_metrics_of_two_concentric_spheres_in_cm():
    # GT: a unit-tall sphere (diameter 1) -> scaled to 1.75 m; prediction 2% bigger in radius.
    gt = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    pred = trimesh.creation.icosphere(subdivisions=4, radius=0.51)
    assert height_scale(gt.vertices) == pytest.approx(1.75, rel=1e-3)
    m = geometry_metrics(pred.vertices, pred.faces, gt.vertices, gt.faces, n_samples=4000)
    expected_cm = 0.01 * 1.75 * 100  # 1 cm radius gap at unit height -> 1.75 cm
    assert m["p2s_cm"] == pytest.approx(expected_cm, rel=0.05)
    assert m["chamfer_cm"] == pytest.approx(expected_cm, rel=0.05)
    assert m["normal_consistency"] > 0.99
    same = geometry_metrics(gt.vertices, gt.faces, gt.vertices, gt.faces, n_samples=2000)
    assert same["chamfer_cm"] < 1e-6 and same["normal_consistency"] == pytest.approx(1.0, abs=1e-6)


def test_align_depth_removes_a_depth_offset_but_not_a_misplaced_limb():
    """A body known only up to its distance from the camera: moving the prediction along x by the
    difference of the surfaces' mean depths undoes an offset, whatever the depth extents are."""
    torso = trimesh.creation.box(extents=(0.3, 0.4, 1.0))
    limb = trimesh.creation.box(extents=(0.4, 0.1, 0.1))
    limb.apply_translation((0.3, 0.0, -0.3))  # a foot sticking out towards the camera
    gt = trimesh.util.concatenate([torso, limb])
    shifted = align_depth(gt.vertices + [0.2, 0.0, 0.0], gt.faces, gt.vertices, gt.faces)
    np.testing.assert_allclose(shifted, gt.vertices, atol=3e-3)
    # the same body with the foot pointing away instead: only the foot is wrong after alignment,
    # (by its share of the surface), while centring the depth extents would push the torso 0.35 forward
    moved = limb.copy()
    moved.apply_translation((-0.6, 0.0, 0.0))
    pred = trimesh.util.concatenate([torso, moved])
    aligned = align_depth(pred.vertices, pred.faces, gt.vertices, gt.faces)
    torso_shift = aligned[: len(torso.vertices), 0].mean() - torso.vertices[:, 0].mean()
    area = limb.area / (limb.area + torso.area)
    assert torso_shift == pytest.approx(0.6 * area, abs=3e-3)  # the foot's share of the mean depth
    assert torso_shift < 0.1


def test_psnr_and_ssim_known_values():
    a = np.zeros((16, 16, 3))
    b = np.full((16, 16, 3), 0.1)
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, a) == float("inf")
    assert ssim(a + 0.5, a + 0.5) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noisy = np.clip(a + 0.5 + rng.normal(scale=0.2, size=a.shape), 0, 1)
    assert ssim(noisy, a + 0.5) < 0.5
