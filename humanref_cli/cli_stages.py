"""Stage commands (prep, coarse, refine, texture, export, run, eval): options -> stage functions.

Registered on the app by ``cli.py``. Each command resolves its config (preset, TOML, ``--set``),
builds a Runtime, seeds, and calls ``stages.<stage>.run_<stage>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from humanref_cli.cli_common import (
    ConfigOpt,
    DebugOpt,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    ModelsDirOpt,
    PresetOpt,
    QuietOpt,
    SeedOpt,
    SetOpt,
    WsArg,
    emit,
    handle_errors,
    make_runtime,
    print_paths,
)
from humanref_cli.configs.stage_configs import preset_name, resolve_config
from humanref_cli.workspace import Workspace

PhotoArg = Annotated[Path, typer.Argument(help="Photo of one person, full body (jpg/png/webp...).")]
GuidanceOpt = Annotated[
    str | None, typer.Option("--guidance", help="none, sds or refsds (default: refsds when SD is present).")
]
StrategyOpt = Annotated[
    int | None,
    typer.Option("--strategy", min=0, max=3, help="Region-aware attention strategy 0-3 (0 default)."),
]
RequireGuidanceOpt = Annotated[
    bool, typer.Option("--require-guidance", help="Exit 5 instead of running without the diffusion model.")
]
StepsOpt = Annotated[int | None, typer.Option("--steps", min=1, help="Number of optimisation steps.")]
PromptOpt = Annotated[str | None, typer.Option("--prompt", help="Text prompt (else caption).")]
MaskOpt = Annotated[Path | None, typer.Option("--mask", help="Silhouette image (white = person).")]
AllowPartialOpt = Annotated[bool, typer.Option("--allow-partial", help="Accept a photo without legs.")]


def _models_dir(option: Path | None) -> Path:
    """``--models-dir`` > ``HUMANREF_MODELS`` > ``~/.cache/humanref/models`` (where pull installs)."""
    from humanref_cli.models.store import resolve_models_dir

    return resolve_models_dir(option)


def _optim_sets(
    sets: list[str], guidance: str | None, strategy: int | None, require: bool, steps: int | None
) -> list[str]:
    """``--set`` items followed by those the coarse/refine options stand for (later ones win)."""
    extra = list(sets)
    if guidance is not None:
        extra.append(f"guidance.mode={guidance}")
    if strategy is not None:
        extra.append(f"guidance.strategy={strategy}")
    if require:
        extra.append("guidance.require_guidance=true")
    if steps is not None:
        extra.append(f"steps={steps}")
    return extra


def _config_and_runtime(
    stage: str, preset: str, sets: list[str], config: Path | None, device: str, seed: int, quiet: bool
):
    """The stage's resolved config and a seeded Runtime."""
    cfg = resolve_config(stage, preset, sets, config, device)
    rt = make_runtime(device, seed, quiet)
    rt.info(f"{stage}: preset {preset_name(preset, device)} on {rt.device.type}")
    rt.seed_everything()
    return cfg, rt


