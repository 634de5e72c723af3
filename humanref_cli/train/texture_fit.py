"""Texture refinement on frozen geometry: reference RGB on the front view, Ref-SDS on other views.

The baked albedo is already the colour field's; this loop sharpens it where the photo says more
(the front view) and, when Stable Diffusion is present, lets Ref-SDS edit the unseen side through the
differentiable rasteriser (``render/diff_raster.py``). Per step ``k``:

- without guidance, or when ``k % ref_every == 0``: the front view (azimuth 0, elevation 0) and
  ``lambda_rgb · mean over M of (I_hat - I_ref)^2``, with ``M`` the pixels covered by both the mesh and
  the reference mask (the texture cannot move the silhouette, so the rest carries no information);
- otherwise a random view (azimuth U[-180, 180], elevation as ``train/views.sample_elevation``) over a
  random background colour, and the weighted guidance losses (``GuidanceConfig`` weights).

Adam (betas 0.9/0.99) on a Laplacian-pyramid residual over the baked albedo (:class:`LearnableTexture`).
Checkpoints hold the residuals, the Adam moments and every RNG state, so a resumed run ends where an
uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from humanref_cli.errors import Interrupted
from humanref_cli.render.camera import camera_to_world
from humanref_cli.train.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from humanref_cli.train.data import TrainData
from humanref_cli.train.loop import GUIDANCE_WEIGHTS, LoopIO
from humanref_cli.train.views import sample_elevation


def pyramid_finest(texture_size: int, render_res: int) -> int:
    """Finest residual level: the power of two at or above the render resolution, at most the texture's.

    A ``render_res``² render samples at most about that many texels across a chart, so finer residuals
    would only receive gradients at scattered texels and show up as a dotted pattern.
    """
    return min(int(texture_size), 1 << max(0, math.ceil(math.log2(max(render_res, 1)))))


class LearnableTexture(torch.nn.Module):
    """An albedo texture optimised as a Laplacian-pyramid residual over a fixed base (the baked albedo).

    ``texels = clamp(base + sum_k up(r_k), 0, 1)``, ``base (H, W, 3)`` in [0, 1] (row 0 at the top, as
    ``render/bake.py``), residual ``r_k`` of size ``finest / 2^k`` for ``k = 0 .. levels - 1``, each
    bilinearly upsampled to ``H × W``. Every render pixel then moves a smooth patch of texels instead
    of the 4 it samples (see :func:`pyramid_finest`). The base is not saved in checkpoints: it is the
    stage's ``baked.png``.
    """

    def __init__(self, base: torch.Tensor, finest: int, levels: int = 4):
        super().__init__()
        self.register_buffer("base", base.float().clone(), persistent=False)
        sizes = [max(1, int(finest) >> k) for k in range(max(1, int(levels)))]
        self.residuals = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(n, n, 3)) for n in sizes])

    def texels(self) -> torch.Tensor:
        """The current texture ``(H, W, 3)`` in [0, 1]."""
        h, w = self.base.shape[:2]
        total = self.base
        for r in self.residuals:
            up = F.interpolate(r.permute(2, 0, 1)[None], size=(h, w), mode="bilinear", align_corners=False)
            total = total + up[0].permute(1, 2, 0)
        return total.clamp(0.0, 1.0)

    def to_uint8(self) -> np.ndarray:
        return (self.texels().detach() * 255 + 0.5).byte().cpu().numpy()


@dataclass(frozen=True)
class MeshTensors:
    """The frozen textured mesh on the training device: ``vertices (V, 3)``, ``faces (F, 3)``, ``uvs (V, 2)``,
    ``normals (V, 3)`` (smooth, welded across seams)."""

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor
    normals: torch.Tensor


def front_rgb_loss(rgb: torch.Tensor, mesh_mask: torch.Tensor, data: TrainData) -> torch.Tensor:
    """``mean over M of (I_hat - I_ref)^2`` (``(H, W, 3)`` images at the loss resolution), ``M`` the pixels
    inside both the rendered mesh and the reference mask; 0 when they do not overlap."""
    inside = (mesh_mask > 0.5) & (data.mask > 0.5)
    if not inside.any():
        return rgb.sum() * 0.0
    ref = data.premult / data.mask.clamp(min=1e-6)[..., None]  # un-premultiplied reference colours
    return (rgb[inside] - ref[inside]).square().mean()


def _to_chw(image: torch.Tensor, size: int) -> torch.Tensor:
    x = image.permute(2, 0, 1)[None]
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)


def fit_texture(
    texture: LearnableTexture,
    mesh: MeshTensors,
    data: TrainData,
    cfg,
    rt,
    io: LoopIO,
    guidance=None,
    preview=None,
) -> dict[str, float]:
    """Run steps ``0 .. cfg.refine_steps`` (resuming from ``io.resume_from``); returns the last scalars.

    ``data`` must be at ``cfg.refine_res``. ``preview(texture, path)`` writes a preview image, if given.
    Raises :class:`Interrupted` after writing a checkpoint when ``rt.interrupted`` is set.
    """
    from humanref_cli.render.diff_raster import render_textured
    from humanref_cli.render.raster import MeshRasterizer

    optimizer = torch.optim.Adam(texture.parameters(), lr=cfg.lr, betas=(0.9, 0.99), eps=1e-15)
    view_gen = torch.Generator().manual_seed(int(rt.seed))
    start = 0
    if io.resume_from is not None:
        ckpt = load_checkpoint(io.resume_from, io.key, rt.device)
        texture.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"], view_gen)
        start = ckpt["step"]
        rt.info(f"texture: resuming from step {start}")

    def checkpoint(next_step: int) -> None:
        save_checkpoint(
            io.ckpt_path,
            step=next_step,
            key=io.key,
            model=texture,
            optimizer=optimizer,
            occupancy=None,
            view_gen=view_gen,
        )

    res, scalars, last_ckpt = cfg.refine_res, {}, time.monotonic()
    with MeshRasterizer(res, res) as raster, rt.progress(cfg.refine_steps, "texture", start=start) as bar:
        for step in range(start, cfg.refine_steps):
            front = guidance is None or step % cfg.ref_every == 0
            background = torch.rand(3, generator=view_gen)
            if front:
                azimuth, elevation = 0.0, 0.0
            else:
                azimuth = -180.0 + 360.0 * torch.rand((), generator=view_gen, dtype=torch.float64).item()
                elevation = sample_elevation(view_gen, cfg.elevation_min, cfg.elevation_max)
            bg = background.to(rt.device)
            out = render_textured(
                raster,
                mesh.vertices,
                mesh.faces,
                mesh.uvs,
                texture.texels(),
                camera_to_world(azimuth, elevation).to(rt.device),
                bg,
                mesh.normals,
            )
            if front:
                terms = {"rgb": cfg.lambda_rgb * front_rgb_loss(out["rgb"], out["mask"], data)}
            else:
                terms = guidance_terms(guidance, out, bg, data, cfg, azimuth, elevation, step)
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scalars = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
            bar.update(step + 1, **scalars)
            if io.on_step is not None:
                io.on_step(step + 1)
            if preview is not None and io.preview_dir is not None and (step + 1) % cfg.preview_every == 0:
                preview(texture, io.preview_dir / f"step_{step + 1:05d}.png")
            if (step + 1) % cfg.ckpt_every == 0 or time.monotonic() - last_ckpt > 300 or rt.interrupted:
                checkpoint(step + 1)
                last_ckpt = time.monotonic()
            if rt.interrupted:
                raise Interrupted(f"interrupted at step {step + 1}", hint="rerun the same command to resume")
    checkpoint(cfg.refine_steps)
    return scalars


def guidance_terms(
    guidance, out, bg, data: TrainData, cfg, azimuth, elevation, step
) -> dict[str, torch.Tensor]:
    """Weighted guidance losses of one non-front render, at the guidance's input size."""
    size = int(getattr(guidance, "image_size", None) or cfg.guidance.image_size or 512)
    rgb = _to_chw(out["rgb"], size)
    opacity = _to_chw(out["mask"][..., None], size)
    ref = _to_chw(data.reference_full(bg), size)
    raw = guidance(rgb, opacity, ref, azimuth, elevation, step, bg=bg)
    return {k: getattr(cfg.guidance, GUIDANCE_WEIGHTS[k]) * v for k, v in raw.items()}
