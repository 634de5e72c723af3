"""Depth calibration: the regression, the packaged table, and the body-fit term that uses it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humanref_cli.perception.depth_calibration import (
    SEGMENTS,
    DepthCalibration,
    load_depth_calibration,
    mediapipe_world_to_axes,
    segment_depth,
    segment_lengths,
    segment_shortening,
    solve_depth_calibration,
)


def test_segment_depth_is_the_depth_component_of_unit_directions():
    points = torch.zeros(33, 3, dtype=torch.float64)
    points[13] = torch.tensor([3.0, 0.0, -4.0])  # left elbow: 3 towards the camera, 4 down from the shoulder
    points[15] = points[13] + torch.tensor([0.0, 2.0, 0.0])  # forearm in the image plane
    depth = segment_depth(points)
    names = list(SEGMENTS)
    assert depth.shape == (len(SEGMENTS),)
    assert depth[names.index("upperarm.L")].item() == pytest.approx(0.6)
    assert depth[names.index("forearm.L")].item() == pytest.approx(0.0)
    batched = segment_depth(torch.stack([points, -points]))
    assert torch.allclose(batched[1, names.index("upperarm.L")], torch.tensor(-0.6, dtype=torch.float64))


def test_mediapipe_world_axes():
    """mediapipe: x right, y down, z away from the camera -> world: x to the camera, y right, z up."""
    w = torch.tensor([[1.0, 2.0, 3.0]])
    assert mediapipe_world_to_axes(w).tolist() == [[-3.0, 1.0, -2.0]]


def test_solve_recovers_a_known_linear_relation():
    rng = np.random.default_rng(0)
    detected = rng.uniform(-0.8, 0.8, (400, 3))
    a, b = np.array([0.5, 1.0, 0.8]), np.array([0.2, -0.1, 0.0])
    noise = np.array([0.01, 0.05, 0.1])
    truth = a * detected + b + rng.normal(size=detected.shape) * noise
    cal = solve_depth_calibration(truth, detected, ridge=0.01)
    scale, bias, sigma = cal["scale"], cal["bias"], cal["sigma"]
    np.testing.assert_allclose(scale, a, atol=0.03)
    np.testing.assert_allclose(bias, b, atol=0.02)
    np.testing.assert_allclose(sigma, noise, rtol=0.15)


def test_ridge_keeps_an_undetermined_scale_at_one():
    """All detections equal: the slope is not identified, the ridge holds it at 1, b takes the rest."""
    detected = np.full((10, 1), 0.3)
    truth = np.full((10, 1), 0.5)
    cal = solve_depth_calibration(truth, detected, ridge=0.5)
    scale, bias, sigma = cal["scale"], cal["bias"], cal["sigma"]
    assert scale[0] == pytest.approx(1.0)
    assert bias[0] == pytest.approx(0.2)
    assert sigma[0] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("detector", ["full", "heavy"])
def test_packaged_table(detector):
    cal = load_depth_calibration(torch.float64, detector=detector)
    for t in (cal.scale, cal.bias, cal.sigma):
        assert t.shape == (len(SEGMENTS),) and torch.isfinite(t).all()
    assert (cal.sigma > 0).all() and (cal.sigma < 1).all()  # depth components lie in [-1, 1]
    w = cal.weights()
    assert w.mean().item() == pytest.approx(1.0)
    names = list(SEGMENTS)
    # measured: mediapipe's forearms agree with the truth far better than its thighs
    assert w[names.index("forearm.R")] > w[names.index("thigh.L")]


def _world_with_depths(points: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """``points (33, 3)`` with each segment's end moved in depth so that its depth component is
    ``depth[s]``; the in-plane parts stay. Each segment ends at its own landmark, so setting the
    shoulder and hip lines first and then the limbs from the trunk out reaches every target."""
    w = points.clone()
    names = list(SEGMENTS)
    for name in ["shoulders", "hips"] + [n for n in names if n not in ("shoulders", "hips")]:
        a, b = SEGMENTS[name]
        d = depth[names.index(name)]
        inplane = (w[b, 1:] - w[a, 1:]).norm()
        w[b, 0] = w[a, 0] + d * inplane / (1 - d**2).sqrt()
    return w


def test_calibrated_direction_term_is_zero_where_the_calibration_predicts(anny_body):
    """With a calibration the term's minimum moves to ``a m + b``: the true pose costs nothing when
    the detector's depths ``m`` are such that ``a m + b`` is the truth, and the uncalibrated term
    charges the same pose for the same detection."""
    from humanref_cli.geometry.anny_body import BodyFitParams, BodyParams, forward_params
    from humanref_cli.perception.bodyfit import FitSettings, fit_losses

    params = BodyParams(pose={"upperarm01.L": [-0.6, 0.0, 0.0], "upperleg01.R": [0.4, 0.0, 0.0]})
    fit = BodyFitParams(params, dtype=torch.float64)
    with torch.no_grad():
        truth = forward_params(anny_body, params).landmarks.double()
    n = len(SEGMENTS)
    cal = DepthCalibration(
        scale=torch.full((n,), 0.9, dtype=torch.float64),
        bias=torch.full((n,), 0.05, dtype=torch.float64),
        sigma=torch.linspace(0.05, 0.3, n, dtype=torch.float64),
    )
    detected = (segment_depth(truth) - 0.05) / 0.9
    assert detected.abs().max() < 1.0
    world = _world_with_depths(truth, detected)
    torch.testing.assert_close(segment_depth(world), detected)
    keypoints, conf = truth[:, 1:], torch.ones(33, dtype=torch.float64)

    def term(calibration):
        losses = fit_losses(fit, anny_body, keypoints, conf, None, FitSettings(), world, None, calibration)
        return losses["direction"].item()

    assert term(cal) < 1e-8
    assert term(None) > 0.1  # errors of about 0.06 in depth components, ×100


def test_fit_body_uses_the_packaged_calibration_unless_turned_off(anny_body):
    """``FitSettings.depth_calibration`` reaches the fit: same inputs, different direction term."""
    from dataclasses import replace

    from humanref_cli.geometry.anny_body import BodyParams, forward_params
    from humanref_cli.perception.bodyfit import FitSettings, fit_body
    from humanref_cli.perception.landmark_offsets import project_front

    with torch.no_grad():
        truth = forward_params(anny_body, BodyParams(pose={"upperarm01.L": [-0.6, 0.0, 0.0]}, scale=1.5))
    lm = truth.landmarks.double().numpy()
    keypoints = project_front(lm, 128).astype(np.float32)
    visibility = truth.landmark_valid.numpy().astype(np.float32)
    world = np.stack([lm[:, 1], -lm[:, 2], -lm[:, 0]], -1)  # mediapipe axes: right, down, away
    mask = np.zeros((128, 128), bool)
    mask[20:110, 40:90] = True
    settings = FitSettings(steps_keypoints=2, steps_full=0)
    on = fit_body(anny_body, keypoints, visibility, mask, settings, world=world)
    off = fit_body(
        anny_body, keypoints, visibility, mask, replace(settings, depth_calibration=False), world=world
    )
    assert abs(on.losses["direction"] - off.losses["direction"]) > 1e-3


def test_fit_body_starts_from_init_when_given(anny_body):
    """With no steps the result is the start: ``init`` when given (as ``bench/bodyfit.py`` passes the
    truth), else the rest pose placed on the keypoints."""
    from humanref_cli.geometry.anny_body import BodyParams, forward_params
    from humanref_cli.perception.bodyfit import FitSettings, fit_body
    from humanref_cli.perception.landmark_offsets import project_front

    start = BodyParams(pose={"upperarm01.L": [-0.6, 0.0, 0.0]}, scale=1.5, translation=[0.0, 0.1, -0.05])
    with torch.no_grad():
        truth = forward_params(anny_body, start)
    keypoints = project_front(truth.landmarks.double().numpy(), 128).astype(np.float32)
    visibility = truth.landmark_valid.numpy().astype(np.float32)
    mask = np.zeros((128, 128), bool)
    mask[20:110, 40:90] = True
    settings = FitSettings(steps_keypoints=0, steps_full=0, detector_offsets=False)
    got = fit_body(anny_body, keypoints, visibility, mask, settings, init=start)
    np.testing.assert_allclose(got.params.pose["upperarm01.L"], [-0.6, 0.0, 0.0], atol=1e-6)
    assert got.params.scale == pytest.approx(1.5) and got.keypoint_error_px < 0.5
    rest = fit_body(anny_body, keypoints, visibility, mask, settings)
    assert "upperarm01.L" not in rest.params.pose and rest.keypoint_error_px > 2.0


def test_solve_recovers_a_relation_that_depends_on_the_direction():
    """``x = (a + e v) m + b + c v`` on the conditioned segment, plain ``a m + b`` elsewhere."""
    rng = np.random.default_rng(2)
    n = 600
    detected, up = rng.uniform(-0.8, 0.8, (n, 2)), rng.uniform(-1, 1, (n, 2))
    a, e, b, c = 0.6, -0.4, -0.1, -0.25
    truth = np.stack([(a + e * up[:, 0]) * detected[:, 0] + b + c * up[:, 0], 0.9 * detected[:, 1] + 0.05], 1)
    truth += rng.normal(0, 0.01, truth.shape)
    cal = solve_depth_calibration(truth, detected, ridge=0.01, up=up, conditioned=(0,))
    got = [cal[k][0] for k in ("scale", "up_scale", "bias", "up_bias")]
    np.testing.assert_allclose(got, [a, e, b, c], atol=0.01)
    got = [cal[k][1] for k in ("scale", "bias", "up_scale", "up_bias", "curve")]
    np.testing.assert_allclose(got, [0.9, 0.05, 0.0, 0.0, 0.0], atol=0.01)
    assert (cal["sigma"] < 0.02).all()
    plain = solve_depth_calibration(truth, detected, ridge=0.01)
    assert plain["sigma"][0] > 5 * cal["sigma"][0]  # one line cannot follow the direction's effect


def test_solve_recovers_a_bent_response():
    """``x = a m + b + q m |m|`` with ``curved``; a straight line leaves the bend in its residual."""
    rng = np.random.default_rng(3)
    detected = rng.uniform(-1, 1, (500, 1))
    truth = 0.3 * detected + 0.4 + 0.5 * detected * np.abs(detected) + rng.normal(0, 0.01, detected.shape)
    cal = solve_depth_calibration(truth, detected, ridge=0.01, curved=True)
    np.testing.assert_allclose([cal["scale"][0], cal["bias"][0], cal["curve"][0]], [0.3, 0.4, 0.5], atol=0.02)
    assert cal["sigma"][0] < 0.02
    assert solve_depth_calibration(truth, detected, ridge=0.01)["sigma"][0] > 3 * cal["sigma"][0]


def test_target_bends_with_the_curve_and_keeps_it_at_a_direction():
    cal = DepthCalibration(
        scale=torch.tensor([0.5]),
        bias=torch.tensor([0.1]),
        sigma=torch.tensor([0.2]),
        up_scale=torch.tensor([0.2]),
        up_bias=torch.tensor([0.0]),
        curve=torch.tensor([0.4]),
    )
    m = torch.tensor([-0.5])
    torch.testing.assert_close(cal.target(m), torch.tensor([0.5 * -0.5 + 0.1 + 0.4 * -0.25]))
    at = cal.at_direction(np.array([1.0]))
    torch.testing.assert_close(at.target(m), torch.tensor([0.7 * -0.5 + 0.1 + 0.4 * -0.25]))


def test_at_direction_folds_the_direction_into_scale_and_bias():
    cal = DepthCalibration(
        scale=torch.tensor([0.5, 1.0]),
        bias=torch.tensor([0.1, 0.0]),
        sigma=torch.tensor([0.2, 0.1]),
        up_scale=torch.tensor([-0.4, 0.0]),
        up_bias=torch.tensor([-0.2, 0.0]),
    )
    at = cal.at_direction(np.array([0.5, -1.0]))
    torch.testing.assert_close(
        at.target(torch.tensor([0.3, 0.3])), torch.tensor([(0.5 - 0.2) * 0.3 + 0.0, 0.3])
    )
    torch.testing.assert_close(at.sigma, cal.sigma)
    plain = DepthCalibration(cal.scale, cal.bias, cal.sigma)
    assert plain.at_direction(np.array([0.5, -1.0])) is plain


def test_packaged_table_conditions_the_upper_arms_only():
    """Measured (docs/decisions.md 4aa): a raised upper arm's mediapipe depth is too far forward, so
    the bias falls as the arm rises (c < 0) on both sides."""
    from humanref_cli.perception.depth_calibration import CONDITIONED

    cal = load_depth_calibration(torch.float64)
    assert cal.up_scale is not None and cal.up_bias is not None
    names = list(SEGMENTS)
    for k, name in enumerate(names):
        if name in CONDITIONED:
            assert cal.up_bias[k] < 0
        else:
            assert cal.up_scale[k] == 0 and cal.up_bias[k] == 0


def test_the_fit_conditions_the_calibration_on_the_detected_directions(anny_body):
    """``_fit_targets`` evaluates the packaged calibration at the photo's ``v`` of the raw detections
    (before the elbows move), so a raised upper arm gets another target than a hanging one."""
    from humanref_cli.perception.bodyfit import FitSettings, _fit_targets
    from humanref_cli.perception.depth_calibration import segment_up

    rng = np.random.default_rng(3)
    kp = rng.uniform(40, 200, (33, 2))
    kp[11], kp[13] = (140.0, 100.0), (150.0, 60.0)  # left upper arm raised
    kp[12], kp[14] = (100.0, 100.0), (95.0, 150.0)  # right upper arm hanging
    mask = np.zeros((256, 256), bool)
    mask[30:220, 30:220] = True
    world = rng.normal(0, 0.3, (33, 3))
    depth_cal = _fit_targets(anny_body, kp, np.ones(33), mask, FitSettings(), world, None)[5]
    packaged = load_depth_calibration(depth_cal.scale.dtype)
    v = torch.as_tensor(segment_up(kp), dtype=packaged.scale.dtype)
    torch.testing.assert_close(depth_cal.scale, packaged.scale + packaged.up_scale * v)
    torch.testing.assert_close(depth_cal.bias, packaged.bias + packaged.up_bias * v)
    names = list(SEGMENTS)
    assert v[names.index("upperarm.L")] > 0.9 and v[names.index("upperarm.R")] < -0.9
    g = torch.as_tensor(segment_shortening(kp, packaged.rho.numpy()), dtype=packaged.scale.dtype)
    torch.testing.assert_close(depth_cal.signed, packaged.shortening * g)


def test_segment_lengths_and_shortening():
    kp = np.zeros((33, 2))
    kp[[11, 12]] = (110.0, 100.0), (90.0, 100.0)  # shoulders' midpoint (100, 100)
    kp[[23, 24]] = (110.0, 200.0), (90.0, 200.0)  # hips' midpoint (100, 200): torso 100 px
    kp[13], kp[15] = (110.0, 150.0), (140.0, 150.0)  # left forearm 30 px
    kp[14], kp[16] = (90.0, 150.0), (90.0, 220.0)  # right forearm 70 px
    names = list(SEGMENTS)
    fl, fr = names.index("forearm.L"), names.index("forearm.R")
    lengths = segment_lengths(kp)
    assert lengths[fl] == pytest.approx(0.3) and lengths[fr] == pytest.approx(0.7)
    rho = np.zeros(len(SEGMENTS))
    rho[[fl, fr]] = 0.5
    g = segment_shortening(kp, rho)
    assert g[fl] == pytest.approx(0.8)  # sqrt(1 - 0.6²)
    assert g[fr] == 0.0  # longer than the full length: in the plane
    assert (np.delete(g, [fl, fr]) == 0).all()  # not read where rho is 0
    assert (segment_lengths(np.zeros((33, 2))) == 0).all()  # no torso: nothing read


def test_solve_recovers_the_shortening_term():
    rng = np.random.default_rng(5)
    detected, g = rng.uniform(-1, 1, (400, 2)), rng.uniform(0, 1, (400, 2))
    truth = 0.5 * detected + 0.1 + np.stack([0.4 * g[:, 0] * np.sign(detected[:, 0]), np.zeros(400)], 1)
    truth += rng.normal(0, 0.01, truth.shape)
    cal = solve_depth_calibration(truth, detected, ridge=0.01, shortening=g, shortened=(0,))
    np.testing.assert_allclose(cal["shortening"], [0.4, 0.0], atol=0.02)
    np.testing.assert_allclose(cal["scale"], [0.5, 0.5], atol=0.03)
    assert (cal["sigma"] < 0.02).all()


def test_at_keypoints_adds_the_signed_shortening():
    kp = np.zeros((33, 2))
    kp[[11, 12, 23, 24]] = (110.0, 100.0), (90.0, 100.0), (110.0, 200.0), (90.0, 200.0)
    kp[13], kp[15] = (110.0, 150.0), (140.0, 150.0)  # left forearm 0.3 torsos, sideways (v = 0)
    names = list(SEGMENTS)
    n, fl = len(SEGMENTS), names.index("forearm.L")
    rho, p = torch.zeros(n), torch.zeros(n)
    rho[fl], p[fl] = 0.5, 0.3
    cal = DepthCalibration(torch.ones(n), torch.zeros(n), torch.ones(n), shortening=p, rho=rho)
    at = cal.at_keypoints(kp)
    m = torch.full((n,), -0.2)
    expected = m.clone()
    expected[fl] = -0.2 - 0.3 * 0.8  # mediapipe's sign, the photo's amount
    torch.testing.assert_close(at.target(m), expected)
    assert (
        cal.signed is None
        and DepthCalibration(cal.scale, cal.bias, cal.sigma).at_keypoints(kp).signed is None
    )


def test_packaged_table_reads_the_forearms_foreshortening():
    """Measured (docs/decisions.md 4ab): a forearm shorter in the photo points further out of it."""
    from humanref_cli.perception.depth_calibration import FORESHORTENED

    cal = load_depth_calibration(torch.float64)
    assert cal.shortening is not None and cal.rho is not None
    for k, name in enumerate(SEGMENTS):
        if name in FORESHORTENED:
            assert cal.shortening[k] > 0 and 0.2 < cal.rho[k] < 1.0
        else:
            assert cal.shortening[k] == 0 and cal.rho[k] == 0
