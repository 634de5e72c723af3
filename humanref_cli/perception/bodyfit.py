"""Fitting the anny body to the detected keypoints and the silhouette under the front orthographic
camera (replaces the released code's PIXIE + SMPL-X refinement, method.md §2.2).

Projection of a world point ``p`` into the ``res``-pixel crop (front camera, method.md §2.6):
``u = (p_y + 1) res / 2``, ``v = (1 - p_z) res / 2``; depth (``p_x``) is unobservable, so the body's
depth extent is centred on 0 afterwards, as ``anny_body.fit_to_crop`` frames bodies.

Objective (distances in percent of the crop side, ``UNIT`` = 50 per world unit, so the terms are of
order one and the prior weights mean the same at any resolution), minimised with L-BFGS::

    L = w_kp   Σ_i c_i ||π(J_i) - k_i||² / Σ_i c_i                      keypoints, c_i = visibility · weight
      + w_sil  (mean_v D_out(π(v))² + mean_b min_v ||b - π(v)||²)       silhouette: inside + covering
      + w_pose (mean_j Σ_k a_jk θ_jk² + 10 Σ_knees (θ_y² + θ_z² + relu(-θ_x)²)   pose prior, knees
                + 1000 Σ_elbows (θ_y² + θ_z² + relu(θ_x)²))                          and elbows hinge
      + w_shape ||β - 0.5||²                                             phenotype prior
      + w_dir  100 Σ_s c_s ω_s (d̂_s,x - t_s(ŵ_s,x))² / Σ_s c_s ω_s     depth of each segment
      + w_shade Σ_p (d̂_L,x - d̂_R,x - a_p m_p - b_p)² / σ_p² / P           which leg is forward (shading)
      + w_upright 100 r_y²                                               no lean towards the camera

``J_i`` are anny's landmarks moved to where mediapipe puts them (:func:`detector_landmarks`, offsets
calibrated by ``bench/calibrate_landmarks.py``); ``k_i`` the detections, the elbows moved along the upper
arm by how far the arm is raised and how mediapipe sees it point in depth (:mod:`elbow_bias`). ``D_out`` is
the distance transform of the outside of the mask (0 inside), ``b`` sampled points of the mask's boundary
(:mod:`fit_silhouette`). The front view alone cannot tell an arm raised forward from one raised backward,
nor which leg strides forward: for the limb segments and the shoulder and hip lines ``s = (a, b)``, ``d̂_s``
is the fitted unit direction and ``ŵ_s`` the one of mediapipe's metric world landmarks; only their depth
components (``x``, towards the camera) are compared, since the keypoints already fix the rest. mediapipe's
depth is better for some segments than for others: the target ``t_s`` (``a_s m + b_s``, with a bend and, for
the forearms, the photo's foreshortening) and the weights ``ω_s ∝ 1/σ_s²`` are
calibrated against the truth on synthetic subjects (:mod:`depth_calibration`; ``a = 1, b = 0, ω = 1``
without it). mediapipe's thighs are no better than chance, so a stride is read from the photo's shading
instead: ``m_p`` compares the brightness of the left and right thigh (shin), ``P`` counts the pairs measured
(:mod:`shading_cue`; the pairs whose two limbs differ in colour are left out); weighted by the calibration's
residual ``σ_p``, as the direction term is with ``σ ≈ 0.1`` (``100 = 0.1⁻²``). ``r_y`` is the global
rotation about the image's horizontal axis (a lean towards or away from the camera, also invisible from the
front).

A first phase fits the global transform and the pose to the keypoints alone, from the rest pose and
(``arm_starts``) from three more starts with one or both arms bent across the body, and one with both raised
forward when mediapipe points the forearms at the camera; the bent start with the lowest loss goes on to
the second phase when its loss is lower and it fits the keypoints better than the straight start, else the
straight one, and the forward start instead when its loss is lower still (:func:`fit_starts.pick_start`).
The second phase adds the silhouette and frees the phenotype. Both run L-BFGS with a strong-Wolfe line
search; a step count is a budget of loss evaluations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from humanref_cli.configs.prep import PrepConfig
from humanref_cli.geometry.anny_body import (
    POSE_BONES,
    AnnyBody,
    BodyFitParams,
    BodyParams,
    forward_params,
)
from humanref_cli.perception.depth_calibration import (
    SEGMENT_PAIRS,
    DepthCalibration,
    load_depth_calibration,
    mediapipe_world_to_axes,
    segment_depth,
)
from humanref_cli.perception.elbow_bias import correct_elbows, load_elbow_bias, upper_arm_depths
from humanref_cli.perception.fit_silhouette import SilhouetteTarget, pixels_to_plane, plane_to_pixels
from humanref_cli.perception.fit_starts import ARM_STARTS, arm_starts, forearms_forward, pick_start
from humanref_cli.perception.landmark_offsets import detector_landmarks, detector_offsets
from humanref_cli.perception.shading_cue import PAIR_SEGMENTS, LimbShading, load_shading_calibration

ANNY_ID = "embedded:anny-0.6.2"
# Names the fit's objective and priors; part of prep's cache key, so a workspace prepped by an earlier
# fit is fitted again. Change it with any change to the objective (the suffix is the decision's number).
FIT_ID = "humanref-bodyfit-4af"
UNIT = 50.0  # loss units per world unit: 1 = 1% of the crop side
# Knuckle landmarks map to approximate bones and the face points are tiny: trust them less.
_LANDMARK_WEIGHT = np.ones(33, np.float32)
_LANDMARK_WEIGHT[[17, 18, 19, 20, 21, 22]] = 0.3
_LANDMARK_WEIGHT[[1, 3, 4, 6, 9, 10]] = 0.5
_KNEES = [POSE_BONES.index("lowerleg01.L"), POSE_BONES.index("lowerleg01.R")]
# Elbows bend one way (flexion is -x in anny's axes, as +x is for knees). Without the hinge, raised
# arms were fitted with straight-or-hyperextended elbows and the upper arm swung forward to match the
# keypoints; a hard hinge (docs/decisions.md 4l) leaves the forearm, whose depth mediapipe gets right,
# to place the elbow.
_ELBOWS = [POSE_BONES.index("lowerarm01.L"), POSE_BONES.index("lowerarm01.R")]
_ELBOW_HINGE = 1000.0
# Per-bone, per-axis prior weights (anny's local axes: x the person's left, y back, z up): the clavicles
# and the spine barely move in natural poses, and left free they trade places with the shoulders (an arm
# raised sideways fitted as raised forward, which projects the same). A clavicle's elevation (about y)
# is held near rest (docs/decisions.md 4i): a shrug plus a smaller, twisted shoulder rotation puts the
# keypoints where a raised arm does, and the fit preferred it; its twist and its reach forward stay freer.
# The spine's pitch (about x) is invisible from the front but for a little foreshortening, which the
# keypoints then decide: mediapipe puts the shoulders of a raised arm 5-19 px above anny's, and a weak
# prior let the fit bend the upper spine ~0.3 rad to shorten the torso, throwing the head ~10 cm back
# (docs/decisions.md 4n). People stand for a full-body photo with the spine near upright.
_CLAVICLE_PRIOR = (10.0, 1000.0, 10.0)
_SPINE_PRIOR = (1000.0, 3.0, 3.0)
_NECK_PRIOR = (3.0, 3.0, 3.0)


def _bone_prior(bone: str) -> tuple[float, float, float]:
    """Per-axis pose prior weights of one of :data:`POSE_BONES`."""
    if bone.startswith("clavicle"):
        return _CLAVICLE_PRIOR
    if bone.startswith("spine"):
        return _SPINE_PRIOR
    if bone.startswith(("neck", "head")):
        return _NECK_PRIOR
    return (1.0, 1.0, 1.0)


_BONE_PRIOR = torch.tensor([_bone_prior(b) for b in POSE_BONES])  # (B, 3)


_PREP = PrepConfig()  # the one source of the fit's defaults: prep's settings


@dataclass(frozen=True)
class FitSettings:
    """Optimisation settings; the defaults are ``PrepConfig``'s ``fit_*`` values (prep passes its own)."""

    steps_keypoints: int = _PREP.fit_steps_keypoints
    steps_full: int = _PREP.fit_steps_full
    w_kp: float = 1.0
    w_sil: float = _PREP.fit_w_sil
    w_pose: float = _PREP.fit_w_pose
    w_shape: float = _PREP.fit_w_shape
    w_dir: float = _PREP.fit_w_dir
    w_upright: float = _PREP.fit_w_upright
    w_shade: float = _PREP.fit_w_shade
    min_age: float = _PREP.fit_min_age
    detector_offsets: bool = _PREP.fit_detector_offsets
    depth_calibration: bool = _PREP.fit_depth_calibration
    arm_starts: bool = _PREP.fit_arm_starts
    min_visibility: float = _PREP.min_visibility
    detector: str = "full"  # the landmark model the keypoints came from: whose calibration to use
    boundary_samples: int = 1500
    vertex_stride: int = 4
    seed: int = 0

    @classmethod
    def from_prep(cls, cfg: PrepConfig, seed: int, detector: str = "full") -> FitSettings:
        """The settings of ``cfg``'s ``fit_*`` fields (and its ``min_visibility``) with ``seed``, for
        keypoints from ``detector`` (``person.POSE_MODELS``)."""
        return cls(
            steps_keypoints=cfg.fit_steps_keypoints,
            steps_full=cfg.fit_steps_full,
            w_sil=cfg.fit_w_sil,
            w_pose=cfg.fit_w_pose,
            w_shape=cfg.fit_w_shape,
            w_dir=cfg.fit_w_dir,
            w_upright=cfg.fit_w_upright,
            w_shade=cfg.fit_w_shade,
            min_age=cfg.fit_min_age,
            detector_offsets=cfg.fit_detector_offsets,
            depth_calibration=cfg.fit_depth_calibration,
            arm_starts=cfg.fit_arm_starts,
            min_visibility=cfg.min_visibility,
            detector=detector,
            seed=seed,
        )


