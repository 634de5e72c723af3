"""``humanref models ...``: what models.lock pins, fetch it, check it.

Results go to stdout (a table, or JSON with ``--json``); progress and warnings go to stderr.
Missing or corrupt models exit 5 with the ``humanref models pull`` command that fixes them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from humanref_cli.cli_common import DebugOpt, JsonOpt, emit, err_console, handle_errors
from humanref_cli.errors import MissingModel, UsageError

models_app = typer.Typer(
    help="Pretrained weights pinned in models.lock: list, pull, verify, path, lock.\n\n"
    "Models live in --models-dir (default $HUMANREF_MODELS, else ~/.cache/humanref/models) as "
    "<dir>/<role>/<files as in the repo>; models already in the Hugging Face cache are found too.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

ModelsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--models-dir",
        envvar="HUMANREF_MODELS",
        help="Folder of pulled models (default: $HUMANREF_MODELS, else ~/.cache/humanref/models).",
    ),
]
LockOpt = Annotated[
    Path | None,
    typer.Option("--lock", help="models.lock to use (default: the copy shipped with humanref)."),
]
RolesArg = Annotated[list[str] | None, typer.Argument(help="Roles, e.g. sd15 clip (default: all).")]


def _setup(models_dir: Path | None, lock_path: Path | None):
    from humanref_cli.models.lock import load_lock
    from humanref_cli.models.store import resolve_models_dir

    return load_lock(lock_path), resolve_models_dir(models_dir)


def _human_size(n: int) -> str:
    """Decimal units, as the hub shows them: 2.1 GB, 600 MB, 7 KB."""
    if n <= 0:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.0f} MB"
    return f"{max(n / 1e3, 1):.0f} KB"


def _row(spec, status) -> dict:
    return {
        "role": spec.role,
        "id": spec.model_id,
        "present": status.present,
        "verified": status.verified,
        "state": status.state,
        "path": str(status.path) if status.path else None,
        "location": status.location,
        "size_bytes": spec.size_bytes,
        "size_exact": spec.size_bytes == sum(f.size for f in spec.files),
        "licence": spec.licence,
        "used_by": list(spec.used_by),
        "missing_files": list(status.missing_files),
        "bad_files": list(status.bad_files),
    }


def _print_rows(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("role", "id", "present", "verified", "size", "used by"):
        table.add_column(col, no_wrap=col in ("role", "id"))
    for r in rows:
        verified = {True: "yes", False: "NO", None: "-"}[r["verified"]]
        if r["state"] in ("unlocked", "unchecked"):
            verified = r["state"]
        size = ("" if r["size_exact"] else "~") + _human_size(r["size_bytes"])
        table.add_row(
            r["role"], r["id"], "yes" if r["present"] else "no", verified, size, ", ".join(r["used_by"])
        )
    Console(file=sys.stdout, width=200, highlight=False).print(table)


@models_app.command("list")
@handle_errors
def list_models(
    models_dir: ModelsDirOpt = None,
    lock_path: LockOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show every role: model id@revision, present, verified, size and the stages that use it.

    'verified' uses the hashes remembered by pull/verify (it never re-hashes); 'unchecked' means
    run `humanref models verify`, 'unlocked' that models.lock has no sha256 for it yet.

    Example: humanref models list --json
    """
    from humanref_cli.models.store import model_status

    lock, mdir = _setup(models_dir, lock_path)
    rows = [_row(spec, model_status(role, mdir, lock=lock)) for role, spec in lock.models.items()]
    emit(rows, as_json, _print_rows)


