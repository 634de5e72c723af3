"""The anny wrapper: world frame, transforms, gradients, part labels, landmarks and framing."""

from __future__ import annotations

import math

import pytest
import torch

from humanref_cli.geometry.anny_body import (
    MEDIAPIPE_TO_ANNY,
    PHENOTYPES,
    POSE_BONES,
    BodyFitParams,
    BodyParams,
    body_forward,
    fit_to_crop,
    forward_params,
    load_anny,
)


@pytest.fixture(scope="module")
def body():
    return load_anny(dtype=torch.float64)


@pytest.fixture(scope="module")
def rest(body):
    with torch.no_grad():
        return forward_params(body, BodyParams())


def test_topology_and_outputs(body, rest):
    assert rest.vertices.shape == (13718, 3) and rest.faces.shape == (27420, 3)
    assert rest.faces.dtype == torch.int64 and int(rest.faces.max()) == 13717
    assert set(MEDIAPIPE_TO_ANNY.values()) <= set(rest.joints)
    assert rest.landmarks.shape == (33, 3) and bool(rest.landmark_valid.all())


def test_world_frame_faces_plus_x_with_left_at_plus_y(rest):
    lm = rest.landmarks
    assert lm[0, 0] > lm[7, 0] + 0.05  # nose in front of the ears
    assert lm[11, 1] > 0.1 and lm[12, 1] < -0.1  # left shoulder at +y
    assert lm[0, 2] > lm[11, 2] > lm[23, 2] > lm[25, 2] > lm[27, 2]  # nose, shoulder, hip, knee, ankle
    assert lm[31, 0] > lm[29, 0] + 0.1  # toes ahead of the heels


def test_scale_translation_and_global_rotation(body, rest):
    t = BodyParams(scale=2.0, translation=[0.1, -0.2, 0.3])
    with torch.no_grad():
        moved = forward_params(body, t)
    torch.testing.assert_close(moved.vertices, 2.0 * rest.vertices + torch.tensor([0.1, -0.2, 0.3]).double())
    with torch.no_grad():
        turned = forward_params(body, BodyParams(global_rotation=[0.0, 0.0, math.pi / 2]))
    rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(turned.vertices, rest.vertices @ rz.T)
    torch.testing.assert_close(turned.joints["head"], rz @ rest.joints["head"])


def test_documented_pose_axes(body, rest):
    with torch.no_grad():
        out = forward_params(
            body, BodyParams(pose={"upperleg01.L": [-0.6, 0.0, 0.0], "upperarm01.L": [0.0, -1.0, 0.0]})
        )
    assert out.landmarks[25, 0] > rest.landmarks[25, 0] + 0.1  # left knee swings forward (+x)
    assert out.landmarks[15, 2] > rest.landmarks[15, 2] + 0.2  # left wrist rises
    torch.testing.assert_close(out.landmarks[16], rest.landmarks[16])  # right wrist untouched


