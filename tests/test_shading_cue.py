"""The legs' shading cue (which leg is forward) on hand-made images with known brightness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humanref_cli.perception.shading_cue import (
    PAIRS,
    ShadingSettings,
    describe,
    limb_shading,
    load_shading_calibration,
)

RES = 200
# Two vertical legs: left leg (the person's left, image right) at u = 120, right leg at u = 80.
HIP_V, KNEE_V, ANKLE_V = 80, 130, 180


def _keypoints() -> np.ndarray:
    kp = np.zeros((33, 2))
    kp[[23, 25, 27], 0], kp[[24, 26, 28], 0] = 120.0, 80.0
    kp[[23, 24], 1], kp[[25, 26], 1], kp[[27, 28], 1] = HIP_V, KNEE_V, ANKLE_V
    kp[11:23] = [100.0, 40.0]  # arms and hands far above the legs
    return kp


def _legs(left_colour, right_colour, rim: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """RGB float image and mask of two 16-px-wide legs; ``rim`` scales the outer 4 px of each leg."""
    rgb = np.ones((RES, RES, 3))
    mask = np.zeros((RES, RES), bool)
    for centre, colour in ((120, left_colour), (80, right_colour)):
        rgb[HIP_V : ANKLE_V + 1, centre - 8 : centre + 8] = np.asarray(colour) * rim
        rgb[HIP_V : ANKLE_V + 1, centre - 4 : centre + 4] = colour
        mask[HIP_V : ANKLE_V + 1, centre - 8 : centre + 8] = True
    return rgb, mask


def test_brighter_left_leg_gives_the_log_ratio_of_the_brightness():
    rgb, mask = _legs((0.8, 0.6, 0.4), (0.4, 0.3, 0.2))  # same colour, left twice as bright
    cue = limb_shading(rgb, mask, _keypoints(), np.ones(33))
    assert cue.valid.all()
    np.testing.assert_allclose(cue.log_ratio, [np.log(2.0)] * len(PAIRS), atol=1e-9)
    assert np.allclose(cue.chroma, 0.0)
    as_bytes = limb_shading((rgb * 250).astype(np.uint8), mask, _keypoints(), np.ones(33))  # prep's crops
    np.testing.assert_allclose(as_bytes.log_ratio, cue.log_ratio, atol=1e-9)


def test_dark_rims_do_not_count():
    """The window's brightest pixels are the limb's lit middle, not its darker rims (where the
    surface turns away) nor where a keypoint sits off-centre."""
    rgb, mask = _legs((0.6, 0.6, 0.6), (0.6, 0.6, 0.6), rim=0.3)
    kp = _keypoints()
    kp[[23, 25, 27], 0] += 5.0  # the left leg's keypoints near its rim
    cue = limb_shading(rgb, mask, kp, np.ones(33))
    np.testing.assert_allclose(cue.log_ratio, 0.0, atol=1e-9)


def test_hands_over_a_thigh_are_left_out():
    rgb, mask = _legs((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    kp = _keypoints()
    kp[[15, 17, 19, 21], :] = [120.0, 105.0]  # left hand on the left thigh
    kp[13], kp[14], kp[16] = [120.0, 60.0], [80.0, 60.0], [80.0, 15.0]  # forearms 45 px long
    rgb[95:116, 112:129] = 0.95  # a bright hand, inside the 0.35 × 45 px disc left out around it
    cue = limb_shading(rgb, mask, kp, np.ones(33))
    assert abs(cue.log_ratio[0]) < 1e-9


def test_differently_coloured_legs_are_not_used():
    rgb, mask = _legs((0.8, 0.2, 0.2), (0.2, 0.2, 0.8))
    cue = limb_shading(rgb, mask, _keypoints(), np.ones(33))
    assert not cue.valid.any() and (cue.chroma > ShadingSettings().max_chroma).all()
    assert "not used" in describe(cue, load_shading_calibration())


def test_a_photo_without_colour_is_not_used():
    """Grey legs of different brightness may be a stride or two greys: the colour check cannot tell."""
    rgb, mask = _legs((0.8, 0.8, 0.8), (0.4, 0.4, 0.4))
    cue = limb_shading(rgb, mask, _keypoints(), np.ones(33))
    assert cue.colourless and not cue.valid.any()
    np.testing.assert_allclose(cue.log_ratio, [np.log(2.0)] * len(PAIRS), atol=1e-9)  # measured, not used
    assert "without colour" in describe(cue, load_shading_calibration())
    # a grayscale JPEG saved as RGB: a level or two of chroma noise is still no colour
    noisy = (rgb * 250).astype(np.int16) + np.random.default_rng(0).integers(-1, 2, rgb.shape)
    assert limb_shading(noisy.clip(0, 255).astype(np.uint8), mask, _keypoints(), np.ones(33)).colourless
    # one coloured garment elsewhere on the person is enough to trust the legs' own check
    rgb[HIP_V : HIP_V + 10, 72:128] = (0.8, 0.3, 0.2)
    cue = limb_shading(rgb, mask, _keypoints(), np.ones(33))
    assert not cue.colourless and cue.valid.all()


def test_hidden_legs_are_not_used():
    rgb, mask = _legs((0.8, 0.6, 0.4), (0.4, 0.3, 0.2))
    vis = np.ones(33)
    vis[27] = 0.1  # left ankle hidden: the shins are not compared
    cue = limb_shading(rgb, mask, _keypoints(), vis)
    assert cue.valid.tolist() == [True, False]


@pytest.mark.parametrize("detector", ["full", "heavy"])
def test_packaged_calibration_reads_the_brighter_leg_as_forward(detector):
    """Light from above: the brighter leg is the one swung forward (scale > 0), and the legs' shading
    was a usable predictor on the calibration subjects (sign right on the clear strides)."""
    cal = load_shading_calibration(torch.float64, detector=detector)
    assert cal is not None and (cal.scale > 0).all() and (cal.sigma < 0.15).all()
    rgb, mask = _legs((0.8, 0.6, 0.4), (0.4, 0.3, 0.2))
    cue = limb_shading(rgb, mask, _keypoints(), np.ones(33))
    assert (cal.target(torch.as_tensor(cue.log_ratio)) > 0.5).all()
    assert describe(cue, cal).count("left forward") == len(PAIRS)


@pytest.mark.parametrize("detector", ["full", "heavy"])
def test_packaged_calibration_was_solved_with_the_settings_in_use(detector):
    """The calibration's a, b, σ only mean something for the sampling they were solved with."""
    import json
    from dataclasses import asdict

    from humanref_cli.perception.landmark_offsets import calibration_text

    table = json.loads(calibration_text(detector))["shading_pairs"]
    assert table["settings"] == asdict(ShadingSettings())
    assert table["pairs"] == list(PAIRS)
