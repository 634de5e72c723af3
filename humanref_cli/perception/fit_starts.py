"""Where the body fit starts its arms (:mod:`bodyfit`): the rest pose, and each arm bent across the body.

L-BFGS from straight arms does not find a bent elbow whose forearm points at the camera: bending a
straight arm at rest first moves the hand outwards in the photo, and the keypoints pull it across the body
only once the upper arm has turned in, so the fit stays near straight and swings the arm forward instead
(docs/decisions.md 4ac). Rotations are axis-angle in anny's ``local-ref`` axes, as ``synth/pose.py``.
"""

from __future__ import annotations

import dataclasses

from humanref_cli.geometry.anny_body import BodyParams

# The elbow bent 1.4 rad with the upper arm turned in 0.8 rad and lowered a little from rest: hands in
# front of the chest, the middle of synth's elbows_bent style.
_BENT_ARM = {
    "L": {"upperarm01.L": [-0.1, 0.3, -0.8], "lowerarm01.L": [-1.4, 0.0, 0.0]},
    "R": {"upperarm01.R": [-0.1, -0.3, 0.8], "lowerarm01.R": [-1.4, 0.0, 0.0]},
}
ARM_STARTS = ((), ("L",), ("R",), ("L", "R"))  # which arms start bent


def arm_starts(rest: BodyParams) -> list[BodyParams]:
    """``rest`` with each combination of its arms bent (:data:`_BENT_ARM`), the straight one first."""
    starts = []
    for bent in ARM_STARTS:
        pose = dict(rest.pose)
        for side in bent:
            pose.update({k: list(v) for k, v in _BENT_ARM[side].items()})
        starts.append(dataclasses.replace(rest, pose=pose))
    return starts


def pick_start(losses: list[float], keypoint_losses: list[float]) -> int:
    """Which start goes on to the full fit, given each start's first-phase weighted loss and keypoint
    term (in :func:`arm_starts` order, the straight start first): the bent start with the lowest loss,
    when its loss is below the straight start's and it also fits the keypoints better; else the straight
    start.

    The keypoint condition is there because arms raised forward are also fitted bent: a bent elbow
    holds less rotation than a straight arm lifted 40-70 degrees, so the pose prior and mediapipe's
    depth prefer it while the keypoints fit it worse (decision 4ad)."""
    bent = min(range(1, len(losses)), key=losses.__getitem__, default=0)
    if bent and losses[bent] < losses[0] and keypoint_losses[bent] < keypoint_losses[0]:
        return bent
    return 0
