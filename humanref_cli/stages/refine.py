"""Stage ``refine``: the coarse field optimised at full resolution, global steps 3000-12000 (design.md §4).

Same loop as ``coarse`` at ``--res`` (512) with the normal weight x10 from step 3000 and x100 from 7200,
Ref-SDS on non-front views and the multi-step-denoise LPIPS term from 9600 when its models are
installed. Starts from ``coarse/field.safetensors``; writes the same files under ``refine/``.
"""

from __future__ import annotations

from typing import Any

from humanref_cli.stages.optimise import prep_inputs, run_optim_stage
from humanref_cli.workspace import Workspace


def run_refine(ws: Workspace, cfg, rt, **options: Any) -> dict[str, Any]:
    """Run the stage; ``options`` are ``run_optim_stage``'s: force, models_dir, require_guidance."""
    ws.require("coarse")
    coarse_dir = ws.root / "coarse"
    inputs = prep_inputs(ws) + [coarse_dir / "field.safetensors", coarse_dir / "field.json"]

    def make_field(device, fresh: bool):
        from humanref_cli.geometry.field import load_field

        return load_field(coarse_dir, device)

    return run_optim_stage("refine", ws, cfg, rt, inputs=inputs, make_field=make_field, **options)
