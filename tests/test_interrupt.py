"""Ctrl-C on the real executable: exit 130, stage marked interrupted with a checkpoint, rerun resumes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from humanref_cli.workspace import Workspace

ARGS = [
    "--preset",
    "cpu",
    "--device",
    "cpu",
    "--guidance",
    "none",
    "--set",
    "steps=40",
    "--set",
    "init_steps=3",
    "--set",
    "init_points=1000",
    "--set",
    "res_start=16",
    "--set",
    "res_max=16",
    "--set",
    "loss_res=16",
    "--set",
    "mesh_res=32",
    "--set",
    "prior_res=32",
    "--set",
    "optim.preview_every=1000",
    "--set",
    "optim.ckpt_every=1000",
    "--set",
    "geometry.grid.log2_table=12",
]


@pytest.fixture(scope="module")
def prepped(tmp_path_factory) -> Path:
    from humanref_cli.synth.subject import make_subject
    from humanref_cli.testing.synth_prep import prep_from_subject

    root = tmp_path_factory.mktemp("interrupt")
    make_subject(root / "s", seed=1, res=64)
    prep_from_subject(root / "s", Workspace(root / "ws"), res=64)
    return root / "ws"


def _humanref() -> str:
    return str(Path(sys.executable).parent / "humanref")


def test_ctrl_c_checkpoints_and_rerun_resumes(prepped):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [_humanref(), "coarse", str(prepped), *ARGS], stderr=subprocess.PIPE, text=True, env=env
    )
    seen = []
    deadline = time.monotonic() + 240
    for line in proc.stderr:  # plain progress lines: stderr is not a terminal
        seen.append(line)
        m = re.search(r"coarse: (\d+)/40", line)
        if m and int(m.group(1)) >= 4:
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(seen)
    rest = proc.communicate(timeout=240)[1]
    assert proc.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest and "Traceback" not in rest
    rec = Workspace(prepped).record("coarse")
    assert rec["status"] == "interrupted" and 4 <= rec["step"] < 40
    assert (prepped / "coarse" / "ckpt" / "last.pt").exists()
    status = subprocess.run([_humanref(), "status", str(prepped), "--json"], capture_output=True, text=True)
    row = json.loads(status.stdout)["stages"][1]
    assert row["status"] == "interrupted" and row["checkpoint"] == "coarse/ckpt/last.pt"

    interrupted_at = rec["step"]
    again = subprocess.run(
        [_humanref(), "coarse", str(prepped), *ARGS], capture_output=True, text=True, env=env, timeout=400
    )
    assert again.returncode == 0, again.stderr
    rec = Workspace(prepped).record("coarse")
    assert rec["status"] == "done" and rec["resumed"] is True and rec["step"] == 40
    assert f"resuming from step {interrupted_at}" in again.stderr, again.stderr

    # other settings on an interrupted stage: exit 4 unless --force
    Workspace(prepped).update_record("coarse", status="interrupted")
    other = subprocess.run(
        [_humanref(), "coarse", str(prepped), *ARGS, "--set", "loss.lambda_sdf=7"],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
    )
    assert other.returncode == 4 and "--force" in other.stderr
