"""Marigold normals and BLIP captions through their real loaders and the prep stage, on tiny random
models saved in the real repos' layouts (``humanref_cli.testing.tiny_marigold_blip``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from humanref_cli.runtime import Runtime
from humanref_cli.workspace import Workspace


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A models directory holding tiny ``marigold_normals`` and ``blip`` role folders."""
    from humanref_cli.testing.tiny_marigold_blip import make_tiny_blip, make_tiny_marigold

    root = tmp_path_factory.mktemp("models")
    make_tiny_marigold(root / "marigold_normals")
    make_tiny_blip(root / "blip")
    return root


def _photo():
    """A 96 x 64 random photo and a box mask inside it."""
    rgb = np.random.default_rng(0).integers(0, 255, (96, 64, 3), np.uint8)
    mask = np.zeros((96, 64), bool)
    mask[10:85, 16:48] = True
    return rgb, mask


def test_the_store_finds_the_tiny_models(models):
    from humanref_cli.models.store import find_model, model_status

    assert find_model("marigold_normals", models) == models / "marigold_normals"
    assert find_model("blip", models) == models / "blip"
    assert model_status("marigold_normals", models).missing_files == ()


def test_marigold_front_normals_on_a_tiny_model(models, capfd):
    from diffusers.utils import logging as diffusers_logging

    from humanref_cli.perception.normals import marigold_front_normals

    rgb, mask = _photo()
    capfd.readouterr()
    normals = marigold_front_normals(models / "marigold_normals", rgb, mask)
    assert "Loading pipeline components" not in capfd.readouterr().err  # no bar past --quiet
    assert diffusers_logging.is_progress_bar_enabled()  # the process-wide switch is restored
    assert normals.shape == (96, 64, 3) and normals.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(normals[mask], axis=-1), 1.0, atol=1e-4)
    assert (normals[~mask] == 0).all()
    again = marigold_front_normals(models / "marigold_normals", rgb, mask)
    np.testing.assert_array_equal(normals, again)  # the pipeline's noise is seeded


def test_blip_caption_on_a_tiny_model(models):
    from humanref_cli.perception.prompt import blip_caption, make_prompt
    from humanref_cli.testing.tiny_marigold_blip import BLIP_WORDS

    rgb, _ = _photo()
    caption = blip_caption(models / "blip", rgb, max_new_tokens=8)
    assert isinstance(caption, str) and caption == caption.strip()
    assert "[" not in caption  # special tokens ([DEC], [SEP], [PAD]) are skipped
    assert set(caption.split()) <= set(BLIP_WORDS)
    prompt = make_prompt(None, caption)
    assert prompt.source == "blip" and prompt.caption == caption
    assert prompt.text.endswith(", high quality")


def test_prep_stage_uses_marigold_and_blip(tmp_path, models):
    from humanref_cli.configs.prep import preset
    from humanref_cli.stages.prep import run_prep
    from humanref_cli.synth.subject import make_subject

    make_subject(tmp_path / "subject", seed=0, res=512)
    ws = Workspace(tmp_path / "ws")
    cfg = replace(preset("cpu"), fit_steps_keypoints=5, fit_steps_full=5)
    rt = Runtime(device_name="cpu", quiet=True)
    result = run_prep(ws, tmp_path / "subject" / "image.png", cfg, rt, models_dir=models)

    rec = ws.record("prep")
    notes = rec["notes"]
    assert result["normals_source"] == notes["normals_source"] == "marigold"
    assert result["prompt_source"] == notes["prompt_source"] == "blip"
    used = notes["models_used"]
    assert used["normal_front"] == rec["models"]["marigold_normals"]
    assert used["prompt"] == rec["models"]["blip"]
    assert "prs-eth/marigold-normals-v1-1" in used["normal_front"]
    assert "Salesforce/blip-image-captioning-base" in used["prompt"]

    prep = ws.root / "prep"
    mask = np.asarray(Image.open(prep / "mask.png")) > 127
    normals = np.load(prep / "normal_front.npy")
    np.testing.assert_allclose(np.linalg.norm(normals[mask], axis=-1), 1.0, atol=1e-3)
    assert (normals[~mask] == 0).all()
    first_line = (prep / "prompt.txt").read_text().splitlines()[0]
    assert first_line == notes["prompt"] and first_line.endswith(", high quality")