@dataclass
class FitResult:
    """``params`` (world frame), ``vertices (V, 3)`` / ``faces (F, 3)`` numpy, ``landmarks_px (33, 2)``
    the fitted landmarks in crop pixels, fit quality ``keypoint_error_px`` (mean over the landmarks
    used) and ``iou`` (rendered body vs silhouette), the final loss terms."""

    params: BodyParams
    vertices: np.ndarray
    faces: np.ndarray
    landmarks_px: np.ndarray
    landmarks_used: np.ndarray
    keypoint_error_px: float
    iou: float
    losses: dict[str, float]


def fit_losses(
    fit: BodyFitParams,
    body: AnnyBody,
    keypoints: torch.Tensor,
    conf: torch.Tensor,
    sil: SilhouetteTarget | None,
    s: FitSettings,
    world: torch.Tensor | None = None,
    offsets: torch.Tensor | None = None,
    depth: DepthCalibration | None = None,
    shading: tuple[torch.Tensor, torch.Tensor, DepthCalibration] | None = None,
) -> dict[str, torch.Tensor]:
    """The named loss terms of the module docstring (unweighted) for the current parameters.
    ``keypoints (33, 2)`` plane coordinates, ``conf (33,)``, ``world (33, 3)`` mediapipe's world
    landmarks in world axes or None, ``offsets (33, 3)`` detector offsets or None, ``depth`` the
    calibration of mediapipe's depth per segment or None (mediapipe's as it is, equal weights),
    ``shading`` the measured ``m (P,)``, its ``valid (P,)`` mask and its calibration, or None."""
    out = fit(body)
    landmarks = detector_landmarks(out, offsets)
    pred = landmarks[:, 1:]  # (33, 2) world (y, z) = plane coordinates
    c = conf * out.landmark_valid.to(conf.dtype)
    err = (pred - keypoints) * UNIT
    losses = {"keypoints": (c[:, None] * err.square()).sum() / c.sum().clamp_min(1e-6)}
    rot = fit.joint_rotvecs
    knees, elbows = rot[_KNEES], rot[_ELBOWS]
    losses["pose"] = (
        (_BONE_PRIOR.to(rot.dtype) * rot.square()).sum(-1).mean()
        + 10 * (knees[:, 1:].square().sum() + F.relu(-knees[:, 0]).square().sum())
        + _ELBOW_HINGE * (elbows[:, 1:].square().sum() + F.relu(elbows[:, 0]).square().sum())
    )
    losses["shape"] = (fit.phenotype - 0.5).square().sum()
    if world is not None:
        a, b = SEGMENT_PAIRS[:, 0], SEGMENT_PAIRS[:, 1]
        cd = torch.minimum(c[a], c[b])
        target = segment_depth(world)
        if depth is not None:
            target, cd = depth.target(target), cd * depth.weights()
        err = (segment_depth(landmarks) - target).square()
        losses["direction"] = (cd * err).sum() / cd.sum().clamp_min(1e-6) * 100
    if shading is not None:
        ratio, valid, cal = shading
        x = segment_depth(landmarks)
        diff = x[PAIR_SEGMENTS[:, 0]] - x[PAIR_SEGMENTS[:, 1]]
        err = (diff - cal.target(ratio)).square() / cal.sigma.clamp_min(1e-3).square()
        losses["shading"] = (valid * err).sum() / valid.sum().clamp_min(1)
    losses["upright"] = fit.global_rotvec[1:2].square().sum() * 100
    if sil is not None:
        verts = out.vertices[:: s.vertex_stride]
        plane = verts[:, 1:]
        losses["sil_inside"] = sil.inside(plane)
        losses["sil_cover"] = sil.cover(plane)
    return losses


