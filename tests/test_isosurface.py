"""Marching cubes on an analytic sphere: vertex radius, outward faces, world coordinates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from humanref_cli.geometry.isosurface import extract_mesh, sample_grid


def sphere(centre, radius):
    c = torch.tensor(centre)
    return lambda x: (x - c).norm(dim=-1) - radius


def test_sphere_mesh_radius_orientation_volume():
    centre, radius = (0.2, -0.1, 0.15), 0.5
    verts, faces = extract_mesh(sphere(centre, radius), resolution=64, chunk=5000)
    assert verts.dtype == np.float32 and faces.dtype == np.int64 and len(faces) > 1000
    dist = np.linalg.norm(verts - np.array(centre), axis=1)
    assert np.abs(dist - radius).max() < 2e-3
    mesh = trimesh.Trimesh(verts, faces, process=False)
    assert mesh.is_watertight
    outward = ((mesh.triangles_center - np.array(centre)) * mesh.face_normals).sum(1)
    assert (outward > 0).all()
    assert abs(mesh.volume - 4 / 3 * math.pi * radius**3) / (4 / 3 * math.pi * radius**3) < 0.01


def test_custom_bbox_and_grid_indexing():
    bbox = ((-0.5, -0.4, -0.3), (0.7, 0.6, 0.5))
    verts, faces = extract_mesh(sphere((0.1, 0.1, 0.1), 0.25), resolution=48, bbox=bbox)
    np.testing.assert_allclose(verts.mean(0), [0.1, 0.1, 0.1], atol=5e-3)
    # sample_grid is indexed (x, y, z) on the bbox lattice
    values = sample_grid(lambda x: x[:, 0] + 10 * x[:, 1] + 100 * x[:, 2], resolution=5, bbox=bbox, chunk=7)
    assert values[4, 0, 0] == pytest.approx(0.7 - 4 - 30, abs=1e-5)
    assert values[0, 0, 4] == pytest.approx(-0.5 - 4 + 50, abs=1e-5)


def test_no_surface_gives_empty_mesh():
    verts, faces = extract_mesh(lambda x: x.norm(dim=-1) + 1.0, resolution=16)
    assert verts.shape == (0, 3) and faces.shape == (0, 3)


def two_spheres(scale=1.0):
    """A body-like union of a big and a small sphere, its slope ``scale`` (1: a true distance field)."""
    a, b = sphere((0.1, -0.2, 0.05), 0.45), sphere((-0.3, 0.45, 0.2), 0.12)
    return lambda x: scale * torch.minimum(a(x), b(x))


@pytest.mark.parametrize("level", [0.0, 0.004])
def test_reading_only_near_the_level_set_gives_the_same_mesh(level):
    """The narrow band reads a fraction of the lattice (exactly at every crossed cell's corners) and the
    mesh is the full lattice's, bit for bit, on a non-cubic box and a resolution not a multiple of 8."""
    from humanref_cli.geometry.narrow_band import sample_near_level

    bbox = ((-1.0, -0.9, -0.8), (1.0, 1.1, 0.9))
    full = extract_mesh(two_spheres(), resolution=90, bbox=bbox, level=level, lipschitz=None)
    band = extract_mesh(two_spheres(), resolution=90, bbox=bbox, level=level)
    assert len(full[1]) > 1000
    np.testing.assert_array_equal(full[0], band[0])
    np.testing.assert_array_equal(full[1], band[1])
    values, evaluated, repairs = sample_near_level(two_spheres(), 90, bbox, level)
    exact = sample_grid(two_spheres(), 90, bbox)
    assert evaluated < 0.35 and repairs == 0 and ((values > level) == (exact > level)).all()


def test_a_field_steeper_than_assumed_is_followed_into_the_skipped_blocks():
    """Slope 10 breaks the certificate (lipschitz 2): blocks the surface reaches are evaluated on
    demand until no crossed cell has a skipped corner, and the mesh is still the full lattice's."""
    from humanref_cli.geometry.narrow_band import sample_near_level

    steep = two_spheres(scale=10.0)
    full = extract_mesh(steep, resolution=64, lipschitz=None)
    band = extract_mesh(steep, resolution=64)
    np.testing.assert_array_equal(full[0], band[0])
    np.testing.assert_array_equal(full[1], band[1])
    # the centres alone certified blocks the surface crosses: the repair rounds did the work
    bbox = ((-1.0,) * 3, (1.0,) * 3)
    assert sample_near_level(steep, 64, bbox).repairs > 0
    assert sample_near_level(steep, 64, bbox, lipschitz=20.0).repairs == 0  # a bound that holds


def test_a_surface_between_certified_blocks_only_is_still_found():
    """So steep (slope 100) that every block is certified: the crossed cells between blocks of
    opposite sides start the repair, which finds the whole surface."""
    from humanref_cli.geometry.narrow_band import sample_near_level

    steep = two_spheres(scale=100.0)
    full = extract_mesh(steep, resolution=48, lipschitz=None)
    band = extract_mesh(steep, resolution=48)
    assert len(full[1]) > 100
    np.testing.assert_array_equal(full[1], band[1])
    assert sample_near_level(steep, 48, ((-1.0,) * 3, (1.0,) * 3)).repairs > 0
