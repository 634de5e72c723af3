"""End to end: `humanref run` on a synthetic subject at tiny settings, then a rerun that skips everything."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from typer.testing import CliRunner

from humanref_cli.cli import app

runner = CliRunner()

TINY = [
    "prep.res=128",
    "prep.fit_steps_keypoints=5",
    "prep.fit_steps_full=5",
    "coarse.steps=3",
    "coarse.init_steps=5",
    "coarse.init_points=2000",
    "coarse.res_start=16",
    "coarse.res_max=16",
    "coarse.loss_res=16",
    "coarse.mesh_res=32",
    "coarse.prior_res=32",
    "coarse.optim.preview_res=32",
    "refine.steps=2",
    "refine.res=16",
    "refine.loss_res=16",
    "refine.mesh_res=32",
    "refine.optim.preview_res=32",
    "texture.mc_res=40",
    "texture.target_faces=1500",
    "texture.texture_size=64",
    "texture.padding=2",
    "texture.refine_steps=2",
    "texture.refine_res=32",
    "texture.pyramid_levels=2",
    "texture.preview_res=32",
    "export.turntable_frames=4",
    "export.turntable_size=64",
    "export.sheet_size=64",
]


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "subject"
    result = runner.invoke(app, ["synth", str(out), "--seed", "5", "--res", "256", "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def _run(subject: Path, ws: Path, *extra: str):
    args = ["run", str(subject / "image.png"), str(ws), "--preset", "cpu", "--device", "cpu", "--json"]
    for item in TINY:
        args += ["--set", item]
    return runner.invoke(app, args + list(extra))


def test_run_writes_every_export_and_second_run_skips(subject, tmp_path):
    ws = tmp_path / "ws"
    result = _run(subject, ws)
    assert result.exit_code == 0, result.output
    export = ws / "export"
    for name in (
        "humanref.glb",
        "humanref.obj",
        "humanref.mtl",
        "humanref.png",
        "humanref.ply",
        "sheet.png",
        "metadata.json",
    ):
        assert (export / name).exists(), name
    assert (export / "turntable.mp4").exists() or (export / "turntable.gif").exists()
    glb = trimesh.load(export / "humanref.glb", force="mesh")
    assert len(glb.faces) > 100 and glb.visual.uv is not None
    extent = glb.bounds[1] - glb.bounds[0]
    assert np.argmax(extent) == 1, "exported files are y-up: the person's height is along y"
    meta = json.loads((export / "metadata.json").read_text())
    assert "guidance" in json.dumps(meta)
    # offline the normal maps are the body's own, so refine ran without the late boosts (decision 24)
    stages = json.loads((ws / "manifest.json").read_text())["stages"]
    assert stages["prep"]["notes"]["normals_source"] == "body"
    loss = stages["refine"]["config"]["loss"]
    assert (loss["normal_boost"], loss["normal_boost2"]) == (1.0, 1.0)

    status = runner.invoke(app, ["status", str(ws), "--json"])
    rows = json.loads(status.stdout)["stages"]
    assert [r["status"] for r in rows] == ["done"] * 5 and all(r["fresh"] for r in rows)

    t0 = time.monotonic()
    again = _run(subject, ws)
    assert again.exit_code == 0, again.output
    assert time.monotonic() - t0 < 30
    assert again.stderr.count("up to date") >= 5, again.stderr

    # changing one stage's setting reruns that stage and everything after it, not before
    before = json.loads((ws / "manifest.json").read_text())["stages"]
    changed = _run(subject, ws, "--set", "refine.loss.lambda_sdf=50", "--until", "refine")
    assert changed.exit_code == 0, changed.output
    after = json.loads((ws / "manifest.json").read_text())["stages"]
    assert after["coarse"]["finished"] == before["coarse"]["finished"]
    assert after["refine"]["finished"] != before["refine"]["finished"]
    rows = json.loads(runner.invoke(app, ["status", str(ws), "--json"]).stdout)["stages"]
    assert [r["fresh"] for r in rows] == [True, True, True, False, False]


def test_run_stops_at_the_first_failing_stage_with_its_exit_code(tmp_path):
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"hello")
    result = runner.invoke(app, ["run", str(bad), str(tmp_path / "ws"), "--preset", "cpu"])
    assert result.exit_code == 2
    assert "error:" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "ws" / "coarse").exists()