def _initial_params(
    body: AnnyBody, keypoints: torch.Tensor, conf: torch.Tensor, offsets: torch.Tensor | None
) -> BodyParams:
    """Rest pose, scale and (y, z) translation from a weighted least-squares fit of the rest body's
    landmarks to the keypoints: ``min_{s,t} Σ c_i ||s P_i + t - K_i||²``."""
    params = BodyParams()
    with torch.no_grad():
        out = forward_params(body, params)
    c = (conf * out.landmark_valid.to(conf.dtype)).double()
    lm = detector_landmarks(out, offsets)
    p, k = lm[:, 1:].double(), keypoints.double()
    pm = (c[:, None] * p).sum(0) / c.sum()
    km = (c[:, None] * k).sum(0) / c.sum()
    s = float((c[:, None] * (p - pm) * (k - km)).sum() / (c[:, None] * (p - pm).square()).sum())
    s = max(s, 1e-3)
    t = km - s * pm
    depth = out.vertices[:, 0].double()
    tx = -s * float(depth.min() + depth.max()) / 2
    return BodyParams(scale=s, translation=[tx, float(t[0]), float(t[1])])


def _fit_targets(body, keypoints_px, visibility, mask, s, world, limb_shading):
    """What the fit compares the body with, on the body's device and dtype: keypoints in the plane
    ``(33, 2)`` (with the offsets on, the elbows moved as :mod:`elbow_bias` says), their weights
    ``conf (33,)``, the silhouette target, mediapipe's world directions (or None), the detector
    offsets, the depth and shading calibrations (None when off)."""
    res = mask.shape[0]
    dtype = body.dtype
    detected = np.array(keypoints_px, np.float64)  # before the elbows move: the calibration reads these
    elbows = load_elbow_bias(s.detector) if s.detector_offsets else None
    if elbows is not None:
        keypoints_px = correct_elbows(keypoints_px, elbows, upper_arm_depths(world))
    kp = pixels_to_plane(torch.as_tensor(keypoints_px, dtype=torch.float64), res).to(dtype)
    vis = torch.as_tensor(visibility, dtype=dtype)
    conf = torch.where(vis >= s.min_visibility, vis, torch.zeros_like(vis)) * torch.from_numpy(
        _LANDMARK_WEIGHT
    ).to(dtype)
    if float((conf > 0).sum()) < 4:
        conf = vis * torch.from_numpy(_LANDMARK_WEIGHT).to(dtype)  # too few confident points: use them all
    sil = SilhouetteTarget(mask, s.boundary_samples, s.seed, UNIT)
    world_t = None
    if world is not None and s.w_dir > 0:
        world_t = mediapipe_world_to_axes(torch.as_tensor(np.asarray(world), dtype=dtype))
    offsets = detector_offsets(dtype, s.detector).to(body.device) if s.detector_offsets else None
    depth_cal = None
    if s.depth_calibration and world_t is not None:
        depth_cal = load_depth_calibration(dtype, body.device, s.detector).at_keypoints(detected)
    shading = None
    shade_cal = None
    if limb_shading is not None and s.w_shade > 0:
        shade_cal = load_shading_calibration(dtype, body.device, s.detector)
    if shade_cal is not None and limb_shading.valid.any():
        shading = (
            torch.as_tensor(limb_shading.log_ratio, dtype=dtype),
            torch.as_tensor(limb_shading.valid, dtype=dtype),
            shade_cal,
        )
    return kp, conf, sil, world_t, offsets, depth_cal, shading


