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

How far along the arm the error goes also depends on which way mediapipe itself sees the upper arm
point in depth, ``m`` (the depth component of its world landmarks' shoulder-to-elbow direction,
:func:`depth_calibration.segment_depth`): an arm raised forward is detected shorter than one raised
sideways, and a hanging arm swung forward longer (docs/decisions.md 4ab). With the table's
``depth_slope`` and ``cross``::

    r = c₁ v + c₀ + c₂ m + c₃ v m

(``m = 0`` where mediapipe's world landmarks are missing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from humanref_cli.perception.depth_calibration import SEGMENTS, mediapipe_world_to_axes, segment_depth
from humanref_cli.perception.landmark_offsets import calibration_text, offset_landmarks, project_front

# (shoulder, elbow) mediapipe landmark indices of the left and the right arm.
ARMS = ((11, 13), (12, 14))
_UPPER_ARMS = [list(SEGMENTS).index(name) for name in ("upperarm.L", "upperarm.R")]


@dataclass(frozen=True)
class ElbowBias:
    """Per arm (left, right): ``slope`` (c₁), ``intercept`` (c₀), ``depth_slope`` (c₂) and ``cross``
    (c₃) of the module docstring."""

    slope: tuple[float, float]
    intercept: tuple[float, float]
    depth_slope: tuple[float, float] = (0.0, 0.0)
    cross: tuple[float, float] = (0.0, 0.0)

    def along(self, arm: int, v: float, m: float = 0.0) -> float:
        """The elbow's error ``r`` along arm ``arm`` (0 left, 1 right) seen with upward component ``v``
        and mediapipe's depth component ``m``, as a fraction of the detected upper arm's length."""
        return self.slope[arm] * v + self.intercept[arm] + (self.depth_slope[arm] + self.cross[arm] * v) * m


def upper_arm(keypoints_px: np.ndarray, arm: int) -> tuple[np.ndarray, float]:
    """Unit direction ``û (2,)`` and length ``ℓ`` (pixels) of arm ``arm``'s (0 left, 1 right) detected
    upper arm, shoulder to elbow, from keypoints ``(33, 2)``."""
    shoulder, elbow = ARMS[arm]
    d = np.asarray(keypoints_px[elbow], np.float64) - np.asarray(keypoints_px[shoulder], np.float64)
    length = float(np.linalg.norm(d))
    return (d / length if length > 0 else np.zeros(2)), length


def upper_arm_depths(world: np.ndarray | None) -> np.ndarray:
    """mediapipe's depth component ``m`` of each upper arm (left, right) ``(2,)`` from its world landmarks
    ``(33, 3)`` (mediapipe's axes), as :mod:`depth_calibration` reads them; zeros without them."""
    if world is None:
        return np.zeros(2)
    axes = mediapipe_world_to_axes(torch.as_tensor(np.asarray(world), dtype=torch.float64))
    return segment_depth(axes)[_UPPER_ARMS].numpy()


def correct_elbows(keypoints_px: np.ndarray, bias: ElbowBias, depths: np.ndarray | None = None) -> np.ndarray:
    """Keypoints ``(33, 2)`` pixels with each elbow moved along its upper arm by ``-r ℓ û``, ``r`` from
    the arm's direction and mediapipe's depths ``(2,)`` (:func:`upper_arm_depths`; None: 0); a copy,
    the other landmarks as they were."""
    m = np.zeros(2) if depths is None else np.asarray(depths, np.float64)
    out = np.array(keypoints_px, np.float64, copy=True)
    for arm, (_, elbow) in enumerate(ARMS):
        u, length = upper_arm(out, arm)
        out[elbow] -= bias.along(arm, -u[1], m[arm]) * length * u
    return out


def elbow_residuals(observations: list[dict], offsets: np.ndarray, min_visibility: float = 0.5):
    """Per arm, the observations' ``v (N_a,)``, the elbow's error along the upper arm ``r (N_a,)``
    (detected minus the offset anny elbow, over ``ℓ``) and mediapipe's depth ``m (N_a,)``, for the arms
    whose shoulder and elbow were seen. Observations as :func:`landmark_offsets.solve_offsets` takes them
    (with ``world``, mediapipe's world landmarks). -> ``[(v, r, m), (v, r, m)]``."""
    out = []
    for arm, (shoulder, elbow) in enumerate(ARMS):
        v, r, m = [], [], []
        for o in observations:
            if not o["found"] or min(o["visibility"][shoulder], o["visibility"][elbow]) < min_visibility:
                continue
            anny = project_front(offset_landmarks(o["landmarks"], o["frames"], offsets)[elbow], int(o["res"]))
            u, length = upper_arm(o["keypoints"], arm)
            if length <= 0:
                continue
            v.append(-u[1])
            r.append(float((o["keypoints"][elbow] - anny) @ u) / length)
            m.append(upper_arm_depths(o.get("world"))[arm])
        out.append((np.array(v), np.array(r), np.array(m)))
    return out


def solve_elbow_bias(residuals, depth: bool = True) -> ElbowBias:
    """Least squares ``r ≈ c₁ v + c₀ + c₂ m + c₃ v m`` per arm from :func:`elbow_residuals`'
    ``[(v, r, m), (v, r, m)]``; ``depth=False`` fits the line in ``v`` alone (``c₂ = c₃ = 0``)."""
    coefs = []
    for v, r, m in residuals:
        columns = [v, np.ones_like(v)] + ([m, v * m] if depth else [])
        c = np.linalg.lstsq(np.stack(columns, 1), r, rcond=None)[0]
        coefs.append(np.r_[c, np.zeros(4 - len(c))])
    c = np.array(coefs)  # (2, 4): c1, c0, c2, c3
    return ElbowBias(*(tuple(float(x) for x in c[:, k]) for k in range(4)))


def load_elbow_bias(detector: str = "full") -> ElbowBias | None:
    """The packaged table of ``detector`` (``elbow_along`` of its calibration file); None if absent."""
    table = json.loads(calibration_text(detector)).get("elbow_along")
    if table is None:
        return None
    extra = [tuple(table[k]) for k in ("depth_slope", "cross") if k in table]
    return ElbowBias(tuple(table["slope"]), tuple(table["intercept"]), *extra)
