"""Where the volume renderer draws an SDF's silhouette (render/silhouette_level.py)."""

from __future__ import annotations

import math

import pytest
import torch
from test_volume import SphereField

from humanref_cli.render.silhouette_level import TYPICAL_RADIUS, mesh_level, silhouette_level
from humanref_cli.render.volume import render_rays


@pytest.mark.parametrize("inv_std", [665.0, 5000.0])
@pytest.mark.parametrize("radius", [0.03, 0.15])
def test_level_matches_the_thin_shell_closed_form(inv_std, radius):
    # d << r: tau(d) = inv_std / 2 exp(-inv_std d) sqrt(2 pi r / inv_std) = ln 2
    closed = math.log(math.sqrt(math.pi * radius * inv_std / 2) / math.log(2)) / inv_std
    assert silhouette_level(inv_std, radius) == pytest.approx(closed, rel=0.04)


def test_the_renderer_draws_the_silhouette_at_that_level():
    inv_std, radius = 665.0, TYPICAL_RADIUS
    sphere = SphereField(centre=(0.0, 0.0, 0.0), radius=radius, inv_std=inv_std)
    ys = torch.linspace(radius - 0.005, radius + 0.01, 1501)  # rays along -x, passing at height y
    origins = torch.stack([torch.full_like(ys, 1.5), ys, torch.zeros_like(ys)], -1)
    dirs = torch.tensor([[-1.0, 0.0, 0.0]]).expand_as(origins)
    with torch.no_grad():
        opacity = render_rays(sphere, origins, dirs, torch.ones(3), perturb_std=None)["opacity"][:, 0]
    edge = float(ys[(opacity < 0.5).nonzero()[0]]) - radius
    level = silhouette_level(inv_std, radius)
    assert level > 0.003  # ~0.37 cm outside the zero level set at the cpu preset's sharpness
    # the renderer's fixed step adds ~0.02 cm to the continuous integral
    assert abs(edge - level) < 0.0004


def test_soft_densities_keep_the_zero_level_set():
    assert mesh_level(665.0) == pytest.approx(silhouette_level(665.0))
    assert mesh_level(20.0) is None  # the paper's initial inv_std: a silhouette ~6 cm out
    assert silhouette_level(20.0) > 0.25 * TYPICAL_RADIUS
    assert silhouette_level(5000.0) < silhouette_level(665.0)


def test_rejects_non_positive_inputs():
    with pytest.raises(ValueError):
        silhouette_level(0.0)
    with pytest.raises(ValueError):
        silhouette_level(100.0, radius=-1.0)
