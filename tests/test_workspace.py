"""Workspace contract: manifest, atomic writes, lock with stale reclaim, stage lifecycle, freshness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from humanref_cli.errors import Interrupted, UpstreamError, WorkspaceConflict
from humanref_cli.io import atomic_path, write_json
from humanref_cli.runtime import Runtime
from humanref_cli.workspace import Workspace


@dataclass(frozen=True)
class ToyConfig:
    steps: int = 3
    lr: float = 1e-3
    log_every: int = field(default=10, metadata={"semantic": False})


def _rt() -> Runtime:
    return Runtime(device_name="cpu", quiet=True)


def _run_toy(ws: Workspace, cfg: ToyConfig, inputs: list[Path], fail: BaseException | None = None) -> None:
    key = ws.stage_key("coarse", cfg, inputs, {"sd15": "none"})
    with ws.stage("coarse", key=key, cfg=cfg, inputs=inputs, models={}, steps=cfg.steps, rt=_rt()) as run:
        out = run.dir / "out.txt"
        with atomic_path(out) as tmp:
            tmp.write_text("result")
        run.add_output(out)
        run.set_step(cfg.steps)
        if fail is not None:
            raise fail


def test_new_workspace_has_no_stages(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert not ws.exists()
    assert ws.load_manifest()["stages"] == {}
    assert ws.integrity("prep") == (False, "not run")


def test_stage_done_records_outputs_and_is_fresh(tmp_path):
    ws = Workspace(tmp_path / "ws")
    src = tmp_path / "ws" / "prep" / "mask.png"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"mask-v1")
    cfg = ToyConfig()
    _run_toy(ws, cfg, [src])
    rec = ws.record("coarse")
    assert rec["status"] == "done" and rec["step"] == 3
    assert set(rec["outputs"]) == {"coarse/out.txt"}
    assert rec["inputs"] == {"prep/mask.png": ws.hash_files([src])["prep/mask.png"]}
    key = ws.stage_key("coarse", cfg, [src], {"sd15": "none"})
    assert ws.is_fresh("coarse", key)
    # a non-semantic field does not change the key; a semantic one does
    assert ws.stage_key("coarse", ToyConfig(log_every=99), [src], {"sd15": "none"}) == key
    assert ws.stage_key("coarse", ToyConfig(lr=2e-3), [src], {"sd15": "none"}) != key
    # changing the upstream file makes the stage stale
    src.write_bytes(b"mask-v2")
    assert not ws.is_fresh("coarse", key)
    assert ws.integrity("coarse") == (False, "prep/mask.png changed")


def test_modified_output_is_detected_and_require_fails(tmp_path):
    ws = Workspace(tmp_path / "ws")
    _run_toy(ws, ToyConfig(), [])
    ws.require("coarse")
    (ws.root / "coarse" / "out.txt").write_text("tampered")
    with pytest.raises(UpstreamError) as e:
        ws.require("coarse")
    assert e.value.exit_code == 3 and "modified" in e.value.message
    with pytest.raises(UpstreamError, match="not ready"):
        ws.require("prep")


def test_failed_and_interrupted_stages_are_recorded(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(ValueError):
        _run_toy(ws, ToyConfig(), [], fail=ValueError("boom"))
    rec = ws.record("coarse")
    assert rec["status"] == "failed" and "boom" in rec["error"] and rec["outputs"] == {}
    with pytest.raises(Interrupted) as e:
        _run_toy(ws, ToyConfig(), [], fail=KeyboardInterrupt())
    assert e.value.exit_code == 130
    assert ws.record("coarse")["status"] == "interrupted"
    assert not ws.lock_path.exists()


def test_resume_only_with_same_key(tmp_path):
    ws = Workspace(tmp_path / "ws")
    cfg = ToyConfig()
    key = ws.stage_key("coarse", cfg, [], {})
    with pytest.raises(Interrupted):
        with ws.stage("coarse", key=key, cfg=cfg, inputs=[], models={}, steps=3, rt=_rt()) as run:
            assert run.resume_checkpoint() is None
            (run.dir / "ckpt").mkdir()
            (run.dir / "ckpt" / "last.pt").write_bytes(b"ckpt")
            run.set_step(2, flush=True)
            raise KeyboardInterrupt
    with ws.stage("coarse", key=key, cfg=cfg, inputs=[], models={}, steps=3, rt=_rt()) as run:
        assert run.resume_checkpoint() == ws.root / "coarse" / "ckpt" / "last.pt"
        assert run.record["step"] == 2 and run.record["resumed"]
    assert ws.record("coarse")["status"] == "done"
    other = ToyConfig(lr=5.0)
    (ws.root / "coarse" / "ckpt").mkdir(exist_ok=True)
    (ws.root / "coarse" / "ckpt" / "last.pt").write_bytes(b"ckpt")
    ws.update_record("coarse", status="interrupted")
    with pytest.raises(WorkspaceConflict, match="other settings"):
        with ws.stage(
            "coarse",
            key=ws.stage_key("coarse", other, [], {}),
            cfg=other,
            inputs=[],
            models={},
            steps=3,
            rt=_rt(),
        ):
            pass
    with ws.stage(
        "coarse",
        key=ws.stage_key("coarse", other, [], {}),
        cfg=other,
        inputs=[],
        models={},
        steps=3,
        rt=_rt(),
        force=True,
    ) as run:
        assert run.resume_checkpoint() is None
        assert not (run.dir / "ckpt" / "last.pt").exists()


def test_foreign_newer_and_truncated_manifests_are_refused(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    write_json(ws.manifest_path, {"name": "something else"})
    with pytest.raises(WorkspaceConflict, match="not written by humanref"):
        ws.load_manifest()
    write_json(ws.manifest_path, {"schema": "humanref.workspace", "tool": "humanref", "schema_version": 99})
    with pytest.raises(WorkspaceConflict, match="newer"):
        ws.load_manifest()
    _ok = Workspace(tmp_path / "ok")
    _run_toy(_ok, ToyConfig(), [])
    text = _ok.manifest_path.read_text()
    _ok.manifest_path.write_text(text[: len(text) // 2])  # a truncated manifest is never read as valid
    with pytest.raises(WorkspaceConflict, match="corrupt") as e:
        _ok.load_manifest()
    assert e.value.exit_code == 4


KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from humanref_cli.io import atomic_path
    target = sys.argv[1]
    with atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write('{"half": ')
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_killed_write_never_replaces_the_file(tmp_path):
    ws = Workspace(tmp_path / "ws")
    _run_toy(ws, ToyConfig(), [])
    before = ws.manifest_path.read_bytes()
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(ws.manifest_path)])
    assert proc.returncode == -signal.SIGKILL
    assert ws.manifest_path.read_bytes() == before
    assert (ws.root / "manifest.tmp.json").exists()  # the half file is only ever the temporary name
    assert ws.record("coarse")["status"] == "done"


HOLDER = textwrap.dedent(
    """
    import sys, time
    from humanref_cli.workspace import Workspace
    ws = Workspace(sys.argv[1])
    with ws.lock():
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_lock_held_by_live_process_conflicts_and_is_reclaimed_after_kill(tmp_path):
    ws_dir = tmp_path / "ws"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        holder = json.loads((ws_dir / ".lock").read_text())
        assert holder["pid"] == proc.pid
        with pytest.raises(WorkspaceConflict, match=f"in use by process {proc.pid}") as e:
            with Workspace(ws_dir).lock():
                pass
        assert e.value.exit_code == 4
    finally:
        proc.kill()
        proc.wait()
    assert (ws_dir / ".lock").exists()  # killed: the lock file stays behind ...
    with Workspace(ws_dir).lock():  # ... and is reclaimed because its pid is dead
        assert json.loads((ws_dir / ".lock").read_text())["pid"] == os.getpid()
    assert not (ws_dir / ".lock").exists()