@models_app.command("pull")
@handle_errors
def pull_models(
    roles: RolesArg = None,
    all_: Annotated[bool, typer.Option("--all", help="Pull every role (about 9 GB).")] = False,
    mirror: Annotated[
        Path | None,
        typer.Option("--from", help="Install from a local folder: DIR/<role>/... or DIR/<repo_id>/..."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch again even if the files are in place.")
    ] = False,
    models_dir: ModelsDirOpt = None,
    lock_path: LockOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Download (or copy from --from DIR) the pinned files of ROLES into the models dir.

    Files are hashed and checked against models.lock's sha256 where recorded; a mismatch deletes
    the file and exits 5. Files already in place and matching are skipped.

    Examples: humanref models pull sd15 clip;  humanref models pull --all --from /media/usb/models
    """
    from humanref_cli.models.pull import pull

    lock, mdir = _setup(models_dir, lock_path)
    if not roles and not all_:
        raise UsageError(
            "name the roles to pull, or pass --all", hint="`humanref models list` shows the roles"
        )
    if mirror is not None and not mirror.is_dir():
        raise UsageError(
            f"--from {mirror} is not a folder", hint="pass the folder that holds <role>/ folders"
        )
    wanted = list(lock.models) if all_ else list(dict.fromkeys(roles))
    specs = [lock.spec(r) for r in wanted]  # unknown roles fail before anything is downloaded
    results = []
    with _ByteProgress() as bars:
        for spec in specs:
            res = pull(spec, mdir, mirror=mirror, force=force, say=bars.say, progress=bars.update)
            results.append(res)
    rows = []
    for res in results:
        if res.unverified:
            err_console.print(
                f"warning: {res.role}: no sha256 in models.lock for {len(res.unverified)} file(s); "
                "installed unverified (run `humanref models lock --update` online to pin them)",
                markup=False,
            )
        rows.append(
            {
                "role": res.role,
                "path": str(res.path),
                "fetched": list(res.fetched),
                "skipped": list(res.skipped),
            }
        )
    emit(rows, as_json, _print_pulled)


def _print_pulled(rows: list[dict]) -> None:
    for r in rows:
        sys.stdout.write(f"{r['role']}: {r['path']}\n")


class _ByteProgress:
    """Rich download bars on stderr (with ETA), one per file, plus plain status lines."""

    def __enter__(self):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        self._bars = Progress(*columns, TimeRemainingColumn(), console=err_console, transient=True)
        self._tasks: dict[str, int] = {}
        self._bars.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bars.__exit__(*exc)

    def say(self, message: str) -> None:
        self._bars.console.print(message, markup=False, highlight=False)

    def update(self, name: str, done: int, total: int | None) -> None:
        if name not in self._tasks:
            self._tasks[name] = self._bars.add_task(name, total=total)
        self._bars.update(self._tasks[name], completed=done)


@models_app.command("verify")
@handle_errors
def verify_models(
    roles: RolesArg = None,
    models_dir: ModelsDirOpt = None,
    lock_path: LockOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Re-hash the files of ROLES (default: every installed role) and compare with models.lock.

    Exits 5 when a named role is missing or any file is incomplete or corrupt.

    Example: humanref models verify sd15
    """
    from humanref_cli.models.pull import verify
    from humanref_cli.models.store import find_model, pull_hint

    lock, mdir = _setup(models_dir, lock_path)
    if roles:
        wanted = [lock.spec(r).role for r in dict.fromkeys(roles)]
    else:
        wanted = [r for r in lock.models if find_model(r, mdir, lock=lock) is not None]
        if not wanted:
            err_console.print("no models installed; nothing to verify", markup=False)
    statuses = [verify(lock.spec(r), mdir, lock=lock) for r in wanted]
    emit([_row(lock.spec(s.role), s) for s in statuses], as_json, _print_rows)
    for s in statuses:
        if s.state in ("unlocked", "unchecked"):
            err_console.print(
                f"warning: {s.role}: models.lock has no sha256 for some files; not verified", markup=False
            )
    for s in statuses:
        if not s.present:
            what = f"missing {', '.join(s.missing_files)}" if s.path else "not installed"
            raise MissingModel(f"model '{s.role}' is {what}", hint=pull_hint(s.role))
        if s.bad_files:
            raise MissingModel(
                f"model '{s.role}': sha256 mismatch for {', '.join(s.bad_files)} in {s.path}",
                hint=f"humanref models pull {s.role}  (re-fetches the corrupt files)",
            )


@models_app.command("path")
@handle_errors
def model_path(
    role: Annotated[str, typer.Argument(help="Role, e.g. sd15.")],
    models_dir: ModelsDirOpt = None,
    lock_path: LockOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Print the folder holding ROLE's files (exit 5 with the pull command if it is not installed).

    Example: ls "$(humanref models path sd15)"
    """
    from humanref_cli.models.store import require_model

    lock, mdir = _setup(models_dir, lock_path)
    sys.stdout.write(f"{require_model(role, mdir, lock=lock)}\n")


@models_app.command("lock")
@handle_errors
def lock_cmd(
    roles: RolesArg = None,
    update: Annotated[
        bool, typer.Option("--update", help="Fill empty revisions, sha256 and sizes (needs internet).")
    ] = False,
    mirror: Annotated[
        Path | None, typer.Option("--from", help="With --update: hash local files (DIR/<role>/...) instead.")
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="With --update: move hub roles to the current main revision.")
    ] = False,
    lock_path: LockOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Check models.lock, or with --update fill in what is missing from the hub.

    --update writes --lock PATH (default ./models.lock); keep humanref_cli/data/models.lock, the
    copy shipped in the package, identical to it.

    Examples: humanref models lock;  humanref models lock --update --lock models.lock
    """
    from humanref_cli.models.lock import load_lock, write_lock

    if not update:
        if mirror is not None or latest:
            raise UsageError("--from and --latest only apply with --update", hint="add --update")
        lock = load_lock(lock_path)
        locked = sum(spec.locked for spec in lock.models.values())
        where = lock.path or "humanref_cli/data/models.lock (packaged)"
        sys.stdout.write(f"{where}: {len(lock.models)} roles, {locked} fully locked\n")
        return
    from humanref_cli.models.update import update_lock

    target = lock_path or Path("models.lock")
    if not target.is_file():
        raise UsageError(f"{target} not found", hint="run from the repository root or pass --lock PATH")
    lock = load_lock(target)
    new = update_lock(
        lock, roles, mirror=mirror, latest=latest, say=lambda m: err_console.print(m, markup=False)
    )
    write_lock(new, target)
    sys.stdout.write(f"{target}\n")