def test_gradients_match_finite_differences(body):
    # phenotype blendshapes are piecewise linear with kinks at anchors such as 0.5: stay off them
    phenotype = dict(zip(PHENOTYPES, (0.31, 0.61, 0.42, 0.33, 0.7, 0.45), strict=True))
    t = BodyParams(phenotype, pose={"lowerarm01.R": [-0.3, 0.1, 0.0]}).tensors(dtype=torch.float64)
    weights = torch.randn(13718, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def objective(**kw):
        return (body_forward(body, **kw).vertices * weights).sum()

    for name in ("phenotype", "joint_rotvecs", "global_rotvec", "scale", "translation"):
        x = t[name].clone().requires_grad_(True)
        objective(**{**t, name: x}).backward()
        direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        eps = 1e-5
        with torch.no_grad():
            fd = (
                objective(**{**t, name: x + eps * direction}) - objective(**{**t, name: x - eps * direction})
            ) / (2 * eps)
        assert float((x.grad * direction).sum()) == pytest.approx(float(fd), rel=1e-4, abs=1e-6), name


@pytest.mark.slow
def test_fit_params_recover_an_arm_pose_from_landmarks(body):
    target = BodyParams(pose={"upperarm01.L": [-0.4, -0.5, 0.0], "lowerarm01.L": [-0.6, 0.0, 0.0]})
    with torch.no_grad():
        goal = forward_params(body, target).landmarks
    fit = BodyFitParams(dtype=torch.float64)
    opt = torch.optim.Adam([fit.joint_rotvecs], lr=0.05)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = ((fit(body).landmarks - goal) ** 2).sum()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.02 * losses[0]
    # the twist split between shoulder and elbow is not observable from points; the elbow position is
    with torch.no_grad():
        recovered = forward_params(body, fit.to_params()).landmarks
        start = forward_params(body, BodyParams()).landmarks
    assert float((recovered[13] - goal[13]).norm()) < 0.15 * float((start[13] - goal[13]).norm())


def test_params_round_trip():
    p = BodyParams(
        phenotype={k: 0.3 for k in PHENOTYPES},
        pose={"head": [0.1, 0.0, 0.2]},
        scale=1.3,
        translation=[0, 0, 0.1],
    )
    assert BodyParams.from_dict(p.to_dict()) == p
    back = BodyFitParams(p, dtype=torch.float64).to_params()
    assert back.pose.keys() == {"head"} and back.pose["head"] == pytest.approx([0.1, 0.0, 0.2])
    assert back.phenotype == pytest.approx(p.phenotype) and back.scale == pytest.approx(1.3)
    assert back.translation == pytest.approx([0.0, 0.0, 0.1])
    with pytest.raises(ValueError):
        BodyParams.from_dict({"phenotype": {}, "pose": {"not_a_bone": [0, 0, 0]}})
    assert len(POSE_BONES) == len(set(POSE_BONES))


def test_part_labels_are_ordered_head_to_feet(body, rest):
    centroids_z = rest.vertices[rest.faces].mean(1)[:, 2]
    parts = body.face_parts
    assert set(parts.unique().tolist()) == {1, 2, 3, 4}
    means = [float(centroids_z[parts == k].mean()) for k in (1, 2, 3, 4)]
    assert means == sorted(means, reverse=True)
    # hands are upper body, soles are feet, the face is head
    centroids = rest.vertices[rest.faces].mean(1)

    def near(p, k):  # the face nearest to point p has part k
        return int(parts[(centroids - p).norm(dim=1).argmin()]) == k

    assert near(rest.landmarks[15], 2) and near(rest.landmarks[31], 4) and near(rest.landmarks[0], 1)
    assert near(rest.landmarks[23] + torch.tensor([0.0, 0.0, -0.1]).double(), 3)


def test_fit_to_crop_frames_the_front_box(rest):
    s, t = fit_to_crop(rest.vertices)
    v = s * rest.vertices + t
    lo, hi = v.min(0).values, v.max(0).values
    assert max(float(hi[1] - lo[1]), float(hi[2] - lo[2])) == pytest.approx(1.8)
    torch.testing.assert_close(lo + hi, torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)


def test_cache_readiness_follows_anny_cache_dir(tmp_path, monkeypatch):
    import anny.paths

    from humanref_cli.geometry.anny_body import ANNY_FIRST_BUILD, anny_cache_ready

    monkeypatch.setattr(anny.paths, "get_anny_cache_path", lambda: tmp_path)
    assert not anny_cache_ready()
    (tmp_path / "v14").mkdir()
    (tmp_path / "v14" / "build_model_data_0123.safetensors").write_bytes(b"x")
    assert anny_cache_ready()
    assert "3 minutes" in ANNY_FIRST_BUILD.format(path=tmp_path)


def test_fit_params_hold_the_phenotype_above_its_lower_bounds():
    """The fit may not give an adult photo a child's proportions (decision 4t): below its bound a
    phenotype value is read as the bound and gets no gradient pulling it further down."""
    p = BodyParams(phenotype={**{k: 0.5 for k in PHENOTYPES}, "age": 0.2, "weight": 1.3})
    fit = BodyFitParams(p, dtype=torch.float64, phenotype_min={"age": 0.4})
    bounded = dict(zip(PHENOTYPES, fit.bounded_phenotype().tolist(), strict=True))
    assert bounded["age"] == 0.4 and bounded["weight"] == 1.0 and bounded["height"] == 0.5
    assert fit.to_params().phenotype["age"] == pytest.approx(0.4)
    fit.bounded_phenotype().sum().backward()
    grad = dict(zip(PHENOTYPES, fit.phenotype.grad.tolist(), strict=True))
    assert grad["age"] == 0.0 and grad["weight"] == 0.0 and grad["height"] == 1.0
    free = BodyFitParams(p, dtype=torch.float64)  # no bounds: [0, 1] as before
    assert free.to_params().phenotype["age"] == pytest.approx(0.2)