def fit_body(
    body: AnnyBody,
    keypoints_px: np.ndarray,
    visibility: np.ndarray,
    mask: np.ndarray,
    settings: FitSettings = FitSettings(),
    world: np.ndarray | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    limb_shading: LimbShading | None = None,
    init: BodyParams | None = None,
) -> FitResult:
    """Fit anny to keypoints ``(33, 2)`` (crop pixels) with ``visibility (33,)``, the silhouette
    ``mask (res, res)`` bool and optionally mediapipe's world landmarks ``world (33, 3)`` (metres,
    x right, y down, z away from the camera) and the legs' shading measured in the crop
    (:func:`shading_cue.limb_shading`). Starts from ``init`` (crop frame) when given, else from the
    rest pose placed on the keypoints (:func:`_initial_params`); ``bench/bodyfit.py`` starts from the
    truth to tell the objective's minimum from the optimiser's. Deterministic for given inputs."""
    s = settings
    res = mask.shape[0]
    torch.manual_seed(s.seed)
    kp, conf, sil, world_t, offsets, depth_cal, shading = _fit_targets(
        body, keypoints_px, visibility, mask, s, world, limb_shading
    )
    forward = init is None and s.arm_starts and forearms_forward(world)
    if init is not None:
        starts = [init]
    else:
        rest = _initial_params(body, kp, conf, offsets)
        starts = arm_starts(rest, forward) if s.arm_starts else [rest]
    weights = {
        "keypoints": s.w_kp,
        "pose": s.w_pose,
        "shape": s.w_shape,
        "sil_inside": s.w_sil,
        "sil_cover": s.w_sil,
        "direction": s.w_dir,
        "upright": s.w_upright,
        "shading": s.w_shade,
    }
    targets = (kp, conf, sil, world_t, offsets, depth_cal, shading)
    step = 0

    def report(losses: dict[str, torch.Tensor], loss: torch.Tensor) -> None:
        nonlocal step
        step += 1
        if on_step is not None:
            on_step(step, {"loss": loss.item(), "kp_px": losses["keypoints"].item() ** 0.5 * res / 2 / UNIT})

    fits, losses, terms = [], [], []  # the first phase from each start; pick_start says which goes on
    for params in starts:
        fit = BodyFitParams(params, device=body.device, dtype=body.dtype, phenotype_min={"age": s.min_age})
        loss, last = _lbfgs(fit, body, "keypoints", s.steps_keypoints, s, weights, targets, report)
        fits.append(fit)
        losses.append(loss)
        terms.append(last)
    chosen = pick_start(losses, [t["keypoints"].item() for t in terms], forward)
    fit, last = fits[chosen], terms[chosen]
    if s.steps_full > 0:
        _, last = _lbfgs(fit, body, "full", s.steps_full, s, weights, targets, report)
    return _finish(body, fit, kp, conf, mask, {k: v.item() for k, v in last.items()}, offsets)


