"""Occupancy grid that lets the renderer skip empty space (nerfacc ``OccGridEstimator``, method.md §4).

A ``32^3`` grid over the scene box keeps an exponential moving average ``occs`` of each cell's
opacity ``alpha = sigma(s(x); inv_std / 2) * dt`` at a random point of the cell, and marks a cell
occupied when ``occs > min(mean(occs), threshold)``. The released code refreshes it every 16 steps
with half the current ``inv_std`` (a wider density, so the grid is conservative). As nerfacc: during
the first 256 steps every cell is re-evaluated; afterwards a random quarter of all cells plus as many
random occupied cells.
"""

from __future__ import annotations

import torch
from torch import nn


class OccupancyGrid(nn.Module):
    """Binary occupancy ``(R, R, R)`` (indexed x, y, z) over ``[-bound, bound]^3``.

    Buffers: ``occs`` (float EMA of cell opacities), ``binary`` (bool). A fresh grid is all occupied
    until :meth:`build` or :meth:`update` evaluates a field.
    """

    def __init__(
        self,
        resolution: int = 32,
        bound: float = 1.0,
        step_size: float = 1.732 * 2 / 512,
        threshold: float = 0.01,
        ema_decay: float = 0.95,
        every: int = 16,
        warmup_steps: int = 256,
    ):
        super().__init__()
        self.resolution, self.bound, self.step_size = resolution, float(bound), step_size
        self.threshold, self.ema_decay, self.every, self.warmup_steps = (
            threshold,
            ema_decay,
            every,
            warmup_steps,
        )
        self.register_buffer("occs", torch.zeros(resolution**3))
        self.register_buffer("binary", torch.ones(resolution, resolution, resolution, dtype=torch.bool))

    @property
    def cell_size(self) -> float:
        return 2 * self.bound / self.resolution

    def cell_alpha(
        self, field, cells: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Opacity ``(n,)`` of flat cells ``(n,)``, an upper bound over each cell (no grad).

        The released code evaluates one random point per cell, which drops cells that a thin part
        (a wrist, an ankle) crosses once the density is sharp. Here the SDF at a random point is moved
        towards the surface by the cell's diagonal, ``s' = max(s - diag, 0)`` outside (the SDF is
        close to 1-Lipschitz), so a cell the surface passes through is never pruned.
        """
        r = self.resolution
        ijk = torch.stack([cells // (r * r), (cells // r) % r, cells % r], dim=-1).float()
        jitter = torch.rand(len(cells), 3, generator=generator).to(ijk.device)
        x = (ijk + jitter) * self.cell_size - self.bound
        diagonal = self.cell_size * 3**0.5
        with torch.no_grad():
            sdf = torch.cat([field.sdf(chunk) for chunk in x.split(65536)])
            sdf = torch.where(sdf > 0, (sdf - diagonal).clamp(min=0), sdf)
            sigma = field.density(sdf, field.inv_std() * 0.5)
        return (sigma * self.step_size).clamp(0, 1).reshape(-1)

    @torch.no_grad()
    def build(self, field, generator: torch.Generator | None = None) -> None:
        """Evaluate every cell once and reset the EMA (after the field's initialisation, method.md §3)."""
        cells = torch.arange(self.resolution**3, device=self.occs.device)
        self.occs.copy_(self.cell_alpha(field, cells, generator).to(self.occs))
        self._threshold()

    @torch.no_grad()
    def update(self, field, step: int, generator: torch.Generator | None = None) -> bool:
        """Refresh the grid when ``step % every == 0``; returns whether it did."""
        if step % self.every != 0:
            return False
        n = self.resolution**3
        device = self.occs.device
        if step < self.warmup_steps:
            cells = torch.arange(n, device=device)
        else:
            uniform = torch.randint(0, n, (n // 4,), generator=generator).to(device)
            occupied = torch.nonzero(self.binary.reshape(-1)).reshape(-1)
            if len(occupied) > 0:
                pick = torch.randint(0, len(occupied), (n // 4,), generator=generator).to(device)
                uniform = torch.cat([uniform, occupied[pick]])
            cells = uniform
        alpha = self.cell_alpha(field, cells, generator).to(self.occs)
        # as nerfacc, only the re-evaluated cells decay
        self.occs[cells] = torch.maximum(self.occs[cells] * self.ema_decay, alpha)
        self._threshold()
        return True

    def _threshold(self) -> None:
        thre = min(float(self.occs.mean()), self.threshold)
        self.binary.copy_((self.occs > thre).reshape(self.binary.shape))

    def occupied_bounds(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """World corners ``(lo (3,), hi (3,))`` of the box around the occupied cells; None when none is."""
        ijk = torch.nonzero(self.binary)
        if len(ijk) == 0:
            return None
        lo = ijk.amin(0).to(self.occs.dtype) * self.cell_size - self.bound
        hi = (ijk.amax(0) + 1).to(self.occs.dtype) * self.cell_size - self.bound
        return lo, hi

    def occupied(self, x: torch.Tensor) -> torch.Tensor:
        """Whether the cells holding world points ``x (..., 3)`` are occupied: bool ``(...)``.

        Points outside the box are unoccupied.
        """
        ijk = torch.floor((x + self.bound) / self.cell_size).long()
        inside = ((ijk >= 0) & (ijk < self.resolution)).all(-1)
        ijk = ijk.clamp(0, self.resolution - 1)
        return self.binary[ijk[..., 0], ijk[..., 1], ijk[..., 2]] & inside
