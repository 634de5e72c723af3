"""Where mediapipe puts its 33 landmarks on the anny body, as offsets from anny's own landmarks.

anny's landmarks are anatomical (bone heads, chosen vertices); mediapipe learned human annotations
that sit elsewhere (ankles ~10 px above anny's ankle joint at 512², ears ~11 px outside the ear
vertex). Each landmark gets an offset ``o_k`` fixed in the frame of the bone it moves with
(``anny_body.LANDMARK_BONES``)::

    detected_k ≈ l_k + F_k o_k,     F_k = scale · R_world · R_bone    (``BodyOutput.landmark_frames``)

``o_k`` is the ridge least-squares solution over synthetic subjects with known pose
(:func:`solve_offsets`)::

    min_o Σ_i ||P F_ik o - (d_ik - P l_ik)||² + λ ||o||²,    P the front projection (pixels)

``bench/calibrate_landmarks.py`` runs it on seeds disjoint from the evaluation seeds and writes
``humanref_cli/data/mediapipe_anny_offsets.json``.
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import torch

RIDGE = 0.05  # in (world units)² summed over subjects: holds o_k's unobservable components near 0
MAX_MEAN_PX = 25.0  # a detection further than this on average is a detector failure, not a bias


# The calibration of each landmark model (``person.POSE_MODELS``): made by ``bench/calibrate_landmarks.py
# --pose``; the models put the landmarks in different places and their depth differs in quality.
CALIBRATION_FILES = {"full": "mediapipe_anny_offsets.json", "heavy": "mediapipe_heavy_anny_offsets.json"}


def calibration_text(detector: str = "full") -> str:
    """The packaged calibration of ``detector`` (JSON text): landmark offsets and depth directions."""
    return resources.files("humanref_cli").joinpath(f"data/{CALIBRATION_FILES[detector]}").read_text("utf-8")


def offsets_id(detector: str = "full") -> str:
    """Identity of the packaged calibration (recorded with prep's models: a new table re-runs prep)."""
    import hashlib

    digest = hashlib.sha256(calibration_text(detector).encode()).hexdigest()[:12]
    return f"humanref:mediapipe-anny-offsets@{digest}"


def detector_offsets(dtype=torch.float32, detector: str = "full") -> torch.Tensor:
    """``(33, 3)`` offsets from anny's anatomical landmarks to where ``detector`` puts them, in each
    landmark's bone frame (``humanref_cli/data/mediapipe_anny_offsets.json``, made by
    ``bench/calibrate_landmarks.py`` on synthetic seeds disjoint from the evaluation seeds)."""
    return torch.tensor(json.loads(calibration_text(detector))["offsets"], dtype=dtype)


def detector_landmarks(out, offsets: torch.Tensor | None) -> torch.Tensor:
    """World landmarks ``(33, 3)`` where the detector would put them: ``l_k + F_k o_k``
    (anny's own ``l_k`` when ``offsets`` is None)."""
    if offsets is None:
        return out.landmarks
    return out.landmarks + torch.einsum("kij,kj->ki", out.landmark_frames, offsets.to(out.landmarks.dtype))


def offset_landmarks(landmarks: np.ndarray, frames: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`detector_landmarks` in numpy: ``l_k + F_k o_k`` for ``landmarks (..., 33, 3)``, ``frames
    (..., 33, 3, 3)`` and ``offsets (33, 3)``."""
    return landmarks + np.einsum("...kij,kj->...ki", frames, offsets)


def project_front(points: np.ndarray, res: int) -> np.ndarray:
    """World ``(..., 3)`` -> pixels ``(..., 2)`` under the front orthographic camera."""
    return np.stack([(points[..., 1] + 1) * res / 2, (1 - points[..., 2]) * res / 2], -1)


def usable(o: dict, min_visibility: float = 0.5) -> bool:
    """Found, and not a gross detector failure (mean raw residual over ``MAX_MEAN_PX``)."""
    if not o["found"]:
        return False
    d = np.linalg.norm(o["keypoints"] - project_front(o["landmarks"], int(o["res"])), axis=-1)
    m = o["valid"] & (o["visibility"] >= min_visibility)
    return bool(m.any()) and float(d[m].mean()) <= MAX_MEAN_PX


def solve_offsets(observations: list[dict], min_visibility: float = 0.5) -> np.ndarray:
    """Per-landmark ridge least squares ``(33, 3)`` (module docstring). Each observation holds
    ``found`` bool, ``keypoints (33, 2)`` detected pixels, ``visibility (33,)``, ``landmarks (33, 3)``
    and ``frames (33, 3, 3)`` of the true body (``BodyOutput``), ``valid (33,)`` and ``res``."""
    offsets = np.zeros((33, 3))
    for k in range(33):
        ata, atb = RIDGE * np.eye(3), np.zeros(3)
        for o in observations:
            if not (o["found"] and o["valid"][k] and o["visibility"][k] >= min_visibility):
                continue
            res = int(o["res"])
            a = o["frames"][k][1:3] * np.array([[res / 2], [-res / 2]])  # (2, 3) pixels per anny unit
            r = o["keypoints"][k] - project_front(o["landmarks"][k], res)  # (2,) pixels
            ata += a.T @ a / (res / 2) ** 2
            atb += a.T @ r / (res / 2) ** 2
        offsets[k] = np.linalg.solve(ata, atb)
    return offsets


def residuals(observations: list[dict], offsets: np.ndarray, min_visibility: float = 0.5) -> np.ndarray:
    """Mean pixel distance per landmark ``(33,)`` between detection and (offset) anny landmark."""
    err = [[] for _ in range(33)]
    for o in observations:
        if not o["found"]:
            continue
        pts = offset_landmarks(o["landmarks"], o["frames"], offsets)
        d = np.linalg.norm(o["keypoints"] - project_front(pts, int(o["res"])), axis=-1)
        for k in np.nonzero(o["valid"] & (o["visibility"] >= min_visibility))[0]:
            err[k].append(d[k])
    return np.array([np.mean(e) if e else np.nan for e in err])
