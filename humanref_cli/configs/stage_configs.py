"""Resolve a stage's config: preset, then a TOML file, then ``--set`` overrides (last wins)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from humanref_cli.configs.base import PRESETS, apply_overrides, load_toml_overrides, parse_set_options
from humanref_cli.errors import UsageError
from humanref_cli.runtime import check_device_name

STAGES = ("prep", "coarse", "refine", "texture", "export")


def stage_names() -> tuple[str, ...]:
    return STAGES


def preset_name(preset: str, device: str = "auto") -> str:
    """``preset`` with ``auto`` replaced by the one for ``device`` (a ``--device`` value): ``paper`` on
    CUDA, ``cpu`` otherwise. ``--device cpu`` on a CUDA machine gets ``cpu``: the paper schedule on a
    CPU takes days."""
    check_device_name(device)
    if preset != "auto":
        return preset
    if device == "auto":
        import torch

        return "paper" if torch.cuda.is_available() else "cpu"
    return "cpu" if device == "cpu" else "paper"


def preset_config(stage: str, preset: str) -> Any:
    """The preset config of one stage (explicit imports: each stage owns its config module)."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}", hint=f"use one of {', '.join(PRESETS)} or auto")
    if stage == "prep":
        from humanref_cli.configs.prep import preset as make
    elif stage == "coarse":
        from humanref_cli.configs.optim import coarse_preset as make
    elif stage == "refine":
        from humanref_cli.configs.optim import refine_preset as make
    elif stage == "texture":
        from humanref_cli.configs.texture import texture_preset as make
    elif stage == "export":
        from humanref_cli.configs.texture import export_preset as make
    else:
        raise UsageError(f"unknown stage {stage!r}", hint=f"use one of {', '.join(STAGES)}")
    return make(preset)


def resolve_config(
    stage: str, preset: str, sets: list[str], config_file: Path | None, device: str = "auto"
) -> Any:
    """The stage's config: ``preset`` (``auto``: :func:`preset_name` of ``device``), then the TOML
    file's ``[stage]`` table, then ``--set`` items."""
    cfg = preset_config(stage, preset_name(preset, device))
    if config_file is not None:
        cfg = apply_overrides(cfg, load_toml_overrides(config_file, stage, STAGES), stage)
    return apply_overrides(cfg, parse_set_options(sets), stage)
