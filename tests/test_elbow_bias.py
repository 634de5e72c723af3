"""The elbows' bias along the upper arm: the correction, its solver, the packaged tables, the fit's use."""

from __future__ import annotations

import numpy as np
import pytest

from humanref_cli.perception.elbow_bias import (
    ElbowBias,
    correct_elbows,
    elbow_residuals,
    load_elbow_bias,
    solve_elbow_bias,
    upper_arm,
    upper_arm_depths,
)


def _arms(left_elbow, right_elbow) -> np.ndarray:
    kp = np.zeros((33, 2))
    kp[11], kp[12] = (100.0, 100.0), (60.0, 100.0)
    kp[13], kp[14] = left_elbow, right_elbow
    return kp


def test_correct_elbows_moves_each_elbow_along_its_upper_arm():
    # left arm hanging (v = -1), 60 px; right arm raised straight up (v = +1), 40 px
    kp = _arms((100.0, 160.0), (60.0, 60.0))
    bias = ElbowBias(slope=(-0.2, -0.2), intercept=(-0.1, -0.05))
    out = correct_elbows(kp, bias)
    # left: r = -0.2 * -1 - 0.1 = +0.1 -> 6 px back towards the shoulder
    np.testing.assert_allclose(out[13], [100.0, 154.0])
    # right: r = -0.2 * 1 - 0.05 = -0.25 -> 10 px further from the shoulder (up)
    np.testing.assert_allclose(out[14], [60.0, 50.0])
    others = np.ones(33, bool)
    others[[13, 14]] = False
    np.testing.assert_array_equal(out[others], kp[others])
    assert kp[13, 1] == 160.0  # the input is not changed


def test_correct_elbows_keeps_the_upper_arms_direction():
    kp = _arms((130.0, 140.0), (20.0, 70.0))
    out = correct_elbows(kp, ElbowBias(slope=(-0.3, 0.2), intercept=(0.05, -0.1)))
    for arm in (0, 1):
        u_in, _ = upper_arm(kp, arm)
        u_out, _ = upper_arm(out, arm)
        np.testing.assert_allclose(u_out, u_in, atol=1e-12)


def test_solve_recovers_a_planted_line():
    rng = np.random.default_rng(1)
    planted = [(-0.17, -0.1), (-0.12, -0.08)]
    residuals = []
    for c1, c0 in planted:
        v, m = rng.uniform(-1, 1, 200), rng.uniform(-1, 1, 200)
        residuals.append((v, c1 * v + c0 + rng.normal(0, 0.01, 200), m))
    for depth in (False, True):
        bias = solve_elbow_bias(residuals, depth=depth)
        np.testing.assert_allclose(bias.slope, [p[0] for p in planted], atol=0.01)
        np.testing.assert_allclose(bias.intercept, [p[1] for p in planted], atol=0.01)
        np.testing.assert_allclose(bias.depth_slope + bias.cross, 0.0, atol=0.01)


def test_solve_recovers_the_depth_terms():
    """``r = c₁ v + c₀ + c₂ m + c₃ v m``: the line in ``v`` alone cannot follow ``m``."""
    rng = np.random.default_rng(4)
    v, m = rng.uniform(-1, 1, 300), rng.uniform(-1, 1, 300)
    r = -0.15 * v - 0.1 + 0.12 * m - 0.2 * v * m + rng.normal(0, 0.005, 300)
    bias = solve_elbow_bias([(v, r, m), (v, r, m)])
    for arm in (0, 1):
        got = [bias.slope[arm], bias.intercept[arm], bias.depth_slope[arm], bias.cross[arm]]
        np.testing.assert_allclose(got, [-0.15, -0.1, 0.12, -0.2], atol=0.01)
    fitted = np.array([bias.along(0, a, b) for a, b in zip(v, m, strict=True)])
    line = solve_elbow_bias([(v, r, m), (v, r, m)], depth=False)
    alone = np.array([line.along(0, a, b) for a, b in zip(v, m, strict=True)])
    assert np.sqrt(np.mean((r - fitted) ** 2)) < 0.01 < np.sqrt(np.mean((r - alone) ** 2))


def test_correct_elbows_uses_mediapipes_depth():
    """The same detected arm moves by another amount when mediapipe sees it point forward."""
    kp = _arms((100.0, 160.0), (60.0, 160.0))  # both hanging, 60 px (v = -1)
    bias = ElbowBias(slope=(0.0, 0.0), intercept=(0.0, 0.0), depth_slope=(0.1, 0.1), cross=(0.0, 0.05))
    out = correct_elbows(kp, bias, np.array([0.5, 0.5]))
    np.testing.assert_allclose(out[13], [100.0, 157.0])  # r = 0.1 * 0.5 = 0.05 -> 3 px up
    np.testing.assert_allclose(out[14], [60.0, 158.5])  # r = (0.1 - 0.05) * 0.5 = 0.025 -> 1.5 px
    np.testing.assert_allclose(correct_elbows(kp, bias), kp)  # no depths: m = 0


