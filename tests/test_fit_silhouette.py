"""The body fit's silhouette terms (perception/fit_silhouette.py) on a square mask, by hand."""

import numpy as np
import torch

from humanref_cli.perception.fit_silhouette import SilhouetteTarget, pixels_to_plane, plane_to_pixels

RES = 64


def _square_mask() -> np.ndarray:
    mask = np.zeros((RES, RES), bool)
    mask[16:48, 16:48] = True  # pixels 16..47: the square spans [16, 48) in pixel coordinates
    return mask


def test_pixels_and_plane_are_inverse_and_follow_the_front_camera():
    px = torch.tensor([[0.0, 0.0], [32.0, 32.0], [64.0, 16.0]], dtype=torch.float64)
    plane = pixels_to_plane(px, RES)
    # u = (y + 1) res / 2, v = (1 - z) res / 2: the top-left corner is y = -1, z = +1
    assert torch.allclose(plane, torch.tensor([[-1.0, 1.0], [0.0, 0.0], [1.0, 0.5]], dtype=torch.float64))
    world = torch.cat([torch.zeros(3, 1, dtype=torch.float64), plane], 1)  # depth is not seen
    assert torch.allclose(plane_to_pixels(world, RES), px)


def test_inside_is_zero_in_the_mask_and_the_squared_distance_outside():
    sil = SilhouetteTarget(_square_mask(), samples=10_000, seed=0, unit=50.0)
    centre = pixels_to_plane(torch.tensor([[32.0, 32.0], [20.5, 40.5]]), RES)
    assert float(sil.inside(centre)) == 0.0
    # 10 px right of the square's right edge (x = 48): the pixel centre at 57.5 is 10 pixels from
    # the last inside pixel (47); 10 px = 10 * 2 / 64 world units = 15.625 loss units
    outside = pixels_to_plane(torch.tensor([[57.5, 32.5]]), RES)
    assert abs(float(sil.inside(outside)) - 15.625**2) < 1e-3


def test_cover_is_small_when_points_line_the_contour_and_grows_when_they_shrink_inwards():
    sil = SilhouetteTarget(_square_mask(), samples=10_000, seed=0, unit=50.0)
    t = torch.linspace(16.5, 47.5, 32)
    edge = torch.cat([torch.stack([t, torch.full_like(t, c)], 1) for c in (16.5, 47.5)])
    edge = torch.cat([edge, edge.flip(1)])  # the four sides through the outer pixels' centres
    assert float(sil.cover(pixels_to_plane(edge, RES))) < 1e-6
    # the same outline scaled about the centre to sides at 20 and 44: every contour sample (pixel
    # centres at 16.5 .. 47.5) is at least 3.5 px from the nearest point
    shrunk = 32.0 + (edge - 32.0) * (12.0 / 15.5)
    d_min = 3.5 * 2 / RES * 50.0
    assert float(sil.cover(pixels_to_plane(shrunk, RES))) >= d_min**2 - 1e-3


def test_boundary_samples_are_capped_and_repeatable():
    a = SilhouetteTarget(_square_mask(), samples=20, seed=3, unit=50.0)
    b = SilhouetteTarget(_square_mask(), samples=20, seed=3, unit=50.0)
    assert a.boundary.shape == (20, 2)
    assert torch.equal(a.boundary, b.boundary)
