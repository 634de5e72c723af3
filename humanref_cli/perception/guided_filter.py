"""Snapping a soft person mask to the photo's edges: the colour guided filter (He, Sun and Tang,
"Guided Image Filtering", TPAMI 2013; subsampled as in He and Sun, "Fast Guided Filter", 2015).

mediapipe predicts its segmentation at low resolution and upsamples it, so its 0.5 contour wanders about
a pixel around the person's real edge. The guided filter fits, in every window, the mask as a linear
function of the photo's colour and averages the fits, so the filtered mask changes where the colour
changes. Measured on synthetic subjects (decision 4m): IoU 0.973 -> 0.990 against the exact mask on a
white background, +0.011 to +0.019 on cluttered ones.
"""

from __future__ import annotations

import numpy as np


def box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the ``(2 radius + 1)²`` window around every pixel of ``x (H, W)``, edges reflected."""
    import cv2

    k = 2 * radius + 1
    return cv2.boxFilter(x, -1, (k, k), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Colour guided filter of ``src (H, W)`` by ``guide (H, W, 3)`` (both float, guide in [0, 1]).

    In each window ``w``: ``a_w = (Σ_w + eps I₃)⁻¹ cov_w(guide, src)`` ``(3,)`` and
    ``b_w = mean_w(src) - a_w · mean_w(guide)``; the output is ``q = mean(a) · guide + mean(b)``
    ``(H, W)`` float64, with ``Σ_w`` the guide's 3x3 colour covariance in the window.
    """
    a, b = guided_coefficients(guide, src, radius, eps)
    return apply_coefficients(guide, a, b)


def guided_coefficients(
    guide: np.ndarray, src: np.ndarray, radius: int, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """The window-averaged linear model of ``guided_filter``: ``mean(a) (H, W, 3)``, ``mean(b) (H, W)``."""
    guide = np.asarray(guide, np.float64)
    src = np.asarray(src, np.float64)
    mean_i = np.stack([box_mean(guide[..., c], radius) for c in range(3)], axis=-1)
    mean_p = box_mean(src, radius)
    cov_ip = np.stack([box_mean(guide[..., c] * src, radius) for c in range(3)], axis=-1)
    cov_ip -= mean_i * mean_p[..., None]
    sigma = np.empty(guide.shape[:2] + (3, 3))
    for i in range(3):
        for j in range(i, 3):
            sigma[..., i, j] = (
                box_mean(guide[..., i] * guide[..., j], radius) - mean_i[..., i] * mean_i[..., j]
            )
            sigma[..., j, i] = sigma[..., i, j]
    sigma += eps * np.eye(3)
    a = np.linalg.solve(sigma, cov_ip[..., None])[..., 0]
    b = mean_p - (a * mean_i).sum(axis=-1)
    mean_a = np.stack([box_mean(a[..., c], radius) for c in range(3)], axis=-1)
    return mean_a, box_mean(b, radius)


def apply_coefficients(guide: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``q = a · guide + b``: ``guide (H, W, 3)``, ``a (H, W, 3)``, ``b (H, W)`` -> ``(H, W)`` float64."""
    return (a * np.asarray(guide, np.float64)).sum(axis=-1) + b


def refine_mask(
    rgb: np.ndarray,
    soft: np.ndarray,
    box: tuple[float, float, float, float],
    radius_frac: float,
    eps: float,
    max_side: int = 1024,
) -> np.ndarray:
    """A soft mask ``(H, W)`` in [0, 1] snapped to the edges of ``rgb (H, W, 3)`` uint8 -> bool ``(H, W)``.

    The filter runs on the person ``box (x0, y0, x1, y1)`` padded by three radii (the mask is kept as
    it is outside it), with a radius of ``radius_frac`` times the box height. Regions longer than
    ``max_side`` are filtered at that size and the linear model is upsampled (the fast guided filter),
    which bounds time and memory for large photos. Threshold 0.5, as the unrefined mask.
    """
    import cv2

    h, w = soft.shape
    radius = max(1, round(radius_frac * (box[3] - box[1])))
    pad = 3 * radius
    x0, y0 = max(0, int(box[0]) - pad), max(0, int(box[1]) - pad)
    x1, y1 = min(w, int(np.ceil(box[2])) + pad), min(h, int(np.ceil(box[3])) + pad)
    out = soft > 0.5
    if x1 - x0 < 2 or y1 - y0 < 2:
        return out
    guide = rgb[y0:y1, x0:x1].astype(np.float64) / 255.0
    src = np.asarray(soft[y0:y1, x0:x1], np.float64)
    scale = min(1.0, max_side / max(x1 - x0, y1 - y0))
    if scale < 1.0:
        small = (max(2, round((x1 - x0) * scale)), max(2, round((y1 - y0) * scale)))
        g_small = cv2.resize(guide, small, interpolation=cv2.INTER_AREA)
        p_small = cv2.resize(src, small, interpolation=cv2.INTER_AREA)
        a, b = guided_coefficients(g_small, p_small, max(1, round(radius * scale)), eps)
        size = (x1 - x0, y1 - y0)
        a = cv2.resize(a, size, interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(b, size, interpolation=cv2.INTER_LINEAR)
    else:
        a, b = guided_coefficients(guide, src, radius, eps)
    out[y0:y1, x0:x1] = apply_coefficients(guide, a, b) > 0.5
    return out
