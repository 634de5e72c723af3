"""How far to trust mediapipe's depth for each body segment, calibrated against the truth.

The front view fixes each segment's projected direction but not its depth component (an arm raised
forward or backward, a stride, a body turned left or right). mediapipe's metric world landmarks
give one, with errors that differ a lot by segment: on synthetic subjects with known pose its
forearms agree in sign with the truth 95-100% of the time, its thighs only 41-46%, and its
shoulder and hip lines carry a steady turn (+0.11 to +0.14 in the depth component). For each
segment ``s`` (a limb segment or the shoulder or hip line) with unit direction ``d̂_s``, the depth
component ``x_s = d̂_s,x`` of the truth is regressed on mediapipe's ``m_s`` by ridge least squares
(towards ``a = 1, b = 0``)::

    x_s ≈ a_s m_s + b_s,    σ_s² = mean residual²,
    min_{a,b} Σ_i (a m_is + b - x_is)² + λ (a - 1)²

For the upper arms mediapipe's error depends on how far the arm is raised: over a raised arm its
depth is 0.2-0.4 too far towards the camera, against a little too far back over a hanging arm, so one
line through all of them misses both. There the regression also takes the segment's upward direction
in the photo, ``v_s = -û_s,y`` (``û_s`` the detected keypoints' unit direction, image ``y`` down;
:func:`segment_up`), which the photo shows::

    x_s ≈ (a_s + e_s v_s) m_s + b_s + c_s v_s          (segments in :data:`CONDITIONED`)

with the ridge also holding ``e_s, c_s`` near 0 (docs/decisions.md 4aa). The body fit then pulls its
own ``x_s`` towards ``a_s m_s + b_s`` (conditioned on the photo's ``v_s``:
:meth:`DepthCalibration.at_direction`) with weight ``∝ 1 / σ_s²`` (``bodyfit.fit_losses``).
``bench/calibrate_landmarks.py`` solves it on the same synthetic seeds as the landmark offsets and
stores it in ``humanref_cli/data/mediapipe_anny_offsets.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from humanref_cli.perception.landmark_offsets import calibration_text

# (start, end) mediapipe landmark indices of each segment.
SEGMENTS = {
    "upperarm.L": (11, 13),
    "forearm.L": (13, 15),
    "upperarm.R": (12, 14),
    "forearm.R": (14, 16),
    "thigh.L": (23, 25),
    "shin.L": (25, 27),
    "thigh.R": (24, 26),
    "shin.R": (26, 28),
    "shoulders": (11, 12),
    "hips": (23, 24),
}
SEGMENT_PAIRS = torch.tensor(list(SEGMENTS.values()))  # (S, 2)
RIDGE = 0.5  # pulls a_s towards 1 (mediapipe as it is) where the subjects do not decide it
# Segments whose calibration also depends on their direction in the photo (module docstring).
CONDITIONED = ("upperarm.L", "upperarm.R")


def mediapipe_world_to_axes(world: torch.Tensor) -> torch.Tensor:
    """mediapipe's world landmarks ``(..., 33, 3)`` (x right, y down, z away from the camera) ->
    the world axes of method.md §2.6 (x towards the camera, y image right, z up)."""
    return torch.stack([-world[..., 2], world[..., 0], -world[..., 1]], dim=-1)


def segment_up(keypoints_px: np.ndarray) -> np.ndarray:
    """Upward component ``v_s`` of each segment's unit direction in the photo: pixels ``(33, 2)``
    (image ``y`` down) -> ``(S,)``; 0 for a segment of zero length."""
    kp = np.asarray(keypoints_px, np.float64)
    d = kp[SEGMENT_PAIRS[:, 1].numpy()] - kp[SEGMENT_PAIRS[:, 0].numpy()]
    n = np.linalg.norm(d, axis=-1)
    return np.where(n > 0, -d[:, 1] / np.maximum(n, 1e-12), 0.0)


def segment_depth(points: torch.Tensor) -> torch.Tensor:
    """Depth component ``x_s`` of each segment's unit direction: ``(..., 33, 3)`` world -> ``(..., S)``."""
    d = points[..., SEGMENT_PAIRS[:, 1], :] - points[..., SEGMENT_PAIRS[:, 0], :]
    return d[..., 0] / d.norm(dim=-1).clamp_min(1e-8)


