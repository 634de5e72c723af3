"""CLI behaviour: fast --help, exit codes, stdout/stderr split, status on new and broken workspaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from humanref_cli.cli import app
from humanref_cli.io import write_json
from humanref_cli.workspace import Workspace

runner = CliRunner()


def test_help_does_not_import_torch():
    code = "import sys; from humanref_cli.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "prep",
        "coarse",
        "refine",
        "texture",
        "export",
        "run",
        "status",
        "models",
        "synth",
        "eval",
        "config",
    ):
        assert command in result.stdout


def test_synth_refuses_an_unknown_pose_style(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path / "s"), "--pose", "hands_on_hips"])
    assert result.exit_code == 2 and "unknown pose style 'hands_on_hips'" in result.stderr
    assert "elbows_bent" in result.stderr and not (tmp_path / "s").exists()


def test_status_of_new_workspace(tmp_path):
    result = runner.invoke(app, ["status", str(tmp_path / "ws"), "--json"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    assert [r["stage"] for r in table["stages"]] == ["prep", "coarse", "refine", "texture", "export"]
    assert all(r["status"] == "not run" and not r["fresh"] for r in table["stages"])
    human = runner.invoke(app, ["status", str(tmp_path / "ws")])
    assert human.exit_code == 0 and "not run" in human.stdout


def test_status_refuses_foreign_manifest_with_exit_4(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    write_json(ws / "manifest.json", {"something": "else"})
    result = runner.invoke(app, ["status", str(ws)])
    assert result.exit_code == 4
    assert "not written by humanref" in result.stderr and result.stdout == ""
    assert "Traceback" not in result.output


def test_stage_before_prep_exits_3(tmp_path):
    result = runner.invoke(app, ["coarse", str(tmp_path / "ws"), "--device", "cpu"])
    assert result.exit_code == 3, result.output
    assert "prep" in result.stderr and "hint:" in result.stderr


def test_unknown_set_key_exits_2_with_suggestion(tmp_path):
    result = runner.invoke(app, ["config", "coarse", "--preset", "cpu", "--set", "stepz=5"])
    assert result.exit_code == 2
    assert "unknown config key 'stepz'" in result.stderr and "steps" in result.stderr
    ok = runner.invoke(app, ["config", "coarse", "--preset", "cpu", "--set", "steps=7", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["steps"] == 7


def test_bad_preset_and_device(tmp_path):
    result = runner.invoke(app, ["config", "refine", "--preset", "huge"])
    assert result.exit_code == 2 and "unknown preset" in result.stderr


def test_installed_executable_runs(tmp_path):
    exe = shutil.which("humanref") or str(Path(sys.executable).parent / "humanref")
    assert os.path.exists(exe), "the console script is not installed (pip install -e .)"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("humanref ")
    status = subprocess.run([exe, "status", str(tmp_path / "ws"), "--json"], capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["exists"] is False


def test_quiet_hides_the_model_libraries_progress_bars(monkeypatch):
    import os

    from humanref_cli.cli_common import make_runtime

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    make_runtime("cpu", 0, quiet=False)
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ
    make_runtime("cpu", 0, quiet=True)
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"


def test_eval_refuses_an_absurd_render_size_with_exit_2(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "ws"), "--gt", str(tmp_path), "--res", "8"])
    assert result.exit_code == 2
    assert "--res must be between 16 and 2048" in result.stderr and "Traceback" not in result.output


def test_config_with_a_workspace_shows_the_effective_boosts(tmp_path):
    from humanref_cli.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    with ws.lock():
        ws.update_record("prep", status="done", notes={"normals_source": "body"})

    def boosts(*extra):
        result = runner.invoke(app, ["config", "refine", "--preset", "cpu", "--json", *extra])
        assert result.exit_code == 0, result.output
        loss = json.loads(result.stdout)["loss"]
        return loss["normal_boost"], loss["normal_boost2"]

    assert boosts() == (10.0, 100.0)  # the preset: the released schedule
    assert boosts("--ws", str(ws.root)) == (1.0, 1.0)  # what refine would run in this workspace (decision 24)
    missing = runner.invoke(app, ["config", "refine", "--ws", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a humanref workspace" in missing.stderr


def test_auto_preset_follows_the_device_asked_for(monkeypatch, tmp_path):
    """``--device cpu`` on a CUDA machine must not get the paper schedule (days on a CPU)."""
    import torch

    from humanref_cli.configs.optim import coarse_preset
    from humanref_cli.runtime import Runtime
    from humanref_cli.stages import coarse, pipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    paper, cpu = coarse_preset("paper").steps, coarse_preset("cpu").steps
    assert paper != cpu

    def steps(*device):
        result = runner.invoke(app, ["config", "coarse", "--json", *device])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["steps"]

    assert steps() == paper and steps("--device", "cuda") == paper
    assert steps("--device", "cpu") == cpu
    config = ["config", "coarse"]
    commands = (config, [*config, "--preset", "cpu"], ["coarse", str(tmp_path / "w")])
    for command in commands:
        bad = runner.invoke(app, [*command, "--device", "tpu"])
        assert bad.exit_code == 2 and "unknown device 'tpu'" in bad.stderr, bad.output
    assert not (tmp_path / "w").exists()  # refused before anything is written

    seen = {}

    def record(name):
        def run(ws, cfg, *args, **kwargs):
            seen[name] = cfg
            return {}

        return run

    monkeypatch.setattr(coarse, "run_coarse", record("coarse command"))
    result = runner.invoke(app, ["coarse", str(tmp_path / "ws"), "--device", "cpu"])
    assert result.exit_code == 0 and "coarse: preset cpu on cpu" in result.stderr  # says what auto chose
    monkeypatch.setattr(pipeline, "_run_stage", lambda stage, *args: record(stage)(*args))
    opts = pipeline.PipelineOptions(photo=tmp_path / "photo.png", until="coarse")
    pipeline.run_pipeline(Workspace(tmp_path / "ws"), opts, Runtime(device_name="cpu", quiet=True))
    assert seen["coarse command"].steps == cpu and seen["coarse"].steps == cpu


def test_synth_refuses_an_unknown_light(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path / "s"), "--light", "above"])
    assert result.exit_code == 2 and "unknown light 'above'" in result.stderr
    assert not (tmp_path / "s").exists()
