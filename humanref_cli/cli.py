"""The ``humanref`` command line: a thin adapter from options to stage functions.

Imports here stay light (no torch) so ``humanref --help`` is fast; each command imports what it needs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from humanref_cli import __version__
from humanref_cli.cli_common import (
    ConfigOpt,
    DebugOpt,
    DeviceOpt,
    JsonOpt,
    PresetOpt,
    QuietOpt,
    SeedOpt,
    SetOpt,
    WsArg,
    emit,
    handle_errors,
    print_paths,
)
from humanref_cli.cli_models import models_app
from humanref_cli.configs.stage_configs import resolve_config, stage_names
from humanref_cli.errors import UsageError
from humanref_cli.workspace import Workspace

app = typer.Typer(
    name="humanref",
    help="One photo of a person to a textured 3D human (HumanRef, CVPR 2024).\n\n"
    "Each stage reads and writes one workspace directory, so any stage can be resumed or rerun alone: "
    "prep -> coarse -> refine -> texture -> export, or `humanref run PHOTO WS` for all of them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(models_app, name="models", help="Pretrained weights pinned in models.lock: list, pull, verify.")


def _version_callback(value: bool) -> None:
    if value:
        print(f"humanref {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """humanref: single-image 3D human reconstruction."""


# ----------------------------------------------------------------------------- synth
@app.command()
@handle_errors
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the synthetic subject into.")],
    seed: SeedOpt = 0,
    res: Annotated[int, typer.Option("--res", min=64, max=2048, help="Image size in pixels.")] = 512,
    pose: Annotated[
        str | None,
        typer.Option(
            "--pose",
            help="Pose style instead of the seed's: standing, walking, arms_up, arms_down, arms_forward, "
            "or elbows_bent (never drawn at random).",
        ),
    ] = None,
    light: Annotated[
        str,
        typer.Option("--light", help="Where the photo is lit from: front, left or right (a side light)."),
    ] = "front",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Make a synthetic subject (Anny body, clothing-like texture) with exact ground truth.

    Example: humanref synth out/s3 --seed 3 && humanref prep out/s3/image.png ws3/
    """
    from humanref_cli.synth.pose import STYLES
    from humanref_cli.synth.subject import LIGHTS, make_subject

    if pose is not None and pose not in STYLES:
        raise UsageError(f"unknown pose style {pose!r}", hint=f"use one of {', '.join(STYLES)}")
    if light not in LIGHTS:
        raise UsageError(f"unknown light {light!r}", hint=f"use one of {', '.join(LIGHTS)}")

    def notice(message: str) -> None:
        if not quiet:
            typer.echo(f"synth: {message}", err=True)

    result = make_subject(out, seed=seed, res=res, on_first_build=notice, pose=pose, light=light)
    emit(result, as_json, print_paths)


# ----------------------------------------------------------------------------- status
@app.command()
@handle_errors
def status(ws: WsArg, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Show each stage's status, freshness, progress, time and checkpoint.

    Example: humanref status ws/ --json
    """
    from humanref_cli.status import print_table, stage_table

    table = stage_table(Workspace(ws))
    emit(table, as_json, print_table)


# ----------------------------------------------------------------------------- config
@app.command("config")
@handle_errors
def show_config(
    stage: Annotated[str, typer.Argument(help="prep, coarse, refine, texture or export.")],
    preset: PresetOpt = "auto",
    set_: SetOpt = None,
    config: ConfigOpt = None,
    ws: Annotated[
        Path | None,
        typer.Option("--ws", help="Apply this workspace's rules (e.g. no normal boost on body normals)."),
    ] = None,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Print a stage's resolved configuration: every key, its value and what it means.

    Example: humanref config refine --preset fast --set steps=2000 --ws ws/
    """
    from humanref_cli.configs.base import describe, to_dict

    cfg = resolve_config(stage, preset, set_ or [], config, device)
    workspace = Workspace(ws) if ws is not None else None
    if workspace is not None and not workspace.exists():
        raise UsageError(f"{ws} is not a humanref workspace (no manifest.json)", hint="check the path")
    if workspace is not None and stage in ("coarse", "refine"):
        from humanref_cli.runtime import Runtime
        from humanref_cli.stages.optimise import without_body_normal_boost

        # what run_optim_stage does before it runs: the effective config the manifest will record
        cfg = without_body_normal_boost(cfg, workspace, Runtime(device_name="cpu"))
    if as_json:
        emit(to_dict(cfg), True)
        return
    for key, value, help_text in describe(cfg):
        sys.stdout.write(f"{key} = {value}" + (f"    # {help_text}" if help_text else "") + "\n")


@app.command("stages", hidden=True)
def _stages() -> None:
    print(" ".join(stage_names()))


from humanref_cli import cli_stages  # noqa: E402  (stage commands live there to keep this file short)

for _command in (
    cli_stages.prep,
    cli_stages.coarse,
    cli_stages.refine,
    cli_stages.texture,
    cli_stages.export,
    cli_stages.run,
    cli_stages.evaluate,
):
    app.command(name=_command.__name__ if _command is not cli_stages.evaluate else "eval")(_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
