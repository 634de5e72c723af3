"""Random plausible anny phenotypes and poses for synthetic subjects.

Rotations are axis-angle vectors in anny's ``local-ref`` axes (x = person's left, y = back, z = up;
see ``geometry/anny_body.py``). Every style keeps the knees and ankles apart and visible and the hands
away from the face, so the front view shows the whole body.
"""

from __future__ import annotations

import numpy as np

from humanref_cli.geometry.anny_body import PHENOTYPES, BodyParams

POSE_STYLES = ("standing", "walking", "arms_up", "arms_down", "arms_forward")  # drawn by the seed
# Only when asked for (``humanref synth --pose``): elbows bent 0.8-2.1 rad with the upper arms near the
# body, as a hand on the chest or holding a phone. The drawn styles bend elbows at most 0.6 rad, and
# calibrations solved on them alone may lean on that (docs/decisions.md 4ac).
EXTRA_STYLES = ("elbows_bent",)
STYLES = POSE_STYLES + EXTRA_STYLES

_PHENOTYPE_RANGES = {
    "gender": (0.0, 1.0),
    "age": (0.45, 0.85),  # adults (0.5 is about 25 years)
    "muscle": (0.2, 0.8),
    "weight": (0.2, 0.8),
    "height": (0.3, 0.8),
    "proportions": (0.3, 0.7),
}


def sample_phenotype(rng: np.random.Generator) -> dict[str, float]:
    return {k: round(float(rng.uniform(*_PHENOTYPE_RANGES[k])), 4) for k in PHENOTYPES}


def _arms(rng: np.random.Generator, style: str) -> dict[str, np.ndarray]:
    """Shoulder and elbow rotations. The rest pose holds the arms ~45° out from the body; ``-y`` on
    the left upper arm (``+y`` on the right) raises it sideways, ``-x`` swings it forward."""
    u = rng.uniform
    if style == "arms_up":
        abduct, flex = u(1.1, 1.8, 2), u(-0.2, 0.2, 2)
    elif style == "arms_down":
        abduct, flex = -u(0.2, 0.5, 2), u(-0.15, 0.15, 2)
    elif style == "arms_forward":
        abduct, flex = -u(0.2, 0.5, 2), -u(0.7, 1.2, 2)
    elif style == "elbows_bent":
        abduct, flex = -u(0.15, 0.45, 2), u(-0.35, 0.15, 2)
    elif style == "walking":
        swing = u(0.25, 0.5)
        abduct, flex = -u(0.15, 0.4, 2), np.array([swing, -swing])
    else:
        abduct, flex = u(-0.25, 0.3, 2), u(-0.2, 0.2, 2)
    if style == "elbows_bent":  # turned in, so the forearms come forward across the body
        elbow, twist = u(0.8, 2.1, 2), -u(0.4, 1.2, 2)
    else:
        elbow, twist = u(0.0, 0.6, 2), u(-0.3, 0.3, 2)
    return {
        "upperarm01.L": np.array([flex[0], -abduct[0], twist[0]]),
        "upperarm01.R": np.array([flex[1], abduct[1], -twist[1]]),
        "lowerarm01.L": np.array([-elbow[0], 0.0, 0.0]),
        "lowerarm01.R": np.array([-elbow[1], 0.0, 0.0]),
        "wrist.L": u(-0.2, 0.2, 3),
        "wrist.R": u(-0.2, 0.2, 3),
    }


def _legs(rng: np.random.Generator, style: str) -> dict[str, np.ndarray]:
    """Hip and knee rotations: ``-x`` on ``upperleg01`` swings a leg forward, ``+x`` on
    ``lowerleg01`` bends the knee; ``-y`` / ``+y`` spreads the left / right leg."""
    u = rng.uniform
    spread = u(0.0, 0.12, 2)
    if style == "walking":
        stride = u(0.15, 0.35)
        front = int(rng.integers(2))  # which leg steps forward
        hip = np.array([-stride, stride]) if front == 0 else np.array([stride, -stride])
        knee = np.where(hip > 0, u(0.15, 0.4), u(0.0, 0.15))
    else:
        hip = u(-0.1, 0.1, 2)
        knee = u(0.0, 0.15, 2)
    return {
        "upperleg01.L": np.array([hip[0], -spread[0], u(-0.1, 0.1)]),
        "upperleg01.R": np.array([hip[1], spread[1], u(-0.1, 0.1)]),
        "lowerleg01.L": np.array([knee[0], 0.0, 0.0]),
        "lowerleg01.R": np.array([knee[1], 0.0, 0.0]),
        "foot.L": np.array([-0.5 * knee[0] + u(-0.1, 0.1), 0.0, u(-0.1, 0.1)]),
        "foot.R": np.array([-0.5 * knee[1] + u(-0.1, 0.1), 0.0, u(-0.1, 0.1)]),
    }


def sample_body(rng: np.random.Generator, style: str | None = None) -> tuple[BodyParams, str]:
    """A random adult in one of :data:`POSE_STYLES` (or ``style``, one of those or of
    :data:`EXTRA_STYLES`), turned at most ~17° away from the camera. Scale and translation are left at
    1 and 0 (frame it with ``fit_to_crop``)."""
    phenotype = sample_phenotype(rng)
    # Drawn anyway, so the random stream goes on as for the seed's own style: a forced style keeps the
    # seed's phenotype and, but where the seed draws ``walking`` (whose legs take more draws), its
    # outfit and background.
    drawn = POSE_STYLES[int(rng.integers(len(POSE_STYLES)))]
    if style is not None and style not in STYLES:
        raise ValueError(f"unknown pose style {style!r}: one of {', '.join(STYLES)}")
    style = style or drawn
    pose = {
        "spine01": rng.uniform(-0.08, 0.08, 3),
        "spine03": rng.uniform(-0.08, 0.08, 3),
        "neck01": rng.uniform(-0.1, 0.1, 3),
        "head": rng.uniform(-0.15, 0.15, 3),
        **_arms(rng, style),
        **_legs(rng, style),
    }
    yaw = rng.uniform(-0.3, 0.3)
    params = BodyParams(
        phenotype=phenotype,
        pose={k: [round(float(x), 5) for x in v] for k, v in pose.items()},
        global_rotation=[0.0, 0.0, round(float(yaw), 5)],
    )
    return params, style
