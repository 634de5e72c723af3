"""HumanField: residual SDF on the prior, density formula, normals, initialisation, save/load."""

from __future__ import annotations

import json

import pytest
import torch
import trimesh

from humanref_cli.errors import UpstreamError
from humanref_cli.geometry.body_sdf import BodyPriorSDF
from humanref_cli.geometry.field import (
    FieldConfig,
    HumanField,
    initialize_to_prior,
    laplace_density,
    load_field,
)
from humanref_cli.geometry.hashgrid import HashGridConfig

SMALL = FieldConfig(
    grid=HashGridConfig(n_levels=4, log2_table=12, base_res=8, per_level_scale=1.6), sdf_levels=2
)


@pytest.fixture(scope="module")
def prior():
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    return BodyPriorSDF.from_mesh(mesh.vertices, mesh.faces, resolution=24)


def test_released_defaults_and_heads(prior):
    field = HumanField(FieldConfig(), prior)
    assert field.sdf_head[0].in_features == 16 and field.color_head[0].in_features == 32
    assert all(m.bias is None for m in field.modules() if isinstance(m, torch.nn.Linear))
    assert abs(float(field.inv_std().detach()) - 20.0855) < 1e-3  # exp(10 * 0.3)


def test_sdf_is_prior_plus_offset_and_color_in_unit_range(prior):
    torch.manual_seed(0)
    field = HumanField(SMALL, prior)
    x = torch.rand(200, 3) * 2 - 1
    offset = field.sdf_head(field.encoding((x + 1) / 2, n_levels=2))
    torch.testing.assert_close(field.sdf(x), prior(x) + offset)
    sdf, p, feat = field.sdf_and_features(x)
    torch.testing.assert_close(sdf, field.sdf(x))
    torch.testing.assert_close(p, prior(x))
    c = field.color(x)
    assert c.shape == (200, 3) and (c > 0).all() and (c < 1).all()


def test_laplace_density_closed_form():
    s = torch.tensor([-0.2, -0.01, 0.0, 0.01, 0.2])
    inv_std = torch.tensor(20.0)
    beta = 1 / 20.0
    expected = torch.where(s > 0, 20 * 0.5 * torch.exp(-s / beta), 20 * (1 - 0.5 * torch.exp(s / beta)))
    torch.testing.assert_close(laplace_density(s, inv_std), expected)


def test_normals_are_forward_differences_of_the_sdf(prior):
    field = HumanField(SMALL, prior)
    x = torch.tensor([[0.5, 0.0, 0.0], [0.0, -0.45, 0.1], [0.1, 0.2, 0.6]])
    n, s = field.normal(x)
    eps = SMALL.fd_eps
    grad = torch.stack([(field.sdf(x + eps * e) - field.sdf(x))[:, 0] for e in torch.eye(3)], 1)
    torch.testing.assert_close(n, grad / grad.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(s, field.sdf(x))
    # on the sphere prior with a near-zero offset, normals point radially
    assert ((n * torch.nn.functional.normalize(x, dim=-1)).sum(-1) > 0.97).all()


def test_initialize_to_prior_drives_offset_to_zero(prior):
    torch.manual_seed(0)
    field = HumanField(SMALL, prior)
    with torch.no_grad():
        field.encoding.params.uniform_(-0.5, 0.5)
    x = torch.rand(2000, 3) * 2 - 1
    before = (field.sdf(x) - prior(x)).square().mean().detach()
    loss = initialize_to_prior(
        field, steps=60, n_points=2000, lr=1e-2, generator=torch.Generator().manual_seed(0)
    )
    after = (field.sdf(x) - prior(x)).square().mean()
    assert after < 0.05 * before and loss < 0.1 * float(before)


def test_save_load_roundtrip(prior, tmp_path):
    torch.manual_seed(0)
    field = HumanField(SMALL, prior)
    with torch.no_grad():
        field.encoding.params.uniform_(-0.1, 0.1)
        field.theta.fill_(0.4)
    field.save(tmp_path)
    meta = json.loads((tmp_path / "field.json").read_text())
    assert meta["config"]["sdf_levels"] == 2 and meta["config"]["grid"]["n_levels"] == 4
    loaded = load_field(tmp_path)
    x = torch.rand(100, 3) * 2 - 1
    torch.testing.assert_close(loaded.sdf(x), field.sdf(x))
    torch.testing.assert_close(loaded.color(x), field.color(x))
    assert float(loaded.theta.detach()) == pytest.approx(0.4)
    assert not list(tmp_path.glob("*.tmp*"))
    with pytest.raises(UpstreamError):
        load_field(tmp_path / "missing")
