"""Zero level set of an SDF as a triangle mesh (marching cubes, method.md §5.4).

The SDF is evaluated on a ``resolution^3`` lattice in chunks of z-slabs (bounded memory, no
gradients) and scikit-image's marching cubes extracts level 0. Faces are wound so that their normals
point outwards, towards positive SDF.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def sample_grid(
    sdf_fn: Callable[[torch.Tensor], torch.Tensor],
    resolution: int = 256,
    bbox=((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)),
    chunk: int = 262144,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """SDF values ``(R, R, R)`` float32 at ``lo + (hi - lo) * (i, j, k) / (R - 1)``, indexed x, y, z.

    ``sdf_fn`` maps world points ``(N, 3)`` to ``(N,)`` or ``(N, 1)``; it is called under ``no_grad`` on
    at most ``chunk`` points at a time.
    """
    lo, hi = torch.tensor(bbox[0], dtype=torch.float32), torch.tensor(bbox[1], dtype=torch.float32)
    axes = [torch.linspace(float(lo[d]), float(hi[d]), resolution) for d in range(3)]
    values = np.empty((resolution,) * 3, dtype=np.float32)
    yz = torch.stack(torch.meshgrid(axes[1], axes[2], indexing="ij"), dim=-1).reshape(-1, 3 - 1)
    slab = max(1, chunk // (resolution * resolution))
    with torch.no_grad():
        for i0 in range(0, resolution, slab):
            xs = axes[0][i0 : i0 + slab]
            pts = torch.cat([xs.repeat_interleave(len(yz))[:, None], yz.repeat(len(xs), 1)], dim=1)
            out = sdf_fn(pts.to(device)).reshape(-1)
            values[i0 : i0 + len(xs)] = out.float().cpu().numpy().reshape(len(xs), resolution, resolution)
    return values


def extract_mesh(
    sdf_fn: Callable[[torch.Tensor], torch.Tensor],
    resolution: int = 256,
    bbox=((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)),
    chunk: int = 262144,
    device: str | torch.device = "cpu",
    level: float = 0.0,
    lipschitz: float | None = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Mesh of ``{x : sdf(x) = level}``: vertices ``(V, 3)`` float32 (world), faces ``(F, 3)`` int64.

    Faces are oriented with outward normals (``(v1 - v0) x (v2 - v0)`` points to positive SDF). Returns
    empty arrays when the level set does not cross the lattice. With ``lipschitz`` (a bound on the
    SDF's slope) the lattice is read exactly only near the level set (:mod:`geometry.narrow_band`, the
    same mesh); None reads every vertex.
    """
    from skimage.measure import marching_cubes

    if lipschitz is None:
        values = sample_grid(sdf_fn, resolution, bbox, chunk, device)
    else:
        from humanref_cli.geometry.narrow_band import sample_near_level

        values = sample_near_level(sdf_fn, resolution, bbox, level, chunk, device, lipschitz=lipschitz).values
    if not (values.min() < level < values.max()):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    lo, hi = np.asarray(bbox[0], dtype=np.float64), np.asarray(bbox[1], dtype=np.float64)
    spacing = tuple((hi - lo) / (resolution - 1))
    verts, faces, _, _ = marching_cubes(values, level=level, spacing=spacing)
    # skimage's default winding makes (v1 - v0) x (v2 - v0) point towards increasing values, i.e.
    # outwards for an SDF (inside negative); tests/test_isosurface.py checks it on a sphere
    return (verts + lo).astype(np.float32), np.ascontiguousarray(faces, dtype=np.int64)