@handle_errors
def prep(
    photo: PhotoArg,
    ws: WsArg,
    res: Annotated[int | None, typer.Option("--res", min=64, max=2048, help="Crop size (512).")] = None,
    mask: MaskOpt = None,
    person: Annotated[
        int | None, typer.Option("--person", min=0, help="Which person, largest first.")
    ] = None,
    allow_partial: AllowPartialOpt = False,
    prompt: PromptOpt = None,
    preset: PresetOpt = "auto",
    set_: SetOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    models_dir: ModelsDirOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Silhouette, crop, keypoints, body fit, normals, parsing and prompt from one photo.

    Example: humanref prep photo.jpg ws/ --prompt "a man in a red jacket"
    """
    from humanref_cli.stages.prep import run_prep

    sets = list(set_ or []) + ([f"res={res}"] if res is not None else [])
    cfg, rt = _config_and_runtime("prep", preset, sets, config, device, seed, quiet)
    result = run_prep(
        Workspace(ws),
        photo,
        cfg,
        rt,
        force=force,
        mask=mask,
        person=person,
        allow_partial=allow_partial,
        prompt=prompt,
        models_dir=_models_dir(models_dir),
    )
    emit(result, as_json, print_paths)


@handle_errors
def coarse(
    ws: WsArg,
    preset: PresetOpt = "auto",
    steps: StepsOpt = None,
    guidance: GuidanceOpt = None,
    strategy: StrategyOpt = None,
    require_guidance: RequireGuidanceOpt = False,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    models_dir: ModelsDirOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Coarse SDF + colour field (steps 0-3000 of the paper schedule, 64 -> 256 px).

    Example: humanref coarse ws/ --preset fast
    """
    from humanref_cli.stages.coarse import run_coarse

    sets = _optim_sets(list(set_ or []), guidance, strategy, require_guidance, steps)
    cfg, rt = _config_and_runtime("coarse", preset, sets, config, device, seed, quiet)
    result = run_coarse(Workspace(ws), cfg, rt, force=force, models_dir=_models_dir(models_dir))
    emit(result, as_json, print_paths)


@handle_errors
def refine(
    ws: WsArg,
    res: Annotated[
        int | None, typer.Option("--res", min=32, max=1024, help="Render resolution (512).")
    ] = None,
    preset: PresetOpt = "auto",
    steps: StepsOpt = None,
    guidance: GuidanceOpt = None,
    strategy: StrategyOpt = None,
    require_guidance: RequireGuidanceOpt = False,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    models_dir: ModelsDirOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Full-resolution refinement with Ref-SDS (steps 3000-12000), from the coarse field.

    Example: humanref refine ws/ --res 512
    """
    from humanref_cli.stages.refine import run_refine

    res_sets = [f"res={res}"] if res is not None else []
    sets = _optim_sets(list(set_ or []) + res_sets, guidance, strategy, require_guidance, steps)
    cfg, rt = _config_and_runtime("refine", preset, sets, config, device, seed, quiet)
    result = run_refine(Workspace(ws), cfg, rt, force=force, models_dir=_models_dir(models_dir))
    emit(result, as_json, print_paths)


@handle_errors
def texture(
    ws: WsArg,
    preset: PresetOpt = "auto",
    set_: SetOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    models_dir: ModelsDirOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Mesh, UV atlas and albedo texture baked (and refined) from the refined field.

    Example: humanref texture ws/ --set texture_size=2048
    """
    from humanref_cli.stages.texture import run_texture

    cfg, rt = _config_and_runtime("texture", preset, list(set_ or []), config, device, seed, quiet)
    result = run_texture(Workspace(ws), cfg, rt, force=force, models_dir=_models_dir(models_dir))
    emit(result, as_json, print_paths)


@handle_errors
def export(
    ws: WsArg,
    format_: Annotated[str | None, typer.Option("--format", help="Comma list of glb,obj,ply.")] = None,
    faces: Annotated[
        int | None, typer.Option("--faces", min=100, help="Decimate to this many faces.")
    ] = None,
    preset: PresetOpt = "auto",
    set_: SetOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Final files: GLB / OBJ / PLY, a turntable video and a contact sheet.

    Example: humanref export ws/ --format glb,obj --faces 20000
    """
    from humanref_cli.stages.export import run_export

    sets = list(set_ or [])
    if format_ is not None:
        sets.append(f"formats={format_}")
    if faces is not None:
        sets.append(f"faces={faces}")
    cfg, rt = _config_and_runtime("export", preset, sets, config, device, seed, quiet)
    emit(run_export(Workspace(ws), cfg, rt, force=force), as_json, print_paths)


@handle_errors
def run(
    photo: PhotoArg,
    ws: WsArg,
    until: Annotated[str | None, typer.Option("--until", help="Stop after this stage.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Rerun from this stage on.")] = None,
    preset: PresetOpt = "auto",
    set_: SetOpt = None,
    config: ConfigOpt = None,
    guidance: GuidanceOpt = None,
    require_guidance: RequireGuidanceOpt = False,
    prompt: PromptOpt = None,
    mask: MaskOpt = None,
    allow_partial: AllowPartialOpt = False,
    force: ForceOpt = False,
    models_dir: ModelsDirOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """All stages, prep -> export, skipping fresh ones and resuming interrupted ones.

    --set keys take the stage as prefix: --set coarse.steps=500 --set export.formats=glb.
    Example: for f in photos/*.jpg; do humanref run "$f" "out/$(basename "$f" .jpg)"; done
    """
    from humanref_cli.stages.pipeline import PipelineOptions, run_pipeline

    opts = PipelineOptions(
        photo=photo,
        preset=preset,
        sets=list(set_ or []),
        config=config,
        until=until,
        from_stage=from_,
        guidance=guidance,
        require_guidance=require_guidance,
        prompt=prompt,
        mask=mask,
        allow_partial=allow_partial,
        force=force,
        models_dir=_models_dir(models_dir),
    )
    rt = make_runtime(device, seed, quiet)
    emit(run_pipeline(Workspace(ws), opts, rt), as_json, print_paths)


@handle_errors
def evaluate(
    ws: WsArg,
    gt: Annotated[Path, typer.Option("--gt", help="Synthetic subject folder (from `humanref synth`).")],
    stage: Annotated[str, typer.Option("--stage", help="Field to evaluate: refine or coarse.")] = "refine",
    res: Annotated[
        int | None,
        typer.Option("--res", help="Size of the rendered views (default: the crop's; 256 is ~4x faster)."),
    ] = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Geometry and appearance metrics against a synthetic subject's ground truth; writes ws/eval.json.

    Example: humanref eval ws/ --gt out/s3 --res 256
    """
    from humanref_cli.stages.evaluate import run_eval

    rt = make_runtime(device, 0, quiet)
    emit(run_eval(Workspace(ws), gt, rt, stage=stage, res=res), as_json)
