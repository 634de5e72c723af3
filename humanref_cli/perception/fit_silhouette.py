"""The silhouette terms of the body fit (``bodyfit.fit_losses``), in the camera plane.

Plane coordinates are world ``(y, z)`` under the front orthographic camera (method.md §2.6):
``u = (y + 1) res / 2``, ``v = (1 - z) res / 2`` for a ``res``-pixel crop. Distances are in loss units,
``unit`` per world unit (the fit's ``UNIT`` = 50: one unit is 1% of the crop side)::

    inside = mean_v D_out(π(v))²                 every projected vertex inside the mask
    cover  = mean_b min_v ||b - π(v)||²          every boundary sample near some vertex

``D_out`` is the distance transform of the outside of the mask (0 inside), ``b`` points sampled on the
mask's outer contour. Together they ask the body's projection to fill the silhouette and stay in it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def pixels_to_plane(px: torch.Tensor, res: int) -> torch.Tensor:
    """Crop pixels ``(N, 2)`` -> camera-plane coordinates ``(N, 2)`` = world (y, z)."""
    return torch.stack([px[:, 0] * 2 / res - 1, 1 - px[:, 1] * 2 / res], dim=-1)


def plane_to_pixels(points: torch.Tensor, res: int) -> torch.Tensor:
    """World points ``(N, 3)`` -> crop pixels ``(N, 2)`` under the front orthographic camera."""
    return torch.stack([(points[:, 1] + 1) * res / 2, (1 - points[:, 2]) * res / 2], dim=-1)


class SilhouetteTarget:
    """A square ``mask (res, res)`` bool, precomputed: ``dt_out (1, 1, res, res)`` the outside distance
    field and ``boundary (B, 2)`` at most ``samples`` contour points (chosen with ``seed``), both in
    loss units."""

    def __init__(self, mask: np.ndarray, samples: int, seed: int, unit: float):
        import cv2
        from scipy import ndimage

        res = mask.shape[0]
        self.res, self.unit = res, unit
        dt = ndimage.distance_transform_edt(~mask).astype(np.float32) * (2.0 / res) * unit
        self.dt_out = torch.from_numpy(dt)[None, None]  # (1, 1, H, W)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        boundary = np.concatenate([c[:, 0, :] for c in contours], 0).astype(np.float32) + 0.5  # (B, 2) u, v
        rng = np.random.default_rng(seed)
        if len(boundary) > samples:
            boundary = boundary[rng.choice(len(boundary), samples, replace=False)]
        self.boundary = pixels_to_plane(torch.from_numpy(boundary), res) * unit  # (B, 2)

    def inside(self, plane: torch.Tensor) -> torch.Tensor:
        """Mean squared outside-distance of projected points ``(N, 2)`` (plane coords)."""
        grid = torch.stack([plane[:, 0], -plane[:, 1]], -1)[None, None]  # grid_sample: x right, y down
        d = F.grid_sample(self.dt_out.to(plane.dtype), grid, align_corners=False, padding_mode="border")
        return d.square().mean()

    def cover(self, plane: torch.Tensor) -> torch.Tensor:
        """Mean squared distance from each boundary sample to its nearest projected point."""
        return torch.cdist(self.boundary.to(plane.dtype), plane * self.unit).min(dim=1).values.square().mean()
