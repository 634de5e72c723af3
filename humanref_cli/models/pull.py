"""Install a role's files into ``<models_dir>/<role>/`` and check them against the lock.

Sources, in order of preference:

- ``mirror`` (``--from DIR``): a folder laid out like a models dir, ``DIR/<role>/<path>`` (so a
  models dir copied to a USB stick is a mirror), or like a hub download,
  ``DIR/<repo_id>/<path>`` (what ``hf download REPO --local-dir DIR/REPO`` writes). The
  ``<role>`` folder wins when both exist.
- hub roles: ``huggingface_hub.hf_hub_download`` per file at the pinned revision.
- url roles: a streamed HTTPS download of each file's ``url`` (``file://`` works too).

Each file lands in ``<models_dir>/.staging/<role>/`` first, is hashed, and only then is moved
into place with ``os.replace``; a role counts as present only when every file is in place, so an
interrupted pull never looks installed. A sha256 mismatch deletes the staged file and raises
``MissingModel`` (exit 5: the model is still missing). A file already in place whose hash matches
the lock (or, while the lock has no hash, that exists) is skipped unless ``force``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub.errors import EntryNotFoundError, HTTPError

from humanref_cli.errors import MissingModel
from humanref_cli.models.lock import Lock, ModelFile, ModelSpec
from humanref_cli.models.store import (
    ModelStatus,
    current_hashes,
    hash_file,
    model_status,
    remember_hash,
    role_dir,
)

# Network and missing-entry failures of huggingface_hub, urllib and the file system.
NETWORK_ERRORS = (OSError, HTTPError, EntryNotFoundError)
Say = Callable[[str], None]
Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class PullResult:
    """What ``pull`` did: the role directory and the files fetched, skipped and left unverified."""

    role: str
    path: Path
    fetched: tuple[str, ...]
    skipped: tuple[str, ...]
    unverified: tuple[str, ...]  # installed but the lock records no sha256 for them


def mirror_root(spec: ModelSpec, mirror: Path) -> Path:
    """``mirror/<role>`` or ``mirror/<repo_id>``, whichever exists first; MissingModel if neither."""
    candidates = [Path(mirror) / spec.role, Path(mirror) / spec.repo_id]
    for root in candidates:
        if root.is_dir():
            return root
    looked = " or ".join(str(c) for c in candidates)
    raise MissingModel(
        f"mirror has no '{spec.role}': looked for {looked}",
        hint=f"copy the files to {candidates[0]}/ (same layout as the repo)",
    )


def pull(
    spec: ModelSpec,
    models_dir: Path,
    *,
    mirror: Path | None = None,
    force: bool = False,
    endpoint: str | None = None,
    say: Say = lambda msg: None,
    progress: Progress | None = None,
) -> PullResult:
    """Install every file of ``spec`` under ``models_dir/<role>/``, verifying sha256 where recorded.

    ``say`` gets one line per file; ``progress(name, bytes_done, bytes_total or None)`` follows URL
    downloads (the hub downloader draws its own bars).
    """
    dest_root = role_dir(models_dir, spec.role)
    staging = Path(models_dir) / ".staging" / spec.role
    source_root = mirror_root(spec, mirror) if mirror is not None else None
    have = {} if force else current_hashes(dest_root, spec, rehash=False, remember=False)
    fetched, skipped, unverified = [], [], []
    reachable = False
    for f in spec.files:
        if not force and _already_installed(dest_root, f, have):
            skipped.append(f.path)
            continue
        if spec.source == "hf" and source_root is None and not reachable:
            hub_preflight(spec, endpoint)
            reachable = True
        say(f"{spec.role}: fetching {f.path}")
        staged = staging / f.path
        staged.parent.mkdir(parents=True, exist_ok=True)
        _fetch(spec, f, staged, source_root, staging, endpoint, progress)
        digest = hash_file(staged)
        if f.sha256 and digest != f.sha256:
            staged.unlink()
            origin = source_root or spec.repo_id
            raise MissingModel(
                f"{spec.role}: sha256 mismatch for {f.path} from {origin} "
                f"(expected {f.sha256[:12]}..., got {digest[:12]}...); the bad file was deleted",
                hint="the source is corrupt or the lock is stale: pull again, "
                "or run `humanref models lock --update`",
            )
        target = dest_root / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
        remember_hash(dest_root, f.path, digest)
        fetched.append(f.path)
        if not f.sha256:
            unverified.append(f.path)
    shutil.rmtree(staging, ignore_errors=True)
    _remove_empty(staging.parent)
    return PullResult(spec.role, dest_root, tuple(fetched), tuple(skipped), tuple(unverified))


def _already_installed(dest_root: Path, f: ModelFile, have: dict[str, str]) -> bool:
    target = dest_root / f.path
    if not target.is_file():
        return False
    if not f.sha256:
        return True
    digest = have.get(f.path) or hash_file(target)
    if digest == f.sha256:
        remember_hash(dest_root, f.path, digest)
        return True
    return False


def _fetch(
    spec: ModelSpec,
    f: ModelFile,
    staged: Path,
    mirror_root: Path | None,
    staging: Path,
    endpoint: str | None,
    progress: Progress | None,
) -> None:
    """Put the bytes of ``f`` at ``staged`` (overwriting) from the mirror, the hub or its URL."""
    if mirror_root is not None:
        src = mirror_root / f.path
        if not src.is_file():
            raise MissingModel(
                f"mirror {mirror_root} lacks {f.path} of '{spec.role}'", hint=pull_mirror_hint(spec)
            )
        shutil.copyfile(src, staged)
    elif spec.source == "url":
        name = f"{spec.role}/{f.path}"
        download_url(f.url, staged, None if progress is None else lambda d, t: progress(name, d, t))
    else:
        _hub_download(spec, f, staging, endpoint)


def pull_mirror_hint(spec: ModelSpec) -> str:
    return f"complete the mirror, or pull online: humanref models pull {spec.role}"


def hub_preflight(spec: ModelSpec, endpoint: str | None) -> None:
    """One quick request before downloading: fails at once offline (the downloader retries for ~25 s)
    and turns a wrong repo id or revision into a clear message."""
    from huggingface_hub import HfApi

    try:
        HfApi(endpoint=endpoint).model_info(spec.repo_id, revision=spec.revision or None, timeout=15)
    except NETWORK_ERRORS as exc:
        raise MissingModel(
            f"cannot reach the Hugging Face hub for {spec.repo_id}@{spec.revision or 'main'}: "
            f"{describe_error(exc)}",
            hint=f"check the network, or use a local mirror: humanref models pull {spec.role} --from DIR",
        ) from exc


def _hub_download(spec: ModelSpec, f: ModelFile, staging: Path, endpoint: str | None) -> None:
    from huggingface_hub import hf_hub_download

    try:
        # local_dir writes straight to staging (no second copy in the HF cache) and resumes
        # a partial file on the next attempt.
        hf_hub_download(
            spec.repo_id, f.path, revision=spec.revision or None, local_dir=staging, endpoint=endpoint
        )
    except NETWORK_ERRORS as exc:
        raise MissingModel(
            f"cannot download {spec.repo_id}/{f.path}@{spec.revision or 'main'}: {describe_error(exc)}",
            hint=f"check the network, or use a local mirror: humanref models pull {spec.role} --from DIR",
        ) from exc


def download_url(url: str, dest: Path, on_bytes: Callable[[int, int | None], None] | None = None) -> None:
    """Stream ``url`` to ``dest`` (via ``dest.part`` then ``os.replace``); MissingModel on failure.

    ``on_bytes(done, total)`` is called after each MiB; ``total`` is None without a Content-Length.
    """
    import urllib.request

    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            length = response.headers.get("Content-Length")
            total, done = (int(length) if length else None), 0
            while chunk := response.read(1024 * 1024):
                out.write(chunk)
                done += len(chunk)
                if on_bytes:
                    on_bytes(done, total)
    except NETWORK_ERRORS as exc:
        part.unlink(missing_ok=True)
        raise MissingModel(
            f"cannot download {url}: {describe_error(exc)}",
            hint="check the network, or install from a local copy: humanref models pull ROLE --from DIR",
        ) from exc
    os.replace(part, dest)


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _remove_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def verify(
    spec: ModelSpec, models_dir: Path | None, *, lock: Lock, hf_cache: Path | None = None
) -> ModelStatus:
    """Re-hash every file of ``spec`` where it is found (models dir or HF cache) against the lock."""
    return model_status(spec.role, models_dir, lock=lock, hf_cache=hf_cache, rehash=True)
