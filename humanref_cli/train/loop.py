"""The optimisation loop shared by the coarse and refine stages (method.md §4-§5).

One view per step (``views.py``): render it at the ladder's resolution, resize the maps to the loss
resolution, add the weighted terms 1-7 (``losses.py``) and, on non-front views, the diffusion guidance;
one Adam step (betas 0.9/0.99, eps 1e-15, lr 1e-3 for every group); the occupancy grid is refreshed every
``occ_every`` steps. Without guidance the back view also gets the mirrored-reference colour loss
(design.md §4's documented fallback, not the method).

Resume is exact: a checkpoint holds the parameters, Adam moments, occupancy grid and every RNG state, and
is written *between* steps, so the run continues as if it had never stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from humanref_cli.errors import Interrupted
from humanref_cli.geometry.field import adam
from humanref_cli.train import losses as L
from humanref_cli.train.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from humanref_cli.train.data import TrainData
from humanref_cli.train.views import View, sample_view, view_rays

GUIDANCE_WEIGHTS = {"ref_sds": "lambda_ref_sds", "clip": "lambda_clip", "multi_denoise": "lambda_multi"}
"""Guidance loss key -> ``GuidanceConfig`` weight field."""


@dataclass
class LoopIO:
    """Where the loop writes, and how it reports. ``on_step(step)`` is called after every step."""

    key: str
    ckpt_path: Path
    preview_dir: Path | None = None
    resume_from: Path | None = None
    on_step: Any = None


def make_optimizer(field: torch.nn.Module, cfg) -> torch.optim.Adam:
    """Adam at ``optim.lr``; the colour MLP at ``optim.lr_color`` and theta at ``optim.lr_theta`` when set."""
    o = cfg.optim
    special = [(list(field.color_head.parameters()), o.lr_color), ([field.theta], o.lr_theta)]
    special = [(params, lr) for params, lr in special if lr is not None]
    ids = {id(p) for params, _ in special for p in params}
    groups = [{"params": [p for p in field.parameters() if id(p) not in ids], "lr": o.lr}]
    groups += [{"params": params, "lr": lr} for params, lr in special]
    return adam(groups, field.theta.device, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)


def _to_chw(image: torch.Tensor, size: int) -> torch.Tensor:
    """``(H, W, C)`` -> ``(1, C, size, size)``, bilinear with align_corners=True (method.md §4)."""
    x = image.permute(2, 0, 1)[None]
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)


def _to_hwc(x: torch.Tensor) -> torch.Tensor:
    return x[0].permute(1, 2, 0)


def view_losses(
    out: dict[str, torch.Tensor], view: View, data: TrainData, cfg, step: int, fallback: bool
) -> dict[str, torch.Tensor]:
    """Weighted terms 1-7 (and the fallback back-view colour term) of one rendered view."""
    lc = cfg.loss
    size = data.mask.shape[0]
    opacity = out["opacity"]
    normal_map = L.normal_map_for_loss(out["normal_unit"], opacity)  # native resolution, background -1
    terms: dict[str, torch.Tensor] = {}
    if view.kind in ("ref", "back"):
        back = view.kind == "back"
        rgb_l = _to_hwc(_to_chw(out["rgb"], size))
        opacity_l = _to_hwc(_to_chw(opacity, size))[..., 0]
        normal_l = _to_hwc(_to_chw(normal_map, size))
        mask = data.mask_back if back else data.mask  # soft: the pixel coverage at the loss resolution
        # A training ray samples its pixel's centre, so its opacity is ~0 or ~1 at the silhouette while
        # an area-filtered mask is fractional there. Both targets are built so that a pixel "wants" to
        # be covered exactly when more than half of it is (unbiased edges at any resolution):
        # - normal: the target is composited like the render, N M + M - 1, over every pixel the mask
        #   touches (a unit target on M > 0.5 only would push the surface outwards by up to half a
        #   pixel, 1.5 cm at 64 px);
        # - silhouette: the soft IoU against the binarised mask (against the soft mask it only pays to
        #   cover pixels with M above the current IoU, an inward bias of a third of a pixel).
        # With the paper's binary 512 px masks both equal the released terms.
        target = L.normal_map_for_loss(data.normal_back if back else data.normal_front, mask)
        w_n = lc.lambda_normal * lc.normal_multiplier(step)
        terms["normal"] = w_n * L.normal_loss(normal_l, target, (mask > 0).float())
        terms["iou"] = lc.lambda_iou * L.silhouette_loss(opacity_l, (mask > 0.5).float())
        if not back:
            terms["rgb"] = lc.lambda_rgb * L.rgb_loss(rgb_l, data.reference(view.background))
        elif fallback and lc.lambda_back_rgb > 0:
            terms["back_rgb"] = lc.lambda_back_rgb * L.rgb_loss(
                rgb_l, data.reference(view.background, back=True)
            )
    if out["sample_sdf"].numel() > 0:  # no sample survived pruning: no regulariser this step
        sdf = out["sample_sdf"]
        terms["sdf"] = lc.lambda_sdf * L.sdf_prior_loss(sdf, out["sample_prior_sdf"])
        terms["sdf_smooth"] = lc.lambda_sdf_smooth * L.sdf_smoothness_loss(sdf, out["sample_sdf_perturb"])
        terms["normal_3d"] = lc.lambda_normal_smooth_3d * L.normal_smoothness_3d_loss(
            out["sample_normal"], out["sample_normal_perturb"]
        )
    terms["normal_2d"] = lc.lambda_normal_smooth_2d * L.normal_smoothness_2d_loss(normal_map)
    return terms


def render_view_rays(field, occupancy, view: View, res: int, cfg, device) -> dict:
    """Render a training view (jittered rays, stratified samples); per-ray outputs as ``(res, res, C)``."""
    from humanref_cli.render.volume import render_rays

    origins, dirs = view_rays(view, res, res)
    out = render_rays(
        field,
        origins.reshape(-1, 3).to(device),
        dirs.reshape(-1, 3).to(device),
        view.background.to(device),
        occ=occupancy,
        stratified=True,
        perturb_std=cfg.loss.perturb_std,
        step_size=cfg.optim.step_size,
    )
    for key in ("rgb", "opacity", "normal", "normal_unit", "depth"):
        out[key] = out[key].reshape(res, res, -1)
    return out


def guidance_losses(
    guidance, out: dict[str, torch.Tensor], view: View, data: TrainData, cfg, step: int
) -> dict[str, torch.Tensor]:
    """Weighted guidance terms of a non-front view, the maps resized to the guidance resolution."""
    size = int(getattr(guidance, "image_size", None) or cfg.guidance.image_size or 512)
    rgb = _to_chw(out["rgb"], size)
    opacity = _to_chw(out["opacity"], size)
    ref = _to_chw(data.reference_full(view.background), size)
    raw = guidance(rgb, opacity, ref, view.azimuth, view.elevation, step, bg=view.background)
    return {k: getattr(cfg.guidance, GUIDANCE_WEIGHTS[k]) * v for k, v in raw.items()}


def train(field, occupancy, data: TrainData, cfg, rt, io: LoopIO, guidance=None) -> dict[str, float]:
    """Optimise ``field`` over global steps ``cfg.start_step .. cfg.end_step``; returns the last scalars.

    ``occupancy`` is the renderer's occupancy grid (refreshed here); ``guidance`` a Guidance or None.
    Raises :class:`Interrupted` after writing a checkpoint when ``rt.interrupted`` is set.
    """
    from humanref_cli.train.preview import write_preview

    optimizer = make_optimizer(field, cfg)
    view_gen = torch.Generator().manual_seed(int(rt.seed) + int(cfg.start_step))
    start = cfg.start_step
    if io.resume_from is not None:
        ckpt = load_checkpoint(io.resume_from, io.key, rt.device)
        field.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        occupancy.load_state_dict(ckpt["occupancy"])
        set_rng_state(ckpt["rng"], view_gen)
        start = ckpt["step"]
        rt.info(f"resuming from step {start}")
    if guidance is None:
        rt.warn(
            "no diffusion guidance: the unseen side follows the body prior, the back normal map, the "
            "mirrored silhouette and mirrored reference colours (the face covered by the top of the head's "
            "colour) only (not Ref-SDS)"
        )

    def checkpoint(next_step: int) -> None:
        save_checkpoint(
            io.ckpt_path,
            step=next_step,
            key=io.key,
            model=field,
            optimizer=optimizer,
            occupancy=occupancy.state_dict(),
            view_gen=view_gen,
        )

    scalars: dict[str, float] = {}
    last_ckpt = time.monotonic()
    with rt.progress(cfg.end_step, cfg.__class__.__name__.replace("Config", "").lower(), start=start) as bar:
        for step in range(start, cfg.end_step):
            view = sample_view(step, cfg.views, view_gen)
            res = cfg.render_res(step)
            occupancy.update(field, step)  # every occupancy.every steps, as nerfacc at the start of a step
            out = render_view_rays(field, occupancy, view, res, cfg, rt.device)
            terms = view_losses(out, view, data, cfg, step, fallback=guidance is None)
            if guidance is not None and view.kind != "ref":
                terms.update(guidance_losses(guidance, out, view, data, cfg, step))
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scalars = {
                "loss": float(loss.detach()),
                **{k: float(v.detach()) for k, v in terms.items()},
                "res": res,
            }
            bar.update(
                step + 1,
                loss=scalars["loss"],
                **{k: scalars[k] for k in ("rgb", "normal", "iou") if k in terms},
            )
            if io.on_step is not None:
                io.on_step(step + 1)
            if io.preview_dir is not None and (step + 1) % cfg.optim.preview_every == 0:
                write_preview(field, occupancy, io.preview_dir / f"step_{step + 1:05d}.png", cfg.optim)
            due = (
                step + 1
            ) % cfg.optim.ckpt_every == 0 or time.monotonic() - last_ckpt > 60 * cfg.optim.ckpt_minutes
            if due or rt.interrupted:
                checkpoint(step + 1)
                last_ckpt = time.monotonic()
            if rt.interrupted:
                raise Interrupted(f"interrupted at step {step + 1}", hint="rerun the same command to resume")
    checkpoint(cfg.end_step)
    return scalars
