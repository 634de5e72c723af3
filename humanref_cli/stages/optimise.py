"""The body shared by the ``coarse`` and ``refine`` stages: key, guidance, training loop, outputs.

A stage differs only in its config and in how it makes its starting field (``make_field``): coarse
builds one at the body prior, refine loads the coarse field. Everything else (freshness key, resume,
guidance or its documented fallback, checkpoints, previews, ``field.safetensors`` + ``field.json``,
``mesh.ply``) is here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from humanref_cli.train.data import FACE_FILES, PREP_FILES
from humanref_cli.workspace import Workspace

OPTIONAL_PREP_FILES = ("regions.json", "prompt.txt", *FACE_FILES)
"""Read when present (by the guidance; the face files by the back view's fallback colours): part of the
key so a new prompt, parsing or keypoints reruns the stage."""


def prep_inputs(ws: Workspace) -> list[Path]:
    prep = ws.root / "prep"
    return [prep / n for n in PREP_FILES] + [prep / n for n in OPTIONAL_PREP_FILES if (prep / n).exists()]


def guidance_models(cfg, models_dir: Path | None) -> dict[str, str]:
    """Model ids the guidance will use, found without loading anything (for the freshness key)."""
    if cfg.mode == "none":
        return {}
    from humanref_cli.models.store import find_model, model_id

    if find_model("sd15", models_dir) is None:
        return {}
    return {role: model_id(role) for role in ("sd15", "clip", "lpips") if find_model(role, models_dir)}


def without_body_normal_boost(cfg, ws: Workspace, rt):
    """``cfg`` with the normal-weight boosts at 1 when prep's normal maps are the body's own.

    The released code boosts the normal term x10 and x100 late in training to pull detail from an
    estimated normal map. Rendered from the fitted body, the maps hold nothing the body prior lacks,
    and the boosted term only adds centimetre ripples (docs/decisions.md 24). ``loss.boost_body_normals``
    keeps the released schedule; a prep record without a normal source (tests' synthetic preps) too.
    """
    from dataclasses import replace

    loss = cfg.loss
    notes = (ws.record("prep") or {}).get("notes", {})
    if loss.boost_body_normals or notes.get("normals_source") != "body":
        return cfg
    if loss.normal_boost == 1.0 and loss.normal_boost2 == 1.0:
        return cfg
    if cfg.end_step > loss.normal_boost_step:
        rt.info(
            "normal maps are the fitted body's own: the normal term is not boosted "
            "(--set loss.boost_body_normals=true restores the released x10/x100)"
        )
    return replace(cfg, loss=replace(loss, normal_boost=1.0, normal_boost2=1.0))


def run_optim_stage(
    name: str,
    ws: Workspace,
    cfg,
    rt,
    *,
    inputs: list[Path],
    make_field: Callable[[Any, bool], Any],
    force: bool = False,
    models_dir: Path | None = None,
) -> dict[str, Any]:
    """Run stage ``name``; ``make_field(device, fresh)`` gives the start field (``fresh``: not resuming).

    ``force`` reruns a fresh stage and discards its checkpoint; ``models_dir`` is where the guidance's
    models are looked up (``cfg.guidance.require_guidance`` fails instead of falling back when they
    are missing).
    """
    import time

    import torch

    from humanref_cli.geometry.field import save_field
    from humanref_cli.guidance.build import build_guidance, no_sd_warning
    from humanref_cli.render.occupancy import OccupancyGrid
    from humanref_cli.train.data import load_train_data
    from humanref_cli.train.loop import train

    cfg = without_body_normal_boost(cfg, ws, rt)
    gcfg = cfg.guidance
    models = guidance_models(gcfg, models_dir)
    key = ws.stage_key(name, cfg, inputs, models)
    if not force and ws.is_fresh(name, key):
        rt.info(f"{name}: up to date")
        return ws.summary(name)
    prep = ws.root / "prep"
    guidance = build_guidance(gcfg, prep, rt.device, models_dir)
    with (
        ws.stage(
            name, key=key, cfg=cfg, inputs=inputs, models=models, steps=cfg.end_step, rt=rt, force=force
        ) as run,
        rt.interruptible(),
    ):
        run.note(guidance=guidance.name if guidance is not None else "none (fallback: design.md §4)")
        if guidance is None and gcfg.mode != "none":
            rt.warn(no_sd_warning(name))
        rt.seed_everything()
        # the covered back-view colours serve only the fallback's back-view colour term
        back_colours = guidance is None and cfg.loss.lambda_back_rgb > 0
        data = load_train_data(prep, cfg.loss_res, rt.device, cfg.loss.cover_back_face and back_colours)
        resume = run.resume_checkpoint()
        field = make_field(rt.device, resume is None)
        warn_if_mesh_off_prior_grid(field, cfg.mesh_res, name, rt)
        occupancy = OccupancyGrid(
            step_size=cfg.optim.step_size, every=cfg.optim.occ_every, threshold=cfg.optim.occ_threshold
        ).to(rt.device)
        if resume is None:
            occupancy.build(field)
        io = stage_loop_io(run, key, resume)
        if rt.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(rt.device)
        started = time.perf_counter()
        scalars = train(field, occupancy, data, cfg, rt, io, guidance=guidance)
        if resume is None:  # a resumed run's time covers only part of the steps
            run.note(s_per_step=round((time.perf_counter() - started) / max(cfg.steps, 1), 4))
        if rt.device.type == "cuda":
            run.note(peak_gpu_gib=round(torch.cuda.max_memory_allocated(rt.device) / 2**30, 2))
        run.set_step(cfg.end_step, flush=True)
        paths = save_field(field, run.dir)
        level = extraction_level(field, cfg.mesh_at_silhouette, rt, name)
        mesh_path = write_mesh(field, run.dir / "mesh.ply", cfg.mesh_res, cfg.optim.chunk, level)
        run.add_output(*paths, mesh_path)
        run.note(mesh_level=round(level, 6))
        run.note(final_losses={k: round(v, 6) for k, v in scalars.items()})
    return {
        "stage": name,
        "field": str(run.dir / "field.safetensors"),
        "mesh": str(mesh_path),
        "steps": cfg.end_step,
        "losses": scalars,
    }


def warn_if_mesh_off_prior_grid(field, mesh_res: int, stage: str, rt) -> bool:
    """Warn (and return True) when ``mesh.ply``'s marching-cubes grid is not the body prior's grid.

    The prior is trilinear on its own lattice; a mesh taken on another lattice cuts thin parts (hands,
    feet) it could have kept, finer or coarser alike (docs/decisions.md 23).
    """
    prior_res = field.prior.resolution
    if mesh_res == prior_res:
        return False
    rt.warn(
        f"{stage}: mesh_res {mesh_res} is not the body prior's grid ({prior_res}^3); a mesh off the "
        f"prior's lattice loses thin parts (docs/decisions.md 23): --set mesh_res={prior_res}"
    )
    return True


def stage_loop_io(run, key: str, resume: Path | None):
    """The training loop's ``LoopIO`` for a stage run: ``ckpt/last.pt`` and ``preview/`` in its folder."""
    from humanref_cli.train.loop import LoopIO

    return LoopIO(
        key=key,
        ckpt_path=run.dir / "ckpt" / "last.pt",
        preview_dir=run.dir / "preview",
        resume_from=resume,
        on_step=run.set_step,
    )


def extraction_level(field, at_silhouette: bool, rt, stage: str) -> float:
    """The SDF level to take the mesh at: 0 (the released code), or with ``at_silhouette`` where the
    field's renders draw its silhouette (:mod:`render.silhouette_level`); says which on stderr."""
    if not at_silhouette:
        return 0.0
    from humanref_cli.render.silhouette_level import mesh_level

    inv_std = float(field.inv_std().detach())
    level = mesh_level(inv_std)
    if level is None:
        rt.warn(f"{stage}: density too soft (inv_std {inv_std:.0f}) to place the silhouette; mesh at level 0")
        return 0.0
    rt.info(f"{stage}: mesh at the rendered silhouette, SDF level {level:.4f} (inv_std {inv_std:.0f})")
    return level


def write_mesh(field, path: Path, resolution: int, chunk: int, level: float = 0.0) -> Path:
    """Marching cubes of the field's ``level`` set (0: the zero level set) over the scene box, as PLY."""
    import torch
    import trimesh

    from humanref_cli.geometry.isosurface import extract_mesh
    from humanref_cli.io import atomic_path

    with torch.no_grad():
        device = next(field.parameters()).device
        vertices, faces = extract_mesh(field.sdf, resolution, chunk=chunk, device=device, level=level)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    with atomic_path(path) as tmp:
        mesh.export(tmp, file_type="ply")
    return path
