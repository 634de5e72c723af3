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

The body fit then pulls its own ``x_s`` towards ``a_s m_s + b_s`` with weight ``∝ 1 / σ_s²``
(``bodyfit.fit_losses``). ``bench/calibrate_landmarks.py`` solves it on the same synthetic seeds as
the landmark offsets and stores it in ``humanref_cli/data/mediapipe_anny_offsets.json``.
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


def mediapipe_world_to_axes(world: torch.Tensor) -> torch.Tensor:
    """mediapipe's world landmarks ``(..., 33, 3)`` (x right, y down, z away from the camera) ->
    the world axes of method.md §2.6 (x towards the camera, y image right, z up)."""
    return torch.stack([-world[..., 2], world[..., 0], -world[..., 1]], dim=-1)


def segment_depth(points: torch.Tensor) -> torch.Tensor:
    """Depth component ``x_s`` of each segment's unit direction: ``(..., 33, 3)`` world -> ``(..., S)``."""
    d = points[..., SEGMENT_PAIRS[:, 1], :] - points[..., SEGMENT_PAIRS[:, 0], :]
    return d[..., 0] / d.norm(dim=-1).clamp_min(1e-8)


@dataclass(frozen=True)
class DepthCalibration:
    """A linear correction of measured depth cues: per-entry ``scale`` (a), ``bias`` (b) and residual
    ``sigma`` (σ), each ``(S,)`` (one entry per segment here, per limb pair in ``shading_cue``)."""

    scale: torch.Tensor
    bias: torch.Tensor
    sigma: torch.Tensor

    def target(self, detected: torch.Tensor) -> torch.Tensor:
        """Expected truth ``(S,)`` given the measurement ``(S,)``: ``a m + b``."""
        return self.scale * detected + self.bias

    def weights(self) -> torch.Tensor:
        """Inverse-variance weights ``(S,)``, mean 1: ``σ_s^-2 / mean(σ^-2)``."""
        w = self.sigma.clamp_min(1e-3) ** -2
        return w / w.mean()


def solve_depth_calibration(truth: np.ndarray, detected: np.ndarray, ridge: float = RIDGE):
    """Ridge fit of the module docstring. ``truth``, ``detected`` ``(N, S)`` depth components over
    ``N`` subjects -> ``scale, bias, sigma`` each ``(S,)``."""
    n, segments = truth.shape
    scale, bias, sigma = np.ones(segments), np.zeros(segments), np.zeros(segments)
    for s in range(segments):
        x = np.stack([detected[:, s], np.ones(n)], 1)  # (N, 2)
        lhs = x.T @ x + ridge * np.diag([1.0, 0.0])
        rhs = x.T @ truth[:, s] + ridge * np.array([1.0, 0.0])
        scale[s], bias[s] = np.linalg.solve(lhs, rhs)
        sigma[s] = np.sqrt(np.mean((x @ np.array([scale[s], bias[s]]) - truth[:, s]) ** 2))
    return scale, bias, sigma


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
    return DepthCalibration(
        *(torch.tensor(table[k], dtype=dtype, device=device) for k in ("scale", "bias", "sigma"))
    )


def load_depth_calibration(dtype=torch.float32, device="cpu", detector: str = "full") -> DepthCalibration:
    """The packaged calibration of ``detector`` (``depth_directions`` of ``mediapipe_anny_offsets.json``)."""
    cal = packaged_calibration("depth_directions", "segments", list(SEGMENTS), dtype, device, detector)
    if cal is None:
        raise ValueError("no depth calibration packaged: rerun calibrate_landmarks")
    return cal
