"""A differentiable mesh rasteriser for texture optimisation: GL visibility, PyTorch shading.

Visibility is not differentiable anyway, so it comes from OpenGL: ``MeshRasterizer.face_ids`` gives
the visible face of every pixel centre. Everything after that is PyTorch, so gradients flow to the
texture (through ``grid_sample``) and to vertex attributes and positions (through the barycentrics):

1. the pixel centre ``p`` and the visible triangle ``(a, b, c)``, projected onto the camera plane
   (orthographic, so screen-space barycentrics are exact, no perspective correction);
2. barycentrics ``w_b = cross(p - a, c - a) / cross(b - a, c - a)``,
   ``w_c = cross(b - a, p - a) / cross(b - a, c - a)``, ``w_a = 1 - w_b - w_c``;
3. any per-vertex attribute is ``sum_k w_k attr[f_k]``; UVs interpolated this way look up the
   texture bilinearly.

There are no silhouette-edge gradients (a pixel's face never changes under a small step), which is
fine for textures on frozen geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from humanref_cli.render.raster import MeshRasterizer, vertex_normals


@dataclass(frozen=True)
class Fragments:
    """Per-pixel rasterisation result for an ``H × W`` image.

    ``pixels (P,)`` long: flat indices of the covered pixels; ``face (P,)`` long: their visible face;
    ``bary (P, 3)`` float: barycentrics (differentiable w.r.t. the vertices); ``mask (H, W)`` bool.
    """

    pixels: torch.Tensor
    face: torch.Tensor
    bary: torch.Tensor
    mask: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mask.shape)


def _cross2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def rasterize(
    raster: MeshRasterizer, vertices: torch.Tensor, faces: torch.Tensor, c2w: torch.Tensor
) -> Fragments:
    """Visible face and barycentrics of every pixel centre of ``raster``'s ``H × W`` image.

    ``vertices (V, 3)`` float (may require grad), ``faces (F, 3)`` long, ``c2w (4, 4)``.
    """
    device = vertices.device
    ids, _ = raster.face_ids(vertices.detach().cpu().numpy(), faces.detach().cpu().numpy(), c2w)
    ids = torch.as_tensor(ids, device=device).long()
    mask = ids > 0
    pixels = torch.nonzero(mask.reshape(-1), as_tuple=False)[:, 0]
    face = ids.reshape(-1)[pixels] - 1
    h, w, r = raster.height, raster.width, raster.radius
    rows, cols = pixels // w, pixels % w
    p = torch.stack(
        [(cols.float() + 0.5 - w / 2) * (2 * r / w), -(rows.float() + 0.5 - h / 2) * (2 * r / h)], dim=-1
    )
    c2w = c2w.to(device=device, dtype=vertices.dtype)
    rel = vertices - c2w[:3, 3]
    plane = torch.stack([rel @ c2w[:3, 0], rel @ c2w[:3, 1]], dim=-1)  # (V, 2)
    tri = plane[faces[face]]  # (P, 3, 2)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    area = _cross2(b - a, c - a)
    area = torch.where(area.abs() < 1e-12, torch.full_like(area, 1e-12), area)
    wb = _cross2(p - a, c - a) / area
    wc = _cross2(b - a, p - a) / area
    bary = torch.stack([1.0 - wb - wc, wb, wc], dim=-1)
    return Fragments(pixels=pixels, face=face, bary=bary, mask=mask)


def interpolate(attr: torch.Tensor, faces: torch.Tensor, frags: Fragments) -> torch.Tensor:
    """Barycentric interpolation of per-vertex ``attr (V, C)`` at the covered pixels: ``(P, C)``."""
    return (attr[faces[frags.face]] * frags.bary[..., None]).sum(dim=1)


def scatter_image(values: torch.Tensor, frags: Fragments, background) -> torch.Tensor:
    """Place per-pixel ``values (P, C)`` into an ``(H, W, C)`` image filled with ``background``."""
    h, w = frags.shape
    bg = torch.as_tensor(background, dtype=values.dtype, device=values.device).expand(h * w, values.shape[-1])
    image = bg.clone()
    image = image.index_put((frags.pixels,), values)
    return image.reshape(h, w, -1)


def sample_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of ``texture (Ht, Wt, C)`` at ``uv (P, 2)`` (v up, row 0 = top): ``(P, C)``.

    ``grid_sample`` with ``align_corners=False`` puts texel ``(row, col)`` at
    ``u = (col + 0.5) / Wt``, ``v = 1 - (row + 0.5) / Ht``, the convention of ``render/bake.py``.
    """
    grid = torch.stack([uv[:, 0] * 2.0 - 1.0, 1.0 - uv[:, 1] * 2.0], dim=-1)[None, None]  # (1, 1, P, 2)
    tex = texture.permute(2, 0, 1)[None]  # (1, C, Ht, Wt)
    out = F.grid_sample(tex, grid.to(tex.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].t()


def render_textured(
    raster: MeshRasterizer,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    uvs: torch.Tensor,
    texture: torch.Tensor,
    c2w: torch.Tensor,
    background=(1.0, 1.0, 1.0),
    normals: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Unlit render of a textured mesh: ``rgb (H, W, 3)`` over ``background``, ``mask (H, W)`` float,
    ``normal (H, W, 3)`` world-frame unit normals (0 outside). Differentiable w.r.t. ``texture``.

    ``normals (V, 3)`` defaults to area-weighted vertex normals (smooth shading).
    """
    frags = rasterize(raster, vertices, faces, c2w)
    colour = sample_texture(texture, interpolate(uvs, faces, frags))
    if normals is None:
        normals = torch.as_tensor(vertex_normals(vertices, faces), device=vertices.device)
    n = F.normalize(interpolate(normals.to(vertices.dtype), faces, frags), dim=-1)
    rgb = scatter_image(colour, frags, background)
    normal = scatter_image(n, frags, (0.0, 0.0, 0.0))
    return {"rgb": rgb, "mask": frags.mask.to(rgb.dtype), "normal": normal, "fragments": frags}
