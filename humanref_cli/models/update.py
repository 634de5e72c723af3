"""``humanref models lock --update``: fill revisions, sha256 and sizes in the lock.

Online (the default) a hub role's revision becomes the commit the pinned revision (``main`` while
empty) points to, LFS files take the sha256 the hub reports, and small non-LFS files are downloaded
to a temporary folder and hashed; a url role's files are streamed and hashed. With ``mirror`` the
hashes and sizes come from local files laid out as for ``pull --from`` and revisions are kept (a
folder cannot say which commit it came from). Only empty fields are filled unless ``latest``, which
re-resolves hub revisions to the current ``main`` and re-hashes what changed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from humanref_cli.errors import MissingModel, UsageError
from humanref_cli.models.lock import Lock, ModelFile, ModelSpec
from humanref_cli.models.pull import NETWORK_ERRORS, describe_error, download_url, mirror_root
from humanref_cli.models.store import hash_file

Say = Callable[[str], None]


def update_lock(
    lock: Lock,
    roles: list[str] | None = None,
    *,
    mirror: Path | None = None,
    latest: bool = False,
    endpoint: str | None = None,
    say: Say = lambda msg: None,
) -> Lock:
    """A copy of ``lock`` with the empty revision/sha256/size fields of ``roles`` filled.

    ``roles`` defaults to every role (with ``mirror``: every role the mirror holds).
    """
    if roles is None and mirror is not None:
        roles = [r for r, s in lock.models.items() if _in_mirror(s, mirror)]
        if not roles:
            raise UsageError(f"{mirror} holds none of the roles", hint="lay it out as DIR/<role>/<files>")
    for role in roles or list(lock.models):
        spec = lock.spec(role)
        if mirror is not None:
            new = _from_mirror(spec, mirror)
        elif spec.source == "hf":
            new = _from_hub(spec, latest, endpoint)
        else:
            new = _from_urls(spec, latest, say)
        if new != spec:
            say(f"{role}: updated ({new.model_id})")
        lock = lock.with_spec(new)
    return lock


def _in_mirror(spec: ModelSpec, mirror: Path) -> bool:
    return (Path(mirror) / spec.role).is_dir() or (Path(mirror) / spec.repo_id).is_dir()


def _from_mirror(spec: ModelSpec, mirror: Path) -> ModelSpec:
    root = mirror_root(spec, mirror)
    files = []
    for f in spec.files:
        src = root / f.path
        if not src.is_file():
            raise MissingModel(f"mirror {root} lacks {f.path} of '{spec.role}'", hint="complete the mirror")
        digest = hash_file(src)
        if f.sha256 and f.sha256 != digest:
            raise UsageError(
                f"{spec.role}: {f.path} in the mirror does not match the sha256 already in the lock",
                hint="the mirror holds another revision or is corrupt; clear that sha256 to re-lock it",
            )
        files.append(replace(f, sha256=digest, size=src.stat().st_size))
    return replace(spec, files=tuple(files))


def _from_hub(spec: ModelSpec, latest: bool, endpoint: str | None) -> ModelSpec:
    from huggingface_hub import HfApi

    wanted = None if latest else (spec.revision or None)
    try:
        info = HfApi(endpoint=endpoint).model_info(spec.repo_id, revision=wanted, files_metadata=True)
    except NETWORK_ERRORS as exc:
        raise _offline(spec, exc) from exc
    revision = info.sha
    siblings = {s.rfilename: s for s in info.siblings or []}
    same_revision = revision == spec.revision
    files = []
    for f in spec.files:
        sib = siblings.get(f.path)
        if sib is None:
            raise UsageError(
                f"{spec.role}: {f.path} is not in {spec.repo_id}@{revision}",
                hint="fix the files list of this role in models.lock",
            )
        sha = f.sha256 if same_revision else ""
        if not sha:
            sha = sib.lfs.sha256 if sib.lfs else _hash_hub_file(spec, f.path, revision, endpoint)
        files.append(replace(f, sha256=sha, size=sib.size or f.size))
    return replace(spec, revision=revision, files=tuple(files))


def _hash_hub_file(spec: ModelSpec, path: str, revision: str, endpoint: str | None) -> str:
    from huggingface_hub import hf_hub_download

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = hf_hub_download(spec.repo_id, path, revision=revision, local_dir=tmp, endpoint=endpoint)
        except NETWORK_ERRORS as exc:
            raise _offline(spec, exc) from exc
        return hash_file(Path(local))


def _from_urls(spec: ModelSpec, latest: bool, say: Say) -> ModelSpec:
    files = []
    for f in spec.files:
        if f.sha256 and f.size and not latest:
            files.append(f)
            continue
        say(f"{spec.role}: hashing {f.url} (downloads the file once)")
        files.append(_hash_url(f))
    return replace(spec, files=tuple(files))


def _hash_url(f: ModelFile) -> ModelFile:
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "download"
        download_url(f.url, local)
        size = local.stat().st_size
        digest = hash_file(local)
    return replace(f, sha256=digest, size=size)


def _offline(spec: ModelSpec, exc: BaseException) -> MissingModel:
    return MissingModel(
        f"cannot reach the Hugging Face hub for {spec.repo_id}: {describe_error(exc)}",
        hint="lock --update needs internet; offline, hash local copies with "
        "`humanref models lock --update --from DIR`",
    )