def fit_evaluations(s: FitSettings, world: np.ndarray | None = None) -> int:
    """How many loss evaluations :func:`fit_body` makes from the rest pose with mediapipe's metric
    landmarks ``world`` (its progress total)."""
    starts = len(ARM_STARTS) + forearms_forward(world) if s.arm_starts else 1
    return s.steps_keypoints * starts + s.steps_full


def _lbfgs(fit, body, phase, n, s, weights, targets, report) -> tuple[float, dict[str, torch.Tensor]]:
    """One phase of the fit (``"keypoints"``: keypoints and priors, pose and transform; ``"full"``: with
    the silhouette and the phenotype) for ``n`` loss evaluations; the final weighted loss and terms."""
    kp, conf, sil, world_t, offsets, depth_cal, shading = targets
    fit.phenotype.requires_grad_(phase == "full")
    params = [p for p in fit.parameters() if p.requires_grad]
    # L-BFGS, as SMPLify: Adam's per-coordinate step normalisation moves the invisible (depth)
    # rotation axes as fast as the visible ones and lands in the forward/sideways ambiguity.
    optim = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=n,
        max_eval=n,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )
    target = sil if phase == "full" else None

    def evaluate():
        losses = fit_losses(fit, body, kp, conf, target, s, world_t, offsets, depth_cal, shading)
        return sum(weights[k] * v for k, v in losses.items()), losses

    def closure():
        optim.zero_grad(set_to_none=True)
        loss, losses = evaluate()
        loss.backward()
        report(losses, loss)
        return loss

    if n > 0:
        optim.step(closure)
    with torch.no_grad():
        loss, losses = evaluate()
    return float(loss), losses


