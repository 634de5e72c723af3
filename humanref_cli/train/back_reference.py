"""The back view's colour target without guidance: the mirrored photo, with the face covered by hair.

design.md §4's fallback supervises the back view with the reference colours mirrored (orthographic: the
back camera sees the front silhouette mirrored). For the clothes that is a fair guess; for the head it
paints the face onto the back of the head. Here the face is covered first: every pixel of the head
group (``parsing.png`` label 1) from the top of the head down to the chin takes the colour of the top
of the head, which is the hair (or a hat, or a bald scalp) in a photo taken from the front::

    d     = |eye_L − eye_R|                      inter-eye distance (crop pixels)
    hair  = median rgb of head ∩ mask, rows above eye_v − 0.8 d        (the top of the head)
    cover = head ∩ mask, rows above the chin, nose_v + 1.4 d

(mediapipe puts the mouth 0.5–0.8 d below the nose on synthetic subjects, so the chin row is the
mouth's plus about 0.8 d; the mouth itself is not needed.) Nothing changes when the face is not seen
(nose or eyes below ``min_visibility``, as in a photo taken from behind), when the nose is not inside
the head group, or when fewer than ``min_pixels`` head pixels lie above the forehead (the head is cut
off). The neck and everything below the chin stay as they are.
"""

from __future__ import annotations

import numpy as np

NOSE, EYE_L, EYE_R = 0, 2, 5  # mediapipe Pose landmarks
HEAD = 1  # parsing.png label of the head group


def cover_face(
    rgb: np.ndarray,
    mask: np.ndarray,
    parsing: np.ndarray,
    keypoints: np.ndarray,
    visibility: np.ndarray,
    min_visibility: float = 0.5,
    min_pixels: int = 20,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rgb', covered)``: ``rgb (H, W, 3)`` float with the face covered by the hair colour (module
    docstring) and the covered pixels ``(H, W)`` bool, or ``(rgb, None)`` unchanged when the face is not
    found. ``mask (H, W)`` the silhouette (bool or coverage), ``parsing (H, W)`` the body groups,
    ``keypoints (33, 2)`` crop pixels ``(u, v)``, ``visibility (33,)``."""
    face = [NOSE, EYE_L, EYE_R]
    if np.any(np.asarray(visibility)[face] < min_visibility):
        return rgb, None
    h, w = parsing.shape
    head = (parsing == HEAD) & (np.asarray(mask) >= 0.5)
    nu, nv = np.floor(keypoints[NOSE]).astype(int)
    if not (0 <= nu < w and 0 <= nv < h and head[nv, nu]):
        return rgb, None
    d = float(np.linalg.norm(keypoints[EYE_L] - keypoints[EYE_R]))
    eye_v = float(keypoints[[EYE_L, EYE_R], 1].mean())
    chin_v = float(keypoints[NOSE, 1]) + 1.4 * d
    rows = (np.arange(h) + 0.5)[:, None]  # pixel centres
    top = head & (rows < eye_v - 0.8 * d)
    if top.sum() < min_pixels:
        return rgb, None
    hair = np.median(rgb[top], axis=0)
    covered = head & (rows < chin_v)
    out = rgb.copy()
    out[covered] = hair
    return out, covered
