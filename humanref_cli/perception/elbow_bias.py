"""mediapipe puts the elbow of a raised arm nearer the shoulder.

The landmark offsets (:mod:`landmark_offsets`) hold one offset per landmark in its bone's frame, the
same in every pose. The elbow's error is not the same in every pose: measured along the detected upper
arm after the offsets, it sits at anny's elbow on a hanging arm and short of it on a raised one (the
calibration's 396 fitted subjects, left / right: +0.009 / +0.004 of the upper arm's length on the
hanging arms, -0.155 / -0.079 on the 44 / 47 raised ones). A fit that trusts the short upper arm makes
it up in depth: the raised upper arm swings towards the camera (docs/decisions.md 4x, 4aa). So the
elbow's error along the arm, as a fraction of the detected upper arm's length ``ℓ``, is modelled per
side as a line in how far the arm is raised::

    r = c₁ v + c₀,     v = -û_y,     û = (k_elbow - k_shoulder) / ℓ     (image y down)

solved by least squares over synthetic subjects (``bench/calibrate_landmarks.py``, stored with the
offsets), and the fit compares anny's elbow with ``k_elbow - r ℓ û``: the detection moved along the
arm, its direction unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from humanref_cli.perception.landmark_offsets import calibration_text, offset_landmarks, project_front

# (shoulder, elbow) mediapipe landmark indices of the left and the right arm.
ARMS = ((11, 13), (12, 14))


@dataclass(frozen=True)
class ElbowBias:
    """Per arm (left, right): ``slope`` (c₁) and ``intercept`` (c₀) of the module docstring."""

    slope: tuple[float, float]
    intercept: tuple[float, float]


def upper_arm(keypoints_px: np.ndarray, arm: int) -> tuple[np.ndarray, float]:
    """Unit direction ``û (2,)`` and length ``ℓ`` (pixels) of arm ``arm``'s (0 left, 1 right) detected
    upper arm, shoulder to elbow, from keypoints ``(33, 2)``."""
    shoulder, elbow = ARMS[arm]
    d = np.asarray(keypoints_px[elbow], np.float64) - np.asarray(keypoints_px[shoulder], np.float64)
    length = float(np.linalg.norm(d))
    return (d / length if length > 0 else np.zeros(2)), length


def correct_elbows(keypoints_px: np.ndarray, bias: ElbowBias) -> np.ndarray:
    """Keypoints ``(33, 2)`` pixels with each elbow moved along its upper arm by ``-r ℓ û``; a copy,
    the other landmarks as they were."""
    out = np.array(keypoints_px, np.float64, copy=True)
    for arm, (_, elbow) in enumerate(ARMS):
        u, length = upper_arm(out, arm)
        r = bias.slope[arm] * -u[1] + bias.intercept[arm]
        out[elbow] -= r * length * u
    return out


def elbow_residuals(observations: list[dict], offsets: np.ndarray, min_visibility: float = 0.5):
    """Per arm, the observations' ``v (N_a,)`` and the elbow's error along the upper arm ``r (N_a,)``
    (detected minus the offset anny elbow, over ``ℓ``), for the arms whose shoulder and elbow were seen.
    Observations as :func:`landmark_offsets.solve_offsets` takes them. -> ``[(v, r), (v, r)]``."""
    out = []
    for arm, (shoulder, elbow) in enumerate(ARMS):
        v, r = [], []
        for o in observations:
            if not o["found"] or min(o["visibility"][shoulder], o["visibility"][elbow]) < min_visibility:
                continue
            anny = project_front(offset_landmarks(o["landmarks"], o["frames"], offsets)[elbow], int(o["res"]))
            u, length = upper_arm(o["keypoints"], arm)
            if length <= 0:
                continue
            v.append(-u[1])
            r.append(float((o["keypoints"][elbow] - anny) @ u) / length)
        out.append((np.array(v), np.array(r)))
    return out


def solve_elbow_bias(residuals) -> ElbowBias:
    """Least squares ``r ≈ c₁ v + c₀`` per arm from :func:`elbow_residuals`' ``[(v, r), (v, r)]``."""
    slope, intercept = [], []
    for v, r in residuals:
        c1, c0 = np.linalg.lstsq(np.stack([v, np.ones_like(v)], 1), r, rcond=None)[0]
        slope.append(float(c1))
        intercept.append(float(c0))
    return ElbowBias(tuple(slope), tuple(intercept))


def load_elbow_bias(detector: str = "full") -> ElbowBias | None:
    """The packaged table of ``detector`` (``elbow_along`` of its calibration file); None if absent."""
    table = json.loads(calibration_text(detector)).get("elbow_along")
    if table is None:
        return None
    return ElbowBias(tuple(table["slope"]), tuple(table["intercept"]))