def test_empty_lock_file_is_reclaimed_only_when_old(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    ws.lock_path.write_text("")
    with pytest.raises(WorkspaceConflict):
        with ws.lock():
            pass
    old = time.time() - 60
    os.utime(ws.lock_path, (old, old))
    with ws.lock():
        pass


def test_each_stage_records_the_peak_memory_so_far(tmp_path):
    import resource

    import numpy as np

    ws = Workspace(tmp_path / "ws")

    def run(name: str, allocate_gib: float) -> float:
        key = ws.stage_key(name, ToyConfig(), [], {})
        with ws.stage(name, key=key, cfg=ToyConfig(), inputs=[], models={}, steps=1, rt=_rt()):
            if allocate_gib:
                block = np.ones(int(allocate_gib * 2**30 / 8))  # touched: resident, not just reserved
                assert block[-1] == 1.0
                del block
        return ws.record(name)["peak_rss_gib"]

    # the peak is at least what is resident now plus what the stage adds (earlier tests may have set a
    # higher peak already, which is why this is measured from the current RSS, not the peak)
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("needs /proc (Linux) to read the current RSS")
    rss_now = next(int(x.split()[1]) for x in status.read_text().splitlines() if x.startswith("VmRSS:"))
    big = run("coarse", 0.4)
    small = run("refine", 0.0)
    assert big >= rss_now / 2**20 + 0.35
    assert small >= big  # the process's peak so far: never reset, so getrusage stays whole
    # and the process-wide peak that getrusage and /usr/bin/time report still includes the first stage
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20 >= big - 0.01
