"""The SDF level at which a volume render draws the silhouette (docs/decisions.md 20).

VolSDF's density is not zero outside the surface, so a ray that passes a convex surface at a
distance ``d`` outside it still gathers the optical depth

    τ(d) = ∫ σ(s(t)) dt,   s(t) = sqrt((r + d)² + t²) - r,   t ∈ (-∞, ∞)

(a sphere of radius ``r``, the ray at ``r + d`` from its centre; ``σ`` is :func:`laplace_density`)
and is drawn with opacity ``1 - exp(-τ)``. The rendered silhouette, opacity 1/2, is the level set
``s = d*`` with ``τ(d*) = ln 2``. For ``d ≪ r`` this is about
``d* ≈ ln(sqrt(π r inv_std / 2) / ln 2) / inv_std``: 0.0035–0.0045 world units (0.34–0.43 cm on a
1.75 m subject) for radii of 5–15 cm at the ``cpu`` preset's ``inv_std ≈ 665``, 0.07–0.08 cm at 5000.

The silhouette and image losses fit the rendered silhouette to the photo's, so the field's zero level
set ends up ``d*`` inside it; the mesh taken at ``s = d*`` is the surface those losses placed. The
renderer's fixed-step first-order compositing adds about 0.02 cm more at ``inv_std`` 665 (measured on
an analytic sphere, ``tests/test_silhouette_level.py``).
"""

from __future__ import annotations

import math

import torch

from humanref_cli.geometry.field import laplace_density

# Between a forearm's (~4 cm) and the torso's (~15 cm) half-width, in world units (~0.97 m each):
# d* changes by about ±0.05 cm over that range at inv_std 665.
TYPICAL_RADIUS = 0.08


def tangent_optical_depth(d: torch.Tensor, inv_std: float, radius: float, n: int = 4001) -> torch.Tensor:
    """``τ(d)`` of the module docstring for ray offsets ``d (K,)`` (world units, negative = through the
    inside), by the trapezoid rule on ``t ∈ [0, t_max]`` doubled (``s`` is even in ``t``); ``t_max``
    is where the density has fallen to ``e^-20`` of its surface value. Returns ``(K,)`` float64."""
    d = d.double()
    s_max = 20.0 / inv_std
    t_max = torch.sqrt(((radius + s_max) ** 2 - (radius + d).clamp(max=radius + s_max) ** 2).clamp_min(1e-12))
    u = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    t = t_max[:, None] * u[None]  # (K, n)
    s = torch.sqrt((radius + d)[:, None] ** 2 + t**2) - radius
    sigma = laplace_density(s, torch.tensor(inv_std, dtype=torch.float64))
    return 2 * torch.trapezoid(sigma, t, dim=-1)


def silhouette_level(inv_std: float, radius: float = TYPICAL_RADIUS, iters: int = 60) -> float:
    """The level ``d*`` (world units) where a surface of curvature radius ``radius`` is drawn with
    opacity 1/2 by VolSDF's density at ``inv_std``: bisection of ``τ(d) = ln 2`` on ``[-radius, radius]``
    (``τ`` decreases with ``d``). Positive: the rendered silhouette lies outside the zero level set."""
    if not (math.isfinite(inv_std) and inv_std > 0 and radius > 0):
        raise ValueError(f"inv_std and radius must be positive, got {inv_std}, {radius}")
    lo, hi = -radius, radius
    target = math.log(2.0)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if float(tangent_optical_depth(torch.tensor([mid]), inv_std, radius)[0]) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def mesh_level(inv_std: float, max_level: float = 0.25 * TYPICAL_RADIUS) -> float | None:
    """The level to extract a mesh at so that it lies where the renders drew the silhouette:
    :func:`silhouette_level` at ``TYPICAL_RADIUS``, or None when it exceeds ``max_level`` (a soft
    density whose silhouette is centimetres out: the thin-shell picture above no longer holds and
    the zero level set is the better guess)."""
    level = silhouette_level(inv_std)
    return level if level <= max_level else None
