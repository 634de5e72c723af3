"""Which camera each optimisation step renders (method.md §5.1) and its random background and ray jitter.

Per step ``b`` (the global step): with ``r = ref_every`` (``ref_every_late`` from ``ref_every_switch_step``),
``b mod r == 0`` is the reference (front) view, ``b mod r == 1`` the back view (azimuth 180), anything else
a random view: azimuth U[-180, 180], elevation in [e_min, e_max] (half the time uniform in degrees, half
the time uniform on the sphere band, i.e. asin of a uniform sine), distance U[d_min, d_max] (orthographic:
it only moves the ray origins). Every step draws a uniform RGB background colour. The reference and back
views get one global N(0, jitter^2) offset on all ray origins and another on all directions.

All randomness comes from the ``torch.Generator`` passed in, so the loop can checkpoint its state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from humanref_cli.configs.optim import ViewConfig
from humanref_cli.render.camera import camera_to_world, orthographic_rays


@dataclass(frozen=True)
class View:
    """One training view. ``kind`` is ``"ref"``, ``"back"`` or ``"random"``; angles in degrees."""

    kind: str
    azimuth: float
    elevation: float
    distance: float
    background: torch.Tensor  # (3,) RGB in [0, 1]
    origin_jitter: torch.Tensor  # (3,) world offset added to every ray origin
    direction_jitter: torch.Tensor  # (3,) added to every ray direction before renormalising

    @property
    def c2w(self) -> torch.Tensor:
        """Camera-to-world ``(4, 4)`` (without jitter)."""
        return camera_to_world(self.azimuth, self.elevation, self.distance)


def view_kind(step: int, cfg: ViewConfig) -> str:
    """``"ref"``, ``"back"`` or ``"random"`` for a global step (the dataloader index of the released code)."""
    r = cfg.ref_every if step < cfg.ref_every_switch_step else cfg.ref_every_late
    if step % r == 0:
        return "ref"
    if step % r == 1:
        return "back"
    return "random"


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=gen, dtype=torch.float64).item()


def sample_elevation(gen: torch.Generator, low: float, high: float) -> float:
    """Half the time uniform in degrees, otherwise ``asin(U[sin low, sin high])`` (uniform on the band)."""
    if torch.rand((), generator=gen).item() < 0.5:
        return _uniform(gen, low, high)
    s = _uniform(gen, math.sin(math.radians(low)), math.sin(math.radians(high)))
    return math.degrees(math.asin(s))


def sample_view(step: int, cfg: ViewConfig, gen: torch.Generator) -> View:
    """Draw the view of ``step``. Always consumes the generator in the same order for a given kind."""
    kind = view_kind(step, cfg)
    background = torch.rand(3, generator=gen) if cfg.random_background else torch.ones(3)
    if kind == "random":
        azimuth = _uniform(gen, -180.0, 180.0)
        elevation = sample_elevation(gen, cfg.elevation_min, cfg.elevation_max)
        distance = _uniform(gen, cfg.distance_min, cfg.distance_max)
        zero = torch.zeros(3)
        return View(kind, azimuth, elevation, distance, background, zero, zero)
    azimuth = 0.0 if kind == "ref" else 180.0
    origin_jitter = torch.randn(3, generator=gen) * cfg.jitter_std
    direction_jitter = torch.randn(3, generator=gen) * cfg.jitter_std
    return View(kind, azimuth, 0.0, 1.0, background, origin_jitter, direction_jitter)


def view_rays(view: View, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and unit directions ``(H, W, 3)`` of a view, with its jitter applied."""
    origins, dirs = orthographic_rays(view.c2w, height, width)
    origins = origins + view.origin_jitter
    dirs = dirs + view.direction_jitter
    return origins, dirs / dirs.norm(dim=-1, keepdim=True)
