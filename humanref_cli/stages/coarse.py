"""Stage ``coarse``: the SDF + colour field from the body prior, global steps 0-3000 (design.md §4).

The field starts as the fitted body (``initialize_to_prior``, method.md §3), then the loop
runs the reference/back/random view schedule at 64 -> 128 -> 256 px with Ref-SDS from step 600 when
Stable Diffusion is installed. Writes ``coarse/field.safetensors`` + ``field.json``, ``ckpt/last.pt``,
``preview/`` and ``mesh.ply``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from humanref_cli.stages.optimise import prep_inputs, run_optim_stage
from humanref_cli.workspace import Workspace


def run_coarse(
    ws: Workspace, cfg, rt, *, force: bool = False, models_dir: Path | None = None
) -> dict[str, Any]:
    """Run the stage: ``force`` reruns it from scratch, ``models_dir`` is where guidance models live."""
    ws.require("prep")
    body_path = ws.root / "prep" / "body.ply"

    def make_field(device, fresh: bool):
        import trimesh

        from humanref_cli.geometry.body_sdf import BodyPriorSDF
        from humanref_cli.geometry.field import HumanField, initialize_to_prior

        body = trimesh.load(body_path, process=False, force="mesh")
        prior = BodyPriorSDF.from_mesh(body.vertices, body.faces, resolution=cfg.prior_res)
        field = HumanField(cfg.geometry, prior).to(device)
        if fresh:  # a resumed run loads its parameters from the checkpoint instead
            rt.info(f"coarse: fitting the field to the body prior ({cfg.init_steps} steps)")
            initialize_to_prior(field, steps=cfg.init_steps, n_points=cfg.init_points)
        return field

    return run_optim_stage(
        "coarse",
        ws,
        cfg,
        rt,
        inputs=prep_inputs(ws),
        make_field=make_field,
        force=force,
        models_dir=models_dir,
    )
