"""``humanref run``: every stage in order, skipping fresh ones and resuming interrupted ones.

Each stage decides for itself whether it is up to date (its key) and whether to resume (its
checkpoint), so the pipeline is only the order, the per-stage configs and an overall progress line.
The first failing stage's error (and exit code) ends the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from humanref_cli.configs.stage_configs import STAGES, preset_name, resolve_config
from humanref_cli.errors import UsageError
from humanref_cli.workspace import Workspace


@dataclass
class PipelineOptions:
    photo: Path
    preset: str = "auto"
    sets: list[str] = field(default_factory=list)
    config: Path | None = None
    until: str | None = None
    from_stage: str | None = None
    guidance: str | None = None
    require_guidance: bool = False
    prompt: str | None = None
    mask: Path | None = None
    allow_partial: bool = False
    force: bool = False
    models_dir: Path | None = None


def split_sets(sets: list[str]) -> dict[str, list[str]]:
    """``["coarse.steps=5", "export.formats=glb"]`` -> per-stage lists with the prefix removed."""
    per_stage: dict[str, list[str]] = {s: [] for s in STAGES}
    for item in sets:
        key = item.split("=", 1)[0]
        stage = key.split(".", 1)[0]
        if stage not in per_stage or "." not in key:
            raise UsageError(
                f"--set {item!r} in `humanref run` must name its stage",
                hint="prefix the key with the stage, e.g. --set coarse.steps=500",
            )
        per_stage[stage].append(item.split(".", 1)[1])
    return per_stage


def selected_stages(until: str | None, from_stage: str | None) -> tuple[list[str], list[str]]:
    """(stages to run, stages forced to rerun) for ``--until`` / ``--from``."""
    for name, value in (("--until", until), ("--from", from_stage)):
        if value is not None and value not in STAGES:
            raise UsageError(f"{name} {value!r} is not a stage", hint=f"use one of {', '.join(STAGES)}")
    last = STAGES.index(until) if until else len(STAGES) - 1
    first_forced = STAGES.index(from_stage) if from_stage else len(STAGES)
    if first_forced > last and from_stage is not None:
        raise UsageError(f"--from {from_stage} comes after --until {until}")
    run = list(STAGES[: last + 1])
    return run, [s for s in run if STAGES.index(s) >= first_forced]


def run_pipeline(ws: Workspace, opts: PipelineOptions, rt: Any) -> dict[str, Any]:
    stages, forced = selected_stages(opts.until, opts.from_stage)
    per_stage = split_sets(opts.sets)
    guidance_sets = []
    if opts.guidance is not None:
        guidance_sets.append(f"guidance.mode={opts.guidance}")
    if opts.require_guidance:
        guidance_sets.append("guidance.require_guidance=true")
    # Resolve every config first: a bad key fails before hours of work, not after.
    configs = {
        s: resolve_config(
            s,
            opts.preset,
            per_stage[s] + (guidance_sets if s in ("coarse", "refine") else []),
            opts.config,
            rt.device_name,
        )
        for s in stages
    }
    rt.info(f"preset {preset_name(opts.preset, rt.device_name)} on {rt.device.type}")
    results: dict[str, Any] = {}
    t0 = time.monotonic()
    for i, stage in enumerate(stages, start=1):
        rt.info(f"[{i}/{len(stages)}] {stage} (elapsed {time.monotonic() - t0:.0f}s)")
        rt.seed_everything()
        force = opts.force or stage in forced
        results[stage] = _run_stage(stage, ws, configs[stage], rt, force, opts)
    rt.info(f"done in {time.monotonic() - t0:.0f}s")
    out: dict[str, Any] = {"workspace": str(ws.root)}
    final = results.get(stages[-1], {})
    if isinstance(final, dict):
        out.update({k: v for k, v in final.items() if not isinstance(v, dict | list)})
    return out


def _run_stage(stage: str, ws: Workspace, cfg: Any, rt: Any, force: bool, opts: PipelineOptions) -> Any:
    if stage == "prep":
        from humanref_cli.stages.prep import run_prep

        return run_prep(
            ws,
            opts.photo,
            cfg,
            rt,
            force=force,
            mask=opts.mask,
            person=None,
            allow_partial=opts.allow_partial,
            prompt=opts.prompt,
            models_dir=opts.models_dir,
        )
    if stage == "coarse":
        from humanref_cli.stages.coarse import run_coarse

        return run_coarse(ws, cfg, rt, force=force, models_dir=opts.models_dir)
    if stage == "refine":
        from humanref_cli.stages.refine import run_refine

        return run_refine(ws, cfg, rt, force=force, models_dir=opts.models_dir)
    if stage == "texture":
        from humanref_cli.stages.texture import run_texture

        return run_texture(ws, cfg, rt, force=force, models_dir=opts.models_dir)
    from humanref_cli.stages.export import run_export

    return run_export(ws, cfg, rt, force=force)
