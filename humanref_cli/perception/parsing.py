"""Human parsing -> the five regions of region-aware attention (method.md §2.4).

Parsers speak LIP's 20 labels (``segformer.LIP_LABELS``); the fitted anny body's part labels are
turned into LIP labels too (head -> face, upper -> upper-clothes, lower -> pants, feet -> shoes), so one
function applies the released code's grouping, coat rule and box padding to both. Without a parser the
body's labels are first spread over the whole silhouette (:func:`fill_silhouette`) and the trousers are
followed by colour (:func:`refine_legs_by_colour`), since LIP groups by garment, not by body part.

``regions.json``: ``{"size": [H, W], "parts": {name: {"box": [x0, y0, x1, y1], "band": [y0, y1]}},
"source": ...}`` with names head, upper, lower, feet, face; pixels of the crop, x1/y1 exclusive;
boxes padded as the released code does at 512 px (scaled with the resolution); a part with no pixel
is left out. ``parsing.png`` holds the body groups as plain uint8 labels ``0 background, 1 head,
2 upper, 3 lower, 4 feet`` (the layout of the synthetic ground truth ``gt/parsing.png``).
"""

from __future__ import annotations

import numpy as np

# LIP label ids of each region, as the released code groups them.
REGION_LABELS = {
    "face": (13,),
    "head": (1, 2, 13),
    "upper": (5, 6, 7, 10, 14, 15),
    "lower": (9, 12),
    "feet": (8, 16, 17, 18, 19),
}
COAT, COAT_LINING = 7, (5, 6, 10)  # upper-clothes, dress, jumpsuit inside a coat's rows are lining
# Padding (left/right, above, below) at 512 px.
PADDING = {
    "face": (40, 35, 10),
    "head": (10, 8, 15),
    "upper": (10, 8, 8),
    "lower": (10, 8, 8),
    "feet": (10, 8, 8),
}
GROUP_NAMES = ("background", "head", "upper", "lower", "feet")
# parsing.png groups of every LIP label (sunglasses on the head, gloves and scarves with the upper body).
_LIP_TO_GROUP = np.array([0, 1, 1, 2, 1, 2, 2, 2, 4, 3, 2, 2, 3, 1, 2, 2, 4, 4, 4, 4], np.uint8)
# anny part (1 head, 2 upper, 3 lower, 4 feet) -> a LIP label of the same group.
_GROUP_TO_LIP = np.array([0, 13, 5, 9, 18], np.uint8)


def groups_from_lip(lip: np.ndarray) -> np.ndarray:
    """LIP labels ``(H, W)`` -> body groups ``(H, W)`` uint8 (0 bg, 1 head, 2 upper, 3 lower, 4 feet)."""
    return _LIP_TO_GROUP[lip]


def lip_from_groups(groups: np.ndarray) -> np.ndarray:
    """Body groups ``(H, W)`` -> LIP labels ``(H, W)`` uint8 (one representative label per group)."""
    return _GROUP_TO_LIP[groups]


def fill_silhouette(groups: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Labels restricted to the silhouette, with unlabelled silhouette pixels given the label of the
    nearest labelled pixel (clothes and hair stand out of a naked body's projection)."""
    from scipy import ndimage

    labelled = (groups > 0) & mask
    if not labelled.any():
        return np.zeros_like(groups)
    _, (iy, ix) = ndimage.distance_transform_edt(~labelled, return_indices=True)
    out = groups[iy, ix]
    out[~mask] = 0
    return out.astype(np.uint8)


def _padded_box(rows: np.ndarray, cols: np.ndarray, pad: tuple[int, int, int], size: tuple[int, int]):
    h, w = size
    px, above, below = pad
    return [
        max(int(cols.min()) - px, 0),
        max(int(rows.min()) - above, 0),
        min(int(cols.max()) + 1 + px, w),
        min(int(rows.max()) + 1 + below, h),
    ]


def regions_from_lip(lip: np.ndarray, mask: np.ndarray, source: str) -> dict:
    """``regions.json`` contents from LIP labels ``(H, W)`` and the silhouette ``(H, W)`` bool.

    Labels outside the silhouette are ignored. Coat rule: when more than 10 pixels are coat, upper
    clothes / dress / jumpsuit pixels in the coat's row band leave the upper region.
    """
    h, w = lip.shape
    scale = w / 512.0
    lip = np.where(mask, lip, 0)
    parts = {}
    for name, labels in REGION_LABELS.items():
        region = np.isin(lip, labels)
        if name == "upper" and (lip == COAT).sum() > 10:
            coat_rows = np.nonzero((lip == COAT).any(axis=1))[0]
            band = np.zeros(h, bool)
            band[coat_rows.min() : coat_rows.max() + 1] = True
            region &= ~(np.isin(lip, COAT_LINING) & band[:, None])
        rows, cols = np.nonzero(region)
        if len(rows) == 0:
            continue
        pad = tuple(int(round(p * scale)) for p in PADDING[name])
        box = _padded_box(rows, cols, pad, (h, w))
        parts[name] = {"box": box, "band": [box[1], box[3]], "pixels": int(len(rows))}
    return {"size": [h, w], "parts": parts, "source": source}


_COLOURS = np.array([(0, 0, 0), (230, 80, 80), (80, 160, 230), (90, 200, 110), (240, 200, 60)], np.uint8)


def group_colours(groups: np.ndarray) -> np.ndarray:
    """Body groups ``(H, W)`` -> ``(H, W, 3)`` uint8 colours (for the report)."""
    return _COLOURS[groups]


def refine_legs_by_colour(
    groups: np.ndarray, rgb: np.ndarray, threshold: float = 3.0, waist_reach: float = 0.08
) -> np.ndarray:
    """Let the ``lower`` group (trousers) follow the garment's colour instead of the naked body's parts.

    The body's parts split the leg at the knee and the torso at the pelvis, but LIP's grouping follows
    the garment: trousers are ``lower`` from the waist down to the shoes, bare shins and shoes are
    ``feet``. Trousers always cover the thighs, so the thigh pixels give the garment's colour. A
    ``feet`` pixel, or an ``upper`` pixel at most ``waist_reach`` of the silhouette's height above the
    thighs, joins ``lower`` when its Lab colour is within ``threshold`` robust standard deviations
    (1.4826 MAD, floored at 4 Lab units) of the thighs' median and it connects to the thighs through
    such pixels.
    """
    import cv2

    thighs = groups == 3
    if thighs.sum() < 20:
        return groups
    rows = np.nonzero((groups > 0).any(axis=1))[0]
    waist_top = np.nonzero(thighs.any(axis=1))[0][0] - waist_reach * (rows[-1] - rows[0] + 1)
    near_waist = (groups == 2) & (np.arange(groups.shape[0])[:, None] >= waist_top)
    movable = (groups == 4) | near_waist
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    core = cv2.erode(thighs.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    samples = lab[core if core.sum() >= 20 else thighs]
    median = np.median(samples, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(samples - median), axis=0), 4.0)
    close = (np.abs(lab - median) / spread).max(axis=-1) <= threshold
    candidate = (thighs | (movable & close)).astype(np.uint8)
    _, labels = cv2.connectedComponents(candidate, connectivity=8)
    linked = np.isin(labels, np.unique(labels[thighs])) & (labels > 0)
    out = groups.copy()
    out[movable & linked] = 3
    return out
