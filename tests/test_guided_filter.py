"""The colour guided filter that snaps mediapipe's soft mask to the photo's edges."""

from __future__ import annotations

import numpy as np
import pytest

from humanref_cli.perception.guided_filter import box_mean, guided_filter, refine_mask


def _two_colour_photo(h: int = 64, w: int = 96, edge: int = 40) -> np.ndarray:
    """Red left of column ``edge``, blue from it on: ``(h, w, 3)`` uint8."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, :edge] = (200, 40, 30)
    rgb[:, edge:] = (20, 60, 210)
    return rgb


def _ramp(h: int, w: int, centre: float, width: float) -> np.ndarray:
    """A soft mask, 1 on the left, falling linearly to 0 over ``width`` px around column ``centre``."""
    cols = np.arange(w) + 0.5
    return np.tile(np.clip(0.5 - (cols - centre) / width, 0.0, 1.0), (h, 1))


def test_constant_guide_is_a_double_box_filter():
    """No colour variation: a = 0 in every window, so q = mean(mean(p))."""
    rng = np.random.default_rng(0)
    p = rng.random((20, 30))
    guide = np.full((20, 30, 3), 0.4)
    expected = box_mean(box_mean(p, 2), 2)
    assert np.allclose(guided_filter(guide, p, 2, 1e-4), expected, atol=1e-9)


def test_source_that_is_a_linear_function_of_the_guide_is_kept():
    """p = 0.7 r - 0.2 g + 0.1 is exactly the per-window linear model, so eps -> 0 gives q = p."""
    rng = np.random.default_rng(1)
    guide = rng.random((24, 24, 3))
    p = 0.7 * guide[..., 0] - 0.2 * guide[..., 1] + 0.1
    assert np.abs(guided_filter(guide, p, 3, 1e-9) - p).max() < 1e-5


@pytest.mark.parametrize("centre", [37.0, 43.0])
def test_mask_edge_moves_to_the_colour_edge(centre):
    """A soft mask whose 0.5 contour sits 3 px inside or outside the colour edge is snapped onto it."""
    rgb = _two_colour_photo()
    soft = _ramp(64, 96, centre, width=6.0)
    assert (soft > 0.5).sum(axis=1)[0] != 40
    out = refine_mask(rgb, soft, (0, 0, 96, 64), radius_frac=8 / 64, eps=1e-4)
    assert out.dtype == bool and (out.sum(axis=1) == 40).all()


def test_large_regions_are_filtered_subsampled_with_the_same_result():
    """The fast path (filter at max_side, upsample the linear model) lands on the same edge."""
    rgb = _two_colour_photo(h=400, w=600, edge=250)
    soft = _ramp(400, 600, 256.0, width=40.0)
    full = refine_mask(rgb, soft, (0, 0, 600, 400), radius_frac=0.05, eps=1e-4)
    fast = refine_mask(rgb, soft, (0, 0, 600, 400), radius_frac=0.05, eps=1e-4, max_side=150)
    assert (full.sum(axis=1) == 250).all()
    assert np.abs(fast.sum(axis=1) - 250).max() <= 1


def test_outside_the_padded_box_the_mask_is_kept():
    rgb = _two_colour_photo()
    soft = _ramp(64, 96, 43.0, width=6.0)
    soft[:, 92:94] = 0.9  # a thin stripe right of the box and its padding (3 radii = 24 px)
    out = refine_mask(rgb, soft, (0, 0, 60, 64), radius_frac=8 / 64, eps=1e-4)
    assert out[:, 92:94].all() and not out[:, 94:].any() and (out[:, :60].sum(axis=1) == 40).all()
    assert not guided_filter(rgb / 255.0, soft, 8, 1e-4)[:, 92:94].max() > 0.5  # filtering would drop it


@pytest.mark.parametrize(
    "settings,message",
    [({"mask_refine_radius": 0.0}, "mask_refine_radius"), ({"mask_refine_eps": -1e-4}, "mask_refine_eps")],
)
def test_bad_filter_settings_are_usage_errors(settings, message):
    from humanref_cli.configs.prep import PrepConfig
    from humanref_cli.errors import UsageError

    with pytest.raises(UsageError, match=message) as e:
        PrepConfig(**settings)
    assert e.value.exit_code == 2
