"""Where a role's files are on this machine, and whether they match the lock.

Resolution order for a role:

1. ``models_dir`` (``--models-dir``, else ``HUMANREF_MODELS``, else ``~/.cache/humanref/models``;
   see ``resolve_models_dir``, the only place that reads our environment variable): the role is
   present when every locked file exists under ``<models_dir>/<role>/<path>``;
2. the Hugging Face cache (hub roles only), at the pinned revision (``main`` while unpinned): the
   snapshot directory holding every locked file.

A role is *present* when all its files exist and *verified* when every file's sha256 equals the
lock's. Hashing gigabytes is slow, so the hashes computed by ``pull``/``verify`` are remembered in
``<models_dir>/<role>/.humanref-hashes.json`` keyed by file size and mtime; ``models list`` reads
them instead of re-hashing (``rehash=True`` always re-hashes).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from humanref_cli.errors import MissingModel
from humanref_cli.models.lock import Lock, ModelSpec, load_lock

HASHES_FILE = ".humanref-hashes.json"
_CHUNK = 8 * 1024 * 1024


def resolve_models_dir(option: Path | None, environ: Mapping[str, str] = os.environ) -> Path:
    """The models directory: ``--models-dir`` > ``HUMANREF_MODELS`` > ``~/.cache/humanref/models``.

    Called once by the CLI; library code receives the result as an explicit ``models_dir``.
    """
    if option is not None:
        return Path(option).expanduser()
    if environ.get("HUMANREF_MODELS"):
        return Path(environ["HUMANREF_MODELS"]).expanduser()
    return Path.home() / ".cache" / "humanref" / "models"


def default_hf_cache(environ: Mapping[str, str] = os.environ) -> Path:
    """The Hugging Face hub cache: ``HF_HUB_CACHE`` if set now, else huggingface_hub's own default.

    Read at call time (huggingface_hub reads it once at import) so a test or a wrapper script can
    point it elsewhere.
    """
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"])
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hash_file(path: Path) -> str:
    """sha256 hex digest of ``path``, read in 8 MiB chunks (constant memory for multi-GB weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelStatus:
    """What is on disk for one role.

    ``verified``: True when every file matches a recorded sha256; False when some file does not
    (``bad_files``); None when it is unknown (absent, not hashed yet, or the lock has no sha256).
    """

    role: str
    present: bool
    verified: bool | None
    path: Path | None
    missing_files: tuple[str, ...]
    bad_files: tuple[str, ...]
    unlocked_files: tuple[str, ...]
    unhashed_files: tuple[str, ...]
    location: str  # "models_dir", "hf_cache" or "" when absent

    @property
    def state(self) -> str:
        """One word for tables: absent, partial, corrupt, verified, unlocked, unchecked."""
        if not self.present:
            return "partial" if self.path is not None else "absent"
        if self.bad_files:
            return "corrupt"
        if self.verified:
            return "verified"
        return "unlocked" if self.unlocked_files else "unchecked"

    def as_dict(self) -> dict:
        out = asdict(self)
        out["path"] = str(self.path) if self.path else None
        out["state"] = self.state
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def role_dir(models_dir: Path, role: str) -> Path:
    return Path(models_dir) / role


def hf_snapshot_dir(spec: ModelSpec, hf_cache: Path) -> Path | None:
    """The HF-cache snapshot directory holding every file of ``spec`` at its revision, else None."""
    if spec.source != "hf" or not Path(hf_cache).is_dir():
        return None
    from huggingface_hub import try_to_load_from_cache

    found = set()
    for f in spec.files:
        hit = try_to_load_from_cache(spec.repo_id, f.path, cache_dir=hf_cache, revision=spec.revision or None)
        if not isinstance(hit, str):  # None or the "cached as missing" sentinel
            return None
        found.add(Path(hit).parents[len(Path(f.path).parts) - 1])
    return found.pop() if len(found) == 1 else None


def find_model(
    role: str, models_dir: Path | None = None, *, lock: Lock | None = None, hf_cache: Path | None = None
) -> Path | None:
    """The directory with every file of ``role`` (layout as in the repo), or None when absent."""
    spec = (lock or load_lock()).spec(role)
    if models_dir is not None:
        local = role_dir(models_dir, role)
        if all((local / f.path).is_file() for f in spec.files):
            return local
    return hf_snapshot_dir(spec, hf_cache if hf_cache is not None else default_hf_cache())


def require_model(
    role: str, models_dir: Path | None = None, *, lock: Lock | None = None, hf_cache: Path | None = None
) -> Path:
    """Like ``find_model`` but raises ``MissingModel`` (exit 5) naming the pull command."""
    lock = lock or load_lock()
    path = find_model(role, models_dir, lock=lock, hf_cache=hf_cache)
    if path is None:
        spec = lock.spec(role)
        where = f" in {models_dir} or the Hugging Face cache" if models_dir else ""
        raise MissingModel(f"model '{role}' ({spec.repo_id}) is not installed{where}", hint=pull_hint(role))
    return path


def pull_hint(role: str) -> str:
    return f"humanref models pull {role}  (offline: humanref models pull {role} --from MIRROR_DIR)"


def model_id(role: str, lock: Lock | None = None) -> str:
    """``repo@revision`` of ``role`` for stage manifests (``@unpinned`` until the lock is updated)."""
    return (lock or load_lock()).spec(role).model_id


def model_status(
    role: str,
    models_dir: Path | None = None,
    *,
    lock: Lock | None = None,
    hf_cache: Path | None = None,
    rehash: bool = False,
) -> ModelStatus:
    """Presence and integrity of ``role``; hashes every file when ``rehash`` (else uses remembered hashes)."""
    lock = lock or load_lock()
    spec = lock.spec(role)
    path = find_model(role, models_dir, lock=lock, hf_cache=hf_cache)
    location = ""
    if path is not None:
        location = (
            "models_dir" if models_dir is not None and path == role_dir(models_dir, role) else "hf_cache"
        )
    elif models_dir is not None and role_dir(models_dir, role).is_dir():
        path = role_dir(models_dir, role)  # partially installed: report what is missing there
    if path is None:
        return ModelStatus(role, False, None, None, tuple(f.path for f in spec.files), (), (), (), "")
    missing = tuple(f.path for f in spec.files if not (path / f.path).is_file())
    hashes = current_hashes(path, spec, rehash=rehash, remember=location == "models_dir")
    bad = tuple(p for p, h in hashes.items() if spec.sha256[p] and h != spec.sha256[p])
    unlocked = tuple(f.path for f in spec.files if not f.sha256)
    unhashed = tuple(f.path for f in spec.files if f.path not in hashes and f.path not in missing)
    verified: bool | None = None
    if bad:
        verified = False
    elif not missing and not unlocked and not unhashed:
        verified = True
    return ModelStatus(role, not missing, verified, path, missing, bad, unlocked, unhashed, location)


def current_hashes(root: Path, spec: ModelSpec, *, rehash: bool, remember: bool) -> dict[str, str]:
    """path -> sha256 of the files of ``spec`` under ``root``.

    With ``rehash`` every existing file is hashed (and remembered when ``remember``); otherwise only
    remembered hashes whose size and mtime still match are returned.
    """
    memo = _read_memo(root)
    out = {}
    for f in spec.files:
        file = root / f.path
        if not file.is_file():
            continue
        st = file.stat()
        key = [st.st_size, st.st_mtime_ns]
        if rehash:
            memo[f.path] = {"stat": key, "sha256": hash_file(file)}
        entry = memo.get(f.path)
        if entry and entry.get("stat") == key:
            out[f.path] = entry["sha256"]
    if rehash and remember:
        _write_memo(root, memo)
    return out


def remember_hash(root: Path, rel_path: str, sha256: str) -> None:
    """Record the hash of an installed file (``pull`` already computed it while verifying)."""
    st = (root / rel_path).stat()
    memo = _read_memo(root)
    memo[rel_path] = {"stat": [st.st_size, st.st_mtime_ns], "sha256": sha256}
    _write_memo(root, memo)


def _read_memo(root: Path) -> dict:
    try:
        data = json.loads((root / HASHES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_memo(root: Path, memo: dict) -> None:
    tmp = root / (HASHES_FILE + ".tmp")
    tmp.write_text(json.dumps(memo, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, root / HASHES_FILE)
