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

with the ridge also holding ``e_s, c_s`` near 0 (docs/decisions.md 4aa). mediapipe's response is not
a straight line either: a forearm it sees pointing well towards the camera points further still (its
forearms' residual falls 0.165 -> 0.141 with a bend), so every segment also gets a sign-preserving
quadratic ``q_s m_s |m_s|``, held near 0 by the ridge where the subjects do not ask for it (4ab)::

    x_s ≈ (a_s + e_s v_s) m_s + b_s + c_s v_s + q_s m_s |m_s|

A forearm's foreshortening in the photo also tells how far it points out of the plane, whichever way:
with ``ℓ_s`` its detected length over the torso's and ``ρ_s`` its full length in torsos (a high
percentile of ``ℓ_s`` over the subjects), ``g_s = sqrt(1 - min(1, ℓ_s / ρ_s)²)``, and mediapipe's sign
says which way (its forearms' signs agree with the truth 98-100% of the time), so those segments also
get ``p_s g_s sign(m_s)`` (:data:`FORESHORTENED`; the forearms' residual 0.141 / 0.094 -> 0.112 / 0.074).

The body fit then pulls its own ``x_s`` towards that (conditioned on the photo's ``v_s`` and ``g_s``:
:meth:`DepthCalibration.at_keypoints`) with weight ``∝ 1 / σ_s²`` (``bodyfit.fit_losses``).
``bench/calibrate_landmarks.py`` solves it on the same synthetic seeds as the landmark offsets and
stores it in ``humanref_cli/data/mediapipe_anny_offsets.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

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
# Segments whose calibration also reads their foreshortening in the photo (module docstring).
FORESHORTENED = ("forearm.L", "forearm.R")
SHORTENING_PERCENTILE = 95.0  # a segment's full length in torsos: this percentile of its detected ones


def mediapipe_world_to_axes(world: torch.Tensor) -> torch.Tensor:
    """mediapipe's world landmarks ``(..., 33, 3)`` (x right, y down, z away from the camera) ->
    the world axes of method.md §2.6 (x towards the camera, y image right, z up)."""
    return torch.stack([-world[..., 2], world[..., 0], -world[..., 1]], dim=-1)


def _segments_px(keypoints_px: np.ndarray) -> np.ndarray:
    """Each segment's detected vector in the photo, pixels ``(33, 2)`` -> ``(S, 2)``."""
    kp = np.asarray(keypoints_px, np.float64)
    return kp[SEGMENT_PAIRS[:, 1].numpy()] - kp[SEGMENT_PAIRS[:, 0].numpy()]


def segment_up(keypoints_px: np.ndarray) -> np.ndarray:
    """Upward component ``v_s`` of each segment's unit direction in the photo: pixels ``(33, 2)``
    (image ``y`` down) -> ``(S,)``; 0 for a segment of zero length."""
    d = _segments_px(keypoints_px)
    n = np.linalg.norm(d, axis=-1)
    return np.where(n > 0, -d[:, 1] / np.maximum(n, 1e-12), 0.0)


def segment_lengths(keypoints_px: np.ndarray) -> np.ndarray:
    """Each segment's detected length in the photo over the torso's (the shoulders' midpoint to the
    hips'): pixels ``(33, 2)`` -> ``(S,)``; 0 for a torso of zero length."""
    kp = np.asarray(keypoints_px, np.float64)
    d = np.linalg.norm(_segments_px(kp), axis=-1)
    torso = np.linalg.norm((kp[11] + kp[12]) / 2 - (kp[23] + kp[24]) / 2)
    return d / torso if torso > 0 else np.zeros_like(d)


def segment_shortening(keypoints_px: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """How far each segment points out of the photo's plane by its foreshortening alone,
    ``g_s = sqrt(1 - min(1, ℓ_s / ρ_s)²)``: ``ℓ_s`` its :func:`segment_lengths`, ``ρ_s (S,)`` its full
    length in torsos (0: not read, ``g_s = 0``). Pixels ``(33, 2)`` -> ``(S,)`` in [0, 1]."""
    rho = np.asarray(rho, np.float64)
    ratio = np.clip(segment_lengths(keypoints_px) / np.where(rho > 0, rho, 1.0), 0.0, 1.0)
    return np.where(rho > 0, np.sqrt(1.0 - ratio**2), 0.0)


def segment_depth(points: torch.Tensor) -> torch.Tensor:
    """Depth component ``x_s`` of each segment's unit direction: ``(..., 33, 3)`` world -> ``(..., S)``."""
    d = points[..., SEGMENT_PAIRS[:, 1], :] - points[..., SEGMENT_PAIRS[:, 0], :]
    return d[..., 0] / d.norm(dim=-1).clamp_min(1e-8)


@dataclass(frozen=True)
class DepthCalibration:
    """A correction of measured depth cues: per-entry ``scale`` (a), ``bias`` (b) and residual ``sigma``
    (σ), each ``(S,)`` (one entry per segment here, per limb pair in ``shading_cue``); for the
    :data:`CONDITIONED` segments also ``up_scale`` (e) and ``up_bias`` (c), 0 elsewhere; the response's
    bend ``curve`` (q); for the :data:`FORESHORTENED` segments ``shortening`` (p) and ``rho`` (ρ), 0
    elsewhere (None: none). ``signed`` is ``p g`` once :meth:`at_keypoints` has read ``g``."""

    scale: torch.Tensor
    bias: torch.Tensor
    sigma: torch.Tensor
    up_scale: torch.Tensor | None = None
    up_bias: torch.Tensor | None = None
    curve: torch.Tensor | None = None
    shortening: torch.Tensor | None = None
    rho: torch.Tensor | None = None
    signed: torch.Tensor | None = None

    def at_direction(self, up: np.ndarray | torch.Tensor) -> DepthCalibration:
        """The calibration for segments seen with upward components ``up (S,)`` (:func:`segment_up`):
        scale ``a + e v`` and bias ``b + c v``. Itself when it has no conditioned terms."""
        if self.up_scale is None or self.up_bias is None:
            return self
        v = torch.as_tensor(np.asarray(up), dtype=self.scale.dtype, device=self.scale.device)
        return replace(
            self,
            scale=self.scale + self.up_scale * v,
            bias=self.bias + self.up_bias * v,
            up_scale=None,
            up_bias=None,
        )

    def at_keypoints(self, keypoints_px: np.ndarray) -> DepthCalibration:
        """The calibration for one person's detected keypoints ``(33, 2)`` pixels: :meth:`at_direction`
        at their :func:`segment_up`, and ``signed = p g`` at their :func:`segment_shortening`."""
        cal = self.at_direction(segment_up(keypoints_px))
        if cal.shortening is None or cal.rho is None:
            return cal
        g = segment_shortening(keypoints_px, cal.rho.cpu().numpy())
        return replace(
            cal, signed=cal.shortening * torch.as_tensor(g, dtype=cal.scale.dtype, device=cal.scale.device)
        )

    def target(self, detected: torch.Tensor) -> torch.Tensor:
        """Expected truth ``(S,)`` given the measurement ``(S,)``: ``a m + b + q m |m| + p g sign(m)``."""
        out = self.scale * detected + self.bias
        if self.curve is not None:
            out = out + self.curve * detected * detected.abs()
        if self.signed is not None:
            out = out + self.signed * torch.sign(detected)
        return out

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
    curved: bool = False,
    shortening: np.ndarray | None = None,
    shortened: tuple[int, ...] = (),
) -> dict[str, np.ndarray]:
    """Ridge fit of the module docstring. ``truth``, ``detected`` ``(N, S)`` depth components over ``N``
    subjects -> ``{"scale", "bias", "sigma", "up_scale", "up_bias", "curve", "shortening"}``, each
    ``(S,)``: with ``up (N, S)`` (:func:`segment_up`) the segments indexed by ``conditioned`` get ``e, c``
    (0 elsewhere); with ``curved`` every segment gets ``q`` (else 0); with ``shortening (N, S)``
    (:func:`segment_shortening`) the segments indexed by ``shortened`` get ``p`` (0 elsewhere). Every
    coefficient but ``b`` is held by the ridge (``a`` towards 1, the others towards 0)."""
    n, segments = truth.shape
    keys = ("scale", "bias", "sigma", "up_scale", "up_bias", "curve", "shortening")
    out = {k: np.zeros(segments) for k in keys}
    for s in range(segments):
        m = detected[:, s]
        columns = {"scale": m}
        if up is not None and s in conditioned:
            columns |= {"up_scale": m * up[:, s], "up_bias": up[:, s]}
        if curved:
            columns["curve"] = m * np.abs(m)
        if shortening is not None and s in shortened:
            columns["shortening"] = np.sign(m) * shortening[:, s]
        columns["bias"] = np.ones(n)
        x = np.stack(list(columns.values()), 1)  # (N, K), b last
        prior = np.zeros(x.shape[1])
        prior[0] = 1.0
        penalty = ridge * np.diag(np.r_[np.ones(x.shape[1] - 1), 0.0])  # b is free
        coef = np.linalg.solve(x.T @ x + penalty, x.T @ truth[:, s] + penalty @ prior)
        for k, c in zip(columns, coef, strict=True):
            out[k][s] = c
        out["sigma"][s] = np.sqrt(np.mean((x @ coef - truth[:, s]) ** 2))
    return out


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
    optional = ("up_scale", "up_bias", "curve", "shortening", "rho")
    keys = ("scale", "bias", "sigma") + tuple(k for k in optional if k in table)
    return DepthCalibration(**{k: torch.tensor(table[k], dtype=dtype, device=device) for k in keys})


def load_depth_calibration(dtype=torch.float32, device="cpu", detector: str = "full") -> DepthCalibration:
    """The packaged calibration of ``detector`` (``depth_directions`` of ``mediapipe_anny_offsets.json``)."""
    cal = packaged_calibration("depth_directions", "segments", list(SEGMENTS), dtype, device, detector)
    if cal is None:
        raise ValueError("no depth calibration packaged: rerun calibrate_landmarks")
    return cal
