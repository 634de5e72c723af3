"""`humanref run` plumbing: stage selection and per-stage --set routing."""

from __future__ import annotations

import pytest

from humanref_cli.errors import UsageError
from humanref_cli.stages.pipeline import selected_stages, split_sets


def test_selected_stages_until_and_from():
    assert selected_stages(None, None) == (["prep", "coarse", "refine", "texture", "export"], [])
    assert selected_stages("refine", None) == (["prep", "coarse", "refine"], [])
    assert selected_stages(None, "texture") == (
        ["prep", "coarse", "refine", "texture", "export"],
        ["texture", "export"],
    )
    assert selected_stages("refine", "coarse") == (["prep", "coarse", "refine"], ["coarse", "refine"])
    with pytest.raises(UsageError, match="not a stage"):
        selected_stages("polish", None)
    with pytest.raises(UsageError, match="comes after"):
        selected_stages("coarse", "export")


def test_split_sets_requires_stage_prefix():
    per = split_sets(["coarse.steps=5", "coarse.guidance.mode=none", "export.formats=glb"])
    assert per["coarse"] == ["steps=5", "guidance.mode=none"] and per["export"] == ["formats=glb"]
    assert per["prep"] == []
    with pytest.raises(UsageError, match="must name its stage") as e:
        split_sets(["steps=5"])
    assert "coarse.steps" in e.value.hint
