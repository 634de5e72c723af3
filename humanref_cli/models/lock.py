"""``models.lock``: which pretrained model fills each role, pinned to a revision and sha256.

The lock is TOML. A top-level ``lock_version`` integer, then one table per role::

    [clip]
    source = "hf"                      # "hf": a Hugging Face repo; "url": plain HTTPS (or file://) URLs
    repo_id = "openai/clip-vit-base-patch16"
    revision = ""                      # commit sha; "" until `humanref models lock --update`
    licence = "MIT"
    size_mb = 600                      # estimate, for `models list` before sizes are locked
    used_by = ["coarse", "eval"]
    description = "..."
    [[clip.files]]
    path = "model.safetensors"         # relative path, in the repo and under <models_dir>/<role>/
    sha256 = ""                        # "" until locked; checked on pull and by `verify` when set
    size = 0                           # bytes; 0 until locked
    url = ""                           # only for source = "url"

``variant`` (e.g. ``"fp16"``) tells diffusers loaders which weight files were pinned. Descriptive
fields live in the data rather than in comments so that ``lock --update`` can rewrite the file
without losing them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path, PurePosixPath

import tomllib

from humanref_cli.errors import UsageError

LOCK_VERSION = 1
SOURCES = ("hf", "url")
_ROLE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SHA_RE = re.compile(r"^([0-9a-f]{64})?$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")  # owner/name; also a mirror sub-path
_ROLE_KEYS = {
    "source",
    "repo_id",
    "revision",
    "licence",
    "size_mb",
    "used_by",
    "description",
    "notes",
    "variant",
    "files",
}
_FILE_KEYS = {"path", "sha256", "size", "url"}

HEADER = """\
# humanref models.lock: the pretrained model behind each role (docs/models.md).
# Revisions, sha256 and sizes left empty are filled by `humanref models lock --update` online.
# Keep humanref_cli/data/models.lock identical to this file (it is the copy shipped in the package).
"""


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: its path in the repo (and under ``<models_dir>/<role>/``)."""

    path: str
    sha256: str = ""
    size: int = 0
    url: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """One role of the lock. ``files`` are in lock order; ``sha256`` maps path -> hex ("" = unlocked)."""

    role: str
    source: str
    repo_id: str
    revision: str
    files: tuple[ModelFile, ...]
    licence: str
    size_mb: int = 0
    used_by: tuple[str, ...] = ()
    description: str = ""
    notes: str = ""
    variant: str = ""

    @property
    def sha256(self) -> dict[str, str]:
        return {f.path: f.sha256 for f in self.files}

    @property
    def url(self) -> dict[str, str]:
        """path -> download URL, for ``source = "url"`` roles (empty for hub roles)."""
        return {f.path: f.url for f in self.files if f.url}

    @property
    def model_id(self) -> str:
        """``repo@revision`` as recorded in stage manifests; ``unpinned`` until the lock is updated."""
        return f"{self.repo_id}@{self.revision or 'unpinned'}"

    @property
    def locked(self) -> bool:
        """Every file has a sha256 (and a hub role has a revision)."""
        return all(f.sha256 for f in self.files) and (self.source != "hf" or bool(self.revision))

    @property
    def size_bytes(self) -> int:
        """Exact total when every file size is locked, else the ``size_mb`` estimate."""
        if self.files and all(f.size for f in self.files):
            return sum(f.size for f in self.files)
        return self.size_mb * 1_000_000


@dataclass(frozen=True)
class Lock:
    """The parsed lock: ``models`` keyed by role, in file order; ``path`` it was read from."""

    models: dict[str, ModelSpec] = field(default_factory=dict)
    path: Path | None = None

    def spec(self, role: str) -> ModelSpec:
        if role not in self.models:
            known = ", ".join(self.models) or "none"
            raise UsageError(f"unknown model role '{role}'", hint=f"roles in the lock: {known}")
        return self.models[role]

    def with_spec(self, spec: ModelSpec) -> Lock:
        return replace(self, models={**self.models, spec.role: spec})


def packaged_lock_text() -> str:
    """The ``models.lock`` shipped inside the package (``humanref_cli/data/models.lock``)."""
    return resources.files("humanref_cli").joinpath("data/models.lock").read_text(encoding="utf-8")


def load_lock(path: Path | None = None) -> Lock:
    """Read and validate ``path``, or the packaged copy when ``path`` is None.

    Raises ``UsageError`` (exit 2) naming the file and the problem when it is malformed.
    """
    if path is None:
        return parse_lock(packaged_lock_text(), source="humanref_cli/data/models.lock")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read models lock {path}: {exc.strerror}", hint="check --lock") from exc
    return replace(parse_lock(text, source=str(path)), path=path)


