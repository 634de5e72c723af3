"""Which leg is forward, from how the photo shades the two legs.

A front photo shows a stride's legs at almost their full length (cos 0.3 = 0.96), and mediapipe's
depth for thighs agrees in sign with the truth no more often than chance (depth_calibration.py), so
the keypoints cannot tell a left stride from a right one. The shading can: under light from above,
a limb that slopes towards the camera as it descends (a thigh swung forward) turns its front towards
the light and is brighter than its mirror image swung back. Lit from ``l``, a cylinder of axis
``d̂`` is brightest where its normal is closest to ``l``, at ``n · l = sqrt(1 - (l · d̂)²)``, which grows
with the axis' depth component when ``l`` comes from above.

For the pairs of mirror segments ``p`` (thighs, shins), with ``B`` a high percentile (the lit side
of the limb, away from the darker rims and from a pattern's dark stripes) of the luminance in windows
along the middle of each segment, inside the silhouette and away from the hands::

    m_p = log(B_left / B_right),       x_left - x_right ≈ a_p m_p + b_p      (σ_p residual)

``x`` is the depth component of the segment's unit direction (as in depth_calibration.py).
``a, b, σ`` are fitted by least squares on synthetic subjects (``bench/calibrate_landmarks.py``) and the
body fit pulls its own ``x_left - x_right`` towards the prediction (``bodyfit.fit_losses``).

The cue assumes both legs have the same albedo: when the two limbs' colours differ (a patterned or
two-coloured garment, a shadow cast across one leg) by more than ``max_chroma`` in normalised
chromaticity, the pair is not used. A photo without colour (grayscale: the person's pixels spread by
less than :data:`MIN_COLOUR_SPREAD` across the channels) cannot show that, and a lighter and a darker
leg of the same grey read as a stride (OpenCV's grayscale ``basketball1.png`` was fitted with a 40°
stride from a log ratio of -0.21, beyond any the calibration subjects showed), so there no pair is used.
It also assumes light from above, the usual case in photos; the calibration is solved under the
synthetic subjects' single light (above the camera, a little to one side), so in a photo lit differently
its scale is only approximate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from humanref_cli.perception.depth_calibration import SEGMENTS, DepthCalibration, packaged_calibration

# Mirror segment pairs (left, right), by name in depth_calibration.SEGMENTS.
PAIRS = {"thighs": ("thigh.L", "thigh.R"), "shins": ("shin.L", "shin.R")}
PAIR_SEGMENTS = torch.tensor([[list(SEGMENTS).index(a), list(SEGMENTS).index(b)] for a, b in PAIRS.values()])
_HAND_LANDMARKS = (15, 16, 17, 18, 19, 20, 21, 22)
# 99th percentile of max - min over the RGB channels of the person's pixels, below which the photo has no
# colour to compare (a grayscale photo saved as RGB, JPEG's chroma noise included: ~1-2 levels of 255).
MIN_COLOUR_SPREAD = 0.02


@dataclass(frozen=True)
class LimbShading:
    """``log_ratio (P,)`` = ``m_p``, ``valid (P,)`` bool and ``chroma (P,)`` the largest difference of
    the two limbs' normalised colours (``inf`` where a limb could not be measured); ``colourless``:
    the photo has no colour, so no pair is valid."""

    log_ratio: np.ndarray
    valid: np.ndarray
    chroma: np.ndarray
    colourless: bool = False


@dataclass(frozen=True)
class ShadingSettings:
    """Where and how the limbs are sampled: windows of half-size ``radius`` × the segment's length at
    ``samples`` points between ``start`` and ``end`` along it; ``percentile`` of the luminance per window."""

    start: float = 0.3
    end: float = 0.7
    samples: int = 9
    radius: float = 0.12
    percentile: float = 90.0
    hand_radius: float = 0.35  # × the forearm's length: hands in front of the thighs are skin, not trousers
    max_chroma: float = 0.08
    min_visibility: float = 0.5


def _limb_colour(rgb, lum, usable, a, b, s: ShadingSettings) -> np.ndarray | None:
    """Median over the windows along segment ``a -> b`` (pixels) of the mean colour of each window's
    brightest pixels; None when fewer than three windows have pixels."""
    h, w = usable.shape
    r = max(1.5, s.radius * float(np.linalg.norm(b - a)))
    colours = []
    for t in np.linspace(s.start, s.end, s.samples):
        cx, cy = a + t * (b - a)
        x0, x1 = int(max(cx - r, 0)), int(min(cx + r + 1, w))
        y0, y1 = int(max(cy - r, 0)), int(min(cy + r + 1, h))
        inside = usable[y0:y1, x0:x1]
        if inside.sum() < 3:
            continue
        window_lum, window_rgb = lum[y0:y1, x0:x1][inside], rgb[y0:y1, x0:x1][inside]
        colours.append(window_rgb[window_lum >= np.percentile(window_lum, s.percentile)].mean(0))
    return np.median(np.array(colours), axis=0) if len(colours) >= 3 else None


def limb_shading(
    rgb: np.ndarray,
    mask: np.ndarray,
    keypoints: np.ndarray,
    visibility: np.ndarray,
    settings: ShadingSettings = ShadingSettings(),
) -> LimbShading:
    """Measure ``m_p`` for each pair of :data:`PAIRS`. ``rgb (H, W, 3)`` uint8 or float, ``mask (H, W)``
    bool, ``keypoints (33, 2)`` pixels ``(u, v)`` in the same image, ``visibility (33,)``."""
    s = settings
    img = np.asarray(rgb, np.float64)
    if np.issubdtype(np.asarray(rgb).dtype, np.integer):
        img = img / 255.0
    lum = img.mean(-1)
    kp = np.asarray(keypoints, np.float64)
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    forearm = np.mean([np.linalg.norm(kp[15] - kp[13]), np.linalg.norm(kp[16] - kp[14])])
    hands = np.zeros((h, w), bool)
    for k in _HAND_LANDMARKS:
        hands |= (xx - kp[k, 0]) ** 2 + (yy - kp[k, 1]) ** 2 < (s.hand_radius * forearm) ** 2
    usable = np.asarray(mask, bool) & ~hands
    person = img[np.asarray(mask, bool)]
    colourless = not person.size or float(np.percentile(np.ptp(person, axis=-1), 99)) < MIN_COLOUR_SPREAD
    ratio, valid, chroma = np.zeros(len(PAIRS)), np.zeros(len(PAIRS), bool), np.full(len(PAIRS), np.inf)
    for p, pair in enumerate(PAIRS.values()):
        ends = [SEGMENTS[n] for n in pair]
        seen = min(float(visibility[i]) for e in ends for i in e) >= s.min_visibility
        colours = [_limb_colour(img, lum, usable, kp[i], kp[j], s) for i, j in ends]
        if not seen or any(c is None for c in colours):
            continue
        left, right = (max(float(c.mean()), 1e-3) for c in colours)
        ratio[p] = np.log(left / right)
        chroma[p] = float(np.abs(colours[0] / left - colours[1] / right).max())
        valid[p] = chroma[p] <= s.max_chroma and not colourless
    return LimbShading(ratio, valid, chroma, colourless)


def load_shading_calibration(
    dtype=torch.float32, device="cpu", detector: str = "full"
) -> DepthCalibration | None:
    """The packaged calibration (``shading_pairs`` of ``detector``'s ``mediapipe_anny_offsets.json``):
    ``target(m)`` is the expected ``x_left - x_right`` ``(P,)``; None if absent."""
    return packaged_calibration("shading_pairs", "pairs", list(PAIRS), dtype, device, detector)


def describe(cue: LimbShading, cal: DepthCalibration | None, level: float = 0.1) -> str:
    """One line for the log: which leg each pair reads as forward (``|a m + b| < level``: level)."""
    if cal is None:
        return "no shading calibration packaged"
    if cue.colourless:
        return "not used (a photo without colour: whether the legs differ in colour cannot be checked)"
    parts = []
    for name, m, ok, target in zip(
        PAIRS, cue.log_ratio, cue.valid, cal.target(torch.as_tensor(cue.log_ratio)).tolist(), strict=True
    ):
        if not ok:
            continue
        side = "level" if abs(target) < level else ("left forward" if target > 0 else "right forward")
        parts.append(f"{name} {side} (log ratio {m:+.3f})")
    return "; ".join(parts) if parts else "not used (the legs differ in colour or are hidden)"