def test_upper_arm_depths_read_mediapipes_axes():
    """mediapipe's z points away from the camera: an elbow nearer the camera than its shoulder
    (smaller z) points the arm towards it (m > 0)."""
    world = np.zeros((33, 3))
    world[11], world[13] = (0.2, -0.4, 0.0), (0.2, -0.1, -0.3)  # left: 45° towards the camera
    world[12], world[14] = (-0.2, -0.4, 0.0), (-0.2, -0.1, 0.0)  # right: in the plane
    np.testing.assert_allclose(upper_arm_depths(world), [np.sqrt(0.5), 0.0], atol=1e-12)
    np.testing.assert_array_equal(upper_arm_depths(None), [0.0, 0.0])


def test_elbow_residuals_measure_along_the_detected_arm():
    """A hand-made observation: anny's elbows 50 px below / above the shoulders, the detections
    5 px short of them along the arm; an arm not seen is left out."""
    from humanref_cli.perception.landmark_offsets import project_front

    res = 512
    landmarks = np.zeros((33, 3))
    to_world = lambda u, v: [0.0, 2 * u / res - 1, 1 - 2 * v / res]  # noqa: E731
    landmarks[11], landmarks[13] = to_world(300, 200), to_world(300, 250)  # left arm hanging
    landmarks[12], landmarks[14] = to_world(200, 200), to_world(200, 150)  # right arm raised
    keypoints = project_front(landmarks, res)
    keypoints[13] += (0, -5)
    keypoints[14] += (0, 5)
    obs = {
        "found": True,
        "keypoints": keypoints,
        "visibility": np.ones(33),
        "landmarks": landmarks,
        "frames": np.tile(np.eye(3), (33, 1, 1)),
        "valid": np.ones(33, bool),
        "res": res,
    }
    (v_l, r_l, m_l), (v_r, r_r, _) = elbow_residuals([obs], np.zeros((33, 3)))
    np.testing.assert_allclose(v_l, [-1.0])
    np.testing.assert_allclose(r_l, [-5 / 45])
    np.testing.assert_allclose(v_r, [1.0])
    np.testing.assert_allclose(r_r, [-5 / 45])
    np.testing.assert_allclose(m_l, [0.0])  # no world landmarks: m = 0
    hidden = {**obs, "visibility": np.where(np.arange(33) == 14, 0.1, 1.0)}
    (_, r_l, _), (_, r_r, _) = elbow_residuals([hidden], np.zeros((33, 3)))
    assert len(r_l) == 1 and len(r_r) == 0


@pytest.mark.parametrize("detector", ["full", "heavy"])
def test_packaged_tables(detector):
    """Measured (docs/decisions.md 4aa, 4ab): a raised arm's elbow is detected nearer the shoulder than a
    hanging arm's, and the shift stays a fraction of the arm."""
    bias = load_elbow_bias(detector)
    assert bias is not None
    for arm in (0, 1):
        raised, hanging = bias.along(arm, 0.5, 0.5), bias.along(arm, -1.0, 0.0)
        assert raised < hanging
        assert max(abs(raised), abs(hanging), abs(bias.along(arm, -0.85, 0.45))) < 0.3


def test_the_fit_compares_corrected_elbows_only_with_the_offsets_on(anny_body):
    from dataclasses import replace

    from humanref_cli.perception.bodyfit import FitSettings, _fit_targets

    kp = _arms((110.0, 150.0), (50.0, 60.0))
    kp[[0, 15, 16, 23, 24, 25, 26, 27, 28]] = np.random.default_rng(0).uniform(40, 200, (9, 2))
    vis = np.ones(33)
    mask = np.zeros((256, 256), bool)
    mask[30:220, 30:220] = True
    s = FitSettings(detector_offsets=True)
    world = np.random.default_rng(1).normal(0, 0.3, (33, 3))  # mediapipe's world landmarks
    on = _fit_targets(anny_body, kp, vis, mask, s, None, None)[0]
    on_world = _fit_targets(anny_body, kp, vis, mask, s, world, None)[0]
    off = _fit_targets(anny_body, kp, vis, mask, replace(s, detector_offsets=False), world, None)[0]
    # plane (y, z) -> pixels, as fit_silhouette.pixels_to_plane's inverse
    on_px, on_world_px, off_px = (
        np.stack([(t[:, 0] + 1) * 128, (1 - t[:, 1]) * 128], -1)
        for t in (on.double().numpy(), on_world.double().numpy(), off.double().numpy())
    )
    np.testing.assert_allclose(off_px, kp, atol=1e-3)
    bias = load_elbow_bias("full")
    np.testing.assert_allclose(on_px, correct_elbows(kp, bias), atol=1e-3)
    np.testing.assert_allclose(on_world_px, correct_elbows(kp, bias, upper_arm_depths(world)), atol=1e-3)
    assert np.abs(on_px[[13, 14]] - kp[[13, 14]]).max() > 1.0
    assert np.abs(on_world_px[[13, 14]] - on_px[[13, 14]]).max() > 0.1  # mediapipe's depth moves them