def parse_lock(text: str, source: str = "models.lock") -> Lock:
    """Parse lock text; every problem is a ``UsageError`` that names ``source`` and the role."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _bad(source, f"not valid TOML ({exc})") from exc
    version = data.pop("lock_version", None)
    if version != LOCK_VERSION:
        raise _bad(source, f"lock_version is {version!r}, expected {LOCK_VERSION}")
    models = {}
    for role, table in data.items():
        if not isinstance(table, dict):
            raise _bad(source, f"top-level key '{role}' is not a role table")
        models[role] = _parse_spec(role, table, source)
    return Lock(models=models)


def _parse_spec(role: str, table: dict, source: str) -> ModelSpec:
    where = f"[{role}]"
    if not _ROLE_RE.match(role):
        raise _bad(source, f"{where}: role names are lower_snake_case")
    unknown = set(table) - _ROLE_KEYS
    if unknown:
        raise _bad(source, f"{where}: unknown keys {sorted(unknown)}")
    kind = _get(table, "source", str, source, where)
    if kind not in SOURCES:
        raise _bad(source, f"{where}: source must be one of {SOURCES}, got {kind!r}")
    repo_id = _get(table, "repo_id", str, source, where)
    if not _REPO_RE.match(repo_id) or ".." in repo_id:
        raise _bad(source, f"{where}: repo_id must look like 'owner/name', got {repo_id!r}")
    raw_files = _get(table, "files", list, source, where)
    if not raw_files:
        raise _bad(source, f"{where}: files is empty")
    files = tuple(_parse_file(f, kind, source, where) for f in raw_files)
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise _bad(source, f"{where}: a file is listed twice")
    return ModelSpec(
        role=role,
        source=kind,
        repo_id=repo_id,
        revision=_get(table, "revision", str, source, where, ""),
        files=files,
        licence=_get(table, "licence", str, source, where),
        size_mb=_get(table, "size_mb", int, source, where, 0),
        used_by=tuple(_get(table, "used_by", list, source, where, [])),
        description=_get(table, "description", str, source, where, ""),
        notes=_get(table, "notes", str, source, where, ""),
        variant=_get(table, "variant", str, source, where, ""),
    )


def _parse_file(raw: object, kind: str, source: str, where: str) -> ModelFile:
    if not isinstance(raw, dict):
        raise _bad(source, f"{where}: each files entry is a table with path, sha256, size, url")
    unknown = set(raw) - _FILE_KEYS
    if unknown:
        raise _bad(source, f"{where}: unknown file keys {sorted(unknown)}")
    path = _get(raw, "path", str, source, where)
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise _bad(source, f"{where}: file path {path!r} must be relative, '/'-separated, without '..'")
    sha = _get(raw, "sha256", str, source, where, "").lower()
    if not _SHA_RE.match(sha):
        raise _bad(source, f"{where}: sha256 of {path} is not 64 hex digits")
    url = _get(raw, "url", str, source, where, "")
    if kind == "url" and not url:
        raise _bad(source, f'{where}: {path} needs a url (source = "url")')
    if kind == "hf" and url:
        raise _bad(source, f'{where}: {path} has a url but source = "hf" downloads from the hub')
    return ModelFile(path=path, sha256=sha, size=_get(raw, "size", int, source, where, 0), url=url)


def _get(table: dict, key: str, typ: type, source: str, where: str, default=None):
    if key not in table:
        if default is None:
            raise _bad(source, f"{where}: missing '{key}'")
        return default
    value = table[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise _bad(source, f"{where}: '{key}' must be {typ.__name__}, got {type(value).__name__}")
    return value


def _bad(source: str, problem: str) -> UsageError:
    return UsageError(
        f"malformed models lock {source}: {problem}", hint="fix the file or restore it from git"
    )


def dump_lock(lock: Lock) -> str:
    """Serialise ``lock`` back to TOML (the header comment is re-emitted; key order is stable)."""
    import tomli_w

    data: dict = {"lock_version": LOCK_VERSION}
    for spec in lock.models.values():
        table: dict = {
            "source": spec.source,
            "repo_id": spec.repo_id,
            "revision": spec.revision,
        }
        if spec.variant:
            table["variant"] = spec.variant
        table |= {"licence": spec.licence, "size_mb": spec.size_mb, "used_by": list(spec.used_by)}
        table |= {"description": spec.description, "notes": spec.notes}
        table["files"] = [_dump_file(f, spec.source) for f in spec.files]
        data[spec.role] = table
    return HEADER + "\n" + tomli_w.dumps(data)


def _dump_file(f: ModelFile, kind: str) -> dict:
    out: dict = {"path": f.path, "sha256": f.sha256, "size": f.size}
    if kind == "url":
        out["url"] = f.url
    return out


def write_lock(lock: Lock, path: Path) -> None:
    """Write atomically (``path.tmp`` then ``os.replace``) so a killed update never leaves half a lock."""
    import os

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dump_lock(lock), encoding="utf-8")
    os.replace(tmp, path)
