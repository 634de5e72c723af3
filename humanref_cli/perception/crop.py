"""The square crop around the person and the orthographic reference camera (method.md §2.1, §2.6).

The person's larger box side covers ``box_scale`` (0.9) of the crop's side; the crop is resized to
``res`` with area interpolation. Pixels of the crop map to the photo by ``photo = origin + crop * scale``
(continuous pixel coordinates, pixel centres at ``i + 0.5``), which ``camera.json`` records both ways.
Under the front orthographic camera the crop spans the image plane ``[-1, 1]^2``, so crop pixel
``(u, v)`` is world ``(y, z) = (2u/res - 1, 1 - 2v/res)`` on any plane ``x = const``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Crop:
    """An integer square ``[x0, x0 + side) x [y0, y0 + side)`` of the working image, resized to ``res``.

    ``work_scale`` is photo pixels per working-image pixel (1 unless a huge photo was downscaled).
    """

    x0: int
    y0: int
    side: int
    res: int
    work_scale: float = 1.0

    @property
    def scale(self) -> float:
        """Working-image pixels per crop pixel."""
        return self.side / self.res

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Working-image pixels ``(N, 2)`` -> crop pixels ``(N, 2)``."""
        return (np.asarray(points, np.float64) - [self.x0, self.y0]) / self.scale

    def crop_to_photo_matrix(self) -> np.ndarray:
        """``(3, 3)`` homogeneous map from crop pixels to original-photo pixels (after EXIF rotation)."""
        s = self.scale * self.work_scale
        return np.array([[s, 0, self.x0 * self.work_scale], [0, s, self.y0 * self.work_scale], [0, 0, 1]])

    def camera_json(self, photo_size: tuple[int, int], exif_rotated: bool) -> dict:
        """The contents of ``prep/camera.json``."""
        from humanref_cli.render.camera import camera_to_world

        m = self.crop_to_photo_matrix()
        ws = self.work_scale
        return {
            "res": self.res,
            "photo_size": list(photo_size),
            "photo_exif_rotated": exif_rotated,
            "crop_box_photo": [
                self.x0 * ws,
                self.y0 * ws,
                (self.x0 + self.side) * ws,
                (self.y0 + self.side) * ws,
            ],
            "photo_pixels_per_crop_pixel": self.scale * ws,
            "crop_to_photo": m.tolist(),
            "photo_to_crop": np.linalg.inv(m).tolist(),
            "pixel_convention": "continuous (u, v) = (column, row); pixel (i, j) centre: (i + 0.5, j + 0.5)",
            "camera": {
                "type": "orthographic",
                "azimuth_deg": 0.0,
                "elevation_deg": 0.0,
                "distance": 1.0,
                "radius": 1.0,
                "c2w": camera_to_world(0.0, 0.0, 1.0).tolist(),
                "crop_pixel_to_world_yz": "y = 2 u / res - 1, z = 1 - 2 v / res (front camera, world z up)",
            },
        }


def square_crop(
    box: tuple[float, float, float, float], res: int, box_scale: float = 0.9, work_scale=1.0
) -> Crop:
    """The square crop centred on ``box (x0, y0, x1, y1)`` whose side is ``max(w, h) / box_scale``."""
    x0, y0, x1, y1 = box
    side = max(int(math.ceil(max(x1 - x0, y1 - y0) / box_scale)), 1)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return Crop(int(round(cx - side / 2)), int(round(cy - side / 2)), side, res, work_scale)


def crop_array(image: np.ndarray, crop: Crop, out_size: int | None = None, fill=0) -> np.ndarray:
    """Cut ``crop`` out of ``image (H, W[, C])`` (outside the image: ``fill``) and resize it to
    ``out_size`` (default ``crop.res``) with ``INTER_AREA``. Float images stay float."""
    import cv2

    out_size = out_size or crop.res
    h, w = image.shape[:2]
    canvas = np.empty((crop.side, crop.side, *image.shape[2:]), image.dtype)
    canvas[...] = fill
    sx0, sy0 = max(crop.x0, 0), max(crop.y0, 0)
    sx1, sy1 = min(crop.x0 + crop.side, w), min(crop.y0 + crop.side, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - crop.y0 : sy1 - crop.y0, sx0 - crop.x0 : sx1 - crop.x0] = image[sy0:sy1, sx0:sx1]
    if crop.side == out_size:
        return canvas
    interp = cv2.INTER_AREA if crop.side > out_size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (out_size, out_size), interpolation=interp)


def uncrop_array(image: np.ndarray, crop: Crop, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Map a crop-sized ``image (res, res[, C])`` back onto the working image grid ``size (H, W)``
    (outside the crop: 0). Bool images are resampled as floats and thresholded at 0.5."""
    import cv2

    h, w = size
    xs = ((np.arange(w) + 0.5 - crop.x0) / crop.scale - 0.5).astype(np.float32)
    ys = ((np.arange(h) + 0.5 - crop.y0) / crop.scale - 0.5).astype(np.float32)
    map_x, map_y = np.meshgrid(xs, ys)
    is_bool = image.dtype == bool
    src = image.astype(np.float32) if is_bool else image
    out = cv2.remap(src, map_x, map_y, cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR, borderValue=0)
    return out > 0.5 if is_bool else out
