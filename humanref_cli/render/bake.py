"""Bake a colour function into a UV texture (or into vertex colours).

For every texel whose centre lies inside a triangle of the UV layout, the texel's 3D surface point is
the same barycentric combination of that triangle's vertices; the colour function is queried there.
The UV-space rasterisation is a render of the mesh with its UVs as positions and its 3D positions as
the interpolated attribute (``MeshRasterizer.render_attribute``, float32 target, one sample per texel
centre), so it is exact up to float precision.

Texels no triangle covers get the colour of the nearest covered texels (:func:`dilate`, "seam
padding"): bilinear filtering and mip-mapping near a chart border read a few texels past it, and
without padding they would read the background colour and draw dark seams.

Texture convention (as ``uv_atlas``): image row 0 is the top, ``v`` points up, so texel ``(row, col)``
has centre ``u = (col + 0.5) / W``, ``v = 1 - (row + 0.5) / H``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

ColorFn = Callable[[torch.Tensor], torch.Tensor]
"""``color_fn(points (N, 3) float32) -> (N, 3)`` colours in [0, 1], on the points' device."""


def texel_positions(
    vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """3D surface point of every texel centre of a ``size × size`` texture.

    Returns ``positions (size, size, 3)`` float32 (0 where uncovered) and ``covered (size, size)`` bool.
    """
    from humanref_cli.render.raster import MeshRasterizer

    uv = np.asarray(uvs, dtype=np.float32)
    # With the identity camera (right = x, up = y, looking down -z) NDC x, y equal the positions, so a
    # vertex at (2u - 1, 2v - 1, 0) lands on its texel; GL rows are flipped back to "row 0 = v = 1".
    flat = np.concatenate([uv * 2.0 - 1.0, np.zeros((len(uv), 1), np.float32)], axis=1)
    with MeshRasterizer(size, size) as raster:
        out = raster.render_attribute(
            flat, faces, np.asarray(vertices, np.float32), np.eye(4, dtype=np.float32)
        )
    covered = out[..., 3] > 0.5
    positions = np.where(covered[..., None], out[..., :3], 0.0).astype(np.float32)
    return positions, covered


def query_colors(color_fn: ColorFn, points: np.ndarray, chunk: int = 65536, device="cpu") -> np.ndarray:
    """``color_fn`` on ``points (N, 3)`` in chunks, without gradients: ``(N, 3)`` float32 in [0, 1]."""
    out = np.zeros((len(points), 3), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(points), chunk):
            p = torch.as_tensor(points[start : start + chunk], dtype=torch.float32, device=device)
            out[start : start + chunk] = color_fn(p).float().clamp(0.0, 1.0).cpu().numpy()
    return out


def dilate(image: np.ndarray, mask: np.ndarray, pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow the valid region of ``image (H, W, C)`` by ``pixels`` rings (seam padding).

    Each ring gives every empty texel with a valid 8-neighbour the mean of those neighbours. Returns the
    padded image and the grown mask ``(H, W)`` bool. Texels still empty afterwards are left unchanged.
    """
    import cv2

    img = image.astype(np.float32).copy()
    valid = mask.astype(bool).copy()
    for _ in range(int(pixels)):
        weight = valid.astype(np.float32)
        total = cv2.boxFilter(
            img * weight[..., None], -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT
        )
        count = cv2.boxFilter(weight, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        grow = (~valid) & (count > 0)
        if not grow.any():
            break
        img[grow] = total.reshape(img.shape)[grow] / count[grow][:, None]
        valid |= grow
    return img, valid


def bake_texture(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    color_fn: ColorFn,
    size: int = 1024,
    padding: int = 8,
    chunk: int = 65536,
    device="cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Texture ``(size, size, 3)`` float32 in [0, 1] holding ``color_fn`` at each texel's surface point.

    Covered texels are evaluated exactly; ``padding`` rings around every chart are filled by
    :func:`dilate`; whatever is left (unused atlas space) gets the mean colour so mip levels stay
    neutral. Also returns ``covered (size, size)`` bool, the texels the mesh itself maps to.
    """
    positions, covered = texel_positions(vertices, faces, uvs, size)
    texture = np.zeros((size, size, 3), dtype=np.float32)
    texture[covered] = query_colors(color_fn, positions[covered], chunk=chunk, device=device)
    padded, valid = dilate(texture, covered, padding)
    if covered.any():
        padded[~valid] = texture[covered].mean(axis=0)
    return padded, covered


def bake_vertex_colors(
    vertices: np.ndarray, color_fn: ColorFn, chunk: int = 65536, device="cpu"
) -> np.ndarray:
    """``color_fn`` at every vertex: ``(V, 3)`` float32 in [0, 1] (for PLY export and previews)."""
    return query_colors(color_fn, np.asarray(vertices, dtype=np.float32), chunk=chunk, device=device)


def sample_texture(texture: np.ndarray, uvs: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``texture (H, W, C)`` at ``uvs (N, 2)`` (v up): ``(N, C)`` float32.

    Texel centres sit at ``u = (col + 0.5) / W``, ``v = 1 - (row + 0.5) / H``; lookups clamp at the edge.
    """
    tex = np.asarray(texture, dtype=np.float32)
    h, w = tex.shape[:2]
    x = np.clip(np.asarray(uvs[:, 0], np.float64) * w - 0.5, 0.0, w - 1.0)
    y = np.clip((1.0 - np.asarray(uvs[:, 1], np.float64)) * h - 0.5, 0.0, h - 1.0)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = tex[y0, x0] * (1 - fx) + tex[y0, x1] * fx
    bottom = tex[y1, x0] * (1 - fx) + tex[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)
