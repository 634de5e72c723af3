"""Stage ``refine``: the coarse field optimised at full resolution, global steps 3000-12000 (design.md §4).

Same loop as ``coarse`` at ``--res`` (512) with the normal weight x10 from step 3000 and x100 from 7200
(not when the normal maps are the fitted body's own: docs/decisions.md 24),
Ref-SDS on non-front views and the multi-step-denoise LPIPS term from 9600 when its models are
installed. Starts from ``coarse/field.safetensors``; writes the same files under ``refine/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from humanref_cli.stages.optimise import prep_inputs, run_optim_stage
from humanref_cli.workspace import Workspace


def run_refine(
    ws: Workspace, cfg, rt, *, force: bool = False, models_dir: Path | None = None
) -> dict[str, Any]:
    """Run the stage: ``force`` reruns it from scratch, ``models_dir`` is where guidance models live."""
    ws.require("coarse")
    coarse_dir = ws.root / "coarse"
    inputs = prep_inputs(ws) + [coarse_dir / "field.safetensors", coarse_dir / "field.json"]

    def make_field(device, fresh: bool):
        from humanref_cli.geometry.field import load_field

        return load_field(coarse_dir, device)

    return run_optim_stage(
        "refine",
        ws,
        cfg,
        rt,
        inputs=inputs,
        make_field=make_field,
        force=force,
        models_dir=models_dir,
    )
