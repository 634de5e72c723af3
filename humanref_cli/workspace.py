"""The workspace directory: manifest, per-stage records, freshness keys, lock (design.md §3).

One directory per subject. ``manifest.json`` holds one record per stage::

    {status: running|done|failed|interrupted, key, inputs: {path: sha256}, outputs: {path: sha256},
     config, models: {role: id}, device, step, steps, seconds, started, finished, versions, notes}

A stage's key is ``sha256(semantic config + sha256 of every upstream file it reads + model ids)``, so
changing prep's outputs makes everything downstream stale without any bookkeeping. Writers hold an
``O_EXCL`` lock file with their pid; a lock whose pid is dead is reclaimed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from humanref_cli import __version__
from humanref_cli.configs.base import semantic_dict, to_dict
from humanref_cli.errors import HumanrefError, Interrupted, UpstreamError, UsageError, WorkspaceConflict
from humanref_cli.io import sha256_file, write_json
from humanref_cli.peak_memory import peak_rss_gib

SCHEMA = "humanref.workspace"
SCHEMA_VERSION = 1
STAGES = ("prep", "coarse", "refine", "texture", "export")
UPSTREAM = {"prep": None, "coarse": "prep", "refine": "coarse", "texture": "refine", "export": "texture"}
STATUSES = ("running", "done", "failed", "interrupted")
MANIFEST_WRITE_INTERVAL_S = 5.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def versions() -> dict[str, str]:
    """Versions that matter for reproducing a result (read from metadata: no heavy imports)."""
    out = {"humanref": __version__, "python": platform.python_version()}
    for pkg in ("torch", "numpy", "diffusers", "transformers", "mediapipe", "anny"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


class Workspace:
    """A subject's workspace directory. Cheap to construct; reads the manifest on demand."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(
                f"workspace {self.root} is a file, not a directory", hint="pass a directory path"
            )
        self.manifest_path = self.root / "manifest.json"
        self.lock_path = self.root / ".lock"
        self._lock_depth = 0
        self._hashes: dict[tuple[str, int, int], str] = {}

    # ----------------------------------------------------------------- manifest
    def exists(self) -> bool:
        return self.manifest_path.exists()

    def load_manifest(self) -> dict[str, Any]:
        """The manifest, or a fresh empty one. Refuses corrupt, foreign and newer manifests (exit 4)."""
        if not self.manifest_path.exists():
            return {
                "schema": SCHEMA,
                "schema_version": SCHEMA_VERSION,
                "tool": "humanref",
                "created": _now(),
                "stages": {},
            }
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise WorkspaceConflict(
                f"{self.manifest_path} is corrupt (not valid JSON)",
                hint="move it away to start this workspace afresh, or use another directory",
            ) from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA or data.get("tool") != "humanref":
            raise WorkspaceConflict(
                f"{self.manifest_path} was not written by humanref",
                hint="use an empty or new directory as the workspace",
            )
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise WorkspaceConflict(
                f"{self.manifest_path} has schema version {version}, newer than this humanref "
                f"({SCHEMA_VERSION})",
                hint="upgrade humanref (pip install -U humanref) or use another directory",
            )
        data.setdefault("stages", {})
        return data

    def _write_manifest(self, data: dict[str, Any]) -> None:
        data["updated"] = _now()
        data["tool_version"] = __version__
        write_json(self.manifest_path, data)

    def record(self, stage: str) -> dict[str, Any] | None:
        return self.load_manifest()["stages"].get(stage)

    def update_record(self, stage: str, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into a stage record and rewrite the manifest (caller holds the lock)."""
        data = self.load_manifest()
        rec = data["stages"].setdefault(stage, {})
        rec.update(changes)
        self._write_manifest(data)
        return rec

    # ----------------------------------------------------------------- paths and hashes
    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def rel(self, path: Path) -> str:
        """Path relative to the workspace; files outside it are named ``external:<name>``."""
        path = Path(path).absolute()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return f"external:{path.name}"

    def file_hash(self, path: Path) -> str:
        """sha256 of a file, remembered per (path, mtime, size): a command checks the same upstream
        files for its key, its record and freshness, and atomic writes always change the mtime."""
        st = os.stat(path)
        key = (str(Path(path).absolute()), st.st_mtime_ns, st.st_size)
        if key not in self._hashes:
            self._hashes[key] = sha256_file(path)
        return self._hashes[key]

    def hash_files(self, paths: list[Path]) -> dict[str, str]:
        out = {}
        for p in paths:
            if not Path(p).exists():
                raise UpstreamError(f"missing input file {p}", hint="rerun the stage that writes it")
            out[self.rel(p)] = self.file_hash(p)
        return out

    def stage_key(self, stage: str, cfg: Any, inputs: list[Path], models: dict[str, str]) -> str:
        """``sha256`` of the semantic config, the content hashes of ``inputs`` and the model ids."""
        payload = {
            "stage": stage,
            "schema_version": SCHEMA_VERSION,
            "config": semantic_dict(cfg) if cfg is not None else None,
            "inputs": self.hash_files(inputs),
            "models": dict(sorted(models.items())),
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    # ----------------------------------------------------------------- freshness
    def integrity(self, stage: str) -> tuple[bool, str]:
        """Whether a stage is done and every file it read and wrote is unchanged on disk."""
        rec = self.record(stage)
        if rec is None:
            return False, "not run"
        if rec.get("status") != "done":
            return False, rec.get("status", "unknown")
        for kind in ("outputs", "inputs"):
            for rel, digest in rec.get(kind, {}).items():
                if rel.startswith("external:"):
                    continue
                path = self.root / rel
                if not path.exists():
                    return False, f"{rel} is missing"
                if self.file_hash(path) != digest:
                    return False, f"{rel} changed" if kind == "inputs" else f"{rel} was modified"
        return True, "fresh"

    def is_fresh(self, stage: str, key: str) -> bool:
        rec = self.record(stage)
        return bool(rec and rec.get("key") == key and self.integrity(stage)[0])

    def require(self, stage: str) -> None:
        """Raise ``UpstreamError`` (exit 3) unless ``stage`` is done and its files are intact."""
        ok, reason = self.integrity(stage)
        if not ok:
            cmd = f"humanref {stage} {self.root}" if stage != "prep" else f"humanref prep PHOTO {self.root}"
            raise UpstreamError(
                f"stage '{stage}' is not ready in {self.root} ({reason})", hint=f"run `{cmd}`"
            )

    def summary(self, stage: str) -> dict[str, Any]:
        rec = self.record(stage) or {}
        return {
            "stage": stage,
            "status": rec.get("status"),
            "up_to_date": True,
            "outputs": sorted(rec.get("outputs", {})),
            "notes": rec.get("notes", {}),
        }

    # ----------------------------------------------------------------- lock
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive, re-entrant (per object) lock on the workspace; stale locks are reclaimed."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self._acquire()
        self._lock_depth = 1
        try:
            yield
        finally:
            self._lock_depth = 0
            with contextlib.suppress(FileNotFoundError):
                self.lock_path.unlink()

    def _acquire(self) -> None:
        body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()})
        for _ in range(3):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._reclaim_stale():
                    continue
                holder = self._read_lock()
                raise WorkspaceConflict(
                    f"workspace {self.root} is in use by process {holder.get('pid', '?')}",
                    hint="wait for it to finish, or stop it; a lock left by a dead process is reclaimed",
                ) from None
            except OSError as e:
                if e.errno in (errno.EACCES, errno.EROFS):
                    raise UsageError(f"cannot write to workspace {self.root}: {e.strerror}") from None
                raise
            with os.fdopen(fd, "w") as f:
                f.write(body)
            return
        raise WorkspaceConflict(f"could not lock workspace {self.root}", hint="try again")

    def _read_lock(self) -> dict[str, Any]:
        try:
            return json.loads(self.lock_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def _reclaim_stale(self) -> bool:
        """Remove the lock if its process is dead (or it is an empty file older than 10 s)."""
        holder = self._read_lock()
        pid = holder.get("pid")
        if pid is None:
            try:
                age = time.time() - self.lock_path.stat().st_mtime
            except FileNotFoundError:
                return True
            stale = age > 10
        else:
            stale = holder.get("host") == socket.gethostname() and not _pid_alive(int(pid))
        if not stale:
            return False
        # Rename first so two reclaimers cannot both delete a fresh lock.
        grave = self.lock_path.with_name(f".lock.stale.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.lock_path, grave)
            grave.unlink()
        return True

    # ----------------------------------------------------------------- running a stage
    @contextlib.contextmanager
    def stage(
        self,
        name: str,
        *,
        key: str,
        cfg: Any,
        inputs: list[Path],
        models: dict[str, str],
        steps: int | None,
        rt: Any,
        force: bool = False,
    ) -> Iterator[StageRun]:
        """Run a stage: lock, decide resume vs restart, record running -> done/failed/interrupted."""
        with self.lock():
            prev = self.record(name) or {}
            stage_dir = self.stage_dir(name)
            ckpt = stage_dir / "ckpt" / "last.pt"
            resumable = prev.get("status") in ("running", "interrupted") and ckpt.exists()
            if resumable and prev.get("key") != key and not force:
                raise WorkspaceConflict(
                    f"stage '{name}' was interrupted with other settings or inputs",
                    hint=f"rerun with the same options to resume, or add --force to start {name} over",
                )
            resume = resumable and prev.get("key") == key and not force
            if not resume and stage_dir.exists():
                shutil.rmtree(stage_dir)
            stage_dir.mkdir(parents=True, exist_ok=True)
            rt.open_log(self.root / "logs" / f"{name}.log")
            record = {
                "status": "running",
                "key": key,
                "inputs": self.hash_files(inputs),
                "outputs": {},
                "config": to_dict(cfg) if cfg is not None else None,
                "models": models,
                "device": str(rt.device),
                "step": prev.get("step", 0) if resume else 0,
                "steps": steps,
                "seconds": prev.get("seconds", 0.0) if resume else 0.0,
                "started": _now(),
                "finished": None,
                "versions": versions(),
                "notes": prev.get("notes", {}) if resume else {},
                "resumed": bool(resume),
                "pid": os.getpid(),
            }
            data = self.load_manifest()
            data["stages"][name] = record
            self._write_manifest(data)
            run = StageRun(self, name, stage_dir, ckpt if resume else None, record)
            t0 = time.monotonic()
            try:
                yield run
            except (KeyboardInterrupt, Interrupted):
                run.finish("interrupted", time.monotonic() - t0)
                rt.warn(f"{name}: interrupted at step {run.record['step']}; rerun the same command to resume")
                raise Interrupted(f"{name} interrupted", hint="rerun the same command to resume") from None
            except HumanrefError as e:
                run.finish("failed", time.monotonic() - t0, error=e.message)
                raise
            except BaseException as e:
                run.finish("failed", time.monotonic() - t0, error=f"{type(e).__name__}: {e}")
                raise
            else:
                run.finish("done", time.monotonic() - t0)
            finally:
                rt.close_log()


@dataclass
class StageRun:
    """Handle a stage body uses to report progress, notes and outputs while it runs."""

    ws: Workspace
    name: str
    dir: Path
    resume_from: Path | None
    record: dict[str, Any]
    outputs: list[Path] = field(default_factory=list)
    _last_write: float = 0.0

    def resume_checkpoint(self) -> Path | None:
        """``ckpt/last.pt`` when this run resumes an interrupted one with the same key, else None."""
        return self.resume_from

    def set_step(self, step: int, *, flush: bool = False) -> None:
        self.record["step"] = int(step)
        if flush or time.monotonic() - self._last_write > MANIFEST_WRITE_INTERVAL_S:
            self._flush()

    def note(self, **values: Any) -> None:
        """Record facts about the run (sources used, fit quality, fallbacks) in the manifest."""
        self.record.setdefault("notes", {}).update(values)
        self._flush()

    def set_models(self, models: dict[str, str]) -> None:
        self.record["models"].update(models)
        self._flush()

    def add_output(self, *paths: Path) -> None:
        self.outputs.extend(Path(p) for p in paths)

    def _flush(self) -> None:
        self._last_write = time.monotonic()
        self.ws.update_record(self.name, **self.record)

    def finish(self, status: str, seconds: float, error: str | None = None) -> None:
        self.record["status"] = status
        self.record["seconds"] = round(self.record.get("seconds", 0.0) + seconds, 3)
        self.record["peak_rss_gib"] = round(peak_rss_gib(), 3)
        self.record["finished"] = _now()
        if error:
            self.record["error"] = error
        else:
            self.record.pop("error", None)
        if status == "done":
            self.record["outputs"] = {
                self.ws.rel(p): self.ws.file_hash(p) for p in self.outputs if Path(p).exists()
            }
        self._flush()
