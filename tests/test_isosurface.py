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
