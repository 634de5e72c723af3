"""Where the body fit starts its arms (:mod:`bodyfit`): the rest pose, each arm bent across the body and,
when mediapipe points the forearms at the camera, both arms raised forward; and which start goes on.

L-BFGS from straight arms does not find a bent elbow whose forearm points at the camera: bending a
straight arm at rest first moves the hand outwards in the photo, and the keypoints pull it across the body
only once the upper arm has turned in, so the fit stays near straight and swings the arm forward instead
(docs/decisions.md 4ac). Nor does it lift an arm held forward all the way (4ae). Rotations are
axis-angle in anny's ``local-ref`` axes, as ``synth/pose.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from humanref_cli.geometry.anny_body import BodyParams

# The elbow bent 1.4 rad with the upper arm turned in 0.8 rad and lowered a little from rest: hands in
# front of the chest, the middle of synth's elbows_bent style.
_BENT_ARM = {
    "L": {"upperarm01.L": [-0.1, 0.3, -0.8], "lowerarm01.L": [-1.4, 0.0, 0.0]},
    "R": {"upperarm01.R": [-0.1, -0.3, 0.8], "lowerarm01.R": [-1.4, 0.0, 0.0]},
}
ARM_STARTS = ((), ("L",), ("R",), ("L", "R"))  # which arms start bent
# Both arms raised forward 0.95 rad and out 0.35 rad, elbows straight: the middle of synth's arms_forward
# style. From rest the fit lifts such arms about half as far as they are and swings the clavicles forward
# instead (decision 4ae). Tried only when mediapipe points both forearms at the camera: on other
# photos the keypoint phase could not tell it apart and took it for strides and hanging arms.
_FORWARD_ARMS = {"upperarm01.L": [-0.95, 0.35, 0.0], "upperarm01.R": [-0.95, -0.35, 0.0]}
FOREARMS_FORWARD = 0.7  # mean depth component of mediapipe's forearm directions, about 45 degrees


def forearms_forward(world: np.ndarray | None) -> bool:
    """Whether mediapipe's metric landmarks ``world (33, 3)`` (x right, y down, z away from the camera)
    point the forearms at the camera: the mean over both of ``-(w_wrist - w_elbow)_z / |w_wrist - w_elbow|``
    is at least :data:`FOREARMS_FORWARD`. False without landmarks."""
    if world is None:
        return False
    w = np.asarray(world, np.float64)
    d = w[[15, 16]] - w[[13, 14]]  # elbow -> wrist
    return float(np.mean(-d[:, 2] / np.linalg.norm(d, axis=1).clip(1e-9))) >= FOREARMS_FORWARD


def arm_starts(rest: BodyParams, forward: bool = False) -> list[BodyParams]:
    """``rest`` with each combination of its arms bent (:data:`_BENT_ARM`), the straight one first, and
    with ``forward`` one more with both arms raised forward (:data:`_FORWARD_ARMS`)."""
    bones = [{k: v for side in bent for k, v in _BENT_ARM[side].items()} for bent in ARM_STARTS]
    bones += [_FORWARD_ARMS] if forward else []
    return [
        dataclasses.replace(rest, pose={**rest.pose, **{k: list(v) for k, v in bs.items()}}) for bs in bones
    ]


def pick_start(losses: list[float], keypoint_losses: list[float], forward: bool = False) -> int:
    """Which start goes on to the full fit, given each start's first-phase weighted loss and keypoint
    term (in :func:`arm_starts` order: the straight start first, the forward one last when ``forward``).
    Of the bent starts, the one with the lowest loss, when its loss is below the straight start's and it
    also fits the keypoints better; else the straight start. Then the forward start instead, when its
    loss is below that one's.

    The keypoint condition is there because arms raised forward are also fitted bent: a bent elbow
    holds less rotation than a straight arm lifted 40-70 degrees, so the pose prior and mediapipe's
    depth prefer it while the keypoints fit it worse (decision 4ad). The forward start does not need it:
    it is offered only when mediapipe points both forearms at the camera, and there the straight start
    fits the keypoints as well by lifting the arm half as far and swinging the clavicles (4af)."""
    n_bent = len(losses) - 1 - forward
    other = min(range(1, 1 + n_bent), key=losses.__getitem__, default=0)
    chosen = 0
    if other and losses[other] < losses[0] and keypoint_losses[other] < keypoint_losses[0]:
        chosen = other
    if forward and losses[-1] < losses[chosen]:
        return len(losses) - 1
    return chosen