@dataclass(frozen=True)
class DepthCalibration:
    """A linear correction of measured depth cues: per-entry ``scale`` (a), ``bias`` (b) and residual
    ``sigma`` (σ), each ``(S,)`` (one entry per segment here, per limb pair in ``shading_cue``); for the
    :data:`CONDITIONED` segments also ``up_scale`` (e) and ``up_bias`` (c), 0 elsewhere (None: none)."""

    scale: torch.Tensor
    bias: torch.Tensor
    sigma: torch.Tensor
    up_scale: torch.Tensor | None = None
    up_bias: torch.Tensor | None = None

    def at_direction(self, up: np.ndarray | torch.Tensor) -> DepthCalibration:
        """The calibration for segments seen with upward components ``up (S,)`` (:func:`segment_up`):
        scale ``a + e v`` and bias ``b + c v``. Itself when it has no conditioned terms."""
        if self.up_scale is None or self.up_bias is None:
            return self
        v = torch.as_tensor(np.asarray(up), dtype=self.scale.dtype, device=self.scale.device)
        return DepthCalibration(self.scale + self.up_scale * v, self.bias + self.up_bias * v, self.sigma)

    def target(self, detected: torch.Tensor) -> torch.Tensor:
        """Expected truth ``(S,)`` given the measurement ``(S,)``: ``a m + b``."""
        return self.scale * detected + self.bias

    def weights(self) -> torch.Tensor:
        """Inverse-variance weights ``(S,)``, mean 1: ``σ_s^-2 / mean(σ^-2)``."""
        w = self.sigma.clamp_min(1e-3) ** -2
        return w / w.mean()


def solve_depth_calibration(
    truth: np.ndarray,
    detected: np.ndarray,
    ridge: float = RIDGE,
    up: np.ndarray | None = None,
    conditioned: tuple[int, ...] = (),
):
    """Ridge fit of the module docstring. ``truth``, ``detected`` ``(N, S)`` depth components over
    ``N`` subjects -> ``scale, bias, sigma`` each ``(S,)``; with ``up (N, S)`` (:func:`segment_up`) the
    segments indexed by ``conditioned`` also get ``e, c``: -> ``scale, bias, sigma, up_scale, up_bias``."""
    n, segments = truth.shape
    scale, bias, sigma = np.ones(segments), np.zeros(segments), np.zeros(segments)
    up_scale, up_bias = np.zeros(segments), np.zeros(segments)
    for s in range(segments):
        m = detected[:, s]
        if up is not None and s in conditioned:
            x = np.stack([m, m * up[:, s], up[:, s], np.ones(n)], 1)  # (N, 4): a, e, c, b
        else:
            x = np.stack([m, np.ones(n)], 1)  # (N, 2): a, b
        prior = np.zeros(x.shape[1])
        prior[0] = 1.0
        penalty = ridge * np.diag(np.r_[np.ones(x.shape[1] - 1), 0.0])  # b is free
        coef = np.linalg.solve(x.T @ x + penalty, x.T @ truth[:, s] + penalty @ prior)
        sigma[s] = np.sqrt(np.mean((x @ coef - truth[:, s]) ** 2))
        scale[s], bias[s] = coef[0], coef[-1]
        if x.shape[1] == 4:
            up_scale[s], up_bias[s] = coef[1], coef[2]
    if up is None:
        return scale, bias, sigma
    return scale, bias, sigma, up_scale, up_bias


def packaged_calibration(
    key: str, names_key: str, names: list[str], dtype, device, detector: str = "full"
) -> DepthCalibration | None:
    """Table ``key`` of ``detector``'s ``mediapipe_anny_offsets.json`` (None if absent); its
    ``names_key`` must list ``names`` in order, or the table was solved for other entries."""
    table = json.loads(calibration_text(detector)).get(key)
    if table is None:
        return None
    if list(table[names_key]) != list(names):
        raise ValueError(f"the packaged {key} calibration does not match the code: rerun calibrate_landmarks")
    keys = ("scale", "bias", "sigma") + (("up_scale", "up_bias") if "up_scale" in table else ())
    return DepthCalibration(*(torch.tensor(table[k], dtype=dtype, device=device) for k in keys))


def load_depth_calibration(dtype=torch.float32, device="cpu", detector: str = "full") -> DepthCalibration:
    """The packaged calibration of ``detector`` (``depth_directions`` of ``mediapipe_anny_offsets.json``)."""
    cal = packaged_calibration("depth_directions", "segments", list(SEGMENTS), dtype, device, detector)
    if cal is None:
        raise ValueError("no depth calibration packaged: rerun calibrate_landmarks")
    return cal
