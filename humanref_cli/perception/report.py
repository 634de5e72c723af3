"""``prep/report.png``: one contact sheet of everything prep produced, to check at a glance.

Tiles (left to right, top to bottom): the RGB crop, the silhouette over it, the keypoints (detected
in green, fitted body's in red), the fitted body shaded over the crop, the front and back normal
maps, the parsing groups with the region boxes, the fitted body seen from its side (the depth the
front view cannot show: a limb swung the wrong way or a lean shows up here); a caption line with
the numbers that matter.
"""

from __future__ import annotations

import numpy as np

# Bones of the mediapipe skeleton drawn between keypoints.
_EDGES = (
    (11, 12),
    (11, 13),
    (13, 15),
    (12, 14),
    (14, 16),
    (11, 23),
    (12, 24),
    (23, 24),
    (23, 25),
    (25, 27),
    (24, 26),
    (26, 28),
    (27, 31),
    (28, 32),
    (0, 2),
    (0, 5),
)
_TILE = 256


def _tile(img: np.ndarray, title: str) -> np.ndarray:
    import cv2

    t = cv2.resize(img, (_TILE, _TILE), interpolation=cv2.INTER_AREA)
    cv2.rectangle(t, (0, 0), (_TILE, 18), (0, 0, 0), -1)
    cv2.putText(t, title, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return t


def _keypoint_tile(rgb, keypoints, visibility, fitted, min_visibility) -> np.ndarray:
    import cv2

    img = (rgb.astype(np.float32) * 0.6 + 255 * 0.4).astype(np.uint8)
    ok = visibility >= min_visibility
    for a, b in _EDGES:
        if ok[a] and ok[b]:
            cv2.line(
                img, tuple(int(v) for v in keypoints[a]), tuple(int(v) for v in keypoints[b]), (0, 160, 0), 1
            )
    for i, (u, v) in enumerate(keypoints):
        cv2.circle(img, (int(u), int(v)), 3, (0, 200, 0) if ok[i] else (150, 150, 150), -1)
    if fitted is not None:
        for u, v in fitted:
            cv2.circle(img, (int(u), int(v)), 2, (220, 0, 0), -1)
    return img


def _regions_tile(groups_rgb: np.ndarray, regions: dict) -> np.ndarray:
    import cv2

    img = groups_rgb.copy()
    colours = {
        "head": (255, 120, 120),
        "upper": (120, 190, 255),
        "lower": (120, 230, 140),
        "feet": (255, 220, 90),
        "face": (255, 255, 255),
    }
    for name, part in regions.get("parts", {}).items():
        x0, y0, x1, y1 = part["box"]
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), colours.get(name, (255, 255, 255)), 1)
    return img


def contact_sheet(
    rgb: np.ndarray,
    mask: np.ndarray,
    keypoints: np.ndarray,
    visibility: np.ndarray,
    fitted_keypoints: np.ndarray | None,
    body_overlay: np.ndarray,
    normal_front_png: np.ndarray,
    normal_back_png: np.ndarray,
    groups_rgb: np.ndarray,
    regions: dict,
    caption: str,
    min_visibility: float = 0.5,
    side_view: np.ndarray | None = None,
) -> np.ndarray:
    """The report image ``(2 * 256 + 28, 4 * 256, 3)`` uint8 from the prep outputs (all ``res``-sized,
    RGB uint8 except ``mask`` bool and the keypoint arrays)."""
    import cv2

    overlay = rgb.copy()
    overlay[mask] = (0.5 * overlay[mask] + 0.5 * np.array([255, 60, 60])).astype(np.uint8)
    tiles = [
        _tile(rgb, "crop"),
        _tile(overlay, "silhouette"),
        _tile(
            _keypoint_tile(rgb, keypoints, visibility, fitted_keypoints, min_visibility),
            "keypoints (fit: red)",
        ),
        _tile(body_overlay, "body fit"),
        _tile(normal_front_png, "normal front"),
        _tile(normal_back_png, "normal back"),
        _tile(_regions_tile(groups_rgb, regions), "parsing + regions"),
        _tile(np.full_like(rgb, 255), "") if side_view is None else _tile(side_view, "body fit, side"),
    ]
    sheet = np.concatenate([np.concatenate(tiles[:4], 1), np.concatenate(tiles[4:], 1)], 0)
    footer = np.full((28, sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(footer, caption[:150], (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([sheet, footer], 0)


def body_overlay(rgb: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The fitted body shaded (gray, lit from the camera) blended over the crop ``(H, W, 3)`` uint8."""
    from humanref_cli.render.camera import camera_to_world
    from humanref_cli.render.raster import MeshRasterizer

    h, w = rgb.shape[:2]
    colours = np.full((len(vertices), 3), 0.8, np.float32)
    with MeshRasterizer(w, h, supersample=2) as raster:
        shaded, alpha = raster.shaded(vertices, faces, colours, camera_to_world(0.0, 0.0, 1.0))
    a = 0.7 * alpha[..., None]
    return np.clip(rgb * (1 - a) + shaded * 255 * a, 0, 255).astype(np.uint8)


def body_side_view(vertices: np.ndarray, faces: np.ndarray, res: int) -> np.ndarray:
    """The fitted body shaded on white, seen by the side camera (azimuth 90°, the person's left in
    the image's right half for a front-facing body), ``(res, res, 3)`` uint8, same world scale as the crop."""
    from humanref_cli.render.camera import camera_to_world
    from humanref_cli.render.raster import MeshRasterizer

    colours = np.full((len(vertices), 3), 0.8, np.float32)
    with MeshRasterizer(res, res, supersample=2) as raster:
        shaded, _ = raster.shaded(vertices, faces, colours, camera_to_world(90.0, 0.0, 1.0))
    return np.clip(shaded * 255, 0, 255).astype(np.uint8)
