"""What every command shares: error -> exit-code translation, stdout results, common options.

Results (paths, JSON) go to stdout; messages go to stderr. A ``HumanrefError`` becomes
``error: ...`` / ``hint: ...`` on stderr and its exit code; anything else is an internal error
(exit 1) whose traceback is shown only with ``--debug`` (or ``HUMANREF_DEBUG=1``).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from humanref_cli.errors import HumanrefError

err_console = Console(stderr=True, highlight=False)


def print_error(message: str, hint: str | None = None) -> None:
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    if hint:
        err_console.print(f"[cyan]hint:[/] {hint}", markup=True, highlight=False, soft_wrap=True)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for command bodies: map errors to exit codes without tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug")) or os.environ.get("HUMANREF_DEBUG") == "1"
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except HumanrefError as e:
            print_error(e.message, e.hint)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            print_error("interrupted", "rerun the same command to resume")
            raise typer.Exit(130) from None
        except Exception as e:  # the only place an unexpected error is caught
            if debug:
                traceback.print_exc()
            print_error(
                f"internal error: {type(e).__name__}: {e}",
                None if debug else "rerun with --debug for the traceback, and report it",
            )
            raise typer.Exit(1) from None

    return wrapper


def emit(result: Any, as_json: bool, human: Callable[[Any], None] | None = None) -> None:
    """Print a command's result on stdout: JSON with ``--json``, else ``human(result)`` or lines."""
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    elif human is not None:
        human(result)
    elif isinstance(result, dict):
        for k, v in result.items():
            sys.stdout.write(f"{k}: {v}\n")
    else:
        sys.stdout.write(f"{result}\n")
    sys.stdout.flush()


# Options shared by the commands.
WsArg = Annotated[Path, typer.Argument(help="Workspace directory (one per subject).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if available), cpu or cuda.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (python, numpy, torch).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Rerun even if up to date; discard a checkpoint.")]
PresetOpt = Annotated[
    str, typer.Option("--preset", help="paper, fast or cpu; auto = paper on CUDA, cpu otherwise.")
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config value, e.g. --set lambda_rgb=1000.")
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML file with config overrides.")]
ModelsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--models-dir",
        envvar="HUMANREF_MODELS",
        help="Folder of pulled models (default ~/.cache/humanref/models; the HF cache too).",
    ),
]


def make_runtime(device: str, seed: int, quiet: bool):
    """The command's runtime. ``--quiet`` also hides the Hugging Face libraries' own progress bars
    (weight loading); they read this switch once, when first imported, which is after this point."""
    from humanref_cli.runtime import Runtime

    if quiet:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    return Runtime(device_name=device, seed=seed, quiet=quiet)


def print_paths(result: dict[str, Any]) -> None:
    for key, value in result.items():
        if isinstance(value, dict | list):
            continue
        sys.stdout.write(f"{key}: {value}\n")
