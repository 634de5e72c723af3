"""Stage ``texture``: mesh, UV atlas and albedo texture from the refined field (design.md §4).

1. marching cubes of the field's zero level set at ``mc_res``³ over the scene box (chunked);
2. clean-up: small components (floaters) removed, small holes closed (``geometry/mesh_ops.py``);
3. quadric decimation to ``target_faces`` *before* unwrapping, so xatlas takes seconds, not minutes;
4. xatlas UV atlas (``geometry/uv_atlas.py``) and the colour field baked into a ``texture_size``² albedo
   with seam padding (``render/bake.py``);
5. optionally ``refine_steps`` of texture refinement (``train/texture_fit.py``): reference RGB on the
   front view, Ref-SDS on other views when Stable Diffusion is installed.

Writes ``texture/mesh.obj`` + ``mesh.mtl`` + ``albedo.png`` (world frame: z up, facing +x), ``baked.png``
(the albedo before refinement), ``ckpt/last.pt`` and ``preview/step_XXXXX.png``. The mesh is written
first and always read back from ``mesh.obj``, so a resumed run optimises exactly the same mesh.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from humanref_cli.workspace import Workspace

SCENE_BOX = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))


def texture_inputs(ws: Workspace, with_guidance: bool) -> list[Path]:
    refine, prep = ws.root / "refine", ws.root / "prep"
    inputs = [refine / "field.safetensors", refine / "field.json", prep / "image.png", prep / "mask.png"]
    if with_guidance:  # the prompt and the parsing steer Ref-SDS
        inputs += [prep / n for n in ("prompt.txt", "regions.json") if (prep / n).exists()]
    return inputs


def build_uv_mesh(sdf_fn, cfg, rt, device="cpu", level: float = 0.0):
    """Steps 1-3 + unwrap (marching cubes at SDF ``level``): returns a ``UVMesh`` and a dict of
    counts/timings for the manifest."""
    import torch

    from humanref_cli.errors import UpstreamError
    from humanref_cli.geometry.isosurface import extract_mesh
    from humanref_cli.geometry.mesh_ops import clean_mesh, decimate
    from humanref_cli.geometry.uv_atlas import unwrap

    facts: dict[str, Any] = {}
    t0 = time.monotonic()
    with torch.no_grad():
        vertices, faces = extract_mesh(sdf_fn, cfg.mc_res, SCENE_BOX, cfg.mc_chunk, device, level)
    vertices, faces = np.asarray(vertices, np.float32), np.asarray(faces, np.int64)
    seconds = round(time.monotonic() - t0, 2)
    facts["marching_cubes"] = {"faces": len(faces), "level": round(level, 6), "seconds": seconds}
    if len(faces) == 0:
        raise UpstreamError(
            "the refined field has no surface (empty zero level set)",
            hint="rerun `humanref refine` (or coarse) with --force",
        )
    t0 = time.monotonic()
    vertices, faces = clean_mesh(
        vertices, faces, min_component_ratio=cfg.min_component_ratio, max_hole_edges=cfg.max_hole_edges
    )
    vertices, faces = decimate(vertices, faces, cfg.target_faces)
    facts["cleaned_decimated"] = {"faces": len(faces), "seconds": round(time.monotonic() - t0, 2)}
    rt.info(f"texture: mesh {facts['marching_cubes']['faces']} -> {len(faces)} faces; unwrapping")
    t0 = time.monotonic()
    atlas = unwrap(
        vertices, faces, texture_size=cfg.texture_size, padding=cfg.padding, max_faces=cfg.max_unwrap_faces
    )
    facts["uv_atlas"] = {"vertices": len(atlas.vertices), "seconds": round(time.monotonic() - t0, 2)}
    return atlas, facts


def run_texture(
    ws: Workspace,
    cfg,
    rt,
    *,
    force: bool = False,
    models_dir: Path | None = None,
) -> dict[str, Any]:
    from humanref_cli.stages.optimise import guidance_models

    ws.require("refine")
    gcfg = cfg.guidance
    models = guidance_models(gcfg, models_dir) if cfg.refine_steps > 0 else {}
    inputs = texture_inputs(ws, bool(models))
    key = ws.stage_key("texture", cfg, inputs, models)
    if not force and ws.is_fresh("texture", key):
        rt.info("texture: up to date")
        return ws.summary("texture")
    guidance = None
    if cfg.refine_steps > 0:
        from humanref_cli.guidance.build import build_guidance, no_sd_warning

        guidance = build_guidance(gcfg, ws.root / "prep", rt.device, models_dir)
    with (
        ws.stage(
            "texture",
            key=key,
            cfg=cfg,
            inputs=inputs,
            models=models,
            steps=cfg.refine_steps,
            rt=rt,
            force=force,
        ) as run,
        rt.interruptible(),
    ):
        rt.seed_everything()
        mesh_path = run.dir / "mesh.obj"
        resume = run.resume_checkpoint()
        if resume is None or not mesh_path.exists():
            resume = None
            facts = _bake_stage_mesh(ws, cfg, rt, run.dir)
            run.note(**facts)
        if cfg.refine_steps > 0:
            run.note(guidance=guidance.name if guidance is not None else "none (front-view RGB only)")
            if guidance is None and gcfg.mode != "none":
                rt.warn(no_sd_warning("texture"))
            if guidance is None:
                rt.warn(
                    "texture: no diffusion guidance: only the front view is refined against the photo; "
                    "the unseen side keeps the colours baked from the field (not Ref-SDS)"
                )
            scalars = _refine(ws, cfg, rt, run, key, resume, guidance)
            run.note(final_losses={k: round(v, 6) for k, v in scalars.items()})
        run.set_step(cfg.refine_steps, flush=True)
        outputs = [run.dir / n for n in ("mesh.obj", "mesh.mtl", "albedo.png", "baked.png")]
        run.add_output(*outputs, *sorted((run.dir / "preview").glob("*.png")))
    return {
        "stage": "texture",
        "mesh": str(mesh_path),
        "albedo": str(run.dir / "albedo.png"),
        "steps": cfg.refine_steps,
    }


def _bake_stage_mesh(ws: Workspace, cfg, rt, out_dir: Path) -> dict[str, Any]:
    """Extract, clean, decimate, unwrap and bake; writes mesh.obj/.mtl, albedo.png and baked.png."""
    from humanref_cli.geometry.field import load_field
    from humanref_cli.geometry.formats import TexturedMesh, write_obj
    from humanref_cli.io import write_png
    from humanref_cli.render.bake import bake_texture
    from humanref_cli.render.turntable import contact_sheet

    field = load_field(ws.root / "refine", rt.device)
    field.eval()
    from humanref_cli.stages.optimise import extraction_level

    level = extraction_level(field, cfg.mc_at_silhouette, rt, "texture")
    rt.info(f"texture: marching cubes at {cfg.mc_res}^3")
    atlas, facts = build_uv_mesh(field.sdf, cfg, rt, device=rt.device, level=level)
    t0 = time.monotonic()
    albedo, covered = bake_texture(
        atlas.vertices,
        atlas.faces,
        atlas.uvs,
        field.color,
        size=cfg.texture_size,
        padding=cfg.padding,
        chunk=cfg.bake_chunk,
        device=rt.device,
    )
    facts["bake"] = {
        "texture_size": cfg.texture_size,
        "coverage": round(float(covered.mean()), 4),
        "seconds": round(time.monotonic() - t0, 2),
    }
    baked = (np.clip(albedo, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    write_png(out_dir / "baked.png", baked)
    mesh = TexturedMesh(atlas.vertices, atlas.faces, atlas.uvs, baked)
    write_obj(out_dir / "mesh.obj", mesh, texture_name="albedo.png")
    write_png(
        out_dir / "preview" / "step_00000.png", contact_sheet(mesh, size=cfg.preview_res, supersample=1)
    )
    return facts


def _refine(ws: Workspace, cfg, rt, run, key: str, resume: Path | None, guidance) -> dict[str, float]:
    import torch

    from humanref_cli.geometry.formats import TexturedMesh, read_obj, smooth_normals
    from humanref_cli.io import read_png, write_png
    from humanref_cli.render.turntable import contact_sheet
    from humanref_cli.stages.optimise import stage_loop_io
    from humanref_cli.train.data import load_train_data
    from humanref_cli.train.texture_fit import LearnableTexture, MeshTensors, fit_texture, pyramid_finest

    mesh = read_obj(run.dir / "mesh.obj")
    device = rt.device
    tensors = MeshTensors(
        vertices=torch.as_tensor(mesh.vertices, device=device),
        faces=torch.as_tensor(mesh.faces, device=device),
        uvs=torch.as_tensor(mesh.uvs, device=device),
        normals=torch.as_tensor(smooth_normals(mesh.vertices, mesh.faces), device=device),
    )
    baked = torch.as_tensor(read_png(run.dir / "baked.png")[..., :3], dtype=torch.float32) / 255.0
    finest = pyramid_finest(cfg.texture_size, cfg.refine_res)
    texture = LearnableTexture(baked, finest, cfg.pyramid_levels).to(device)
    # the texture's fallback refines the front view only: no back-view colours to build
    data = load_train_data(ws.root / "prep", cfg.refine_res, device, cover_back_face=False)

    def preview(tex: LearnableTexture, path: Path) -> None:
        write_png(
            path,
            contact_sheet(
                TexturedMesh(mesh.vertices, mesh.faces, mesh.uvs, tex.to_uint8()),
                size=cfg.preview_res,
                supersample=1,
            ),
        )

    io = stage_loop_io(run, key, resume)
    scalars = fit_texture(texture, tensors, data, cfg, rt, io, guidance=guidance, preview=preview)
    write_png(run.dir / "albedo.png", texture.to_uint8())  # mesh.obj/.mtl already point at it
    return scalars
