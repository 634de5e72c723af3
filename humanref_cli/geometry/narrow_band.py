"""SDF values on a lattice, read exactly only near one level set (for marching cubes).

Marching cubes reads a lattice value only to place a vertex on an edge whose two ends lie on either
side of the level; everywhere else it needs the side, not the value. A 256^3 lattice of the field is
16.7M evaluations (34 s on 2 CPU cores, three times a run: coarse, refine and texture meshes) of which
~1% are at corners of cells the level set crosses.

So the lattice is cut into blocks of ``block^3`` vertices and the SDF is read once at each block's
centre ``c``. With the SDF ``lipschitz``-Lipschitz, a block with

    |s(c) - level| > lipschitz * (r + h sqrt(3)),     r = the block's centre-to-corner distance,

has every vertex on the same side of the level as ``c`` and farther from it than a cell diagonal
``h sqrt(3)`` allows for a corner of a crossed cell; its vertices take ``s(c)`` (right side, value
unused) and only the other blocks are evaluated vertex by vertex. The mesh is then the full lattice's.

The field is the body's distance field plus a learned offset, close to 1-Lipschitz; ``lipschitz = 2``
leaves room for as much again (the renderer's skip, ``render/sdf_skip.py``, assumes the same). Should
the offset be steeper somewhere, a surface reaching into a skipped block shows up as a crossed cell
with a skipped corner (or between two skipped blocks of opposite sides): such blocks are evaluated and
the test repeated until no crossed cell has a skipped corner, so the level set is followed wherever
it leads; only a piece of surface wholly inside one skipped block could still be missed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch


class BandSample(NamedTuple):
    """``values (R, R, R)`` float32; ``evaluated``: fraction of vertices read exactly; ``repairs``: rounds
    of blocks evaluated because the surface reached into them (0 when every certificate held)."""

    values: np.ndarray
    evaluated: float
    repairs: int


def sample_near_level(
    sdf_fn: Callable[[torch.Tensor], torch.Tensor],
    resolution: int,
    bbox,
    level: float = 0.0,
    chunk: int = 262144,
    device: str | torch.device = "cpu",
    block: int = 8,
    lipschitz: float = 2.0,
) -> BandSample:
    """Lattice values ``(R, R, R)`` float32 as :func:`geometry.isosurface.sample_grid` (indexed x, y, z,
    at ``lo + (hi - lo) * (i, j, k) / (R - 1)``), exact at every corner of a cell that ``level`` crosses
    and of the right side elsewhere (module docstring)."""
    lo, hi = torch.tensor(bbox[0], dtype=torch.float32), torch.tensor(bbox[1], dtype=torch.float32)
    axes = [torch.linspace(float(lo[d]), float(hi[d]), resolution) for d in range(3)]
    nb = -(-resolution // block)  # blocks per axis
    first = np.arange(nb) * block
    count = np.minimum(first + block, resolution) - first  # vertices per block along an axis
    centre_idx = first + (count - 1) / 2.0
    spacing = (hi - lo).double() / (resolution - 1)  # (3,)
    centre_axes = [lo[d] + spacing[d] * torch.from_numpy(centre_idx) for d in range(3)]
    centres = torch.stack(torch.meshgrid(*centre_axes, indexing="ij"), -1)
    half = torch.from_numpy((count - 1) / 2.0)
    radius = torch.sqrt(sum(((half * spacing[d]) ** 2).reshape(_axis_shape(d)) for d in range(3)))
    s_centre = _evaluate(sdf_fn, centres.reshape(-1, 3).float(), chunk, device).reshape(nb, nb, nb)
    reach = lipschitz * (radius + spacing.norm()).numpy()  # (nb, nb, nb)
    todo = np.abs(s_centre - level) <= reach  # blocks to evaluate vertex by vertex

    values = _expand(s_centre, block, resolution).copy()
    exact = np.zeros((resolution,) * 3, dtype=bool)
    repairs = -1  # the first round evaluates the uncertified blocks; each further one repairs
    while repairs < 0 or todo.any():
        new = _expand(todo, block, resolution) & ~exact
        i, j, k = np.nonzero(new)
        pts = torch.stack([axes[0][i], axes[1][j], axes[2][k]], dim=-1)
        values[i, j, k] = _evaluate(sdf_fn, pts, chunk, device)
        exact |= new
        todo = _blocks_to_repair(values > level, exact, block, nb)
        repairs += 1
    return BandSample(values, float(exact.mean()), repairs)


def _axis_shape(d: int) -> tuple[int, int, int]:
    return tuple(-1 if e == d else 1 for e in range(3))


def _evaluate(sdf_fn, points: torch.Tensor, chunk: int, device) -> np.ndarray:
    """``sdf_fn`` at ``points (N, 3)`` in chunks, without gradients: float32 ``(N,)``."""
    out = np.empty(len(points), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(points), chunk):
            s = sdf_fn(points[start : start + chunk].to(device)).reshape(-1)
            out[start : start + chunk] = s.float().cpu().numpy()
    return out


def _expand(per_block: np.ndarray, block: int, resolution: int) -> np.ndarray:
    """A ``(nb, nb, nb)`` array repeated over each block's vertices: ``(R, R, R)``."""
    out = per_block
    for axis in range(3):
        out = np.repeat(out, block, axis=axis)
    return out[:resolution, :resolution, :resolution]


def _blocks_to_repair(above: np.ndarray, exact: np.ndarray, block: int, nb: int) -> np.ndarray:
    """Blocks ``(nb, nb, nb)`` bool holding a skipped corner of a cell whose corners lie on both sides
    of the level (none when every skipped block's certificate held)."""
    any_above, all_above, any_skipped = above.copy(), above.copy(), ~exact
    # fold the 2x2x2 corners of every cell onto its lowest corner: (R-1)^3 cells
    for axis in range(3):
        a, b = _shift_pair(axis, any_above.ndim, any_above.shape[axis])
        any_above = any_above[a] | any_above[b]
        all_above = all_above[a] & all_above[b]
        any_skipped = any_skipped[a] | any_skipped[b]
    bad = any_above & ~all_above & any_skipped  # crossed cells with a skipped corner
    todo = np.zeros((nb, nb, nb), dtype=bool)
    cells = np.stack(np.nonzero(bad), axis=1)  # (n, 3) lowest corners
    for corner in np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), -1).reshape(-1, 3):
        i, j, k = (cells + corner).T
        skipped = ~exact[i, j, k]
        todo[i[skipped] // block, j[skipped] // block, k[skipped] // block] = True
    return todo


def _shift_pair(axis: int, ndim: int, size: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Index tuples selecting ``[0, size - 1)`` and ``[1, size)`` along ``axis``."""
    a = [slice(None)] * ndim
    b = [slice(None)] * ndim
    a[axis], b[axis] = slice(0, size - 1), slice(1, size)
    return tuple(a), tuple(b)
