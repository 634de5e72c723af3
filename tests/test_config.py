"""Config overrides: types, unknown keys with suggestions, TOML files, semantic key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pytest

from humanref_cli.configs.base import (
    apply_overrides,
    config_hash,
    load_toml_overrides,
    parse_set_options,
    semantic_dict,
)
from humanref_cli.errors import UsageError


@dataclass(frozen=True)
class Inner:
    mode: Literal["none", "sds", "refsds"] = "refsds"
    strategy: Literal[0, 1, 2, 3] = 0
    weight: float = 1e-3


@dataclass(frozen=True)
class Outer:
    steps: int = 3000
    res: tuple[int, ...] = (64, 128, 256)
    use_mask: bool = True
    name: str | None = None
    guidance: Inner = field(default_factory=Inner)
    preview_every: int = field(default=100, metadata={"semantic": False})


def test_overrides_are_typed_and_nested():
    cfg = apply_overrides(
        Outer(),
        {
            "steps": "1e3",
            "res": "32,64",
            "use_mask": "off",
            "guidance.strategy": "2",
            "guidance.mode": "sds",
            "name": "none",
            "coarse.guidance.weight": "0.5",
        },
        "coarse",
    )
    assert cfg.steps == 1000 and cfg.res == (32, 64) and cfg.use_mask is False and cfg.name is None
    assert cfg.guidance == Inner(mode="sds", strategy=2, weight=0.5)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("steps", "12.5", "integer"),
        ("use_mask", "maybe", "true/false"),
        ("guidance.mode", "dds", "one of"),
        ("guidance.strategy", "7", "one of"),
        ("guidance.weight", "abc", "number"),
    ],
)
def test_bad_values_are_usage_errors(key, value, message):
    with pytest.raises(UsageError, match=message) as e:
        apply_overrides(Outer(), {key: value}, "coarse")
    assert e.value.exit_code == 2


def test_unknown_key_suggests_closest():
    with pytest.raises(UsageError) as e:
        apply_overrides(Outer(), {"stpes": "3"}, "coarse")
    assert "unknown config key 'stpes'" in e.value.message and "steps" in e.value.hint
    with pytest.raises(UsageError) as e:
        apply_overrides(Outer(), {"weight": "3"}, "coarse")
    assert "guidance.weight" in e.value.hint


def test_unknown_key_with_nothing_close_points_at_the_key_list():
    """A far-off key gets the list of valid keys, not a misleading guess."""
    from humanref_cli.configs.stage_configs import resolve_config

    with pytest.raises(UsageError) as e:
        resolve_config("coarse", "cpu", ["nonsense=1"], None)
    assert "did you mean" not in e.value.hint and "humanref config coarse" in e.value.hint


def test_set_parsing_and_toml(tmp_path):
    assert parse_set_options(["a.b=1", "c = x=y"]) == {"a.b": "1", "c": "x=y"}
    with pytest.raises(UsageError, match="key=value"):
        parse_set_options(["novalue"])
    f = tmp_path / "c.toml"
    f.write_text('[coarse]\nsteps = 10\n[coarse.guidance]\nmode = "none"\n[refine]\nsteps = 99\n')
    over = load_toml_overrides(f, "coarse", ("coarse", "refine"))
    assert over == {"steps": 10, "guidance.mode": "none"}
    assert apply_overrides(Outer(), over, "coarse").guidance.mode == "none"
    flat = tmp_path / "flat.toml"
    flat.write_text("steps = 5\n")
    assert load_toml_overrides(flat, "coarse", ("coarse", "refine")) == {"steps": 5}
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 5\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_toml_overrides(bad, "coarse", ("coarse",))


def test_semantic_dict_drops_non_semantic_fields():
    assert "preview_every" not in semantic_dict(Outer())
    assert config_hash(Outer()) == config_hash(Outer(preview_every=1))
    assert config_hash(Outer()) != config_hash(Outer(steps=1))


def test_prep_fit_settings_carry_every_fit_field():
    """Each ``fit_*`` field of the prep config reaches the body fit's settings (not one default-equal
    value standing in for another), and the fit's own defaults are prep's."""
    from dataclasses import fields, replace

    from humanref_cli.configs.prep import PrepConfig
    from humanref_cli.perception.bodyfit import FitSettings

    assert FitSettings.from_prep(PrepConfig(), 0) == FitSettings()
    names = [f.name for f in fields(PrepConfig) if f.name.startswith("fit_") and f.name != "fit_min_iou"]
    changed = {}
    for i, name in enumerate(names):
        default = getattr(PrepConfig(), name)
        changed[name] = (not default) if isinstance(default, bool) else type(default)(i + 2)
    changed["fit_min_age"] = 0.75  # a phenotype value: must stay in [0, 1]
    settings = FitSettings.from_prep(replace(PrepConfig(), min_visibility=0.25, **changed), seed=7)
    for name, value in changed.items():
        assert getattr(settings, name.removeprefix("fit_")) == value, name
    assert settings.min_visibility == 0.25 and settings.seed == 7


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_a_min_age_outside_the_phenotype_range_is_a_usage_error(value):
    from humanref_cli.configs.prep import PrepConfig

    with pytest.raises(UsageError, match="fit_min_age") as e:
        PrepConfig(fit_min_age=value)
    assert e.value.exit_code == 2
    assert PrepConfig(fit_min_age=0.0).fit_min_age == 0.0  # children allowed


def test_stage_meshes_are_taken_on_the_body_priors_grid():
    # a mesh off the prior's lattice measured worse in both directions (docs/decisions.md 23)
    from humanref_cli.configs.optim import coarse_preset, refine_preset

    for name in ("paper", "fast", "cpu"):
        prior = coarse_preset(name).prior_res
        assert coarse_preset(name).mesh_res == refine_preset(name).mesh_res == prior == 256, name


def test_arm_starts_bend_each_combination_of_arms():
    from humanref_cli.geometry.anny_body import BodyParams
    from humanref_cli.perception.bodyfit import FitSettings, fit_evaluations
    from humanref_cli.perception.fit_starts import arm_starts

    rest = BodyParams(scale=0.9, translation=[0.1, 0.2, 0.3], pose={"head": [0.1, 0.0, 0.0]})
    starts = arm_starts(rest)
    assert starts[0] == rest and len(starts) == 4
    bent = [tuple(side for side in "LR" if f"lowerarm01.{side}" in s.pose) for s in starts]
    assert bent == [(), ("L",), ("R",), ("L", "R")]
    for s in starts[1:]:
        assert s.scale == 0.9 and s.translation == rest.translation and s.pose["head"] == [0.1, 0.0, 0.0]
        assert all(s.pose[f"lowerarm01.{side}"][0] < -1.0 for side in "LR" if f"lowerarm01.{side}" in s.pose)
    assert rest.pose == {"head": [0.1, 0.0, 0.0]}  # the rest start is not changed in place
    settings = FitSettings(steps_keypoints=40, steps_full=100)
    assert fit_evaluations(settings) == 4 * 40 + 100
    assert fit_evaluations(FitSettings(steps_keypoints=40, steps_full=100, arm_starts=False)) == 140


def _world_with_forearms(depth: float) -> np.ndarray:
    """mediapipe-style metric landmarks (x right, y down, z away from the camera) whose forearms point
    down and towards the camera with unit-direction depth component ``depth``."""
    world = np.zeros((33, 3))
    world[[13, 14]] = [[0.2, 0.0, 0.0], [-0.2, 0.0, 0.0]]
    world[[15, 16]] = world[[13, 14]] + 0.25 * np.array([0.0, np.sqrt(1 - depth**2), -depth])
    return world


def test_both_arms_also_start_forward_when_mediapipe_points_the_forearms_at_the_camera():
    from humanref_cli.geometry.anny_body import BodyParams
    from humanref_cli.perception.bodyfit import FitSettings, fit_evaluations
    from humanref_cli.perception.fit_starts import arm_starts, forearms_forward

    assert forearms_forward(_world_with_forearms(0.8)) and not forearms_forward(_world_with_forearms(0.6))
    assert not forearms_forward(_world_with_forearms(-0.8))  # pointing away
    assert not forearms_forward(None)
    rest = BodyParams(pose={"head": [0.1, 0.0, 0.0]})
    starts = arm_starts(rest, forward=True)
    assert len(starts) == 5 and starts[:4] == arm_starts(rest)
    forward = starts[4].pose  # raised forward (-x) and out, the elbows straight, the rest kept
    assert forward["upperarm01.L"][0] < -0.5 and forward["upperarm01.R"][0] < -0.5
    assert forward["upperarm01.L"][1] > 0 > forward["upperarm01.R"][1]
    assert "lowerarm01.L" not in forward and forward["head"] == [0.1, 0.0, 0.0]
    settings = FitSettings(steps_keypoints=40, steps_full=100)
    assert fit_evaluations(settings, _world_with_forearms(0.8)) == 5 * 40 + 100
    assert fit_evaluations(settings, _world_with_forearms(0.6)) == 4 * 40 + 100


def test_another_start_goes_on_only_when_it_fits_the_keypoints_better_too():
    from humanref_cli.perception.fit_starts import pick_start

    assert pick_start([0.5], [0.2]) == 0  # a fit from one start (the truth, or arm starts off)
    # the lowest-loss bent start, which also fits the keypoints better: a bent elbow
    assert pick_start([0.85, 0.60, 0.70, 0.39], [0.45, 0.30, 0.30, 0.14]) == 3
    assert pick_start([0.85, 0.39, 0.70, 0.60], [0.45, 0.14, 0.30, 0.30]) == 1
    # seed 43 (arms forward): the bent start's loss is lower but it fits the keypoints worse
    assert pick_start([0.637, 0.931, 0.693, 0.607], [0.284, 0.537, 0.455, 0.444]) == 0
    # ... and both arms forward goes on: its loss is lower still
    assert pick_start([0.637, 0.931, 0.693, 0.607, 0.543], [0.284, 0.537, 0.455, 0.444, 0.270], True) == 4
    # the lowest-loss bent start decides, even when another one fits the keypoints better
    assert pick_start([0.60, 0.50, 0.55, 0.45], [0.30, 0.20, 0.25, 0.35]) == 0
    assert pick_start([0.30, 0.50, 0.55, 0.45], [0.30, 0.20, 0.25, 0.10]) == 0  # the straight loss is lowest


def test_the_forward_start_goes_on_when_its_loss_is_lower_than_the_chosen_ones():
    from humanref_cli.perception.fit_starts import pick_start

    # unseen seed 101 (arms forward): forward's loss is lower, its keypoints a little worse -> forward
    rest_and_bent = [0.320, 0.581, 0.480, 0.540]
    kp = [0.181, 0.282, 0.238, 0.305]
    assert pick_start([*rest_and_bent, 0.306], [*kp, 0.195], forward=True) == 4
    # its loss is higher than the straight start's -> straight
    assert pick_start([*rest_and_bent, 0.330], [*kp, 0.150], forward=True) == 0
    # compared with the bent start that goes on, not with the straight one
    assert pick_start([0.60, 0.40, 0.70, 0.80, 0.45], [0.30, 0.20, 0.30, 0.30, 0.10], forward=True) == 1
    assert pick_start([0.60, 0.40, 0.70, 0.80, 0.35], [0.30, 0.20, 0.30, 0.30, 0.40], forward=True) == 4
    # without the forward start the last one is a bent start, held to the keypoint condition
    assert pick_start([0.60, 0.40, 0.70, 0.35], [0.30, 0.20, 0.30, 0.40]) == 0