def _finish(body, fit, kp, conf, mask, losses, offsets) -> FitResult:
    """Centre the depth, measure the fit (keypoint error in pixels, silhouette IoU of the render)."""
    from humanref_cli.perception.silhouette import mask_iou
    from humanref_cli.render.camera import camera_to_world
    from humanref_cli.render.raster import MeshRasterizer

    res = mask.shape[0]
    params = fit.to_params()
    with torch.no_grad():
        out = forward_params(body, params)
        depth = out.vertices[:, 0]
        params.translation[0] -= float(depth.min() + depth.max()) / 2
        out = forward_params(body, params)
    vertices = out.vertices.detach().cpu().numpy()
    faces = body.faces.cpu().numpy()
    landmarks = detector_landmarks(out, offsets)
    landmarks_px = plane_to_pixels(landmarks.detach(), res).cpu().numpy()
    used = ((conf > 0) & out.landmark_valid).cpu().numpy()
    k = kp.double().cpu().numpy()
    target_px = np.stack([(k[:, 0] + 1) * res / 2, (1 - k[:, 1]) * res / 2], -1)
    err = np.linalg.norm(landmarks_px - target_px, axis=1)
    kp_error = float(err[used].mean()) if used.any() else float("nan")
    with MeshRasterizer(res, res) as raster:
        rendered = raster.mask(vertices, faces, camera_to_world(0.0, 0.0, 1.0)) >= 0.5
    iou = mask_iou(rendered, mask)
    return FitResult(params, vertices, faces, landmarks_px, used, kp_error, iou, losses)
