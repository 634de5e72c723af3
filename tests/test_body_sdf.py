"""Body prior SDF: grid precompute against analytic and brute-force distances, sign, interpolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from humanref_cli.geometry.body_sdf import BodyPriorSDF, mesh_sdf_grid, point_triangle_distance

RES = 40


def lattice(res: int) -> np.ndarray:
    c = np.linspace(-1, 1, res)
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1)  # (R, R, R, 3)


def brute_force_distance(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    tri = torch.from_numpy(mesh.vertices[mesh.faces]).double()
    p = torch.from_numpy(points).double()
    n, f = len(p), len(tri)
    d = point_triangle_distance(
        p[:, None].expand(n, f, 3).reshape(-1, 3), tri[None].expand(n, f, 3, 3).reshape(-1, 3, 3)
    )
    return d.reshape(n, f).amin(1).numpy()


def box_sdf(x: np.ndarray, half: np.ndarray) -> np.ndarray:
    q = np.abs(x) - half
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)


def test_point_triangle_distance_regions():
    tri = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]], dtype=torch.float64).expand(4, 3, 3)
    p = torch.tensor([[0.2, 0.2, 0.5], [-1.0, -1, 0], [0.5, -2, 1], [1, 1, -1]], dtype=torch.float64)
    expected = [0.5, np.sqrt(2), np.sqrt(5), np.sqrt(0.5 + 1)]  # face, vertex, edge, hypotenuse edge
    torch.testing.assert_close(point_triangle_distance(p, tri), torch.tensor(expected, dtype=torch.float64))


def test_sphere_grid_exact_near_surface_and_signed():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.55)
    grid = mesh_sdf_grid(mesh.vertices, mesh.faces, RES)
    x = lattice(RES).reshape(-1, 3)
    values = grid.reshape(-1)
    h = 2 / (RES - 1)
    # exact (to float precision) against brute force within the two-cell band
    band = np.nonzero(np.abs(values) < 2 * h)[0][::7]
    np.testing.assert_allclose(np.abs(values[band]), brute_force_distance(mesh, x[band]), atol=1e-5)
    # everywhere: close to the analytic sphere (polyhedral + far-field error), sign always right
    analytic = np.linalg.norm(x, axis=-1) - 0.55
    assert np.abs(values - analytic).max() < 0.02
    clear = np.abs(analytic) > 0.01
    assert np.array_equal(np.sign(values[clear]), np.sign(analytic[clear]))


def test_box_grid_matches_analytic():
    half = np.array([0.35, 0.5, 0.65])
    mesh = trimesh.creation.box(extents=2 * half)
    grid = mesh_sdf_grid(mesh.vertices, mesh.faces, RES)
    exact = box_sdf(lattice(RES), half)
    h = 2 / (RES - 1)
    near = np.abs(exact) < 2 * h
    np.testing.assert_allclose(grid[near], exact[near], atol=1e-5)
    assert np.abs(grid - exact).max() < 0.03  # far field: an upper bound within a cell
    assert np.all(np.abs(grid) >= np.abs(exact) - 1e-5)  # the distance part is an upper bound
    assert ((grid < 0) == (exact < 0)).all()


def test_prior_interpolation_and_outside_box():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    prior = BodyPriorSDF.from_mesh(mesh.vertices, mesh.faces, resolution=RES)
    assert prior.resolution == RES and prior.grid.dtype == torch.float32
    torch.manual_seed(0)
    x = torch.rand(2000, 3) * 2 - 1
    analytic = x.norm(dim=-1, keepdim=True) - 0.5
    assert (prior(x) - analytic).abs().max() < 0.03
    # grid vertices are reproduced exactly
    idx = torch.tensor([[3, 17, 30], [20, 20, 20]])
    xv = idx.float() * (2 / (RES - 1)) - 1
    torch.testing.assert_close(
        prior(xv)[:, 0], prior.grid[idx[:, 0], idx[:, 1], idx[:, 2]], atol=1e-6, rtol=0
    )
    # outside: value at the clamped point + distance to the box
    out = torch.tensor([[1.5, 0.2, -0.1], [-2.0, 3.0, 0.0]])
    expected = prior(out.clamp(-1, 1)) + (out - out.clamp(-1, 1)).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(prior(out), expected)


def test_prior_state_dict_roundtrip():
    mesh = trimesh.creation.box(extents=(0.8, 0.8, 0.8))
    prior = BodyPriorSDF.from_mesh(mesh.vertices, mesh.faces, resolution=16)
    clone = BodyPriorSDF(torch.zeros(16, 16, 16))
    clone.load_state_dict(prior.state_dict())
    x = torch.rand(50, 3) * 2 - 1
    torch.testing.assert_close(clone(x), prior(x))
    with pytest.raises(ValueError):
        BodyPriorSDF(torch.zeros(4, 4, 5))


def test_block_sizes_do_not_change_the_grid():
    # the precompute works in blocks to bound memory (5 GB at 256^3 at once); the result must not
    # depend on where the blocks are cut, including ties between triangles sharing an edge
    from humanref_cli.geometry.body_sdf import _band_distance, _far_distance

    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    tri = mesh.vertices[mesh.faces]
    coords = np.linspace(-1, 1, 24)
    band = 2 * (coords[1] - coords[0])
    dist, owner = _band_distance(tri, coords, band)
    dist_small, owner_small = _band_distance(tri, coords, band, max_pairs=997)
    assert torch.equal(dist, dist_small) and torch.equal(owner, owner_small)
    far = dist.numpy().reshape((24,) * 3) > band
    whole = _far_distance(tri, coords, owner.numpy(), far)
    np.testing.assert_array_equal(_far_distance(tri, coords, owner.numpy(), far, chunk=1001), whole)
    assert len(whole) == far.sum() > 1001
