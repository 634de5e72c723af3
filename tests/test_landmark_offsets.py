"""Detector offsets: the calibration maths, the packaged table, and the body-fit terms that use them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humanref_cli.perception.landmark_offsets import (
    MAX_MEAN_PX,
    detector_landmarks,
    detector_offsets,
    project_front,
    residuals,
    solve_offsets,
    usable,
)


def _rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )


def _observations(true_offsets: np.ndarray, n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    obs = []
    for _ in range(n):
        frames = _rotations(rng, 33)
        landmarks = rng.uniform(-0.8, 0.8, (33, 3))
        detected = project_front(landmarks + np.einsum("kij,kj->ki", frames, true_offsets), 512)
        obs.append(
            {
                "found": np.array(True),
                "keypoints": detected,
                "visibility": np.ones(33),
                "landmarks": landmarks,
                "frames": frames,
                "valid": np.ones(33, bool),
                "res": np.array(512),
            }
        )
    return obs


def test_solve_offsets_recovers_known_offsets():
    truth = np.random.default_rng(1).uniform(-0.05, 0.05, (33, 3))
    obs = _observations(truth, 40)
    before = residuals(obs, np.zeros((33, 3)))
    offsets = solve_offsets(obs)
    np.testing.assert_allclose(offsets, truth, atol=2e-3)
    assert np.nanmax(residuals(obs, offsets)) < 0.1 < np.nanmin(before)


def test_invisible_landmarks_and_failed_detections_are_left_out():
    truth = np.full((33, 3), 0.02)
    obs = _observations(truth, 20)
    for o in obs:
        o["visibility"][5] = 0.1  # never confidently seen: ridge keeps it at 0
    assert np.allclose(solve_offsets(obs)[5], 0.0)
    bad = dict(obs[0], keypoints=obs[0]["keypoints"] + 2 * MAX_MEAN_PX)
    assert usable(obs[0]) and not usable(bad) and not usable(dict(obs[0], found=np.array(False)))


def test_detector_landmarks_apply_the_frames():
    offsets = detector_offsets(torch.float64)
    assert offsets.shape == (33, 3) and float(offsets.abs().max()) < 0.15  # centimetres, not metres off

    class Out:
        landmarks = torch.zeros(33, 3, dtype=torch.float64)
        landmark_frames = 2 * torch.eye(3, dtype=torch.float64).expand(33, 3, 3)

    torch.testing.assert_close(detector_landmarks(Out, offsets), 2 * offsets)


@pytest.fixture(scope="module")
def body():
    from humanref_cli.geometry.anny_body import load_anny

    return load_anny(dtype=torch.float64)


def test_landmark_frames_move_with_their_bone(body):
    from humanref_cli.geometry.anny_body import LANDMARK_BONES, BodyParams, forward_params

    offset = torch.zeros(33, 3, dtype=torch.float64)
    offset[15] = torch.tensor([0.0, 0.0, 0.1])  # 10 cm along the left wrist bone's local z
    rest = forward_params(body, BodyParams(scale=1.3))
    bent = forward_params(body, BodyParams(scale=1.3, pose={"lowerarm01.L": [-1.0, 0.0, 0.0]}))
    for out in (rest, bent):
        moved = detector_landmarks(out, offset)
        assert torch.allclose(moved[14], out.landmarks[14])  # other landmarks untouched
        assert abs(float((moved[15] - out.landmarks[15]).norm()) - 0.13) < 1e-6  # rigid, scaled
    turn = (detector_landmarks(bent, offset) - bent.landmarks)[15]
    assert float((turn - (detector_landmarks(rest, offset) - rest.landmarks)[15]).norm()) > 0.05
    assert LANDMARK_BONES[15] == "wrist.L" and len(LANDMARK_BONES) == 33


def test_direction_term_tells_a_forward_arm_from_a_backward_one(body):
    """Zero at the pose mediapipe's world landmarks describe, large for the arm swung the other way."""
    from humanref_cli.geometry.anny_body import BodyFitParams, BodyParams, forward_params
    from humanref_cli.perception.bodyfit import FitSettings, fit_losses
    from humanref_cli.perception.depth_calibration import mediapipe_world_to_axes
    from humanref_cli.perception.fit_silhouette import pixels_to_plane

    forward = BodyParams(pose={"upperarm01.L": [-0.8, 0.0, 0.0]})
    backward = BodyParams(pose={"upperarm01.L": [0.8, 0.0, 0.0]})
    with torch.no_grad():
        truth = forward_params(body, forward)
    # mediapipe's world axes: x right (world y), y down (-z), z away from the camera (-x)
    world = torch.stack([truth.landmarks[:, 1], -truth.landmarks[:, 2], -truth.landmarks[:, 0]], -1)
    world_axes = mediapipe_world_to_axes(world)
    keypoints = pixels_to_plane(torch.as_tensor(np.asarray(project_front(truth.landmarks.numpy(), 512))), 512)
    conf = truth.landmark_valid.double()
    terms = {}
    for name, params in (("forward", forward), ("backward", backward)):
        fit = BodyFitParams(params, dtype=torch.float64)
        terms[name] = fit_losses(fit, body, keypoints, conf, None, FitSettings(), world_axes)
    assert terms["forward"]["direction"].item() < 1e-10
    assert terms["backward"]["direction"].item() > 1.0
